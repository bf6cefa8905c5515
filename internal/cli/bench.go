package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/internal/bench"
)

// newBenchCmd builds `edgevault bench`, the load generator, and its
// `serve-baseline` subcommand.
func newBenchCmd(e *env) *cobra.Command {
	cfg := bench.DefaultConfig()
	var (
		op     string
		format string
	)
	cmd := &cobra.Command{
		Use:   "bench [flags]",
		Short: "Drive a Vault-API server (edgevault, Vault, OpenBao) with load and report ops/s and latency",
		Long: `Drive any Vault-API server with one operation from -c workers for -d, after
a -warmup, and report ops/s, errors and latency percentiles (p50, p99, p99.9,
max; errors included).

Operations:
  kv-read       write -keys secrets under <mount>/data/bench/<i>, then GET them at random
  kv-write      PUT {"data":{"value":...}} (-value-size bytes) to random keys
  token-create  POST auth/token/create {"policies":["default"],"ttl":"10m"};
                nothing is revoked, the tokens expire after 10m
  mixed         set up as kv-read, then 90% reads and 10% writes
  baseline      the GETs of kv-read without setup, for 'edgevault bench serve-baseline'
  fill          write each of -keys secrets once, report the time, and stop
  pki-issue     POST <mount>/issue/bench {"common_name":"<i>.bench.test"}, i < -keys
                (-mount default pki). Setup mounts pki if absent, generates an
                EC P-256 root unless the mount has a CA, writes the role bench
                (bench.test and subdomains, ec 256, ttl 5m; -pki-no-store sets
                no_store). Nothing is revoked: the certificates expire after 5m
  db-creds      one round trip = GET <mount>/creds/bench (a new PostgreSQL user)
                then PUT sys/leases/revoke with its lease_id (-mount default
                database). Setup mounts database if absent and writes the
                config bench (from -pg-url) and the role bench (CREATE ROLE ...
                VALID UNTIL, GRANT SELECT; REVOKE, DROP ROLE on revocation)

-pg-url (or EDGEVAULT_BENCH_PG_URL, which keeps the password out of the
process list) is postgres://user:password@host:port/dbname as the SERVER
reaches it; the user must be able to create and drop roles.

The address comes from -address, EDGEVAULT_ADDR, VAULT_ADDR, or
http://127.0.0.1:8200; unix:///absolute/path/to.sock sends plain HTTP over a
Unix socket (Host: localhost), such as an edge agent's local API. The token
comes from -token, EDGEVAULT_TOKEN or VAULT_TOKEN.
An error is a transport failure or a non-2xx status; the first one is printed.

Exit codes: 0 ok (even with request errors), 1 the run failed, 2 bad flags.`,
		Example: `  edgevault bench serve-baseline &
  edgevault bench -op baseline -address http://127.0.0.1:8299 -c 16 -d 5s -format json
  edgevault bench -op kv-read -c 16 -d 10s -format json
  edgevault bench -op pki-issue -c 16 -d 10s
  EDGEVAULT_BENCH_PG_URL=postgres://admin:pw@127.0.0.1:5432/postgres edgevault bench -op db-creds -c 4
  edgevault bench -op baseline -address unix:///run/edgevault-agent.sock -token "$(cat local-token)"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return usagef("-format: want table or json, got %q", format)
			}
			cfg.Op = bench.Op(op)
			applyBenchEnv(e, cmd, &cfg)
			if cfg.PGURL == "" {
				cfg.PGURL = e.getenv("EDGEVAULT_BENCH_PG_URL")
			}
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			if cfg.Op == bench.OpTokenCreate {
				fmt.Fprintln(e.stderr, "note: token-create revokes nothing; the tokens it creates expire after their 10m ttl")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := bench.Run(ctx, cfg)
			if err != nil && res.Ops == 0 {
				return benchError(err, cfg.Address)
			}
			if perr := printBenchResult(e, format, cfg, res); perr != nil {
				return perr
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&op, "op", string(cfg.Op), "operation: kv-read, kv-write, token-create, mixed, baseline, fill, pki-issue or db-creds")
	f.IntVarP(&cfg.Concurrency, "concurrency", "c", cfg.Concurrency, "number of workers, each with its own connection")
	f.DurationVarP(&cfg.Duration, "duration", "d", cfg.Duration, "how long to measure")
	f.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "how long to run before measuring")
	f.StringVar(&cfg.Address, "address", "", "server URL, or unix:///path of a socket (default $EDGEVAULT_ADDR, $VAULT_ADDR, then http://127.0.0.1:8200)")
	f.StringVar(&cfg.Token, "token", "", "token sent as X-Vault-Token (default $EDGEVAULT_TOKEN, then $VAULT_TOKEN)")
	f.StringVar(&cfg.Mount, "mount", "", "mount path of the engine driven (default: secret, pki for pki-issue, database for db-creds)")
	f.StringVar(&cfg.PGURL, "pg-url", "", "db-creds: PostgreSQL URL as the server reaches it (default $EDGEVAULT_BENCH_PG_URL)")
	f.BoolVar(&cfg.PKINoStore, "pki-no-store", false, "pki-issue: set no_store on the role (certificates are not stored)")
	f.StringVar(&cfg.Namespace, "namespace", "", "zone (or Vault namespace) sent as X-Vault-Namespace")
	f.IntVar(&cfg.Keys, "keys", cfg.Keys, "number of distinct secrets read or written")
	f.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "bytes of value per written secret")
	f.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "bound on connecting, on each setup request, and on requests in flight when -d ends")
	f.StringVar(&cfg.CACert, "ca-cert", "", "PEM file of CA certificates to trust (default $EDGEVAULT_CACERT, then $VAULT_CACERT)")
	f.BoolVar(&cfg.TLSSkipVerify, "tls-skip-verify", false, "do not verify the server's certificate (insecure)")
	f.StringVar(&format, "format", "table", "output format: table or json")
	cmd.AddCommand(newBenchServeBaselineCmd(e))
	return cmd
}

// applyBenchEnv fills the settings left unset by flags from the environment,
// as Vault's CLI does.
func applyBenchEnv(e *env, cmd *cobra.Command, cfg *bench.Config) {
	first := func(vals ...string) string {
		for _, v := range vals {
			if v != "" {
				return v
			}
		}
		return ""
	}
	if !cmd.Flags().Changed("address") {
		cfg.Address = first(e.getenv("EDGEVAULT_ADDR"), e.getenv("VAULT_ADDR"), "http://127.0.0.1:8200")
	}
	if !cmd.Flags().Changed("token") {
		cfg.Token = first(e.getenv("EDGEVAULT_TOKEN"), e.getenv("VAULT_TOKEN"))
	}
	if !cmd.Flags().Changed("ca-cert") {
		cfg.CACert = first(e.getenv("EDGEVAULT_CACERT"), e.getenv("VAULT_CACERT"))
	}
	if !cmd.Flags().Changed("tls-skip-verify") {
		for _, name := range []string{"EDGEVAULT_SKIP_VERIFY", "VAULT_SKIP_VERIFY"} {
			if ok, err := strconv.ParseBool(e.getenv(name)); err == nil {
				cfg.TLSSkipVerify = ok
				break
			}
		}
	}
}

// benchError classifies a failed run: bad configuration is a usage error,
// an unreachable server gets a hint.
func benchError(err error, addr string) error {
	if errors.Is(err, bench.ErrInvalidConfig) {
		return usageError{err}
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return hintError{err, fmt.Sprintf("is a server running at %s? Set -address or EDGEVAULT_ADDR", addr)}
	}
	return err
}

func printBenchResult(e *env, format string, cfg bench.Config, res bench.Result) error {
	s := res.Summary()
	if format == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return fmt.Errorf("write result: %w", err)
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "op\t%s\n", s.Op)
	if cfg.Op == bench.OpDBCreds {
		fmt.Fprintln(tw, "one op\tcreds + lease revoke (two requests)")
	}
	fmt.Fprintf(tw, "address\t%s\n", cfg.Address)
	fmt.Fprintf(tw, "concurrency\t%d\n", s.Concurrency)
	fmt.Fprintf(tw, "duration\t%s (after %s warm-up)\n", res.Elapsed.Round(time.Millisecond), cfg.Warmup)
	fmt.Fprintf(tw, "ops\t%d\n", s.Ops)
	fmt.Fprintf(tw, "ops/s\t%.1f\n", s.OpsPerSec)
	fmt.Fprintf(tw, "errors\t%d\n", s.Errors)
	fmt.Fprintf(tw, "latency p50\t%.3f ms\n", s.P50Ms)
	fmt.Fprintf(tw, "latency p99\t%.3f ms\n", s.P99Ms)
	fmt.Fprintf(tw, "latency p99.9\t%.3f ms\n", s.P999Ms)
	fmt.Fprintf(tw, "latency max\t%.3f ms\n", s.MaxMs)
	if s.FirstError != "" {
		fmt.Fprintf(tw, "first error\t%s\n", s.FirstError)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// newBenchServeBaselineCmd builds `edgevault bench serve-baseline`.
func newBenchServeBaselineCmd(e *env) *cobra.Command {
	addr := "127.0.0.1:8299"
	cmd := &cobra.Command{
		Use:   "serve-baseline [flags]",
		Short: "Serve a fixed 200-byte JSON body to every request, as a baseline for bench",
		Long: `Run a bare net/http server answering every request (any method, any path)
with 200 and the same 200-byte JSON body, until interrupted. Drive it with
'edgevault bench -op baseline -address http://ADDR' to measure what the
machine can do, then compare a real server's figures with it.

-address is host:port, or unix:///absolute/path to listen on a Unix socket
(drive it with 'edgevault bench -address unix:///absolute/path'); a socket
file left by a process that is gone is replaced, and removed on exit.`,
		Example: `  edgevault bench serve-baseline -address 127.0.0.1:8299
  edgevault bench serve-baseline -address unix:///tmp/baseline.sock`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ln, err := bench.Listen(addr)
			if err != nil {
				return usagef("-address: listen: %v", err)
			}
			where := "http://" + ln.Addr().String()
			if ln.Addr().Network() == "unix" {
				where = bench.UnixScheme + "://" + ln.Addr().String()
			}
			fmt.Fprintf(e.stdout, "baseline server listening on %s\n", where)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return bench.Serve(ctx, ln)
		},
	}
	cmd.Flags().StringVar(&addr, "address", addr, "host:port, or unix:///absolute/path, to listen on")
	return cmd
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s: unexpected argument %q", cmd.CommandPath(), args[0])
	}
	return nil
}

package cli

// This file holds what every client command shares: the connection flags, the
// construction of the github.com/hashicorp/vault/api client from them, the
// translation of client errors into one clean line (plus a hint), and the
// human (table) and script (JSON) output formats.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"
)

// defaultAddress is the server address used when neither -address,
// EDGEVAULT_ADDR nor VAULT_ADDR is set (Vault's default).
const defaultAddress = "http://127.0.0.1:8200"

// exitCodesHelp documents the exit codes in every client command's help.
const exitCodesHelp = `
Exit codes: 0 success, 1 error (the request failed or the server could not be
reached), 2 usage error (bad flags or arguments) or, for "status", a sealed server.`

// Output formats accepted by -format.
const (
	formatTable = "table"
	formatJSON  = "json"
)

// clientFlags are the connection and output flags of every command that
// talks to a server. Each setting falls back to an environment variable, the
// EDGEVAULT_ one first, then Vault's.
type clientFlags struct {
	address       string // -address, EDGEVAULT_ADDR, VAULT_ADDR
	caCert        string // -ca-cert, EDGEVAULT_CACERT, VAULT_CACERT
	tlsSkipVerify bool   // -tls-skip-verify, EDGEVAULT_SKIP_VERIFY, VAULT_SKIP_VERIFY
	namespace     string // -namespace, EDGEVAULT_NAMESPACE, VAULT_NAMESPACE
	format        string // -format: table or json
}

// addClientFlags registers f on cmd as persistent flags, so a command group
// (kv, token, ...) passes them to all its subcommands.
func addClientFlags(cmd *cobra.Command, f *clientFlags) {
	fs := cmd.PersistentFlags()
	fs.StringVar(&f.address, "address", "", "server address (default: $EDGEVAULT_ADDR, $VAULT_ADDR or "+defaultAddress+")")
	fs.StringVar(&f.caCert, "ca-cert", "", "PEM file of the CA that signed the server's certificate (default: $EDGEVAULT_CACERT or $VAULT_CACERT)")
	fs.BoolVar(&f.tlsSkipVerify, "tls-skip-verify", false, "do not verify the server's TLS certificate (insecure)")
	fs.StringVar(&f.namespace, "namespace", "", "namespace (zone) to send requests to (default: $EDGEVAULT_NAMESPACE or $VAULT_NAMESPACE)")
	fs.StringVar(&f.format, "format", formatTable, `output format: "table" for people or "json" for scripts`)
}

// conn is a configured client plus what commands need to report about it.
type conn struct {
	api    *api.Client
	addr   string
	format string
	out    io.Writer
}

// firstSet returns the first non-empty value.
func firstSet(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// connect builds a client from the flags and the environment read through
// e.getenv. The process environment is never consulted for these settings:
// VAULT_TOKEN and VAULT_NAMESPACE, which api.NewClient reads by itself, are
// overwritten with what e says. Retries are disabled, so a write that timed
// out is never sent twice.
func (f *clientFlags) connect(e *env) (*conn, error) {
	if f.format != formatTable && f.format != formatJSON {
		return nil, usagef("-format %q: expected %q or %q", f.format, formatTable, formatJSON)
	}
	addr := firstSet(f.address, e.getenv("EDGEVAULT_ADDR"), e.getenv("VAULT_ADDR"), defaultAddress)
	skip := f.tlsSkipVerify
	if v := firstSet(e.getenv("EDGEVAULT_SKIP_VERIFY"), e.getenv("VAULT_SKIP_VERIFY")); v != "" && !skip {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, usagef("EDGEVAULT_SKIP_VERIFY/VAULT_SKIP_VERIFY %q: expected true or false", v)
		}
		skip = b
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: skip} //nolint:gosec // only when asked for
	if caFile := firstSet(f.caCert, e.getenv("EDGEVAULT_CACERT"), e.getenv("VAULT_CACERT")); caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-ca-cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca-cert %s: no PEM certificate found", caFile)
		}
		tlsConfig.RootCAs = pool
	}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	httpClient := &http.Client{
		Transport: transport,
		// The api client handles redirects itself (standby forwarding).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	client, err := api.NewClient(&api.Config{
		Address:    addr,
		HttpClient: httpClient,
		Timeout:    60 * time.Second,
		MaxRetries: 0,
	})
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", addr, err)
	}
	client.SetToken(firstSet(e.getenv("EDGEVAULT_TOKEN"), e.getenv("VAULT_TOKEN")))
	if ns := firstSet(f.namespace, e.getenv("EDGEVAULT_NAMESPACE"), e.getenv("VAULT_NAMESPACE")); ns != "" {
		client.SetNamespace(ns)
	} else {
		client.ClearNamespace()
	}
	return &conn{api: client, addr: addr, format: f.format, out: e.stdout}, nil
}

// fail turns an error from the api client into the one line the user sees,
// "<action>: <what the server said>", with a hint when the fix is obvious.
// The client's own multi-line error text (URL, code, bullet list) is not shown.
func (c *conn) fail(action string, err error) error {
	var re *api.ResponseError
	switch {
	case errors.As(err, &re):
		msg := strings.Join(re.Errors, "; ")
		if re.RawError || msg == "" {
			msg = http.StatusText(re.StatusCode)
		}
		out := fmt.Errorf("%s: %s (HTTP %d)", action, msg, re.StatusCode)
		switch {
		case re.StatusCode == http.StatusForbidden:
			return hintError{out, "check EDGEVAULT_TOKEN and its policies"}
		case re.StatusCode == http.StatusServiceUnavailable && strings.Contains(strings.ToLower(msg), "sealed"):
			return hintError{out, "unseal the server with: edgevault operator unseal"}
		}
		return out
	case errors.Is(err, syscall.ECONNREFUSED):
		return hintError{
			fmt.Errorf("%s: cannot reach the server at %s: connection refused", action, c.addr),
			fmt.Sprintf("is the server running at %s? set EDGEVAULT_ADDR", c.addr),
		}
	case errors.Is(err, api.ErrSecretNotFound):
		return fmt.Errorf("%s: no value found", action)
	}
	var ue interface{ Timeout() bool }
	if errors.As(err, &ue) && ue.Timeout() {
		return hintError{fmt.Errorf("%s: %w", action, err), fmt.Sprintf("is the server at %s reachable? set EDGEVAULT_ADDR", c.addr)}
	}
	return fmt.Errorf("%s: %w", action, err)
}

// json reports whether -format=json was asked for.
func (c *conn) json() bool { return c.format == formatJSON }

// printJSON writes v as indented JSON, as Vault's -format=json does.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(normalize(v), "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON output: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// normalize undoes one rewrite made by the api client's KV v2 helpers: they
// replace an empty "deletion_time" with a zero time.Time in the response
// they return. Zero times become "" again, so -format=json shows what the
// server sent. Other values are returned unchanged.
func normalize(v any) any {
	switch t := v.(type) {
	case *api.Secret:
		if t != nil {
			normalize(t.Data)
		}
	case map[string]any:
		for k, x := range t {
			t[k] = normalize(x)
		}
	case []any:
		for i, x := range t {
			t[i] = normalize(x)
		}
	case time.Time:
		if t.IsZero() {
			return ""
		}
	}
	return v
}

// row is one line of a "Key  Value" table.
type row struct{ key, value string }

// printTable writes rows under a "Key  Value" header, aligned as Vault's
// tables are.
func printTable(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 8, 4, ' ', 0)
	fmt.Fprintln(tw, "Key\tValue")
	fmt.Fprintln(tw, "---\t-----")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r.key, r.value)
	}
	return tw.Flush()
}

// printColumn writes values under a one-column header, as Vault's lists are.
func printColumn(w io.Writer, header string, values []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s\n", header, strings.Repeat("-", len(header)))
	for _, v := range values {
		fmt.Fprintln(&b, v)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printHeader writes a section title such as "====== Data ======".
func printHeader(w io.Writer, title string, width int) {
	fmt.Fprintf(w, "%s %s %s\n", strings.Repeat("=", width), title, strings.Repeat("=", width))
}

// mapRows returns the entries of m as rows sorted by key.
func mapRows(m map[string]any) []row {
	rows := make([]row, 0, len(m))
	for k, v := range m {
		rows = append(rows, row{k, formatValue(v)})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].key < rows[j].key })
	return rows
}

// formatValue renders one value for a table the way Vault does: nil as
// "<nil>", an empty string or zero time as "n/a", everything else with %v.
func formatValue(v any) string {
	switch t := v.(type) {
	case nil:
		return "<nil>"
	case string:
		if t == "" {
			return "n/a"
		}
		return t
	case time.Time:
		if t.IsZero() {
			return "n/a"
		}
		return t.Format(time.RFC3339Nano)
	case json.Number:
		return t.String()
	}
	return fmt.Sprintf("%v", v)
}

// humanDuration renders seconds as Vault does: "768h", "1h30m", "45s", and
// "∞" for zero (no expiry).
func humanDuration(seconds int) string {
	if seconds == 0 {
		return "∞"
	}
	s := (time.Duration(seconds) * time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// secretRows returns the rows Vault shows for a response: the token fields
// when it carries auth, the lease fields when it has a lease, then the data.
func secretRows(s *api.Secret) []row {
	var rows []row
	if s.Auth != nil {
		a := s.Auth
		rows = append(rows,
			row{"token", a.ClientToken},
			row{"token_accessor", a.Accessor},
			row{"token_duration", humanDuration(a.LeaseDuration)},
			row{"token_renewable", strconv.FormatBool(a.Renewable)},
			row{"token_policies", fmt.Sprintf("%q", nonNil(a.TokenPolicies))},
			row{"identity_policies", fmt.Sprintf("%q", nonNil(a.IdentityPolicies))},
			row{"policies", fmt.Sprintf("%q", nonNil(a.Policies))},
		)
		metaKeys := make([]string, 0, len(a.Metadata))
		for k := range a.Metadata {
			metaKeys = append(metaKeys, k)
		}
		sort.Strings(metaKeys)
		for _, k := range metaKeys {
			rows = append(rows, row{"token_meta_" + k, a.Metadata[k]})
		}
	}
	if s.LeaseID != "" {
		rows = append(rows,
			row{"lease_id", s.LeaseID},
			row{"lease_duration", humanDuration(s.LeaseDuration)},
			row{"lease_renewable", strconv.FormatBool(s.Renewable)},
		)
	}
	return append(rows, mapRows(s.Data)...)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// printSecret prints a whole response: JSON, or its rows as a table,
// followed by any warnings the server attached.
func (c *conn) printSecret(s *api.Secret) error {
	if c.json() {
		return printJSON(c.out, s)
	}
	if err := printTable(c.out, secretRows(s)); err != nil {
		return err
	}
	printWarnings(c.out, s.Warnings)
	return nil
}

// printField prints one field of a response without a trailing newline, as
// Vault's -field does: a data value raw (strings as is, others as JSON), or
// one of the token or lease rows; with -format=json, as JSON.
func (c *conn) printField(s *api.Secret, field string) error {
	if v, ok := s.Data[field]; ok {
		if c.json() {
			return printJSON(c.out, v)
		}
		return writeRawValue(c.out, v)
	}
	for _, r := range secretRows(s) {
		if r.key == field {
			if c.json() {
				return printJSON(c.out, r.value)
			}
			_, err := io.WriteString(c.out, r.value)
			return err
		}
	}
	return fmt.Errorf("field %q not present in the response", field)
}

// writeRawValue writes a string as is and anything else as compact JSON.
func writeRawValue(w io.Writer, v any) error {
	if s, ok := v.(string); ok {
		_, err := io.WriteString(w, s)
		return err
	}
	b, err := json.Marshal(normalize(v))
	if err != nil {
		return fmt.Errorf("encode field: %w", err)
	}
	_, err = w.Write(b)
	return err
}

func printWarnings(w io.Writer, warnings []string) {
	if len(warnings) == 0 {
		return
	}
	fmt.Fprintln(w, "\nWARNING! The following warnings were returned from the server.")
	for _, msg := range warnings {
		fmt.Fprintf(w, "\n  * %s\n", msg)
	}
}

// success prints Vault's "Success! ..." line, or nothing with -format=json
// (scripts check the exit code).
func (c *conn) success(format string, args ...any) error {
	if c.json() {
		return nil
	}
	_, err := fmt.Fprintf(c.out, "Success! "+format+"\n", args...)
	return err
}

// argsBetween accepts min to max positional arguments (max < 0: no limit)
// and otherwise fails with a usage error that shows the expected shape.
func argsBetween(min, max int, shape string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= min && (max < 0 || len(args) <= max) {
			return nil
		}
		if len(args) < min {
			return usagef("%s: not enough arguments (expected %s)", cmd.CommandPath(), shape)
		}
		return usagef("%s: too many arguments (expected %s)", cmd.CommandPath(), shape)
	}
}

// newGroupCmd returns a command that only groups subcommands: run alone or
// with an unknown subcommand, it fails with a usage error naming them.
func newGroupCmd(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long + "\n" + exitCodesHelp,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			names := make([]string, 0, len(cmd.Commands()))
			for _, c := range cmd.Commands() {
				if c.IsAvailableCommand() {
					names = append(names, c.Name())
				}
			}
			if len(args) == 0 {
				return usagef("%s: missing subcommand (one of: %s)", cmd.CommandPath(), strings.Join(names, ", "))
			}
			return usagef("%s: unknown subcommand %q (one of: %s)", cmd.CommandPath(), args[0], strings.Join(names, ", "))
		},
	}
	cmd.AddCommand(subs...)
	return cmd
}

// splitKeyValue splits "key=value" at the first "=". The key must not be
// empty; the value may be. Errors do not repeat the argument, which may be a
// secret typed in the wrong place.
func splitKeyValue(arg string) (key, value string, err error) {
	k, v, ok := strings.Cut(arg, "=")
	if !ok {
		return "", "", errors.New(`expected KEY=VALUE, found no "="`)
	}
	if k == "" {
		return "", "", errors.New("expected KEY=VALUE, found an empty KEY")
	}
	return k, v, nil
}

// parseStringMap parses repeated key=value flag values (e.g. -metadata,
// -custom-metadata) into a map; flag names the flag in errors.
func parseStringMap(flag string, values []string) (map[string]string, error) {
	if len(values) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(values))
	for i, kv := range values {
		k, v, err := splitKeyValue(kv)
		if err != nil {
			return nil, usagef("-%s (value %d): %v", flag, i+1, err)
		}
		m[k] = v
	}
	return m, nil
}

// parseDuration parses a duration as Vault's CLI accepts it: a Go duration
// ("90s", "1h30m"), a number of seconds ("3600") or a number of days ("7d").
// Negative durations are refused. flag names the flag in errors.
func parseDuration(flag, s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	var err error
	switch {
	case s == "":
		return 0, usagef("-%s: empty duration", flag)
	case strings.HasSuffix(s, "d"):
		var days uint64
		days, err = strconv.ParseUint(strings.TrimSuffix(s, "d"), 10, 32)
		if err == nil && days > 100*365 {
			err = errors.New("too long")
		}
		d = time.Duration(days) * 24 * time.Hour
	default:
		if n, perr := strconv.ParseUint(s, 10, 63); perr == nil {
			if n > uint64(100*365*24*time.Hour/time.Second) {
				return 0, usagef("-%s %q: too long", flag, s)
			}
			return time.Duration(n) * time.Second, nil
		}
		d, err = time.ParseDuration(s)
	}
	if err != nil {
		return 0, usagef("-%s %q: expected a duration such as 90s, 1h30m, 3600 or 7d", flag, s)
	}
	if d < 0 {
		return 0, usagef("-%s %q: negative duration", flag, s)
	}
	return d, nil
}

// durationSeconds formats d as whole seconds ("3600s"), the form every Vault
// endpoint accepts.
func durationSeconds(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}

// printNames prints a list of names, one a line, or as a JSON array.
func (c *conn) printNames(names []string) error {
	if c.json() {
		return printJSON(c.out, nonNil(names))
	}
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintln(&b, n)
	}
	_, err := io.WriteString(c.out, b.String())
	return err
}

// connectAfter connects unless check, the validation of the command's
// arguments, failed.
func (cf *clientFlags) connectAfter(e *env, check error) (*conn, error) {
	if check != nil {
		return nil, check
	}
	return cf.connect(e)
}

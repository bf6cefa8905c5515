// Package bench is a lean load generator for any server that speaks Vault's
// HTTP API (edgevault, HashiCorp Vault, OpenBao), plus a bare baseline server
// to compare it with.
//
// The idea: client and server usually share a small machine, so the driver
// must cost as little CPU as possible, and every figure should come with a
// ratio that survives a noisy machine. Run drives one operation (KV v2 reads,
// KV v2 writes, token creation, a 90/10 read/write mix, PKI certificate
// issuance, database credentials issued and revoked, or the baseline) from
// Concurrency workers for a fixed Duration after a warm-up. Each worker owns
// one keep-alive HTTP/1.1 connection (plain or TLS), writes each request with
// one Write from a reused buffer holding the pre-built headers and body, and
// reads the response with net/http's http.ReadResponse. No response body is
// decoded on the hot path: only the status code is checked, and the body is
// drained so the connection is reused. The one exception is db-creds, whose
// operation is a round trip of two requests: the lease_id of the first
// response is decoded (one small JSON decode per operation, next to the
// milliseconds PostgreSQL takes) and sent back in the second. (net/http's Transport was measured at
// about twice the CPU per request, spent handing each request to its read and
// write goroutines; on a machine the server shares, that CPU is taken from the
// server.) Each worker appends latencies to its own preallocated slice, so the
// hot path takes no lock; the slices are merged and sorted once at the end.
//
// Serve runs the baseline: a bare net/http handler answering every request
// with the same 200-byte JSON body. Driving it with OpBaseline sends exactly
// the requests kv-read sends (same paths, same headers), so the ratio
// kv-read/baseline measures the server's own cost per request.
package bench

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Op names the operation a run drives.
type Op string

// The operations Run knows.
const (
	// OpKVRead writes Keys secrets under <mount>/data/bench/<i> during setup,
	// then reads them at random with GET /v1/<mount>/data/bench/<i>.
	OpKVRead Op = "kv-read"
	// OpKVWrite writes {"data":{"value":"..."}} (ValueSize bytes of value)
	// to random keys among Keys with PUT /v1/<mount>/data/bench/<i>.
	OpKVWrite Op = "kv-write"
	// OpTokenCreate creates tokens with POST /v1/auth/token/create
	// {"policies":["default"],"ttl":"10m"}. It revokes nothing: the tokens
	// expire after their ttl.
	OpTokenCreate Op = "token-create"
	// OpMixed sets up like OpKVRead, then sends 90% reads and 10% writes.
	OpMixed Op = "mixed"
	// OpBaseline sends the same GETs as OpKVRead without any setup; it is
	// meant for the server run by Serve.
	OpBaseline Op = "baseline"
	// OpFill writes each of the Keys secrets exactly once and stops; its
	// Result counts the writes and their total time (no latency figures).
	// It is how a store is filled for a memory or size measurement.
	OpFill Op = "fill"
	// OpPKIIssue issues certificates with POST /v1/<mount>/issue/bench
	// {"common_name":"<i>.bench.test"}, i random among Keys. Setup mounts a
	// pki engine at Mount if there is none, generates an EC P-256 root CA if
	// the mount has no CA (an existing CA must be EC P-256), and writes the
	// role "bench" (allowed_domains bench.test, allow_subdomains, key_type
	// ec, key_bits 256, ttl 5m, no_store as PKINoStore). Nothing is revoked:
	// the certificates expire after 5 minutes.
	OpPKIIssue Op = "pki-issue"
	// OpDBCreds drives one round trip per operation: GET
	// /v1/<mount>/creds/bench, which creates a PostgreSQL user, then PUT
	// /v1/sys/leases/revoke {"lease_id": ...} with the lease_id decoded from
	// the first response, which drops it. The latency covers both requests.
	// Setup mounts a database engine at Mount if there is none and writes
	// the config "bench" (postgresql-database-plugin, PGURL templated) and
	// the role "bench" (CREATE ROLE ... VALID UNTIL, GRANT SELECT; REVOKE
	// and DROP ROLE on revocation; default_ttl 5m).
	OpDBCreds Op = "db-creds"
)

// Ops lists every operation, in the order the CLI documents them.
func Ops() []Op {
	return []Op{OpKVRead, OpKVWrite, OpTokenCreate, OpMixed, OpBaseline, OpFill, OpPKIIssue, OpDBCreds}
}

// DefaultMount returns the mount path an operation uses when Config.Mount
// is empty: "pki" for OpPKIIssue, "database" for OpDBCreds, "secret" (the
// KV v2 mount) for the others.
func (o Op) DefaultMount() string {
	switch o {
	case OpPKIIssue:
		return "pki"
	case OpDBCreds:
		return "database"
	}
	return "secret"
}

// Limits enforced by Validate.
const (
	MaxConcurrency = 4096
	MaxKeys        = 10_000_000
	MaxValueSize   = 1 << 20
)

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("invalid bench configuration")

// Config describes one run. Start from DefaultConfig. Error messages name
// the CLI flag that sets each field.
type Config struct {
	// Op is the operation to drive (-op).
	Op Op
	// Address is the server's base URL (-address): http://, https://, or
	// unix:///absolute/path/to.sock for plain HTTP over a Unix socket (sent
	// with "Host: localhost", as Vault's VAULT_ADDR=unix://... does).
	Address string
	// Token is sent as X-Vault-Token (-token). Required for every op but
	// OpBaseline. It never appears in errors or results.
	Token string
	// Mount is the mount path of the engine the operation drives, e.g.
	// "secret" (-mount); empty means Op.DefaultMount.
	Mount string
	// Namespace is sent as X-Vault-Namespace, selecting an edgevault zone or
	// a Vault namespace (-namespace); empty sends none.
	Namespace string
	// Concurrency is the number of workers, each with its own connection (-c).
	Concurrency int
	// Duration is the measured part of the run (-d).
	Duration time.Duration
	// Warmup is how long the workers run before measuring starts (-warmup).
	Warmup time.Duration
	// Keys is the number of distinct secrets read or written (-keys).
	Keys int
	// ValueSize is the size in bytes of the value written by writes and by
	// the setup of kv-read and mixed (-value-size).
	ValueSize int
	// Timeout bounds each connection attempt (TCP and TLS), each setup
	// request, and the wait for requests still in flight when the measured
	// window closes, which then count as errors (-timeout).
	Timeout time.Duration
	// CACert is a PEM file of CA certificates to trust for https (-ca-cert).
	CACert string
	// TLSSkipVerify disables verification of the server's certificate
	// (-tls-skip-verify).
	TLSSkipVerify bool
	// Seed seeds the workers' random key choice; 0 picks one from the clock.
	Seed uint64
	// PGURL is the PostgreSQL connection URL the server's database engine
	// uses for OpDBCreds (-pg-url), as the server reaches it:
	// postgres://user:password@host:port/dbname?sslmode=disable. The user
	// must be allowed to create and drop roles. The user and password are
	// written to the engine's config as username and password, the URL as a
	// {{username}}/{{password}} template. Required for OpDBCreds, ignored
	// otherwise. It never appears in errors or results.
	PGURL string
	// PKINoStore sets no_store on the role OpPKIIssue writes
	// (-pki-no-store): the server then skips the durable write of each
	// certificate, as Vault's no_store does.
	PKINoStore bool
}

// DefaultConfig returns the defaults the CLI documents.
func DefaultConfig() Config {
	return Config{
		Op:          OpKVRead,
		Address:     "http://127.0.0.1:8200",
		Concurrency: 16,
		Duration:    10 * time.Second,
		Warmup:      time.Second,
		Keys:        1000,
		ValueSize:   64,
		Timeout:     10 * time.Second,
	}
}

// Validate checks every field and returns an error wrapping
// ErrInvalidConfig that names the flag to fix.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if !c.Op.valid() {
		return bad("-op: unknown operation %q (want one of %s)", c.Op, opList())
	}
	if err := checkAddress(c.Address); err != nil {
		return bad("-address: %v", err)
	}
	if c.Op != OpBaseline && c.Token == "" {
		return bad("-token: a token is required for -op %s (set -token, EDGEVAULT_TOKEN or VAULT_TOKEN)", c.Op)
	}
	if strings.ContainsAny(c.Token, "\r\n\x00") {
		return bad("-token: contains a control character")
	}
	if strings.ContainsAny(c.Namespace, "\r\n") {
		return fmt.Errorf("%w: -namespace: must not contain a line break", ErrInvalidConfig)
	}
	if c.Mount != "" {
		if err := checkMount(c.Mount); err != nil {
			return bad("-mount: %v", err)
		}
	}
	if c.Op == OpDBCreds {
		if c.PGURL == "" {
			return bad("-pg-url: a PostgreSQL connection URL is required for -op %s (postgres://user:password@host:port/dbname)", c.Op)
		}
		if _, err := splitPGURL(c.PGURL); err != nil {
			return bad("-pg-url: %v", err)
		}
	}
	switch {
	case c.Concurrency < 1 || c.Concurrency > MaxConcurrency:
		return bad("-c: concurrency must be between 1 and %d, got %d", MaxConcurrency, c.Concurrency)
	case c.Duration <= 0:
		return bad("-d: duration must be positive, got %s", c.Duration)
	case c.Warmup < 0:
		return bad("-warmup: must not be negative, got %s", c.Warmup)
	case c.Keys < 1 || c.Keys > MaxKeys:
		return bad("-keys: must be between 1 and %d, got %d", MaxKeys, c.Keys)
	case c.ValueSize < 1 || c.ValueSize > MaxValueSize:
		return bad("-value-size: must be between 1 and %d bytes, got %d", MaxValueSize, c.ValueSize)
	case c.Timeout <= 0:
		return bad("-timeout: must be positive, got %s", c.Timeout)
	}
	return nil
}

// mount returns the mount path the run uses, without surrounding slashes.
func (c Config) mount() string {
	if c.Mount == "" {
		return c.Op.DefaultMount()
	}
	return strings.Trim(c.Mount, "/")
}

func (o Op) valid() bool {
	for _, k := range Ops() {
		if o == k {
			return true
		}
	}
	return false
}

func opList() string {
	names := make([]string, 0, len(Ops()))
	for _, o := range Ops() {
		names = append(names, string(o))
	}
	return strings.Join(names, ", ")
}

// UnixScheme is the scheme of an address naming a Unix socket:
// "unix:///run/edgevault-agent.sock".
const UnixScheme = "unix"

// SocketPath returns the socket path of a unix:// address and ok = true;
// for an address of any other scheme it returns ok = false and no error. A
// unix:// address must be unix:///absolute/path (three slashes: no host),
// with no query, fragment or user info.
func SocketPath(address string) (path string, ok bool, err error) {
	if !strings.HasPrefix(address, UnixScheme+":") {
		return "", false, nil
	}
	u, err := url.Parse(address)
	if err != nil {
		return "", true, fmt.Errorf("not a URL: %w", err)
	}
	switch {
	case u.Host != "":
		return "", true, fmt.Errorf("%s: want unix:///absolute/path/to.sock (three slashes), got host %q", address, u.Host)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "", true, fmt.Errorf("%s: want unix:///absolute/path/to.sock, with no user info, query or fragment", address)
	case u.Path == "" || u.Path == "/" || !strings.HasPrefix(u.Path, "/"):
		return "", true, fmt.Errorf("%s: no socket path (want unix:///absolute/path/to.sock)", address)
	}
	return u.Path, true, nil
}

func checkAddress(addr string) error {
	if addr == "" {
		return errors.New("empty address")
	}
	if _, ok, err := SocketPath(addr); ok {
		return err
	}
	u, err := url.Parse(addr)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme must be http, https or unix, got %q", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must not contain user info, a query or a fragment")
	}
	return nil
}

// checkMount accepts slash-separated segments of letters, digits, '-', '_'
// and '.', with no empty, "." or ".." segment; leading and trailing slashes
// are ignored.
func checkMount(m string) error {
	m = strings.Trim(m, "/")
	if m == "" {
		return errors.New("empty mount path")
	}
	for _, seg := range strings.Split(m, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("bad path segment %q", seg)
		}
		for _, r := range seg {
			ok := r == '-' || r == '_' || r == '.' ||
				(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
			if !ok {
				return fmt.Errorf("character %q not allowed", r)
			}
		}
	}
	return nil
}

package bench_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/edgevault/edgevault/internal/bench"
	"github.com/edgevault/edgevault/internal/httpapi"
	"github.com/edgevault/edgevault/internal/pgtest"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// startDevServer runs a real in-process edgevault dev server on
// 127.0.0.1:0 and returns its address, root token and a Vault client.
func startDevServer(t *testing.T) (addr, root string, c *vault.Client) {
	t.Helper()
	srv, err := httpapi.New(httpapi.Config{Physical: inmem.New()})
	if err != nil {
		t.Fatal(err)
	}
	root, _, err = srv.InitDev(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	addr = "http://" + ln.Addr().String()
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	if c, err = vault.NewClient(cfg); err != nil {
		t.Fatal(err)
	}
	c.SetToken(root)
	return addr, root, c
}

func shortRun(op bench.Op, addr, token string) bench.Config {
	cfg := bench.DefaultConfig()
	cfg.Op, cfg.Address, cfg.Token = op, addr, token
	cfg.Concurrency, cfg.Duration, cfg.Warmup, cfg.Keys = 4, 300*time.Millisecond, 0, 50
	return cfg
}

func pemCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode([]byte(s))
	if blk == nil {
		t.Fatalf("no PEM certificate in %q", s)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// pki-issue sets up a pki mount with an EC P-256 root and the bench role,
// issues certificates (each stored, one per operation), reuses its setup on
// a second run, and refuses a mount of another type or with another CA key.
func TestPKIIssueAgainstRealServer(t *testing.T) {
	addr, root, c := startDevServer(t)
	countCerts := func() int {
		t.Helper()
		s, err := c.Logical().List("pki/certs")
		if err != nil {
			t.Fatal(err)
		}
		if s == nil {
			return 0
		}
		return len(s.Data["keys"].([]any))
	}

	res, err := bench.Run(context.Background(), shortRun(bench.OpPKIIssue, addr, root))
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("%d ops, %d errors (first: %s)", res.Ops, res.Errors, res.FirstError)
	}
	stored := countCerts()
	if int64(stored) < res.Ops {
		t.Fatalf("%d certificates stored after %d issue operations", stored, res.Ops)
	}

	// The role is as documented, and what it issues verifies against the
	// mount's EC P-256 root.
	role, err := c.Logical().Read("pki/roles/bench")
	if err != nil {
		t.Fatal(err)
	}
	if role.Data["key_type"] != "ec" || role.Data["no_store"] != false || role.Data["allow_subdomains"] != true {
		t.Fatalf("role: %v", role.Data)
	}
	ca, err := c.Logical().Read("pki/cert/ca")
	if err != nil {
		t.Fatal(err)
	}
	caCert := pemCert(t, ca.Data["certificate"].(string))
	if k, ok := caCert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("CA key %s, want EC P-256", caCert.PublicKeyAlgorithm)
	}
	leaf, err := c.Logical().Write("pki/issue/bench", map[string]any{"common_name": "7.bench.test"})
	if err != nil {
		t.Fatal(err)
	}
	cert := pemCert(t, leaf.Data["certificate"].(string))
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "7.bench.test", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("issued certificate: %v", err)
	}
	if k, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("leaf key %s, want EC P-256", cert.PublicKeyAlgorithm)
	}
	if ttl := cert.NotAfter.Sub(cert.NotBefore); ttl > 6*time.Minute {
		t.Fatalf("leaf lives %s, want the role's 5m", ttl)
	}

	// A second run reuses the mount and its CA; with -pki-no-store nothing
	// more is stored.
	stored = countCerts()
	cfg := shortRun(bench.OpPKIIssue, addr, root)
	cfg.PKINoStore = true
	res, err = bench.Run(context.Background(), cfg)
	if err != nil || res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("second run, no_store: %+v %v", res, err)
	}
	if n := countCerts(); n != stored {
		t.Fatalf("no_store run stored certificates: %d before, %d after", stored, n)
	}
	if ca2, err := c.Logical().Read("pki/cert/ca"); err != nil || ca2.Data["certificate"] != ca.Data["certificate"] {
		t.Fatalf("the second run replaced the CA: %v", err)
	}

	// A KV mount, or a pki mount whose CA is not EC P-256, is refused
	// naming -mount.
	cfg = shortRun(bench.OpPKIIssue, addr, root)
	cfg.Mount = "secret"
	if _, err := bench.Run(context.Background(), cfg); !errors.Is(err, bench.ErrInvalidConfig) || !strings.Contains(err.Error(), "-mount: secret/") {
		t.Fatalf("pki-issue on the KV mount: %v", err)
	}
	if err := c.Sys().Mount("rsa-pki", &vault.MountInput{Type: "pki"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().Write("rsa-pki/root/generate/internal", map[string]any{"common_name": "R", "key_type": "rsa", "key_bits": 2048}); err != nil {
		t.Fatal(err)
	}
	cfg.Mount = "rsa-pki"
	if _, err := bench.Run(context.Background(), cfg); !errors.Is(err, bench.ErrInvalidConfig) || !strings.Contains(err.Error(), "EC P-256") {
		t.Fatalf("pki-issue on a mount with an RSA CA: %v", err)
	}
}

// db-creds against a real server and a real PostgreSQL: every user it
// obtains is revoked again, so neither a lease nor a role is left.
func TestDBCredsAgainstRealServer(t *testing.T) {
	pgURL := pgtest.Start(t)
	addr, root, c := startDevServer(t)
	cfg := shortRun(bench.OpDBCreds, addr, root)
	cfg.Concurrency, cfg.Duration = 2, 500*time.Millisecond
	cfg.PGURL = pgURL
	res, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("%d ops, %d errors (first: %s)", res.Ops, res.Errors, res.FirstError)
	}
	if strings.Contains(res.FirstError, pgURL) {
		t.Fatal("the result shows -pg-url")
	}
	if s, err := c.Logical().List("sys/leases/lookup/database/creds/bench/"); err != nil || s != nil {
		n := 0
		if s != nil {
			n = len(s.Data["keys"].([]any))
		}
		t.Fatalf("%d leases left after %d round trips (%v)", n, res.Ops, err)
	}
	conn, err := pgx.Connect(context.Background(), pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var left int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-bench-%'`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d PostgreSQL users left after %d create+revoke round trips", left, res.Ops)
	}
	conf, err := c.Logical().Read("database/config/bench")
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := conf.Data["connection_details"].(map[string]any)["connection_url"].(string); !strings.Contains(u, "{{username}}:{{password}}@") {
		t.Fatalf("connection_url %q is not templated", u)
	}

	// A wrong password fails the setup, without showing it.
	bad := strings.Replace(pgURL, "@", "x-wrong-pw@", 1)
	cfg.PGURL, cfg.Mount = bad, "db2"
	_, err = bench.Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "database config") || strings.Contains(err.Error(), "x-wrong-pw") {
		t.Fatalf("setup with a wrong password: %v", err)
	}
}

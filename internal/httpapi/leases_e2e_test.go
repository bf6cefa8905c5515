package httpapi_test

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/edgevault/edgevault/internal/httpapi"
	"github.com/edgevault/edgevault/internal/pgtest"
)

// setupPKI mounts pki with an EC root and a role "web" issuing leased
// certificates (generate_lease) for *.edge.example.
func setupPKI(t *testing.T, c *vault.Client) {
	t.Helper()
	if err := c.Sys().Mount("pki", &vault.MountInput{Type: "pki"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().Write("pki/root/generate/internal", map[string]any{"common_name": "Edge Root", "key_type": "ec", "ttl": "24h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().Write("pki/roles/web", map[string]any{"allowed_domains": "edge.example", "allow_subdomains": true,
		"key_type": "ec", "ttl": "1h", "max_ttl": "2h", "generate_lease": true}); err != nil {
		t.Fatal(err)
	}
}

// rawGet fetches a Vault path without the JSON client (raw DER/PEM bodies).
func rawGet(t *testing.T, ts *testServer, path string) (string, []byte) {
	t.Helper()
	resp, err := http.Get(ts.addr + "/v1/" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s %v", path, resp.StatusCode, body, err)
	}
	return resp.Header.Get("Content-Type"), body
}

// crlSerials reads the raw DER CRL of the pki mount, checks its signature
// against the CA (read raw, DER) and returns the revoked serials.
func crlSerials(t *testing.T, ts *testServer) map[string]bool {
	t.Helper()
	ct, der := rawGet(t, ts, "pki/ca")
	if ct != "application/pkix-cert" {
		t.Fatalf("pki/ca content type %q", ct)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("pki/ca is not a DER certificate: %v", err)
	}
	ct, raw := rawGet(t, ts, "pki/crl")
	if ct != "application/pkix-crl" {
		t.Fatalf("pki/crl content type %q", ct)
	}
	crl, err := x509.ParseRevocationList(raw)
	if err != nil {
		t.Fatalf("pki/crl is not a DER CRL: %v", err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		out[serialString(e.SerialNumber)] = true
	}
	return out
}

// serialString is Vault's colon-separated hex form of a serial.
func serialString(n *big.Int) string {
	h := hex.EncodeToString(n.Bytes())
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

// waitUntil polls cond for up to d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

func leaseGone(c *vault.Client, id string) bool {
	_, err := c.Sys().Lookup(id)
	return statusOf(err) == 400 || statusOf(err) == 404
}

// Revoking a token revokes its leases: a certificate issued with a child
// token (PKI generate_lease) lands on the CRL, read raw as Vault serves it.
func TestTokenRevocationRevokesLeases(t *testing.T) {
	ts := startServer(t, true)
	c := ts.client
	setupPKI(t, c)
	if err := c.Sys().PutPolicy("issuer", `path "pki/issue/web" { capabilities = ["update"] }`); err != nil {
		t.Fatal(err)
	}
	child, err := c.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"issuer"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	cc := ts.newClient(t, child.Auth.ClientToken)
	leaf, err := cc.Logical().Write("pki/issue/web", map[string]any{"common_name": "a.edge.example", "ttl": "10m"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(leaf.LeaseID, "pki/issue/web/") || leaf.LeaseDuration != 600 || leaf.Renewable {
		t.Fatalf("certificate lease: id %q duration %d renewable %v", leaf.LeaseID, leaf.LeaseDuration, leaf.Renewable)
	}
	other, err := c.Logical().Write("pki/issue/web", map[string]any{"common_name": "b.edge.example"})
	if err != nil {
		t.Fatal(err)
	}
	serial := leaf.Data["serial_number"].(string)
	if crlSerials(t, ts)[serial] {
		t.Fatal("the serial is on the CRL before any revocation")
	}
	if _, err := c.Sys().Renew(leaf.LeaseID, 60); statusOf(err) != 400 {
		t.Fatalf("renewing a certificate lease: %v, want 400 (not renewable)", err)
	}

	if err := c.Auth().Token().RevokeTree(child.Auth.ClientToken); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "the token's lease to be revoked", func() bool { return leaseGone(c, leaf.LeaseID) })
	if !crlSerials(t, ts)[serial] {
		t.Fatal("the certificate of a revoked token's lease is not on the CRL")
	}
	if _, err := c.Sys().Lookup(other.LeaseID); err != nil {
		t.Fatalf("a lease of another token was touched: %v", err)
	}
	ct, body := rawGet(t, ts, "pki/ca/pem")
	if blk, _ := pem.Decode(body); blk == nil || !strings.HasPrefix(ct, "application/pem") {
		t.Fatalf("pki/ca/pem: %q %q", ct, body)
	}
	if ct, body := rawGet(t, ts, "pki/crl/pem"); !strings.Contains(string(body), "BEGIN X509 CRL") {
		t.Fatalf("pki/crl/pem: %q %q", ct, body)
	}
	if s, err := c.Logical().Read("pki/cert/ca"); err != nil || !strings.Contains(s.Data["certificate"].(string), "BEGIN CERTIFICATE") {
		t.Fatalf("pki/cert/ca (JSON): %v %v", s, err)
	}

	// A use-limited token is deleted at its last use, before the engine
	// answers: the lease it obtained is revoked with it all the same.
	once, err := c.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"issuer"}, TTL: "1h", NumUses: 1})
	if err != nil {
		t.Fatal(err)
	}
	last, err := ts.newClient(t, once.Auth.ClientToken).Logical().Write("pki/issue/web", map[string]any{"common_name": "e.edge.example"})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "the exhausted token's lease to be revoked", func() bool { return leaseGone(c, last.LeaseID) })
	if !crlSerials(t, ts)[last.Data["serial_number"].(string)] {
		t.Fatal("the certificate of an exhausted token's lease is not on the CRL")
	}

	// TTL above the role's max_ttl → 400 naming the field.
	if _, err := c.Logical().Write("pki/issue/web", map[string]any{"common_name": "c.edge.example", "ttl": "3h"}); statusOf(err) != 400 || !strings.Contains(err.Error(), "ttl") {
		t.Fatalf("ttl above max_ttl: %v", err)
	}
	// Unmounting revokes the mount's leases first.
	if err := c.Sys().Unmount("pki"); err != nil {
		t.Fatal(err)
	}
	if !leaseGone(c, other.LeaseID) {
		t.Fatal("a lease of an unmounted pki mount is still there")
	}
}

// restart closes the server and opens a new one on the same storage,
// unsealed with the dev key, as a process restart does.
func restart(t *testing.T, ts *testServer) {
	t.Helper()
	ts.srv.Close()
	srv, err := httpapi.New(httpapi.Config{Physical: ts.phys, StorageType: "inmem", MaxRequestSize: 1 << 20})
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
	ts.srv, ts.addr = srv, "http://"+ln.Addr().String()
	ts.client = ts.newClient(t, ts.root)
	if st, err := ts.client.Sys().Unseal(hex.EncodeToString(ts.key)); err != nil || st.Sealed {
		t.Fatalf("unseal after restart: %+v %v", st, err)
	}
}

// Leases still expire on time after a restart: the expiry queue is rebuilt
// from storage at unseal and revokes what fell due.
func TestLeasesExpireAcrossRestart(t *testing.T) {
	ts := startServer(t, true)
	setupPKI(t, ts.client)
	var short []*vault.Secret
	for _, cn := range []string{"a", "b", "c"} {
		s, err := ts.client.Logical().Write("pki/issue/web", map[string]any{"common_name": cn + ".edge.example", "ttl": "2s"})
		if err != nil {
			t.Fatal(err)
		}
		short = append(short, s)
	}
	long, err := ts.client.Logical().Write("pki/issue/web", map[string]any{"common_name": "d.edge.example"})
	if err != nil {
		t.Fatal(err)
	}
	restart(t, ts)
	c := ts.client
	for _, s := range short {
		if _, err := c.Sys().Lookup(s.LeaseID); err != nil {
			t.Fatalf("lease lost in the restart: %v", err)
		}
	}
	waitUntil(t, 10*time.Second, "the short leases to expire", func() bool {
		for _, s := range short {
			if !leaseGone(c, s.LeaseID) {
				return false
			}
		}
		return true
	})
	// Their certificates expired with them: nothing to list on the CRL.
	revoked := crlSerials(t, ts)
	for _, s := range short {
		if revoked[s.Data["serial_number"].(string)] {
			t.Fatalf("expired certificate %v was added to the CRL", s.Data["serial_number"])
		}
	}
	if _, err := c.Sys().Lookup(long.LeaseID); err != nil {
		t.Fatalf("a lease not yet due is gone: %v", err)
	}
}

// PostgreSQL down during a revocation: the lease stays, is listed as
// failing, and is revoked (the user dropped) once the database is back.
func TestDatabaseRevocationWhilePostgresDown(t *testing.T) {
	pg := pgtest.New(t)
	pgURL := pg.URL
	_, _, pw, err := pgtest.SplitURL(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, true)
	c := ts.client
	setupDatabase(t, c, pgURL)
	// TTL above max → 400 naming the field, and nothing stored.
	if _, err := c.Logical().Write("database/roles/bad", map[string]any{"db_name": "pg", "default_ttl": "3h", "max_ttl": "2h",
		"creation_statements": `CREATE ROLE "{{name}}"`}); statusOf(err) != 400 || !strings.Contains(err.Error(), "ttl") {
		t.Fatalf("default_ttl above max_ttl: %v", err)
	}
	if s, err := c.Logical().Read("database/roles/bad"); s != nil || err != nil {
		t.Fatalf("a refused role was stored: %v %v", s, err)
	}
	creds, err := c.Logical().Read("database/creds/ro")
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	err = c.Sys().Revoke(creds.LeaseID)
	if statusOf(err) != 500 || !strings.Contains(err.Error(), "retried") {
		t.Fatalf("revoke with PostgreSQL down: %v, want a 500 saying it will be retried", err)
	}
	if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), creds.Data["password"].(string)) {
		t.Fatal("the error shows a password")
	}
	look, err := c.Sys().Lookup(creds.LeaseID)
	if err != nil || look.Data["revoke_attempts"] == nil || look.Data["last_error"] == "" {
		t.Fatalf("the failing lease: %v %v", look, err)
	}
	failing, err := c.Logical().List("sys/leases/failing")
	if err != nil || failing == nil || !strings.Contains(strings.Join(toStrings(failing.Data["keys"]), " "), creds.LeaseID) {
		t.Fatalf("sys/leases/failing: %v %v", failing, err)
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the retried revocation", func() bool { return leaseGone(c, creds.LeaseID) })
	cfg, err := pgx.ParseConfig(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = creds.Data["username"].(string), creds.Data["password"].(string)
	if conn, err := pgx.ConnectConfig(context.Background(), cfg); err == nil {
		conn.Close(context.Background())
		t.Fatal("the user of a revoked lease still logs in")
	}
}

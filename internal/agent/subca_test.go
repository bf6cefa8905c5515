package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/engine/pki"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage/inmem"
	vault "github.com/hashicorp/vault/api"
)

// mountSubCAPKI mounts "pki" in the test zone with a root CA, a role "web"
// that allows offline sub-CAs and a role "closed" that does not; it
// returns the root.
func mountSubCAPKI(t *testing.T, cp *controlPlane) *x509.Certificate {
	t.Helper()
	if err := cp.zone.Sys().Mount("pki", &vault.MountInput{Type: "pki"}); err != nil {
		t.Fatal(err)
	}
	root, err := cp.zone.Logical().Write("pki/root/generate/internal", map[string]any{"common_name": "Edge Root", "key_type": "ec", "ttl": "720h"})
	if err != nil {
		t.Fatal(err)
	}
	for name, allow := range map[string]bool{"web": true, "closed": false} {
		if _, err := cp.zone.Logical().Write("pki/roles/"+name, map[string]any{"allowed_domains": "edge.example", "allow_subdomains": true,
			"allow_ip_sans": false, "key_type": "ec", "ttl": "1h", "max_ttl": "2h", "allow_offline_sub_ca": allow, "offline_sub_ca_ttl": "6h"}); err != nil {
			t.Fatal(err)
		}
	}
	blk, _ := pem.Decode([]byte(root.Data["certificate"].(string)))
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pemCerts decodes PEM certificates.
func pemCerts(t *testing.T, pems ...string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, p := range pems {
		blk, _ := pem.Decode([]byte(p))
		if blk == nil {
			t.Fatalf("no PEM in %.40q", p)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// issueBody sends PUT /v1/pki/issue/<role> with the local token.
func issueBody(t *testing.T, info Info, role, body string) (int, map[string]any) {
	t.Helper()
	status, _, out, _ := rawDo(t, &http.Client{Timeout: 10 * time.Second}, http.MethodPut, "http://"+info.Listen, "/v1/pki/issue/"+role, info.LocalToken, []byte(body))
	return status, out
}

// The agent holds a sub-CA while online; offline it issues from it for the
// local token, in Vault's shape, verifiable up to the zone's root with the
// name constraints enforced; a name outside the role is 400 naming the
// field; a role whose sub-CA the server refused is 503; each issue is
// audited with its serial once the server is back; a restarted agent
// still issues offline from the sealed sub-CA.
func TestOfflineSubCAIssue(t *testing.T) {
	cp := startControlPlane(t, "24h")
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	if err := cp.admin.Sys().EnableAuditWithOptions("file", &vault.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": auditFile}}); err != nil {
		t.Fatal(err)
	}
	root := mountSubCAPKI(t, cp)
	cfg := newConfig(t, cp, cp.joinToken(t, "node-a"), nil)
	cfg.OfflinePKI = []OfflinePKI{{Mount: "pki", Role: "web"}, {Mount: "/pki/", Role: "closed"}}
	ag := startAgent(t, cfg)
	waitFor(t, "the sub-CA on the server", func() bool {
		l, err := cp.zone.Logical().List("pki/certs")
		return err == nil && l != nil && len(l.Data["keys"].([]any)) == 1
	})
	waitFor(t, "the server's refusal of the closed role, in its audit log", func() bool {
		raw, _ := os.ReadFile(auditFile)
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.Contains(l, `"path":"sys/agents/pki-sub-ca"`) && strings.Contains(l, `"type":"response"`) &&
				strings.Contains(l, "allow_offline_sub_ca") {
				return true
			}
		}
		return false
	})

	// Online, the request goes to the server: with a zone token the
	// mount's CA issues.
	zc := agentClient(t, ag.info, cp.zone.Token())
	zc.SetNamespace(testZone)
	on, err := zc.Logical().Write("pki/issue/web", map[string]any{"common_name": "on.edge.example"})
	if err != nil {
		t.Fatal(err)
	}
	if pemCerts(t, on.Data["issuing_ca"].(string))[0].Subject.CommonName != "Edge Root" {
		t.Fatal("online issue was not answered by the server's CA")
	}

	waitFor(t, "the agent holding the sub-CA", func() bool {
		_, h := health(t, ag.info)
		roles, _ := h["offline_pki"].(map[string]any)
		return roles["pki/web"] != nil && roles["pki/web"] != ""
	})
	addr := cp.hts.Listener.Addr().String()
	cp.stop()
	waitFor(t, "offline", func() bool { _, h := health(t, ag.info); return h["mode"] != "online" })

	status, out := issueBody(t, ag.info, "web", `{"common_name":"api.edge.example","alt_names":"www.edge.example","ttl":"30m"}`)
	if status != http.StatusOK {
		t.Fatalf("offline issue: %d %v", status, out)
	}
	data := out["data"].(map[string]any)
	for _, k := range []string{"certificate", "issuing_ca", "private_key", "private_key_type", "serial_number"} {
		if s, _ := data[k].(string); s == "" {
			t.Fatalf("offline issue: no %s in %v", k, data)
		}
	}
	if data["private_key_type"] != "ec" || out["mount_type"] != "pki" || !strings.Contains(strings.Join(toStrings(out["warnings"]), " "), "offline") {
		t.Fatalf("offline issue answer: %v", out)
	}
	leaf := pemCerts(t, data["certificate"].(string))[0]
	var chainPEM []string
	for _, c := range data["ca_chain"].([]any) {
		chainPEM = append(chainPEM, c.(string))
	}
	chain := pemCerts(t, chainPEM...)
	sub := pemCerts(t, data["issuing_ca"].(string))[0]
	if len(chain) != 2 || !chain[0].Equal(sub) || !chain[1].Equal(root) || !sub.IsCA || sub.Subject.CommonName != "node-a" {
		t.Fatalf("chain: %d certificates, sub-CA %q", len(chain), sub.Subject.CommonName)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inter.AddCert(sub)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "www.edge.example",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("the offline leaf does not verify up to the zone's root: %v", err)
	}
	if d := time.Until(leaf.NotAfter); d > 30*time.Minute || d < 29*time.Minute {
		t.Fatalf("leaf lifetime %s, want 30m", d)
	}
	// The private key is the leaf's.
	kblk, _ := pem.Decode([]byte(data["private_key"].(string)))
	k, err := x509.ParseECPrivateKey(kblk.Bytes)
	if err != nil || !k.PublicKey.Equal(leaf.PublicKey) {
		t.Fatalf("private_key: %v", err)
	}
	// The sub-CA carries the name constraints and path length 0 (that a
	// leaf outside them fails verification is tested in package pki).
	if len(sub.PermittedDNSDomains) == 0 || sub.PermittedDNSDomains[0] != ".edge.example" || sub.MaxPathLen != 0 || !sub.MaxPathLenZero {
		t.Fatalf("sub-CA constraints: %q pathlen %d", sub.PermittedDNSDomains, sub.MaxPathLen)
	}

	for _, tc := range []struct {
		role, body string
		status     int
		want       string
	}{
		{"web", `{"common_name":"api.other.example"}`, 400, "common_name"},
		{"web", `{"common_name":"a.edge.example","ip_sans":"10.0.0.1"}`, 400, "ip_sans"},
		{"web", `{"common_name":"a.edge.example","ttl":"3h"}`, 400, "ttl"},
		{"web", `{"common_name":`, 400, "JSON"},
		{"closed", `{"common_name":"a.edge.example"}`, 503, "does not allow an offline sub-CA"},
		{"other", `{"common_name":"a.edge.example"}`, 503, ErrControlPlaneUnreachable.Error()},
	} {
		status, out := issueBody(t, ag.info, tc.role, tc.body)
		if status != tc.status || !strings.Contains(strings.Join(toStrings(out["errors"]), " "), tc.want) {
			t.Errorf("%s %s: %d %v, want %d naming %q", tc.role, tc.body, status, out, tc.status, tc.want)
		}
	}
	// Another token gets nothing offline.
	if status, _, _, _ := rawDo(t, &http.Client{}, http.MethodPut, "http://"+ag.info.Listen, "/v1/pki/issue/web", cp.zone.Token(),
		[]byte(`{"common_name":"a.edge.example"}`)); status != http.StatusServiceUnavailable {
		t.Fatalf("offline issue with a server token: %d", status)
	}

	// Restarted while the server is down, the agent issues from the sealed sub-CA.
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	ag = startAgent(t, cfg)
	status, out = issueBody(t, ag.info, "web", `{"common_name":"again.edge.example"}`)
	if status != http.StatusOK {
		t.Fatalf("offline issue after a restart: %d %v", status, out)
	}
	again := out["data"].(map[string]any)
	if again["issuing_ca"] != data["issuing_ca"] {
		t.Fatal("the restarted agent issued from another sub-CA")
	}

	// Back online, the spool reaches the audit log with the serials.
	cp.start(t, addr)
	waitFor(t, "online", func() bool { _, h := health(t, ag.info); return h["mode"] == "online" })
	waitFor(t, "the spool forwarded", func() bool { _, h := health(t, ag.info); return h["audit_pending"] == float64(0) })
	serials := map[string]bool{}
	for _, e := range agentEntries(t, auditFile) {
		req := e["request"].(map[string]any)
		resp := e["response"].(map[string]any)
		if req["path"] == "pki/issue/web" && resp["status_code"] == float64(200) {
			s, _ := resp["serial_number"].(string)
			serials[s] = true
		}
	}
	if !serials[data["serial_number"].(string)] || !serials[again["serial_number"].(string)] || len(serials) != 2 {
		t.Fatalf("audit log serials %v, want %s and %s", serials, data["serial_number"], again["serial_number"])
	}

	// Refused by the server (quarantined), the agent is not merely offline:
	// it issues nothing.
	if _, err := cp.zone.Logical().Write("sys/agents/node-a/quarantine", map[string]any{"reason": "test"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "offline issue refused to a quarantined agent", func() bool {
		status, out := issueBody(t, ag.info, "web", `{"common_name":"q.edge.example"}`)
		return status == http.StatusForbidden && strings.Contains(strings.Join(toStrings(out["errors"]), " "), "refuses this agent")
	})
}

// The sub-CA is refreshed, with a new key, at two thirds of its life.
func TestOfflineSubCARefresh(t *testing.T) {
	cp := startControlPlane(t, "24h")
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	if err := cp.admin.Sys().EnableAuditWithOptions("file", &vault.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": auditFile}}); err != nil {
		t.Fatal(err)
	}
	mountSubCAPKI(t, cp)
	// A 10-minute sub-CA (refreshed after 6m40s): the agent's clock can
	// move that far without its own certificate (1h) being renewed, which
	// would resynchronise it with the server's.
	if _, err := cp.zone.Logical().Write("pki/roles/web", map[string]any{"allowed_domains": "edge.example", "allow_subdomains": true,
		"key_type": "ec", "ttl": "5m", "max_ttl": "10m", "allow_offline_sub_ca": true, "offline_sub_ca_ttl": "10m"}); err != nil {
		t.Fatal(err)
	}
	clk := &testClock{}
	cfg := newConfig(t, cp, cp.joinToken(t, "node-a"), clk)
	cfg.OfflinePKI = []OfflinePKI{{Mount: "pki", Role: "web"}}
	logs := &logBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ag := startAgent(t, cfg)
	count := func() int {
		l, err := cp.zone.Logical().List("pki/certs")
		if err != nil || l == nil {
			return 0
		}
		return len(l.Data["keys"].([]any))
	}
	waitFor(t, "the first sub-CA", func() bool { return count() == 1 })
	clk.advance(5 * time.Minute) // half of 10m: not yet
	time.Sleep(3 * subCAPoll)
	if n := count(); n != 1 {
		t.Fatalf("%d sub-CAs after half the life, want 1", n)
	}
	clk.advance(2 * time.Minute) // past two thirds
	waitFor(t, "the refreshed sub-CA", func() bool { return count() == 2 })
	if status, out := issueBody(t, ag.info, "web", `{"common_name":"a.edge.example"}`); status != http.StatusForbidden {
		t.Fatalf("online issue with the local token: %d %v, want the server's 403", status, out)
	}

	// The role stops allowing it: at the next refresh the agent drops its
	// sub-CA, and offline it issues nothing.
	if _, err := cp.zone.Logical().Write("pki/roles/web", map[string]any{"allowed_domains": "edge.example", "allow_subdomains": true,
		"key_type": "ec", "ttl": "5m", "max_ttl": "10m"}); err != nil {
		t.Fatal(err)
	}
	clk.advance(8 * time.Minute) // past the refresh, before the expiry
	waitFor(t, "the server's refusal, in its audit log", func() bool {
		raw, _ := os.ReadFile(auditFile)
		return strings.Contains(string(raw), "this role does not allow an offline sub-CA")
	})
	if os.Getenv("AGENT_TEST_LOG") == "" {
		waitFor(t, "the agent to drop its sub-CA", func() bool { return strings.Contains(logs.String(), "sub-CA is dropped") })
	}
	cp.stop()
	waitFor(t, "offline", func() bool { _, h := health(t, ag.info); return h["mode"] != "online" })
	status, out := issueBody(t, ag.info, "web", `{"common_name":"a.edge.example"}`)
	if status != http.StatusServiceUnavailable || !strings.Contains(strings.Join(toStrings(out["errors"]), " "), "holds no offline sub-CA") {
		t.Fatalf("offline issue after the role stopped allowing it: %d %v", status, out)
	}
}

// Config validation of OfflinePKI.
func TestOfflinePKIConfig(t *testing.T) {
	base := Config{ServerAddr: "https://127.0.0.1:8200", Zone: "edge-1", StateDir: "/tmp/x", Listen: "127.0.0.1:0"}
	for _, tc := range []struct {
		l    []OfflinePKI
		want string
	}{
		{[]OfflinePKI{{Mount: "", Role: "web"}}, "OfflinePKI[0].Mount"},
		{[]OfflinePKI{{Mount: "pki", Role: ""}}, "OfflinePKI[0].Role"},
		{[]OfflinePKI{{Mount: "pki", Role: "a/b"}}, "OfflinePKI[0].Role"},
		{[]OfflinePKI{{Mount: "sys", Role: "web"}}, "OfflinePKI[0].Mount"},
		{[]OfflinePKI{{Mount: "pki/../kv", Role: "web"}}, "OfflinePKI[0].Mount"},
		{[]OfflinePKI{{Mount: "pki", Role: "web"}, {Mount: "pki/", Role: "web"}}, "listed twice"},
	} {
		c := base
		c.OfflinePKI = tc.l
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.l, err, tc.want)
		}
	}
	c := base
	c.OfflinePKI = []OfflinePKI{{Mount: "pki/int", Role: "web"}, {Mount: "pki", Role: "web"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// FuzzSubCAAnswer checks the agent's reading of the server's sub-CA answer
// (and of its sealed copy) never panics and accepts only a CA certificate
// for the agent's key with the configured role's rules.
func FuzzSubCAAnswer(f *testing.F) {
	b := pki.New(inmem.New(), pki.Options{})
	ctx := context.Background()
	for _, req := range []struct{ path, body string }{
		{"root/generate/internal", `{"common_name":"Root","key_type":"ec"}`},
		{"roles/web", `{"allowed_domains":"edge.example","allow_subdomains":true,"key_type":"ec","allow_offline_sub_ca":true}`},
	} {
		var data map[string]any
		_ = json.Unmarshal([]byte(req.body), &data)
		if _, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: req.path, Data: data}); err != nil {
			f.Fatal(err)
		}
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := b.SignAgentSubCA(ctx, "web", "node-a", &key.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	real, _ := json.Marshal(s.Data())
	f.Add(real)
	f.Add([]byte(`{"certificate":"","ca_chain":[],"constraints":{}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, err := parseSubCA(raw, key, "web")
		if err != nil {
			return
		}
		if !h.issuer.CA.IsCA || !key.PublicKey.Equal(h.issuer.CA.PublicKey) || h.issuer.Constraints.Role() != "web" {
			t.Fatal("accepted a sub-CA that is not a CA for the agent's key and role")
		}
		if _, err := parseSubCA(raw, key, "other"); err == nil {
			t.Fatal("accepted the answer for another role")
		}
	})
}

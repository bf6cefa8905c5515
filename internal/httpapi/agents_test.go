package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// agentKey returns a new P-256 key and its base64 PKIX DER.
func newAgentKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return k, base64.StdEncoding.EncodeToString(der)
}

func TestAgentEnrollment(t *testing.T) {
	ts, file, _ := auditedServer(t)
	for _, z := range []string{"edge-1", "edge-2"} {
		if _, err := ts.client.Logical().Write("sys/zones/"+z, map[string]any{}); err != nil {
			t.Fatal(err)
		}
	}
	zc := func(zone string) *vault.Client {
		c, _ := ts.client.Clone()
		c.SetToken(ts.root)
		s, err := ts.client.Logical().Write("sys/zones/"+zone+"/root-token", nil)
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(s.Auth.ClientToken)
		c.SetNamespace(zone)
		return c
	}
	z1, z2 := zc("edge-1"), zc("edge-2")
	jt, err := z1.Logical().Write("auth/attest/join-token", map[string]any{"ttl": "15m", "agent_id": "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	token := jt.Data["join_token"].(string)
	if !strings.Contains(jt.Data["attestation"].(string), "weak") {
		t.Fatalf("join token output does not say it is weak: %v", jt.Data)
	}
	anon := ts.newClient(t, "")
	anon.SetNamespace("edge-1")
	key, pub := newAgentKey(t)
	en, err := anon.Logical().Write("auth/attest/enroll", map[string]any{"join_token": token, "public_key": pub})
	if err != nil {
		t.Fatal(err)
	}
	if en.Data["spiffe_id"] != "spiffe://edgevault.local/zone/edge-1/agent/node-a" {
		t.Fatalf("enroll: %v", en.Data)
	}
	// The chain verifies against the zone CA, for client auth, with the SPIFFE ID.
	var chain []*x509.Certificate
	rest := []byte(en.Data["certificate_chain"].(string))
	for {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(en.Data["ca_certificate"].(string)))
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("agent certificate does not verify: %v", err)
	}

	// Replayed, foreign-zone and garbage tokens are refused, each saying why.
	for _, tc := range []struct {
		ns, token, want string
	}{
		{"edge-1", token, "already used"},
		{"edge-2", token, "another zone"},
		{"edge-1", "evjt.edge-1.bogus", "join token"},
		{"edge-1", "", "join_token is required"},
	} {
		c := ts.newClient(t, "")
		c.SetNamespace(tc.ns)
		_, pub2 := newAgentKey(t)
		_, err := c.Logical().Write("auth/attest/enroll", map[string]any{"join_token": tc.token, "public_key": pub2})
		if statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("enroll with %q in %s: %v, want 400 %q", tc.token, tc.ns, err, tc.want)
		}
	}
	short, err := z1.Logical().Write("auth/attest/join-token", map[string]any{"ttl": "1s"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := anon.Logical().Write("auth/attest/enroll", map[string]any{"join_token": short.Data["join_token"], "public_key": pub}); statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
	// A zone's token cannot create join tokens without sudo; another zone's
	// registry does not show the agent.
	if _, err := z1.Logical().Write("auth/attest/join-token", map[string]any{"ttl": "forever"}); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("bad ttl: %v", err)
	}
	ag, err := z1.Logical().Read("sys/agents/node-a")
	if err != nil || ag.Data["status"] != "active" || !strings.Contains(ag.Data["attestation_strength"].(string), "no hardware evidence") {
		t.Fatalf("sys/agents/node-a: %v %v", ag, err)
	}
	if l, err := z2.Logical().List("sys/agents"); err != nil || len(l.Data["keys"].([]any)) != 0 {
		t.Fatalf("edge-2 sees agents: %v %v", l, err)
	}

	// Renewal over mTLS with the agent's certificate; quarantine refuses it.
	tlsSrv := httptest.NewUnstartedServer(ts.srv.Handler())
	tlsSrv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	certs := [][]byte{}
	for _, c := range chain {
		certs = append(certs, c.Raw)
	}
	agentHTTP := tlsSrv.Client()
	agentHTTP.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{{Certificate: certs, PrivateKey: key}}
	renew := func() error {
		cfg := vault.DefaultConfig()
		cfg.Address, cfg.HttpClient, cfg.MaxRetries = tlsSrv.URL, agentHTTP, 0
		c, _ := vault.NewClient(cfg)
		c.ClearToken()
		c.SetNamespace("edge-1")
		_, pub3 := newAgentKey(t)
		_, err := c.Logical().Write("auth/attest/renew", map[string]any{"public_key": pub3})
		return err
	}
	if _, err := z1.Logical().Write("sys/agents/node-a/quarantine", map[string]any{"reason": "alert 42"}); err != nil {
		t.Fatal(err)
	}
	if err := renew(); statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "quarantined") {
		t.Fatalf("renew while quarantined: %v", err)
	}
	if _, err := z1.Logical().Delete("sys/agents/node-a/quarantine"); err != nil {
		t.Fatal(err)
	}
	if err := renew(); err != nil {
		t.Fatalf("renew: %v", err)
	}
	// The answer to a renewal can be lost: the old certificate renews again
	// until a new one is used (attest's tests cover the refusal after).
	if err := renew(); err != nil {
		t.Fatalf("renew again with the old certificate: %v", err)
	}
	if _, err := z1.Logical().Delete("sys/agents/node-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := z1.Logical().Read("sys/agents/node-a"); statusOf(err) != http.StatusNotFound && err != nil {
		t.Fatalf("deleted agent: %v", err)
	}
	// Refused enrollments are in the audit log, with their reason.
	entries := readEntries(t, file)
	refused := 0
	for _, e := range entries {
		req, _ := e["request"].(map[string]any)
		if req != nil && req["path"] == "auth/attest/enroll" && e["type"] == "response" && strings.Contains(e["error"].(string), "already used") {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("the replayed join token is not in the audit log")
	}
}

package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// TestAgentSubCA: an enrolled agent obtains an offline sub-CA over mTLS for
// a role that allows it; everything else is refused, saying why, and every
// request is in the audit log.
func TestAgentSubCA(t *testing.T) {
	ts, file, _ := auditedServer(t)
	for _, z := range []string{"edge-1", "edge-2"} {
		if _, err := ts.client.Logical().Write("sys/zones/"+z, map[string]any{}); err != nil {
			t.Fatal(err)
		}
	}
	zc := func(zone string) *vault.Client {
		c, _ := ts.client.Clone()
		s, err := ts.client.Logical().Write("sys/zones/"+zone+"/root-token", nil)
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(s.Auth.ClientToken)
		c.SetNamespace(zone)
		return c
	}
	z1 := zc("edge-1")
	if err := z1.Sys().Mount("pki", &vault.MountInput{Type: "pki"}); err != nil {
		t.Fatal(err)
	}
	if err := z1.Sys().Mount("secret2", &vault.MountInput{Type: "kv-v2"}); err != nil {
		t.Fatal(err)
	}
	root, err := z1.Logical().Write("pki/root/generate/internal", map[string]any{"common_name": "Edge Root", "key_type": "ec", "ttl": "720h"})
	if err != nil {
		t.Fatal(err)
	}
	for name, off := range map[string]bool{"web": true, "closed": false} {
		if _, err := z1.Logical().Write("pki/roles/"+name, map[string]any{"allowed_domains": "edge.example", "allow_subdomains": true,
			"key_type": "ec", "max_ttl": "1h", "allow_offline_sub_ca": off, "offline_sub_ca_ttl": "6h"}); err != nil {
			t.Fatal(err)
		}
	}

	// Enroll node-a in edge-1 and talk to the server with its certificate.
	jt, err := z1.Logical().Write("auth/attest/join-token", map[string]any{"agent_id": "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	anon := ts.newClient(t, "")
	anon.SetNamespace("edge-1")
	idKey, idPub := newAgentKey(t)
	en, err := anon.Logical().Write("auth/attest/enroll", map[string]any{"join_token": jt.Data["join_token"], "public_key": idPub})
	if err != nil {
		t.Fatal(err)
	}
	var certs [][]byte
	for rest := []byte(en.Data["certificate_chain"].(string)); ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		certs = append(certs, blk.Bytes)
	}
	tlsSrv := httptest.NewUnstartedServer(ts.srv.Handler())
	tlsSrv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	client := func(withCert bool, ns string) *vault.Client {
		tr := tlsSrv.Client().Transport.(*http.Transport).Clone() // tlsSrv.Client() is shared
		if withCert {
			tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: certs, PrivateKey: idKey}}
		}
		hc := &http.Client{Transport: tr}
		cfg := vault.DefaultConfig()
		cfg.Address, cfg.HttpClient, cfg.MaxRetries = tlsSrv.URL, hc, 0
		c, _ := vault.NewClient(cfg)
		c.ClearToken()
		c.SetNamespace(ns)
		return c
	}
	agent := client(true, "edge-1")
	subKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&subKey.PublicKey)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))

	sub, err := agent.Logical().Write("sys/agents/pki-sub-ca", map[string]any{"mount": "pki", "role": "web", "public_key": pubPEM})
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(sub.Data["certificate"].(string)))
	subCert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rblk, _ := pem.Decode([]byte(root.Data["certificate"].(string)))
	rootCert, _ := x509.ParseCertificate(rblk.Bytes)
	if err := subCert.CheckSignatureFrom(rootCert); err != nil || !subCert.IsCA || !subCert.MaxPathLenZero ||
		subCert.Subject.CommonName != "node-a" || !slices.Contains(subCert.PermittedDNSDomains, ".edge.example") {
		t.Fatalf("sub-CA: %v IsCA=%v CN=%q permitted=%q", err, subCert.IsCA, subCert.Subject.CommonName, subCert.PermittedDNSDomains)
	}
	if !subKey.PublicKey.Equal(subCert.PublicKey) {
		t.Fatal("the sub-CA does not certify the agent's key")
	}
	cons := sub.Data["constraints"].(map[string]any)
	if cons["role"] != "web" || cons["key_type"] != "ec" || cons["allow_subdomains"] != true {
		t.Fatalf("constraints: %v", cons)
	}
	list, err := z1.Logical().List("pki/certs")
	if err != nil || !slices.Contains(list.Data["keys"].([]any), any(strings.ReplaceAll(sub.Data["serial_number"].(string), ":", "-"))) {
		t.Fatalf("LIST pki/certs lacks the sub-CA: %v %v", list, err)
	}

	for _, tc := range []struct {
		name string
		c    *vault.Client
		body map[string]any
		want string
	}{
		{"role without allow_offline_sub_ca", agent, map[string]any{"mount": "pki", "role": "closed", "public_key": pubPEM}, "allow_offline_sub_ca"},
		{"unknown role", agent, map[string]any{"mount": "pki", "role": "nope", "public_key": pubPEM}, "unknown role"},
		{"no such mount", agent, map[string]any{"mount": "pki9", "role": "web", "public_key": pubPEM}, "mount"},
		{"not a pki mount", agent, map[string]any{"mount": "secret2", "role": "web", "public_key": pubPEM}, "not pki"},
		{"bad key", agent, map[string]any{"mount": "pki", "role": "web", "public_key": "garbage"}, "public_key"},
		{"no role", agent, map[string]any{"mount": "pki", "public_key": pubPEM}, "role"},
		{"no client certificate", client(false, "edge-1"), map[string]any{"mount": "pki", "role": "web", "public_key": pubPEM}, "TLS client certificate"},
		{"another zone", client(true, "edge-2"), map[string]any{"mount": "pki", "role": "web", "public_key": pubPEM}, "belongs to zone"},
	} {
		_, err := tc.c.Logical().Write("sys/agents/pki-sub-ca", tc.body)
		if statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want 400 naming %q", tc.name, err, tc.want)
		}
	}
	// A quarantined agent gets nothing.
	if _, err := z1.Logical().Write("sys/agents/node-a/quarantine", map[string]any{"reason": "tamper"}); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Logical().Write("sys/agents/pki-sub-ca", map[string]any{"mount": "pki", "role": "web", "public_key": pubPEM}); statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "quarantined") {
		t.Fatalf("quarantined agent: %v", err)
	}
	// Every request, refusals included, is audited.
	n, refused := 0, 0
	for _, e := range readEntries(t, file) {
		req, _ := e["request"].(map[string]any)
		if req == nil || req["path"] != "sys/agents/pki-sub-ca" || e["type"] != "response" {
			continue
		}
		n++
		if s, _ := e["error"].(string); strings.Contains(s, "quarantined") {
			refused++
		}
	}
	if n != 10 || refused != 1 {
		t.Fatalf("audit log: %d sub-CA responses (%d quarantine refusals), want 10 (1)", n, refused)
	}
}

package httpapi_test

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// A pki mount through the real Vault client: a root CA, a role, a leaf
// issued and checked against the CA with crypto/x509; a name the role does
// not allow is refused naming the field.
func TestPKIMount(t *testing.T) {
	ts := startServer(t, true)
	c := ts.client
	if err := c.Sys().Mount("pki", &vault.MountInput{Type: "pki"}); err != nil {
		t.Fatal(err)
	}
	root, err := c.Logical().Write("pki/root/generate/internal", map[string]any{"common_name": "Edge Root", "key_type": "ec", "ttl": "24h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().Write("pki/roles/web", map[string]any{"allowed_domains": "edge.example", "allow_subdomains": true, "key_type": "ec", "max_ttl": "1h"}); err != nil {
		t.Fatal(err)
	}
	leaf, err := c.Logical().Write("pki/issue/web", map[string]any{"common_name": "api.edge.example", "ttl": "10m"})
	if err != nil {
		t.Fatal(err)
	}
	parse := func(field string, s *vault.Secret) *x509.Certificate {
		t.Helper()
		blk, _ := pem.Decode([]byte(s.Data[field].(string)))
		if blk == nil {
			t.Fatalf("%s: no PEM in %v", field, s.Data[field])
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	roots := x509.NewCertPool()
	roots.AddCert(parse("certificate", root))
	cert := parse("certificate", leaf)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "api.edge.example", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("the issued certificate does not verify against the mount's CA: %v", err)
	}
	if leaf.Data["private_key"] == "" || leaf.Data["serial_number"] == "" {
		t.Fatalf("issue answer: %v", leaf.Data)
	}
	if _, err := c.Logical().Write("pki/issue/web", map[string]any{"common_name": "api.other.example"}); statusOf(err) != 400 || !strings.Contains(err.Error(), "common_name") {
		t.Fatalf("a name outside allowed_domains: %v", err)
	}
	if err := c.Sys().Mount("pki2", &vault.MountInput{Type: "pki", Options: map[string]string{"version": "2"}}); statusOf(err) != 400 {
		t.Fatalf("pki with options: %v", err)
	}
}

package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"testing"

	"github.com/edgevault/edgevault/internal/logical"
)

// FuzzConstraintsJSON checks that decoding constraints (what an agent
// receives with its sub-CA) never panics, and that accepted constraints
// re-encode to constraints that decode the same.
func FuzzConstraintsJSON(f *testing.F) {
	for _, s := range []string{
		`{"role":"web","allowed_domains":["example.com"],"allow_subdomains":true,"key_type":"ec","key_bits":256,"ttl":3600,"max_ttl":14400,"allow_offline_sub_ca":true,"offline_sub_ca_ttl":43200}`,
		`{"role":"g","allowed_domains":["*.glob.net"],"allow_glob_domains":true,"key_type":"rsa","key_bits":2048,"ttl":60,"max_ttl":60}`,
		`{"role":"x","allow_any_name":true,"key_type":"ed25519","ttl":1,"max_ttl":2}`,
		`{"role":"y","allowed_domains":["a.com"],"allow_bare_domains":true,"key_type":"ec","ttl":0,"max_ttl":1,"ext_key_usage":["CodeSigning"]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var c Constraints
		if err := json.Unmarshal([]byte(s), &c); err != nil {
			return
		}
		if c.TTL() > c.MaxTTL() || c.Role() == "" {
			t.Fatalf("accepted ttl %s above max_ttl %s or no role %q", c.TTL(), c.MaxTTL(), c.Role())
		}
		raw, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var c2 Constraints
		if err := json.Unmarshal(raw, &c2); err != nil {
			t.Fatalf("re-encoded constraints refused: %v", err)
		}
		a, _ := json.Marshal(c2)
		if string(a) != string(raw) {
			t.Fatalf("round trip changed the constraints:\n%s\n%s", raw, a)
		}
	})
}

// FuzzLocalIssue checks that an agent's offline issue never panics, fails
// only with ErrInvalidRequest, and that what it issues verifies under the
// sub-CA's name constraints.
func FuzzLocalIssue(f *testing.F) {
	for _, s := range []string{
		`{"common_name":"api.example.com","alt_names":"www.example.com","ttl":"30m"}`,
		`{"common_name":"localhost","exclude_cn_from_sans":true,"private_key_format":"pkcs8"}`,
		`{"common_name":"10.0.0.1"}`,
		`{"common_name":"*.example.com","format":"pem"}`,
		`{"common_name":"a.example.com","ip_sans":["::1"],"ttl":7200}`,
	} {
		f.Add(s)
	}
	h := newHarness(f)
	h.must(opW, "root/generate/internal", `{"common_name":"Zone Root","key_type":"ec"}`)
	h.must(opW, "roles/web", `{"allowed_domains":["example.com"],"allow_subdomains":true,"allow_ip_sans":false,"key_type":"ec","max_ttl":"4h","allow_offline_sub_ca":true}`)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := h.pki.SignAgentSubCA(context.Background(), "web", "node-1", k.Public())
	if err != nil {
		f.Fatal(err)
	}
	li := &LocalIssuer{Constraints: s.Constraints, CA: s.Certificate, Key: k, Clock: h.clock.Now}
	roots := x509.NewCertPool()
	root, _ := x509.ParseCertificate(h.pki.ca.Load().cert.Raw)
	roots.AddCert(root)
	inter := x509.NewCertPool()
	inter.AddCert(s.Certificate)
	f.Fuzz(func(t *testing.T, body string) {
		data, ok := decodeBody(body)
		if !ok {
			return
		}
		resp, err := li.Issue(data)
		if err != nil {
			if !errors.Is(err, logical.ErrInvalidRequest) {
				t.Fatalf("Issue: %v is not an invalid request", err)
			}
			return
		}
		leaf := parseCert(t, resp.Data["certificate"].(string))
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: h.clock.Now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("an issued leaf does not verify: %v (DNS %q, IP %v)", err, leaf.DNSNames, leaf.IPAddresses)
		}
	})
}

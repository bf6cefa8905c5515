package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

// subCAHarness is a mount with an EC root, a role allowing offline
// sub-CAs, and an agent key.
type subCAHarness struct {
	*harness
	root  *x509.Certificate
	roots *x509.CertPool
	key   *ecdsa.PrivateKey
}

func newSubCAHarness(t *testing.T, role string) *subCAHarness {
	t.Helper()
	h := &subCAHarness{harness: newHarness(t)}
	root := h.must(opW, "root/generate/internal", `{"common_name":"Zone Root","key_type":"ec","ttl":"8760h"}`)
	h.root = parseCert(t, str(t, root, "certificate"))
	h.roots = x509.NewCertPool()
	h.roots.AddCert(h.root)
	h.must(opW, "roles/web", role)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h.key = k
	return h
}

func (h *subCAHarness) subCA(t *testing.T) (SubCA, *LocalIssuer) {
	t.Helper()
	s, err := h.pki.SignAgentSubCA(context.Background(), "web", "node-7", h.key.Public())
	if err != nil {
		t.Fatalf("SignAgentSubCA: %v", err)
	}
	chain := append([]string{pemString("CERTIFICATE", s.Certificate.Raw)}, s.CAChain...)
	return s, &LocalIssuer{Constraints: s.Constraints, CA: s.Certificate, Key: h.key, Chain: chain, Clock: h.clock.Now}
}

// verify checks leaf up to the root through the sub-CA.
func (h *subCAHarness) verify(leaf, sub *x509.Certificate, at time.Time) error {
	inter := x509.NewCertPool()
	inter.AddCert(sub)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: h.roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

// rogueLeaf signs, with the sub-CA's key directly (as a thief would), a
// leaf for whatever names the test chooses.
func (h *subCAHarness) rogueLeaf(t *testing.T, sub *x509.Certificate, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl.SerialNumber = big.NewInt(42)
	tmpl.NotBefore, tmpl.NotAfter = h.clock.Now().Add(-time.Minute), h.clock.Now().Add(time.Hour)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, sub, k.Public(), h.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const webRole = `{"allowed_domains":["example.com"],"allow_subdomains":true,"allow_ip_sans":false,"key_type":"ec",
	"ttl":"1h","max_ttl":"4h","allow_offline_sub_ca":true,"offline_sub_ca_ttl":"12h"}`

// TestSubCACertificate checks what the sub-CA certificate says, that it is
// stored and listed, and that it cannot outlive the mount's CA.
func TestSubCACertificate(t *testing.T) {
	h := newSubCAHarness(t, webRole)
	s, _ := h.subCA(t)
	c := s.Certificate
	switch {
	case !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero:
		t.Fatalf("basic constraints: IsCA=%v MaxPathLen=%d zero=%v", c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
	case c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature:
		t.Fatalf("key usage %b", c.KeyUsage)
	case !c.PermittedDNSDomainsCritical || !slices.Equal(c.PermittedDNSDomains, []string{".example.com", "localhost", "localdomain"}):
		t.Fatalf("permitted DNS %q (critical %v)", c.PermittedDNSDomains, c.PermittedDNSDomainsCritical)
	case len(c.ExcludedIPRanges) != 2 || !slices.Equal(c.PermittedURIDomains, []string{"invalid"}):
		t.Fatalf("excluded IPs %v, permitted URI domains %q", c.ExcludedIPRanges, c.PermittedURIDomains)
	case c.Subject.CommonName != "node-7":
		t.Fatalf("subject %v", c.Subject)
	case !c.NotAfter.Equal(h.clock.Now().Add(12 * time.Hour)):
		t.Fatalf("NotAfter %v, want now+12h", c.NotAfter)
	case !h.key.PublicKey.Equal(c.PublicKey):
		t.Fatal("the sub-CA does not certify the agent's key")
	}
	if err := c.CheckSignatureFrom(h.root); err != nil {
		t.Fatal(err)
	}
	if s.Constraints.Role() != "web" || s.Constraints.MaxTTL() != 4*time.Hour {
		t.Fatalf("constraints: role %q max_ttl %s", s.Constraints.Role(), s.Constraints.MaxTTL())
	}
	list := h.must(logical.ListOperation, "certs", "")
	if !slices.Contains(list.Data["keys"].([]string), storageSerial(s.SerialNumber)) {
		t.Fatalf("LIST certs %v lacks the sub-CA %s", list.Data["keys"], s.SerialNumber)
	}
	cert := h.must(opR, "cert/"+s.SerialNumber, "")
	if parseCert(t, str(t, cert, "certificate")).SerialNumber.Cmp(c.SerialNumber) != 0 {
		t.Fatal("cert/:serial returns another certificate")
	}

	// A sub-CA never outlives the CA above it.
	h.must(opW, "roles/long", `{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"ec","allow_offline_sub_ca":true,"offline_sub_ca_ttl":"168h"}`)
	h.clock.Advance(8760*time.Hour - 48*time.Hour)
	s2, err := h.pki.SignAgentSubCA(context.Background(), "long", "node-7", h.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !s2.Certificate.NotAfter.Equal(h.root.NotAfter) {
		t.Fatalf("NotAfter %v, want the root's %v", s2.Certificate.NotAfter, h.root.NotAfter)
	}
}

// TestSubCAIssueVerifies issues offline and checks the leaf verifies up to
// the root with crypto/x509, and that the answer has issue's shape.
func TestSubCAIssueVerifies(t *testing.T) {
	h := newSubCAHarness(t, webRole)
	s, li := h.subCA(t)
	resp, err := li.Issue(body(t, `{"common_name":"api.example.com","alt_names":"www.example.com","ttl":"30m","colour":"blue"}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"certificate", "issuing_ca", "private_key", "private_key_type", "serial_number"} {
		str(t, resp, k)
	}
	if resp.Data["private_key_type"] != "ec" || len(resp.Data["ca_chain"].([]string)) != 2 {
		t.Fatalf("private_key_type %v, ca_chain %d", resp.Data["private_key_type"], len(resp.Data["ca_chain"].([]string)))
	}
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "colour") {
		t.Fatalf("warnings %q", resp.Warnings)
	}
	leaf := parseCert(t, str(t, resp, "certificate"))
	if err := h.verify(leaf, s.Certificate, h.clock.Now()); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := leaf.VerifyHostname("www.example.com"); err != nil {
		t.Fatal(err)
	}
	if got := leaf.NotAfter.Sub(h.clock.Now()); got != 30*time.Minute {
		t.Fatalf("lifetime %s", got)
	}
	if resp.Data["expiration"] != leaf.NotAfter.Unix() || resp.Data["serial_number"] != formatSerial(leaf.SerialNumber) {
		t.Fatalf("expiration %v serial %v", resp.Data["expiration"], resp.Data["serial_number"])
	}
	if str(t, resp, "issuing_ca") != pemString("CERTIFICATE", s.Certificate.Raw) {
		t.Fatal("issuing_ca is not the sub-CA")
	}
}

// TestSubCANameConstraints: the agent refuses names outside the role like
// the server, and a leaf the sub-CA key signs outside them anyway fails
// verification because of the name constraints.
func TestSubCANameConstraints(t *testing.T) {
	h := newSubCAHarness(t, webRole)
	s, li := h.subCA(t)
	for _, tc := range []struct{ body, field string }{
		{`{"common_name":"evil.org"}`, "common_name"},
		{`{"common_name":"a.example.com","alt_names":"b.evil.org"}`, "alt_names"},
		{`{"common_name":"a.example.com","ip_sans":"10.0.0.1"}`, "ip_sans"},
		{`{"common_name":"a.example.com","ttl":"5h"}`, "ttl"},
		{`{"common_name":"a.example.com","csr":"x"}`, "csr"},
		{`{"common_name":"a.example.com","uri_sans":"spiffe://x/y"}`, "uri_sans"},
	} {
		_, err := li.Issue(body(t, tc.body))
		wantInvalid(t, err, tc.field)
		// The server's issue says the same.
		_, serr := h.do(opW, "issue/web", tc.body)
		wantInvalid(t, serr, tc.field)
	}
	uri, _ := url.Parse("spiffe://edgevault.local/zone/edge-1/agent/other")
	for name, tmpl := range map[string]*x509.Certificate{
		"dns outside":     {Subject: pkix.Name{CommonName: "evil.org"}, DNSNames: []string{"evil.org"}},
		"bare domain":     {DNSNames: []string{"example.com"}}, // subdomains only
		"ip address":      {DNSNames: []string{"a.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.1.2.3")}},
		"uri (spiffe id)": {DNSNames: []string{"a.example.com"}, URIs: []*url.URL{uri}},
		"e-mail":          {DNSNames: []string{"a.example.com"}, EmailAddresses: []string{"root@example.com"}},
	} {
		leaf := h.rogueLeaf(t, s.Certificate, tmpl)
		err := h.verify(leaf, s.Certificate, h.clock.Now())
		var inv x509.CertificateInvalidError
		if !errors.As(err, &inv) || inv.Reason != x509.CANotAuthorizedForThisName {
			t.Errorf("%s: verify = %v, want CANotAuthorizedForThisName", name, err)
		}
	}
	// The same thief's leaf inside the names verifies: the test can fail.
	ok := h.rogueLeaf(t, s.Certificate, &x509.Certificate{DNSNames: []string{"deep.a.example.com"}})
	if err := h.verify(ok, s.Certificate, h.clock.Now()); err != nil {
		t.Fatalf("an allowed name: %v", err)
	}
	// Path length 0: a CA below the sub-CA cannot issue.
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := h.clock.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(7), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		Subject: pkix.Name{CommonName: "sub-sub"}}, s.Certificate, k2.Public(), h.key)
	if err != nil {
		t.Fatal(err)
	}
	subsub, _ := x509.ParseCertificate(der)
	der, err = x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(8), DNSNames: []string{"a.example.com"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		subsub, ok.PublicKey, k2)
	if err != nil {
		t.Fatal(err)
	}
	deep, _ := x509.ParseCertificate(der)
	inter := x509.NewCertPool()
	inter.AddCert(s.Certificate)
	inter.AddCert(subsub)
	_, err = deep.Verify(x509.VerifyOptions{Roots: h.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	var inv x509.CertificateInvalidError
	if !errors.As(err, &inv) || inv.Reason != x509.TooManyIntermediates {
		t.Fatalf("a leaf below a CA below the sub-CA: verify = %v, want TooManyIntermediates", err)
	}
}

// TestSubCABareDomains: a bare-only role permits the domain and excludes
// what is below it.
func TestSubCABareDomains(t *testing.T) {
	h := newSubCAHarness(t, `{"allowed_domains":"example.com,svc.example.com","allow_bare_domains":true,"allow_wildcard_certificates":false,
		"allow_localhost":false,"key_type":"ec","allow_offline_sub_ca":true}`)
	s, li := h.subCA(t)
	if !slices.Equal(s.Certificate.PermittedDNSDomains, []string{"example.com", "svc.example.com"}) ||
		!slices.Equal(s.Certificate.ExcludedDNSDomains, []string{".svc.example.com"}) {
		t.Fatalf("permitted %q excluded %q", s.Certificate.PermittedDNSDomains, s.Certificate.ExcludedDNSDomains)
	}
	resp, err := li.Issue(body(t, `{"common_name":"svc.example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.verify(parseCert(t, str(t, resp, "certificate")), s.Certificate, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	leaf := h.rogueLeaf(t, s.Certificate, &x509.Certificate{DNSNames: []string{"a.svc.example.com"}})
	if err := h.verify(leaf, s.Certificate, h.clock.Now()); err == nil {
		t.Fatal("a name below a bare-only domain verified")
	}
}

// TestSubCARevoke: revoking the sub-CA puts its serial on the CRL.
func TestSubCARevoke(t *testing.T) {
	h := newSubCAHarness(t, webRole)
	s, _ := h.subCA(t)
	h.must(opW, "revoke", `{"serial_number":"`+s.SerialNumber+`"}`)
	der, err := h.pki.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(h.root); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range crl.RevokedCertificateEntries {
		found = found || e.SerialNumber.Cmp(s.Certificate.SerialNumber) == 0
	}
	if !found {
		t.Fatalf("the CRL (%d entries) does not list the sub-CA", len(crl.RevokedCertificateEntries))
	}
}

// TestSubCARefusals: roles that do not allow it, or cannot be constrained.
func TestSubCARefusals(t *testing.T) {
	h := newSubCAHarness(t, `{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"ec"}`)
	ctx := context.Background()
	_, err := h.pki.SignAgentSubCA(ctx, "web", "node-7", h.key.Public())
	if !errors.Is(err, ErrOfflineSubCANotAllowed) || !errors.Is(err, logical.ErrInvalidRequest) {
		t.Fatalf("err = %v, want ErrOfflineSubCANotAllowed", err)
	}
	_, err = h.pki.SignAgentSubCA(ctx, "nope", "node-7", h.key.Public())
	wantInvalid(t, err, "nope")
	h.must(opW, "roles/ok", `{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"ec","allow_offline_sub_ca":true}`)
	_, err = h.pki.SignAgentSubCA(ctx, "ok", "Not An ID!", h.key.Public())
	wantInvalid(t, err, "agent_id")
	_, err = h.pki.SignAgentSubCA(ctx, "ok", "node-7", struct{}{})
	wantInvalid(t, err, "public_key")

	for _, tc := range []struct{ role, field string }{
		{`{"allow_any_name":true,"key_type":"ec","allow_offline_sub_ca":true}`, "allow_offline_sub_ca"},
		{`{"allowed_domains":"foo-*.example.com","allow_glob_domains":true,"allow_localhost":false,"key_type":"ec","allow_offline_sub_ca":true}`, "allowed_domains"},
		{`{"allowed_domains":"example.com","allow_localhost":false,"key_type":"ec","allow_offline_sub_ca":true}`, "allowed_domains"},
		{`{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"any","allow_offline_sub_ca":true}`, "allow_offline_sub_ca"},
		{`{"allowed_domains":"example.com","allow_subdomains":true,"offline_sub_ca_ttl":"200h"}`, "offline_sub_ca_ttl"},
		{`{"allowed_domains":"example.com","allow_subdomains":true,"offline_sub_ca_ttl":"1m"}`, "offline_sub_ca_ttl"},
		{`{"allowed_domains":"example.com","allow_subdomains":true,"ttl":"20h","max_ttl":"30h","offline_sub_ca_ttl":"12h","allow_offline_sub_ca":true}`, "offline_sub_ca_ttl"},
		{`{"allowed_domains":"example.com","allow_offline_sub_ca":"sometimes"}`, "allow_offline_sub_ca"},
	} {
		_, err := h.do(opW, "roles/bad", tc.role)
		wantInvalid(t, err, tc.field)
	}
	// A glob "*.d" is the constraint ".d".
	h.must(opW, "roles/glob", `{"allowed_domains":"*.glob.net","allow_glob_domains":true,"allow_localhost":false,"key_type":"ec","allow_offline_sub_ca":true}`)
	s, err := h.pki.SignAgentSubCA(ctx, "glob", "node-7", h.key.Public())
	if err != nil || !slices.Equal(s.Certificate.PermittedDNSDomains, []string{".glob.net"}) {
		t.Fatalf("glob role: %v %q", err, s.Certificate.PermittedDNSDomains)
	}
	// The role read shows the fields; the default is off.
	r := h.must(opR, "roles/web", "")
	if r.Data["allow_offline_sub_ca"] != false || r.Data["offline_sub_ca_ttl"] != float64(86400) {
		t.Fatalf("role data: allow_offline_sub_ca=%v offline_sub_ca_ttl=%v", r.Data["allow_offline_sub_ca"], r.Data["offline_sub_ca_ttl"])
	}
}

// TestSubCAPathLength: a mount CA with max_path_length 0 cannot have a sub-CA.
func TestSubCAPathLength(t *testing.T) {
	h := newHarness(t)
	h.must(opW, "root/generate/internal", `{"common_name":"Tight Root","key_type":"ec","max_path_length":0}`)
	h.must(opW, "roles/web", `{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"ec","allow_offline_sub_ca":true}`)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, err := h.pki.SignAgentSubCA(context.Background(), "web", "node-7", k.Public())
	wantInvalid(t, err, "max_path_length")
}

// TestSubCATTL: without a ttl a leaf is cut at the sub-CA's expiry; with
// one that outlives it, refused; after it, ErrSubCAExpired.
func TestSubCATTL(t *testing.T) {
	h := newSubCAHarness(t, webRole)
	s, li := h.subCA(t)
	h.clock.Advance(11*time.Hour + 30*time.Minute)
	resp, err := li.Issue(body(t, `{"common_name":"a.example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseCert(t, str(t, resp, "certificate"))
	if !leaf.NotAfter.Equal(s.Certificate.NotAfter) {
		t.Fatalf("NotAfter %v, want the sub-CA's %v", leaf.NotAfter, s.Certificate.NotAfter)
	}
	if err := h.verify(leaf, s.Certificate, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = li.Issue(body(t, `{"common_name":"a.example.com","ttl":"1h"}`))
	wantInvalid(t, err, "ttl")
	h.clock.Advance(time.Hour)
	if _, err := li.Issue(body(t, `{"common_name":"a.example.com"}`)); !errors.Is(err, ErrSubCAExpired) {
		t.Fatalf("err = %v, want ErrSubCAExpired", err)
	}
	// A key that is not the sub-CA's is refused.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bad := *li
	bad.Key = other
	if _, err := bad.Issue(body(t, `{"common_name":"a.example.com"}`)); err == nil {
		t.Fatal("issued with a key that is not the sub-CA's")
	}
}

// TestConstraintsJSON: constraints survive the trip to the agent, and
// broken ones are refused naming the field.
func TestConstraintsJSON(t *testing.T) {
	h := newSubCAHarness(t, webRole)
	s, _ := h.subCA(t)
	raw, err := json.Marshal(s.Constraints)
	if err != nil {
		t.Fatal(err)
	}
	var c Constraints
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c.Role() != "web" || c.TTL() != time.Hour || c.MaxTTL() != 4*time.Hour || !slices.Equal(c.AllowedDomains(), []string{"example.com"}) {
		t.Fatalf("round trip: %+v", c)
	}
	if kt, bits := c.KeyType(); kt != "ec" || bits != 256 {
		t.Fatalf("key %s/%d", kt, bits)
	}
	for field, edit := range map[string]func(m map[string]any){
		"key_type":        func(m map[string]any) { m["key_type"] = "dsa" },
		"ttl":             func(m map[string]any) { m["ttl"] = 999999 },
		"role":            func(m map[string]any) { m["role"] = "a/b" },
		"ext_key_usage":   func(m map[string]any) { m["ext_key_usage"] = []string{"Teleport"} },
		"allowed_domains": func(m map[string]any) { m["allowed_domains"] = []string{}; m["allow_localhost"] = false },
	} {
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		edit(m)
		b, _ := json.Marshal(m)
		if err := json.Unmarshal(b, &c); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v, want it named", field, err)
		}
	}
}

// TestSubCAOpenSSL verifies an offline leaf with openssl, which must honour
// the name constraints too (a leading dot means "below").
func TestSubCAOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	h := newSubCAHarness(t, webRole)
	// The harness clock is the real time (openssl checks validity by it).
	s, li := h.subCA(t)
	dir := t.TempDir()
	write := func(name string, certs ...*x509.Certificate) string {
		var pems []string
		for _, c := range certs {
			pems = append(pems, pemString("CERTIFICATE", c.Raw))
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pemBundle(pems...), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	resp, err := li.Issue(body(t, `{"common_name":"api.example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	good := parseCert(t, str(t, resp, "certificate"))
	bad := h.rogueLeaf(t, s.Certificate, &x509.Certificate{Subject: pkix.Name{CommonName: "evil.org"}, DNSNames: []string{"evil.org"}})
	root, inter := write("root.pem", h.root), write("sub.pem", s.Certificate)
	out, err := exec.Command("openssl", "verify", "-CAfile", root, "-untrusted", inter, write("good.pem", good)).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl verify (allowed name): %v: %s", err, out)
	}
	out, err = exec.Command("openssl", "verify", "-CAfile", root, "-untrusted", inter, write("bad.pem", bad)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "permitted subtree violation") {
		t.Fatalf("openssl verify (outside the names) = %v: %s", err, out)
	}
	text, err := exec.Command("openssl", "x509", "-in", inter, "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(text), "X509v3 Name Constraints: critical") || !strings.Contains(string(text), "DNS:.example.com") {
		t.Fatalf("openssl x509 -text: %v: %s", err, text)
	}
}

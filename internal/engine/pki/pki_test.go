package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

const (
	opW = logical.UpdateOperation
	opR = logical.ReadOperation
)

// TestIssueKeyTypes issues EC P-256, RSA-2048 and Ed25519 certificates from
// an EC root and verifies each with crypto/x509.
func TestIssueKeyTypes(t *testing.T) {
	h := newHarness(t)
	root := h.must(opW, "root/generate/internal", `{"common_name":"Edge Root","key_type":"ec","ttl":"87600h"}`)
	rootCert := parseCert(t, str(t, root, "certificate"))
	if !rootCert.IsCA || rootCert.Subject.CommonName != "Edge Root" {
		t.Fatalf("root: IsCA=%v CN=%q", rootCert.IsCA, rootCert.Subject.CommonName)
	}
	if got := formatSerial(rootCert.SerialNumber); got != root.Data["serial_number"] {
		t.Fatalf("serial_number %v, certificate has %s", root.Data["serial_number"], got)
	}
	pool := x509.NewCertPool()
	pool.AddCert(rootCert)
	for _, tc := range []struct{ keyType, bits, pemType string }{
		{"ec", "256", "EC PRIVATE KEY"}, {"rsa", "2048", "RSA PRIVATE KEY"}, {"ed25519", "0", "PRIVATE KEY"},
	} {
		t.Run(tc.keyType, func(t *testing.T) {
			h.must(opW, "roles/web-"+tc.keyType, fmt.Sprintf(`{"allowed_domains":["example.com"],"allow_subdomains":true,"key_type":%q,"key_bits":%s,"ext_key_usage":["ClientAuth"]}`, tc.keyType, tc.bits))
			resp := h.must(opW, "issue/web-"+tc.keyType, `{"common_name":"api.example.com","alt_names":"www.example.com,10.0.0.7","ip_sans":["127.0.0.1"]}`)
			leaf := parseCert(t, str(t, resp, "certificate"))
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "www.example.com", CurrentTime: h.clock.Now(),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if err := leaf.VerifyHostname("10.0.0.7"); err != nil {
				t.Fatal(err)
			}
			if got := resp.Data["private_key_type"]; got != tc.keyType {
				t.Fatalf("private_key_type = %v", got)
			}
			blk, _ := pem.Decode([]byte(str(t, resp, "private_key")))
			if blk == nil || blk.Type != tc.pemType {
				t.Fatalf("private key PEM type %v, want %s", blk, tc.pemType)
			}
			key := parsePrivateKey(t, blk)
			if !publicKeysEqual(key.Public(), leaf.PublicKey) {
				t.Fatal("private_key does not match the certificate")
			}
			if got, want := resp.Data["serial_number"], formatSerial(leaf.SerialNumber); got != want {
				t.Fatalf("serial_number %v, want %s", got, want)
			}
			if got, want := resp.Data["expiration"], leaf.NotAfter.Unix(); got != want {
				t.Fatalf("expiration %v, want %d", got, want)
			}
			if d := leaf.NotAfter.Sub(h.clock.Now()); d != DefaultRoleTTL {
				t.Fatalf("default lifetime %s, want %s", d, DefaultRoleTTL)
			}
			if str(t, resp, "issuing_ca") != str(t, root, "certificate") {
				t.Fatal("issuing_ca is not the root")
			}
			if len(leaf.ExtKeyUsage) != 2 {
				t.Fatalf("ext key usage %v, want server+client", leaf.ExtKeyUsage)
			}
			got := h.must(opR, "cert/"+strings.ReplaceAll(resp.Data["serial_number"].(string), ":", "-"), "")
			if str(t, got, "certificate") != str(t, resp, "certificate") {
				t.Fatal("cert/:serial returned another certificate")
			}
		})
	}
}

func parsePrivateKey(t *testing.T, blk *pem.Block) crypto.Signer {
	t.Helper()
	var k any
	var err error
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}

// TestIntermediateChain builds root (RSA, one mount) → intermediate (EC,
// another mount) → leaf, verifies with crypto/x509 and openssl, then revokes
// the leaf and checks openssl's CRL check refuses it.
func TestIntermediateChain(t *testing.T) {
	root := newHarness(t)
	rootResp := root.must(opW, "root/generate/internal", `{"common_name":"Root X","ttl":"87600h"}`)
	inter := newHarnessAt(t, "pki_int/", root.clock)
	csrResp := inter.must(opW, "intermediate/generate/internal", `{"common_name":"Intermediate X","key_type":"ec","key_bits":384}`)
	if _, err := inter.do(opW, "issue/x", `{"common_name":"a.example.com"}`); err == nil {
		t.Fatal("issue before the intermediate is set: no error")
	}
	signed := root.must(opW, "root/sign-intermediate", fmt.Sprintf(`{"csr":%q,"ttl":"43800h"}`, str(t, csrResp, "csr")))
	interCert := parseCert(t, str(t, signed, "certificate"))
	if !interCert.IsCA || interCert.Subject.CommonName != "Intermediate X" {
		t.Fatalf("intermediate: IsCA=%v CN=%q", interCert.IsCA, interCert.Subject.CommonName)
	}
	// A certificate for another key is refused.
	other := root.must(opW, "root/sign-intermediate", fmt.Sprintf(`{"csr":%q}`, newCSR(t, "ec", "other")))
	_, err := inter.do(opW, "intermediate/set-signed", fmt.Sprintf(`{"certificate":%q}`, str(t, other, "certificate")))
	wantInvalid(t, err, "certificate")
	bundle := string(pemBundle(str(t, signed, "certificate"), str(t, rootResp, "certificate")))
	inter.must(opW, "intermediate/set-signed", fmt.Sprintf(`{"certificate":%q}`, bundle))
	if _, err := inter.do(opW, "intermediate/set-signed", fmt.Sprintf(`{"certificate":%q}`, bundle)); !errors.Is(err, logical.ErrConflict) {
		t.Fatalf("second set-signed: %v, want ErrConflict", err)
	}

	inter.must(opW, "roles/svc", `{"allowed_domains":"svc.internal","allow_subdomains":true,"key_type":"ec","ttl":"30m","max_ttl":"2h"}`)
	leafResp := inter.must(opW, "issue/svc", `{"common_name":"db.svc.internal"}`)
	chain := leafResp.Data["ca_chain"].([]string)
	if len(chain) != 2 || chain[0] != str(t, signed, "certificate") {
		t.Fatalf("ca_chain has %d certificates, want intermediate then root", len(chain))
	}
	leaf := parseCert(t, str(t, leafResp, "certificate"))
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(parseCert(t, str(t, rootResp, "certificate")))
	inters.AddCert(parseCert(t, chain[0]))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: "db.svc.internal", CurrentTime: root.clock.Now()}); err != nil {
		t.Fatalf("verify leaf through intermediate: %v", err)
	}
	if d := leaf.NotAfter.Sub(root.clock.Now()); d != 30*time.Minute {
		t.Fatalf("lifetime %s, want the role's 30m", d)
	}
	caPEM := str(t, inter.must(opR, "ca/pem", ""), "certificate")
	if caPEM != chain[0] {
		t.Fatal("ca/pem is not the intermediate")
	}

	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rootF := write("root.pem", pemBundle(str(t, rootResp, "certificate")))
	interF := write("inter.pem", pemBundle(chain[0]))
	leafF := write("leaf.pem", pemBundle(str(t, leafResp, "certificate")))
	openssl := func(args ...string) (string, error) {
		out, err := exec.Command("openssl", args...).CombinedOutput()
		return string(out), err
	}
	if out, err := openssl("verify", "-CAfile", rootF, "-untrusted", interF, leafF); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	// Without the intermediate, openssl must refuse.
	if out, err := openssl("verify", "-CAfile", rootF, leafF); err == nil {
		t.Fatalf("openssl verify without intermediate passed:\n%s", out)
	}
	// Revoke the leaf: openssl's CRL check now refuses it.
	inter.must(opW, "revoke", fmt.Sprintf(`{"serial_number":%q}`, leafResp.Data["serial_number"]))
	interCRL := write("inter.crl", pemBundle(str(t, inter.must(opR, "crl", ""), "certificate")))
	rootCRL := write("root.crl", pemBundle(str(t, root.must(opR, "crl/pem", ""), "certificate")))
	out, err := openssl("verify", "-crl_check_all", "-CRLfile", interCRL, "-CRLfile", rootCRL, "-CAfile", rootF, "-untrusted", interF, leafF)
	if err == nil || !strings.Contains(out, "revoked") {
		t.Fatalf("openssl verify of a revoked leaf: err=%v\n%s", err, out)
	}
	// A second leaf, not revoked, passes the same CRL check.
	leaf2F := write("leaf2.pem", pemBundle(str(t, inter.must(opW, "issue/svc", `{"common_name":"web.svc.internal"}`), "certificate")))
	if out, err := openssl("verify", "-crl_check_all", "-CRLfile", interCRL, "-CRLfile", rootCRL, "-CAfile", rootF, "-untrusted", interF, leaf2F); err != nil {
		t.Fatalf("openssl verify with CRLs: %v\n%s", err, out)
	}
}

// newCSR returns a PEM CSR for a new key of keyType.
func newCSR(t testing.TB, keyType, cn string, dns ...string) string {
	t.Helper()
	var key crypto.Signer
	var err error
	switch keyType {
	case "ec":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pemString("CERTIFICATE REQUEST", der)
}

// TestSign signs CSRs under a role and refuses bad ones.
func TestSign(t *testing.T) {
	h := newHarness(t)
	root := h.must(opW, "root/generate/internal", `{"common_name":"Root","key_type":"ed25519"}`)
	pool := x509.NewCertPool()
	pool.AddCert(parseCert(t, str(t, root, "certificate")))
	h.must(opW, "roles/ec", `{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"ec"}`)
	h.must(opW, "roles/anykey", `{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"any"}`)
	resp := h.must(opW, "sign/ec", fmt.Sprintf(`{"csr":%q,"ttl":"10m"}`, newCSR(t, "ec", "a.example.com", "b.example.com")))
	leaf := parseCert(t, str(t, resp, "certificate"))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "b.example.com", CurrentTime: h.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.Data["private_key"]; ok {
		t.Fatal("sign returned a private key")
	}
	if d := leaf.NotAfter.Sub(h.clock.Now()); d != 10*time.Minute {
		t.Fatalf("lifetime %s, want 10m", d)
	}
	h.must(opW, "sign/anykey", fmt.Sprintf(`{"csr":%q}`, newCSR(t, "rsa", "r.example.com")))

	_, err := h.do(opW, "sign/ec", fmt.Sprintf(`{"csr":%q}`, newCSR(t, "rsa", "a.example.com")))
	wantInvalid(t, err, "csr")
	_, err = h.do(opW, "sign/ec", fmt.Sprintf(`{"csr":%q}`, newCSR(t, "ec", "a.evil.com")))
	wantInvalid(t, err, "common_name")
	_, err = h.do(opW, "sign/ec", fmt.Sprintf(`{"csr":%q}`, newCSR(t, "ec", "a.example.com", "x.evil.com")))
	wantInvalid(t, err, "alt_names")
	// A CSR whose signature does not match its content.
	good := newCSR(t, "ec", "a.example.com")
	blk, _ := pem.Decode([]byte(good))
	blk.Bytes[len(blk.Bytes)-5] ^= 0xff
	_, err = h.do(opW, "sign/ec", fmt.Sprintf(`{"csr":%q}`, pem.EncodeToMemory(blk)))
	wantInvalid(t, err, "csr")
	_, err = h.do(opW, "sign/ec", `{"csr":"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}`)
	wantInvalid(t, err, "csr")
	_, err = h.do(opW, "sign/ec", `{}`)
	wantInvalid(t, err, "csr")
}

// TestBadInput checks each bad request is a 400 naming its field and
// changes nothing.
func TestBadInput(t *testing.T) {
	h := newHarness(t)
	h.must(opW, "root/generate/internal", `{"common_name":"Root","key_type":"ec","ttl":"8760h"}`)
	h.must(opW, "roles/web", `{"allowed_domains":["example.com"],"allow_subdomains":true,"allow_ip_sans":false,"allow_localhost":false,"key_type":"ec","max_ttl":"2h"}`)
	h.must(opW, "roles/bare", `{"allowed_domains":"example.com","allow_bare_domains":true,"key_type":"ec"}`)
	for _, tc := range []struct{ path, body, field string }{
		{"issue/web", `{"common_name":"api.evil.com"}`, "common_name"},
		{"issue/web", `{"common_name":"example.com"}`, "common_name"},     // bare domain not allowed
		{"issue/web", `{"common_name":"evilexample.com"}`, "common_name"}, // suffix without a dot
		{"issue/web", `{"common_name":"localhost"}`, "common_name"},       // allow_localhost false
		{"issue/web", `{"common_name":"a..example.com"}`, "common_name"},  // not a host name
		{"issue/bare", `{"common_name":"a.example.com"}`, "common_name"},  // subdomains not allowed
		{"issue/web", `{"common_name":"a.example.com","alt_names":"b.evil.com"}`, "alt_names"},
		{"issue/web", `{"common_name":"a.example.com","ip_sans":"10.0.0.1"}`, "ip_sans"},
		{"issue/web", `{"common_name":"a.example.com","alt_names":"10.0.0.1"}`, "ip_sans"},
		{"issue/web", `{"common_name":"10.0.0.1"}`, "common_name"},
		{"issue/web", `{"common_name":"a.example.com","ip_sans":"not-an-ip"}`, "ip_sans"},
		{"issue/web", `{"common_name":"a.example.com","ttl":"3h"}`, "ttl"},
		{"issue/web", `{"common_name":"a.example.com","ttl":"soon"}`, "ttl"},
		{"issue/web", `{"common_name":"a.example.com","ttl":"87600h"}`, "ttl"},
		{"issue/web", `{}`, "common_name"},
		{"issue/web", `{"common_name":"a.example.com","format":"der"}`, "format"},
		{"issue/web", `{"common_name":"a.example.com","private_key_format":"jks"}`, "private_key_format"},
		{"issue/web", `{"common_name":"a.example.com","uri_sans":"spiffe://x"}`, "uri_sans"},
		{"issue/web", `{"common_name":["a"]}`, "common_name"},
		{"issue/nosuch", `{"common_name":"a.example.com"}`, "nosuch"},
		{"roles/r", `{"key_type":"dsa"}`, "key_type"},
		{"roles/r", `{"key_type":"rsa","key_bits":1024}`, "key_bits"},
		{"roles/r", `{"key_type":"ec","key_bits":255}`, "key_bits"},
		{"roles/r", `{"ext_key_usage":["ServerAuth","Teleport"]}`, "ext_key_usage"},
		{"roles/r", `{"key_usage":"Sign"}`, "key_usage"},
		{"roles/r", `{"ttl":"48h","max_ttl":"24h"}`, "ttl"},
		{"roles/r", `{"ttl":"-5"}`, "ttl"},
		{"roles/r", `{"allow_subdomains":"perhaps"}`, "allow_subdomains"},
		{"roles/r", `{"max_ttl":{}}`, "max_ttl"},
		{"root/generate/internal", `{"common_name":"Again"}`, "x"}, // conflict, checked below
		{"revoke", `{"serial_number":"zz:zz"}`, "serial_number"},
		{"revoke", `{}`, "serial_number"},
		{"intermediate/set-signed", `{"certificate":"junk"}`, "certificate"},
		{"tidy", `{}`, "tidy_cert_store"},
	} {
		_, err := h.do(opW, tc.path, tc.body)
		if tc.path == "root/generate/internal" {
			if !errors.Is(err, logical.ErrConflict) {
				t.Errorf("second root: %v, want ErrConflict", err)
			}
			continue
		}
		if !errors.Is(err, logical.ErrInvalidRequest) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s %s: err = %v, want ErrInvalidRequest naming %q", tc.path, tc.body, err, tc.field)
		}
	}
	if _, err := h.do(opR, "roles/r", ""); !errors.Is(err, logical.ErrNotFound) {
		t.Fatalf("a refused role write stored something: %v", err)
	}
	if _, err := h.do(logical.ListOperation, "certs/", ""); !errors.Is(err, logical.ErrNotFound) {
		t.Fatalf("a refused issue stored a certificate: %v", err)
	}
	// Unknown generation key types and sizes.
	h2 := newHarness(t)
	_, err := h2.do(opW, "root/generate/internal", `{"common_name":"R","key_type":"ec","key_bits":1}`)
	wantInvalid(t, err, "key_bits")
	_, err = h2.do(opW, "root/generate/internal", `{"key_type":"ec"}`)
	wantInvalid(t, err, "common_name")
	_, err = h2.do(opW, "issue/web", `{"common_name":"a"}`)
	wantInvalid(t, err, "role")
	// Paths and operations.
	if _, err := h.do(opR, "issue/web", ""); !errors.Is(err, logical.ErrUnsupportedOperation) {
		t.Fatalf("read issue: %v", err)
	}
	if _, err := h.do(opR, "nope", ""); !errors.Is(err, logical.ErrUnsupportedPath) {
		t.Fatalf("unknown path: %v", err)
	}
}

// TestNamePolicy checks the role's name rules that allow.
func TestNamePolicy(t *testing.T) {
	h := newHarness(t)
	h.must(opW, "root/generate/internal", `{"common_name":"Root","key_type":"ec"}`)
	h.must(opW, "roles/r", `{"allowed_domains":["example.com","*.glob.net"],"allow_bare_domains":true,"allow_subdomains":true,"allow_glob_domains":true,"key_type":"ec"}`)
	for _, cn := range []string{"example.com", "a.b.example.com", "*.example.com", "x.glob.net", "localhost", "Upper.Example.com"} {
		if _, err := h.do(opW, "issue/r", fmt.Sprintf(`{"common_name":%q}`, cn)); err != nil {
			t.Errorf("%s: %v", cn, err)
		}
	}
	h.must(opW, "roles/any", `{"allow_any_name":true,"key_type":"ec","enforce_hostnames":false}`)
	h.must(opW, "issue/any", `{"common_name":"anything at all"}`)
	resp := h.must(opW, "issue/r", `{"common_name":"a.example.com","exclude_cn_from_sans":true,"alt_names":"b.example.com"}`)
	if c := parseCert(t, str(t, resp, "certificate")); len(c.DNSNames) != 1 || c.DNSNames[0] != "b.example.com" {
		t.Fatalf("exclude_cn_from_sans: DNS names %v", c.DNSNames)
	}
	resp, err := h.do(opW, "issue/r", `{"common_name":"a.example.com","colour":"blue"}`)
	if err != nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "colour") {
		t.Fatalf("unknown field: err=%v warnings=%v", err, resp.Warnings)
	}
}

// TestRoleCRUD writes, reads, lists and deletes roles.
func TestRoleCRUD(t *testing.T) {
	h := newHarness(t)
	if _, err := h.do(logical.ListOperation, "roles/", ""); !errors.Is(err, logical.ErrNotFound) {
		t.Fatalf("empty list: %v", err)
	}
	h.must(opW, "roles/a", `{"allowed_domains":"Example.com,example.org","key_type":"EC","key_bits":384,"ttl":600,"ext_key_usage":"CodeSigning","no_store":true}`)
	h.must(opW, "roles/b", `{}`)
	r := h.must(opR, "roles/a", "")
	if got := fmt.Sprint(r.Data["allowed_domains"]); got != "[example.com example.org]" {
		t.Fatalf("allowed_domains %s", got)
	}
	if r.Data["key_type"] != "ec" || fmt.Sprint(r.Data["key_bits"]) != "384" || fmt.Sprint(r.Data["ttl"]) != "600" ||
		fmt.Sprint(r.Data["max_ttl"]) != "86400" || r.Data["no_store"] != true || r.Data["allow_ip_sans"] != true {
		t.Fatalf("role a = %v", r.Data)
	}
	b := h.must(opR, "roles/b", "")
	if b.Data["key_type"] != "rsa" || fmt.Sprint(b.Data["key_bits"]) != "2048" || fmt.Sprint(b.Data["ttl"]) != "3600" {
		t.Fatalf("role b defaults = %v", b.Data)
	}
	l := h.must(logical.ListOperation, "roles/", "")
	if fmt.Sprint(l.Data["keys"]) != "[a b]" {
		t.Fatalf("list = %v", l.Data)
	}
	h.must(logical.DeleteOperation, "roles/a", "")
	if _, err := h.do(opR, "roles/a", ""); !errors.Is(err, logical.ErrNotFound) {
		t.Fatalf("read deleted role: %v", err)
	}
	_, err := h.do(opW, "roles/a%2Fb/c", `{}`)
	if !errors.Is(err, logical.ErrInvalidRequest) {
		t.Fatalf("role name with slash: %v", err)
	}
	// max_ttl alone below the default ttl lowers ttl (Vault does the same).
	h.must(opW, "roles/short", `{"max_ttl":"10m"}`)
	if s := h.must(opR, "roles/short", ""); fmt.Sprint(s.Data["ttl"]) != "600" {
		t.Fatalf("ttl with only max_ttl=10m: %v", s.Data["ttl"])
	}
}

// TestRevokeCRL revokes through the API and the lease hook and checks the
// CRL, cert/:serial and idempotence.
func TestRevokeCRL(t *testing.T) {
	h := newHarness(t)
	root := h.must(opW, "root/generate/internal", `{"common_name":"Root","key_type":"rsa"}`)
	ca := parseCert(t, str(t, root, "certificate"))
	h.must(opW, "roles/r", `{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"ec"}`)
	h.must(opW, "roles/nostore", `{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"ec","no_store":true,"generate_lease":true}`)
	var serials []string
	for i := range 3 {
		resp := h.must(opW, "issue/r", fmt.Sprintf(`{"common_name":"h%d.example.com"}`, i))
		serials = append(serials, resp.Data["serial_number"].(string))
	}
	ns := h.must(opW, "issue/nostore", `{"common_name":"n.example.com","ttl":"5m"}`)
	if ns.LeaseDuration != 300 {
		t.Fatalf("generate_lease: LeaseDuration %d, want 300", ns.LeaseDuration)
	}
	nsSerial := ns.Data["serial_number"].(string)
	if _, err := h.do(opR, "cert/"+nsSerial, ""); !errors.Is(err, logical.ErrNotFound) {
		t.Fatalf("no_store certificate was stored: %v", err)
	}
	crl0 := readCRL(t, h, ca)
	if len(crl0.RevokedCertificateEntries) != 0 {
		t.Fatalf("fresh CRL lists %d entries", len(crl0.RevokedCertificateEntries))
	}

	h.clock.Advance(time.Minute)
	rv := h.must(opW, "revoke", fmt.Sprintf(`{"serial_number":%q}`, serials[0]))
	if rv.Data["revocation_time"] != h.clock.Now().Unix() {
		t.Fatalf("revocation_time %v", rv.Data["revocation_time"])
	}
	if err := h.pki.Revoke(context.Background(), strings.ReplaceAll(serials[2], ":", "-")); err != nil {
		t.Fatal(err)
	}
	if err := h.pki.Revoke(context.Background(), nsSerial); err != nil {
		t.Fatalf("lease revoke of a no_store certificate: %v", err)
	}
	h.clock.Advance(time.Minute)
	again := h.must(opW, "revoke", fmt.Sprintf(`{"serial_number":%q}`, serials[0]))
	if again.Data["revocation_time"] != rv.Data["revocation_time"] {
		t.Fatal("second revoke changed the revocation time")
	}
	if err := h.pki.Revoke(context.Background(), serials[2]); err != nil {
		t.Fatalf("second lease revoke: %v", err)
	}
	_, err := h.do(opW, "revoke", `{"serial_number":"01:02:03"}`)
	if !errors.Is(err, ErrUnknownSerial) || !errors.Is(err, logical.ErrNotFound) {
		t.Fatalf("revoke unknown serial via API: %v", err)
	}
	_, err = h.do(opW, "revoke", fmt.Sprintf(`{"serial_number":%q}`, root.Data["serial_number"]))
	wantInvalid(t, err, "serial_number")

	crl1 := readCRL(t, h, ca)
	got := map[string]bool{}
	for _, e := range crl1.RevokedCertificateEntries {
		got[formatSerial(e.SerialNumber)] = true
	}
	if len(got) != 3 || !got[serials[0]] || !got[serials[2]] || !got[nsSerial] || got[serials[1]] {
		t.Fatalf("CRL lists %v, want %s, %s and %s", got, serials[0], serials[2], nsSerial)
	}
	if crl1.Number.Cmp(crl0.Number) <= 0 {
		t.Fatalf("CRL number %v after %v", crl1.Number, crl0.Number)
	}
	c := h.must(opR, "cert/"+serials[0], "")
	if c.Data["revocation_time"] != rv.Data["revocation_time"] {
		t.Fatalf("cert/:serial revocation_time %v", c.Data["revocation_time"])
	}
	if l := h.must(logical.ListOperation, "certs/revoked/", ""); len(l.Data["keys"].([]string)) != 3 {
		t.Fatalf("LIST certs/revoked = %v", l.Data)
	}
	// The CRL and revocations survive a restart, and the number keeps growing.
	h.reopen()
	h.must(opW, "crl/rotate", "")
	crl2 := readCRL(t, h, ca)
	if len(crl2.RevokedCertificateEntries) != 3 || crl2.Number.Cmp(crl1.Number) <= 0 {
		t.Fatalf("after restart: %d entries, number %v", len(crl2.RevokedCertificateEntries), crl2.Number)
	}
	// A CRL past its NextUpdate is rebuilt on read.
	h.clock.Advance(DefaultCRLLifetime + time.Second)
	if crl3 := readCRL(t, h, ca); crl3.Number.Cmp(crl2.Number) <= 0 {
		t.Fatal("expired CRL was not rebuilt")
	}
}

// readCRL fetches the CRL and checks its signature against ca.
func readCRL(t *testing.T, h *harness, ca *x509.Certificate) *x509.RevocationList {
	t.Helper()
	blk, _ := pem.Decode([]byte(str(t, h.must(opR, "crl", ""), "certificate")))
	if blk == nil || blk.Type != "X509 CRL" {
		t.Fatal("crl: not a PEM CRL")
	}
	crl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	if !crl.NextUpdate.After(h.clock.Now()) {
		t.Fatalf("CRL NextUpdate %s is not in the future", crl.NextUpdate)
	}
	return crl
}

// TestTidy removes expired certificates and revocations after the buffer.
func TestTidy(t *testing.T) {
	h := newHarness(t)
	h.must(opW, "root/generate/internal", `{"common_name":"Root","key_type":"ec"}`)
	h.must(opW, "roles/r", `{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"ec","max_ttl":"100h"}`)
	short := h.must(opW, "issue/r", `{"common_name":"a.example.com","ttl":"1h"}`).Data["serial_number"].(string)
	short2 := h.must(opW, "issue/r", `{"common_name":"b.example.com","ttl":"1h"}`).Data["serial_number"].(string)
	long := h.must(opW, "issue/r", `{"common_name":"c.example.com","ttl":"100h"}`).Data["serial_number"].(string)
	h.must(opW, "revoke", fmt.Sprintf(`{"serial_number":%q}`, short2))
	h.clock.Advance(2 * time.Hour)
	resp := h.must(opW, "tidy", `{"tidy_cert_store":true,"tidy_revoked_certs":true}`)
	if resp.Data["cert_store_deleted_count"] != 0 || resp.Data["revoked_cert_deleted_count"] != 0 {
		t.Fatalf("tidy inside the safety buffer deleted %v", resp.Data)
	}
	h.clock.Advance(DefaultTidySafetyBuffer)
	resp = h.must(opW, "tidy", `{"tidy_cert_store":true,"tidy_revoked_certs":true}`)
	if resp.StatusCode != 202 || resp.Data["cert_store_deleted_count"] != 2 || resp.Data["revoked_cert_deleted_count"] != 1 {
		t.Fatalf("tidy = %d %v", resp.StatusCode, resp.Data)
	}
	for _, s := range []string{short, short2} {
		if _, err := h.do(opR, "cert/"+s, ""); !errors.Is(err, logical.ErrNotFound) {
			t.Fatalf("cert %s after tidy: %v", s, err)
		}
	}
	h.must(opR, "cert/"+long, "")
	blk, _ := pem.Decode([]byte(str(t, h.must(opR, "crl", ""), "certificate")))
	crl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil || len(crl.RevokedCertificateEntries) != 0 {
		t.Fatalf("CRL after tidy: %v, %d entries", err, len(crl.RevokedCertificateEntries))
	}
}

// TestCALifecycle covers ca reads, DELETE root, exported keys and restart.
func TestCALifecycle(t *testing.T) {
	h := newHarness(t)
	if _, err := h.do(opR, "ca/pem", ""); !errors.Is(err, logical.ErrNotFound) {
		t.Fatalf("ca without CA: %v", err)
	}
	if _, err := h.do(opR, "crl", ""); !errors.Is(err, ErrNoCA) {
		t.Fatalf("crl without CA: %v", err)
	}
	r := h.must(opW, "root/generate/exported", `{"common_name":"Root","key_type":"ec","ttl":"2h","private_key_format":"pkcs8"}`)
	blk, _ := pem.Decode([]byte(str(t, r, "private_key")))
	if blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatal("exported root key is not PKCS#8 PEM")
	}
	h.must(opW, "roles/r", `{"allow_any_name":true,"key_type":"ec","max_ttl":"100h"}`)
	_, err := h.do(opW, "issue/r", `{"common_name":"x.example.com","ttl":"3h"}`)
	wantInvalid(t, err, "ttl") // would outlive the CA
	h.reopen()
	if got := str(t, h.must(opR, "ca", ""), "certificate"); got != r.Data["certificate"] {
		t.Fatal("ca after restart differs")
	}
	h.must(opW, "issue/r", `{"common_name":"x.example.com"}`)
	h.must(logical.DeleteOperation, "root", "")
	if _, err := h.do(opW, "issue/r", `{"common_name":"x.example.com"}`); !errors.Is(err, ErrNoCA) {
		t.Fatalf("issue after DELETE root: %v", err)
	}
	r2 := h.must(opW, "root/generate/internal", `{"common_name":"Root 2","key_type":"ed25519"}`)
	if _, ok := r2.Data["private_key"]; ok {
		t.Fatal("internal generation returned the key")
	}
	leaf := parseCert(t, str(t, h.must(opW, "issue/r", `{"common_name":"y.example.com"}`), "certificate"))
	if err := leaf.CheckSignatureFrom(parseCert(t, str(t, r2, "certificate"))); err != nil {
		t.Fatalf("issued after re-generation: %v", err)
	}
}

// TestSerialForms checks serial parsing and formatting.
func TestSerialForms(t *testing.T) {
	for in, want := range map[string]string{
		"1":          "01",
		"0a:0B":      "0a:0b",
		"0a-0b":      "0a:0b",
		" 00:ff:01 ": "ff:01",
	} {
		got, err := parseSerial("serial_number", in)
		if err != nil || got != want {
			t.Errorf("parseSerial(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "00", "xyz", strings.Repeat("ab", 100)} {
		if _, err := parseSerial("serial_number", in); !errors.Is(err, logical.ErrInvalidRequest) {
			t.Errorf("parseSerial(%q): %v, want invalid", in, err)
		}
	}
	n, _ := new(big.Int).SetString("7f0102", 16)
	if formatSerial(n) != "7f:01:02" {
		t.Fatal(formatSerial(n))
	}
}

// TestLeaseRevoke goes through the lease hooks: LeaseDataFor on a no_store
// issue, RevokeLease twice (idempotent), the CRL, then tidy once expired.
func TestLeaseRevoke(t *testing.T) {
	h := newHarness(t)
	h.must(opW, "root/generate/internal", `{"common_name":"Root","key_type":"ec"}`)
	h.must(opW, "roles/r", `{"allow_any_name":true,"key_type":"ec","no_store":true,"generate_lease":true}`)
	resp := h.must(opW, "issue/r", `{"common_name":"x.example.com","ttl":"1h"}`)
	raw, err := LeaseDataFor(resp)
	if err != nil {
		t.Fatal(err)
	}
	var d LeaseData
	if err := json.Unmarshal(raw, &d); err != nil || d.SerialNumber != resp.Data["serial_number"] || d.Expiration != resp.Data["expiration"] {
		t.Fatalf("lease data %s: %v", raw, err)
	}
	for range 2 {
		if err := h.pki.RevokeLease(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.pki.RevokeLease(context.Background(), LeaseData{SerialNumber: "nope"}); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Fatalf("bad serial: %v", err)
	}
	if _, err := LeaseDataFor(&logical.Response{Data: map[string]any{}}); err == nil {
		t.Fatal("lease data without a serial")
	}
	der, err := h.pki.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil || len(crl.RevokedCertificateEntries) != 1 || formatSerial(crl.RevokedCertificateEntries[0].SerialNumber) != d.SerialNumber {
		t.Fatalf("CRL: %v %v", err, crl)
	}
	h.clock.Advance(time.Hour + DefaultTidySafetyBuffer + time.Second)
	if r := h.must(opW, "tidy", `{"tidy_revoked_certs":true}`); r.Data["revoked_cert_deleted_count"] != 1 {
		t.Fatalf("tidy of an expired no_store revocation: %v", r.Data)
	}
}

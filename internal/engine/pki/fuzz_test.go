package pki

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/logical"
)

// decodeBody decodes a fuzzed JSON body as httpapi does; ok is false when
// it is not a JSON object.
func decodeBody(s string) (map[string]any, bool) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

// FuzzParseRole checks a role write never panics, fails only with
// ErrInvalidRequest, and that an accepted role survives its own read-back.
func FuzzParseRole(f *testing.F) {
	for _, s := range []string{
		`{"allowed_domains":["example.com"],"allow_subdomains":true,"key_type":"ec","key_bits":256,"ttl":"1h","max_ttl":"24h"}`,
		`{"allowed_domains":"a.com,b.com","allow_bare_domains":"true","allow_ip_sans":false,"key_type":"rsa","key_bits":"4096"}`,
		`{"key_type":"any","ext_key_usage":"ServerAuth,ClientAuth","key_usage":["DigitalSignature"],"no_store":1}`,
		`{"key_type":"ed25519","ttl":600,"max_ttl":3600,"organization":"Acme","generate_lease":true}`,
		`{"ttl":"48h","max_ttl":"24h"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		data, ok := decodeBody(s)
		if !ok {
			return
		}
		r, err := parseRole(data)
		if err != nil {
			if !errors.Is(err, logical.ErrInvalidRequest) {
				t.Fatalf("parseRole: %v is not an invalid request", err)
			}
			return
		}
		if r.TTL > r.MaxTTL {
			t.Fatalf("accepted ttl %d above max_ttl %d", r.TTL, r.MaxTTL)
		}
		raw, _ := json.Marshal(r.data())
		back, ok := decodeBody(string(raw))
		if !ok {
			t.Fatal("role data does not re-encode")
		}
		r2, err := parseRole(back)
		if err != nil {
			t.Fatalf("role read-back refused: %v", err)
		}
		if !reflect.DeepEqual(normRole(r), normRole(r2)) {
			t.Fatalf("role changed on read-back:\n%+v\n%+v", r, r2)
		}
	})
}

// normRole makes empty and nil lists compare equal.
func normRole(r role) role {
	for _, p := range r.lists() {
		if len(*p) == 0 {
			*p = nil
		}
	}
	return r
}

// FuzzLeafRequest checks issue/sign request parsing and the role policy:
// no panics, errors are invalid requests, and an accepted template only
// carries names the role allows.
func FuzzLeafRequest(f *testing.F) {
	for _, s := range []string{
		`{"common_name":"api.example.com","alt_names":"www.example.com,10.0.0.1","ip_sans":["::1"],"ttl":"30m"}`,
		`{"common_name":"*.example.com","exclude_cn_from_sans":true,"format":"pem","private_key_format":"pkcs8"}`,
		`{"common_name":"localhost","ttl":"25h"}`,
		`{"common_name":"10.1.2.3","alt_names":["example.com"]}`,
		`{"common_name":"evil.com","uri_sans":"spiffe://a"}`,
	} {
		f.Add(s)
	}
	r := defaultRole()
	r.AllowedDomains, r.AllowSubdomains, r.AllowBareDomains = []string{"example.com"}, true, true
	f.Fuzz(func(t *testing.T, s string) {
		data, ok := decodeBody(s)
		if !ok {
			return
		}
		lr, err := parseLeafRequest(data)
		if err != nil {
			if !errors.Is(err, logical.ErrInvalidRequest) {
				t.Fatalf("parseLeafRequest: %v is not an invalid request", err)
			}
			return
		}
		tl, err := leafTemplate(r, lr)
		if err != nil {
			if !errors.Is(err, logical.ErrInvalidRequest) {
				t.Fatalf("leafTemplate: %v is not an invalid request", err)
			}
			return
		}
		for _, d := range tl.DNSNames {
			if d != "localhost" && d != "example.com" && !strings.HasSuffix(d, ".example.com") {
				t.Fatalf("accepted DNS name %q outside the allowed domains", d)
			}
		}
		if lr.ttl > DefaultRoleMaxTTL {
			t.Fatalf("accepted ttl %s above max_ttl", lr.ttl)
		}
	})
}

// FuzzParseCSR checks CSR decoding never panics and only fails with an
// invalid request naming csr.
func FuzzParseCSR(f *testing.F) {
	f.Add(newCSR(f, "ec", "a.example.com", "b.example.com"))
	f.Add(newCSR(f, "ed25519", "e.example.com"))
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n")
	f.Add("not pem")
	f.Fuzz(func(t *testing.T, s string) {
		csr, err := parseCSR(s)
		if err != nil {
			if !errors.Is(err, logical.ErrInvalidRequest) || !strings.Contains(err.Error(), "csr") {
				t.Fatalf("parseCSR: %v", err)
			}
			return
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR with a bad signature: %v", err)
		}
	})
}

// FuzzParseSerial checks serial parsing is canonical: parsing the output
// gives it back.
func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{"1f:02:aa", "1f-02-aa", "0", "ff", "00:00:01", "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseSerial("serial_number", s)
		if err != nil {
			if !errors.Is(err, logical.ErrInvalidRequest) {
				t.Fatal(err)
			}
			return
		}
		c2, err := parseSerial("serial_number", storageSerial(c))
		if err != nil || c2 != c {
			t.Fatalf("%q -> %q -> %q, %v", s, c, c2, err)
		}
	})
}

// FuzzCertBundle checks set-signed's bundle parser.
func FuzzCertBundle(f *testing.F) {
	h := newHarness(f)
	r := h.must(opW, "root/generate/internal", `{"common_name":"Root","key_type":"ec"}`)
	f.Add(r.Data["certificate"].(string))
	f.Add("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	f.Fuzz(func(t *testing.T, s string) {
		certs, err := parseCertBundle("certificate", s)
		if err != nil {
			if !errors.Is(err, logical.ErrInvalidRequest) {
				t.Fatal(err)
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("no error and no certificates")
		}
	})
}

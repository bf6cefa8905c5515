package tpm_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/attest/tpm"
)

// goldenAttestEvidence is an AttestEvidence JSON built from testdata.
func goldenAttestEvidence(t testing.TB) []byte {
	t.Helper()
	g := loadGolden(t, "ecc.json")
	der, _ := tlsKey(t)
	return mustJSON(t, tpm.AttestEvidence{Secret: make([]byte, 32), Quote: g.Quote, PublicKeyDER: der})
}

func TestParseEvidence(t *testing.T) {
	g := loadGolden(t, "ecc.json")
	begin := mustJSON(t, tpm.BeginEvidence{EKPublic: g.EKPublic, AKPublic: g.AKPublic})
	e, err := tpm.ParseBeginEvidence(begin)
	if err != nil || string(e.EKPublic) != string(g.EKPublic) || len(e.EKCertificate) != 0 {
		t.Fatalf("ParseBeginEvidence: %v", err)
	}
	// Unknown fields are ignored (newer agents).
	if _, err := tpm.ParseBeginEvidence([]byte(strings.Replace(string(begin), "{", `{"event_log":"AA==",`, 1))); err != nil {
		t.Fatalf("unknown field: %v", err)
	}
	ae, q, err := tpm.ParseAttestEvidence(goldenAttestEvidence(t))
	if err != nil || len(ae.Secret) != 32 || len(q.PCRs) != 8 {
		t.Fatalf("ParseAttestEvidence: %v", err)
	}

	ak := b64(g.AKPublic)
	for _, c := range []struct{ name, in, field string }{
		{"empty", ``, "evidence is 0 bytes"},
		{"not JSON", `hello`, "invalid character"},
		{"trailing", `{"ek_public":"AA==","ak_public":"AA=="} x`, "trailing data"},
		{"no EK", `{"ak_public":"` + ak + `"}`, "ek_public is 0 bytes"},
		{"bad base64", `{"ek_public":"!!","ak_public":"` + ak + `"}`, "ek_public: bad base64"},
		{"unpadded base64", `{"ek_public":"AAA","ak_public":"` + ak + `"}`, "ek_public: bad base64"},
		{"number for bytes", `{"ek_public":5,"ak_public":"` + ak + `"}`, "ek_public"},
		{"bad certificate base64", `{"ek_public":"` + ak + `","ek_certificate":"*","ak_public":"` + ak + `"}`, "ek_certificate"},
		{"huge AK", `{"ek_public":"` + ak + `","ak_public":"` + b64(make([]byte, 4000)) + `"}`, "ak_public is longer"},
	} {
		_, err := tpm.ParseBeginEvidence([]byte(c.in))
		if !errors.Is(err, tpm.ErrEvidence) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("begin %s: %v; want ErrEvidence naming %q", c.name, err, c.field)
		}
	}

	der, _ := tlsKey(t)
	quote := `"quote":{"attest":"` + b64(g.Quote.Attest) + `","signature":"` + b64(g.Quote.Signature) + `","pcrs":{"0":"` + b64(make([]byte, 32)) + `"}}`
	key := `"public_key_der":"` + b64(der) + `"`
	for _, c := range []struct{ name, in, field string }{
		{"no key", `{"secret":"AA==",` + quote + `}`, "public_key_der is 0 bytes"},
		{"key not PKIX", `{"public_key_der":"AAAA",` + quote + `}`, "public_key_der:"},
		{"long secret", `{"secret":"` + b64(make([]byte, 33)) + `",` + key + `,` + quote + `}`, "secret is 33 bytes"},
		{"no quote", `{` + key + `}`, "quote.attest is 0 bytes"},
		{"PCR key", `{` + key + `,"quote":{"attest":"AA==","signature":"AA==","pcrs":{"x":"` + b64(make([]byte, 32)) + `"}}}`, `quote.pcrs: PCR key "x"`},
		{"PCR 24", `{` + key + `,"quote":{"attest":"AA==","signature":"AA==","pcrs":{"24":"` + b64(make([]byte, 32)) + `"}}}`, `PCR key "24"`},
		{"PCR size", `{` + key + `,"quote":{"attest":"AA==","signature":"AA==","pcrs":{"7":"` + b64(make([]byte, 20)) + `"}}}`, `quote.pcrs["7"] is 20 bytes`},
		{"signature base64", `{` + key + `,"quote":{"attest":"AA==","signature":"%%"}}`, "quote.signature: bad base64"},
	} {
		_, _, err := tpm.ParseAttestEvidence([]byte(c.in))
		if !errors.Is(err, tpm.ErrEvidence) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("attest %s: %v; want ErrEvidence naming %q", c.name, err, c.field)
		}
	}
}

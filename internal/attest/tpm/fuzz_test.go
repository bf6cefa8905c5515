package tpm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/attest/tpm"
)

// encodePCRs packs PCR values for a fuzz input: index byte, 32 bytes.
func encodePCRs(m map[string][]byte) []byte {
	var b []byte
	for k, v := range m {
		n, _ := strconv.Atoi(k)
		b = append(append(b, byte(n)), v...)
	}
	return b
}

// decodePCRs is encodePCRs' inverse for arbitrary bytes: each 33-byte
// chunk is an index (any byte) and a value; a short tail is one short value.
func decodePCRs(b []byte) map[int][]byte {
	m := map[int][]byte{}
	for len(b) > 0 {
		n := int(b[0])
		b = b[1:]
		k := min(len(b), 32)
		m[n], b = b[:k], b[k:]
	}
	return m
}

// FuzzVerifyQuote feeds VerifyQuote mutations of real quotes. It must
// never panic, and it must accept nothing but a quote actually signed by
// the golden AK over the golden qualifying data.
func FuzzVerifyQuote(f *testing.F) {
	goldens := []golden{loadGolden(f, "ecc.json"), loadGolden(f, "rsa.json")}
	for _, g := range goldens {
		f.Add(g.AKPublic, g.Quote.Attest, g.Quote.Signature, encodePCRs(g.Quote.PCRs), g.Qualifying)
	}
	pol := tpm.Policy{EKHashes: []string{zeroPCR}, PCRs: pcrs07, AllowedPCRs: []map[string]string{zeroSet()}}
	f.Fuzz(func(t *testing.T, ak, attest, sig, pcrs, qual []byte) {
		res, err := tpm.VerifyQuote(pol, ak, tpm.Quote{Attest: attest, Signature: sig, PCRs: decodePCRs(pcrs)}, qual)
		if err != nil {
			return
		}
		// The AK's attributes are not signed (credential activation
		// vouches for them), so compare its key, by hash.
		key, err := tpm.EKHash(ak)
		if err != nil {
			t.Fatalf("accepted an AK without a key: %v", err)
		}
		for _, g := range goldens {
			if gk, _ := tpm.EKHash(g.AKPublic); key == gk && bytes.Equal(attest, g.Quote.Attest) && bytes.Equal(qual, g.Qualifying) {
				if res.AllowedSet != 0 || len(res.PCRs) != len(pcrs07) {
					t.Fatalf("accepted with result %+v", res)
				}
				return
			}
		}
		t.Fatalf("accepted a quote that is not a golden one: ak %x attest %x", ak, attest)
	})
}

// FuzzMakeCredential checks the key decoders on arbitrary EK and AK
// bytes: no panic, and acceptance only for canonical structures.
func FuzzMakeCredential(f *testing.F) {
	for _, name := range []string{"ecc.json", "rsa.json"} {
		g := loadGolden(f, name)
		f.Add(g.EKPublic, g.AKPublic)
		f.Add(g.AKPublic, g.EKPublic)
	}
	secret := bytes.Repeat([]byte{3}, 32)
	f.Fuzz(func(t *testing.T, ek, ak []byte) {
		blob, enc, err := tpm.MakeCredential(ek, ak, secret)
		if err != nil {
			return
		}
		if len(blob) == 0 || len(enc) == 0 {
			t.Fatal("accepted without output")
		}
		if _, err := tpm.EKHash(ek); err != nil {
			t.Fatalf("accepted EK has no hash: %v", err)
		}
	})
}

// FuzzCheckEK feeds CheckEK arbitrary EKs and certificates against a CA
// policy.
func FuzzCheckEK(f *testing.F) {
	ca := newTestCA(f, "EK CA")
	g := loadGolden(f, "ecc.json")
	f.Add(g.EKPublic, ca.ekCert(f, cryptoPub(f, g.EKPublic), t0.Add(1e15)))
	f.Add(g.EKPublic, []byte{})
	pol := tpm.Policy{EKCAs: []string{ca.pem}, PCRs: pcrs07}
	f.Fuzz(func(t *testing.T, ek, cert []byte) {
		h, err := tpm.CheckEK(pol, ek, cert, t0)
		if err != nil {
			return
		}
		if h2, err := tpm.EKHash(ek); err != nil || h2 != h {
			t.Fatalf("accepted EK hash %q, EKHash %q %v", h, h2, err)
		}
	})
}

// FuzzParseEvidence feeds both evidence decoders arbitrary JSON.
func FuzzParseEvidence(f *testing.F) {
	g := loadGolden(f, "ecc.json")
	f.Add(mustJSON(f, tpm.BeginEvidence{EKPublic: g.EKPublic, AKPublic: g.AKPublic, EKCertificate: []byte{0x30, 0}}))
	f.Add(goldenAttestEvidence(f))
	f.Add([]byte(`{"quote":{"pcrs":{"07":"AA=="}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := tpm.ParseBeginEvidence(b); err == nil {
			if len(e.EKPublic) == 0 || len(e.AKPublic) == 0 {
				t.Fatalf("accepted begin evidence without keys: %s", b)
			}
		} else if !errors.Is(err, tpm.ErrEvidence) {
			t.Fatalf("begin: error %v does not wrap ErrEvidence", err)
		}
		e, q, err := tpm.ParseAttestEvidence(b)
		if err != nil {
			if !errors.Is(err, tpm.ErrEvidence) {
				t.Fatalf("attest: error %v does not wrap ErrEvidence", err)
			}
			return
		}
		if len(e.PublicKeyDER) == 0 || len(q.Attest) == 0 || len(q.Signature) == 0 || len(q.PCRs) != len(e.Quote.PCRs) {
			t.Fatalf("accepted incomplete evidence: %s", b)
		}
		for n, v := range q.PCRs {
			if n < 0 || n > tpm.MaxPCRIndex || len(v) != 32 {
				t.Fatalf("accepted PCR %d of %d bytes", n, len(v))
			}
		}
	})
}

// FuzzParsePolicy feeds ParsePolicy arbitrary JSON: an accepted policy is
// valid and survives a JSON round trip.
func FuzzParsePolicy(f *testing.F) {
	h := strings.Repeat("ab", 32)
	f.Add([]byte(`{"ek_hashes":["` + h + `"],"pcrs":[0,1,2,3,4,5,6,7],"allowed_pcr_sets":[{"7":"` + zeroPCR + `"}],"max_quote_age":"2m"}`))
	f.Add([]byte(`{"ek_ca_pems":["` + strings.ReplaceAll(newTestCA(f, "CA").pem, "\n", `\n`) + `"],"pcrs":[7],"max_quote_age":60}`))
	f.Add([]byte(`{"pcrs":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := tpm.ParsePolicy(b)
		if err != nil {
			if !errors.Is(err, tpm.ErrInvalidPolicy) {
				t.Fatalf("error %v does not wrap ErrInvalidPolicy", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted invalid policy: %v", err)
		}
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := tpm.ParsePolicy(out)
		if err != nil || q.MaxQuoteAge != p.MaxQuoteAge || len(q.PCRs) != len(p.PCRs) || len(q.EKHashes) != len(p.EKHashes) {
			t.Fatalf("round trip of %s: %+v, %v", out, q, err)
		}
	})
}

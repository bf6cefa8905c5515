package tpm

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// goldenWire is the part of testdata/*.json the wire tests use.
type goldenWire struct {
	EKPublic []byte `json:"ek_public"`
	AKPublic []byte `json:"ak_public"`
	Quote    struct {
		Attest    []byte `json:"attest"`
		Signature []byte `json:"signature"`
	} `json:"quote"`
}

func loadWire(t testing.TB) []goldenWire {
	t.Helper()
	var out []goldenWire
	for _, name := range []string{"ecc.json", "rsa.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		var g goldenWire
		if err := json.Unmarshal(b, &g); err != nil {
			t.Fatal(err)
		}
		out = append(out, g)
	}
	return out
}

// samePublic checks parsePublic's view of b against go-tpm's: go-tpm must
// decode b, re-encode it to exactly b, and agree on the fields.
func samePublic(t testing.TB, b []byte, p *publicArea) {
	t.Helper()
	g, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		t.Fatalf("go-tpm refuses what parsePublic accepted: %v", err)
	}
	if !bytes.Equal(tpm2.Marshal(g), b) {
		t.Fatalf("go-tpm re-encodes %x as %x", b, tpm2.Marshal(g))
	}
	attrs := tpm2.Marshal(g.ObjectAttributes)
	if uint16(g.Type) != p.typ || uint16(g.NameAlg) != p.nameAlg || !bytes.Equal(attrs, []byte{byte(p.attrs >> 24), byte(p.attrs >> 16), byte(p.attrs >> 8), byte(p.attrs)}) {
		t.Fatalf("header differs: go-tpm %v %v %x, parsePublic %#x %#x %#x", g.Type, g.NameAlg, attrs, p.typ, p.nameAlg, p.attrs)
	}
	switch p.typ {
	case algRSA:
		n, err := g.Unique.RSA()
		d, err2 := g.Parameters.RSADetail()
		if err != nil || err2 != nil || !bytes.Equal(n.Buffer, p.modulus) || uint16(d.KeyBits) != p.keyBits || d.Exponent != p.exponent || uint16(d.Scheme.Scheme) != p.scheme {
			t.Fatalf("RSA fields differ")
		}
	case algECC:
		pt, err := g.Unique.ECC()
		d, err2 := g.Parameters.ECCDetail()
		if err != nil || err2 != nil || !bytes.Equal(pt.X.Buffer, p.x) || !bytes.Equal(pt.Y.Buffer, p.y) || uint16(d.CurveID) != p.curve || uint16(d.Scheme.Scheme) != p.scheme {
			t.Fatalf("ECC fields differ")
		}
	}
}

func TestWireAgreesWithGoTPM(t *testing.T) {
	for _, g := range loadWire(t) {
		for _, b := range [][]byte{g.EKPublic, g.AKPublic} {
			p, err := parsePublic(b)
			if err != nil {
				t.Fatal(err)
			}
			samePublic(t, b, p)
			if _, err := parsePublic(append(bytes.Clone(b), 0)); err == nil {
				t.Fatal("trailing byte accepted")
			}
			if _, err := parsePublic(b[:len(b)-1]); err == nil {
				t.Fatal("truncated public accepted")
			}
		}
		q, err := parseQuoteAttest(g.Quote.Attest)
		if err != nil {
			t.Fatal(err)
		}
		ga, _ := tpm2.Unmarshal[tpm2.TPMSAttest](g.Quote.Attest)
		qi, _ := ga.Attested.Quote()
		if !bytes.Equal(q.extraData, ga.ExtraData.Buffer) || !bytes.Equal(q.pcrDigest, qi.PCRDigest.Buffer) ||
			len(q.selections) != 1 || !bytes.Equal(q.selections[0].bitmap, qi.PCRSelect.PCRSelections[0].PCRSelect) {
			t.Fatal("quote fields differ from go-tpm's")
		}
		s, err := parseSignature(g.Quote.Signature)
		if err != nil || s.hash != algSHA256 {
			t.Fatalf("signature: %+v, %v", s, err)
		}
		if _, err := parseSignature(append(bytes.Clone(g.Quote.Signature), 1)); err == nil {
			t.Fatal("trailing signature byte accepted")
		}
	}
}

// FuzzParsePublic is a differential fuzz: whatever parsePublic accepts,
// go-tpm decodes to the same fields and re-encodes to the same bytes.
func FuzzParsePublic(f *testing.F) {
	for _, g := range loadWire(f) {
		f.Add(g.EKPublic)
		f.Add(g.AKPublic)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePublic(b)
		if err != nil {
			return
		}
		samePublic(t, b, p)
	})
}

// FuzzParseQuote checks the quote and signature decoders: what they
// accept, go-tpm decodes and re-encodes to the same bytes.
func FuzzParseQuote(f *testing.F) {
	for _, g := range loadWire(f) {
		f.Add(g.Quote.Attest, g.Quote.Signature)
	}
	f.Fuzz(func(t *testing.T, attest, sig []byte) {
		if q, err := parseQuoteAttest(attest); err == nil {
			g, err := tpm2.Unmarshal[tpm2.TPMSAttest](attest)
			if err != nil || !bytes.Equal(tpm2.Marshal(g), attest) || !bytes.Equal(g.ExtraData.Buffer, q.extraData) {
				t.Fatalf("go-tpm disagrees on attest %x: %v", attest, err)
			}
		}
		if _, err := parseSignature(sig); err == nil {
			g, err := tpm2.Unmarshal[tpm2.TPMTSignature](sig)
			if err != nil || !bytes.Equal(tpm2.Marshal(g), sig) {
				t.Fatalf("go-tpm disagrees on signature %x: %v", sig, err)
			}
		}
	})
}

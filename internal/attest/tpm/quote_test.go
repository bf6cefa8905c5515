package tpm_test

import (
	"bytes"
	"maps"
	"slices"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgevault/edgevault/internal/attest/tpm"
)

// rewritePublic decodes a TPMT_PUBLIC, applies mod, and re-encodes it.
func rewritePublic(t testing.TB, b []byte, mod func(p *tpm2.TPMTPublic)) []byte {
	t.Helper()
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		t.Fatal(err)
	}
	mod(p)
	return tpm2.Marshal(p)
}

func TestVerifyQuote(t *testing.T) {
	ecc, rsa := loadGolden(t, "ecc.json"), loadGolden(t, "rsa.json")
	pol := tpm.Policy{EKHashes: []string{zeroPCR}, PCRs: pcrs07, AllowedPCRs: []map[string]string{zeroSet()}}
	for _, g := range []golden{ecc, rsa} {
		res, err := tpm.VerifyQuote(pol, g.AKPublic, g.quote(t), g.Qualifying)
		if err != nil {
			t.Fatal(err)
		}
		if res.AllowedSet != 0 || len(res.PCRs) != 8 || res.PCRs[7] != zeroPCR || len(res.PCRDigest) != 64 {
			t.Fatalf("result %+v", res)
		}
	}

	type mutation struct {
		name string
		mod  func(p *tpm.Policy, ak *[]byte, q *tpm.Quote, qual *[]byte)
		want error
	}
	cases := []mutation{
		{"attest bit flipped", func(_ *tpm.Policy, _ *[]byte, q *tpm.Quote, _ *[]byte) { q.Attest[10] ^= 0x80 }, tpm.ErrQuoteSignature},
		{"attest with a trailing byte", func(_ *tpm.Policy, _ *[]byte, q *tpm.Quote, _ *[]byte) { q.Attest = append(q.Attest, 0) }, tpm.ErrQuoteSignature},
		{"signature from the other key", func(_ *tpm.Policy, _ *[]byte, q *tpm.Quote, _ *[]byte) {
			q.Signature = slices.Clone(rsa.quote(t).Signature)
		}, tpm.ErrQuoteSignature},
		{"signature truncated", func(_ *tpm.Policy, _ *[]byte, q *tpm.Quote, _ *[]byte) {
			q.Signature = q.Signature[:len(q.Signature)-3]
		}, tpm.ErrEvidence},
		{"signature with a trailing byte", func(_ *tpm.Policy, _ *[]byte, q *tpm.Quote, _ *[]byte) { q.Signature = append(q.Signature, 0) }, tpm.ErrEvidence},
		{"empty signature", func(_ *tpm.Policy, _ *[]byte, q *tpm.Quote, _ *[]byte) { q.Signature = nil }, tpm.ErrEvidence},
		{"other qualifying data", func(_ *tpm.Policy, _ *[]byte, _ *tpm.Quote, qual *[]byte) {
			*qual = tpm.Qualifying([]byte("n"), []byte("k"))
		}, tpm.ErrNonce},
		{"policy selects fewer PCRs", func(p *tpm.Policy, _ *[]byte, _ *tpm.Quote, _ *[]byte) {
			p.PCRs = pcrs07[:7]
			p.AllowedPCRs = nil
		}, tpm.ErrPCRSelection},
		{"policy selects more PCRs", func(p *tpm.Policy, _ *[]byte, _ *tpm.Quote, _ *[]byte) { p.PCRs = append(slices.Clone(pcrs07), 16) }, tpm.ErrPCRSelection},
		{"extra PCR value reported", func(_ *tpm.Policy, _ *[]byte, q *tpm.Quote, _ *[]byte) { q.PCRs[9] = make([]byte, 32) }, tpm.ErrPCRSelection},
		{"PCR value missing", func(_ *tpm.Policy, _ *[]byte, q *tpm.Quote, _ *[]byte) { delete(q.PCRs, 0) }, tpm.ErrPCRSelection},
		{"PCR value changed", func(_ *tpm.Policy, _ *[]byte, q *tpm.Quote, _ *[]byte) { q.PCRs[4] = bytes.Repeat([]byte{9}, 32) }, tpm.ErrPCRValues},
		{"PCR value of SHA-1 size", func(_ *tpm.Policy, _ *[]byte, q *tpm.Quote, _ *[]byte) { q.PCRs[4] = make([]byte, 20) }, tpm.ErrEvidence},
		{"values in no allowed set", func(p *tpm.Policy, _ *[]byte, _ *tpm.Quote, _ *[]byte) {
			p.AllowedPCRs = []map[string]string{{"7": "11" + zeroPCR[2:]}, {"0": "22" + zeroPCR[2:]}}
		}, tpm.ErrPCRValues},
		{"AK is the EK", func(_ *tpm.Policy, ak *[]byte, _ *tpm.Quote, _ *[]byte) { *ak = ecc.EKPublic }, tpm.ErrAKAttributes},
		{"AK with a trailing byte", func(_ *tpm.Policy, ak *[]byte, _ *tpm.Quote, _ *[]byte) { *ak = append(slices.Clone(*ak), 0) }, tpm.ErrEvidence},
		{"AK of another scheme", func(_ *tpm.Policy, ak *[]byte, _ *tpm.Quote, _ *[]byte) { *ak = rsa.AKPublic }, tpm.ErrQuoteSignature},
		{"AK not restricted", func(_ *tpm.Policy, ak *[]byte, _ *tpm.Quote, _ *[]byte) {
			*ak = rewritePublic(t, *ak, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = false })
		}, tpm.ErrAKAttributes},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := pol
			p.PCRs, p.AllowedPCRs = slices.Clone(pol.PCRs), slices.Clone(pol.AllowedPCRs)
			ak := slices.Clone(ecc.AKPublic)
			q := ecc.quote(t)
			q.Attest, q.Signature, q.PCRs = slices.Clone(q.Attest), slices.Clone(q.Signature), maps.Clone(q.PCRs)
			qual := slices.Clone(ecc.Qualifying)
			c.mod(&p, &ak, &q, &qual)
			_, err := tpm.VerifyQuote(p, ak, q, qual)
			wantErr(t, c.name, err, c.want)
		})
	}
}

func TestQualifying(t *testing.T) {
	a := tpm.Qualifying([]byte("nonce"), []byte("key"))
	if len(a) != 32 || bytes.Equal(a, tpm.Qualifying([]byte("nonce"), []byte("kez"))) || bytes.Equal(a, tpm.Qualifying([]byte("nonc"), []byte("key"))) {
		t.Fatal("Qualifying does not bind both inputs")
	}
}

func TestMakeCredentialChecks(t *testing.T) {
	g := loadGolden(t, "ecc.json")
	secret := bytes.Repeat([]byte{1}, 32)
	if blob, enc, err := tpm.MakeCredential(g.EKPublic, g.AKPublic, secret); err != nil || len(blob) == 0 || len(enc) == 0 {
		t.Fatalf("MakeCredential: %v", err)
	}
	rg := loadGolden(t, "rsa.json")
	if _, _, err := tpm.MakeCredential(rg.EKPublic, rg.AKPublic, secret); err != nil {
		t.Fatalf("MakeCredential RSA: %v", err)
	}
	ak := func(mod func(p *tpm2.TPMTPublic)) []byte { return rewritePublic(t, g.AKPublic, mod) }
	ek := func(mod func(p *tpm2.TPMTPublic)) []byte { return rewritePublic(t, g.EKPublic, mod) }
	for _, c := range []struct {
		name   string
		ek, ak []byte
		secret []byte
		want   error
	}{
		{"AK not restricted", g.EKPublic, ak(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = false }), secret, tpm.ErrAKAttributes},
		{"AK also decrypts", g.EKPublic, ak(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Decrypt = true }), secret, tpm.ErrAKAttributes},
		{"AK not fixedTPM", g.EKPublic, ak(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedTPM = false }), secret, tpm.ErrAKAttributes},
		{"AK not fixedParent", g.EKPublic, ak(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedParent = false }), secret, tpm.ErrAKAttributes},
		{"AK imported", g.EKPublic, ak(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SensitiveDataOrigin = false }), secret, tpm.ErrAKAttributes},
		{"AK SHA-1 name", g.EKPublic, ak(func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA1 }), secret, tpm.ErrAKAttributes},
		{"AK SHA-1 scheme", g.EKPublic, ak(func(p *tpm2.TPMTPublic) {
			p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA1})},
				CurveID: tpm2.TPMECCNistP256,
			})
		}), secret, tpm.ErrAKAttributes},
		{"AK point off the curve", g.EKPublic, ak(func(p *tpm2.TPMTPublic) {
			pt, _ := p.Unique.ECC()
			pt.X.Buffer = bytes.Repeat([]byte{0xff}, 32)
		}), secret, tpm.ErrAKAttributes},
		{"AK is the EK", g.EKPublic, g.EKPublic, secret, tpm.ErrAKAttributes},
		{"EK is the AK", g.AKPublic, g.AKPublic, secret, tpm.ErrEKNotAllowed},
		{"EK not restricted", ek(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = false }), g.AKPublic, secret, tpm.ErrEKNotAllowed},
		{"EK truncated", g.EKPublic[:20], g.AKPublic, secret, tpm.ErrEvidence},
		{"empty AK", g.EKPublic, nil, secret, tpm.ErrEvidence},
		{"secret too long", g.EKPublic, g.AKPublic, make([]byte, 33), nil},
		{"no secret", g.EKPublic, g.AKPublic, nil, nil},
	} {
		_, _, err := tpm.MakeCredential(c.ek, c.ak, c.secret)
		if c.want == nil {
			if err == nil {
				t.Errorf("%s: accepted", c.name)
			}
			continue
		}
		wantErr(t, c.name, err, c.want)
	}
}

func TestEKHash(t *testing.T) {
	g := loadGolden(t, "ecc.json")
	h, err := tpm.EKHash(g.EKPublic)
	if err != nil || len(h) != 64 {
		t.Fatalf("EKHash: %q, %v", h, err)
	}
	// The hash is of the key alone: attributes do not change it.
	h2, err := tpm.EKHash(rewritePublic(t, g.EKPublic, func(p *tpm2.TPMTPublic) { p.ObjectAttributes.NoDA = !p.ObjectAttributes.NoDA }))
	if err != nil || h2 != h {
		t.Fatalf("EKHash after attribute change: %q, %v", h2, err)
	}
	if _, err := tpm.EKHash([]byte{0, 1}); err == nil {
		t.Fatal("EKHash of garbage")
	}
	// CheckEK refuses an allowed key that is not a decryption key.
	signer := rewritePublic(t, g.EKPublic, func(p *tpm2.TPMTPublic) {
		p.ObjectAttributes.Decrypt, p.ObjectAttributes.SignEncrypt = false, true
	})
	_, err = tpm.CheckEK(tpm.Policy{EKHashes: []string{h}, PCRs: []int{0}}, signer, nil, t0)
	wantErr(t, "signing EK", err, tpm.ErrEKNotAllowed)
	if got, err := tpm.CheckEK(tpm.Policy{EKHashes: []string{h}, PCRs: []int{0}}, g.EKPublic, nil, t0); err != nil || got != h {
		t.Fatalf("CheckEK: %q, %v", got, err)
	}
}

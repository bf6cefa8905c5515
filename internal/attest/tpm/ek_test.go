package tpm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgevault/edgevault/internal/attest/tpm"
)

// testCA is an EK CA (a TPM manufacturer's, in real life).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newTestCA(t testing.TB, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// ekCert issues a TCG-style EK certificate for pub: empty subject, a
// critical subjectAltName holding only a directoryName (TPM manufacturer
// attributes), and the EK certificate purpose 2.23.133.8.1.
func (ca testCA) ekCert(t testing.TB, pub crypto.PublicKey, notAfter time.Time) []byte {
	t.Helper()
	dirName, err := asn1.Marshal(pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 1}, Value: "id:53494D55"}, // tcg-at-tpmManufacturer
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 2}, Value: "SIM"},         // tcg-at-tpmModel
	}}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: dirName}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    t0.Add(-time.Hour), NotAfter: notAfter,
		KeyUsage:           x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}},
		ExtraExtensions:    []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: true, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// cryptoPub returns the crypto public key of a TPMT_PUBLIC.
func cryptoPub(t testing.TB, tpmtPublic []byte) crypto.PublicKey {
	t.Helper()
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](tpmtPublic)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tpm2.Pub(*p)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEKAllowedByCA(t *testing.T) {
	for _, c := range []struct {
		name string
		ek   tpm2.TPMTPublic
	}{{"ECC EK", tpm2.ECCEKTemplate}, {"RSA EK", tpm2.RSAEKTemplate}} {
		t.Run(c.name, func(t *testing.T) {
			s := openSim(t, c.ek)
			f := newFixture(t)
			ca, other := newTestCA(t, "EK CA"), newTestCA(t, "Other CA")
			f.setPolicy("east", tpm.Policy{EKCAs: []string{ca.pem}, PCRs: pcrs07, AllowedPCRs: []map[string]string{zeroSet()}})
			ak := s.newAK(eccAKTemplate)
			ekKey := cryptoPub(t, s.ekPub)
			good := ca.ekCert(t, ekKey, t0.Add(365*24*time.Hour))

			// Proof the certificate has what crypto/x509 trips over.
			parsed, err := x509.ParseCertificate(good)
			if err != nil || len(parsed.UnhandledCriticalExtensions) != 1 {
				t.Fatalf("test EK certificate: %v, unhandled %v", err, parsed.UnhandledCriticalExtensions)
			}

			ch, p, err := begin(t, f, "east", s, ak, good, t0)
			if err != nil {
				t.Fatal(err)
			}
			tlsDER, _ := tlsKey(t)
			id, err := attestReq(t, f, "east", ch.ID, answer(t, s, ak, p, tlsDER), t0)
			if err != nil {
				t.Fatal(err)
			}
			if h, _ := tpm.EKHash(s.ekPub); id.Claims["ek_hash"] != h {
				t.Fatalf("claims %v", id.Claims)
			}

			otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			for _, bad := range []struct {
				name string
				cert []byte
				now  time.Time
			}{
				{"no certificate", nil, t0},
				{"issued by another CA", other.ekCert(t, ekKey, t0.Add(time.Hour)), t0},
				{"certifies another key", ca.ekCert(t, &otherKey.PublicKey, t0.Add(time.Hour)), t0},
				{"expired", ca.ekCert(t, ekKey, t0.Add(time.Hour)), t0.Add(2 * time.Hour)},
			} {
				_, _, err := begin(t, f, "east", s, ak, bad.cert, bad.now)
				wantErr(t, bad.name, err, tpm.ErrEKNotAllowed)
			}
			_, _, err = begin(t, f, "east", s, ak, []byte("not DER"), t0)
			wantErr(t, "garbage certificate", err, tpm.ErrEvidence)
		})
	}
}

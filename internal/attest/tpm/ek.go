package tpm

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
	"time"
)

// MaxEKCertBytes bounds the DER EK certificate CheckEK accepts.
const MaxEKCertBytes = 8 << 10

// oidSubjectAltName is the subjectAltName extension. TCG EK certificates
// have an empty subject and a critical SAN holding only a directoryName
// (TPM manufacturer, model, version), which crypto/x509 reports as an
// unhandled critical extension.
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// CheckEK decides whether the endorsement key ekPublic (TPMT_PUBLIC bytes)
// is allowed by p, and returns its hash (EKHash). The EK must be a
// restricted decryption key, and either its hash is in p.EKHashes, or
// ekCert (DER, optional) is a certificate for exactly this public key that
// chains, at now, to one of p.EKCAs. Errors wrap ErrEKNotAllowed, or
// ErrEvidence for undecodable input, and name the field.
func CheckEK(p Policy, ekPublic, ekCert []byte, now time.Time) (ekHash string, err error) {
	ek, err := decodePublic(ekPublic, "ek_public")
	if err != nil {
		return "", err
	}
	key, err := ekKey(ek)
	if err != nil {
		return "", err
	}
	h, err := keyHash(key)
	if err != nil {
		return "", fmt.Errorf("%w: ek_public: %v", ErrEvidence, err)
	}
	if slices.Contains(p.EKHashes, h) {
		return h, nil
	}
	switch {
	case len(p.EKCAs) == 0:
		return "", fmt.Errorf("%w: ek_public hash %s is not in ek_hashes", ErrEKNotAllowed, h)
	case len(ekCert) == 0:
		return "", fmt.Errorf("%w: ek_public hash %s is not in ek_hashes, and no ek_certificate was sent", ErrEKNotAllowed, h)
	case len(ekCert) > MaxEKCertBytes:
		return "", fmt.Errorf("%w: ek_certificate is %d bytes, at most %d", ErrEvidence, len(ekCert), MaxEKCertBytes)
	}
	cert, err := x509.ParseCertificate(ekCert)
	if err != nil {
		return "", fmt.Errorf("%w: ek_certificate: %v", ErrEvidence, err)
	}
	certDER, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		return "", fmt.Errorf("%w: ek_certificate: public key: %v", ErrEKNotAllowed, err)
	}
	ekDER, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return "", fmt.Errorf("%w: ek_public: %v", ErrEvidence, err)
	}
	if !bytes.Equal(certDER, ekDER) {
		return "", fmt.Errorf("%w: ek_certificate certifies another key than ek_public", ErrEKNotAllowed)
	}
	roots := x509.NewCertPool()
	for i, s := range p.EKCAs {
		cas, err := parseCAPEM(s)
		if err != nil {
			return "", fmt.Errorf("%w: ek_ca_pems[%d]: %v", ErrInvalidPolicy, i, err)
		}
		for _, ca := range cas {
			roots.AddCert(ca)
		}
	}
	cert.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(cert.UnhandledCriticalExtensions),
		func(oid asn1.ObjectIdentifier) bool { return oid.Equal(oidSubjectAltName) })
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		// EK certificates carry the TCG EK certificate purpose
		// (2.23.133.8.1), which crypto/x509 does not know.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return "", fmt.Errorf("%w: ek_certificate (issuer %q) does not chain to ek_ca_pems: %v", ErrEKNotAllowed, truncate(cert.Issuer.String()), err)
	}
	return h, nil
}

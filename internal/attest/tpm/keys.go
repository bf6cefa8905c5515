package tpm

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Size bounds of TPM structures in evidence. They are generous: an RSA-4096
// TPMT_PUBLIC is about 550 bytes, a quote about 150.
const (
	maxPublicBytes    = 2048
	maxAttestBytes    = 2048
	maxSignatureBytes = 1024
)

// RSA key sizes accepted for an EK or an AK.
const (
	minRSABits = 2048
	maxRSABits = 4096
)

// EKHash returns the hex SHA-256 of the PKIX DER of the public key in
// ekPublic, a TPMT_PUBLIC: the form Policy.EKHashes lists and the agent
// shows. Errors wrap ErrEvidence.
func EKHash(ekPublic []byte) (string, error) {
	pub, err := decodePublic(ekPublic, "ek_public")
	if err != nil {
		return "", err
	}
	key, err := publicKey(pub)
	if err != nil {
		return "", fmt.Errorf("%w: ek_public: %v", ErrEvidence, err)
	}
	h, err := keyHash(key)
	if err != nil {
		return "", fmt.Errorf("%w: ek_public: %v", ErrEvidence, err)
	}
	return h, nil
}

// keyHash returns the hex SHA-256 of key's PKIX DER.
func keyHash(key crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// decodePublic decodes a TPMT_PUBLIC, refusing empty, oversized and
// non-canonical encodings (the bytes must be exactly what re-encoding the
// structure gives, so the Name computed here is the TPM's). Errors wrap
// ErrEvidence and name field.
func decodePublic(b []byte, field string) (*tpm2.TPMTPublic, error) {
	if len(b) == 0 || len(b) > maxPublicBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, want 1..%d", ErrEvidence, field, len(b), maxPublicBytes)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: not a TPMT_PUBLIC: %v", ErrEvidence, field, err)
	}
	if pub.Type != tpm2.TPMAlgRSA && pub.Type != tpm2.TPMAlgECC {
		return nil, fmt.Errorf("%w: %s: key type %v, want RSA or ECC", ErrEvidence, field, pub.Type)
	}
	if !bytes.Equal(tpm2.Marshal(pub), b) {
		return nil, fmt.Errorf("%w: %s: non-canonical TPMT_PUBLIC encoding (trailing or re-encoded bytes)", ErrEvidence, field)
	}
	return pub, nil
}

// publicKey converts an RSA or ECC TPMT_PUBLIC to a crypto public key,
// checking the key itself: an RSA modulus of exactly KeyBits bits
// (minRSABits..maxRSABits) with exponent 65537, or a point on P-256 or
// P-384.
func publicKey(pub *tpm2.TPMTPublic) (crypto.PublicKey, error) {
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		parms, err := pub.Parameters.RSADetail()
		if err != nil {
			return nil, fmt.Errorf("RSA parameters: %v", err)
		}
		n, err := pub.Unique.RSA()
		if err != nil {
			return nil, fmt.Errorf("RSA modulus: %v", err)
		}
		if parms.KeyBits < minRSABits || parms.KeyBits > maxRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, want %d..%d", parms.KeyBits, minRSABits, maxRSABits)
		}
		if parms.Exponent != 0 && parms.Exponent != 65537 {
			return nil, fmt.Errorf("RSA exponent %d, want 65537", parms.Exponent)
		}
		key, err := tpm2.RSAPub(parms, n)
		if err != nil {
			return nil, fmt.Errorf("RSA key: %v", err)
		}
		if key.N.BitLen() != int(parms.KeyBits) || key.N.Bit(0) == 0 {
			return nil, fmt.Errorf("RSA modulus of %d bits does not match KeyBits %d", key.N.BitLen(), parms.KeyBits)
		}
		return key, nil
	case tpm2.TPMAlgECC:
		parms, err := pub.Parameters.ECCDetail()
		if err != nil {
			return nil, fmt.Errorf("ECC parameters: %v", err)
		}
		if parms.CurveID != tpm2.TPMECCNistP256 && parms.CurveID != tpm2.TPMECCNistP384 {
			return nil, fmt.Errorf("ECC curve %v, want NIST P-256 or P-384", parms.CurveID)
		}
		pt, err := pub.Unique.ECC()
		if err != nil {
			return nil, fmt.Errorf("ECC point: %v", err)
		}
		key, err := tpm2.ECDSAPub(parms, pt)
		if err != nil {
			return nil, fmt.Errorf("ECC key: %v", err)
		}
		if _, err := key.ECDH(); err != nil { // checks the point is on the curve
			return nil, fmt.Errorf("ECC point: %v", err)
		}
		return key, nil
	}
	return nil, fmt.Errorf("key type %v, want RSA or ECC", pub.Type)
}

// ekKey checks that pub is an endorsement-style key, a fixedTPM
// fixedParent restricted decryption key (the only kind TPM2_ActivateCredential
// accepts), and returns its public key. Errors wrap ErrEKNotAllowed.
func ekKey(pub *tpm2.TPMTPublic) (crypto.PublicKey, error) {
	a := pub.ObjectAttributes
	switch {
	case !a.Restricted || !a.Decrypt || a.SignEncrypt:
		return nil, fmt.Errorf("%w: ek_public is not a restricted decryption key", ErrEKNotAllowed)
	case !a.FixedTPM || !a.FixedParent:
		return nil, fmt.Errorf("%w: ek_public is not fixedTPM and fixedParent", ErrEKNotAllowed)
	case pub.NameAlg != tpm2.TPMAlgSHA256 && pub.NameAlg != tpm2.TPMAlgSHA384:
		return nil, fmt.Errorf("%w: ek_public name algorithm %v, want SHA-256 or SHA-384", ErrEKNotAllowed, pub.NameAlg)
	}
	key, err := publicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: ek_public: %v", ErrEKNotAllowed, err)
	}
	return key, nil
}

// akKey checks that pub is an acceptable attestation key and returns its
// public key and signature scheme. An AK must be a restricted signing key
// (the TPM signs only TPM-generated structures with it), fixedTPM and
// fixedParent (it cannot leave the TPM), generated inside the TPM, with a
// SHA-256 name, and an ECDSA P-256 or RSASSA/RSAPSS 2048..4096-bit key
// whose scheme hashes with SHA-256. Errors wrap ErrAKAttributes and name
// field.
func akKey(pub *tpm2.TPMTPublic, field string) (crypto.PublicKey, tpm2.TPMAlgID, error) {
	bad := func(format string, args ...any) (crypto.PublicKey, tpm2.TPMAlgID, error) {
		return nil, 0, fmt.Errorf("%w: %s: "+format, append([]any{ErrAKAttributes, field}, args...)...)
	}
	a := pub.ObjectAttributes
	switch {
	case !a.Restricted || !a.SignEncrypt || a.Decrypt:
		return bad("not a restricted signing key")
	case !a.FixedTPM || !a.FixedParent:
		return bad("not fixedTPM and fixedParent: the key could leave the TPM")
	case !a.SensitiveDataOrigin:
		return bad("not generated by the TPM (sensitiveDataOrigin clear)")
	case pub.NameAlg != tpm2.TPMAlgSHA256:
		return bad("name algorithm %v, want SHA-256", pub.NameAlg)
	}
	var scheme tpm2.TPMAlgID
	switch pub.Type {
	case tpm2.TPMAlgECC:
		parms, err := pub.Parameters.ECCDetail()
		if err != nil {
			return bad("ECC parameters: %v", err)
		}
		if parms.CurveID != tpm2.TPMECCNistP256 {
			return bad("ECC curve %v, want NIST P-256", parms.CurveID)
		}
		if parms.Scheme.Scheme != tpm2.TPMAlgECDSA {
			return bad("signing scheme %v, want ECDSA", parms.Scheme.Scheme)
		}
		d, err := parms.Scheme.Details.ECDSA()
		if err != nil || d.HashAlg != tpm2.TPMAlgSHA256 {
			return bad("ECDSA scheme does not hash with SHA-256")
		}
		scheme = tpm2.TPMAlgECDSA
	case tpm2.TPMAlgRSA:
		parms, err := pub.Parameters.RSADetail()
		if err != nil {
			return bad("RSA parameters: %v", err)
		}
		var d *tpm2.TPMSSchemeHash
		switch parms.Scheme.Scheme {
		case tpm2.TPMAlgRSASSA:
			s, err := parms.Scheme.Details.RSASSA()
			if err == nil {
				d = (*tpm2.TPMSSchemeHash)(s)
			}
		case tpm2.TPMAlgRSAPSS:
			s, err := parms.Scheme.Details.RSAPSS()
			if err == nil {
				d = (*tpm2.TPMSSchemeHash)(s)
			}
		default:
			return bad("signing scheme %v, want RSASSA or RSAPSS", parms.Scheme.Scheme)
		}
		if d == nil || d.HashAlg != tpm2.TPMAlgSHA256 {
			return bad("RSA scheme does not hash with SHA-256")
		}
		scheme = parms.Scheme.Scheme
	default:
		return bad("key type %v, want ECC or RSA", pub.Type)
	}
	key, err := publicKey(pub)
	if err != nil {
		return bad("%v", err)
	}
	return key, scheme, nil
}

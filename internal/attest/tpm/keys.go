package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
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
// shows. Only the key counts, not the object's attributes. Errors wrap
// ErrEvidence.
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

// decodePublic decodes an RSA or ECC TPMT_PUBLIC that must fill b exactly.
// Errors wrap ErrEvidence and name field.
func decodePublic(b []byte, field string) (*publicArea, error) {
	if len(b) == 0 || len(b) > maxPublicBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, want 1..%d", ErrEvidence, field, len(b), maxPublicBytes)
	}
	pub, err := parsePublic(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: not an RSA or ECC TPMT_PUBLIC: %v", ErrEvidence, field, err)
	}
	return pub, nil
}

// publicKey converts a public area to a crypto public key, checking the
// key itself: an RSA modulus of exactly KeyBits bits
// (minRSABits..maxRSABits) with exponent 65537, or a point on P-256 or
// P-384.
func publicKey(pub *publicArea) (crypto.PublicKey, error) {
	switch pub.typ {
	case algRSA:
		if pub.keyBits < minRSABits || pub.keyBits > maxRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, want %d..%d", pub.keyBits, minRSABits, maxRSABits)
		}
		if pub.exponent != 0 && pub.exponent != 65537 {
			return nil, fmt.Errorf("RSA exponent %d, want 65537", pub.exponent)
		}
		n := new(big.Int).SetBytes(pub.modulus)
		if len(pub.modulus) != int(pub.keyBits)/8 || n.BitLen() != int(pub.keyBits) || n.Bit(0) == 0 {
			return nil, fmt.Errorf("RSA modulus of %d bytes does not match KeyBits %d", len(pub.modulus), pub.keyBits)
		}
		return &rsa.PublicKey{N: n, E: 65537}, nil
	case algECC:
		var c elliptic.Curve
		switch pub.curve {
		case eccNistP256:
			c = elliptic.P256()
		case eccNistP384:
			c = elliptic.P384()
		default:
			return nil, fmt.Errorf("ECC curve %#04x, want NIST P-256 or P-384", pub.curve)
		}
		size := (c.Params().BitSize + 7) / 8
		if len(pub.x) > size || len(pub.y) > size {
			return nil, fmt.Errorf("ECC point coordinates of %d and %d bytes, want at most %d", len(pub.x), len(pub.y), size)
		}
		point := make([]byte, 1+2*size)
		point[0] = 4
		copy(point[1+size-len(pub.x):1+size], pub.x)
		copy(point[1+2*size-len(pub.y):], pub.y)
		key, err := ecdsa.ParseUncompressedPublicKey(c, point)
		if err != nil {
			return nil, fmt.Errorf("ECC point: %v", err)
		}
		return key, nil
	}
	return nil, fmt.Errorf("key type %#04x, want RSA or ECC", pub.typ)
}

// ekKey checks that pub is an endorsement-style key, a fixedTPM
// fixedParent restricted decryption key (the only kind
// TPM2_ActivateCredential accepts), and returns its public key. Errors
// wrap ErrEKNotAllowed.
func ekKey(pub *publicArea) (crypto.PublicKey, error) {
	switch {
	case !pub.has(attrRestricted) || !pub.has(attrDecrypt) || pub.has(attrSign):
		return nil, fmt.Errorf("%w: ek_public is not a restricted decryption key", ErrEKNotAllowed)
	case !pub.has(attrFixedTPM) || !pub.has(attrFixedParent):
		return nil, fmt.Errorf("%w: ek_public is not fixedTPM and fixedParent", ErrEKNotAllowed)
	case pub.nameAlg != algSHA256 && pub.nameAlg != algSHA384:
		return nil, fmt.Errorf("%w: ek_public name algorithm %#04x, want SHA-256 or SHA-384", ErrEKNotAllowed, pub.nameAlg)
	case pub.symAlg != algAES:
		return nil, fmt.Errorf("%w: ek_public has no AES symmetric algorithm for credential protection", ErrEKNotAllowed)
	}
	key, err := publicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: ek_public: %v", ErrEKNotAllowed, err)
	}
	return key, nil
}

// akKey checks that pub is an acceptable attestation key and returns its
// public key. An AK must be a restricted signing key (the TPM signs only
// TPM-generated structures with it), fixedTPM and fixedParent (it cannot
// leave the TPM), generated inside the TPM, with a SHA-256 name, and an
// ECDSA P-256 or RSASSA/RSAPSS 2048..4096-bit key whose scheme hashes with
// SHA-256. Errors wrap ErrAKAttributes and name field.
func akKey(pub *publicArea, field string) (crypto.PublicKey, error) {
	bad := func(format string, args ...any) (crypto.PublicKey, error) {
		return nil, fmt.Errorf("%w: %s: "+format, append([]any{ErrAKAttributes, field}, args...)...)
	}
	switch {
	case !pub.has(attrRestricted) || !pub.has(attrSign) || pub.has(attrDecrypt):
		return bad("not a restricted signing key")
	case !pub.has(attrFixedTPM) || !pub.has(attrFixedParent):
		return bad("not fixedTPM and fixedParent: the key could leave the TPM")
	case !pub.has(attrSensitiveDataOrigin):
		return bad("not generated by the TPM (sensitiveDataOrigin clear)")
	case pub.nameAlg != algSHA256:
		return bad("name algorithm %#04x, want SHA-256", pub.nameAlg)
	case pub.symAlg != algNull:
		return bad("a signing key has no symmetric algorithm")
	}
	switch pub.typ {
	case algECC:
		switch {
		case pub.curve != eccNistP256:
			return bad("ECC curve %#04x, want NIST P-256", pub.curve)
		case pub.scheme != algECDSA:
			return bad("signing scheme %#04x, want ECDSA", pub.scheme)
		case pub.kdf != algNull:
			return bad("a signing key has no KDF")
		}
	case algRSA:
		if pub.scheme != algRSASSA && pub.scheme != algRSAPSS {
			return bad("signing scheme %#04x, want RSASSA or RSAPSS", pub.scheme)
		}
	}
	if pub.schemeHash != algSHA256 {
		return bad("signing scheme hash %#04x, want SHA-256", pub.schemeHash)
	}
	key, err := publicKey(pub)
	if err != nil {
		return bad("%v", err)
	}
	return key, nil
}

package tpm

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// MaxSecretLen is the longest credential secret MakeCredential accepts
// (a TPM2B_DIGEST of the EK's SHA-256 name algorithm).
const MaxSecretLen = 32

// MakeCredential runs TPM2_MakeCredential in software: it encrypts secret
// to the endorsement key ekPublic, bound to the Name of the attestation key
// akPublic (both TPMT_PUBLIC bytes), so that only the TPM holding the EK
// releases it (TPM2_ActivateCredential), and only with that exact AK loaded.
// It returns the TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET contents.
//
// It checks the keys first: the EK must be a restricted decryption key
// (ErrEKNotAllowed), the AK an acceptable attestation key
// (ErrAKAttributes; see ErrAKAttributes for the rules), both canonically
// encoded (ErrEvidence). It does not check the EK against a policy: see
// CheckEK.
func MakeCredential(ekPublic, akPublic, secret []byte) (blob, encSecret []byte, err error) {
	if len(secret) == 0 || len(secret) > MaxSecretLen {
		return nil, nil, fmt.Errorf("make credential: secret is %d bytes, want 1..%d", len(secret), MaxSecretLen)
	}
	ek, err := decodePublic(ekPublic, "ek_public")
	if err != nil {
		return nil, nil, err
	}
	if _, err := ekKey(ek); err != nil {
		return nil, nil, err
	}
	ak, err := decodePublic(akPublic, "ak_public")
	if err != nil {
		return nil, nil, err
	}
	if _, err := akKey(ak, "ak_public"); err != nil {
		return nil, nil, err
	}
	// The AK's Name: its name algorithm, then the SHA-256 of its
	// TPMT_PUBLIC, which decodePublic checked is exactly akPublic.
	akSum := sha256.Sum256(akPublic)
	name := append([]byte{byte(algSHA256 >> 8), byte(algSHA256)}, akSum[:]...)
	ekT, err := tpm2.Unmarshal[tpm2.TPMTPublic](ekPublic)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ek_public: %v", ErrEvidence, err)
	}
	key, err := tpm2.ImportEncapsulationKey(ekT)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ek_public: not usable for credential protection: %v", ErrEKNotAllowed, err)
	}
	blob, encSecret, err = tpm2.CreateCredential(rand.Reader, key, name, secret)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ek_public: make credential: %v", ErrEKNotAllowed, err)
	}
	return blob, encSecret, nil
}

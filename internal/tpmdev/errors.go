package tpmdev

import "errors"

// Errors. Each is wrapped with context (the spec, file or PCR at fault);
// match them with errors.Is.
var (
	// ErrNoTPM means the TPM spec given to Open names no TPM that answers:
	// a missing device, a refused connection, an unknown scheme.
	ErrNoTPM = errors.New("tpmdev: no usable TPM")
	// ErrPCRMismatch means a sealed blob's PCR policy failed: the selected
	// PCRs no longer hold the values they had when it was sealed (another
	// boot state), or the blob's PCR selection was altered.
	ErrPCRMismatch = errors.New("tpmdev: PCR values differ from those the data was sealed to")
	// ErrOtherTPM means a blob (sealed data or the AK file) was made under
	// another TPM's storage root key, or this TPM's owner hierarchy was
	// cleared since: the TPM refuses it as failing its integrity check.
	ErrOtherTPM = errors.New("tpmdev: blob was made by another TPM")
	// ErrBadBlob means a sealed blob or AK file is malformed.
	ErrBadBlob = errors.New("tpmdev: malformed blob")
	// ErrNoAK means ActivateCredential or Quote was called before LoadAK.
	ErrNoAK = errors.New("tpmdev: attestation key not loaded (call LoadAK first)")
	// ErrActivation means the TPM refused a credential: it was not made for
	// this TPM's EK and the loaded AK's name, or it was altered.
	ErrActivation = errors.New("tpmdev: credential does not activate with this TPM's EK and AK")
	// ErrInvalidPCR means a PCR index or digest is out of range or a
	// selection is empty or repeats an index.
	ErrInvalidPCR = errors.New("tpmdev: invalid PCR selection")
)

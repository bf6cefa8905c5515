package tpm

import "errors"

// Errors returned by this package, one per fault. Match them with
// errors.Is; messages name the evidence field, policy field or index at
// fault. Attestor methods also wrap attest.ErrAttestation.
var (
	// ErrNoPolicy is returned when the zone has no TPM attestation policy:
	// TPM attestation is not enabled there.
	ErrNoPolicy = errors.New("zone has no TPM attestation policy")
	// ErrInvalidPolicy is returned by Policy.Validate and ParsePolicy; the
	// message names the field and index.
	ErrInvalidPolicy = errors.New("invalid TPM attestation policy")
	// ErrEvidence is returned for evidence that cannot be decoded: bad
	// JSON or base64, a malformed or non-canonical TPM structure, a missing
	// field, an unparsable TLS public key.
	ErrEvidence = errors.New("malformed TPM evidence")
	// ErrEKNotAllowed is returned when the endorsement key is neither in the
	// policy's EK hashes nor certified by one of its EK CAs, or is not an
	// endorsement key at all (not a restricted decryption key).
	ErrEKNotAllowed = errors.New("endorsement key not allowed")
	// ErrAKAttributes is returned for an attestation key that is not a
	// fixedTPM, fixedParent, TPM-generated, restricted signing key with a
	// SHA-256 name and an ECDSA P-256 or RSA 2048..4096 SHA-256 scheme.
	ErrAKAttributes = errors.New("attestation key attributes not acceptable")
	// ErrActivation is returned when the secret the agent returns is not
	// the one encrypted to its EK: the AK is not in the EK's TPM.
	ErrActivation = errors.New("credential activation failed: the AK is not in the EK's TPM")
	// ErrNonce is returned for a challenge that is unknown, already used
	// (a replay), expired, of the wrong kind, or a quote whose qualifying
	// data is not SHA-256(nonce || TLS public key).
	ErrNonce = errors.New("stale, replayed or unknown challenge")
	// ErrQuoteSignature is returned when the quote is not signed by the AK
	// (or is signed with another scheme or hash than the AK's), or is not a
	// TPM-generated quote structure.
	ErrQuoteSignature = errors.New("quote signature invalid")
	// ErrPCRSelection is returned when the quote covers other PCRs or banks
	// than the policy selects, or the reported values name other PCRs.
	ErrPCRSelection = errors.New("quote PCR selection differs from the policy")
	// ErrPCRValues is returned when the reported PCR values do not hash to
	// the quoted digest, or match none of the policy's allowed sets.
	ErrPCRValues = errors.New("PCR values not allowed")
	// ErrEventLog is returned for an event log that cannot be parsed (not
	// a TCG2 crypto-agile log with a SHA-256 bank), that does not replay
	// to the quoted value of a PCR it covers, or whose SecureBoot
	// measurement does not match its data; the message names the PCR or
	// event.
	ErrEventLog = errors.New("event log does not match the quote")
)

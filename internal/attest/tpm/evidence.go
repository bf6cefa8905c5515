package tpm

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// MaxEvidenceBytes bounds the evidence JSON Begin and Attest accept: 64
// KiB, and room for an event log of MaxEventLogBytes in base64.
const MaxEvidenceBytes = 64<<10 + (MaxEventLogBytes+2)/3*4

// MaxTLSKeyBytes bounds AttestEvidence.PublicKeyDER.
const MaxTLSKeyBytes = 4096

// BeginEvidence is the agent's first message (attest.Challenger Begin).
// Byte fields are base64 in JSON.
type BeginEvidence struct {
	// EKPublic is the endorsement key's TPMT_PUBLIC.
	EKPublic []byte `json:"ek_public"`
	// EKCertificate is the EK certificate (DER) read from the TPM's NV
	// storage, if it has one.
	EKCertificate []byte `json:"ek_certificate,omitempty"`
	// AKPublic is the attestation key's TPMT_PUBLIC.
	AKPublic []byte `json:"ak_public"`
}

// ChallengePayload is attest.Challenge.Payload, as JSON. Byte fields are
// base64.
type ChallengePayload struct {
	// CredentialBlob and EncryptedSecret are the TPM2B_ID_OBJECT and
	// TPM2B_ENCRYPTED_SECRET contents for TPM2_ActivateCredential; empty
	// in a re-attestation challenge.
	CredentialBlob  []byte `json:"credential_blob,omitempty"`
	EncryptedSecret []byte `json:"encrypted_secret,omitempty"`
	// Nonce goes into the quote's qualifying data (see Qualifying).
	Nonce []byte `json:"nonce"`
	// PCRs is the SHA-256 bank selection to quote.
	PCRs []int `json:"pcrs"`
}

// QuoteEvidence is a quote in JSON. Byte fields are base64.
type QuoteEvidence struct {
	// Attest is the TPMS_ATTEST the TPM returned.
	Attest []byte `json:"attest"`
	// Signature is the TPMT_SIGNATURE the TPM returned.
	Signature []byte `json:"signature"`
	// PCRs maps a decimal PCR index to its 32-byte SHA-256 bank value.
	PCRs map[string][]byte `json:"pcrs"`
}

// AttestEvidence is the agent's answer to a challenge (Request.Evidence),
// and to a re-attestation challenge (without Secret). Byte fields are
// base64.
type AttestEvidence struct {
	// Secret is the credential secret TPM2_ActivateCredential released.
	Secret []byte `json:"secret,omitempty"`
	// Quote is the AK's quote over the challenge's PCR selection, with
	// qualifying data Qualifying(nonce, PublicKeyDER).
	Quote QuoteEvidence `json:"quote"`
	// PublicKeyDER is the PKIX DER of the TLS public key the agent wants
	// its certificate for.
	PublicKeyDER []byte `json:"public_key_der"`
	// EventLog is the TPM's TCG2 crypto-agile event log (Linux:
	// /sys/kernel/security/tpm0/binary_bios_measurements), optional, at
	// most MaxEventLogBytes. When present it must replay to the quoted
	// values of the PCRs it covers (CheckEventLog).
	EventLog []byte `json:"event_log,omitempty"`
}

// ParseBeginEvidence decodes and bounds Begin's evidence. Unknown fields
// are ignored (newer agents may send more); the TPM structures themselves
// are checked later. Errors wrap ErrEvidence and name the field.
func ParseBeginEvidence(b []byte) (BeginEvidence, error) {
	var w struct {
		EKPublic      string `json:"ek_public"`
		EKCertificate string `json:"ek_certificate"`
		AKPublic      string `json:"ak_public"`
	}
	if err := decodeEvidence(b, &w); err != nil {
		return BeginEvidence{}, err
	}
	var e BeginEvidence
	var err error
	if e.EKPublic, err = decodeB64("ek_public", w.EKPublic, 1, maxPublicBytes); err != nil {
		return BeginEvidence{}, err
	}
	if e.EKCertificate, err = decodeB64("ek_certificate", w.EKCertificate, 0, MaxEKCertBytes); err != nil {
		return BeginEvidence{}, err
	}
	if e.AKPublic, err = decodeB64("ak_public", w.AKPublic, 1, maxPublicBytes); err != nil {
		return BeginEvidence{}, err
	}
	return e, nil
}

// ParseAttestEvidence decodes and bounds Attest's evidence, checks that
// PublicKeyDER is a PKIX public key, and returns the quote decoded too.
// Unknown fields are ignored. Errors wrap ErrEvidence and name the field.
func ParseAttestEvidence(b []byte) (AttestEvidence, Quote, error) {
	var w struct {
		Secret string `json:"secret"`
		Quote  struct {
			Attest    string            `json:"attest"`
			Signature string            `json:"signature"`
			PCRs      map[string]string `json:"pcrs"`
		} `json:"quote"`
		PublicKeyDER string `json:"public_key_der"`
		EventLog     string `json:"event_log"`
	}
	if err := decodeEvidence(b, &w); err != nil {
		return AttestEvidence{}, Quote{}, err
	}
	var e AttestEvidence
	var err error
	if e.Secret, err = decodeB64("secret", w.Secret, 0, MaxSecretLen); err != nil {
		return AttestEvidence{}, Quote{}, err
	}
	if e.PublicKeyDER, err = decodeB64("public_key_der", w.PublicKeyDER, 1, MaxTLSKeyBytes); err != nil {
		return AttestEvidence{}, Quote{}, err
	}
	if _, err := x509.ParsePKIXPublicKey(e.PublicKeyDER); err != nil {
		return AttestEvidence{}, Quote{}, fmt.Errorf("%w: public_key_der: %v", ErrEvidence, err)
	}
	if e.EventLog, err = decodeB64("event_log", w.EventLog, 0, MaxEventLogBytes); err != nil {
		return AttestEvidence{}, Quote{}, err
	}
	if e.Quote.Attest, err = decodeB64("quote.attest", w.Quote.Attest, 1, maxAttestBytes); err != nil {
		return AttestEvidence{}, Quote{}, err
	}
	if e.Quote.Signature, err = decodeB64("quote.signature", w.Quote.Signature, 1, maxSignatureBytes); err != nil {
		return AttestEvidence{}, Quote{}, err
	}
	if len(w.Quote.PCRs) > MaxPCRIndex+1 {
		return AttestEvidence{}, Quote{}, fmt.Errorf("%w: quote.pcrs has %d entries, at most %d", ErrEvidence, len(w.Quote.PCRs), MaxPCRIndex+1)
	}
	e.Quote.PCRs = make(map[string][]byte, len(w.Quote.PCRs))
	for k, v := range w.Quote.PCRs {
		if e.Quote.PCRs[k], err = decodeB64(fmt.Sprintf("quote.pcrs[%q]", truncate(k)), v, 32, 32); err != nil {
			return AttestEvidence{}, Quote{}, err
		}
	}
	q, err := e.Quote.Decode()
	if err != nil {
		return AttestEvidence{}, Quote{}, err
	}
	return e, q, nil
}

// decodeB64 decodes the standard, padded base64 of field (as encoding/json
// writes []byte) and checks the decoded length is min..max.
func decodeB64(field, s string, min, max int) ([]byte, error) {
	if base64.StdEncoding.DecodedLen(len(s)) > max+3 {
		return nil, fmt.Errorf("%w: %s is longer than %d bytes", ErrEvidence, field, max)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: bad base64: %v", ErrEvidence, field, err)
	}
	if len(b) < min || len(b) > max {
		if min == max {
			return nil, fmt.Errorf("%w: %s is %d bytes, want %d", ErrEvidence, field, len(b), min)
		}
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d..%d", ErrEvidence, field, len(b), min, max)
	}
	return b, nil
}

// Decode checks sizes and converts the PCR keys to indexes. Errors wrap
// ErrEvidence.
func (e QuoteEvidence) Decode() (Quote, error) {
	switch {
	case len(e.Attest) == 0 || len(e.Attest) > maxAttestBytes:
		return Quote{}, fmt.Errorf("%w: quote.attest is %d bytes, want 1..%d", ErrEvidence, len(e.Attest), maxAttestBytes)
	case len(e.Signature) == 0 || len(e.Signature) > maxSignatureBytes:
		return Quote{}, fmt.Errorf("%w: quote.signature is %d bytes, want 1..%d", ErrEvidence, len(e.Signature), maxSignatureBytes)
	case len(e.PCRs) > MaxPCRIndex+1:
		return Quote{}, fmt.Errorf("%w: quote.pcrs has %d entries, at most %d", ErrEvidence, len(e.PCRs), MaxPCRIndex+1)
	}
	q := Quote{Attest: e.Attest, Signature: e.Signature, PCRs: make(map[int][]byte, len(e.PCRs))}
	for k, v := range e.PCRs {
		n, err := parsePCRKey(k)
		if err != nil {
			return Quote{}, fmt.Errorf("%w: quote.pcrs: %v", ErrEvidence, err)
		}
		if len(v) != 32 {
			return Quote{}, fmt.Errorf("%w: quote.pcrs[%d] is %d bytes, want 32 (SHA-256 bank)", ErrEvidence, n, len(v))
		}
		q.PCRs[n] = v
	}
	return q, nil
}

// decodeEvidence decodes one bounded JSON object into v, refusing trailing
// data.
func decodeEvidence(b []byte, v any) error {
	if len(b) == 0 || len(b) > MaxEvidenceBytes {
		return fmt.Errorf("%w: evidence is %d bytes of JSON, want 1..%d", ErrEvidence, len(b), MaxEvidenceBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return fmt.Errorf("%w: field %s: %v", ErrEvidence, typeErr.Field, err)
		}
		return fmt.Errorf("%w: %v", ErrEvidence, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrEvidence)
	}
	return nil
}

package audit

import (
	"bytes"
	"fmt"

	"github.com/edgevault/edgevault/internal/audit/leaf"
)

// SignedEntry is an audit entry that another party produced and signed: an
// edge agent's record of a read it served locally, online or not. The
// signer commits to its line exactly as the server commits to its own
// (package leaf) and signs the leaf data; the server checks the signature,
// adds who signed (a top-level "signer" member), and logs it like any other
// entry, so a verifier can check both the log's inclusion and the signer's
// signature — also from a disclosure bundle, where the signer's fields are
// always shown.
type SignedEntry struct {
	// Line is the signer's entry: one compact JSON object with no "signer" member.
	Line []byte
	// Seed is the signer's 32-byte salt seed for Line.
	Seed []byte
	// Signer is the signer's identity (an agent's SPIFFE ID), as the caller
	// authenticated it (the agent's mTLS certificate); the log records it as
	// vouched for by the server, next to the key that signed.
	Signer string
	// PublicKey is the signer's public key, PKIX DER (Ed25519 or ECDSA P-256).
	PublicKey []byte
	// Signature is over leaf.Commit(leaf.Fields(Line), Seed).
	Signature []byte
}

// AppendSigned checks e's signature and audits it on every device. It
// returns the log index (0 without a log). A bad signature is
// ErrBadSignature and nothing is written.
func (b *Broker) AppendSigned(e SignedEntry) (uint64, error) {
	if len(e.Seed) != leaf.SeedSize {
		return 0, fmt.Errorf("%w: seed: want %d bytes, got %d", ErrBadSignature, leaf.SeedSize, len(e.Seed))
	}
	if bytes.ContainsAny([]byte(e.Signer), "\n\r") {
		return 0, fmt.Errorf("%w: signer: want a one-line identity", ErrBadSignature)
	}
	if bytes.ContainsAny(bytes.TrimRight(e.Line, "\n"), "\n\r") {
		return 0, fmt.Errorf("%w: line: want one line of compact JSON", ErrBadSignature)
	}
	line, err := leaf.AttachSigner(bytes.TrimRight(e.Line, "\n"), e.Seed, leaf.SignerInfo{ID: e.Signer, PublicKey: e.PublicKey, Signature: e.Signature})
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if !b.Enabled() {
		return 0, nil
	}
	fields, err := leaf.Fields(line)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	rec := newRecord(append(line, '\n'))
	copy(rec.private, e.Seed)
	if rec.leaf, err = leaf.Commit(fields, e.Seed); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return b.submit(rec)
}

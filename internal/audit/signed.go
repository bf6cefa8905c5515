package audit

import (
	"bytes"
	"fmt"

	"github.com/edgevault/edgevault/internal/audit/leaf"
)

// SignedBatch is audit entries that another party produced and signed
// together: an edge agent's records of reads it served locally, online or
// not. The signer commits to each line exactly as the server commits to its
// own (package leaf) and signs the Merkle root of the batch's leaf data
// once; the server checks the signature, adds who signed and where the
// entry sits in the signed batch (a top-level "signer" member), and logs
// each entry like any other, so a verifier can check both the log's
// inclusion and the signer's signature of one entry alone — also from a
// disclosure bundle, where the signer's fields are always shown.
type SignedBatch struct {
	// Entries are the signer's lines (compact JSON objects with no
	// "signer" member) and their 32-byte salt seeds, in the order signed.
	Entries []leaf.SignedLine
	// Signer is the signer's identity (an agent's SPIFFE ID), as the caller
	// authenticated it (the agent's mTLS certificate); the log records it as
	// vouched for by the server, next to the key that signed.
	Signer string
	// PublicKey is the signer's public key, PKIX DER (Ed25519 or ECDSA P-256).
	PublicKey []byte
	// Signature is the signer's, over leaf.BatchMessage of the entries.
	Signature []byte
	// From is how many leading entries the log already holds (the batch
	// was sent again): they are checked with the rest, not written twice.
	From int
}

// AppendSigned checks the batch's signature and audits its entries on
// every device, in one write: all of them or none. It returns the log
// indexes of the entries from sb.From on (zeros without a log). A bad
// signature is ErrBadSignature, a malformed entry ErrBadEntry, and then
// nothing is written.
func (b *Broker) AppendSigned(sb SignedBatch) ([]uint64, error) {
	if bytes.ContainsAny([]byte(sb.Signer), "\n\r") {
		return nil, fmt.Errorf("%w: signer: want a one-line identity", ErrBadEntry)
	}
	entries := make([]leaf.SignedLine, len(sb.Entries))
	for i, e := range sb.Entries {
		if len(e.Seed) != leaf.SeedSize {
			return nil, fmt.Errorf("%w: entries[%d].seed: want %d bytes, got %d", ErrBadEntry, i, leaf.SeedSize, len(e.Seed))
		}
		line := bytes.TrimRight(e.Line, "\n")
		if bytes.ContainsAny(line, "\n\r") {
			return nil, fmt.Errorf("%w: entries[%d].line: want one line of compact JSON", ErrBadEntry, i)
		}
		entries[i] = leaf.SignedLine{Line: line, Seed: e.Seed}
	}
	signed, err := leaf.AttachSigner(entries, sb.Signer, sb.PublicKey, sb.Signature)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if sb.From < 0 || sb.From > len(signed) {
		return nil, fmt.Errorf("%w: from %d is outside a batch of %d", ErrBadEntry, sb.From, len(signed))
	}
	indexes := make([]uint64, len(signed)-sb.From)
	if !b.Enabled() || len(indexes) == 0 {
		return indexes, nil
	}
	recs := make([]*record, len(indexes))
	for j := range recs {
		i := sb.From + j
		rec := newRecord(append(signed[i].Line, '\n'))
		copy(rec.private, entries[i].Seed)
		rec.leaf = signed[i].Leaf
		recs[j] = rec
	}
	if err := b.submitAll(recs); err != nil {
		return nil, err
	}
	for i, r := range recs {
		indexes[i] = r.index
	}
	return indexes, nil
}

// Package leaf turns one audit entry into the leaf of edgevault's
// transparency log, and back into evidence an auditor can check offline.
//
// An audit entry is one line of compact JSON in the format of Vault's file
// audit device (top-level keys time, type, auth, request, response, error…).
// The log does not publish the entry. It publishes a commitment to it: the
// entry is split into named fields, each field's exact JSON bytes are hashed
// together with a 16-byte salt, and the leaf is the sorted list of
// (field name, salted digest). The salts are derived from a 32-byte random
// seed that is kept private by the server, so a digest of a low-entropy value
// ("GET", a path, a status code) cannot be confirmed by guessing.
//
// Later, the server can prove chosen fields of one entry to an auditor with a
// [Bundle]: the disclosed fields with their values and salts, the digests of
// the withheld fields, an RFC 6962 inclusion proof and the signed checkpoint
// that the proof leads to. [VerifyBundle] checks all of it without access to
// the server. Withheld fields stay hidden: their digests are salted and the
// salts of other fields say nothing about them.
//
// Entries produced elsewhere (by an edge agent) can carry the producer's
// signature: the producer signs the leaf data of its own fields, and the
// server adds a "signer" object (id, public key, signature) to the line. A
// verifier recomputes the signed bytes from the leaf without the signer.*
// fields, so a signed entry is checkable even when most fields are withheld.
//
// docs/audit-format.md specifies every byte, for third-party verifiers.
//
// Trust boundary: everything in this package is deterministic and offline.
// Callers own the seeds (they must come from crypto/rand and never leave the
// server's private journal) and the log's note verifier key.
package leaf

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them (matched
// with errors.Is) and add which field, proof step or key was at fault.
var (
	// ErrMalformed: input that does not follow the format — a line that is
	// not one JSON object, duplicate keys, a bad leaf encoding, bad base64, a
	// checkpoint body that is not a C2SP tlog-checkpoint, unsorted names.
	ErrMalformed = errors.New("malformed")

	// ErrBadSignature: a checkpoint not signed by the expected log key, or a
	// signed entry whose signer signature does not verify.
	ErrBadSignature = errors.New("bad signature")

	// ErrMismatch: well-formed evidence that does not add up — a disclosed
	// value that does not match its digest, an inclusion proof that does not
	// lead to the checkpoint's root, a tree size that differs from the
	// checkpoint's.
	ErrMismatch = errors.New("mismatch")

	// ErrUnknownField: a name asked for in a disclosure that is neither a
	// field of the entry nor a top-level key of it.
	ErrUnknownField = errors.New("unknown field")
)

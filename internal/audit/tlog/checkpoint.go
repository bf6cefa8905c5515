package tlog

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const checkpointName = "checkpoint"

// Checkpoint is a signed statement of the log's size and root hash.
type Checkpoint struct {
	Origin string    // the log's origin line
	Size   uint64    // number of entries covered
	Hash   tlog.Hash // RFC 6962 root hash of the first Size entries
	Signed []byte    // the whole signed note, as published in Dir/checkpoint
}

// checkpointText formats the body of a checkpoint note.
func checkpointText(origin string, size uint64, h tlog.Hash) string {
	return origin + "\n" + strconv.FormatUint(size, 10) + "\n" + base64.StdEncoding.EncodeToString(h[:]) + "\n"
}

// validOrigin reports why an origin line is unusable, or "".
func validOrigin(origin string) string {
	if origin == "" {
		return "empty"
	}
	if !utf8.ValidString(origin) {
		return "not UTF-8"
	}
	for _, r := range origin {
		if unicode.IsControl(r) {
			return "contains a control character"
		}
	}
	if strings.TrimSpace(origin) != origin {
		return "has leading or trailing space"
	}
	return ""
}

// parseCheckpointText parses a checkpoint body: origin, decimal size,
// base64 root hash, then optional non-empty extension lines.
func parseCheckpointText(text string) (origin string, size uint64, h tlog.Hash, err error) {
	bad := func(why string) (string, uint64, tlog.Hash, error) {
		return "", 0, tlog.Hash{}, fmt.Errorf("checkpoint: %s: %w", why, ErrCorrupt)
	}
	if !strings.HasSuffix(text, "\n") {
		return bad("text does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return bad("fewer than 3 lines")
	}
	if why := validOrigin(lines[0]); why != "" {
		return bad("origin " + why)
	}
	s := lines[1]
	size, perr := strconv.ParseUint(s, 10, 64)
	if perr != nil || strconv.FormatUint(size, 10) != s {
		return bad(fmt.Sprintf("bad size %q", s))
	}
	raw, perr := base64.StdEncoding.Strict().DecodeString(lines[2])
	if perr != nil || len(raw) != hashSize {
		return bad(fmt.Sprintf("bad root hash %q", lines[2]))
	}
	for i, ext := range lines[3:] {
		if ext == "" {
			return bad(fmt.Sprintf("empty extension line %d", i+4))
		}
	}
	return lines[0], size, tlog.Hash(raw), nil
}

// keyID formats a note key as name+hash, as note's own errors do.
func keyID(name string, hash uint32) string { return fmt.Sprintf("%s+%08x", name, hash) }

// ParseCheckpoint verifies a signed checkpoint note with v and parses it.
// A note not signed by v's key, or whose signature does not verify, is
// ErrBadSignature (the error names the keys that did sign); a malformed note
// is ErrCorrupt.
func ParseCheckpoint(signed []byte, v note.Verifier) (Checkpoint, error) {
	if v == nil {
		return Checkpoint{}, errors.New("checkpoint: no verifier")
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		var unv *note.UnverifiedNoteError
		var inv *note.InvalidSignatureError
		switch {
		case errors.As(err, &unv):
			var by []string
			for _, s := range unv.Note.UnverifiedSigs {
				by = append(by, keyID(s.Name, s.Hash))
			}
			return Checkpoint{}, fmt.Errorf("checkpoint: not signed by key %s (signed by %s): %w",
				keyID(v.Name(), v.KeyHash()), strings.Join(by, ", "), ErrBadSignature)
		case errors.As(err, &inv):
			return Checkpoint{}, fmt.Errorf("checkpoint: signature of key %s does not verify: %w",
				keyID(inv.Name, inv.Hash), ErrBadSignature)
		}
		return Checkpoint{}, fmt.Errorf("checkpoint: %v: %w", err, ErrCorrupt)
	}
	origin, size, h, err := parseCheckpointText(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	return Checkpoint{Origin: origin, Size: size, Hash: h, Signed: bytes.Clone(signed)}, nil
}

// signCheckpoint signs a checkpoint for the given tree.
func signCheckpoint(origin string, size uint64, h tlog.Hash, s note.Signer) (Checkpoint, error) {
	signed, err := note.Sign(&note.Note{Text: checkpointText(origin, size, h)}, s)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: sign with key %s: %w", keyID(s.Name(), s.KeyHash()), err)
	}
	return Checkpoint{Origin: origin, Size: size, Hash: h, Signed: signed}, nil
}

// signerVerifier checks a signature by signing again: Ed25519 (the only
// algorithm note implements) is deterministic, so a signature verifies iff
// the signer reproduces it byte for byte. It lets Open check that its own
// key signed the existing checkpoint without being given the public key.
type signerVerifier struct{ s note.Signer }

func (v signerVerifier) Name() string    { return v.s.Name() }
func (v signerVerifier) KeyHash() uint32 { return v.s.KeyHash() }
func (v signerVerifier) Verify(msg, sig []byte) bool {
	again, err := v.s.Sign(msg)
	return err == nil && bytes.Equal(again, sig)
}

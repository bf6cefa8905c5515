package leaf

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// RawJSON holds the exact JSON text of a field value. In a bundle it is
// carried as a JSON string whose contents are that text (for example the
// value "GET" is written "\"GET\""), so that no JSON library can change a
// byte of it on the way: re-encoding embedded JSON (compacting, escaping
// <, > and &) would break its digest.
type RawJSON []byte

// MarshalJSON encodes the raw JSON text as a JSON string.
func (r RawJSON) MarshalJSON() ([]byte, error) { return json.Marshal(string(r)) }

// UnmarshalJSON decodes a JSON string holding raw JSON text.
func (r *RawJSON) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: field value must be a JSON string holding the raw JSON text: %v", ErrMalformed, err)
	}
	*r = RawJSON(s)
	return nil
}

// DisclosedField is a field shown in a bundle with what proves it.
type DisclosedField struct {
	Name  string  `json:"name"`
	Value RawJSON `json:"value"`
	Salt  []byte  `json:"salt"` // 16 bytes, base64 in JSON
	// Digest is SHA-256(salt || value), 32 bytes, base64 in JSON. It is
	// redundant (a verifier recomputes it) but lets a verifier say which
	// field was modified instead of only that the proof failed.
	Digest []byte `json:"digest"`
}

// WithheldField is a field kept hidden: only its digest is shown.
type WithheldField struct {
	Name   string `json:"name"`
	Digest []byte `json:"digest"` // 32 bytes, base64 in JSON
}

// Bundle is selective-disclosure evidence for one log entry, checkable
// offline with [VerifyBundle] and the log's public key.
type Bundle struct {
	// Index is the entry's position in the log, from 0.
	Index uint64 `json:"index"`
	// TreeSize is the size of the tree the checkpoint commits to.
	TreeSize uint64 `json:"tree_size"`
	// Disclosed are the shown fields, sorted by name.
	Disclosed []DisclosedField `json:"disclosed"`
	// Withheld are the hidden fields, sorted by name.
	Withheld []WithheldField `json:"withheld"`
	// Inclusion is the RFC 6962 audit path from the leaf to the root, each
	// hash base64.
	Inclusion []string `json:"inclusion_proof"`
	// Checkpoint is the signed note (C2SP tlog-checkpoint), verbatim.
	Checkpoint string `json:"checkpoint"`
}

// Verified is what a bundle proves.
type Verified struct {
	// Origin is the checkpoint's origin line (the log's name).
	Origin string
	// Index and TreeSize locate the entry.
	Index, TreeSize uint64
	// Fields are the disclosed fields, sorted by name; their values are
	// proven to be in the entry at Index.
	Fields []DisclosedField
	// Signer is set for signed entries, after the signature was checked.
	Signer *SignerInfo
}

// Checkpoint is the parsed body of a C2SP tlog-checkpoint.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   tlog.Hash
	// Extensions are the optional lines after the root, uninterpreted.
	Extensions []string
}

// ParseCheckpoint parses a checkpoint body (the note text, ending in a
// newline, without signatures): origin line, decimal tree size, base64
// root hash, then optional extension lines.
func ParseCheckpoint(text string) (*Checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("%w: checkpoint body does not end with a newline", ErrMalformed)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return nil, fmt.Errorf("%w: checkpoint body has %d lines, want origin, size and root", ErrMalformed, len(lines))
	}
	c := &Checkpoint{Origin: lines[0], Extensions: lines[3:]}
	if c.Origin == "" {
		return nil, fmt.Errorf("%w: checkpoint origin line is empty", ErrMalformed)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || (len(lines[1]) > 1 && lines[1][0] == '0') {
		return nil, fmt.Errorf("%w: checkpoint size %q is not a decimal number", ErrMalformed, lines[1])
	}
	if size > 1<<63-1 {
		return nil, fmt.Errorf("%w: checkpoint size %d too large", ErrMalformed, size)
	}
	c.Size = size
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != len(c.Root) {
		return nil, fmt.Errorf("%w: checkpoint root %q is not a base64 32-byte hash", ErrMalformed, lines[2])
	}
	copy(c.Root[:], root)
	for i, e := range c.Extensions {
		if e == "" {
			return nil, fmt.Errorf("%w: checkpoint extension line %d is empty", ErrMalformed, i+1)
		}
	}
	return c, nil
}

// checkpointText returns the body of a signed note without checking
// signatures: everything up to and including the newline before the last
// blank line.
func checkpointText(signed []byte) (string, error) {
	i := bytes.LastIndex(signed, []byte("\n\n"))
	if i < 0 {
		return "", fmt.Errorf("%w: checkpoint has no signature block", ErrMalformed)
	}
	return string(signed[:i+1]), nil
}

// Disclose builds a bundle for the entry line at index of the log, showing
// the fields named in names and the digests of the others. A name is a
// field name ("request.path") or a top-level key ("auth" = every auth.*
// field; generally every field named n or starting with n+"."); a name
// that selects nothing is ErrUnknownField. The signer.* fields of a
// signed entry are always shown. proof is the entry's inclusion proof in
// the tree of the signed checkpoint; Disclose checks that the proof leads
// to the checkpoint's root (ErrMismatch otherwise), so a bundle it returns
// verifies. It does not check the checkpoint's signature.
func Disclose(line, seed []byte, names []string, index uint64, proof tlog.RecordProof, checkpoint []byte) (*Bundle, error) {
	fields, err := Fields(line)
	if err != nil {
		return nil, fmt.Errorf("disclose entry %d: %w", index, err)
	}
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("disclose entry %d: %w: seed is %d bytes, want %d", index, ErrMalformed, len(seed), SeedSize)
	}
	show := make([]bool, len(fields))
	for _, n := range names {
		found := false
		for i, f := range fields {
			if f.Name == n || strings.HasPrefix(f.Name, n+".") {
				show[i], found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("disclose entry %d: %w: %q is neither a field nor a top-level key of the entry", index, ErrUnknownField, n)
		}
	}
	text, err := checkpointText(checkpoint)
	if err != nil {
		return nil, fmt.Errorf("disclose entry %d: %w", index, err)
	}
	cp, err := ParseCheckpoint(text)
	if err != nil {
		return nil, fmt.Errorf("disclose entry %d: %w", index, err)
	}
	b := &Bundle{
		Index:      index,
		TreeSize:   cp.Size,
		Disclosed:  []DisclosedField{},
		Withheld:   []WithheldField{},
		Inclusion:  make([]string, len(proof)),
		Checkpoint: string(checkpoint),
	}
	for i, f := range fields {
		salt := Salt(seed, f.Name)
		d := FieldDigest(salt, f.Value)
		if show[i] || isSignerField(f.Name) {
			b.Disclosed = append(b.Disclosed, DisclosedField{Name: f.Name, Value: RawJSON(f.Value), Salt: salt[:], Digest: d[:]})
			continue
		}
		b.Withheld = append(b.Withheld, WithheldField{Name: f.Name, Digest: d[:]})
	}
	for i, h := range proof {
		b.Inclusion[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	leafData, err := Commit(fields, seed)
	if err != nil {
		return nil, fmt.Errorf("disclose entry %d: %w", index, err)
	}
	if index >= cp.Size {
		return nil, fmt.Errorf("disclose entry %d: %w: index is not below the checkpoint's tree size %d", index, ErrMismatch, cp.Size)
	}
	if err := tlog.CheckRecord(proof, int64(cp.Size), cp.Root, int64(index), tlog.RecordHash(leafData)); err != nil {
		return nil, fmt.Errorf("disclose entry %d: %w: inclusion proof does not lead to the checkpoint's root (wrong seed, line, index or proof)", index, ErrMismatch)
	}
	return b, nil
}

// VerifyBundle checks a bundle against the log's note verifier key and
// returns what it proves. It checks, in order: the checkpoint's signature
// by v (a checkpoint signed only by other keys is ErrBadSignature naming
// them), the checkpoint body, that tree_size and index fit the checkpoint,
// field names (sorted, unique, no name both disclosed and withheld), salt
// and digest sizes, the leaf hash against the inclusion proof and the
// checkpoint's root (ErrMismatch), and for a signed entry the signer's
// signature (ErrBadSignature). A disclosed value is tied to the log only
// through its digest, so a modified value, salt or withheld digest shows up
// as an inclusion proof that does not lead to the root.
func VerifyBundle(b *Bundle, v note.Verifier) (*Verified, error) {
	if b == nil || v == nil {
		return nil, fmt.Errorf("%w: nil bundle or verifier", ErrMalformed)
	}
	n, err := note.Open([]byte(b.Checkpoint), note.VerifierList(v))
	if err != nil {
		return nil, checkpointSigError(err, v)
	}
	cp, err := ParseCheckpoint(n.Text)
	if err != nil {
		return nil, err
	}
	if b.TreeSize != cp.Size {
		return nil, fmt.Errorf("%w: bundle tree_size %d differs from the checkpoint's size %d", ErrMismatch, b.TreeSize, cp.Size)
	}
	if b.Index >= cp.Size {
		return nil, fmt.Errorf("%w: index %d is not in a tree of size %d", ErrMismatch, b.Index, cp.Size)
	}

	ds, values, err := mergeFields(b)
	if err != nil {
		return nil, err
	}
	leafData := appendLeaf(nil, ds)

	proof := make(tlog.RecordProof, len(b.Inclusion))
	for i, s := range b.Inclusion {
		h, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || len(h) != len(tlog.Hash{}) {
			return nil, fmt.Errorf("%w: inclusion proof hash %d is not a base64 32-byte hash", ErrMalformed, i)
		}
		copy(proof[i][:], h)
	}
	if err := tlog.CheckRecord(proof, int64(cp.Size), cp.Root, int64(b.Index), tlog.RecordHash(leafData)); err != nil {
		return nil, fmt.Errorf("%w: inclusion proof does not lead to the checkpoint's root: the entry or the proof was modified", ErrMismatch)
	}

	out := &Verified{Origin: cp.Origin, Index: b.Index, TreeSize: cp.Size, Fields: slices.Clone(b.Disclosed)}
	if !slices.ContainsFunc(ds, func(d NamedDigest) bool { return isSignerField(d.Name) }) {
		return out, nil
	}
	s, err := signerFrom(values)
	if err != nil {
		return nil, err
	}
	if err := verifySigner(s, appendLeaf(nil, withoutSigner(ds))); err != nil {
		return nil, err
	}
	out.Signer = s
	return out, nil
}

// mergeFields checks the bundle's two field lists and merges them into the
// leaf's (name, digest) list, computing the digests of disclosed fields.
func mergeFields(b *Bundle) ([]NamedDigest, map[string][]byte, error) {
	values := make(map[string][]byte, len(b.Disclosed))
	ds := make([]NamedDigest, 0, len(b.Disclosed)+len(b.Withheld))
	for i, f := range b.Disclosed {
		if i > 0 && b.Disclosed[i-1].Name >= f.Name {
			return nil, nil, fmt.Errorf("%w: disclosed field %q after %q: names must be sorted and unique", ErrMalformed, f.Name, b.Disclosed[i-1].Name)
		}
		if len(f.Salt) != SaltSize {
			return nil, nil, fmt.Errorf("%w: field %s: salt is %d bytes, want %d", ErrMalformed, f.Name, len(f.Salt), SaltSize)
		}
		if !json.Valid(f.Value) {
			return nil, nil, fmt.Errorf("%w: field %s: value is not valid JSON", ErrMalformed, f.Name)
		}
		if len(f.Digest) != len(Digest{}) {
			return nil, nil, fmt.Errorf("%w: field %s: digest is %d bytes, want %d", ErrMalformed, f.Name, len(f.Digest), len(Digest{}))
		}
		d := FieldDigest([SaltSize]byte(f.Salt), f.Value)
		if d != Digest(f.Digest) {
			return nil, nil, fmt.Errorf("%w: field %s: value does not match its digest (the value or its salt was modified)", ErrMismatch, f.Name)
		}
		ds = append(ds, NamedDigest{Name: f.Name, Digest: d})
		values[f.Name] = f.Value
	}
	for i, f := range b.Withheld {
		if i > 0 && b.Withheld[i-1].Name >= f.Name {
			return nil, nil, fmt.Errorf("%w: withheld field %q after %q: names must be sorted and unique", ErrMalformed, f.Name, b.Withheld[i-1].Name)
		}
		if len(f.Digest) != len(Digest{}) {
			return nil, nil, fmt.Errorf("%w: field %s: digest is %d bytes, want %d", ErrMalformed, f.Name, len(f.Digest), len(Digest{}))
		}
		if _, dup := values[f.Name]; dup {
			return nil, nil, fmt.Errorf("%w: field %s is both disclosed and withheld", ErrMalformed, f.Name)
		}
		ds = append(ds, NamedDigest{Name: f.Name, Digest: Digest(f.Digest)})
	}
	slices.SortFunc(ds, func(a, b NamedDigest) int { return strings.Compare(a.Name, b.Name) })
	if len(ds) > MaxFields {
		return nil, nil, fmt.Errorf("%w: %d fields, at most %d allowed", ErrMalformed, len(ds), MaxFields)
	}
	for i := range ds {
		if err := checkDigestName(ds, i); err != nil {
			return nil, nil, err
		}
	}
	return ds, values, nil
}

// checkpointSigError turns note.Open's errors into ErrBadSignature /
// ErrMalformed errors that say which key signed.
func checkpointSigError(err error, v note.Verifier) error {
	want := fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) {
		var by []string
		for _, s := range unverified.Note.UnverifiedSigs {
			by = append(by, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
		}
		return fmt.Errorf("%w: checkpoint is not signed by the log key %s; it is signed by %s", ErrBadSignature, want, strings.Join(by, ", "))
	}
	var invalid *note.InvalidSignatureError
	if errors.As(err, &invalid) {
		return fmt.Errorf("%w: checkpoint signature by %s+%08x does not verify: the checkpoint was modified", ErrBadSignature, invalid.Name, invalid.Hash)
	}
	return fmt.Errorf("%w: checkpoint is not a signed note: %v", ErrMalformed, err)
}

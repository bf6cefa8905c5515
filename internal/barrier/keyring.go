package barrier

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// termKey is one data key. Its fields never change after construction,
// except that Zero overwrites key.
type termKey struct {
	term      uint32
	installed time.Time
	key       []byte
	aead      cipher.AEAD // cached: no key schedule per call
}

// Keyring is an immutable set of versioned data keys ("terms"), one of them
// active. It is safe for concurrent use; Rotate returns a new Keyring and
// leaves the receiver unchanged.
//
// A Keyring holds secret key material. Its binary form (MarshalBinary) is
// plaintext and must only be stored encrypted, as the Barrier does under the
// root key.
type Keyring struct {
	active *termKey
	terms  map[uint32]*termKey
}

// NewKeyring returns a keyring whose only term, 1, is a fresh key read from
// r (crypto/rand.Reader outside tests), installed at now.
func NewKeyring(r io.Reader, now time.Time) (*Keyring, error) {
	tk, err := newTermKey(r, 1, now)
	if err != nil {
		return nil, err
	}
	return &Keyring{active: tk, terms: map[uint32]*termKey{1: tk}}, nil
}

func newTermKey(r io.Reader, term uint32, now time.Time) (*termKey, error) {
	key := make([]byte, KeySize)
	if _, err := io.ReadFull(r, key); err != nil {
		return nil, fmt.Errorf("barrier: generating key for term %d: %w", term, err)
	}
	return makeTermKey(term, now, key)
}

func makeTermKey(term uint32, installed time.Time, key []byte) (*termKey, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, fmt.Errorf("barrier: term %d: %w", term, err)
	}
	return &termKey{term: term, installed: installed.UTC(), key: key, aead: aead}, nil
}

// ActiveTerm returns the term new writes are encrypted under.
func (k *Keyring) ActiveTerm() uint32 { return k.active.term }

// InstallTime returns when term was added, and whether the keyring has it.
func (k *Keyring) InstallTime(term uint32) (time.Time, bool) {
	tk, ok := k.terms[term]
	if !ok {
		return time.Time{}, false
	}
	return tk.installed, true
}

// Terms returns every term the keyring holds, in increasing order.
func (k *Keyring) Terms() []uint32 {
	out := make([]uint32, 0, len(k.terms))
	for t := range k.terms {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Rotate returns a new keyring with one more term, the highest so far plus
// one, made active; key bytes come from r. The receiver is unchanged and
// both keyrings share the older terms' key material (see Zero).
func (k *Keyring) Rotate(r io.Reader, now time.Time) (*Keyring, error) {
	var highest uint32
	for t := range k.terms {
		highest = max(highest, t)
	}
	if highest == math.MaxUint32 {
		return nil, fmt.Errorf("barrier: rotate: key terms exhausted")
	}
	tk, err := newTermKey(r, highest+1, now)
	if err != nil {
		return nil, err
	}
	terms := make(map[uint32]*termKey, len(k.terms)+1)
	for t, v := range k.terms {
		terms[t] = v
	}
	terms[tk.term] = tk
	return &Keyring{active: tk, terms: terms}, nil
}

// Encrypt seals plaintext under the active term, bound to path (the full
// storage path the result will be stored at).
func (k *Keyring) Encrypt(path string, plaintext []byte) []byte {
	return sealEnvelope(k.active.aead, k.active.term, path, plaintext)
}

// Decrypt opens an envelope stored at path. Errors wrap ErrMalformed,
// ErrUnknownTerm or ErrDecrypt; it never panics on any input.
func (k *Keyring) Decrypt(path string, envelope []byte) ([]byte, error) {
	term, nonce, sealed, err := parseEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	tk, ok := k.terms[term]
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknownTerm, term)
	}
	return openEnvelope(tk.aead, path, nonce, sealed)
}

// Zero overwrites the key bytes of every term with zeros. Keyrings derived
// from this one by Rotate share those bytes. The cached ciphers keep working
// (their key schedules are separate), so Zero is for a keyring that is being
// dropped.
func (k *Keyring) Zero() {
	for _, tk := range k.terms {
		clear(tk.key)
	}
}

// zeroTerm zeroes one term's key, for discarding a Rotate result that was
// never published.
func (k *Keyring) zeroTerm(term uint32) {
	if tk, ok := k.terms[term]; ok {
		clear(tk.key)
	}
}

// Keyring binary form, version 1:
//
//	[1 byte version = 1][4 bytes active term][4 bytes count]
//	count × ([4 bytes term][8 bytes install time, Unix ns][32 bytes key])
//
// All integers big-endian; terms strictly increasing, non-zero; the active
// term among them.
const (
	keyringVersion  byte = 1
	keyringHeader        = 1 + 4 + 4
	keyringEntryLen      = 4 + 8 + KeySize
	// maxTerms bounds the count field so a corrupt value cannot ask for a
	// huge allocation.
	maxTerms = 1 << 20
)

// MarshalBinary encodes the keyring, key bytes included, in plaintext. The
// caller must encrypt the result and should clear it after use.
func (k *Keyring) MarshalBinary() ([]byte, error) {
	terms := k.Terms()
	out := make([]byte, keyringHeader, keyringHeader+len(terms)*keyringEntryLen)
	out[0] = keyringVersion
	binary.BigEndian.PutUint32(out[1:5], k.active.term)
	binary.BigEndian.PutUint32(out[5:9], uint32(len(terms)))
	for _, t := range terms {
		tk := k.terms[t]
		out = binary.BigEndian.AppendUint32(out, tk.term)
		out = binary.BigEndian.AppendUint64(out, uint64(tk.installed.UnixNano()))
		out = append(out, tk.key...)
	}
	return out, nil
}

// ParseKeyring decodes the output of MarshalBinary. It copies the key bytes
// out of b, so the caller may clear b afterwards. Errors wrap
// ErrMalformedKeyring and never contain key material.
func ParseKeyring(b []byte) (*Keyring, error) {
	bad := func(format string, args ...any) (*Keyring, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrMalformedKeyring}, args...)...)
	}
	if len(b) < keyringHeader {
		return bad("%d bytes, need at least %d", len(b), keyringHeader)
	}
	if b[0] != keyringVersion {
		return bad("unknown version %d", b[0])
	}
	active := binary.BigEndian.Uint32(b[1:5])
	count := binary.BigEndian.Uint32(b[5:9])
	if count == 0 || count > maxTerms {
		return bad("term count %d out of range", count)
	}
	body := b[keyringHeader:]
	if uint64(len(body)) != uint64(count)*keyringEntryLen {
		return bad("length %d does not match %d terms", len(b), count)
	}
	kr := &Keyring{terms: make(map[uint32]*termKey, count)}
	parsed := false
	defer func() {
		if !parsed {
			kr.Zero()
		}
	}()
	var prev uint32
	for i := uint32(0); i < count; i++ {
		e := body[int(i)*keyringEntryLen : int(i+1)*keyringEntryLen]
		term := binary.BigEndian.Uint32(e[0:4])
		if term == 0 || term <= prev {
			return bad("term %d out of order or zero", term)
		}
		prev = term
		installed := time.Unix(0, int64(binary.BigEndian.Uint64(e[4:12])))
		tk, err := makeTermKey(term, installed, slices.Clone(e[12:]))
		if err != nil {
			return bad("term %d: %v", term, err)
		}
		kr.terms[term] = tk
	}
	tk, ok := kr.terms[active]
	if !ok {
		return bad("active term %d not in keyring", active)
	}
	kr.active = tk
	parsed = true
	return kr, nil
}

package leaf

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

const (
	// Version is the first byte of every leaf.
	Version = 0x01
	// SeedSize is the size of an entry's private seed.
	SeedSize = 32
	// SaltSize is the size of a field's salt.
	SaltSize = 16
)

// Digest is the salted SHA-256 digest of one field: SHA-256(salt || value).
type Digest [sha256.Size]byte

// NamedDigest is one (name, digest) pair of a leaf.
type NamedDigest struct {
	Name   string
	Digest Digest
}

// Salt returns the salt of the field name under an entry's seed:
// AES-CMAC (RFC 4493) of the name with the seed as the AES-256 key. Only
// the server derives salts; verifiers receive them in bundles.
func Salt(seed []byte, name string) [SaltSize]byte {
	m, err := newSalter(seed)
	if err != nil {
		return [SaltSize]byte{}
	}
	return m.salt(name)
}

// salter derives the salts of one entry: AES-CMAC keyed by its seed.
type salter struct {
	c      cipher.Block
	k1, k2 [aes.BlockSize]byte
	x, blk [aes.BlockSize]byte // scratch, kept here so Encrypt's arguments do not escape per call
}

func newSalter(seed []byte) (*salter, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("%w: seed is %d bytes, want %d", ErrMalformed, len(seed), SeedSize)
	}
	c, err := aes.NewCipher(seed)
	if err != nil {
		return nil, err
	}
	m := &salter{c: c}
	c.Encrypt(m.x[:], m.x[:])
	m.k1 = cmacDouble(m.x)
	m.k2 = cmacDouble(m.k1)
	return m, nil
}

// cmacDouble is the doubling in GF(2^128) of RFC 4493's subkey generation.
func cmacDouble(b [aes.BlockSize]byte) [aes.BlockSize]byte {
	var out [aes.BlockSize]byte
	carry := b[0] >> 7
	for i := 0; i < aes.BlockSize-1; i++ {
		out[i] = b[i]<<1 | b[i+1]>>7
	}
	out[aes.BlockSize-1] = b[aes.BlockSize-1] << 1
	if carry == 1 {
		out[aes.BlockSize-1] ^= 0x87
	}
	return out
}

// salt is AES-CMAC(seed, name).
func (m *salter) salt(name string) [SaltSize]byte {
	x, blk := m.x[:], m.blk[:]
	clear(x)
	n := (len(name) + aes.BlockSize - 1) / aes.BlockSize
	complete := n > 0 && len(name)%aes.BlockSize == 0
	if n == 0 {
		n = 1
	}
	for i := 0; i < n-1; i++ {
		subtle.XORBytes(x, x, []byte(name[i*aes.BlockSize:(i+1)*aes.BlockSize]))
		m.c.Encrypt(x, x)
	}
	clear(blk)
	last := copy(blk, name[(n-1)*aes.BlockSize:])
	if complete {
		subtle.XORBytes(blk, blk, m.k1[:])
	} else {
		blk[last] = 0x80
		subtle.XORBytes(blk, blk, m.k2[:])
	}
	subtle.XORBytes(x, x, blk)
	m.c.Encrypt(x, x)
	return m.x
}

// FieldDigest returns SHA-256(salt || value).
func FieldDigest(salt [SaltSize]byte, value []byte) Digest {
	h := sha256.New()
	h.Write(salt[:])
	h.Write(value)
	var d Digest
	h.Sum(d[:0])
	return d
}

// Commit returns the leaf data committing to fields under seed. The fields
// must be sorted by name and unique (as [Fields] returns them), with names
// of 1–255 bytes, at most 65535 of them; seed must be 32 bytes.
func Commit(fields []Field, seed []byte) ([]byte, error) {
	n := 3
	for _, f := range fields {
		n += 1 + len(f.Name) + len(Digest{})
	}
	return AppendCommit(make([]byte, 0, n), fields, seed)
}

// AppendCommit appends the leaf data of [Commit] to dst and returns the
// extended slice. Apart from the seed's AES key schedule it allocates
// nothing when dst has room for the leaf plus 16 bytes more than the longest
// value (it hashes salt||value in dst's spare capacity); on error dst is
// returned unchanged in length.
func AppendCommit(dst []byte, fields []Field, seed []byte) ([]byte, error) {
	if len(seed) != SeedSize {
		return dst, fmt.Errorf("%w: seed is %d bytes, want %d", ErrMalformed, len(seed), SeedSize)
	}
	if len(fields) > MaxFields {
		return dst, fmt.Errorf("%w: %d fields, at most %d allowed", ErrMalformed, len(fields), MaxFields)
	}
	start := len(dst)
	m, err := newSalter(seed)
	if err != nil {
		return dst, err
	}
	dst = append(dst, Version, byte(len(fields)>>8), byte(len(fields)))
	for i, f := range fields {
		if err := checkName(f.Name, i, fields); err != nil {
			return dst[:start], err
		}
		salt := m.salt(f.Name)

		dst = append(dst, byte(len(f.Name)))
		dst = append(dst, f.Name...)
		// Hash salt||value in the spare capacity where the digest goes.
		at := len(dst)
		dst = append(dst, salt[:SaltSize]...)
		dst = append(dst, f.Value...)
		d := sha256.Sum256(dst[at:])
		dst = append(dst[:at], d[:]...)
	}
	return dst, nil
}

// checkName checks fields[i].Name's length, encoding and order.
func checkName(name string, i int, fields []Field) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return fmt.Errorf("%w: field %d: name %q is %d bytes, must be 1 to %d", ErrMalformed, i, name, len(name), MaxNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: field %d: name %q is not valid UTF-8", ErrMalformed, i, name)
	}
	if i > 0 && fields[i-1].Name >= name {
		return fmt.Errorf("%w: field %q after %q: names must be sorted and unique", ErrMalformed, name, fields[i-1].Name)
	}
	return nil
}

// appendLeaf encodes already-computed digests as leaf data.
func appendLeaf(dst []byte, ds []NamedDigest) []byte {
	dst = append(dst, Version, byte(len(ds)>>8), byte(len(ds)))
	for _, d := range ds {
		dst = append(dst, byte(len(d.Name)))
		dst = append(dst, d.Name...)
		dst = append(dst, d.Digest[:]...)
	}
	return dst
}

// EncodeLeaf returns the leaf data for already-computed digests. The names
// must be sorted, unique, valid UTF-8 and 1–255 bytes long.
func EncodeLeaf(ds []NamedDigest) ([]byte, error) {
	if len(ds) > MaxFields {
		return nil, fmt.Errorf("%w: %d fields, at most %d allowed", ErrMalformed, len(ds), MaxFields)
	}
	for i := range ds {
		if err := checkDigestName(ds, i); err != nil {
			return nil, err
		}
	}
	return appendLeaf(nil, ds), nil
}

func checkDigestName(ds []NamedDigest, i int) error {
	name := ds[i].Name
	if len(name) == 0 || len(name) > MaxNameLen {
		return fmt.Errorf("%w: field %d: name %q is %d bytes, must be 1 to %d", ErrMalformed, i, name, len(name), MaxNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: field %d: name %q is not valid UTF-8", ErrMalformed, i, name)
	}
	if i > 0 && ds[i-1].Name >= name {
		return fmt.Errorf("%w: field %q after %q: names must be sorted and unique", ErrMalformed, name, ds[i-1].Name)
	}
	return nil
}

// ParseLeaf decodes leaf data into its (name, digest) pairs. It rejects an
// unknown version, truncated or trailing bytes, a count that does not match,
// empty, non-UTF-8, unsorted or repeated names.
func ParseLeaf(leaf []byte) ([]NamedDigest, error) {
	if len(leaf) < 3 {
		return nil, fmt.Errorf("%w: leaf is %d bytes, shorter than its 3-byte header", ErrMalformed, len(leaf))
	}
	if leaf[0] != Version {
		return nil, fmt.Errorf("%w: leaf version %#02x, want %#02x", ErrMalformed, leaf[0], Version)
	}
	count := int(binary.BigEndian.Uint16(leaf[1:3]))
	// Each field takes at least 1+1+32 bytes: bound the allocation by the input.
	if count > (len(leaf)-3)/34 {
		return nil, fmt.Errorf("%w: leaf claims %d fields but has only %d bytes after its header", ErrMalformed, count, len(leaf)-3)
	}
	ds := make([]NamedDigest, 0, count)
	p := leaf[3:]
	for i := range count {
		if len(p) < 1 {
			return nil, fmt.Errorf("%w: leaf field %d: truncated", ErrMalformed, i)
		}
		nl := int(p[0])
		if len(p) < 1+nl+len(Digest{}) {
			return nil, fmt.Errorf("%w: leaf field %d: truncated", ErrMalformed, i)
		}
		d := NamedDigest{Name: string(p[1 : 1+nl])}
		copy(d.Digest[:], p[1+nl:])
		ds = append(ds, d)
		if err := checkDigestName(ds, i); err != nil {
			return nil, err
		}
		p = p[1+nl+len(Digest{}):]
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last of %d leaf fields", ErrMalformed, len(p), count)
	}
	return ds, nil
}

// isSignerField reports whether name belongs to the signer object the
// server adds to signed entries.
func isSignerField(name string) bool { return strings.HasPrefix(name, signerPrefix) }

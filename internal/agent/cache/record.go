package cache

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math/bits"
)

// On-disk layout. The bbolt file holds three buckets:
//
//	state     "zone"  -> the zone name, plaintext (for a clear error only; it is also bound into every AD)
//	          "key"   -> the cache key wrapped by the KeyProtector
//	          "state" -> envelope(kindState): watermark, cache-wide synced_at, set digest
//	paths     path    -> envelope(kindPath): current version, max_stale, synced_at
//	versions  path 0x00 version(8 bytes BE) -> envelope(kindVersion): flags, deletion_time, data, metadata
//
// Envelope: [1 byte format = 1][12-byte nonce][AES-256-GCM ciphertext || tag].
// Associated data: adLabel || kind || uvarint(len zone) || zone ||
// uvarint(len path) || path || version (8 bytes BE).
var (
	bucketState    = []byte("state")
	bucketPaths    = []byte("paths")
	bucketVersions = []byte("versions")

	keyZone    = []byte("zone")
	keyWrapped = []byte("key")
	keyState   = []byte("state")
)

// Record kinds, bound into the associated data so a record of one kind can
// never be read as another.
const (
	kindState   byte = 's'
	kindPath    byte = 'p'
	kindVersion byte = 'v'
)

const (
	envelopeFormat   byte = 1
	recordFormat     byte = 1
	nonceLen              = 12
	tagLen                = 16
	envelopeOverhead      = 1 + nonceLen + tagLen

	adLabel = "edgevault agent cache v1"

	flagDestroyed byte = 1
	// flagOnDisk marks a record kept out of the memory index: Get reads it
	// back from the file (Op.OnDisk).
	flagOnDisk byte = 2

	stateLen = 1 + 8 + 8 + 32
	pathLen  = 1 + 8 + 8 + 8
)

// errMalformed is wrapped by the decoders; records that fail to decode are
// treated like records that fail to authenticate.
var errMalformed = errors.New("malformed record")

// appendAD appends the associated data binding a record to its place.
func appendAD(dst []byte, kind byte, zone, path string, version uint64) []byte {
	dst = append(dst, adLabel...)
	dst = append(dst, kind)
	dst = binary.AppendUvarint(dst, uint64(len(zone)))
	dst = append(dst, zone...)
	dst = binary.AppendUvarint(dst, uint64(len(path)))
	dst = append(dst, path...)
	return binary.BigEndian.AppendUint64(dst, version)
}

// seal encrypts plaintext into a new envelope bound to ad.
func seal(aead cipher.AEAD, ad, plaintext []byte) []byte {
	out := make([]byte, 1+nonceLen, envelopeOverhead+len(plaintext))
	out[0] = envelopeFormat
	nonce := out[1 : 1+nonceLen]
	_, _ = rand.Read(nonce) // never fails (Go 1.24+)
	return aead.Seal(out, nonce, plaintext, ad)
}

// open decrypts an envelope bound to ad. The plaintext is a fresh slice that
// does not alias env (env may point into the bbolt mmap).
func open(aead cipher.AEAD, ad, env []byte) ([]byte, error) {
	if len(env) < envelopeOverhead {
		return nil, fmt.Errorf("%w: envelope of %d bytes, need at least %d", errMalformed, len(env), envelopeOverhead)
	}
	if env[0] != envelopeFormat {
		return nil, fmt.Errorf("%w: unknown envelope format %d", errMalformed, env[0])
	}
	pt, err := aead.Open(nil, env[1:1+nonceLen], env[1+nonceLen:], ad)
	if err != nil {
		return nil, ErrTampered
	}
	return pt, nil
}

// stateRec is the cache-wide record.
type stateRec struct {
	watermark uint64
	syncedAt  int64 // unix nanoseconds; 0 = never
	digest    setDigest
}

func (s *stateRec) encode() []byte {
	b := make([]byte, 0, stateLen)
	b = append(b, recordFormat)
	b = binary.BigEndian.AppendUint64(b, s.watermark)
	b = binary.BigEndian.AppendUint64(b, uint64(s.syncedAt))
	return append(b, s.digest.bytes()...)
}

func decodeState(b []byte) (stateRec, error) {
	if len(b) != stateLen || b[0] != recordFormat {
		return stateRec{}, fmt.Errorf("%w: state record of %d bytes", errMalformed, len(b))
	}
	s := stateRec{
		watermark: binary.BigEndian.Uint64(b[1:9]),
		syncedAt:  int64(binary.BigEndian.Uint64(b[9:17])),
	}
	s.digest.set(b[17:])
	return s, nil
}

// pathRec is the per-path record: the current version and staleness policy.
type pathRec struct {
	current  uint64
	maxStale int64 // nanoseconds, > 0
	syncedAt int64 // unix nanoseconds
}

func (p *pathRec) encode() []byte {
	b := make([]byte, 0, pathLen)
	b = append(b, recordFormat)
	b = binary.BigEndian.AppendUint64(b, p.current)
	b = binary.BigEndian.AppendUint64(b, uint64(p.maxStale))
	return binary.BigEndian.AppendUint64(b, uint64(p.syncedAt))
}

func decodePath(b []byte) (pathRec, error) {
	if len(b) != pathLen || b[0] != recordFormat {
		return pathRec{}, fmt.Errorf("%w: path record of %d bytes", errMalformed, len(b))
	}
	p := pathRec{
		current:  binary.BigEndian.Uint64(b[1:9]),
		maxStale: int64(binary.BigEndian.Uint64(b[9:17])),
		syncedAt: int64(binary.BigEndian.Uint64(b[17:25])),
	}
	if p.maxStale <= 0 || p.current > maxVersion {
		return pathRec{}, fmt.Errorf("%w: path record: current version %d, max_stale %d", errMalformed, p.current, p.maxStale)
	}
	return p, nil
}

// versionRec is one KV v2 version. data and meta are sub-slices of the
// decrypted plaintext: one allocation per record.
type versionRec struct {
	destroyed bool
	onDisk    bool  // data and meta are not held in memory: read them from the file
	deletion  int64 // unix nanoseconds; 0 = not deleted
	data      []byte
	meta      []byte
}

func (v *versionRec) encode() []byte {
	b := make([]byte, 0, 1+1+8+2*binary.MaxVarintLen64+len(v.data)+len(v.meta))
	var flags byte
	if v.destroyed {
		flags |= flagDestroyed
	}
	if v.onDisk {
		flags |= flagOnDisk
	}
	b = append(b, recordFormat, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(v.deletion))
	b = binary.AppendUvarint(b, uint64(len(v.data)))
	b = append(b, v.data...)
	b = binary.AppendUvarint(b, uint64(len(v.meta)))
	return append(b, v.meta...)
}

// decodeVersion parses a version record. The result aliases b.
func decodeVersion(b []byte) (versionRec, error) {
	if len(b) < 10 || b[0] != recordFormat {
		return versionRec{}, fmt.Errorf("%w: version record header", errMalformed)
	}
	if b[1]&^(flagDestroyed|flagOnDisk) != 0 {
		return versionRec{}, fmt.Errorf("%w: version record: unknown flags %#x", errMalformed, b[1])
	}
	v := versionRec{destroyed: b[1]&flagDestroyed != 0, onDisk: b[1]&flagOnDisk != 0, deletion: int64(binary.BigEndian.Uint64(b[2:10]))}
	rest := b[10:]
	var err error
	if v.data, rest, err = lengthPrefixed(rest, "data"); err != nil {
		return versionRec{}, err
	}
	if v.meta, rest, err = lengthPrefixed(rest, "metadata"); err != nil {
		return versionRec{}, err
	}
	if len(rest) != 0 {
		return versionRec{}, fmt.Errorf("%w: version record: %d trailing bytes", errMalformed, len(rest))
	}
	return v, nil
}

func lengthPrefixed(b []byte, field string) (val, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) || k != len(binary.AppendUvarint(nil, n)) {
		return nil, nil, fmt.Errorf("%w: version record: bad length of %s", errMalformed, field)
	}
	end := k + int(n)
	return b[k:end:end], b[end:], nil
}

// versionKey is the bbolt key of a version record.
func versionKey(path string, version uint64) []byte {
	k := make([]byte, 0, len(path)+1+8)
	k = append(k, path...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, version)
}

// parseVersionKey splits a versions-bucket key. Paths never contain NUL.
func parseVersionKey(k []byte) (path string, version uint64, err error) {
	if len(k) < 1+1+8 || k[len(k)-9] != 0 {
		return "", 0, fmt.Errorf("%w: version key of %d bytes", errMalformed, len(k))
	}
	path = string(k[:len(k)-9])
	version = binary.BigEndian.Uint64(k[len(k)-8:])
	if err := checkPath(path); err != nil || version == 0 || version > maxVersion {
		return "", 0, fmt.Errorf("%w: version key: path %q version %d", errMalformed, path, version)
	}
	return path, version, nil
}

// setDigest is a 256-bit sum, modulo 2^256, of a keyed MAC of every record
// (bucket, key and stored value). Adding and removing a record's term keeps
// it current in O(1); at Open the sum over the file is recomputed and
// compared with the stored one, which detects records added, removed or
// replaced by older copies on disk — what per-record AEAD cannot see. The MAC
// key is derived from the cache key, so terms cannot be computed without it,
// and the digest itself is stored encrypted in the state record.
type setDigest [4]uint64

func (d *setDigest) add(t [32]byte) {
	var c uint64
	for i := 3; i >= 0; i-- {
		d[i], c = bits.Add64(d[i], binary.BigEndian.Uint64(t[8*i:]), c)
	}
}

func (d *setDigest) sub(t [32]byte) {
	var c uint64
	for i := 3; i >= 0; i-- {
		d[i], c = bits.Sub64(d[i], binary.BigEndian.Uint64(t[8*i:]), c)
	}
}

func (d *setDigest) bytes() []byte {
	b := make([]byte, 0, 32)
	for _, w := range d {
		b = binary.BigEndian.AppendUint64(b, w)
	}
	return b
}

func (d *setDigest) set(b []byte) {
	for i := range d {
		d[i] = binary.BigEndian.Uint64(b[8*i:])
	}
}

// termer computes digest terms. It is not safe for concurrent use: the
// cache uses it only at Open and under its writer lock.
type termer struct {
	mac hash.Hash
	buf [32]byte
}

func newTermer(macKey []byte) *termer {
	return &termer{mac: hmac.New(sha256.New, macKey)}
}

func (t *termer) term(bucket, key, value []byte) [32]byte {
	t.mac.Reset()
	var n [binary.MaxVarintLen64]byte
	t.mac.Write(n[:binary.PutUvarint(n[:], uint64(len(bucket)))])
	t.mac.Write(bucket)
	t.mac.Write(n[:binary.PutUvarint(n[:], uint64(len(key)))])
	t.mac.Write(key)
	t.mac.Write(value)
	var out [32]byte
	t.mac.Sum(t.buf[:0])
	copy(out[:], t.buf[:])
	return out
}

// inMemory is what the memory index keeps of v: all of it, or, for a
// record kept on disk, everything but its data and metadata.
func (v versionRec) inMemory() versionRec {
	if v.onDisk {
		v.data, v.meta = nil, nil
	}
	return v
}

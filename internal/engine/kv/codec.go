package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"
)

// ErrCorrupt is returned (wrapped) when a stored record cannot be decoded.
// It means storage was damaged or written by something else; the request
// fails with an internal error and nothing is changed.
var ErrCorrupt = errors.New("kv: corrupt record")

// metaFormat is the first byte of every metadata record.
const metaFormat byte = 1

// versionFormat is the first byte of every version record.
const versionFormat byte = 1

const (
	flagCASRequired byte = 1 << iota
	flagHasData
)

// versionMeta is what the metadata record knows about one version.
// Times are Unix nanoseconds; 0 means unset.
type versionMeta struct {
	num       uint64
	created   int64
	deletion  int64
	destroyed bool
}

// deletedAt reports whether the version counts as deleted at now: a
// deletion_time at or before now.
func (v *versionMeta) deletedAt(now int64) bool {
	return v.deletion != 0 && v.deletion <= now
}

// keyMeta is the metadata record of one secret path.
type keyMeta struct {
	current     uint64
	oldest      uint64
	maxVersions uint32
	casRequired bool
	deleteAfter time.Duration
	created     int64
	updated     int64
	custom      map[string]string
	// versions is sorted by num, ascending.
	versions []versionMeta
	// curData is the JSON data of version current, nil when there is no
	// current version or it was destroyed.
	curData []byte
}

// find returns the version numbered n, or nil.
func (m *keyMeta) find(n uint64) *versionMeta {
	for i := len(m.versions) - 1; i >= 0; i-- {
		if m.versions[i].num == n {
			return &m.versions[i]
		}
		if m.versions[i].num < n {
			break
		}
	}
	return nil
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encode serialises m. The format is private to this package: a format
// byte, varint header fields, custom metadata sorted by key, the versions,
// then the current data.
func (m *keyMeta) encode() []byte {
	size := 48 + len(m.curData) + len(m.versions)*24
	keys := make([]string, 0, len(m.custom))
	for k, v := range m.custom {
		keys = append(keys, k)
		size += len(k) + len(v) + 4
	}
	sort.Strings(keys)
	b := make([]byte, 0, size)
	b = append(b, metaFormat)
	b = binary.AppendUvarint(b, m.current)
	b = binary.AppendUvarint(b, m.oldest)
	b = binary.AppendUvarint(b, uint64(m.maxVersions))
	var flags byte
	if m.casRequired {
		flags |= flagCASRequired
	}
	if m.curData != nil {
		flags |= flagHasData
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, int64(m.deleteAfter))
	b = binary.AppendVarint(b, m.created)
	b = binary.AppendVarint(b, m.updated)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, m.custom[k])
	}
	b = binary.AppendUvarint(b, uint64(len(m.versions)))
	for i := range m.versions {
		v := &m.versions[i]
		b = binary.AppendUvarint(b, v.num)
		b = binary.AppendVarint(b, v.created)
		b = binary.AppendVarint(b, v.deletion)
		if v.destroyed {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	if m.curData != nil {
		b = appendBytes(b, m.curData)
	}
	return b
}

// reader decodes the binary format; the first error sticks.
type reader struct {
	buf []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: bad %s", ErrCorrupt, what)
	}
}

func (r *reader) byte(what string) byte {
	if r.err != nil || len(r.buf) == 0 {
		r.fail(what)
		return 0
	}
	c := r.buf[0]
	r.buf = r.buf[1:]
	return c
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

func (r *reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.buf)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

// bytes returns a length-prefixed slice aliasing the input.
func (r *reader) bytes(what string) []byte {
	n := r.uvarint(what)
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.buf)) {
		r.fail(what)
		return nil
	}
	s := r.buf[:n:n]
	r.buf = r.buf[n:]
	return s
}

// count reads an item count and checks that at least minSize bytes per item
// remain, so a corrupt count cannot cause a huge allocation.
func (r *reader) count(what string, minSize int) int {
	n := r.uvarint(what)
	if r.err != nil {
		return 0
	}
	if n > uint64(len(r.buf)/minSize) {
		r.fail(what)
		return 0
	}
	return int(n)
}

// decodeMeta parses a metadata record. The returned curData aliases raw,
// which the caller must not modify afterwards.
func decodeMeta(raw []byte) (*keyMeta, error) {
	r := &reader{buf: raw}
	if r.byte("format") != metaFormat {
		r.fail("format")
		return nil, r.err
	}
	m := &keyMeta{}
	m.current = r.uvarint("current version")
	m.oldest = r.uvarint("oldest version")
	mv := r.uvarint("max versions")
	if mv > uint64(^uint32(0)) {
		r.fail("max versions")
	}
	m.maxVersions = uint32(mv)
	flags := r.byte("flags")
	m.casRequired = flags&flagCASRequired != 0
	m.deleteAfter = time.Duration(r.varint("delete_version_after"))
	m.created = r.varint("created time")
	m.updated = r.varint("updated time")
	if n := r.count("custom metadata", 2); n > 0 {
		m.custom = make(map[string]string, n)
		for i := 0; i < n && r.err == nil; i++ {
			k := r.bytes("custom metadata key")
			v := r.bytes("custom metadata value")
			m.custom[string(k)] = string(v)
		}
	}
	if n := r.count("versions", 4); n > 0 {
		m.versions = make([]versionMeta, n)
		for i := 0; i < n && r.err == nil; i++ {
			v := &m.versions[i]
			v.num = r.uvarint("version number")
			v.created = r.varint("version created time")
			v.deletion = r.varint("version deletion time")
			switch r.byte("version destroyed") {
			case 0:
			case 1:
				v.destroyed = true
			default:
				r.fail("version destroyed")
			}
			if i > 0 && v.num <= m.versions[i-1].num {
				r.fail("version order")
			}
		}
	}
	if flags&flagHasData != 0 {
		m.curData = r.bytes("current data")
	}
	if r.err == nil && (len(r.buf) != 0 || flags&^(flagCASRequired|flagHasData) != 0) {
		r.fail("trailer")
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

// encodeVersion wraps one version's JSON data as a version record.
func encodeVersion(data []byte) []byte {
	b := make([]byte, 0, len(data)+1)
	b = append(b, versionFormat)
	return append(b, data...)
}

// decodeVersion returns the JSON data of a version record, aliasing raw.
func decodeVersion(raw []byte) ([]byte, error) {
	if len(raw) == 0 || raw[0] != versionFormat {
		return nil, fmt.Errorf("%w: bad version record", ErrCorrupt)
	}
	return raw[1:], nil
}

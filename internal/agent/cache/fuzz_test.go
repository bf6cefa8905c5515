package cache

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"testing"
	"time"
)

// FuzzDecodeRecord feeds arbitrary bytes to every record decoder: none may
// panic, and whatever decodes must re-encode to the same bytes (one
// encoding per record, so nothing can hide in a second form).
func FuzzDecodeRecord(f *testing.F) {
	st := stateRec{watermark: 42, syncedAt: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).UnixNano()}
	st.digest.add([32]byte{1, 2, 3})
	pr := pathRec{current: 3, maxStale: int64(time.Hour), syncedAt: 1764115200000000000}
	vr := versionRec{destroyed: true, deletion: 1764115200000000001,
		data: []byte(`{"password":"hunter2"}`), meta: []byte(`{"created_time":"2026-11-26T00:00:00Z","destroyed":true,"version":3}`)}
	f.Add(st.encode())
	f.Add(pr.encode())
	f.Add(vr.encode())
	f.Add((&versionRec{}).encode())
	f.Add(versionKey("app/db", 3))
	f.Add([]byte{recordFormat, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x00, 0})

	key := bytes.Repeat([]byte{9}, 32)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	ad := appendAD(nil, kindVersion, "edge-1", "app/db", 3)
	f.Add(seal(aead, ad, vr.encode()))

	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := decodeState(b); err == nil && !bytes.Equal(s.encode(), b) {
			t.Fatalf("state %x re-encodes as %x", b, s.encode())
		}
		if p, err := decodePath(b); err == nil && !bytes.Equal(p.encode(), b) {
			t.Fatalf("path %x re-encodes as %x", b, p.encode())
		}
		if v, err := decodeVersion(b); err == nil && !bytes.Equal(v.encode(), b) {
			t.Fatalf("version %x re-encodes as %x", b, v.encode())
		}
		if p, v, err := parseVersionKey(b); err == nil && !bytes.Equal(versionKey(p, v), b) {
			t.Fatalf("version key %x re-encodes as %x", b, versionKey(p, v))
		}
		if pt, err := open(aead, ad, b); err == nil {
			if _, err := decodeVersion(pt); err != nil {
				t.Fatalf("an authentic envelope holds an undecodable record: %v", err)
			}
		}
	})
}

// FuzzOpCheck feeds arbitrary data and metadata JSON, as a server would
// send them, to the op validator: no panic, and an accepted upsert's record
// round-trips.
func FuzzOpCheck(f *testing.F) {
	f.Add([]byte(`{"password":"hunter2"}`), []byte(`{"created_time":"2026-11-26T00:00:00Z","custom_metadata":{"a":"b"},"deletion_time":"","destroyed":false,"version":1}`))
	f.Add([]byte(`null`), []byte(`{"deletion_time":"2026-11-26T00:00:00.123456789+02:00","destroyed":true}`))
	f.Add([]byte(`{}`), []byte(`{"version":2}`))
	f.Add([]byte(`[`), []byte(` {} `))
	f.Fuzz(func(t *testing.T, data, meta []byte) {
		op := Op{Kind: OpUpsert, Path: "p", Version: 1, Data: json.RawMessage(data), Metadata: json.RawMessage(meta), MaxStale: time.Minute}
		rec, err := op.check()
		if err != nil {
			return
		}
		got, err := decodeVersion(rec.encode())
		if err != nil || !bytes.Equal(got.data, data) || !bytes.Equal(got.meta, meta) || got.destroyed != rec.destroyed || got.deletion != rec.deletion {
			t.Fatalf("accepted op does not round-trip: %v", err)
		}
	})
}

package zone

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

// FuzzEnvelope feeds arbitrary bytes to the envelope parser and to record
// decryption: neither may panic, errors must be one of the documented
// sentinels, and nothing but a genuine envelope may decrypt.
func FuzzEnvelope(f *testing.F) {
	key := make([]byte, KeySize)
	_, _ = rand.Read(key)
	aead, err := newAEAD(key)
	if err != nil {
		f.Fatal(err)
	}
	ks := &keySet{active: 1, keys: map[uint32]*dataKey{1: {version: 1, aead: aead}}}
	genuine := sealRecord(aead, 1, "z", "kv/data/db", []byte("secret"))

	f.Add(genuine)
	f.Add(sealRecord(aead, 1, "z", "kv/data/db", nil))
	f.Add(sealRecord(aead, 7, "z", "kv/data/db", []byte("other version")))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 1})
	f.Add(bytes.Repeat([]byte{0}, Overhead))
	f.Add(append([]byte{2}, genuine[1:]...))

	f.Fuzz(func(t *testing.T, b []byte) {
		v, perr := ParseEnvelope(b)
		if perr != nil && !errors.Is(perr, ErrMalformed) {
			t.Fatalf("ParseEnvelope error %v is not ErrMalformed", perr)
		}
		if perr == nil && (len(b) < Overhead || b[0] != envelopeFormat || v == 0) {
			t.Fatalf("ParseEnvelope accepted %x", b)
		}
		pt, v2, err := ks.openRecord("z", "kv/data/db", b)
		if perr != nil {
			if err == nil {
				t.Fatal("openRecord accepted what ParseEnvelope refused")
			}
			return
		}
		if v2 != v {
			t.Fatalf("openRecord version %d, ParseEnvelope %d", v2, v)
		}
		switch {
		case err == nil:
			if !bytes.Equal(b, genuine) && !bytes.Equal(pt, []byte("secret")) && len(pt) != 0 {
				t.Fatalf("forged envelope decrypted to %q", pt)
			}
		case !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrUnknownVersion):
			t.Fatalf("openRecord error %v is not a documented sentinel", err)
		}
		// The same bytes never open under another zone or path.
		if _, _, err := ks.openRecord("y", "kv/data/db", b); err == nil {
			t.Fatal("envelope opened under another zone")
		}
		if _, _, err := ks.openRecord("z", "kv/data/other", b); err == nil {
			t.Fatal("envelope opened under another path")
		}
	})
}

// FuzzKeyDoc checks that parsing a stored key document never panics and
// that a parsed document never yields keys without the right KEK.
func FuzzKeyDoc(f *testing.F) {
	root := newRoot(f)
	doc, _, err := newKeyDoc("z", root, fixedTime)
	if err != nil {
		f.Fatal(err)
	}
	b, _ := doc.marshal()
	f.Add(b)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"zone":"z","kek_version":1,"active":1,"data_keys":[{"version":1,"wrapped":""}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseKeyDoc(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptKeys) {
				t.Fatalf("parseKeyDoc error %v is not ErrCorruptKeys", err)
			}
			return
		}
		kek, err := d.unwrapKEK(root)
		if err != nil {
			return
		}
		_, _ = d.keySet(kek)
	})
}

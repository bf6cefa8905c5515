package barrier

import (
	"bytes"
	"crypto/rand"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestKeyringMarshalRoundTrip(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	kr, err := NewKeyring(rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	kr2, err := kr.Rotate(rand.Reader, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if kr.ActiveTerm() != 1 || len(kr.Terms()) != 1 {
		t.Fatal("Rotate changed its receiver")
	}
	blob, err := kr2.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseKeyring(blob)
	if err != nil {
		t.Fatal(err)
	}
	if got.ActiveTerm() != 2 || !slices.Equal(got.Terms(), []uint32{1, 2}) {
		t.Fatalf("parsed active %d terms %v", got.ActiveTerm(), got.Terms())
	}
	if it, ok := got.InstallTime(2); !ok || !it.Equal(now.Add(time.Hour)) {
		t.Fatalf("install time %v, %v", it, ok)
	}
	if _, ok := got.InstallTime(3); ok {
		t.Fatal("InstallTime of a missing term reported ok")
	}
	// Parsing copies key bytes: clearing the blob does not break the keyring.
	ct := kr2.Encrypt("p", []byte("x"))
	clear(blob)
	if pt, err := got.Decrypt("p", ct); err != nil || string(pt) != "x" {
		t.Fatalf("Decrypt after clearing blob = %q, %v", pt, err)
	}
}

func TestKeyringDecryptErrors(t *testing.T) {
	kr, _ := NewKeyring(rand.Reader, time.Now())
	ct := kr.Encrypt("p", []byte("value"))
	wrongTerm := slices.Clone(ct)
	wrongTerm[4] = 9
	wrongVersion := slices.Clone(ct)
	wrongVersion[0] = 2
	tests := []struct {
		name string
		path string
		env  []byte
		want error
	}{
		{"ok", "p", ct, nil},
		{"other path", "q", ct, ErrDecrypt},
		{"unknown term", "p", wrongTerm, ErrUnknownTerm},
		{"unknown version", "p", wrongVersion, ErrMalformed},
		{"short", "p", ct[:Overhead-1], ErrMalformed},
		{"empty", "p", nil, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kr.Decrypt(tc.path, tc.env)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseKeyringRejects(t *testing.T) {
	kr, _ := NewKeyring(rand.Reader, time.Now())
	kr, _ = kr.Rotate(rand.Reader, time.Now())
	good, _ := kr.MarshalBinary()
	mut := func(f func(b []byte) []byte) []byte { return f(slices.Clone(good)) }
	tests := map[string][]byte{
		"empty":          nil,
		"short header":   good[:5],
		"bad version":    mut(func(b []byte) []byte { b[0] = 7; return b }),
		"zero count":     mut(func(b []byte) []byte { b[8] = 0; return b[:keyringHeader] }),
		"huge count":     mut(func(b []byte) []byte { b[5] = 0xff; return b }),
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(slices.Clone(good), 0),
		"active missing": mut(func(b []byte) []byte { b[4] = 9; return b }),
		"zero term":      mut(func(b []byte) []byte { b[keyringHeader+3] = 0; return b }),
		"terms out of order": mut(func(b []byte) []byte {
			b[keyringHeader+3] = 5 // first entry's term 1 -> 5, above the second's 2
			return b
		}),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseKeyring(in); !errors.Is(err, ErrMalformedKeyring) {
				t.Fatalf("err = %v, want ErrMalformedKeyring", err)
			}
		})
	}
}

func TestKeyringZero(t *testing.T) {
	kr, _ := NewKeyring(rand.Reader, time.Now())
	kr2, _ := kr.Rotate(rand.Reader, time.Now())
	kr2.Zero()
	for _, k := range []*Keyring{kr, kr2} {
		for _, tk := range k.terms {
			if !bytes.Equal(tk.key, make([]byte, KeySize)) {
				t.Fatalf("term %d not zeroed", tk.term)
			}
		}
	}
}

func TestNewKeyringRandomnessError(t *testing.T) {
	if _, err := NewKeyring(bytes.NewReader(make([]byte, 5)), time.Now()); err == nil {
		t.Fatal("NewKeyring with a short reader succeeded")
	}
}

// FuzzDecrypt feeds arbitrary envelopes to the decoder: it must never panic,
// and anything it accepts must have come from the key (so, in practice,
// only the seeds that are real ciphertexts for this path).
func FuzzDecrypt(f *testing.F) {
	var seed [KeySize]byte
	kr, err := ParseKeyring(append([]byte{1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, seed[:]...))
	if err != nil {
		f.Fatal(err)
	}
	good := kr.Encrypt("fuzz/path", []byte("hello"))
	f.Add("fuzz/path", good)
	f.Add("other", good)
	f.Add("fuzz/path", good[:Overhead])
	f.Add("", []byte{})
	f.Add("fuzz/path", []byte{1, 0, 0, 0, 1})
	f.Add("fuzz/path", append([]byte{2}, good[1:]...))
	f.Add("fuzz/path", append([]byte{1, 0xff, 0xff, 0xff, 0xff}, good[5:]...))
	f.Fuzz(func(t *testing.T, path string, env []byte) {
		in := slices.Clone(env)
		pt, err := kr.Decrypt(path, env)
		if !bytes.Equal(in, env) {
			t.Fatal("Decrypt modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownTerm) && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if len(pt) != len(env)-Overhead {
			t.Fatalf("plaintext %d bytes from %d-byte envelope", len(pt), len(env))
		}
	})
}

// FuzzParseKeyring: the keyring decoder never panics, and what it accepts
// re-encodes to the same bytes.
func FuzzParseKeyring(f *testing.F) {
	kr, _ := NewKeyring(rand.Reader, time.Unix(1700000000, 0))
	one, _ := kr.MarshalBinary()
	kr, _ = kr.Rotate(rand.Reader, time.Unix(1700000001, 0))
	two, _ := kr.MarshalBinary()
	f.Add(one)
	f.Add(two)
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Add(two[:len(two)-3])
	f.Fuzz(func(t *testing.T, b []byte) {
		kr, err := ParseKeyring(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedKeyring) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		out, err := kr.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out)
		}
	})
}

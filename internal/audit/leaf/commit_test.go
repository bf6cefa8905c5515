package leaf

import (
	"bytes"
	"crypto/aes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func jsonValid(b []byte) bool { return json.Valid(b) }

// TestGoldenLeaf pins the exact leaf bytes of testdata/entry.json under a
// fixed seed: any change to the field split, salt, digest or encoding shows.
func TestGoldenLeaf(t *testing.T) {
	leaf := mustCommit(t, readEntry(t), testSeed(0))
	path := filepath.Join("testdata", "entry.leaf.hex")
	got := hex.EncodeToString(leaf) + "\n"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("leaf of testdata/entry.json changed:\n got %s\nwant %s", got, want)
	}
}

// TestLeafLayout recomputes a tiny leaf from the specification with plain
// SHA-256, independently of the package's code paths.
func TestLeafLayout(t *testing.T) {
	seed := testSeed(0)
	line := []byte(`{"type":"request","request":{"path":"kv/a","operation":"read"}}`)
	fields := []struct{ name, value string }{
		{"request.operation", `"read"`},
		{"request.path", `"kv/a"`},
		{"type", `"request"`},
	}
	want := []byte{0x01, 0x00, byte(len(fields))}
	for _, f := range fields {
		salt := Salt(seed, f.name)
		d := sha256.Sum256(append(salt[:], f.value...))
		want = append(want, byte(len(f.name)))
		want = append(want, f.name...)
		want = append(want, d[:]...)
	}
	got := mustCommit(t, line, seed)
	if !bytes.Equal(got, want) {
		t.Fatalf("leaf\n got %x\nwant %x", got, want)
	}
	salt := Salt(seed, "request.path")
	if d := FieldDigest(salt, []byte(`"kv/a"`)); d != sha256.Sum256(append(salt[:], `"kv/a"`...)) {
		t.Fatalf("FieldDigest = %x", d)
	}
}

// The salts are AES-CMAC (RFC 4493): the subkeys and the MAC agree with the
// published test vectors (AES-128 examples of RFC 4493 section 4, and the
// AES-256 ones of NIST SP 800-38B).
func TestSaltIsAESCMAC(t *testing.T) {
	for _, tc := range []struct{ key, msg, mac string }{
		{"2b7e151628aed2a6abf7158809cf4f3c", "", "bb1d6929e95937287fa37d129b756746"},
		{"2b7e151628aed2a6abf7158809cf4f3c", "6bc1bee22e409f96e93d7e117393172a", "070a16b46b4d4144f79bdd9dd04a287c"},
		{"2b7e151628aed2a6abf7158809cf4f3c", "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411", "dfa66747de9ae63030ca32611497c827"},
		{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "", "028962f61b7bf89efc6b551f4667d983"},
		{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "6bc1bee22e409f96e93d7e117393172a", "28a7023f452e8f82bd4bf28d8c37c35c"},
	} {
		key, _ := hex.DecodeString(tc.key)
		msg, _ := hex.DecodeString(tc.msg)
		c, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		m := &salter{c: c}
		c.Encrypt(m.x[:], m.x[:])
		m.k1 = cmacDouble(m.x)
		m.k2 = cmacDouble(m.k1)
		if got := m.salt(string(msg)); hex.EncodeToString(got[:]) != tc.mac {
			t.Errorf("CMAC(%s, %s) = %x, want %s", tc.key, tc.msg, got, tc.mac)
		}
	}
	seed := testSeed(0)
	if a, b := Salt(seed, "request.path"), Salt(seed, "request.pat"); a == b {
		t.Fatal("two names share a salt")
	}
}

func TestCommitErrors(t *testing.T) {
	seed := testSeed(0)
	for _, tc := range []struct {
		fields []Field
		seed   []byte
		msg    string
	}{
		{[]Field{{"b", []byte("1")}, {"a", []byte("1")}}, seed, "must be sorted and unique"},
		{[]Field{{"a", []byte("1")}, {"a", []byte("2")}}, seed, "must be sorted and unique"},
		{[]Field{{"", []byte("1")}}, seed, "is 0 bytes"},
		{[]Field{{strings.Repeat("n", 256), []byte("1")}}, seed, "is 256 bytes"},
		{[]Field{{"\xff", []byte("1")}}, seed, "not valid UTF-8"},
		{[]Field{{"a", []byte("1")}}, seed[:31], "seed is 31 bytes"},
		{[]Field{{"a", []byte("1")}}, nil, "seed is 0 bytes"},
	} {
		dst := []byte("prefix")
		out, err := AppendCommit(dst, tc.fields, tc.seed)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("AppendCommit(%q) error = %v, want %q", tc.fields, err, tc.msg)
		}
		if string(out) != "prefix" {
			t.Errorf("AppendCommit on error returned %q, want dst unchanged", out)
		}
	}
}

func TestAppendCommitAppends(t *testing.T) {
	fields := mustFields(t, readEntry(t))
	want, err := Commit(fields, testSeed(0))
	if err != nil {
		t.Fatal(err)
	}
	got, err := AppendCommit([]byte("xy"), fields, testSeed(0))
	if err != nil {
		t.Fatal(err)
	}
	if string(got[:2]) != "xy" || !bytes.Equal(got[2:], want) {
		t.Fatalf("AppendCommit did not append the Commit bytes")
	}
}

func TestAppendCommitAllocs(t *testing.T) {
	fields := mustFields(t, readEntry(t))
	seed := testSeed(0)
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		buf, err = AppendCommit(buf[:0], fields, seed)
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Fatalf("AppendCommit allocates %.1f times per entry with a large enough dst, want only the AES key schedule", allocs)
	}
}

func TestParseLeaf(t *testing.T) {
	leaf := mustCommit(t, readEntry(t), testSeed(0))
	ds, err := ParseLeaf(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 26 || ds[0].Name != "auth.accessor" || ds[25].Name != "type" {
		t.Fatalf("ParseLeaf: %d fields, first %q last %q", len(ds), ds[0].Name, ds[len(ds)-1].Name)
	}
	again, err := EncodeLeaf(ds)
	if err != nil || !bytes.Equal(again, leaf) {
		t.Fatalf("EncodeLeaf(ParseLeaf(leaf)) differs: %v", err)
	}

	rec := func(name string) []byte { return append(append([]byte{byte(len(name))}, name...), make([]byte, 32)...) }
	hdr := func(n int) []byte { return binary.BigEndian.AppendUint16([]byte{Version}, uint16(n)) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		leaf []byte
		msg  string
	}{
		{nil, "shorter than its 3-byte header"},
		{[]byte{2, 0, 0}, "leaf version 0x02"},
		{cat(hdr(2), rec("a")), "claims 2 fields"},
		{cat(hdr(1), rec("a"), []byte{0}), "1 bytes after the last"},
		{cat(hdr(2), rec("a"), []byte{200}, make([]byte, 39)), "leaf field 1: truncated"},
		{cat(hdr(2), rec("b"), rec("a")), "must be sorted and unique"},
		{cat(hdr(2), rec("a"), rec("a")), "must be sorted and unique"},
		{cat(hdr(1), rec(""), []byte{0}), "is 0 bytes"},
		{cat(hdr(1), rec("\xff")), "not valid UTF-8"},
	} {
		_, err := ParseLeaf(tc.leaf)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseLeaf(%x) error = %v, want %q", tc.leaf, err, tc.msg)
		}
	}
	empty, err := ParseLeaf(hdr(0))
	if err != nil || len(empty) != 0 {
		t.Fatalf("ParseLeaf(empty leaf) = %v, %v", empty, err)
	}
}

func FuzzParseLeaf(f *testing.F) {
	f.Add(mustCommit(f, readEntry(f), testSeed(0)))
	f.Add(mustCommit(f, []byte(`{"type":"request","signer":{"id":"x"}}`), testSeed(0)))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, leaf []byte) {
		ds, err := ParseLeaf(leaf)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		again, err := EncodeLeaf(ds)
		if err != nil {
			t.Fatalf("EncodeLeaf(ParseLeaf(x)): %v", err)
		}
		if !bytes.Equal(again, leaf) {
			t.Fatalf("leaf encoding is not canonical: %x re-encodes as %x", leaf, again)
		}
	})
}

func BenchmarkAppendCommit(b *testing.B) {
	all := mustFields(b, readEntry(b))
	seed := testSeed(0)
	for _, n := range []int{20, len(all)} {
		fields := all[:n]
		b.Run(itoa(n)+"fields", func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				buf, err = AppendCommit(buf[:0], fields, seed)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFieldsAndCommit(b *testing.B) {
	line := readEntry(b)
	seed := testSeed(0)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		fields, err := Fields(line)
		if err != nil {
			b.Fatal(err)
		}
		buf, err = AppendCommit(buf[:0], fields, seed)
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFields(b *testing.B) {
	line := readEntry(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if _, err := Fields(line); err != nil {
			b.Fatal(err)
		}
	}
}

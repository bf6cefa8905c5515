package tlog

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/0/x001/234", "tile/entries/005.p/7", "tile/3/x123/x456/789.p/255",
		"tile/0/x000/001", "tile/00/001", "tile/0/1", "tile/64/000", "checkpoint", "tile/entries/../journal"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseTilePath(s)
		if err != nil {
			return
		}
		if id.path() != s {
			t.Fatalf("parse(%q) = %+v, which formats as %q", s, id, id.path())
		}
		if id.level != entriesLevel {
			// Agree with sumdb on the tile coordinates.
			st, err := tlog.ParseTilePath("tile/8/" + s[len("tile/"):])
			if err != nil || st.L != id.level || uint64(st.N) != id.n || st.W != id.width {
				t.Fatalf("sumdb parses %q as %+v, %v; we say %+v", s, st, err, id)
			}
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	skey, vkey, _ := note.GenerateKey(nil, "fuzz-key")
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	cp, _ := signCheckpoint(testOrigin, 12345, tlog.RecordHash([]byte("x")), s)
	f.Add(cp.Signed)
	ext, _ := note.Sign(&note.Note{Text: checkpointText("o", 1, tlog.Hash{}) + "extension line\n"}, s)
	f.Add(ext)
	f.Add([]byte("o\n01\nAAAA\n\n— fuzz-key AAAA\n"))
	f.Fuzz(func(t *testing.T, signed []byte) {
		got, err := ParseCheckpoint(signed, v)
		if err != nil {
			return
		}
		// Whatever parses must re-format to the text that was signed.
		text, _, _ := bytes.Cut(signed, []byte("\n\n"))
		want := checkpointText(got.Origin, got.Size, got.Hash)
		if !bytes.HasPrefix(append(text, '\n'), []byte(want)) {
			t.Fatalf("parsed %+v from %q", got, text)
		}
	})
}

func FuzzParseCheckpointText(f *testing.F) {
	f.Add(checkpointText(testOrigin, 7, tlog.Hash{1}))
	f.Add("o\n18446744073709551615\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n")
	f.Add("o\n-1\nAA==\n")
	f.Fuzz(func(t *testing.T, text string) {
		o, n, h, err := parseCheckpointText(text)
		if err != nil {
			return
		}
		if want := checkpointText(o, n, h); len(text) < len(want) || text[:len(want)] != want {
			t.Fatalf("%q parsed as (%q, %d, %v)", text, o, n, h)
		}
	})
}

func FuzzJournal(f *testing.F) {
	var j []byte
	j = appendRecord(j, 0, []byte("leaf 0"), []byte("private 0"))
	j = appendRecord(j, 1, nil, nil)
	j = appendRecord(j, 2, []byte("leaf 2"), bytes.Repeat([]byte{0}, 40))
	f.Add(j)
	f.Add(j[:len(j)-3])
	f.Add([]byte{0, 0, 0, 10, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		os.Mkdir(filepath.Join(dir, privateDir), 0o700)
		if err := os.WriteFile(filepath.Join(dir, journalName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		var re []byte
		n, _, err := ReadJournal(dir, func(i uint64, leaf, private []byte) error {
			re = appendRecord(re, i, leaf, private)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The records read are exactly a prefix of the input.
		if !bytes.HasPrefix(data, re) {
			t.Fatalf("re-encoded %d records are not a prefix of the journal", n)
		}
	})
}

func FuzzSplitBundle(f *testing.F) {
	b := &builder{}
	for i := 0; i < 5; i++ {
		b.add(leafOf(i), func(tileID, []byte) error { return nil })
	}
	f.Add(b.bundle)
	f.Add([]byte{0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		leaves, err := splitBundle(data)
		if err != nil {
			return
		}
		var re []byte
		for _, l := range leaves {
			re = append(re, byte(len(l)>>8), byte(len(l)))
			re = append(re, l...)
		}
		if !bytes.Equal(re, data) {
			t.Fatalf("bundle does not round-trip")
		}
	})
}

package leaf

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// testLog is a tiny in-memory RFC 6962 log built with x/mod/sumdb/tlog, the
// way a third party would recompute one.
type testLog struct {
	t      testing.TB
	hashes []tlog.Hash
	size   int64
	signer note.Signer
	vkey   string
}

func newTestLog(t testing.TB, origin string) *testLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{t: t, signer: s, vkey: vkey}
}

func (l *testLog) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x >= int64(len(l.hashes)) {
				return nil, fmt.Errorf("hash %d not stored", x)
			}
			out[i] = l.hashes[x]
		}
		return out, nil
	})
}

// append adds leaf data and returns its index.
func (l *testLog) append(leafData []byte) uint64 {
	l.t.Helper()
	hs, err := tlog.StoredHashes(l.size, leafData, l.reader())
	if err != nil {
		l.t.Fatal(err)
	}
	l.hashes = append(l.hashes, hs...)
	l.size++
	return uint64(l.size - 1)
}

// checkpoint signs the current tree head with the log key.
func (l *testLog) checkpoint(signers ...note.Signer) []byte {
	l.t.Helper()
	root, err := tlog.TreeHash(l.size, l.reader())
	if err != nil {
		l.t.Fatal(err)
	}
	if len(signers) == 0 {
		signers = []note.Signer{l.signer}
	}
	text := fmt.Sprintf("%s\n%d\n%s\n", l.signer.Name(), l.size, base64.StdEncoding.EncodeToString(root[:]))
	msg, err := note.Sign(&note.Note{Text: text}, signers...)
	if err != nil {
		l.t.Fatal(err)
	}
	return msg
}

func (l *testLog) proof(index uint64) tlog.RecordProof {
	l.t.Helper()
	p, err := tlog.ProveRecord(l.size, int64(index), l.reader())
	if err != nil {
		l.t.Fatal(err)
	}
	return p
}

func (l *testLog) verifier() note.Verifier {
	l.t.Helper()
	v, err := note.NewVerifier(l.vkey)
	if err != nil {
		l.t.Fatal(err)
	}
	return v
}

func readEntry(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "entry.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testSeed(b byte) []byte {
	s := make([]byte, SeedSize)
	for i := range s {
		s[i] = b + byte(i)
	}
	return s
}

func mustFields(t testing.TB, line []byte) []Field {
	t.Helper()
	f, err := Fields(line)
	if err != nil {
		t.Fatalf("Fields(%s): %v", line, err)
	}
	return f
}

func mustCommit(t testing.TB, line, seed []byte) []byte {
	t.Helper()
	l, err := Commit(mustFields(t, line), seed)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

package tlog

import (
	"encoding/binary"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

var bigLog = flag.Bool("tlog.big", false, "run benchmarks on a 10,000,000-entry log (built once under os.TempDir())")

// BenchmarkAppend appends batches of 32 realistic entries (900-byte leaf,
// 1,200 private bytes) with the background integrator running at its
// default interval.
func BenchmarkAppend(b *testing.B) {
	k := newKey(b, "bench")
	l, err := Open(Options{Dir: b.TempDir(), Origin: testOrigin, Signer: k.s})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	leaf := make([]byte, 900)
	private := make([]byte, 1200)
	batch := make([]Entry, 32)
	for i := range batch {
		batch[i] = Entry{Leaf: leaf, Private: private}
	}
	b.SetBytes(int64(len(batch) * (len(leaf) + len(private))))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint64(leaf, uint64(i))
		if _, err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/time.Since(start).Seconds(), "entries/s")
	b.StopTimer()
	if _, err := l.Integrate(); err != nil {
		b.Fatal(err)
	}
}

const bigSize = 10_000_000

// bigLogDir returns a 10M-entry log, building it on first use. The signing
// key is stored beside it so later runs can reopen it.
func bigLogDir(b *testing.B) (string, note.Signer) {
	if !*bigLog {
		b.Skip("needs -tlog.big (builds a 10M-entry log under os.TempDir() once)")
	}
	dir := filepath.Join(os.TempDir(), "edgevault-tlog-bench-10M")
	marker := filepath.Join(dir, "..", "edgevault-tlog-bench-10M.done")
	keyFile := filepath.Join(dir, "..", "edgevault-tlog-bench-10M.key")
	if skey, err := os.ReadFile(keyFile); err == nil {
		if _, err := os.Stat(marker); err == nil {
			s, err := note.NewSigner(string(skey))
			if err != nil {
				b.Fatal(err)
			}
			return dir, s
		}
	}
	os.RemoveAll(dir)
	os.Remove(marker)
	skey, _, err := note.GenerateKey(nil, "bench")
	if err != nil {
		b.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	start := time.Now()
	l, err := Open(Options{Dir: dir, Origin: testOrigin, Signer: s, CheckpointInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]Entry, 4096)
	leaves := make([]byte, 8*len(batch))
	for i := 0; i < bigSize; i += len(batch) {
		n := min(len(batch), bigSize-i)
		for j := 0; j < n; j++ {
			binary.BigEndian.PutUint64(leaves[8*j:], uint64(i+j))
			batch[j] = Entry{Leaf: leaves[8*j : 8*j+8]}
		}
		if _, err := l.Append(batch[:n]); err != nil {
			b.Fatal(err)
		}
		if (i/len(batch))%64 == 63 {
			if _, err := l.Integrate(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("built a %d-entry log in %v", bigSize, time.Since(start))
	if err := os.WriteFile(keyFile, []byte(skey), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	return dir, s
}

func BenchmarkInclusionProof10M(b *testing.B) {
	dir, s := bigLogDir(b)
	l, err := Open(Options{Dir: dir, Origin: testOrigin, Signer: s, CheckpointInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.InclusionProof(rng.Uint64N(bigSize), bigSize); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConsistencyProof10M(b *testing.B) {
	dir, s := bigLogDir(b)
	l, err := Open(Options{Dir: dir, Origin: testOrigin, Signer: s, CheckpointInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.ConsistencyProof(1+rng.Uint64N(bigSize-1), bigSize); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen10M(b *testing.B) {
	dir, s := bigLogDir(b)
	for i := 0; i < b.N; i++ {
		l, err := Open(Options{Dir: dir, Origin: testOrigin, Signer: s, CheckpointInterval: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
}

func BenchmarkVerifyDir10M(b *testing.B) {
	dir, s := bigLogDir(b)
	v := signerVerifier{s}
	for i := 0; i < b.N; i++ {
		rep, err := VerifyDir(dir, v)
		if err != nil || !rep.OK() {
			b.Fatalf("VerifyDir: %v %v", err, rep.Problems)
		}
	}
}

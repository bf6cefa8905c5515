package tlog

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const testOrigin = "edgevault.example/audit"

type testKey struct {
	s note.Signer
	v note.Verifier
}

func newKey(t testing.TB, name string) testKey {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{s, v}
}

func openLog(t testing.TB, dir string, k testKey) *Log {
	t.Helper()
	l, err := Open(Options{Dir: dir, Origin: testOrigin, Signer: k.s, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func leafOf(i int) []byte    { return []byte(fmt.Sprintf("leaf %d %s", i, strings.Repeat("x", i%7))) }
func privateOf(i int) []byte { return []byte(fmt.Sprintf("private %d", i)) }

// appendN appends entries [from, to) in batches of batch.
func appendN(t testing.TB, l *Log, from, to, batch int) {
	t.Helper()
	for i := from; i < to; i += batch {
		var es []Entry
		for j := i; j < min(i+batch, to); j++ {
			es = append(es, Entry{Leaf: leafOf(j), Private: privateOf(j)})
		}
		first, err := l.Append(es)
		if err != nil {
			t.Fatalf("Append at %d: %v", i, err)
		}
		if first != uint64(i) {
			t.Fatalf("Append returned first %d, want %d", first, i)
		}
	}
}

// refTree computes roots independently with transparency-dev/merkle.
type refTree struct {
	leaves [][]byte // leaf hashes
	roots  map[uint64][]byte
}

func (r *refTree) root(size uint64) []byte {
	if h, ok := r.roots[size]; ok {
		return h
	}
	if r.roots == nil {
		r.roots = map[uint64][]byte{}
	}
	r.roots[size] = r.computeRoot(size)
	return r.roots[size]
}

func (r *refTree) computeRoot(size uint64) []byte {
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng := rf.NewEmptyRange(0)
	for _, h := range r.leaves[:size] {
		if err := rng.Append(h, nil); err != nil {
			panic(err)
		}
	}
	if size == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		panic(err)
	}
	return root
}

func newRef(n int) *refTree {
	r := &refTree{}
	for i := 0; i < n; i++ {
		r.leaves = append(r.leaves, rfc6962.DefaultHasher.HashLeaf(leafOf(i)))
	}
	return r
}

func hashes(p []tlog.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

// checkProofs checks inclusion proofs for some indexes of size and a
// consistency proof to size from old, against the reference roots, with
// both verifiers.
func checkProofs(t *testing.T, l *Log, ref *refTree, size uint64, indexes []uint64, olds []uint64) {
	t.Helper()
	root := ref.root(size)
	for _, i := range indexes {
		if i >= size {
			continue
		}
		p, err := l.InclusionProof(i, size)
		if err != nil {
			t.Fatalf("InclusionProof(%d, %d): %v", i, size, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, ref.leaves[i], hashes(p), root); err != nil {
			t.Fatalf("merkle VerifyInclusion(%d, %d): %v", i, size, err)
		}
		if err := tlog.CheckRecord(p, int64(size), tlog.Hash(root), int64(i), tlog.Hash(ref.leaves[i])); err != nil {
			t.Fatalf("tlog.CheckRecord(%d, %d): %v", i, size, err)
		}
	}
	for _, old := range olds {
		if old > size {
			continue
		}
		p, err := l.ConsistencyProof(old, size)
		if err != nil {
			t.Fatalf("ConsistencyProof(%d, %d): %v", old, size, err)
		}
		oldRoot := ref.root(old)
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old, size, hashes(p), oldRoot, root); err != nil {
			t.Fatalf("merkle VerifyConsistency(%d, %d): %v", old, size, err)
		}
		if old > 0 {
			if err := tlog.CheckTree(p, int64(size), tlog.Hash(root), int64(old), tlog.Hash(oldRoot)); err != nil {
				t.Fatalf("tlog.CheckTree(%d, %d): %v", old, size, err)
			}
		}
	}
}

// mustVerify runs VerifyDir and fails on any problem.
func mustVerify(t *testing.T, dir string, k testKey, size uint64) {
	t.Helper()
	rep, err := VerifyDir(dir, k.v)
	if err != nil {
		t.Fatalf("VerifyDir: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("VerifyDir problems: %v", rep.Problems)
	}
	if rep.Size != size {
		t.Fatalf("VerifyDir size %d, want %d", rep.Size, size)
	}
}

func TestFreshLogHasEmptyCheckpoint(t *testing.T) {
	dir := t.TempDir()
	k := newKey(t, "edgevault-audit")
	l := openLog(t, dir, k)
	defer l.Close()
	cp, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 0 || !bytes.Equal(cp.Hash[:], rfc6962.DefaultHasher.EmptyRoot()) || cp.Origin != testOrigin {
		t.Fatalf("fresh checkpoint %+v", cp)
	}
	parsed, err := ParseCheckpoint(cp.Signed, k.v)
	if err != nil || parsed.Size != 0 || parsed.Hash != cp.Hash {
		t.Fatalf("ParseCheckpoint: %+v, %v", parsed, err)
	}
	mustVerify(t, dir, k, 0)
}

func TestAppendProveAcrossTileLevels(t *testing.T) {
	const total = 66_000 // more than one full level-1 tile (65,536 entries)
	dir := t.TempDir()
	k := newKey(t, "edgevault-audit")
	l := openLog(t, dir, k)
	ref := newRef(total)
	var sizes []uint64
	// Integrate at awkward sizes: 1, inside the first tile, exactly at tile
	// boundaries, and past the first level-1 tile.
	for _, stop := range []int{1, 7, 256, 257, 511, 4096, 65_535, 65_536, 65_537, total} {
		appendN(t, l, int(l.Size()), stop, 37)
		cp, err := l.Integrate()
		if err != nil {
			t.Fatalf("Integrate at %d: %v", stop, err)
		}
		if cp.Size != uint64(stop) || !bytes.Equal(cp.Hash[:], ref.root(uint64(stop))) {
			t.Fatalf("checkpoint at %d: size %d root %v, want root %x", stop, cp.Size, cp.Hash, ref.root(uint64(stop)))
		}
		sizes = append(sizes, cp.Size)
	}
	idx := []uint64{0, 1, 255, 256, 257, 4095, 30_000, 65_535, 65_536, total - 1}
	for _, size := range []uint64{1, 2, 256, 257, 511, 65_536, 65_537, 65_999, total} {
		checkProofs(t, l, ref, size, idx, append([]uint64{0, 1, 255, 256, 300, 65_536}, sizes...))
	}
	for _, size := range []uint64{0, 1, 300, 65_536, total} {
		h, err := l.TreeHash(size)
		if err != nil || !bytes.Equal(h[:], ref.root(size)) {
			t.Fatalf("TreeHash(%d) = %v, %v", size, h, err)
		}
	}

	// Leaves and private bytes come back as appended.
	leaves, err := l.Leaves(250, 520)
	if err != nil {
		t.Fatal(err)
	}
	for i, leaf := range leaves {
		if !bytes.Equal(leaf, leafOf(250+i)) {
			t.Fatalf("leaf %d = %q", 250+i, leaf)
		}
	}
	for _, i := range []uint64{0, 255, 256, 65_999} {
		p, err := l.Private(i)
		if err != nil || !bytes.Equal(p, privateOf(int(i))) {
			t.Fatalf("Private(%d) = %q, %v", i, p, err)
		}
	}
	// Out of range requests.
	if _, err := l.InclusionProof(total, total); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("InclusionProof past the end: %v", err)
	}
	if _, err := l.InclusionProof(0, total+1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("InclusionProof past the checkpoint: %v", err)
	}
	if _, err := l.ConsistencyProof(10, 5); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("ConsistencyProof backwards: %v", err)
	}
	if _, err := l.Leaves(0, total+1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Leaves past the checkpoint: %v", err)
	}
	if _, err := l.Private(total); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Private past the end: %v", err)
	}

	// Entry bundles are what a tlog-tiles client expects.
	bundle, err := l.ReadTile("tile/entries/001")
	if err != nil {
		t.Fatal(err)
	}
	got, err := splitBundle(bundle)
	if err != nil || len(got) != 256 || !bytes.Equal(got[0], leafOf(256)) || !bytes.Equal(got[255], leafOf(511)) {
		t.Fatalf("tile/entries/001: %d leaves, %v", len(got), err)
	}
	// Entry 1 of tile/1/000 is the root of the second level-0 tile, which
	// is the root of the tree of entries [256, 512).
	tile, err := l.ReadTile("tile/1/000")
	sub := &refTree{leaves: ref.leaves[256:512]}
	if err != nil || len(tile) != 256*32 || !bytes.Equal(tile[32:64], sub.root(256)) {
		t.Fatalf("tile/1/000: %d bytes, %v", len(tile), err)
	}
	if _, err := l.ReadTile("tile/2/000.p/1"); err != nil {
		t.Fatalf("level-2 partial: %v", err)
	}
	for _, bad := range []string{"tile/0/999", "../private/journal", "tile/0/../../private/journal", "private/journal", "lock", "tile/entries/x000/001"} {
		if _, err := l.ReadTile(bad); !errors.Is(err, ErrNotFound) {
			t.Fatalf("ReadTile(%q): %v, want ErrNotFound", bad, err)
		}
	}
	cpBytes, err := l.ReadTile("checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append([]Entry{{Leaf: []byte("late")}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	mustVerify(t, dir, k, total)
	// Partials of tiles completed before the last checkpoint are removed;
	// those of the current right edge remain.
	for _, gone := range []string{"tile/0/000.p", "tile/entries/000.p", "tile/1/000.p"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still present: %v", gone, err)
		}
	}
	for _, kept := range []string{"tile/0/257.p/208", "tile/entries/257.p/208", "tile/1/001.p/1", "tile/2/000.p/1"} {
		if _, err := os.Stat(filepath.Join(dir, kept)); err != nil {
			t.Errorf("right-edge partial %s: %v", kept, err)
		}
	}

	// Reopen: same state, proofs still good, appends continue.
	l = openLog(t, dir, k)
	defer l.Close()
	cp, _ := l.Checkpoint()
	if !bytes.Equal(cp.Signed, cpBytes) || l.Size() != total {
		t.Fatalf("reopened at %d with checkpoint %q", l.Size(), cp.Signed)
	}
	checkProofs(t, l, ref, total, idx, []uint64{1, 65_536})
	appendN(t, l, total, total+10, 3)
	if cp, err := l.Integrate(); err != nil || cp.Size != total+10 {
		t.Fatalf("Integrate after reopen: %+v, %v", cp, err)
	}
}

func TestTileHashesMatchSumdbLayout(t *testing.T) {
	// The tiles must be exactly what x/mod/sumdb/tlog derives for the same
	// tree (it uses the same tiling, only the paths differ).
	dir := t.TempDir()
	k := newKey(t, "k")
	l := openLog(t, dir, k)
	defer l.Close()
	const n = 66_000
	appendN(t, l, 0, n, 64)
	cp, err := l.Integrate()
	if err != nil {
		t.Fatal(err)
	}
	ref := newRef(n)
	stored := map[int64]tlog.Hash{}
	for i := int64(0); i < n; i++ {
		hs, err := tlog.StoredHashes(i, leafOf(int(i)), tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for j, x := range idx {
				out[j] = stored[x]
			}
			return out, nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		base := tlog.StoredHashIndex(0, i)
		for j, h := range hs {
			stored[base+int64(j)] = h
		}
	}
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for j, x := range idx {
			out[j] = stored[x]
		}
		return out, nil
	})
	for _, tt := range tlog.NewTiles(8, 0, n) {
		want, err := tlog.ReadTileData(tt, hr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.ReadTile(tileID{tt.L, uint64(tt.N), tt.W}.path())
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s differs from sumdb's %s (%v)", tileID{tt.L, uint64(tt.N), tt.W}.path(), tt.Path(), err)
		}
	}
	if h, _ := tlog.TreeHash(n, hr); h != cp.Hash || !bytes.Equal(h[:], ref.root(n)) {
		t.Fatalf("root %v, sumdb %v", cp.Hash, h)
	}
}

func TestCrashRecovery(t *testing.T) {
	k := newKey(t, "edgevault-audit")
	dir := t.TempDir()
	l := openLog(t, dir, k)
	appendN(t, l, 0, 1000, 32)
	if _, err := l.Integrate(); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 1000, 1300, 32) // sequenced, not integrated
	// Simulate a kill: copy the files as they are, without Close.
	crashed := copyDir(t, dir)
	jpath := filepath.Join(crashed, journalName)

	t.Run("unintegrated entries are integrated", func(t *testing.T) {
		d := copyDir(t, crashed)
		l2 := openLog(t, d, k)
		defer l2.Close()
		cp, err := l2.Checkpoint()
		if err != nil || cp.Size != 1300 || l2.Size() != 1300 {
			t.Fatalf("after recovery: checkpoint %+v size %d, %v", cp, l2.Size(), err)
		}
		checkProofs(t, l2, newRef(1300), 1300, []uint64{0, 999, 1000, 1299}, []uint64{1000})
		mustVerify(t, d, k, 1300)
	})

	t.Run("torn tiles beyond the checkpoint are rewritten", func(t *testing.T) {
		d := copyDir(t, crashed)
		// A crash while integrating 1000 → 1300 can leave any of these torn.
		for _, p := range []string{"tile/0/004", "tile/entries/004", "tile/0/005.p/20", "tile/1/000.p/5"} {
			os.MkdirAll(filepath.Dir(filepath.Join(d, p)), 0o755)
			if err := os.WriteFile(filepath.Join(d, p), []byte("torn"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		l2 := openLog(t, d, k)
		checkProofs(t, l2, newRef(1300), 1300, []uint64{0, 1024, 1299}, []uint64{1000})
		l2.Close()
		mustVerify(t, d, k, 1300)
	})

	t.Run("torn tail is cut", func(t *testing.T) {
		d := copyDir(t, crashed)
		st, _ := os.Stat(filepath.Join(d, journalName))
		if err := os.Truncate(filepath.Join(d, journalName), st.Size()-5); err != nil {
			t.Fatal(err)
		}
		l2 := openLog(t, d, k)
		if l2.Size() != 1299 {
			t.Fatalf("size after torn tail %d, want 1299", l2.Size())
		}
		appendN(t, l2, 1299, 1310, 4)
		if err := l2.Close(); err != nil {
			t.Fatal(err)
		}
		mustVerify(t, d, k, 1310)
		l3 := openLog(t, d, k)
		defer l3.Close()
		checkProofs(t, l3, newRef(1310), 1310, []uint64{0, 1298, 1299, 1309}, []uint64{1000, 1299})
	})

	t.Run("garbage tail is cut", func(t *testing.T) {
		d := copyDir(t, crashed)
		f, _ := os.OpenFile(filepath.Join(d, journalName), os.O_WRONLY|os.O_APPEND, 0)
		f.Write(bytes.Repeat([]byte{0xAB}, 100))
		f.Close()
		l2 := openLog(t, d, k)
		defer l2.Close()
		if l2.Size() != 1300 {
			t.Fatalf("size %d, want 1300", l2.Size())
		}
	})

	t.Run("lost index is rebuilt", func(t *testing.T) {
		d := copyDir(t, crashed)
		os.Truncate(filepath.Join(d, indexName), 12)
		l2 := openLog(t, d, k)
		defer l2.Close()
		if p, err := l2.Private(1299); err != nil || !bytes.Equal(p, privateOf(1299)) {
			t.Fatalf("Private after index loss: %q, %v", p, err)
		}
		l2.Close()
		mustVerify(t, d, k, 1300)
	})

	t.Run("checkpoint newer than journal", func(t *testing.T) {
		d := copyDir(t, crashed)
		// Keep ~500 records: the checkpoint covers 1000.
		f, _ := os.Open(jpath)
		jr := newJournalReader(f, 0, 0)
		for i := 0; i < 500; i++ {
			jr.read(true)
		}
		f.Close()
		os.Truncate(filepath.Join(d, journalName), jr.off)
		// And damage one more record: Open must refuse without cutting the
		// journal further.
		data, _ := os.ReadFile(filepath.Join(d, journalName))
		data[len(data)-3] ^= 1
		os.WriteFile(filepath.Join(d, journalName), data, 0o600)
		_, err := Open(Options{Dir: d, Origin: testOrigin, Signer: k.s})
		if st, _ := os.Stat(filepath.Join(d, journalName)); st.Size() != int64(len(data)) {
			t.Errorf("failed Open cut the journal from %d to %d bytes", len(data), st.Size())
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "1000") || !strings.Contains(err.Error(), "499") {
			t.Fatalf("Open with short journal: %v", err)
		}
		rep, err := VerifyDir(d, k.v)
		if err != nil || rep.OK() {
			t.Fatalf("VerifyDir with short journal: %+v, %v", rep, err)
		}
	})

	t.Run("concurrent copy while appending", func(t *testing.T) {
		src := t.TempDir()
		l2 := openLog(t, src, k)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := l2.Append([]Entry{{Leaf: []byte(fmt.Sprint(i)), Private: []byte("p")}}); err != nil {
					t.Error(err)
					return
				}
				if i%500 == 0 {
					l2.Integrate()
				}
			}
		}()
		time.Sleep(50 * time.Millisecond)
		snap := copyDir(t, src)
		close(stop)
		wg.Wait()
		l2.Close()
		l3, err := Open(Options{Dir: snap, Origin: testOrigin, Signer: k.s})
		if err != nil {
			// The copy may catch the checkpoint after the journal: that is the
			// one refusal allowed, and it must say so.
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open of a live copy: %v", err)
			}
			return
		}
		defer l3.Close()
		n := l3.Size()
		cp, _ := l3.Checkpoint()
		if cp.Size != n || n == 0 {
			t.Fatalf("live copy: size %d checkpoint %d", n, cp.Size)
		}
		l3.Close()
		mustVerify(t, snap, k, n)
	})
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil // removed while copying a live log (a stale partial)
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		in, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(filepath.Join(dst, rel))
		if err != nil {
			return err
		}
		defer out.Close()
		_, err = io.Copy(out, in)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestTamperedTiles(t *testing.T) {
	k := newKey(t, "edgevault-audit")
	dir := t.TempDir()
	l := openLog(t, dir, k)
	appendN(t, l, 0, 66_000, 64)
	if _, err := l.Integrate(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	base := dir

	cases := []struct {
		name, tile string
		mutate     func(path string)
		proveIndex uint64
	}{
		{"deleted level-0 tile", "tile/0/005", func(p string) { os.Remove(p) }, 5*256 + 3},
		{"altered level-0 tile", "tile/0/200", flipByte(100), 200*256 + 9},
		{"altered level-1 tile", "tile/1/000", flipByte(32 * 7), 7*256 + 1},
		{"altered partial tile", "tile/0/257.p/208", flipByte(0), 257*256 + 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := copyDir(t, base)
			l := openLog(t, d, k)
			defer l.Close()
			tc.mutate(filepath.Join(d, tc.tile))
			_, err := l.InclusionProof(tc.proveIndex, 66_000)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.tile) {
				t.Fatalf("InclusionProof: %v, want ErrCorrupt naming %s", err, tc.tile)
			}
			rep, err := VerifyDir(d, k.v)
			if err != nil {
				t.Fatal(err)
			}
			if !hasProblem(rep, tc.tile) {
				t.Fatalf("VerifyDir did not name %s: %v", tc.tile, rep.Problems)
			}
		})
	}

	t.Run("altered entry bundle", func(t *testing.T) {
		d := copyDir(t, base)
		p := filepath.Join(d, "tile/entries/000")
		data, _ := os.ReadFile(p)
		data[bytes.Index(data, []byte("leaf 17 "))+5] = '9'
		os.WriteFile(p, data, 0o644)
		rep, err := VerifyDir(d, k.v)
		if err != nil {
			t.Fatal(err)
		}
		if !hasProblem(rep, "entry 17: leaf in tile/entries/000 differs from the journal") {
			t.Fatalf("VerifyDir: %v", rep.Problems)
		}
	})

	t.Run("altered journal record", func(t *testing.T) {
		d := copyDir(t, base)
		p := filepath.Join(d, journalName)
		data, _ := os.ReadFile(p)
		data[bytes.Index(data, []byte("private 40000"))+3] ^= 1
		os.WriteFile(p, data, 0o644)
		rep, err := VerifyDir(d, k.v)
		if err != nil {
			t.Fatal(err)
		}
		if !hasProblem(rep, "checksum") {
			t.Fatalf("VerifyDir: %v", rep.Problems)
		}
		// Open only re-reads the journal's tail; reading the damaged record
		// is where a running log notices.
		l := openLog(t, d, k)
		defer l.Close()
		if _, err := l.Private(40000); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "entry 40000") {
			t.Fatalf("Private of a damaged record: %v", err)
		}
		if _, err := l.Private(39999); err != nil {
			t.Fatalf("Private of an intact record: %v", err)
		}
	})

	t.Run("checkpoint re-signed by another key", func(t *testing.T) {
		d := copyDir(t, base)
		other := newKey(t, "edgevault-audit")
		signed, _ := os.ReadFile(filepath.Join(d, checkpointName))
		cp, err := ParseCheckpoint(signed, k.v)
		if err != nil {
			t.Fatal(err)
		}
		forged, err := note.Sign(&note.Note{Text: checkpointText(cp.Origin, cp.Size, cp.Hash)}, other.s)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, checkpointName), forged, 0o644)
		if _, err := ParseCheckpoint(forged, k.v); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("ParseCheckpoint of forged: %v", err)
		}
		rep, err := VerifyDir(d, k.v)
		if err != nil {
			t.Fatal(err)
		}
		want := "not signed by key " + keyID(k.v.Name(), k.v.KeyHash())
		if !hasProblem(rep, want) || len(rep.Problems) != 1 {
			t.Fatalf("VerifyDir: %v, want only %q", rep.Problems, want)
		}
		if _, err := Open(Options{Dir: d, Origin: testOrigin, Signer: k.s}); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("Open with a checkpoint by another key: %v", err)
		}
	})

	t.Run("open with another signer", func(t *testing.T) {
		d := copyDir(t, base)
		other := newKey(t, "other-key")
		_, err := Open(Options{Dir: d, Origin: testOrigin, Signer: other.s})
		if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "not signed by Options.Signer") ||
			!strings.Contains(err.Error(), keyID(k.v.Name(), k.v.KeyHash())) {
			t.Fatalf("Open with another signer: %v", err)
		}
		if _, err := Open(Options{Dir: d, Origin: "other.example/log", Signer: k.s}); err == nil || !strings.Contains(err.Error(), "origin") {
			t.Fatalf("Open with another origin: %v", err)
		}
	})

	t.Run("second open of a live log", func(t *testing.T) {
		d := copyDir(t, base)
		l := openLog(t, d, k)
		defer l.Close()
		if _, err := Open(Options{Dir: d, Origin: testOrigin, Signer: k.s}); err == nil || !strings.Contains(err.Error(), "lock") {
			t.Fatalf("second Open: %v", err)
		}
	})
}

func flipByte(off int) func(string) {
	return func(p string) {
		data, err := os.ReadFile(p)
		if err != nil {
			panic(err)
		}
		data[off] ^= 0xff
		if err := os.WriteFile(p, data, 0o644); err != nil {
			panic(err)
		}
	}
}

func hasProblem(rep *Report, s string) bool {
	for _, p := range rep.Problems {
		if strings.Contains(p.String(), s) {
			return true
		}
	}
	return false
}

func TestAppendAllOrNothing(t *testing.T) {
	k := newKey(t, "k")
	dir := t.TempDir()
	l := openLog(t, dir, k)
	defer l.Close()
	appendN(t, l, 0, 10, 5)

	_, err := l.Append([]Entry{{Leaf: []byte("ok")}, {Leaf: make([]byte, MaxLeafSize+1)}})
	if !errors.Is(err, ErrOutOfRange) || !strings.Contains(err.Error(), "entry 1") || l.Size() != 10 {
		t.Fatalf("oversized leaf: %v, size %d", err, l.Size())
	}

	// A write failure half way (file size limit → EFBIG, as ENOSPC would)
	// must leave nothing of the batch behind.
	st, _ := os.Stat(filepath.Join(dir, journalName))
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	lim := old
	lim.Cur = uint64(st.Size()) + 1000
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip(err)
	}
	var batch []Entry
	for i := 10; i < 60; i++ {
		batch = append(batch, Entry{Leaf: leafOf(i), Private: bytes.Repeat([]byte("p"), 100)})
	}
	_, err = l.Append(batch)
	syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
	if err == nil || !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("Append over the file size limit: %v", err)
	}
	if l.Size() != 10 {
		t.Fatalf("size after failed append %d", l.Size())
	}
	if st2, _ := os.Stat(filepath.Join(dir, journalName)); st2.Size() != st.Size() {
		t.Fatalf("journal %d bytes after failed append, was %d", st2.Size(), st.Size())
	}
	appendN(t, l, 10, 300, 64)
	if _, err := l.Integrate(); err != nil {
		t.Fatal(err)
	}
	checkProofs(t, l, newRef(300), 300, []uint64{9, 10, 299}, []uint64{10})
	l.Close()
	mustVerify(t, dir, k, 300)
}

func TestConcurrentAppends(t *testing.T) {
	k := newKey(t, "k")
	dir := t.TempDir()
	l, err := Open(Options{Dir: dir, Origin: testOrigin, Signer: k.s, CheckpointInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint64]string{}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				es := []Entry{{Leaf: []byte(fmt.Sprintf("w%d-%d-a", w, i))}, {Leaf: []byte(fmt.Sprintf("w%d-%d-b", w, i))}}
				first, err := l.Append(es)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[first], seen[first+1] = string(es[0].Leaf), string(es[1].Leaf)
				mu.Unlock()
				if i%50 == 0 {
					if cp, err := l.Checkpoint(); err == nil && cp.Size > 0 {
						if _, err := l.InclusionProof(cp.Size-1, cp.Size); err != nil {
							t.Error(err)
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, dir, k, 1600)
	n, _, err := ReadJournal(dir, func(i uint64, leaf, _ []byte) error {
		if seen[i] != string(leaf) {
			return fmt.Errorf("entry %d is %q, Append said %q", i, leaf, seen[i])
		}
		return nil
	})
	if err != nil || n != 1600 {
		t.Fatalf("ReadJournal: %d, %v", n, err)
	}
}

func TestBackgroundIntegration(t *testing.T) {
	k := newKey(t, "k")
	l, err := Open(Options{Dir: t.TempDir(), Origin: testOrigin, Signer: k.s, CheckpointInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 0, 100, 10)
	deadline := time.Now().Add(5 * time.Second)
	for {
		cp, _ := l.Checkpoint()
		if cp.Size == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background integration stuck at %d", cp.Size)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOptionsValidation(t *testing.T) {
	k := newKey(t, "k")
	for _, o := range []Options{
		{Origin: testOrigin, Signer: k.s},
		{Dir: t.TempDir(), Signer: k.s},
		{Dir: t.TempDir(), Origin: "a\nb", Signer: k.s},
		{Dir: t.TempDir(), Origin: testOrigin},
		{Dir: t.TempDir(), Origin: testOrigin, Signer: k.s, CheckpointInterval: -1},
	} {
		if l, err := Open(o); err == nil {
			l.Close()
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
}

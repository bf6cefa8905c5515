package zone

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/edgevault/edgevault/internal/storage"
)

// rawVersions returns how many raw records of zone are under each version.
func rawVersions(t testing.TB, s *Store, zone string) map[uint32]int {
	t.Helper()
	out := map[uint32]int{}
	for k, v := range dump(t, s.st, dataPrefix+zoneID(zone)+"/") {
		ver, err := ParseEnvelope([]byte(v))
		if err != nil {
			t.Fatalf("record %q: %v", k, err)
		}
		out[ver]++
	}
	return out
}

func TestRotateAndRewrap(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	mustCreate(t, s, "z", "")
	b := mustBackend(t, s, "z")
	want := fill(t, b, 600)

	v, err := s.Rotate(ctx, "z")
	if err != nil || v != 2 {
		t.Fatalf("Rotate = %d, %v; want 2", v, err)
	}
	if err := b.Put(ctx, "new", []byte("n")); err != nil {
		t.Fatal(err)
	}
	want["new"] = "n"
	st, err := s.KeyStatus(ctx, "z")
	if err != nil {
		t.Fatal(err)
	}
	if st.ActiveVersion != 2 || st.Records != 601 || st.Remaining != 600 || len(st.Versions) != 2 ||
		st.Versions[0].Records != 600 || st.Versions[1].Records != 1 {
		t.Fatalf("KeyStatus before rewrap = %+v", st)
	}
	if got := s.PendingRewraps(); len(got) != 1 || got[0] != "z" {
		t.Fatalf("PendingRewraps = %v", got)
	}
	checkAll(t, b, want) // both versions readable

	if err := s.Rewrap(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	st, err = s.KeyStatus(ctx, "z")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Versions) != 1 || st.Versions[0].Version != 2 || st.Remaining != 0 || st.Records != 601 ||
		st.Rewrap.Running || st.Rewrap.Rewrapped != 600 {
		t.Fatalf("KeyStatus after rewrap = %+v", st)
	}
	if got := rawVersions(t, s, "z"); len(got) != 1 || got[2] != 601 {
		t.Fatalf("raw versions = %v", got)
	}
	checkAll(t, b, want)
	if len(s.PendingRewraps()) != 0 {
		t.Fatal("rewrap still pending")
	}
	if _, err := s.st.Get(ctx, jobPrefix+"z"); err == nil {
		t.Fatal("checkpoint left behind")
	}
	// Destroyed for good: a new Store has only version 2, and a stale copy
	// of a version-1 record no longer decrypts.
	if _, ok := s.zones["z"].keys.Load().keys[1]; ok {
		t.Fatal("version 1 not destroyed")
	}
}

// TestRewrapConcurrent rotates twice and rewraps while writers and readers
// hammer the zone. Every record must be readable at every moment, no write
// may be lost, and the old versions must end destroyed.
func TestRewrapConcurrent(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	mustCreate(t, s, "z", "")
	b := mustBackend(t, s, "z")
	const n = 1500
	initial := fill(t, b, n)
	allKeys := keys(initial)

	const writers = 4
	finals := make([]map[string]string, writers) // writer w owns keys i%writers == w
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops atomic.Int64
	errs := make(chan error, 16)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for w := range writers {
		finals[w] = map[string]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				idx := r.IntN(n/writers)*writers + w
				k := fmt.Sprintf("rec/%02d/%06d", idx%17, idx)
				if r.IntN(10) == 0 {
					if err := b.Delete(ctx, k); err != nil {
						report(err)
						return
					}
					finals[w][k] = ""
				} else {
					v := fmt.Sprintf("w%d-%d-%s", w, i, k)
					if err := b.Put(ctx, k, []byte(v)); err != nil {
						report(err)
						return
					}
					finals[w][k] = v
				}
				ops.Add(1)
			}
		}()
	}
	for rd := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(rd), 2))
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := allKeys[r.IntN(len(allKeys))]
				v, err := b.Get(ctx, k)
				if err != nil && !errors.Is(err, errNotFoundStorage) {
					report(fmt.Errorf("read %q: %w", k, err))
					return
				}
				if err == nil && !strings.HasSuffix(string(v), k) {
					report(fmt.Errorf("read %q: wrong value %q", k, v))
					return
				}
				ops.Add(1)
			}
		}()
	}

	for round := range 2 {
		if _, err := s.Rotate(ctx, "z"); err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			if err := s.Rewrap(ctx, "z"); err != nil {
				t.Fatalf("round %d: Rewrap: %v", round, err)
			}
			continue
		}
		if err := s.StartRewrap(ctx, "z"); err != nil {
			t.Fatal(err)
		}
		s.WaitRewraps()
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	t.Logf("%d concurrent operations during rewrap", ops.Load())

	want := initial
	for _, f := range finals {
		for k, v := range f {
			if v == "" {
				delete(want, k)
			} else {
				want[k] = v
			}
		}
	}
	checkAll(t, b, want)
	st, err := s.KeyStatus(ctx, "z")
	if err != nil {
		t.Fatal(err)
	}
	if st.ActiveVersion != 3 || len(st.Versions) != 1 || st.Remaining != 0 || st.Records != uint64(len(want)) {
		t.Fatalf("KeyStatus = %+v", st)
	}
	if got := rawVersions(t, s, "z"); len(got) != 1 || got[3] != len(want) {
		t.Fatalf("raw versions = %v", got)
	}
}

// TestRewrapResume interrupts a rewrap with a storage fault (as a crash
// would), reopens the store over the same storage, and resumes.
func TestRewrapResume(t *testing.T) {
	ctx := context.Background()
	root := newRoot(t)
	mem := newMem()
	s := openStore(t, mem, root)
	mustCreate(t, s, "z", "")
	b := mustBackend(t, s, "z")
	const n = 2000
	want := fill(t, b, n)
	if _, err := s.Rotate(ctx, "z"); err != nil {
		t.Fatal(err)
	}

	faulty := &faultyBackend{Backend: mem, failPrefix: dataPrefix}
	// The fault hits the batch that would pass 700 records.
	done := 700 / rewrapBatch * rewrapBatch
	faulty.budget.Store(700)
	s1 := openStore(t, faulty, root)
	if err := s1.Rewrap(ctx, "z"); !errors.Is(err, errInjected) {
		t.Fatalf("interrupted Rewrap = %v, want injected fault", err)
	}
	// Mid-way: every record still decrypts (with a fresh store, as after a
	// restart), some under each version.
	s2 := openStore(t, mem, root)
	b2 := mustBackend(t, s2, "z")
	checkAll(t, b2, want)
	mid := rawVersions(t, s2, "z")
	if mid[1] != n-done || mid[2] != done {
		t.Fatalf("after interruption raw versions = %v, want %d under version 2", mid, done)
	}
	st, err := s2.KeyStatus(ctx, "z")
	if err != nil {
		t.Fatal(err)
	}
	if st.Rewrap.Running || st.Rewrap.Target != 2 || st.Rewrap.Rewrapped != uint64(done) || st.Remaining != uint64(n-done) {
		t.Fatalf("KeyStatus after interruption = %+v", st)
	}
	if got := s2.PendingRewraps(); len(got) != 1 {
		t.Fatalf("PendingRewraps after restart = %v", got)
	}

	// Resume: records before the checkpoint are not rewritten again.
	counting := &faultyBackend{Backend: mem, failPrefix: dataPrefix}
	counting.budget.Store(1 << 40)
	s3 := openStore(t, counting, root)
	if err := s3.Rewrap(ctx, "z"); err != nil {
		t.Fatalf("resumed Rewrap: %v", err)
	}
	if w := counting.writes.Load(); w != int64(n-done) {
		t.Errorf("resumed rewrap wrote %d records, want %d", w, n-done)
	}
	checkAll(t, mustBackend(t, s3, "z"), want)
	if got := rawVersions(t, s3, "z"); len(got) != 1 || got[2] != n {
		t.Fatalf("raw versions after resume = %v", got)
	}
	st, err = s3.KeyStatus(ctx, "z")
	if err != nil {
		t.Fatal(err)
	}
	// Records rewrapped after the last checkpoint before the fault are
	// found already done on resume and not counted again.
	if len(st.Versions) != 1 || st.Rewrap.Rewrapped != n {
		t.Fatalf("KeyStatus after resume = %+v", st)
	}
}

// TestRewrapStopsOnUndecryptable checks that a corrupt record stops the
// rewrap with an error, and its version is kept.
func TestRewrapStopsOnUndecryptable(t *testing.T) {
	s, st, _ := newStore(t)
	ctx := context.Background()
	b := mustBackend(t, s, "")
	fill(t, b, 10)
	raw := dataPrefix + rootID + "/rec/03/000003"
	v, _ := st.Get(ctx, raw)
	v[len(v)-1] ^= 1
	_ = st.Put(ctx, raw, v)
	if _, err := s.Rotate(ctx, ""); err != nil {
		t.Fatal(err)
	}
	err := s.Rewrap(ctx, "")
	if !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "rec/03/000003") {
		t.Fatalf("Rewrap = %v, want ErrDecrypt naming the record", err)
	}
	if len(s.zones[""].keys.Load().keys) != 2 {
		t.Fatal("old version destroyed despite a record under it")
	}
}

// TestRootRewrapOnlyKEKs rotates the root: only key documents change.
func TestRootRewrapOnlyKEKs(t *testing.T) {
	s, st, oldRoot := newStore(t)
	ctx := context.Background()
	for _, z := range []string{"a", "b", "c"} {
		mustCreate(t, s, z, "")
		fill(t, mustBackend(t, s, z), 50)
	}
	want := fill(t, mustBackend(t, s, ""), 50)
	dataBefore := dump(t, st, dataPrefix)
	keysBefore := dump(t, st, keysPrefix)

	newR := newRoot(t)
	if err := s.RewrapKEKs(ctx, newRoot(t), newR); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("RewrapKEKs with wrong old root = %v, want ErrDecrypt", err)
	}
	wantSame(t, keysBefore, dump(t, st, keysPrefix), "failed RewrapKEKs")

	if err := s.RewrapKEKs(ctx, oldRoot, newR); err != nil {
		t.Fatal(err)
	}
	wantSame(t, dataBefore, dump(t, st, dataPrefix), "records after root rotation")
	keysAfter := dump(t, st, keysPrefix)
	for k := range keysBefore {
		if keysAfter[k] == keysBefore[k] {
			t.Errorf("key document %q not rewrapped", k)
		}
	}
	if _, err := Open(ctx, Config{Storage: st, Root: oldRoot}); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Open with old root after rotation = %v, want ErrDecrypt", err)
	}
	s2 := openStore(t, st, newR)
	checkAll(t, mustBackend(t, s2, ""), want)
	// The live store keeps working, and later zones use the new root.
	mustCreate(t, s, "d", "")
	if _, err := s.RotateKEK(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	s3 := openStore(t, st, newR)
	if _, err := s3.Backend("d"); err != nil {
		t.Fatal(err)
	}
}

func TestRotateKEK(t *testing.T) {
	s, st, root := newStore(t)
	ctx := context.Background()
	mustCreate(t, s, "z", "")
	want := fill(t, mustBackend(t, s, "z"), 20)
	if _, err := s.Rotate(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	dataBefore := dump(t, st, dataPrefix)
	v, err := s.RotateKEK(ctx, "z")
	if err != nil || v != 2 {
		t.Fatalf("RotateKEK = %d, %v", v, err)
	}
	wantSame(t, dataBefore, dump(t, st, dataPrefix), "records after KEK rotation")
	s2 := openStore(t, st, root)
	ks, err := s2.KeyStatus(ctx, "z")
	if err != nil || ks.KEKVersion != 2 || len(ks.Versions) != 2 {
		t.Fatalf("KeyStatus = %+v, %v", ks, err)
	}
	checkAll(t, mustBackend(t, s2, "z"), want)
}

func TestRewrapUnknownZone(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	for name, err := range map[string]error{
		"Rotate":      func() error { _, err := s.Rotate(ctx, "nope"); return err }(),
		"Rewrap":      s.Rewrap(ctx, "nope"),
		"KeyStatus":   func() error { _, err := s.KeyStatus(ctx, "nope"); return err }(),
		"RotateKEK":   func() error { _, err := s.RotateKEK(ctx, "nope"); return err }(),
		"StartRewrap": s.StartRewrap(ctx, "nope"),
	} {
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
			t.Errorf("%s(nope) = %v, want ErrNotFound naming it", name, err)
		}
	}
}

// hookBackend runs onGet (once) before the first Get of a key under prefix.
type hookBackend struct {
	storage.Backend
	prefix string
	once   sync.Once
	onGet  func()
}

func (h *hookBackend) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, h.prefix) {
		h.once.Do(h.onGet)
	}
	return h.Backend.Get(ctx, key)
}

// TestGetRacesRotate makes a Rotate and a write under the new version
// happen between Get's key snapshot and its physical read: Get must retry
// with the new snapshot rather than report an unknown version.
func TestGetRacesRotate(t *testing.T) {
	ctx := context.Background()
	h := &hookBackend{Backend: newMem(), prefix: dataPrefix + "z/"}
	s := openStore(t, h, newRoot(t))
	mustCreate(t, s, "z", "")
	b := mustBackend(t, s, "z")
	h.onGet = func() {
		if _, err := s.Rotate(ctx, "z"); err != nil {
			t.Error(err)
		}
		if err := b.Put(ctx, "k", []byte("new")); err != nil {
			t.Error(err)
		}
	}
	if err := b.Put(ctx, "k", []byte("old")); err != nil {
		t.Fatal(err)
	}
	v, err := b.Get(ctx, "k")
	if err != nil || string(v) != "new" {
		t.Fatalf("Get = %q, %v; want the value written under version 2", v, err)
	}
}

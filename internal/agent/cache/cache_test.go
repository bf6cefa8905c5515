package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func TestRoundTrip(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	if _, err := c.Get("app/db", 0); !errors.Is(err, ErrNotCached) {
		t.Fatalf("empty cache: %v", err)
	}
	deleted := upsert("app/db", 1, time.Hour)
	deleted.Metadata = json.RawMessage(`{"created_time":"2026-11-26T11:00:00Z","deletion_time":"2026-11-26T11:30:00.5Z","destroyed":false,"custom_metadata":{"owner":"ops"},"version":1}`)
	mustApply(t, c, 1, deleted, upsert("app/db", 2, time.Hour), upsert("app/web", 1, 2*time.Hour))

	got := mustGet(t, c, "app/db", 0, 2)
	if got.Path != "app/db" || got.MaxStale != time.Hour || !got.SyncedAt.Equal(e.clock.Now()) || got.Age != 0 || got.Destroyed || !got.DeletionTime.IsZero() {
		t.Fatalf("entry: %+v", got)
	}
	if !strings.Contains(string(got.Metadata), `"version":2`) {
		t.Fatalf("metadata: %s", got.Metadata)
	}
	v1 := mustGet(t, c, "app/db", 1, 1)
	if want := time.Date(2026, 11, 26, 11, 30, 0, 5e8, time.UTC); !v1.DeletionTime.Equal(want) {
		t.Fatalf("deletion time %v, want %v", v1.DeletionTime, want)
	}
	if _, err := c.Get("app/db", 3); !errors.Is(err, ErrNotCached) {
		t.Fatalf("missing version: %v", err)
	}
	if _, err := c.Get("app/db", -1); !errors.Is(err, ErrNotCached) {
		t.Fatalf("negative version: %v", err)
	}
	info, err := c.Metadata("app/db")
	if err != nil {
		t.Fatal(err)
	}
	if info.CurrentVersion != 2 || len(info.Versions) != 2 || info.Versions[0].Version != 1 || info.Versions[1].Version != 2 || info.Versions[0].DeletionTime.IsZero() {
		t.Fatalf("metadata: %+v", info)
	}

	// An older version written later does not move the current pointer; a
	// destroyed version is returned with its flag.
	destroyed := upsert("app/db", 1, time.Hour)
	destroyed.Data = json.RawMessage(`null`)
	destroyed.Metadata = json.RawMessage(`{"destroyed":true,"version":1}`)
	mustApply(t, c, 2, destroyed)
	if e, err := c.Get("app/db", 1); err != nil || !e.Destroyed || string(e.Data) != "null" {
		t.Fatalf("destroyed: %+v %v", e, err)
	}
	mustGet(t, c, "app/db", 0, 2)

	st := c.Stats()
	if st.Paths != 2 || st.Entries != 3 || st.Watermark != 2 || st.Dropped != 0 || st.Bytes <= 0 {
		t.Fatalf("stats: %+v", st)
	}
	// The caller's buffers are not retained.
	op := upsert("app/x", 1, time.Hour)
	mustApply(t, c, 3, op)
	op.Data[2] = 'X'
	mustGet(t, c, "app/x", 0, 1)
}

func TestGetDoesNotAllocate(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	mustApply(t, c, 1, upsert("app/db", 1, time.Hour))
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.Get("app/db", 0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Get allocates %v times", allocs)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	for i := 1; i <= 20; i++ {
		mustApply(t, c, uint64(i*10), upsert(fmt.Sprintf("app/s%d", i%7), i, time.Duration(i)*time.Hour))
	}
	mustApply(t, c, 300, Op{Kind: OpDeleteVersion, Path: "app/s1", Version: 8}, Op{Kind: OpDelete, Path: "app/s2"},
		Op{Kind: OpSetMaxStale, Path: "app/s3", MaxStale: 5 * time.Minute})
	e.clock.Advance(time.Minute)
	if err := c.MarkSynced(e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	before := c.Stats()
	snapshot := map[string]PathInfo{}
	for i := range 7 {
		p := fmt.Sprintf("app/s%d", i)
		if info, err := c.Metadata(p); err == nil {
			snapshot[p] = info
		}
	}

	c = e.reopen(c)
	after := c.Stats()
	if before != after {
		t.Fatalf("stats changed across restart:\n before %+v\n after  %+v", before, after)
	}
	if after.Watermark != 300 || after.Dropped != 0 || after.Paths != 6 {
		t.Fatalf("after restart: %+v", after)
	}
	for p, want := range snapshot {
		got, err := c.Metadata(p)
		if err != nil {
			t.Fatal(err)
		}
		if got.CurrentVersion != want.CurrentVersion || got.MaxStale != want.MaxStale || !got.SyncedAt.Equal(want.SyncedAt) || len(got.Versions) != len(want.Versions) {
			t.Fatalf("%s: got %+v, want %+v", p, got, want)
		}
		for _, v := range got.Versions {
			mustGet(t, c, p, v.Version, v.Version)
		}
	}
	if _, err := c.Get("app/s1", 8); !errors.Is(err, ErrNotCached) {
		t.Fatalf("deleted version after restart: %v", err)
	}
	if _, err := c.Get("app/s2", 0); !errors.Is(err, ErrNotCached) {
		t.Fatalf("deleted path after restart: %v", err)
	}
}

func TestWatermarkAtomicWithOps(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	mustApply(t, c, 1, upsert("a", 1, time.Hour), upsert("b", 1, time.Hour))

	// A batch failing half-way inside its transaction leaves nothing: not
	// the ops before the failure, not the watermark, not the memory index.
	boom := errors.New("disk on fire")
	c.testHookOp = func(i int) error {
		if i == 2 {
			return boom
		}
		return nil
	}
	err := c.Apply(2, []Op{upsert("a", 2, time.Hour), {Kind: OpDelete, Path: "b"}, upsert("c", 1, time.Hour)})
	if !errors.Is(err, boom) {
		t.Fatalf("apply: %v", err)
	}
	c.testHookOp = nil
	check := func(c *Cache) {
		t.Helper()
		if w := c.Watermark(); w != 1 {
			t.Fatalf("watermark %d after a failed batch", w)
		}
		mustGet(t, c, "a", 0, 1)
		mustGet(t, c, "b", 0, 1)
		if _, err := c.Get("c", 0); !errors.Is(err, ErrNotCached) {
			t.Fatalf("c: %v", err)
		}
	}
	check(c)
	c = e.reopen(c)
	check(c)
	if c.Stats().Dropped != 0 {
		t.Fatal("a failed batch left records that do not authenticate")
	}

	// An invalid op refuses the whole batch before anything is written.
	err = c.Apply(2, []Op{upsert("a", 2, time.Hour), {Kind: OpUpsert, Path: "d", Version: 1, Data: json.RawMessage(`{`), Metadata: json.RawMessage(`{}`), MaxStale: time.Hour}})
	wantErr(t, err, ErrInvalidOp)
	if !strings.Contains(err.Error(), "op 1") {
		t.Fatalf("error does not name the op: %v", err)
	}
	check(c)

	// The same seq then applies, and the watermark is on disk with it.
	mustApply(t, c, 2, upsert("a", 2, time.Hour))
	c = e.reopen(c)
	if c.Watermark() != 2 {
		t.Fatalf("watermark %d", c.Watermark())
	}
	mustGet(t, c, "a", 0, 2)
}

func TestReplayIsNoOp(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	mustApply(t, c, 5, upsert("a", 1, time.Hour))
	for _, seq := range []uint64{0, 3, 5} {
		err := c.Apply(seq, []Op{{Kind: OpDelete, Path: "a"}, upsert("b", 1, time.Hour)})
		wantErr(t, err, ErrAlreadyApplied)
	}
	mustGet(t, c, "a", 0, 1)
	if _, err := c.Get("b", 0); !errors.Is(err, ErrNotCached) {
		t.Fatalf("replayed batch applied: %v", err)
	}
	if c.Watermark() != 5 {
		t.Fatal("watermark moved")
	}
	// Gaps are fine; an empty batch only moves the watermark.
	mustApply(t, c, 9)
	if c.Watermark() != 9 {
		t.Fatal("empty batch did not move the watermark")
	}
}

func TestInvalidOps(t *testing.T) {
	good := upsert("p", 1, time.Hour)
	tests := map[string]func(op *Op){
		"zero kind":         func(op *Op) { op.Kind = 0 },
		"unknown kind":      func(op *Op) { op.Kind = 99 },
		"empty path":        func(op *Op) { op.Path = "" },
		"NUL in path":       func(op *Op) { op.Path = "a\x00b" },
		"bad utf8 path":     func(op *Op) { op.Path = "a\xff" },
		"long path":         func(op *Op) { op.Path = strings.Repeat("a", MaxPathLen+1) },
		"version 0":         func(op *Op) { op.Version = 0 },
		"version too big":   func(op *Op) { op.Version = maxVersion + 1 },
		"max_stale 0":       func(op *Op) { op.MaxStale = 0 },
		"bad data":          func(op *Op) { op.Data = json.RawMessage(`{"a":`) },
		"empty data":        func(op *Op) { op.Data = nil },
		"metadata array":    func(op *Op) { op.Metadata = json.RawMessage(`[1]`) },
		"metadata trailing": func(op *Op) { op.Metadata = json.RawMessage(`{} {}`) },
		"metadata types":    func(op *Op) { op.Metadata = json.RawMessage(`{"destroyed":"yes"}`) },
		"metadata version":  func(op *Op) { op.Metadata = json.RawMessage(`{"version":7}`) },
		"deletion_time":     func(op *Op) { op.Metadata = json.RawMessage(`{"deletion_time":"yesterday"}`) },
		"created_time":      func(op *Op) { op.Metadata = json.RawMessage(`{"created_time":"1"}`) },
		"purge NUL":         func(op *Op) { *op = Op{Kind: OpPurgePrefix, Path: "\x00"} },
		"set max_stale 0":   func(op *Op) { *op = Op{Kind: OpSetMaxStale, Path: "p"} },
		"delete version 0":  func(op *Op) { *op = Op{Kind: OpDeleteVersion, Path: "p"} },
	}
	e := newEnv(t)
	c := e.open()
	mustApply(t, c, 1, good)
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			op := upsert("p", 2, time.Hour)
			mutate(&op)
			wantErr(t, c.Apply(2, []Op{upsert("q", 1, time.Hour), op}), ErrInvalidOp)
			if c.Watermark() != 1 {
				t.Fatal("watermark moved")
			}
			if _, err := c.Get("q", 0); !errors.Is(err, ErrNotCached) {
				t.Fatal("part of a refused batch was applied")
			}
		})
	}
}

func TestStaleness(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	mustApply(t, c, 1, upsert("short", 1, 10*time.Minute), upsert("long", 1, 24*time.Hour))

	e.clock.Advance(5 * time.Minute)
	if got := mustGet(t, c, "short", 0, 1); got.Age != 5*time.Minute {
		t.Fatalf("age %v", got.Age)
	}
	e.clock.Advance(5 * time.Minute) // exactly max_stale: still served
	mustGet(t, c, "short", 0, 1)
	e.clock.Advance(time.Second)
	_, err := c.Get("short", 0)
	wantErr(t, err, ErrTooStale)
	if !strings.Contains(err.Error(), "10m0s") {
		t.Fatalf("error does not say the max_stale: %v", err)
	}
	_, err = c.Metadata("short")
	wantErr(t, err, ErrTooStale)
	mustGet(t, c, "long", 0, 1)

	// A heartbeat confirming the cache is current refreshes every entry.
	if err := c.MarkSynced(e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, c, "short", 0, 1); got.Age != 0 || !got.SyncedAt.Equal(e.clock.Now()) {
		t.Fatalf("after MarkSynced: %+v", got)
	}
	// An older mark does not move the sync time back.
	if err := c.MarkSynced(e.clock.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(11 * time.Minute)
	wantErr(t, getErr(c, "short"), ErrTooStale)

	// SetMaxStale counts as a sync of that path; it survives a restart.
	mustApply(t, c, 2, Op{Kind: OpSetMaxStale, Path: "short", MaxStale: time.Hour}, Op{Kind: OpSetMaxStale, Path: "absent", MaxStale: time.Hour})
	c = e.reopen(c)
	e.clock.Advance(59 * time.Minute)
	mustGet(t, c, "short", 0, 1)
	e.clock.Advance(2 * time.Minute)
	wantErr(t, getErr(c, "short"), ErrTooStale)
	if _, err := c.Metadata("absent"); !errors.Is(err, ErrNotCached) {
		t.Fatalf("set max_stale created a path: %v", err)
	}

	// A clock that goes backwards gives age 0, not a negative age.
	e.clock.Advance(-48 * time.Hour)
	if got := mustGet(t, c, "short", 0, 1); got.Age != 0 {
		t.Fatalf("age %v", got.Age)
	}
}

func getErr(c *Cache, path string) error {
	_, err := c.Get(path, 0)
	return err
}

func TestPurgePrefix(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	mustApply(t, c, 1, upsert("app/a", 1, time.Hour), upsert("app/a", 2, time.Hour), upsert("app/b/c", 1, time.Hour),
		upsert("apple", 1, time.Hour), upsert("other/x", 1, time.Hour))
	// A purge also removes what the same batch wrote before it, and not
	// what it writes after.
	mustApply(t, c, 2, upsert("app/new", 1, time.Hour), Op{Kind: OpPurgePrefix, Path: "app/"}, upsert("app/after", 1, time.Hour))
	check := func(c *Cache) {
		t.Helper()
		for _, p := range []string{"app/a", "app/b/c", "app/new"} {
			if _, err := c.Get(p, 0); !errors.Is(err, ErrNotCached) {
				t.Fatalf("%s after purge: %v", p, err)
			}
		}
		mustGet(t, c, "apple", 0, 1)
		mustGet(t, c, "other/x", 0, 1)
		mustGet(t, c, "app/after", 0, 1)
		if st := c.Stats(); st.Paths != 3 || st.Entries != 3 {
			t.Fatalf("stats %+v", st)
		}
	}
	check(c)
	c = e.reopen(c)
	check(c)
	if c.Stats().Dropped != 0 {
		t.Fatal("dropped records after purge")
	}
	mustApply(t, c, 3, Op{Kind: OpPurgePrefix, Path: ""})
	if st := c.Stats(); st.Paths != 0 || st.Entries != 0 || st.Bytes != 0 {
		t.Fatalf("after purging everything: %+v", st)
	}
}

func TestReset(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	mustApply(t, c, 7, upsert("a", 1, time.Hour), upsert("b", 1, time.Hour))
	if err := c.MarkSynced(e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	check := func(c *Cache) {
		t.Helper()
		if st := c.Stats(); st.Paths != 0 || st.Entries != 0 || st.Watermark != 0 || !st.SyncedAt.IsZero() {
			t.Fatalf("after reset: %+v", st)
		}
		wantErr(t, getErr(c, "a"), ErrNotCached)
	}
	check(c)
	c = e.reopen(c)
	check(c)
	if c.Stats().Dropped != 0 {
		t.Fatal("reset left a file that does not verify")
	}
	mustApply(t, c, 1, upsert("a", 3, time.Hour))
	mustGet(t, c, "a", 0, 3)
}

func TestClosed(t *testing.T) {
	e := newEnv(t)
	c, err := Open(e.file, e.kp, e.opts())
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, c, 1, upsert("a", 1, time.Hour))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	wantErr(t, getErr(c, "a"), ErrClosed)
	_, err = c.Metadata("a")
	wantErr(t, err, ErrClosed)
	wantErr(t, c.Apply(2, nil), ErrClosed)
	wantErr(t, c.Reset(), ErrClosed)
	wantErr(t, c.MarkSynced(time.Now()), ErrClosed)
	checkFile(t, e.file)
}

func TestOpenErrors(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	mustApply(t, c, 1, upsert("a", 1, time.Hour))

	// A second opener of a locked file gives up after LockTimeout.
	_, err := Open(e.file, e.kp, Options{Zone: e.zone, LockTimeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("locked file: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Open(e.file, e.kp, Options{Zone: "edge-2"})
	wantErr(t, err, ErrZoneMismatch)
	if _, err := Open("", e.kp, Options{}); err == nil {
		t.Fatal("empty path accepted")
	}
	if _, err := Open(e.file, nil, Options{}); err == nil {
		t.Fatal("nil protector accepted")
	}
	if _, err := Open(e.file, e.kp, Options{LockTimeout: -1}); err == nil {
		t.Fatal("negative timeout accepted")
	}
	if _, err := Open(e.file, e.kp, Options{Zone: "Edge_1"}); err == nil || !strings.Contains(err.Error(), "Zone") {
		t.Fatalf("bad zone name: %v", err)
	}
}

func TestConcurrentGetDuringApply(t *testing.T) {
	e := newEnv(t)
	e.clock = nil
	c, err := Open(e.file, e.kp, Options{Zone: e.zone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	const batches = 100
	mustApply(t, c, 1, upsert("x", 1, time.Hour), upsert("y", 1, time.Hour))

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				// Each batch writes x and y at the same version, and batches
				// publish whole: y read after x is never older than x.
				ex, err := c.Get("x", 0)
				if err != nil {
					errs <- err
					return
				}
				ey, err := c.Get("y", 0)
				if err != nil {
					errs <- err
					return
				}
				if ey.Version < ex.Version || string(ex.Data) != wantData("x", ex.Version) {
					errs <- fmt.Errorf("saw x v%d then y v%d: a batch was published in part", ex.Version, ey.Version)
					return
				}
				if _, err := c.Get("gone", 0); !errors.Is(err, ErrNotCached) {
					errs <- fmt.Errorf("gone: %v", err)
					return
				}
				_ = c.Stats()
				// Spinning readers would starve the writer of the 2 CPUs
				// (each fsync return waits a scheduler slice); yield.
				runtime.Gosched()
			}
		})
	}
	for i := 2; i <= batches; i++ {
		mustApply(t, c, uint64(i), upsert("x", i, time.Hour), upsert("gone", 1, time.Hour), upsert("y", i, time.Hour),
			Op{Kind: OpDelete, Path: "gone"}, Op{Kind: OpDeleteVersion, Path: "x", Version: i - 1}, Op{Kind: OpDeleteVersion, Path: "y", Version: i - 1})
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Entries != 2 || st.Watermark != batches {
		t.Fatalf("stats %+v", st)
	}
}

// Release reopens the file between writes: reads go on, later writes land,
// and a reopen finds everything.
func TestRelease(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	mustApply(t, c, 1, upsert("app/a", 1, time.Hour))
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	mustGet(t, c, "app/a", 0, 1)
	mustApply(t, c, 2, upsert("app/b", 1, time.Hour))
	c = e.reopen(c)
	mustGet(t, c, "app/a", 0, 1)
	mustGet(t, c, "app/b", 0, 1)
	if c.Watermark() != 2 {
		t.Fatalf("watermark %d", c.Watermark())
	}
	c.Close()
	if err := c.Release(); !errors.Is(err, ErrClosed) {
		t.Fatalf("release after close: %v", err)
	}
}

// A version kept on disk is not in the memory index, reads back whole
// (also after a reopen), and a record altered at rest is not served.
func TestOnDisk(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	op := upsert("meta", 1, time.Hour)
	op.OnDisk = true
	mustApply(t, c, 1, op, upsert("data", 1, time.Hour))
	mustGet(t, c, "meta", 0, 1)
	mustGet(t, c, "data", 0, 1)
	inMemory := func(c *Cache, path string) bool {
		c.mu.RLock()
		defer c.mu.RUnlock()
		return c.paths[path].versions[0].data != nil
	}
	if inMemory(c, "meta") || !inMemory(c, "data") {
		t.Fatalf("on-disk version in memory: %v; in-memory version absent: %v", inMemory(c, "meta"), !inMemory(c, "data"))
	}
	c = e.reopen(c)
	mustGet(t, c, "meta", 0, 1)
	if inMemory(c, "meta") {
		t.Fatal("on-disk version loaded into memory at open")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	editFile(t, e.file, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketVersions)
		k := versionKey("meta", 1)
		v := bytes.Clone(b.Get(k))
		v[len(v)/2] ^= 0x01
		return b.Put(k, v)
	})
	c = e.open()
	wantErr(t, getErr(c, "meta"), ErrTampered)
	mustGet(t, c, "data", 0, 1)
}

package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// openCommitter returns a committer on a fresh file whose goroutine is not
// running, so a test can hand it exact batches.
func openCommitter(t *testing.T) (*committer, *bbolt.DB) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket(bucketName)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	o, _ := Options{}.withDefaults()
	return newCommitter(db, o), db
}

func put(key, value string) *request {
	return newRequest([]storage.Op{{Kind: storage.OpPut, Key: key, Value: []byte(value)}})
}

func has(t *testing.T, db *bbolt.DB, key string) bool {
	t.Helper()
	var ok bool
	if err := db.View(func(tx *bbolt.Tx) error {
		ok = tx.Bucket(bucketName).Get([]byte(key)) != nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestCommitRetriesAlone puts a request that bbolt refuses (an empty key,
// which validation would normally stop) in the middle of a batch: the
// shared transaction fails, and the retry must commit the others, each
// atomically, and fail only the bad one.
func TestCommitRetriesAlone(t *testing.T) {
	c, db := openCommitter(t)
	good1 := put("a", "1")
	bad := newRequest([]storage.Op{
		{Kind: storage.OpPut, Key: "bad-first-op", Value: []byte("x")},
		{Kind: storage.OpPut, Key: "", Value: []byte("x")},
	})
	good2 := newRequest([]storage.Op{
		{Kind: storage.OpPut, Key: "b", Value: []byte("2")},
		{Kind: storage.OpPut, Key: "c", Value: []byte("3")},
	})
	c.commit([]*request{good1, bad, good2})

	if err := <-good1.done; err != nil {
		t.Errorf("good request 1 failed: %v", err)
	}
	if err := <-good2.done; err != nil {
		t.Errorf("good request 2 failed: %v", err)
	}
	if err := <-bad.done; !errors.Is(err, berrors.ErrKeyRequired) {
		t.Errorf("bad request: %v, want bbolt's ErrKeyRequired", err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if !has(t, db, k) {
			t.Errorf("%q missing after retry", k)
		}
	}
	if has(t, db, "bad-first-op") {
		t.Error("first op of the failed request was applied: request not atomic")
	}
	if s := (Stats{Commits: c.commits.Load(), Requests: c.requests.Load()}); s.Commits != 2 || s.Requests != 2 {
		t.Errorf("stats %+v, want 2 commits of 1 request after the failed group", s)
	}
}

// TestCommitSkipsAbandoned checks that a request withdrawn by its caller is
// never applied, and that one taken by the committer can no longer be.
func TestCommitSkipsAbandoned(t *testing.T) {
	c, db := openCommitter(t)
	kept, dropped := put("kept", "1"), put("dropped", "1")
	if !dropped.abandon() {
		t.Fatal("abandon of a queued request failed")
	}
	c.commit([]*request{kept, dropped})
	if err := <-kept.done; err != nil {
		t.Fatal(err)
	}
	if kept.abandon() {
		t.Error("a committed request could still be abandoned")
	}
	if has(t, db, "dropped") {
		t.Error("abandoned request was applied")
	}
	select {
	case err := <-dropped.done:
		t.Errorf("abandoned request got a result %v; its caller has gone", err)
	default:
	}
	if !has(t, db, "kept") {
		t.Error("kept request missing")
	}
}

// TestNextRespectsMaxBatch checks the queue hands out at most maxBatch
// requests at a time, in arrival order.
func TestNextRespectsMaxBatch(t *testing.T) {
	c, _ := openCommitter(t)
	c.maxBatch = 3
	var all []*request
	for range 7 {
		r := put("k", "v")
		all = append(all, r)
		if err := c.enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	var got []*request
	for _, want := range []int{3, 3, 1, 0} {
		batch, _ := c.next()
		if len(batch) != want {
			t.Fatalf("batch of %d, want %d", len(batch), want)
		}
		got = append(got, batch...)
	}
	for i := range all {
		if got[i] != all[i] {
			t.Fatalf("request %d handed out out of order", i)
		}
	}
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	if err := c.enqueue(put("late", "v")); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("enqueue after stop: %v, want ErrClosed", err)
	}
}

// TestCancelQueuedVsTaken holds bbolt's write lock so the committer is stuck
// in a transaction with request A while request B waits in the queue. Both
// callers' contexts are canceled: B must return context.Canceled at once and
// never be applied; A must keep waiting and then return its commit's result.
func TestCancelQueuedVsTaken(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Hold the write lock.
	locked, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	unlock := func() { releaseOnce.Do(func() { close(release) }) }
	defer b.Close()
	defer unlock() // before Close, which waits for the committer
	holderDone := make(chan error, 1)
	go func() {
		holderDone <- b.db.Update(func(*bbolt.Tx) error {
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked

	queueLen := func() int {
		b.c.mu.Lock()
		defer b.c.mu.Unlock()
		return len(b.c.queue)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}

	ctxA, cancelA := context.WithCancel(t.Context())
	ctxB, cancelB := context.WithCancel(t.Context())
	resA, resB := make(chan error, 1), make(chan error, 1)
	go func() { resA <- b.Put(ctxA, "A", []byte("a")) }()
	waitFor("the committer took A", func() bool { return b.c.taken.Load() == 1 })
	go func() { resB <- b.Put(ctxB, "B", []byte("b")) }()
	waitFor("B is queued", func() bool { return queueLen() == 1 })

	cancelA()
	cancelB()
	select {
	case err := <-resB:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("queued B returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("canceled B did not return while the committer was busy")
	}
	select {
	case err := <-resA:
		t.Fatalf("A returned %v before its transaction could commit", err)
	case <-time.After(50 * time.Millisecond):
	}

	unlock()
	if err := <-holderDone; err != nil {
		t.Fatal(err)
	}
	if err := <-resA; err != nil {
		t.Fatalf("taken A returned %v after its commit, want nil", err)
	}
	if _, err := b.Get(t.Context(), "A"); err != nil {
		t.Fatalf("A not applied: %v", err)
	}
	if _, err := b.Get(t.Context(), "B"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("canceled B was applied: %v", err)
	}
}

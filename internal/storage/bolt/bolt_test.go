package bolt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
	"github.com/edgevault/edgevault/internal/storage/storagetest"
	"go.etcd.io/bbolt"
)

// openTest opens a backend on a new file in t.TempDir. At cleanup it closes
// the backend and runs bbolt's consistency check over the file.
func openTest(t testing.TB, opts bolt.Options) *bolt.Backend {
	t.Helper()
	path := filepath.Join(t.TempDir(), "edgevault.db")
	b, err := bolt.Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		checkFile(t, path)
	})
	return b
}

// checkFile runs bbolt's page-level consistency check (tx.Check) on a closed
// database file, as bbolt's own tests do after each test.
func checkFile(t testing.TB, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Errorf("reopen %s for check: %v", path, err)
		return
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Errorf("bbolt consistency check of %s: %v", path, err)
	}
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return openTest(t, bolt.Options{})
	})
}

func TestConformanceMaxBatch1(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return openTest(t, bolt.Options{MaxBatch: 1})
	})
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "db")
	b, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := range 200 {
		k, v := fmt.Sprintf("r/%03d", i), strings.Repeat(fmt.Sprint(i), 50)
		if err := b.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	for i := range 50 {
		k := fmt.Sprintf("r/%03d", i*2)
		if err := b.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		delete(want, k)
	}
	if err := b.Txn(ctx, []storage.Op{
		{Kind: storage.OpPut, Key: "t/a", Value: []byte("A")},
		{Kind: storage.OpDelete, Key: "r/001"},
	}); err != nil {
		t.Fatal(err)
	}
	want["t/a"] = "A"
	delete(want, "r/001")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path)

	if fi, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %v, want 0600", perm)
	}

	b2, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer b2.Close()
	for k, v := range want {
		got, err := b2.Get(ctx, k)
		if err != nil || string(got) != v {
			t.Fatalf("after reopen Get(%q) = %q, %v; want %q", k, got, err, v)
		}
	}
	names, err := b2.List(ctx, "r/")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(want)-1 { // all but t/a are under r/
		t.Fatalf("after reopen List(r/) has %d names, want %d", len(names), len(want)-1)
	}
	if _, err := b2.Get(ctx, "r/000"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted key after reopen: %v, want ErrNotFound", err)
	}
	// The reopened file takes writes.
	if err := b2.Put(ctx, "after", []byte("reopen")); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "garbage")
	if err := os.WriteFile(notDB, bytes.Repeat([]byte("not a bolt file "), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		path string
		opts bolt.Options
		want string
	}{
		{"empty path", "", bolt.Options{}, "path is empty"},
		{"negative MaxBatch", filepath.Join(dir, "a"), bolt.Options{MaxBatch: -1}, "MaxBatch"},
		{"negative LockTimeout", filepath.Join(dir, "b"), bolt.Options{LockTimeout: -time.Second}, "LockTimeout"},
		{"not a database", notDB, bolt.Options{}, "invalid"},
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "db"), bolt.Options{}, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := bolt.Open(tc.path, tc.opts)
			if err == nil {
				b.Close()
				t.Fatalf("Open succeeded, want an error mentioning %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	b, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// flock is per open file description, so a second Open in the same
	// process contends like another process would.
	start := time.Now()
	b2, err := bolt.Open(path, bolt.Options{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		b2.Close()
		t.Fatal("second Open of a held file succeeded")
	}
	if !strings.Contains(err.Error(), "locked") {
		t.Errorf("error %q does not say the file is locked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open took %v despite LockTimeout", d)
	}
}

func TestInvalidOp(t *testing.T) {
	b := openTest(t, bolt.Options{})
	err := b.Txn(t.Context(), []storage.Op{
		{Kind: storage.OpPut, Key: "ok", Value: []byte("v")},
		{Kind: 9, Key: "k"},
	})
	if !errors.Is(err, bolt.ErrInvalidOp) || !strings.Contains(err.Error(), "op 1") {
		t.Fatalf("Txn with bad kind: %v, want ErrInvalidOp naming op 1", err)
	}
	if _, err := b.Get(t.Context(), "ok"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("first op of a refused Txn was applied: %v", err)
	}
	if s := b.Stats(); s.Requests != 0 {
		t.Fatalf("a refused Txn reached the committer: %+v", s)
	}
}

func TestErrorsDoNotLeakKeys(t *testing.T) {
	b := openTest(t, bolt.Options{})
	secret := "sys/token/id/evs.SUPERSECRET"
	long := secret + strings.Repeat("x", storage.MaxKeyLen)
	for _, key := range []string{long, secret + "\x00"} {
		err := b.Put(t.Context(), key, []byte("v"))
		if !errors.Is(err, storage.ErrInvalidKey) {
			t.Fatalf("Put: %v, want ErrInvalidKey", err)
		}
		if strings.Contains(err.Error(), "SUPERSECRET") {
			t.Fatalf("error repeats the key: %q", err)
		}
	}
}

// TestConcurrentWritersBatch runs 64 writers at once and checks that every
// write is there and that writes shared commits (fewer fsyncs than writes).
func TestConcurrentWritersBatch(t *testing.T) {
	const (
		writers = 64
		each    = 25
	)
	b := openTest(t, bolt.Options{})
	ctx := t.Context()
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	start := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			<-start
			for i := range each {
				k := fmt.Sprintf("w/%02d/%02d", w, i)
				if err := b.Put(ctx, k, []byte(k)); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for w := range writers {
		for i := range each {
			k := fmt.Sprintf("w/%02d/%02d", w, i)
			got, err := b.Get(ctx, k)
			if err != nil || string(got) != k {
				t.Fatalf("Get(%q) = %q, %v", k, got, err)
			}
		}
	}
	s := b.Stats()
	t.Logf("%d requests in %d commits (%.1f per fsync)", s.Requests, s.Commits, float64(s.Requests)/float64(s.Commits))
	if s.Requests != writers*each {
		t.Fatalf("Stats.Requests = %d, want %d", s.Requests, writers*each)
	}
	if s.Commits >= s.Requests {
		t.Fatalf("no group commit: %d commits for %d requests", s.Commits, s.Requests)
	}
}

// TestMaxBatch checks that no commit holds more than MaxBatch requests:
// with MaxBatch 1 every request is its own commit.
func TestMaxBatch(t *testing.T) {
	b := openTest(t, bolt.Options{MaxBatch: 1})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 5 {
				if err := b.Put(t.Context(), fmt.Sprintf("%d/%d", w, i), nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if s := b.Stats(); s.Commits != 80 || s.Requests != 80 {
		t.Fatalf("Stats = %+v, want 80 commits of one request", s)
	}
}

// TestCloseDrainsQueue closes while writers are in flight: every write that
// returned nil must be in the file, every other one must have returned
// ErrClosed.
func TestCloseDrainsQueue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	b, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked []string
	)
	for w := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				k := fmt.Sprintf("%02d/%04d", w, i)
				err := b.Put(ctx, k, []byte("v"))
				if errors.Is(err, storage.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Put: %v", err)
					return
				}
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged before Close")
	}
	checkFile(t, path)
	b2, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	for _, k := range acked {
		if _, err := b2.Get(ctx, k); err != nil {
			t.Fatalf("acknowledged write %q lost: %v", k, err)
		}
	}
}

// TestCanceledContext checks that a write whose context is already done
// is refused without being queued or applied.
func TestCanceledContext(t *testing.T) {
	b := openTest(t, bolt.Options{})
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Put(done, "never", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with canceled context: %v", err)
	}
	if _, err := b.Get(t.Context(), "never"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("write with canceled context was applied: %v", err)
	}
	if _, err := b.Get(done, "never"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with canceled context: %v", err)
	}
	if s := b.Stats(); s.Requests != 0 {
		t.Fatalf("canceled write reached the committer: %+v", s)
	}
}

func TestConcurrentReadsDuringWrites(t *testing.T) {
	b := openTest(t, bolt.Options{})
	ctx := t.Context()
	if err := b.Put(ctx, "stable", []byte("s")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if err := b.Put(ctx, fmt.Sprintf("x/%d/%d", w, i), make([]byte, 1024)); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			for range 200 {
				v, err := b.Get(ctx, "stable")
				if err != nil || string(v) != "s" {
					t.Errorf("Get(stable) = %q, %v", v, err)
					return
				}
				if _, err := b.List(ctx, "x/"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

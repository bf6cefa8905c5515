package zone

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

func newRoot(t testing.TB) *AESRoot {
	t.Helper()
	k := make([]byte, KeySize)
	_, _ = rand.Read(k)
	r, err := NewAESRoot(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func openStore(t testing.TB, st storage.Backend, root RootWrapper) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{Storage: st, Root: root})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func newStore(t testing.TB) (*Store, *inmem.Backend, *AESRoot) {
	t.Helper()
	st := inmem.New()
	root := newRoot(t)
	return openStore(t, st, root), st, root
}

func mustCreate(t testing.TB, s *Store, name, parent string) {
	t.Helper()
	if _, err := s.Create(context.Background(), Zone{Name: name, Parent: parent}); err != nil {
		t.Fatalf("Create(%q): %v", name, err)
	}
}

func mustBackend(t testing.TB, s *Store, name string) *Backend {
	t.Helper()
	b, err := s.Backend(name)
	if err != nil {
		t.Fatalf("Backend(%q): %v", name, err)
	}
	return b
}

// dump returns every key/value under prefix in b.
func dump(t testing.TB, b storage.Backend, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var rec func(p string)
	rec = func(p string) {
		names, err := b.List(context.Background(), p)
		if err != nil {
			t.Fatalf("List(%q): %v", p, err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, "/") {
				rec(p + n)
				continue
			}
			v, err := b.Get(context.Background(), p+n)
			if err != nil {
				t.Fatalf("Get(%q): %v", p+n, err)
			}
			out[p+n] = string(v)
		}
	}
	rec(prefix)
	return out
}

func wantSame(t testing.TB, before, after map[string]string, what string) {
	t.Helper()
	if !maps.Equal(before, after) {
		t.Fatalf("%s: storage changed (%d keys before, %d after)", what, len(before), len(after))
	}
}

// faultyBackend fails every write (Put, or Txn as a whole) that would take
// the number of writes to keys under failPrefix past budget, simulating a
// crash mid-rewrap. writes counts attempted writes under failPrefix.
type faultyBackend struct {
	storage.Backend
	failPrefix string
	budget     atomic.Int64
	writes     atomic.Int64
}

var _ storage.Backend = (*faultyBackend)(nil)

var errInjected = errors.New("injected fault")

func (f *faultyBackend) check(key string) error {
	if !strings.HasPrefix(key, f.failPrefix) {
		return nil
	}
	f.writes.Add(1)
	if f.budget.Add(-1) < 0 {
		return errInjected
	}
	return nil
}

// Txn fails as a whole when its writes under failPrefix exceed the budget.
func (f *faultyBackend) Txn(ctx context.Context, ops []storage.Op) error {
	var n int64
	for _, op := range ops {
		if strings.HasPrefix(op.Key, f.failPrefix) {
			n++
		}
	}
	f.writes.Add(n)
	if f.budget.Add(-n) < 0 {
		return errInjected
	}
	return f.Backend.Txn(ctx, ops)
}

func (f *faultyBackend) Put(ctx context.Context, key string, value []byte) error {
	if err := f.check(key); err != nil {
		return err
	}
	return f.Backend.Put(ctx, key, value)
}

// fill writes n records "rec/<dir>/<i>" into b and returns their values.
func fill(t testing.TB, b storage.Backend, n int) map[string]string {
	t.Helper()
	want := make(map[string]string, n)
	for i := range n {
		k := fmt.Sprintf("rec/%02d/%06d", i%17, i)
		v := "value-" + k
		if err := b.Put(context.Background(), k, []byte(v)); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
		want[k] = v
	}
	return want
}

// checkAll reads every wanted record through b, and checks no other record
// exists.
func checkAll(t testing.TB, b *Backend, want map[string]string) {
	t.Helper()
	got := dump(t, b, "")
	if len(got) != len(want) {
		t.Fatalf("zone holds %d records, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("record %q = %q, want %q", k, got[k], v)
		}
	}
}

type storageOp = storage.Op

const (
	opPut    = storage.OpPut
	opDelete = storage.OpDelete
)

var errNotFoundStorage = storage.ErrNotFound

func newMem() *inmem.Backend { return inmem.New() }

var fixedTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

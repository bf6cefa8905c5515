package barrier

import (
	"context"
	"crypto/rand"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

func randKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// newUnsealed returns an initialized, unsealed barrier over a fresh inmem
// backend, the backend, and the root key.
func newUnsealed(t testing.TB) (*Barrier, *inmem.Backend, []byte) {
	t.Helper()
	phys := inmem.New()
	b := New(phys)
	key := randKey(t)
	if err := b.Initialize(context.Background(), key); err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	if err := b.Unseal(context.Background(), key); err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	return b, phys, key
}

// dumpPhysical returns every key/value in a backend, walking List.
func dumpPhysical(t testing.TB, b storage.Backend) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix string)
	walk = func(prefix string) {
		names, err := b.List(context.Background(), prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		for _, n := range names {
			if n[len(n)-1] == '/' {
				walk(prefix + n)
				continue
			}
			v, err := b.Get(context.Background(), prefix+n)
			if err != nil {
				t.Fatalf("Get(%q): %v", prefix+n, err)
			}
			out[prefix+n] = string(v)
		}
	}
	walk("")
	return out
}

var errInjected = errors.New("injected fault")

// faultyBackend is a real inmem backend whose writes can be made to fail:
// while failWrites is set, all of them; otherwise the next failNext ones.
type faultyBackend struct {
	*inmem.Backend
	failWrites atomic.Bool
	failNext   atomic.Int32
}

func (f *faultyBackend) fail() bool {
	if f.failWrites.Load() {
		return true
	}
	return f.failNext.Add(-1) >= 0
}

var _ storage.Backend = (*faultyBackend)(nil)

func (f *faultyBackend) Put(ctx context.Context, key string, value []byte) error {
	if f.fail() {
		return errInjected
	}
	return f.Backend.Put(ctx, key, value)
}

func (f *faultyBackend) Txn(ctx context.Context, ops []storage.Op) error {
	if f.fail() {
		return errInjected
	}
	return f.Backend.Txn(ctx, ops)
}

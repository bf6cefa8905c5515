package token

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// failingBackend wraps inmem and fails transactions once armed: the next
// `allow` transactions succeed, the ones after fail without applying.
type failingBackend struct {
	*inmem.Backend
	mu    sync.Mutex
	armed bool
	allow int
}

var _ storage.Backend = (*failingBackend)(nil)

var errInjected = errors.New("injected storage failure")

func (f *failingBackend) arm(allow int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed, f.allow = true, allow
}

func (f *failingBackend) disarm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = false
}

func (f *failingBackend) Txn(ctx context.Context, ops []storage.Op) error {
	f.mu.Lock()
	fail := f.armed && f.allow <= 0
	if f.armed {
		f.allow--
	}
	f.mu.Unlock()
	if fail {
		return errInjected
	}
	return f.Backend.Txn(ctx, ops)
}

func (f *failingBackend) Put(ctx context.Context, key string, value []byte) error {
	return f.Txn(ctx, []storage.Op{{Kind: storage.OpPut, Key: key, Value: value}})
}

func (f *failingBackend) Delete(ctx context.Context, key string) error {
	return f.Txn(ctx, []storage.Op{{Kind: storage.OpDelete, Key: key}})
}

// TestRevokeInterruptedIsResumable fails a large tree's revocation part-way
// (as a crash would stop it): the tokens left still form a tree under the
// revoked token, which stays valid, and revoking again finishes.
func TestRevokeInterruptedIsResumable(t *testing.T) {
	fb := &failingBackend{Backend: inmem.New()}
	h := newHarness(t)
	h.b = fb.Backend
	h.s = NewStore(fb, Options{Clock: h.clock.Now})
	ctx := context.Background()
	root, err := h.s.CreateRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h.root = root
	top := h.create(root, map[string]any{"policies": "a"})
	var kids []string
	for range 2*revokeBatch + 10 {
		kids = append(kids, h.create(top.ClientToken, map[string]any{}).ClientToken)
	}
	grand := h.create(kids[0], map[string]any{}).ClientToken

	fb.arm(1) // the first batch goes through, the second fails
	if err := h.s.Revoke(ctx, top.ClientToken); !errors.Is(err, errInjected) {
		t.Fatalf("revoke = %v, want the injected failure", err)
	}
	if !h.alive(top.ClientToken) {
		t.Fatal("interrupted revocation removed the top token first")
	}
	alive := 0
	for _, k := range kids {
		if h.alive(k) {
			alive++
		}
	}
	if alive == 0 || alive == len(kids) {
		t.Fatalf("%d of %d children alive; want a partial revocation", alive, len(kids))
	}
	h.checkInvariants() // what remains is a consistent tree

	fb.disarm()
	if err := h.s.Revoke(ctx, top.ClientToken); err != nil {
		t.Fatal(err)
	}
	for _, k := range append(kids, top.ClientToken, grand) {
		if h.alive(k) {
			t.Fatal("token alive after the resumed revocation")
		}
	}
}

func TestFailedWritesChangeNothing(t *testing.T) {
	fb := &failingBackend{Backend: inmem.New()}
	h := newHarness(t)
	h.b = fb.Backend
	h.s = NewStore(fb, Options{Clock: h.clock.Now})
	ctx := context.Background()
	root, err := h.s.CreateRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h.root = root
	user := h.create(root, map[string]any{"policies": "a", "ttl": "1h", "num_uses": 3})
	ue, _ := h.s.Lookup(ctx, user.ClientToken)

	fb.arm(0)
	before := snapshot(t, fb.Backend)
	steps := map[string]func() error{
		"create": func() error {
			_, err := h.do(root, logical.UpdateOperation, "create", map[string]any{"policies": "a"})
			return err
		},
		"renew": func() error {
			_, err := h.do(root, logical.UpdateOperation, "renew", map[string]any{"token": user.ClientToken})
			return err
		},
		"use":           func() error { return h.s.UseToken(ctx, ue) },
		"revoke":        func() error { return h.s.Revoke(ctx, user.ClientToken) },
		"revoke-orphan": func() error { return h.s.RevokeOrphan(ctx, user.ClientToken) },
	}
	for name, step := range steps {
		if err := step(); !errors.Is(err, errInjected) {
			t.Errorf("%s: %v, want the injected failure", name, err)
		}
		if !sameStorage(before, snapshot(t, fb.Backend)) {
			t.Errorf("failed %s changed storage", name)
		}
	}
	fb.disarm()
	e, err := h.s.Lookup(ctx, user.ClientToken)
	if err != nil || e.NumUses() != 3 {
		t.Errorf("after failures: %v, %v", e, err)
	}
}

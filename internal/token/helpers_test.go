package token

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/clocktest"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// fakeClock is a settable clock.
type fakeClock = clocktest.Clock

type harness struct {
	t     *testing.T
	b     *inmem.Backend
	s     *Store
	clock *fakeClock
	root  string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	b := inmem.New()
	clock := clocktest.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	s := NewStore(b, Options{Clock: clock.Now})
	root, err := s.CreateRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, b: b, s: s, clock: clock, root: root}
	t.Cleanup(h.checkInvariants)
	return h
}

// do runs one request as the given client token.
func (h *harness) do(token string, op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	h.t.Helper()
	return h.s.HandleRequest(context.Background(), &logical.Request{
		Operation:   op,
		Path:        path,
		MountPoint:  "auth/token/",
		Data:        data,
		ClientToken: token,
	})
}

// create creates a token as parent and fails the test on error.
func (h *harness) create(parent string, data map[string]any) *logical.Auth {
	h.t.Helper()
	resp, err := h.do(parent, logical.UpdateOperation, "create", data)
	if err != nil {
		h.t.Fatalf("create %v: %v", data, err)
	}
	if resp == nil || resp.Auth == nil {
		h.t.Fatalf("create: no auth in response %+v", resp)
	}
	return resp.Auth
}

func (h *harness) alive(id string) bool {
	h.t.Helper()
	_, err := h.s.Lookup(context.Background(), id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		h.t.Fatalf("lookup: %v", err)
	}
	return err == nil
}

// dump returns every key and value of the backend.
func dump(t *testing.T, b storage.Backend) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	var walk func(prefix string)
	walk = func(prefix string) {
		names, err := b.List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, "/") {
				walk(prefix + n)
				continue
			}
			v, err := b.Get(context.Background(), prefix+n)
			if err != nil {
				t.Fatal(err)
			}
			out[prefix+n] = v
		}
	}
	walk("")
	return out
}

// checkInvariants verifies the storage layout: every index entry points at
// an existing token and every token is indexed, unless its parent is gone
// (left for Tidy).
func (h *harness) checkInvariants() {
	t := h.t
	all := dump(t, h.b)
	k, err := h.s.hashKeys(context.Background(), false)
	if err != nil {
		t.Fatalf("invariants: %v", err)
	}
	tokens := map[string]record{}
	for key, v := range all {
		if hash, ok := strings.CutPrefix(key, keyID); ok {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				t.Fatalf("invariants: %s: %v", key, err)
			}
			tokens[hash] = r
		}
	}
	for hash, r := range tokens {
		acc, ok := all[keyAccessor+k.accessorHash(r.Accessor)]
		if !ok || string(acc) != hash {
			t.Errorf("invariants: token %s: accessor index missing or wrong", hash[:8])
		}
		if r.Parent != "" {
			if _, ok := all[childKey(r.Parent, hash)]; !ok {
				t.Errorf("invariants: token %s: missing from its parent's children index", hash[:8])
			}
		}
	}
	for key, v := range all {
		switch {
		case strings.HasPrefix(key, keyAccessor):
			if _, ok := tokens[string(v)]; !ok {
				t.Errorf("invariants: stale accessor index %s", key)
			}
		case strings.HasPrefix(key, keyParent):
			rest := strings.TrimPrefix(key, keyParent)
			p, c, _ := strings.Cut(rest, "/")
			if r, ok := tokens[c]; !ok || r.Parent != p {
				t.Errorf("invariants: stale children index %s", key)
			}
		case key == keySalt, strings.HasPrefix(key, keyID):
		default:
			t.Errorf("invariants: unexpected key %s", key)
		}
	}
}

// snapshot copies the backend's contents, to compare before and after a
// failed request.
func snapshot(t *testing.T, b storage.Backend) map[string][]byte { return dump(t, b) }

func sameStorage(a, b map[string][]byte) bool {
	return maps.EqualFunc(a, b, bytes.Equal)
}

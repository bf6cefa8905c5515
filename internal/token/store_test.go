package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/clocktest"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

func TestLookupBeforeAnyToken(t *testing.T) {
	b := inmem.New()
	s := NewStore(b, Options{})
	if _, err := s.Lookup(context.Background(), "evs.x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup on empty store: %v", err)
	}
	if keys := dump(t, b); len(keys) != 0 {
		t.Errorf("lookup wrote %v", keys)
	}
	for _, id := range []string{"", strings.Repeat("x", 10000)} {
		if _, err := s.Lookup(context.Background(), id); !errors.Is(err, ErrNotFound) {
			t.Errorf("lookup(%d bytes): %v", len(id), err)
		}
	}
}

func TestSaltSurvivesRestart(t *testing.T) {
	b := inmem.New()
	ctx := context.Background()
	id, err := NewStore(b, Options{}).CreateRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(b, Options{}).Lookup(ctx, id); err != nil {
		t.Fatalf("lookup from a restarted store: %v", err)
	}
}

func TestCacheNeverServesRevokedOrStale(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a := h.create(h.root, map[string]any{"policies": "a", "ttl": "1h"})
	if !h.alive(a.ClientToken) || h.s.cache.len() == 0 {
		t.Fatal("expected a cached entry")
	}
	if _, err := h.do(h.root, logical.UpdateOperation, "renew", map[string]any{"token": a.ClientToken, "increment": "3h"}); err != nil {
		t.Fatal(err)
	}
	e, _ := h.s.Lookup(ctx, a.ClientToken)
	if e.TTL(h.clock.Now()) != 3*time.Hour {
		t.Errorf("cache served the pre-renewal entry: ttl %v", e.TTL(h.clock.Now()))
	}
	if err := h.s.Revoke(ctx, a.ClientToken); err != nil {
		t.Fatal(err)
	}
	if h.alive(a.ClientToken) {
		t.Error("cache served a revoked token")
	}
}

func TestCacheBounded(t *testing.T) {
	b := inmem.New()
	s := NewStore(b, Options{CacheSize: 4})
	ctx := context.Background()
	var ids []string
	for range 10 {
		c, err := s.Create(ctx, CreateOptions{Policies: []string{"a"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	for _, id := range ids {
		if _, err := s.Lookup(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.cache.len(); n > 4 {
		t.Errorf("cache holds %d entries, bound 4", n)
	}
	off := NewStore(b, Options{CacheSize: -1})
	if _, err := off.Lookup(ctx, ids[0]); err != nil || off.cache.len() != 0 {
		t.Errorf("disabled cache: %v, %d entries", err, off.cache.len())
	}
}

// TestConcurrentRevokeAndLookup races lookups (which fill the cache) against
// revocations: once Revoke has returned, no lookup may succeed.
func TestConcurrentRevokeAndLookup(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for round := range 20 {
		a := h.create(h.root, map[string]any{"policies": "a"})
		kids := make([]string, 5)
		for i := range kids {
			kids[i] = h.create(a.ClientToken, map[string]any{}).ClientToken
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, id := range append(kids, a.ClientToken) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
						_, _ = h.s.Lookup(ctx, id)
					}
				}
			}()
		}
		// Concurrent children creation under the token being revoked.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				_, _ = h.do(a.ClientToken, logical.UpdateOperation, "create", nil)
			}
		}()
		if err := h.s.Revoke(ctx, a.ClientToken); err != nil {
			t.Fatal(err)
		}
		for _, id := range append(kids, a.ClientToken) {
			if h.alive(id) {
				t.Fatalf("round %d: token alive after its tree was revoked", round)
			}
		}
		close(stop)
		wg.Wait()
	}
	// Children created during a revocation may dangle; Tidy removes them so
	// the storage invariants hold at cleanup.
	if _, err := h.s.Tidy(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentUseIsCounted(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a := h.create(h.root, map[string]any{"policies": "a", "num_uses": 50})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 80 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := h.s.Lookup(ctx, a.ClientToken)
			if err != nil {
				return
			}
			if _, err := h.s.Use(ctx, e); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 50 {
		t.Errorf("%d successful uses of a 50-use token", ok)
	}
}

func TestRunTidiesPeriodically(t *testing.T) {
	b := inmem.New()
	clock := clocktest.New(time.Unix(1e9, 0))
	s := NewStore(b, Options{Clock: clock.Now, TidyInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := s.Create(ctx, CreateOptions{Policies: []string{"a"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	clock.Advance(time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := b.Get(ctx, keyID+c.Entry.Hash()); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not tidy the expired token")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
}

func TestRandomString(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s, err := randomString(strings.NewReader(strings.Repeat("\xff\x00\x3d\x3e", 100)), 24)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range s {
			if !strings.ContainsRune(base62, c) {
				t.Fatalf("non-base62 %q", c)
			}
		}
		seen[s] = true
	}
	if _, err := randomString(strings.NewReader("short"), 24); err == nil {
		t.Error("short random source accepted")
	}
	if _, err := NewStore(inmem.New(), Options{Random: strings.NewReader("")}).CreateRoot(context.Background()); err == nil {
		t.Error("create with a failing random source succeeded")
	}
}

// FuzzParseCreateRequest feeds arbitrary JSON bodies to the create decoder:
// it must never panic, must fail only with ErrInvalidRequest, and what it
// accepts must be within bounds.
func FuzzParseCreateRequest(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"policies":["web","stage"],"meta":{"user":"armon"},"ttl":"1h","renewable":true}`,
		`{"id":"","policies":"a,b","display_name":"","num_uses":0,"type":"","entity_alias":""}`,
		`{"ttl":3600,"explicit_max_ttl":"2h","period":"30m","no_parent":true,"no_default_policy":"true"}`,
		`{"lease":"90s","num_uses":"3","type":"service"}`,
		`{"type":"batch"}`,
		`{"ttl":-5}`,
		`{"num_uses":1.5}`,
		`{"meta":{"a":1}}`,
		`{"policies":[null]}`,
		`{"id":"a.b"}`,
		`{"unknown":1}`,
		`{"display_name":"my app!! name"}`,
		`{"renewable":2}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var data map[string]any
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.UseNumber()
		if err := dec.Decode(&data); err != nil {
			return
		}
		r, err := parseCreateRequest(data)
		if err != nil {
			if !errors.Is(err, logical.ErrInvalidRequest) {
				t.Fatalf("error not ErrInvalidRequest: %v", err)
			}
			return
		}
		if r.NumUses < 0 || r.TTL < 0 || r.ExplicitMaxTTL < 0 || r.Period < 0 {
			t.Fatalf("negative value accepted: %+v", r)
		}
		if strings.Contains(r.ID, ".") || len(r.ID) > maxCustomIDLen {
			t.Fatalf("bad id accepted: %q", r.ID)
		}
		if !strings.HasPrefix(r.DisplayName, "token") {
			t.Fatalf("display name %q", r.DisplayName)
		}
		if len(r.Policies) > maxPolicies {
			t.Fatalf("%d policies", len(r.Policies))
		}
	})
}

// BenchmarkLookup measures the per-request token lookup: an HMAC plus, with
// the cache, map reads for the token and its parent (the root token).
func BenchmarkLookup(b *testing.B) {
	for _, size := range []int{DefaultCacheSize, -1} {
		name := "cached"
		if size < 0 {
			name = "uncached"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			s := NewStore(inmem.New(), Options{CacheSize: size})
			root, err := s.CreateRoot(ctx)
			if err != nil {
				b.Fatal(err)
			}
			rootEntry, _ := s.Lookup(ctx, root)
			ids := make([]string, 1000)
			for i := range ids {
				c, err := s.Create(ctx, CreateOptions{Parent: rootEntry, Policies: []string{fmt.Sprintf("p%d", i)}})
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = c.ID
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := s.Lookup(ctx, ids[i%len(ids)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		})
	}
}

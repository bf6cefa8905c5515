package lease

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// errDown is what testRevoker returns when told to fail.
var errDown = errors.New("engine down")

// testRevoker is a test fixture implementing Revoker and Renewer: it
// records every call and fails while fail is set.
type testRevoker struct {
	mu       sync.Mutex
	fail     bool
	failRen  bool
	revoked  map[string]int         // id -> successful calls
	attempts map[string][]time.Time // id -> all Revoke call times
	renewed  map[string]time.Time   // id -> last newExpire
}

var (
	_ Revoker = (*testRevoker)(nil)
	_ Renewer = (*testRevoker)(nil)
)

func newTestRevoker() *testRevoker {
	return &testRevoker{revoked: map[string]int{}, attempts: map[string][]time.Time{}, renewed: map[string]time.Time{}}
}

func (r *testRevoker) Revoke(_ context.Context, l Lease) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[l.ID] = append(r.attempts[l.ID], time.Now())
	if r.fail {
		return errDown
	}
	r.revoked[l.ID]++
	return nil
}

func (r *testRevoker) Renew(_ context.Context, l Lease, newExpire time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failRen {
		return errDown
	}
	r.renewed[l.ID] = newExpire
	return nil
}

func (r *testRevoker) setFail(v bool) { r.mu.Lock(); r.fail = v; r.mu.Unlock() }

func (r *testRevoker) revokedCount(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revoked[id]
}

func (r *testRevoker) totalRevoked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.revoked {
		n += c
	}
	return n
}

func (r *testRevoker) attemptTimes(id string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.attempts[id]...)
}

// backends runs fn against a fresh bbolt file and a fresh in-memory store.
func backends(t *testing.T, fn func(t *testing.T, st storage.Backend)) {
	t.Run("bolt", func(t *testing.T) { fn(t, openBolt(t, filepath.Join(t.TempDir(), "zone.db"))) })
	t.Run("inmem", func(t *testing.T) {
		st := inmem.New()
		t.Cleanup(func() { st.Close() })
		fn(t, st)
	})
}

func openBolt(t testing.TB, path string) *bolt.Backend {
	t.Helper()
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newManager builds a Manager over st whose every path is served by r,
// with fast retries; it is stopped and checked at cleanup.
func newManager(t testing.TB, st storage.Backend, r Revoker, start bool) *Manager {
	t.Helper()
	m, err := New(Config{
		Store:    storage.NewView(st, "sys/expire/"),
		Zone:     "z1",
		Revokers: MountTable(map[string]Revoker{"database/": r, "pki/": r}),
		RetryMin: 20 * time.Millisecond,
		RetryMax: 80 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if start {
		if err := m.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		m.Stop()
		checkInvariants(t, m)
	})
	return m
}

// checkInvariants runs Tidy, which must find nothing to repair: every
// lease has exactly its index keys and every index key its lease.
func checkInvariants(t testing.TB, m *Manager) {
	t.Helper()
	rep, err := m.Tidy(context.Background())
	if err != nil {
		t.Errorf("invariants: tidy: %v", err)
		return
	}
	if rep.MissingDue != 0 || rep.StaleIndex != 0 || rep.Corrupt != 0 {
		t.Errorf("invariants: tidy had to repair: %+v", rep)
	}
}

func register(t testing.TB, m *Manager, path string, ttl time.Duration, mod ...func(*Lease)) Lease {
	t.Helper()
	l := Lease{Path: path, TTL: ttl, MaxTTL: time.Hour, Renewable: true, Data: []byte(`{"username":"u1"}`)}
	for _, f := range mod {
		f(&l)
	}
	got, err := m.Register(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

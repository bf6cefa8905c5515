package revoke

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
)

// openBolt opens a real bbolt backend in a temp dir and returns a view on
// it as the store would get, plus the path so a test can reopen it.
func openBolt(t testing.TB) (storage.Backend, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	return reopenBolt(t, path), path
}

func reopenBolt(t testing.TB, path string) storage.Backend {
	t.Helper()
	b, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return storage.NewView(b, "sys/events/")
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clock is a controllable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestStore(t testing.TB, b storage.Backend) *Store {
	t.Helper()
	c, err := NewCompiler(0)
	if err != nil {
		t.Fatal(err)
	}
	return NewStore(b, c)
}

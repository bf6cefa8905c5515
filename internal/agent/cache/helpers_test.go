package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache/keyfile"
	"github.com/edgevault/edgevault/internal/clocktest"
	"go.etcd.io/bbolt"
)

var _ KeyProtector = (*keyfile.Protector)(nil)

// fakeClock is a settable clock.
type fakeClock = clocktest.Clock

func newFakeClock() *fakeClock {
	return clocktest.New(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
}

// env is a cache directory: the bbolt file and its key file.
type env struct {
	t     *testing.T
	dir   string
	file  string
	kp    *keyfile.Protector
	clock *fakeClock
	zone  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	kp, err := keyfile.Open(filepath.Join(dir, "cache.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, file: filepath.Join(dir, "cache.db"), kp: kp, clock: newFakeClock(), zone: "edge-1"}
}

func (e *env) opts() Options {
	return Options{Zone: e.zone, Clock: e.clock.Now}
}

// open opens the cache and registers a cleanup that closes it and checks
// the file with bbolt's consistency check.
func (e *env) open() *Cache {
	e.t.Helper()
	c, err := Open(e.file, e.kp, e.opts())
	if err != nil {
		e.t.Fatalf("open: %v", err)
	}
	e.t.Cleanup(func() {
		if err := c.Close(); err != nil {
			e.t.Errorf("close: %v", err)
		}
		checkFile(e.t, e.file)
	})
	return c
}

// reopen closes c and opens the file again, as a restarted agent does.
func (e *env) reopen(c *Cache) *Cache {
	e.t.Helper()
	if err := c.Close(); err != nil {
		e.t.Fatal(err)
	}
	return e.open()
}

// checkFile runs bbolt's consistency check over a closed cache file.
func checkFile(t *testing.T, file string) {
	t.Helper()
	db, err := bbolt.Open(file, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Errorf("check %s: %v", file, err)
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
		t.Errorf("bbolt check %s: %v", file, err)
	}
}

// editFile runs fn on the raw bbolt file of a closed cache.
func editFile(t *testing.T, file string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(file, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// upsert builds an upsert op whose data names the path and version.
func upsert(path string, version int, maxStale time.Duration) Op {
	return Op{
		Kind:     OpUpsert,
		Path:     path,
		Version:  version,
		Data:     json.RawMessage(fmt.Sprintf(`{"path":%q,"version":%d}`, path, version)),
		Metadata: json.RawMessage(fmt.Sprintf(`{"created_time":"2026-11-26T12:00:00Z","custom_metadata":null,"deletion_time":"","destroyed":false,"version":%d}`, version)),
		MaxStale: maxStale,
	}
}

func wantData(path string, version int) string {
	return fmt.Sprintf(`{"path":%q,"version":%d}`, path, version)
}

// mustGet fails the test unless path at version (0 = current) reads as
// wantVersion's data.
func mustGet(t *testing.T, c *Cache, path string, version, wantVersion int) Entry {
	t.Helper()
	e, err := c.Get(path, version)
	if err != nil {
		t.Fatalf("get %q v%d: %v", path, version, err)
	}
	if e.Version != wantVersion || string(e.Data) != wantData(path, wantVersion) {
		t.Fatalf("get %q v%d: got version %d data %s, want version %d", path, version, e.Version, e.Data, wantVersion)
	}
	return e
}

func mustApply(t *testing.T, c *Cache, seq uint64, ops ...Op) {
	t.Helper()
	if err := c.Apply(seq, ops); err != nil {
		t.Fatalf("apply %d: %v", seq, err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

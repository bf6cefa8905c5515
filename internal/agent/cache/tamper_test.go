package cache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache/keyfile"
	"go.etcd.io/bbolt"
)

// seeded returns a closed cache file holding a/1, a/2, b/1, c/1, with
// watermark 10 and a MarkSynced at the clock's time.
func seeded(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	c, err := Open(e.file, e.kp, e.opts())
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, c, 10, upsert("a", 1, time.Hour), upsert("a", 2, time.Hour), upsert("b", 1, time.Hour), upsert("c", 1, time.Hour))
	if err := c.MarkSynced(e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	return e
}

// distrusted checks what every integrity failure implies: the watermark is
// 0 (full resync) and the cache-wide sync time is gone.
func distrusted(t *testing.T, c *Cache) {
	t.Helper()
	if st := c.Stats(); st.Watermark != 0 || !st.SyncedAt.IsZero() {
		t.Fatalf("after tampering: watermark %d synced %v, want 0 and zero", st.Watermark, st.SyncedAt)
	}
}

func TestTamperFlippedByte(t *testing.T) {
	e := seeded(t)
	editFile(t, e.file, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketVersions)
		k := versionKey("b", 1)
		v := bytes.Clone(b.Get(k))
		v[len(v)/2] ^= 0x01
		return b.Put(k, v)
	})
	c := e.open()
	wantErr(t, getErr(c, "b"), ErrTampered)
	if st := c.Stats(); st.Dropped != 1 || st.Entries != 3 {
		t.Fatalf("stats %+v", st)
	}
	distrusted(t, c)
	// Authentic entries stay servable within their own max_stale.
	mustGet(t, c, "a", 0, 2)
	mustGet(t, c, "c", 0, 1)
	// The record is gone from disk; the next open is clean (still needing a resync).
	c = e.reopen(c)
	if st := c.Stats(); st.Dropped != 0 || st.Entries != 3 {
		t.Fatalf("after reopen: %+v", st)
	}
	wantErr(t, getErr(c, "b"), ErrNotCached)
	// Writing the path again clears the tampered mark.
	mustApply(t, c, 1, upsert("b", 2, time.Hour))
	mustGet(t, c, "b", 0, 2)
}

func TestTamperSwappedValues(t *testing.T) {
	for name, keys := range map[string][2][]byte{
		"two paths":    {versionKey("b", 1), versionKey("c", 1)},
		"two versions": {versionKey("a", 1), versionKey("a", 2)},
	} {
		t.Run(name, func(t *testing.T) {
			e := seeded(t)
			editFile(t, e.file, func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketVersions)
				v0, v1 := bytes.Clone(b.Get(keys[0])), bytes.Clone(b.Get(keys[1]))
				if err := b.Put(keys[0], v1); err != nil {
					return err
				}
				return b.Put(keys[1], v0)
			})
			c := e.open()
			for _, k := range keys {
				p, v, err := parseVersionKey(k)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Get(p, int(v)); !errors.Is(err, ErrTampered) {
					t.Fatalf("%s v%d: %v", p, v, err)
				}
			}
			if st := c.Stats(); st.Dropped != 2 {
				t.Fatalf("stats %+v", st)
			}
			distrusted(t, c)
		})
	}
}

func TestTamperPathRecordDropsItsVersions(t *testing.T) {
	e := seeded(t)
	editFile(t, e.file, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketPaths)
		// b's path record moved onto c: c's fails to open, and so b has none.
		if err := b.Put([]byte("c"), bytes.Clone(b.Get([]byte("b")))); err != nil {
			return err
		}
		return b.Delete([]byte("b"))
	})
	c := e.open()
	wantErr(t, getErr(c, "b"), ErrTampered)
	wantErr(t, getErr(c, "c"), ErrTampered)
	mustGet(t, c, "a", 0, 2)
	if st := c.Stats(); st.Dropped != 3 || st.Paths != 1 || st.Entries != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTamperStateRecord(t *testing.T) {
	e := seeded(t)
	editFile(t, e.file, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketState)
		v := bytes.Clone(b.Get(keyState))
		v[len(v)-1] ^= 0x80
		return b.Put(keyState, v)
	})
	c := e.open()
	distrusted(t, c)
	if c.Stats().Dropped != 1 {
		t.Fatalf("stats %+v", c.Stats())
	}
	mustGet(t, c, "a", 0, 2)
}

// A revoked secret put back on disk (an older copy of its records, which
// authenticate individually) must not be served as fresh.
func TestTamperResurrectedRecord(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	mustApply(t, c, 1, upsert("db/root", 1, time.Hour), upsert("keep", 1, 24*time.Hour))
	var pathRec, verRec []byte
	if err := c.db.View(func(tx *bbolt.Tx) error {
		pathRec = bytes.Clone(tx.Bucket(bucketPaths).Get([]byte("db/root")))
		verRec = bytes.Clone(tx.Bucket(bucketVersions).Get(versionKey("db/root", 1)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	if err := c.MarkSynced(e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	mustApply(t, c, 2, Op{Kind: OpPurgePrefix, Path: "db/"})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	editFile(t, e.file, func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketPaths).Put([]byte("db/root"), pathRec); err != nil {
			return err
		}
		return tx.Bucket(bucketVersions).Put(versionKey("db/root", 1), verRec)
	})
	c = e.open()
	distrusted(t, c)
	// Its own synced_at is 2h old with a 1h max_stale: refused, where the
	// cache-wide sync of a minute ago would have made it look fresh.
	wantErr(t, getErr(c, "db/root"), ErrTooStale)
	mustGet(t, c, "keep", 0, 1)
	// Nothing can bless it before a sync has applied something.
	if err := c.MarkSynced(e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	wantErr(t, getErr(c, "db/root"), ErrTooStale)
	// The full resync removes it; then heartbeats refresh again.
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	mustApply(t, c, 1, upsert("keep", 1, time.Hour))
	if err := c.MarkSynced(e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	wantErr(t, getErr(c, "db/root"), ErrNotCached)
	if st := c.Stats(); !st.SyncedAt.Equal(e.clock.Now()) {
		t.Fatalf("stats %+v", st)
	}
}

// Records written under another cache key are all dropped.
func TestTamperRecordsFromAnotherCache(t *testing.T) {
	a := seeded(t)
	b := newEnv(t)
	cb, err := Open(b.file, b.kp, b.opts())
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, cb, 3, upsert("z", 1, time.Hour))
	if err := cb.Close(); err != nil {
		t.Fatal(err)
	}
	records := map[string]map[string][]byte{}
	db, err := bbolt.Open(a.file, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketPaths, bucketVersions} {
			m := map[string][]byte{}
			_ = tx.Bucket(name).ForEach(func(k, v []byte) error { m[string(k)] = bytes.Clone(v); return nil })
			records[string(name)] = m
		}
		return nil
	})
	_ = db.Close()
	editFile(t, b.file, func(tx *bbolt.Tx) error {
		for name, m := range records {
			for k, v := range m {
				if err := tx.Bucket([]byte(name)).Put([]byte(k), v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	c := b.open()
	for _, p := range []string{"a", "b", "c"} {
		wantErr(t, getErr(c, p), ErrTampered)
	}
	mustGet(t, c, "z", 0, 1)
	if st := c.Stats(); st.Dropped != 7 || st.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}
	distrusted(t, c)
}

// The whole file opened with another key file: a clear error, nothing served.
func TestOpenWithAnotherKey(t *testing.T) {
	e := seeded(t)
	other, err := keyfile.Open(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(e.file, other, e.opts())
	wantErr(t, err, ErrKeyMismatch)
	if !strings.Contains(err.Error(), e.file) || !strings.Contains(err.Error(), "remove it") {
		t.Fatalf("error does not name the file and the fix: %v", err)
	}
	// The file is untouched and still opens with its own key.
	c := e.open()
	mustGet(t, c, "a", 0, 2)
	if st := c.Stats(); st.Dropped != 0 || st.Watermark != 10 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCorruptedFile(t *testing.T) {
	garbage := bytes.Repeat([]byte("not a bbolt file "), 1000)
	tests := map[string]func(t *testing.T, file string){
		"garbage": func(t *testing.T, file string) {
			if err := os.WriteFile(file, garbage, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"truncated": func(t *testing.T, file string) {
			if err := os.Truncate(file, 100); err != nil {
				t.Fatal(err)
			}
		},
		"meta pages zeroed": func(t *testing.T, file string) {
			f, err := os.OpenFile(file, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, 2*4096), 0); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, damage := range tests {
		t.Run(name, func(t *testing.T) {
			e := seeded(t)
			damage(t, e.file)
			_, err := Open(e.file, e.kp, e.opts())
			wantErr(t, err, ErrCorrupt)
			if !strings.Contains(err.Error(), e.file) || !strings.Contains(err.Error(), "re-syncs from scratch") {
				t.Fatalf("error does not name the file and the fix: %v", err)
			}
		})
	}
}

// Garbage over any one page must give ErrCorrupt or dropped records,
// never a panic or a wrong value served.
func TestCorruptedPages(t *testing.T) {
	e := seeded(t)
	orig, err := os.ReadFile(e.file)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	var corrupt, opened int
	for page := 2; page < len(orig)/pageSize; page++ {
		for _, pattern := range []byte{0x00, 0x5a} {
			damaged := bytes.Clone(orig)
			copy(damaged[page*pageSize:(page+1)*pageSize], bytes.Repeat([]byte{pattern}, pageSize))
			if err := os.WriteFile(e.file, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Open(e.file, e.kp, e.opts())
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("page %d pattern %#x: %v", page, pattern, err)
				}
				corrupt++
				t.Logf("page %d pattern %#x: %v", page, pattern, err)
				continue
			}
			opened++
			for p, v := range map[string]int{"a": 2, "b": 1, "c": 1} {
				if got, err := c.Get(p, 0); err == nil && (got.Version != v || string(got.Data) != wantData(p, v)) {
					t.Fatalf("page %d pattern %#x: served %s for %s", page, pattern, got.Data, p)
				}
			}
			// The opened cache still takes writes.
			if err := c.Apply(1000, []Op{upsert("new", 1, time.Hour)}); err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("page %d pattern %#x: apply: %v", page, pattern, err)
			}
			if err := c.Close(); err != nil {
				t.Logf("page %d pattern %#x: close: %v", page, pattern, err)
			}
			t.Logf("page %d pattern %#x: opened %+v", page, pattern, c.Stats())
		}
	}
	t.Logf("%d pages: %d ErrCorrupt, %d opened", len(orig)/pageSize-2, corrupt, opened)
	if corrupt == 0 {
		t.Fatal("no damaged page was detected")
	}
}

func TestNotACacheFile(t *testing.T) {
	e := newEnv(t)
	editFile(t, e.file, func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("edgevault"))
		return err
	})
	_, err := Open(e.file, e.kp, e.opts())
	if err == nil || !strings.Contains(err.Error(), "not an agent cache") {
		t.Fatalf("open of another bbolt file: %v", err)
	}
}

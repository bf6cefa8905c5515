package cache

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// blobMap reads every blob of kind.
func blobMap(t *testing.T, c *Cache, kind string) (map[string]string, int) {
	t.Helper()
	m := map[string]string{}
	dropped, err := c.Blobs(kind, func(k string, v []byte) error { m[k] = string(v); return nil })
	if err != nil {
		t.Fatalf("Blobs(%q): %v", kind, err)
	}
	return m, dropped
}

// Blobs are stored sealed, kept apart by kind, survive a reopen and a
// Reset, and are deleted on demand.
func TestBlobsRoundTrip(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	if _, err := c.GetBlob("lease", "a"); !errors.Is(err, ErrNotCached) {
		t.Fatalf("GetBlob on a new cache: %v", err)
	}
	if m, _ := blobMap(t, c, "lease"); len(m) != 0 {
		t.Fatalf("Blobs on a new cache: %v", m)
	}
	secret := "token-s3cr3t-value"
	for _, kv := range [][3]string{{"lease", "a", secret}, {"lease", "b", "two"}, {"leasex", "a", "other kind"}, {"lease", "a", secret + "!"}} {
		if err := c.PutBlob(kv[0], kv[1], []byte(kv[2])); err != nil {
			t.Fatal(err)
		}
	}
	mustApply(t, c, 1, upsert("secret/x", 1, time.Hour))
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	c = e.reopen(c)
	if v, err := c.GetBlob("lease", "a"); err != nil || string(v) != secret+"!" {
		t.Fatalf("GetBlob after reopen: %q %v", v, err)
	}
	m, dropped := blobMap(t, c, "lease")
	if dropped != 0 || len(m) != 2 || m["a"] != secret+"!" || m["b"] != "two" {
		t.Fatalf("Blobs(lease) = %v (dropped %d)", m, dropped)
	}
	if m, _ := blobMap(t, c, "leasex"); len(m) != 1 || m["a"] != "other kind" {
		t.Fatalf("Blobs(leasex) = %v", m)
	}
	if err := c.DeleteBlob("lease", "a"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteBlob("lease", "never"); err != nil {
		t.Fatalf("deleting a missing blob: %v", err)
	}
	if _, err := c.GetBlob("lease", "a"); !errors.Is(err, ErrNotCached) {
		t.Fatalf("GetBlob after delete: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Nothing of a value is in the file in the clear.
	db, err := bbolt.Open(e.file, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bbolt.Tx) error {
		return blobBucket(tx).ForEach(func(k, v []byte) error {
			if bytes.Contains(v, []byte("two")) || bytes.Contains(v, []byte("s3cr3t")) {
				t.Errorf("blob %q stored in the clear", k)
			}
			return nil
		})
	})
	db.Close()
	if err := c.PutBlob("lease", "a", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutBlob after Close: %v", err)
	}
	if !c.Closed() {
		t.Fatal("Closed() is false after Close")
	}
}

// A blob edited or moved to another key fails to open: GetBlob says
// ErrTampered, Blobs drops it and keeps the others.
func TestBlobsTampered(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	for _, k := range []string{"a", "b", "c"} {
		if err := c.PutBlob("lease", k, []byte("value of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	editFile(t, e.file, func(tx *bbolt.Tx) error {
		b := blobBucket(tx)
		a := bytes.Clone(b.Get(blobKey("lease", "a")))
		a[len(a)-1] ^= 1 // edited
		if err := b.Put(blobKey("lease", "a"), a); err != nil {
			return err
		}
		// b's envelope copied over c's: authentic, but bound to b.
		return b.Put(blobKey("lease", "c"), bytes.Clone(b.Get(blobKey("lease", "b"))))
	})
	c = e.open()
	for _, k := range []string{"a", "c"} {
		if _, err := c.GetBlob("lease", k); !errors.Is(err, ErrTampered) {
			t.Fatalf("GetBlob(%s) of a tampered blob: %v", k, err)
		}
	}
	m, dropped := blobMap(t, c, "lease")
	if dropped != 2 || len(m) != 1 || m["b"] != "value of b" {
		t.Fatalf("Blobs = %v, dropped %d; want only b, 2 dropped", m, dropped)
	}
	if m, dropped := blobMap(t, c, "lease"); dropped != 0 || len(m) != 1 {
		t.Fatalf("second walk: %v, dropped %d", m, dropped)
	}
	// The KV side is untouched: the cache still trusts its own state.
	if st := c.Stats(); st.Dropped != 0 {
		t.Fatalf("Stats.Dropped = %d after blob tampering", st.Dropped)
	}
}

// Bad kinds, keys and values are refused, naming what is wrong; an error
// from the walk's callback stops it and is returned.
func TestBlobsInvalid(t *testing.T) {
	c := newEnv(t).open()
	for _, tc := range []struct{ kind, key string }{
		{"", "k"}, {"k\x00", "k"}, {strings.Repeat("k", MaxBlobKindLen+1), "k"}, {"lease", ""}, {"lease", "a\x00b"},
		{"lease", strings.Repeat("k", MaxPathLen+1)},
	} {
		if err := c.PutBlob(tc.kind, tc.key, []byte("v")); !errors.Is(err, ErrInvalidBlob) {
			t.Errorf("PutBlob(%q, %q): %v", tc.kind, tc.key, err)
		}
		if _, err := c.GetBlob(tc.kind, tc.key); !errors.Is(err, ErrInvalidBlob) {
			t.Errorf("GetBlob(%q, %q): %v", tc.kind, tc.key, err)
		}
	}
	if err := c.PutBlob("lease", "k", make([]byte, MaxBlobLen+1)); !errors.Is(err, ErrInvalidBlob) || !strings.Contains(err.Error(), "value") {
		t.Errorf("an oversized value: %v", err)
	}
	_ = c.PutBlob("lease", "a", []byte("1"))
	_ = c.PutBlob("lease", "b", []byte("2"))
	stop := errors.New("stop")
	n := 0
	if _, err := c.Blobs("lease", func(string, []byte) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Blobs with a failing callback: %v after %d calls", err, n)
	}
}

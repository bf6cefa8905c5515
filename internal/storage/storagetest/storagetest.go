// Package storagetest is the conformance suite for storage.Backend.
//
// Every backend (inmem, bolt, raft, ...) runs the same checks from its own
// tests:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Backend { return open(t) })
//	}
//
// The suite checks each guarantee written in the storage package's doc
// comments: Get/Put/Delete round trips and ErrNotFound; List's one-level,
// sorted, Vault-style listing; Txn atomicity (a bad op anywhere means nothing
// is applied); key validation (ErrInvalidKey for "", NUL and over-long keys,
// and a failed call changing nothing); value ownership (slices passed in or
// handed out are the caller's); safety under concurrent use (run with
// -race); and, for backends that implement storage.Closer, ErrClosed after
// Close.
//
// open must return a new, empty backend for each call and arrange its own
// cleanup with t.Cleanup. The suite may call Close itself, so a backend's
// Close must tolerate being called twice.
package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/internal/storage"
)

// Run runs the whole conformance suite, each check as a subtest on a fresh
// backend returned by open.
func Run(t *testing.T, open func(t *testing.T) storage.Backend) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, b storage.Backend)
	}{
		{"GetMissing", testGetMissing},
		{"PutGet", testPutGet},
		{"Overwrite", testOverwrite},
		{"EmptyValue", testEmptyValue},
		{"LargeValue", testLargeValue},
		{"Delete", testDelete},
		{"List", testList},
		{"ListSorted", testListSorted},
		{"ListMany", testListMany},
		{"ListAfterDelete", testListAfterDelete},
		{"InvalidKeys", testInvalidKeys},
		{"MaxKeyLen", testMaxKeyLen},
		{"Txn", testTxn},
		{"TxnOrder", testTxnOrder},
		{"TxnEmpty", testTxnEmpty},
		{"TxnInvalidKeyAppliesNothing", testTxnInvalidKey},
		{"TxnInvalidKindAppliesNothing", testTxnInvalidKind},
		{"ValueOwnership", testValueOwnership},
		{"Concurrent", testConcurrent},
		{"ConcurrentTxnIsolation", testConcurrentTxnIsolation},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// mustPut stores value at key or fails the test.
func mustPut(t *testing.T, b storage.Backend, key string, value []byte) {
	t.Helper()
	if err := b.Put(t.Context(), key, value); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

// mustGet returns the value at key or fails the test.
func mustGet(t *testing.T, b storage.Backend, key string) []byte {
	t.Helper()
	v, err := b.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

// wantValue fails the test unless key holds want.
func wantValue(t *testing.T, b storage.Backend, key string, want []byte) {
	t.Helper()
	if got := mustGet(t, b, key); !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

// wantMissing fails the test unless Get(key) returns ErrNotFound.
func wantMissing(t *testing.T, b storage.Backend, key string) {
	t.Helper()
	v, err := b.Get(t.Context(), key)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, v, err)
	}
}

// mustList returns List(prefix) or fails the test.
func mustList(t *testing.T, b storage.Backend, prefix string) []string {
	t.Helper()
	got, err := b.List(t.Context(), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

// dump returns every key and value reachable by listing from the root, so a
// test can assert that a failed call changed nothing.
func dump(t *testing.T, b storage.Backend) map[string]string {
	t.Helper()
	out := make(map[string]string)
	var walk func(prefix string)
	walk = func(prefix string) {
		for _, name := range mustList(t, b, prefix) {
			k := prefix + name
			if strings.HasSuffix(name, "/") {
				walk(k)
			}
			v, err := b.Get(t.Context(), k)
			switch {
			case err == nil:
				out[k] = string(v)
			case errors.Is(err, storage.ErrNotFound) && strings.HasSuffix(name, "/"):
				// A directory with no value of its own.
			default:
				t.Fatalf("Get(%q) while dumping: %v", k, err)
			}
		}
	}
	walk("")
	return out
}

// wantUnchanged fails the test if the store's contents differ from before.
func wantUnchanged(t *testing.T, b storage.Backend, before map[string]string, what string) {
	t.Helper()
	after := dump(t, b)
	if !mapsEqual(before, after) {
		t.Fatalf("%s changed the store:\nbefore %v\nafter  %v", what, before, after)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func testGetMissing(t *testing.T, b storage.Backend) {
	wantMissing(t, b, "nope")
	mustPut(t, b, "a/b", []byte("x"))
	wantMissing(t, b, "a")
	wantMissing(t, b, "a/")
	wantMissing(t, b, "a/b/c")
	wantMissing(t, b, "a/bb")
}

func testPutGet(t *testing.T, b storage.Backend) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	cases := map[string][]byte{
		"k":                       []byte("v"),
		"sys/token/id/abc":        []byte(`{"policies":["root"]}`),
		"binary":                  all,
		"unicode/ключ/🔑":          []byte("значение"),
		"with space/and\ttab":     []byte("x"),
		"trailing/":               []byte("dir-like key"),
		"/leading":                []byte("y"),
		"double//slash":           []byte("z"),
		"dots/../not-a-traversal": []byte("w"),
	}
	for k, v := range cases {
		mustPut(t, b, k, v)
	}
	for k, v := range cases {
		wantValue(t, b, k, v)
	}
}

func testOverwrite(t *testing.T, b storage.Backend) {
	mustPut(t, b, "k", []byte("first, a longer value"))
	mustPut(t, b, "k", []byte("second"))
	wantValue(t, b, "k", []byte("second"))
	if got := mustList(t, b, ""); !slices.Equal(got, []string{"k"}) {
		t.Fatalf("List after overwrite = %q, want [k]", got)
	}
}

func testEmptyValue(t *testing.T, b storage.Backend) {
	mustPut(t, b, "empty", []byte{})
	mustPut(t, b, "nil", nil)
	for _, k := range []string{"empty", "nil"} {
		if got := mustGet(t, b, k); len(got) != 0 {
			t.Fatalf("Get(%q) = %q, want empty", k, got)
		}
	}
}

func testLargeValue(t *testing.T, b storage.Backend) {
	v := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	mustPut(t, b, "big", v)
	wantValue(t, b, "big", v)
}

func testDelete(t *testing.T, b storage.Backend) {
	ctx := t.Context()
	mustPut(t, b, "a", []byte("1"))
	mustPut(t, b, "b", []byte("2"))
	if err := b.Delete(ctx, "a"); err != nil {
		t.Fatalf("Delete existing: %v", err)
	}
	wantMissing(t, b, "a")
	wantValue(t, b, "b", []byte("2"))
	if err := b.Delete(ctx, "a"); err != nil {
		t.Fatalf("Delete already deleted: %v, want nil", err)
	}
	if err := b.Delete(ctx, "never/existed"); err != nil {
		t.Fatalf("Delete missing: %v, want nil", err)
	}
	mustPut(t, b, "a", []byte("again"))
	wantValue(t, b, "a", []byte("again"))
}

func testList(t *testing.T, b storage.Backend) {
	for _, k := range []string{
		"a/b", "a/c/d", "a/c/e", "a/c/f/g", "a/h/", "top", "z/y/x/w",
		"foo/bar", "foo/baz/qux", "foo/c",
	} {
		mustPut(t, b, k, []byte(k))
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a/", "foo/", "top", "z/"}},
		{"a/", []string{"b", "c/", "h/"}},
		{"a/c/", []string{"d", "e", "f/"}},
		{"a/c/f/", []string{"g"}},
		{"z/", []string{"y/"}},
		{"z/y/x/", []string{"w"}},
		{"foo/ba", []string{"r", "z/"}}, // a plain string prefix, as Vault does
		{"missing/", []string{}},
		{"a/b/", []string{}},
		{"a/cc/", []string{}},
		{"zz", []string{}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("prefix=%q", tc.prefix), func(t *testing.T) {
			got := mustList(t, b, tc.prefix)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
			}
		})
	}
}

func testListSorted(t *testing.T, b storage.Backend) {
	// Inserted out of order; names whose bytes sort around '/' are the
	// tricky ones ('-' < '/' < '0' < 'B' < 'b' < 0xff).
	keys := []string{
		"d/\xffhigh", "d/b0", "d/b/x", "d/b-c", "d/B", "d/b", "d/a/z", "d/a/a",
		"d/b/y/z", "d/a", "d/0", "d/-",
	}
	for _, k := range keys {
		mustPut(t, b, k, []byte("v"))
	}
	want := []string{"-", "0", "B", "a", "a/", "b", "b-c", "b/", "b0", "\xffhigh"}
	got := mustList(t, b, "d/")
	if !slices.Equal(got, want) {
		t.Fatalf("List(d/) = %q, want %q", got, want)
	}
	if !slices.IsSorted(got) {
		t.Fatalf("List(d/) = %q is not sorted", got)
	}
}

func testListMany(t *testing.T, b storage.Backend) {
	const n = 500
	want := make([]string, 0, n)
	ops := make([]storage.Op, 0, 2*n)
	for i := range n {
		name := fmt.Sprintf("%04d", i)
		want = append(want, name, name+"/")
		ops = append(ops,
			storage.Op{Kind: storage.OpPut, Key: "many/" + name, Value: []byte(name)},
			storage.Op{Kind: storage.OpPut, Key: "many/" + name + "/child", Value: []byte(name)},
		)
	}
	if err := b.Txn(t.Context(), ops); err != nil {
		t.Fatalf("Txn: %v", err)
	}
	slices.Sort(want)
	if got := mustList(t, b, "many/"); !slices.Equal(got, want) {
		t.Fatalf("List(many/) returned %d names, want %d (first %q)", len(got), len(want), got[:min(4, len(got))])
	}
}

func testListAfterDelete(t *testing.T, b storage.Backend) {
	ctx := t.Context()
	mustPut(t, b, "p/dir/one", []byte("1"))
	mustPut(t, b, "p/dir/two", []byte("2"))
	mustPut(t, b, "p/leaf", []byte("3"))
	if err := b.Delete(ctx, "p/dir/one"); err != nil {
		t.Fatal(err)
	}
	if got := mustList(t, b, "p/"); !slices.Equal(got, []string{"dir/", "leaf"}) {
		t.Fatalf("List(p/) = %q, want [dir/ leaf]", got)
	}
	if err := b.Delete(ctx, "p/dir/two"); err != nil {
		t.Fatal(err)
	}
	if got := mustList(t, b, "p/"); !slices.Equal(got, []string{"leaf"}) {
		t.Fatalf("List(p/) after emptying dir = %q, want [leaf]", got)
	}
	if got := mustList(t, b, "p/dir/"); len(got) != 0 {
		t.Fatalf("List(p/dir/) after emptying = %q, want empty", got)
	}
}

// invalidKeys are rejected by every backend with ErrInvalidKey.
func invalidKeys() map[string]string {
	return map[string]string{
		"empty":          "",
		"NUL":            "a\x00b",
		"leading NUL":    "\x00",
		"trailing NUL":   "a/b\x00",
		"too long":       strings.Repeat("k", storage.MaxKeyLen+1),
		"far too long":   strings.Repeat("k", 64<<10),
		"long, with NUL": strings.Repeat("k", storage.MaxKeyLen-1) + "\x00",
	}
}

func testInvalidKeys(t *testing.T, b storage.Backend) {
	ctx := t.Context()
	mustPut(t, b, "keep", []byte("kept"))
	before := dump(t, b)
	for name, key := range invalidKeys() {
		t.Run(name, func(t *testing.T) {
			if _, err := b.Get(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Get: %v, want ErrInvalidKey", err)
			}
			if err := b.Put(ctx, key, []byte("x")); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Put: %v, want ErrInvalidKey", err)
			}
			if err := b.Delete(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Delete: %v, want ErrInvalidKey", err)
			}
			ops := []storage.Op{{Kind: storage.OpPut, Key: key, Value: []byte("x")}}
			if err := b.Txn(ctx, ops); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Txn put: %v, want ErrInvalidKey", err)
			}
			ops = []storage.Op{{Kind: storage.OpDelete, Key: key}}
			if err := b.Txn(ctx, ops); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Txn delete: %v, want ErrInvalidKey", err)
			}
			wantUnchanged(t, b, before, "a call with an invalid key")
		})
	}
}

func testMaxKeyLen(t *testing.T, b storage.Backend) {
	key := strings.Repeat("m", storage.MaxKeyLen)
	mustPut(t, b, key, []byte("longest"))
	wantValue(t, b, key, []byte("longest"))
	if got := mustList(t, b, ""); !slices.Equal(got, []string{key}) {
		t.Fatalf("List returned %d names, want the one longest key", len(got))
	}
	if err := b.Delete(t.Context(), key); err != nil {
		t.Fatalf("Delete longest key: %v", err)
	}
	wantMissing(t, b, key)
}

func testTxn(t *testing.T, b storage.Backend) {
	mustPut(t, b, "t/old", []byte("old"))
	mustPut(t, b, "t/keep", []byte("keep"))
	err := b.Txn(t.Context(), []storage.Op{
		{Kind: storage.OpPut, Key: "t/a", Value: []byte("A")},
		{Kind: storage.OpDelete, Key: "t/old"},
		{Kind: storage.OpPut, Key: "t/b/c", Value: []byte("C")},
		{Kind: storage.OpDelete, Key: "t/never"},
		{Kind: storage.OpPut, Key: "t/keep", Value: []byte("replaced")},
	})
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	wantValue(t, b, "t/a", []byte("A"))
	wantValue(t, b, "t/b/c", []byte("C"))
	wantValue(t, b, "t/keep", []byte("replaced"))
	wantMissing(t, b, "t/old")
	wantMissing(t, b, "t/never")
	if got := mustList(t, b, "t/"); !slices.Equal(got, []string{"a", "b/", "keep"}) {
		t.Fatalf("List(t/) = %q", got)
	}
}

func testTxnOrder(t *testing.T, b storage.Backend) {
	mustPut(t, b, "del-then-put", []byte("before"))
	mustPut(t, b, "put-then-del", []byte("before"))
	err := b.Txn(t.Context(), []storage.Op{
		{Kind: storage.OpPut, Key: "twice", Value: []byte("1")},
		{Kind: storage.OpPut, Key: "twice", Value: []byte("2")},
		{Kind: storage.OpDelete, Key: "del-then-put"},
		{Kind: storage.OpPut, Key: "del-then-put", Value: []byte("after")},
		{Kind: storage.OpPut, Key: "put-then-del", Value: []byte("after")},
		{Kind: storage.OpDelete, Key: "put-then-del"},
	})
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	wantValue(t, b, "twice", []byte("2"))
	wantValue(t, b, "del-then-put", []byte("after"))
	wantMissing(t, b, "put-then-del")
}

func testTxnEmpty(t *testing.T, b storage.Backend) {
	mustPut(t, b, "x", []byte("y"))
	before := dump(t, b)
	if err := b.Txn(t.Context(), nil); err != nil {
		t.Fatalf("Txn(nil): %v", err)
	}
	if err := b.Txn(t.Context(), []storage.Op{}); err != nil {
		t.Fatalf("Txn(empty): %v", err)
	}
	wantUnchanged(t, b, before, "an empty Txn")
}

func testTxnInvalidKey(t *testing.T, b storage.Backend) {
	ctx := t.Context()
	mustPut(t, b, "pre/existing", []byte("1"))
	mustPut(t, b, "pre/other", []byte("2"))
	before := dump(t, b)
	for name, bad := range invalidKeys() {
		for _, kind := range []storage.OpKind{storage.OpPut, storage.OpDelete} {
			for _, pos := range []string{"first", "middle", "last"} {
				good := []storage.Op{
					{Kind: storage.OpPut, Key: "new/1", Value: []byte("n1")},
					{Kind: storage.OpDelete, Key: "pre/existing"},
					{Kind: storage.OpPut, Key: "pre/other", Value: []byte("changed")},
					{Kind: storage.OpPut, Key: "new/2", Value: []byte("n2")},
				}
				badOp := storage.Op{Kind: kind, Key: bad, Value: []byte("bad")}
				var ops []storage.Op
				switch pos {
				case "first":
					ops = append([]storage.Op{badOp}, good...)
				case "middle":
					ops = slices.Concat(good[:2], []storage.Op{badOp}, good[2:])
				case "last":
					ops = append(good, badOp)
				}
				err := b.Txn(ctx, ops)
				if !errors.Is(err, storage.ErrInvalidKey) {
					t.Fatalf("%s key, kind %d, %s: Txn = %v, want ErrInvalidKey", name, kind, pos, err)
				}
				wantUnchanged(t, b, before, fmt.Sprintf("a failed Txn (%s key %s)", name, pos))
			}
		}
	}
}

func testTxnInvalidKind(t *testing.T, b storage.Backend) {
	mustPut(t, b, "pre", []byte("1"))
	before := dump(t, b)
	for _, kind := range []storage.OpKind{0, storage.OpDelete + 1, 255} {
		err := b.Txn(t.Context(), []storage.Op{
			{Kind: storage.OpPut, Key: "new", Value: []byte("n")},
			{Kind: storage.OpDelete, Key: "pre"},
			{Kind: kind, Key: "weird", Value: []byte("w")},
			{Kind: storage.OpPut, Key: "new2", Value: []byte("n")},
		})
		if err == nil {
			t.Fatalf("Txn with op kind %d succeeded, want an error", kind)
		}
		wantUnchanged(t, b, before, fmt.Sprintf("a Txn with op kind %d", kind))
	}
}

func testValueOwnership(t *testing.T, b storage.Backend) {
	ctx := t.Context()

	in := []byte("original")
	mustPut(t, b, "put", in)
	copy(in, "MUTATED!")
	wantValue(t, b, "put", []byte("original"))

	out := mustGet(t, b, "put")
	copy(out, "MUTATED!")
	_ = append(out[:0], "grown past the old length"...)
	wantValue(t, b, "put", []byte("original"))

	tv := []byte("txn-value")
	if err := b.Txn(ctx, []storage.Op{{Kind: storage.OpPut, Key: "txn", Value: tv}}); err != nil {
		t.Fatal(err)
	}
	copy(tv, "XXXXXXXXX")
	wantValue(t, b, "txn", []byte("txn-value"))

	// Two reads must not share memory either.
	r1, r2 := mustGet(t, b, "txn"), mustGet(t, b, "txn")
	r1[0] = 'Z'
	if r2[0] != 't' {
		t.Fatalf("two Gets returned shared memory")
	}

	names := mustList(t, b, "")
	names[0] = "mutated"
	if got := mustList(t, b, ""); !slices.Equal(got, []string{"put", "txn"}) {
		t.Fatalf("List after mutating a returned slice = %q", got)
	}
}

func testConcurrent(t *testing.T, b storage.Backend) {
	const (
		workers = 16
		rounds  = 40
	)
	ctx := t.Context()
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				own := fmt.Sprintf("c/%02d/%03d", w, i)
				shared := fmt.Sprintf("shared/%d", i%4)
				val := fmt.Appendf(nil, "%d-%d", w, i)
				if err := b.Put(ctx, own, val); err != nil {
					errc <- fmt.Errorf("worker %d: Put: %w", w, err)
					return
				}
				got, err := b.Get(ctx, own)
				if err != nil || !bytes.Equal(got, val) {
					errc <- fmt.Errorf("worker %d: Get own key = %q, %v; want %q", w, got, err, val)
					return
				}
				ops := []storage.Op{
					{Kind: storage.OpPut, Key: shared, Value: val},
					{Kind: storage.OpPut, Key: own + "/txn", Value: val},
				}
				if err := b.Txn(ctx, ops); err != nil {
					errc <- fmt.Errorf("worker %d: Txn: %w", w, err)
					return
				}
				if _, err := b.Get(ctx, shared); err != nil {
					errc <- fmt.Errorf("worker %d: Get shared: %w", w, err)
					return
				}
				if _, err := b.List(ctx, fmt.Sprintf("c/%02d/", w)); err != nil {
					errc <- fmt.Errorf("worker %d: List: %w", w, err)
					return
				}
				if i%2 == 1 {
					if err := b.Delete(ctx, own+"/txn"); err != nil {
						errc <- fmt.Errorf("worker %d: Delete: %w", w, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for w := range workers {
		dir := fmt.Sprintf("c/%02d/", w)
		names := mustList(t, b, dir)
		if want := rounds + rounds/2; len(names) != want {
			t.Fatalf("List(%s) has %d names, want %d", dir, len(names), want)
		}
		for i := range rounds {
			val := fmt.Appendf(nil, "%d-%d", w, i)
			own := fmt.Sprintf("%s%03d", dir, i)
			wantValue(t, b, own, val)
			if i%2 == 1 {
				wantMissing(t, b, own+"/txn")
			} else {
				wantValue(t, b, own+"/txn", val)
			}
		}
	}
}

func testConcurrentTxnIsolation(t *testing.T, b storage.Backend) {
	// Each Txn writes its own id to every key of a group. Whatever order the
	// Txns land in, at the end all keys must carry the id of one Txn: ops of
	// different Txns never interleave.
	const (
		writers = 16
		group   = 8
	)
	ctx := t.Context()
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for r := range 5 {
				id := fmt.Appendf(nil, "w%02d-r%d", w, r)
				ops := make([]storage.Op, group)
				for i := range ops {
					ops[i] = storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("g/%d", i), Value: id}
				}
				if err := b.Txn(ctx, ops); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	first := mustGet(t, b, "g/0")
	for i := 1; i < group; i++ {
		wantValue(t, b, fmt.Sprintf("g/%d", i), first)
	}
}

func testClose(t *testing.T, b storage.Backend) {
	c, ok := b.(storage.Closer)
	if !ok {
		t.Skip("backend does not implement storage.Closer")
	}
	ctx := t.Context()
	mustPut(t, b, "k", []byte("v"))
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	if err := b.Put(ctx, "k", []byte("w")); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}
	if err := b.Delete(ctx, "k"); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Delete after Close: %v, want ErrClosed", err)
	}
	if _, err := b.List(ctx, ""); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("List after Close: %v, want ErrClosed", err)
	}
	ops := []storage.Op{{Kind: storage.OpPut, Key: "k", Value: []byte("w")}}
	if err := b.Txn(ctx, ops); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Txn after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil && !errors.Is(err, storage.ErrClosed) {
		t.Errorf("second Close: %v, want nil or ErrClosed", err)
	}
}

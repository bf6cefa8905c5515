package bolt_test

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
)

// listModel is the obvious List: scan every key, cut each at the first '/'
// after prefix, dedupe and sort.
func listModel(keys []string, prefix string) []string {
	seen := map[string]bool{}
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		rest := k[len(prefix):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i+1]
		}
		seen[rest] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// FuzzList checks bolt's cursor-skipping List against listModel. The input
// is a newline-separated set of keys and a prefix; each run stores its keys
// under a namespace of its own in one shared backend.
func FuzzList(f *testing.F) {
	f.Add("a/b\na/c/d\na/c/e\ntop", "a/")
	f.Add("a/b\na/c/d\ntop\nz/", "")
	f.Add("d/b-c\nd/b/x\nd/b0\nd/B\nd/b\nd/-\nd/\xff", "d/")
	f.Add("x//y\nx/\nx/y/", "x/")
	f.Add("foo/bar\nfoo/baz/qux\nfoo/c", "foo/ba")
	f.Add("p/a/b/c\np/a\np/a0\np/a/", "p/a")
	b := openTest(f, bolt.Options{})
	var run atomic.Uint64
	f.Fuzz(func(t *testing.T, keyList, prefix string) {
		ns := fmt.Sprintf("ns%d/", run.Add(1))
		var keys []string
		var ops []storage.Op
		for _, k := range strings.Split(keyList, "\n") {
			if storage.ValidateKey(ns+k) != nil || k == "" {
				continue
			}
			keys = append(keys, k)
			ops = append(ops, storage.Op{Kind: storage.OpPut, Key: ns + k, Value: []byte(k)})
		}
		if err := b.Txn(t.Context(), ops); err != nil {
			t.Fatalf("Txn: %v", err)
		}
		got, err := b.List(t.Context(), ns+prefix)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if want := listModel(keys, prefix); !slices.Equal(got, want) {
			t.Fatalf("List(%q) over %q = %q, want %q", prefix, keys, got, want)
		}
		for _, k := range keys {
			v, err := b.Get(t.Context(), ns+k)
			if err != nil || !bytes.Equal(v, []byte(k)) {
				t.Fatalf("Get(%q) = %q, %v", k, v, err)
			}
		}
	})
}

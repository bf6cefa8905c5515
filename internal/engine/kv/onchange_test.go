package kv

import (
	"slices"
	"testing"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// OnChange hears of every committed change to a secret, and of nothing else.
func TestOnChange(t *testing.T) {
	var got []string
	h := newHarness(t)
	h.kv = New(storage.NewView(inmem.New(), "logical/x/"), Options{Clock: h.clock.Now, OnChange: func(p string) { got = append(got, p) }})
	h.must(logical.UpdateOperation, "data/app/db", `{"data":{"a":"1"}}`)
	h.must(logical.ReadOperation, "data/app/db", "")
	if _, err := h.do(logical.UpdateOperation, "data/app/db", `{"options":{"cas":0},"data":{"a":"2"}}`); err == nil {
		t.Fatal("stale cas accepted")
	}
	h.must(logical.UpdateOperation, "config", `{"max_versions":5}`)
	h.must(logical.DeleteOperation, "data/app/db", "")
	h.must(logical.UpdateOperation, "undelete/app/db", `{"versions":[1]}`)
	h.must(logical.UpdateOperation, "destroy/app/db", `{"versions":[1]}`)
	h.must(logical.UpdateOperation, "metadata/app/db", `{"custom_metadata":{"k":"v"}}`)
	h.must(logical.DeleteOperation, "metadata/app/db", "")
	want := []string{"app/db", "app/db", "app/db", "app/db", "app/db", "app/db"}
	if !slices.Equal(got, want) {
		t.Fatalf("OnChange calls = %q, want %q", got, want)
	}
}

package storage_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

func TestViewConfinesKeys(t *testing.T) {
	ctx := t.Context()
	base := inmem.New()
	if err := base.Put(ctx, "other/secret", []byte("outside")); err != nil {
		t.Fatal(err)
	}
	if err := base.Put(ctx, "mount/xsibling", []byte("outside")); err != nil {
		t.Fatal(err)
	}
	v := storage.NewView(base, "mount/x/")
	if v.Prefix() != "mount/x/" {
		t.Fatalf("Prefix() = %q", v.Prefix())
	}

	if err := v.Put(ctx, "a/b", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if got, err := base.Get(ctx, "mount/x/a/b"); err != nil || string(got) != "1" {
		t.Fatalf("underlying key: %q, %v", got, err)
	}
	if got, err := v.Get(ctx, "a/b"); err != nil || string(got) != "1" {
		t.Fatalf("view Get: %q, %v", got, err)
	}
	if err := v.Txn(ctx, []storage.Op{
		{Kind: storage.OpPut, Key: "c", Value: []byte("2")},
		{Kind: storage.OpDelete, Key: "a/b"},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := base.Get(ctx, "mount/x/a/b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Txn delete did not reach the prefixed key: %v", err)
	}
	if got, err := base.Get(ctx, "mount/x/c"); err != nil || string(got) != "2" {
		t.Fatalf("Txn put: %q, %v", got, err)
	}
	if err := v.Put(ctx, "d/e", nil); err != nil {
		t.Fatal(err)
	}
	got, err := v.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"c", "d/"}) {
		t.Fatalf("view List(\"\") = %q, want [c d/]: it must not see keys outside the prefix", got)
	}
	// Keys that look like traversal are plain names inside the view.
	if err := v.Put(ctx, "../other/secret", []byte("overwrite")); err != nil {
		t.Fatal(err)
	}
	if got, _ := base.Get(ctx, "other/secret"); string(got) != "outside" {
		t.Fatalf("a view key escaped its prefix: other/secret = %q", got)
	}
	if err := v.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := base.Get(ctx, "mount/x/c"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Delete did not reach the prefixed key: %v", err)
	}
}

func TestViewInvalidKeys(t *testing.T) {
	ctx := t.Context()
	base := inmem.New()
	v := storage.NewView(base, "p/")
	if err := base.Put(ctx, "p/keep", []byte("k")); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"empty":    "",
		"NUL":      "a\x00",
		"too long": strings.Repeat("k", storage.MaxKeyLen), // plus the prefix
	}
	for name, key := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := v.Get(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Get: %v", err)
			}
			if err := v.Put(ctx, key, []byte("x")); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Put: %v", err)
			}
			if err := v.Delete(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Delete: %v", err)
			}
			err := v.Txn(ctx, []storage.Op{
				{Kind: storage.OpPut, Key: "fine", Value: []byte("x")},
				{Kind: storage.OpDelete, Key: "keep"},
				{Kind: storage.OpPut, Key: key, Value: []byte("x")},
			})
			if !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Txn: %v", err)
			}
			names, err := base.List(ctx, "p/")
			if err != nil || !slices.Equal(names, []string{"keep"}) {
				t.Errorf("a failed call changed the store: %q, %v", names, err)
			}
		})
	}
}

func TestViewNested(t *testing.T) {
	ctx := t.Context()
	base := inmem.New()
	inner := storage.NewView(storage.NewView(base, "zone/a/"), "kv/")
	if err := inner.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if got, err := base.Get(ctx, "zone/a/kv/k"); err != nil || string(got) != "v" {
		t.Fatalf("nested view key: %q, %v", got, err)
	}
}

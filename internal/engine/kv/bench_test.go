package kv

import (
	"context"
	"fmt"
	"testing"

	"github.com/edgevault/edgevault/internal/logical"
)

const benchSecret = `{"data":{"username":"app","password":"correct-horse-battery-staple","host":"db.internal","port":5432}}`

// BenchmarkDataRead reads the latest version: one storage Get.
func BenchmarkDataRead(b *testing.B) {
	h := newHarness(b)
	for i := 0; i < 5; i++ {
		h.must(logical.UpdateOperation, "data/bench/app", benchSecret)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := &logical.Request{Operation: logical.ReadOperation, Path: "data/bench/app"}
		for pb.Next() {
			if _, err := h.kv.HandleRequest(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDataReadOldVersion reads a non-current version: two Gets.
func BenchmarkDataReadOldVersion(b *testing.B) {
	h := newHarness(b)
	for i := 0; i < 5; i++ {
		h.must(logical.UpdateOperation, "data/bench/app", benchSecret)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := &logical.Request{Operation: logical.ReadOperation, Path: "data/bench/app", Data: map[string]any{"version": "2"}}
		for pb.Next() {
			if _, err := h.kv.HandleRequest(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDataWrite writes new versions of 64 keys (pruning included).
func BenchmarkDataWrite(b *testing.B) {
	h := newHarness(b)
	data := body(b, benchSecret)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req := &logical.Request{Operation: logical.UpdateOperation, Path: fmt.Sprintf("data/bench/k%d", i%64), Data: data}
		if _, err := h.kv.HandleRequest(ctx, req); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

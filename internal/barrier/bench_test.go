package barrier

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
)

// Benchmarks of the hot path through the barrier over inmem; compare with
// the same operations on inmem alone to see the encryption cost.
func BenchmarkBarrier(b *testing.B) {
	value := make([]byte, 256)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		parallel bool
	}{{"serial", false}, {"parallel", true}} {
		b.Run("Put/"+tc.name, func(b *testing.B) {
			br, _, _ := newUnsealed(b)
			b.SetBytes(int64(len(value)))
			var n atomic.Int64
			put := func() {
				k := "bench/" + strconv.FormatInt(n.Add(1)%1024, 10)
				if err := br.Put(ctx, k, value); err != nil {
					b.Fatal(err)
				}
			}
			if tc.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						put()
					}
				})
				return
			}
			for b.Loop() {
				put()
			}
		})
		b.Run("Get/"+tc.name, func(b *testing.B) {
			br, _, _ := newUnsealed(b)
			keys := make([]string, 1024)
			for i := range keys {
				keys[i] = "bench/" + strconv.Itoa(i)
				if err := br.Put(ctx, keys[i], value); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(value)))
			var n atomic.Int64
			get := func() {
				if _, err := br.Get(ctx, keys[n.Add(1)%1024]); err != nil {
					b.Fatal(err)
				}
			}
			if tc.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						get()
					}
				})
				return
			}
			for b.Loop() {
				get()
			}
		})
	}
}

package bolt_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
)

// BenchmarkPutParallel measures durable Puts from about 64 concurrent
// writers (GOMAXPROCS × 32 goroutines), the case group commit is for.
func BenchmarkPutParallel(b *testing.B) {
	st := openTest(b, bolt.Options{})
	value := make([]byte, 256)
	var next atomic.Uint64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := fmt.Sprintf("bench/%08d", next.Add(1))
			if err := st.Put(b.Context(), k, value); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	s := st.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	if s.Commits > 0 {
		b.ReportMetric(float64(s.Requests)/float64(s.Commits), "writes/fsync")
	}
}

// BenchmarkPutSerial measures durable Puts from one writer: one fsync each.
func BenchmarkPutSerial(b *testing.B) {
	st := openTest(b, bolt.Options{})
	value := make([]byte, 256)
	for i := 0; b.Loop(); i++ {
		if err := st.Put(b.Context(), fmt.Sprintf("bench/%08d", i), value); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkGet measures parallel Gets of random keys among 100,000.
func BenchmarkGet(b *testing.B) {
	const keys = 100_000
	st := openTest(b, bolt.Options{})
	if err := fill(b, st, keys); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 0))
		for pb.Next() {
			if _, err := st.Get(b.Context(), fmt.Sprintf("bench/%08d", r.IntN(keys))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// fill stores n 256-byte values in Txns of 1,000 ops.
func fill(b *testing.B, st *bolt.Backend, n int) error {
	value := make([]byte, 256)
	for start := 0; start < n; start += 1000 {
		ops := make([]storage.Op, 0, 1000)
		for i := start; i < min(n, start+1000); i++ {
			ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("bench/%08d", i), Value: value})
		}
		if err := st.Txn(b.Context(), ops); err != nil {
			return err
		}
	}
	return nil
}

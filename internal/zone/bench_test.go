package zone

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// BenchmarkRewrap measures rewrap throughput: 10,000 records of 256 bytes
// are moved from one data key version to the next, per iteration. It
// reports records/s.
func BenchmarkRewrap(b *testing.B) {
	const records = 10_000
	backends := map[string]func(b *testing.B) storage.Backend{
		"inmem": func(*testing.B) storage.Backend { return inmem.New() },
		"bolt": func(b *testing.B) storage.Backend {
			st, err := bolt.Open(filepath.Join(b.TempDir(), "zone.db"), bolt.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = st.Close() })
			return st
		},
	}
	for _, name := range []string{"inmem", "bolt"} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			s := openStore(b, backends[name](b), newRoot(b))
			v := mustBackend(b, s, "")
			value := make([]byte, 256)
			var ops []storage.Op
			for i := range records {
				ops = append(ops, storage.Op{Kind: storage.OpPut, Key: fmt.Sprintf("kv/%02d/%06d", i%32, i), Value: value})
				if len(ops) == 1000 {
					if err := v.Txn(ctx, ops); err != nil {
						b.Fatal(err)
					}
					ops = ops[:0]
				}
			}
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				if _, err := s.Rotate(ctx, ""); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := s.Rewrap(ctx, ""); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(records*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

package pki

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/clocktest"
	"github.com/edgevault/edgevault/internal/logical"
)

// BenchmarkIssueEC issues EC P-256 certificates from an EC P-256 root at
// 16 concurrent callers (SetParallelism over GOMAXPROCS) into a real bbolt
// file: "store" writes every certificate (group-committed by the bolt
// backend), "no_store" skips the write as Vault's no_store does.
func BenchmarkIssueEC(b *testing.B) {
	for _, noStore := range []bool{false, true} {
		name := "store"
		if noStore {
			name = "no_store"
		}
		b.Run(name, func(b *testing.B) {
			h := newHarness(b)
			h.clock = clocktest.New(time.Now())
			h.pki.clock = time.Now
			h.must(logical.UpdateOperation, "root/generate/internal", `{"common_name":"Bench Root","key_type":"ec"}`)
			h.must(logical.UpdateOperation, "roles/web", fmt.Sprintf(`{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"ec","no_store":%v}`, noStore))
			procs := testingProcs()
			b.SetParallelism((16 + procs - 1) / procs)
			ctx := context.Background()
			var n atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					req := &logical.Request{Operation: logical.UpdateOperation, Path: "issue/web",
						Data: map[string]any{"common_name": fmt.Sprintf("h%d.example.com", i)}}
					if _, err := h.pki.HandleRequest(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "issues/s")
		})
	}
}

// testingProcs is GOMAXPROCS, the number of goroutines per SetParallelism unit.
func testingProcs() int { return runtime.GOMAXPROCS(0) }

package lease

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// countingRevoker counts revocations; the benchmarks' Revoker fixture.
type countingRevoker struct{ n atomic.Int64 }

func (c *countingRevoker) Revoke(context.Context, Lease) error { c.n.Add(1); return nil }

func benchStores(b *testing.B, fn func(b *testing.B, st storage.Backend)) {
	b.Run("bolt", func(b *testing.B) { fn(b, openBolt(b, filepath.Join(b.TempDir(), "zone.db"))) })
	b.Run("inmem", func(b *testing.B) { fn(b, inmem.New()) })
}

func benchManager(b *testing.B, st storage.Backend, r Revoker, now func() time.Time, workers int) *Manager {
	m, err := New(Config{Store: storage.NewView(st, "sys/expire/"), Revokers: func(string) Revoker { return r },
		Now: now, Workers: workers})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkRegister measures durable Register calls from 64 goroutines
// (the bolt backend groups their commits).
func BenchmarkRegister(b *testing.B) {
	benchStores(b, func(b *testing.B, st storage.Backend) {
		m := benchManager(b, st, &countingRevoker{}, nil, 0)
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := m.Register(b.Context(), Lease{Path: "database/creds/ro", TTL: time.Hour, Renewable: true,
					TokenAccessor: "acc", Data: []byte(`{"db_name":"pg","username":"v-ro-abcdefgh"}`)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		reportFsyncs(b, st)
	})
}

// BenchmarkMillion fills a store with leaseCount leases through Register,
// then measures a fresh Manager's rebuild (Start) time and queue memory,
// and the expiry throughput when every lease is due at once. Run with
// -benchtime=1x.
func BenchmarkMillion(b *testing.B) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	benchStores(b, func(b *testing.B, st storage.Backend) {
		for b.Loop() {
			millionOnce(b, st, n)
		}
	})
}

func millionOnce(b *testing.B, st storage.Backend, n int) {
	ctx := context.Background()
	r := &countingRevoker{}
	fill := benchManager(b, st, r, nil, 0)
	t0 := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if _, err := fill.Register(ctx, Lease{Path: fmt.Sprintf("database/creds/r%d", i%8), TTL: time.Hour,
					Renewable: true, TokenAccessor: fmt.Sprintf("acc%d", i%1000),
					Data: []byte(`{"db_name":"pg","username":"v-ro-abcdefgh"}`)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	regDur := time.Since(t0)

	// Rebuild and queue memory, nothing due yet.
	m := benchManager(b, st, r, nil, 0)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	t1 := time.Now()
	if err := m.Start(ctx); err != nil {
		b.Fatal(err)
	}
	rebuild := time.Since(t1)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if q := m.QueueLen(); q != n {
		b.Fatalf("queue holds %d entries, want %d", q, n)
	}
	perLease := float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / float64(n)
	m.Stop()

	// Everything due: a clock two hours ahead.
	for _, workers := range []int{DefaultWorkers} {
		late := func() time.Time { return time.Now().Add(2 * time.Hour) }
		e := benchManager(b, st, r, late, workers)
		t2 := time.Now()
		if err := e.Start(ctx); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		for r.n.Load() < int64(n) {
			time.Sleep(time.Millisecond)
		}
		expDur := time.Since(t3)
		startDur := t3.Sub(t2)
		e.Stop()
		if names, err := e.List(ctx, "database/creds/r0"); err != nil || len(names) != 0 {
			b.Fatalf("after expiry: %d leases left under r0 (%v)", len(names), err)
		}
		b.ReportMetric(float64(n)/expDur.Seconds(), "expire/s")
		b.ReportMetric(startDur.Seconds(), "start2_s")
	}
	b.ReportMetric(float64(n)/regDur.Seconds(), "register/s")
	b.ReportMetric(rebuild.Seconds(), "rebuild_s")
	b.ReportMetric(perLease, "queue_B/lease")
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), "queue_alloc_B/lease")
	b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap_MiB")
}

// reportFsyncs reports the bolt backend's writes per commit.
func reportFsyncs(b *testing.B, st storage.Backend) {
	if bs, ok := st.(*bolt.Backend); ok {
		if s := bs.Stats(); s.Commits > 0 {
			b.ReportMetric(float64(s.Requests)/float64(s.Commits), "writes/fsync")
		}
	}
}

package spool

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// BenchmarkAppend measures Append of a 332-byte record (a ~300-byte JSON
// line and a 32-byte seed) from 16 goroutines, with the default fsync timer
// and a forwarder reading and committing concurrently, as on the agent.
func BenchmarkAppend(b *testing.B) {
	b.Run("parallel16+forwarder", func(b *testing.B) { benchAppend(b, 8, true) })
	b.Run("parallel16", func(b *testing.B) { benchAppend(b, 8, false) })
	b.Run("serial", func(b *testing.B) { benchAppend(b, 0, false) })
}

func benchAppend(b *testing.B, parallelism int, forward bool) {
	rec := bytes.Repeat([]byte("a"), 332)
	s, err := Open(b.TempDir(), Options{MaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	if forward {
		go func() {
			defer close(done)
			for {
				recs, err := s.Next(512, 256<<10)
				if err != nil {
					b.Error(err)
					return
				}
				if recs == nil {
					select {
					case <-s.Wait():
						continue
					case <-stop:
						return
					}
				}
				if err := s.Commit(recs[len(recs)-1].Seq); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	} else {
		close(done)
	}
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	b.ResetTimer()
	if parallelism == 0 {
		for b.Loop() {
			if _, err := s.Append(rec); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism(parallelism) // 8 × GOMAXPROCS(2) = 16 goroutines
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Append(rec); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.StopTimer()
	close(stop)
	<-done
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAppendPaced50k offers the agent's peak load instead of
// saturating the spool: 16 goroutines together appending 50,000 records/s,
// with the default fsync timer, 16 MiB segments and a forwarder. It reports
// Append latency percentiles; rolls and fsyncs show up in the tail.
// ns/op is fixed by the pacing (20 µs) and means nothing.
func BenchmarkAppendPaced50k(b *testing.B) {
	const goroutines, rate = 16, 50_000
	rec := bytes.Repeat([]byte("a"), 332)
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			recs, err := s.Next(512, 256<<10)
			if err != nil {
				b.Error(err)
				return
			}
			if recs == nil {
				select {
				case <-s.Wait():
					continue
				case <-stop:
					return
				}
			}
			if err := s.Commit(recs[len(recs)-1].Seq); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	var (
		mu   sync.Mutex
		hist [1 << 14]int64 // µs buckets
		wg   sync.WaitGroup
	)
	interval := time.Second * goroutines / rate
	per := b.N/goroutines + 1
	b.ResetTimer()
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local [len(hist)]int64
			next := time.Now()
			for range per {
				next = next.Add(interval)
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				start := time.Now()
				if _, err := s.Append(rec); err != nil {
					b.Error(err)
					return
				}
				local[min(time.Since(start).Microseconds(), int64(len(local)-1))]++
			}
			mu.Lock()
			for i, n := range local {
				hist[i] += n
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(percentile(hist[:], 0.5)), "p50-µs")
	b.ReportMetric(float64(percentile(hist[:], 0.99)), "p99-µs")
	b.ReportMetric(float64(percentile(hist[:], 0.999)), "p99.9-µs")
	b.ReportMetric(float64(percentile(hist[:], 1)), "max-µs")
	close(stop)
	<-done
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// percentile returns the bucket (µs) below which fraction q of the counts fall.
func percentile(hist []int64, q float64) int {
	var total int64
	for _, n := range hist {
		total += n
	}
	target := int64(float64(total) * q)
	var seen int64
	for i, n := range hist {
		seen += n
		if seen > target || (seen == total && n > 0 && q == 1) {
			return i
		}
	}
	return len(hist) - 1
}

package bench

import (
	"math"
	"slices"
	"time"
)

// Result is what one run measured. A request counts when it overlaps the
// measured window: it started before the window closed (it is then waited
// for) and finished after the window opened.
type Result struct {
	// Op is the operation driven.
	Op Op
	// Concurrency is the number of workers.
	Concurrency int
	// Elapsed is the measured window: Config.Duration, or less when the run
	// was cancelled.
	Elapsed time.Duration
	// Ops counts completed requests, errors included.
	Ops int64
	// Errors counts requests that failed: a transport error or a non-2xx status.
	Errors int64
	// FirstError describes the first error seen in the window ("" if none).
	// It holds the method, path, status and the server's message, never the
	// token.
	FirstError string
	// Latency percentiles over every completed request (errors included),
	// nearest-rank.
	P50, P99, P999, Max time.Duration
}

// OpsPerSec is Ops divided by Elapsed (0 when nothing was measured).
func (r Result) OpsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// Summary is the stable, machine-readable form of a Result (the CLI's
// -format json). Field names do not change; new fields may be added.
type Summary struct {
	Op          string  `json:"op"`
	Concurrency int     `json:"concurrency"`
	DurationS   float64 `json:"duration_s"`
	Ops         int64   `json:"ops"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	Errors      int64   `json:"errors"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	P999Ms      float64 `json:"p999_ms"`
	MaxMs       float64 `json:"max_ms"`
	FirstError  string  `json:"first_error,omitempty"`
}

// Summary converts r, rounding milliseconds to microseconds and rates to
// hundredths.
func (r Result) Summary() Summary {
	return Summary{
		Op:          string(r.Op),
		Concurrency: r.Concurrency,
		DurationS:   round(r.Elapsed.Seconds(), 1e3),
		Ops:         r.Ops,
		OpsPerSec:   round(r.OpsPerSec(), 100),
		Errors:      r.Errors,
		P50Ms:       ms(r.P50),
		P99Ms:       ms(r.P99),
		P999Ms:      ms(r.P999),
		MaxMs:       ms(r.Max),
		FirstError:  r.FirstError,
	}
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 1e3) }

func round(v, scale float64) float64 { return math.Round(v*scale) / scale }

// Percentile returns the p-th percentile (0 <= p <= 100) of sorted, which
// must be in ascending order, by the nearest-rank method: the smallest value
// such that at least p% of the values are less than or equal to it. It
// returns 0 for an empty slice; p is clamped to [0, 100].
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if math.IsNaN(p) || p <= 0 {
		return sorted[0]
	}
	if p >= 100 {
		return sorted[n-1]
	}
	// The small epsilon keeps 99.9% of 1000 at rank 999 despite rounding.
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// summarize fills the latency fields of r from the workers' samples.
func (r *Result) summarize(samples [][]time.Duration) {
	total := 0
	for _, s := range samples {
		total += len(s)
	}
	all := make([]time.Duration, 0, total)
	for _, s := range samples {
		all = append(all, s...)
	}
	slices.Sort(all)
	r.P50 = Percentile(all, 50)
	r.P99 = Percentile(all, 99)
	r.P999 = Percentile(all, 99.9)
	r.Max = Percentile(all, 100)
}

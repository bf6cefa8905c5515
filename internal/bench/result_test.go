package bench

import (
	"encoding/json"
	"math"
	"slices"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i + 1)
	}
	thousand := make([]time.Duration, 1000)
	for i := range thousand {
		thousand[i] = time.Duration(i + 1)
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value p0", []time.Duration{7}, 0, 7},
		{"one value p50", []time.Duration{7}, 50, 7},
		{"one value p100", []time.Duration{7}, 100, 7},
		{"two values p50", []time.Duration{1, 2}, 50, 1},
		{"two values p51", []time.Duration{1, 2}, 51, 2},
		{"1..100 p50", hundred, 50, 50},
		{"1..100 p99", hundred, 99, 99},
		{"1..100 p99.9", hundred, 99.9, 100},
		{"1..100 p100", hundred, 100, 100},
		{"1..100 p1", hundred, 1, 1},
		{"1..1000 p99.9", thousand, 99.9, 999},
		{"1..1000 p99", thousand, 99, 990},
		{"1..1000 p50", thousand, 50, 500},
		{"negative p clamps", hundred, -5, 1},
		{"p over 100 clamps", hundred, 150, 100},
		{"NaN is p0", hundred, math.NaN(), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(%v) = %d, want %d", tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeMergesWorkers(t *testing.T) {
	var r Result
	r.summarize([][]time.Duration{{5, 1, 9}, {}, {3, 7}, {2, 4, 6, 8, 10}})
	if r.P50 != 5 || r.P99 != 10 || r.P999 != 10 || r.Max != 10 {
		t.Errorf("got p50=%d p99=%d p999=%d max=%d", r.P50, r.P99, r.P999, r.Max)
	}
	var empty Result
	empty.summarize(nil)
	if empty.P50 != 0 || empty.Max != 0 {
		t.Errorf("empty: %+v", empty)
	}
}

func TestSummaryJSONFieldsAreStable(t *testing.T) {
	r := Result{
		Op: OpKVRead, Concurrency: 16, Elapsed: 2 * time.Second, Ops: 1000, Errors: 3,
		P50: 1500 * time.Microsecond, P99: 3 * time.Millisecond, P999: 4 * time.Millisecond, Max: 5 * time.Millisecond,
		FirstError: "GET /v1/secret/data/bench/1: 500 Internal Server Error",
	}
	b, err := json.Marshal(r.Summary())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"op": "kv-read", "concurrency": 16.0, "duration_s": 2.0, "ops": 1000.0, "ops_per_sec": 500.0,
		"errors": 3.0, "p50_ms": 1.5, "p99_ms": 3.0, "p999_ms": 4.0, "max_ms": 5.0,
		"first_error": "GET /v1/secret/data/bench/1: 500 Internal Server Error",
	}
	keys := func(m map[string]any) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	if !slices.Equal(keys(got), keys(want)) {
		t.Fatalf("fields %v, want %v", keys(got), keys(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	r.FirstError = ""
	b, _ = json.Marshal(r.Summary())
	got = nil
	if err := json.Unmarshal(b, &got); err != nil || len(got) != 10 {
		t.Errorf("without an error, want 10 fields: %s", b)
	}
}

func TestOpsPerSecWithoutElapsed(t *testing.T) {
	if got := (Result{Ops: 10}).OpsPerSec(); got != 0 {
		t.Errorf("OpsPerSec = %v, want 0", got)
	}
}

package database

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/pgtest"
)

// BenchmarkCredsRoundTrip measures one creds/:role issue (CREATE ROLE …
// VALID UNTIL, lease recorded) followed by its Revoke (default revocation:
// REASSIGN/DROP OWNED, DROP ROLE, end sessions), against a real local
// PostgreSQL, and reports p50/p99 of the round trip.
func BenchmarkCredsRoundTrip(b *testing.B) {
	h := newHarness(b, pgtest.Start(b))
	h.configure(appRole)
	ctx := context.Background()
	var lat, issue []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		resp, err := h.db.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "creds/app", MountPoint: "database/"})
		if err != nil {
			b.Fatal(err)
		}
		issue = append(issue, time.Since(t0))
		le := h.leases.get(b, resp.LeaseID)
		if err := h.db.Revoke(ctx, le.Data); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(issue)
	if len(lat) > 0 {
		b.ReportMetric(float64(issue[len(issue)/2].Microseconds()), "issue-p50-µs")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

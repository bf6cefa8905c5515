package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

// BenchmarkLocalIssueEC issues EC P-256 certificates from an agent's
// offline sub-CA (LocalIssuer: the role's checks, a new key, a signature;
// nothing stored) at 16 concurrent callers.
func BenchmarkLocalIssueEC(b *testing.B) {
	h := newHarness(b)
	h.must(logical.UpdateOperation, "root/generate/internal", `{"common_name":"Bench Root","key_type":"ec"}`)
	h.must(logical.UpdateOperation, "roles/web", `{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"ec","allow_offline_sub_ca":true}`)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := h.pki.SignAgentSubCA(context.Background(), "web", "node-1", k.Public())
	if err != nil {
		b.Fatal(err)
	}
	li := &LocalIssuer{Constraints: s.Constraints, CA: s.Certificate, Key: k, Clock: time.Now}
	procs := testingProcs()
	b.SetParallelism((16 + procs - 1) / procs)
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := li.Issue(map[string]any{"common_name": fmt.Sprintf("h%d.example.com", i)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "issues/s")
}

// BenchmarkSignAgentSubCA signs sub-CAs (stored in a real bbolt file), one
// caller: what the server pays per agent refresh.
func BenchmarkSignAgentSubCA(b *testing.B) {
	h := newHarness(b)
	h.must(logical.UpdateOperation, "root/generate/internal", `{"common_name":"Bench Root","key_type":"ec"}`)
	h.must(logical.UpdateOperation, "roles/web", `{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"ec","allow_offline_sub_ca":true}`)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.pki.SignAgentSubCA(ctx, "web", "node-1", k.Public()); err != nil {
			b.Fatal(err)
		}
	}
}

package attest_test

import (
	"crypto/x509"
	"testing"

	"github.com/edgevault/edgevault/internal/attest/jointoken"
)

// BenchmarkEnroll measures join-token enrollments per second: redeem the
// token (one durable write), issue the certificate, write the agent record
// (a second durable write). Tokens are minted outside the timer; the agent
// key is reused, as key generation happens on the agent.
func BenchmarkEnroll(b *testing.B) {
	for name, open := range backends() {
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, open(b))
			ctx := b.Context()
			k := newKey(b)
			e.enroll(b, "east", t0) // create the CA outside the timer
			toks := make([]string, b.N)
			for i := range toks {
				toks[i] = e.token(b, "east", jointoken.Options{}, t0)
			}
			b.ResetTimer()
			for i := range b.N {
				if _, err := e.svc.Enroll(ctx, "east", toks[i], &k.PublicKey, t0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "enroll/s")
		})
	}
}

// BenchmarkEnrollParallel is BenchmarkEnroll from many goroutines, so bolt
// can group the writes of concurrent enrollments into shared fsyncs.
func BenchmarkEnrollParallel(b *testing.B) {
	for name, open := range backends() {
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, open(b))
			ctx := b.Context()
			k := newKey(b)
			e.enroll(b, "east", t0)
			toks := make(chan string, b.N)
			for range b.N {
				toks <- e.token(b, "east", jointoken.Options{}, t0)
			}
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.svc.Enroll(ctx, "east", <-toks, &k.PublicKey, t0); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "enroll/s")
		})
	}
}

// BenchmarkAuthorize measures checking one client certificate: SPIFFE ID
// parse, chain verification against the zone CA, and the agent record read
// (decrypted from the zone store).
func BenchmarkAuthorize(b *testing.B) {
	for name, open := range backends() {
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, open(b))
			en, _ := e.enroll(b, "east", t0)
			chain := []*x509.Certificate{en.Certificate}
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.svc.Authorize(ctx, chain, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCAVerify is the certificate check of Authorize alone.
func BenchmarkCAVerify(b *testing.B) {
	e := newEnv(b, backends()["inmem"](b))
	en, _ := e.enroll(b, "east", t0)
	ca, err := e.svc.CA(b.Context(), "east", t0)
	if err != nil {
		b.Fatal(err)
	}
	chain := []*x509.Certificate{en.Certificate}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.Verify(chain, t0); err != nil {
			b.Fatal(err)
		}
	}
}

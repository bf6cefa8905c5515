package tpm_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/attest/tpm"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

func BenchmarkVerifyQuote(b *testing.B) {
	pol := tpm.Policy{EKHashes: []string{zeroPCR}, PCRs: pcrs07, AllowedPCRs: []map[string]string{zeroSet()}}
	for _, name := range []string{"ecc", "rsa"} {
		g := loadGolden(b, name+".json")
		q := g.quote(b)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := tpm.VerifyQuote(pol, g.AKPublic, q, g.Qualifying); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMakeCredential(b *testing.B) {
	secret := bytes.Repeat([]byte{1}, 32)
	for _, name := range []string{"ecc", "rsa"} {
		g := loadGolden(b, name+".json")
		b.Run(name+"-EK", func(b *testing.B) {
			for b.Loop() {
				if _, _, err := tpm.MakeCredential(g.EKPublic, g.AKPublic, secret); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCheckEK(b *testing.B) {
	g := loadGolden(b, "ecc.json")
	h, _ := tpm.EKHash(g.EKPublic)
	ca := newTestCA(b, "EK CA")
	cert := ca.ekCert(b, cryptoPub(b, g.EKPublic), t0.Add(1e15))
	for _, c := range []struct {
		name string
		p    tpm.Policy
		cert []byte
	}{
		{"hash-of-1000", tpm.Policy{EKHashes: append(make1000Hashes(), h), PCRs: pcrs07}, nil},
		{"ca", tpm.Policy{EKCAs: []string{ca.pem}, PCRs: pcrs07}, cert},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := tpm.CheckEK(c.p, g.EKPublic, c.cert, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func make1000Hashes() []string {
	out := make([]string, 1000)
	for i := range out {
		out[i] = zeroPCR[:60] + string("0123456789abcdef"[i%16]) + string("0123456789abcdef"[i/16%16]) + string("0123456789abcdef"[i/256%16]) + "f"
	}
	return out
}

// constReader reads as an endless run of one byte.
type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// BenchmarkRound is the server side of one enrollment, Begin then Attest,
// from many goroutines. Nonces and secrets come from a constant source so
// one answer, made with the simulator before the timer starts, fits every
// challenge; everything else (EK check, MakeCredential, the challenge's
// Put, Get and Delete, the quote check) is real.
//
// Sub-benchmarks "xN" run N goroutines per CPU: concurrent agents, which
// lets bbolt cover several challenges' writes with one fsync.
func BenchmarkRound(b *testing.B) {
	for _, c := range []struct {
		store string
		par   int
	}{{"bolt", 1}, {"bolt", 8}, {"inmem", 1}} {
		store := c.store
		b.Run(fmt.Sprintf("%s/x%d", c.store, c.par), func(b *testing.B) {
			s := openSim(b, tpm2.ECCEKTemplate)
			var f *fixture
			if store == "bolt" {
				f = newFixture(b)
			} else {
				f = newFixtureOn(b, map[string]storage.Backend{"east": inmem.New(), "west": inmem.New()})
			}
			tpm.SetRandForTest(f.a, constReader(0x42))
			f.setPolicy("east", ekPolicy(b, s))
			ak := s.newAK(eccAKTemplate)
			tlsDER, _ := tlsKey(b)
			beginEv := mustJSON(b, tpm.BeginEvidence{EKPublic: s.ekPub, AKPublic: ak.Public})
			ch, p, err := begin(b, f, "east", s, ak, nil, t0)
			if err != nil {
				b.Fatal(err)
			}
			ans := mustJSON(b, answer(b, s, ak, p, tlsDER))
			if _, err := f.a.Attest(context.Background(), attest.Request{Zone: "east", Challenge: ch.ID, Evidence: ans, Now: t0}); err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(c.par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					ch, err := f.a.Begin(ctx, "east", beginEv, t0)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := f.a.Attest(ctx, attest.Request{Zone: "east", Challenge: ch.ID, Evidence: ans, Now: t0}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "attestations/s")
		})
	}
}

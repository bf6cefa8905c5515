package audit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"testing"

	"github.com/edgevault/edgevault/internal/audit/leaf"
)

// BenchmarkAppendSigned is the server's cost of taking an agent's batch of
// 1,000 signed entries onto a file device and the log, per entry.
func BenchmarkAppendSigned(b *testing.B) {
	r := newRig(b, Options{})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	const n = 1000
	entries := make([]leaf.SignedLine, n)
	leaves := make([][]byte, n)
	for i := range entries {
		line := fmt.Appendf(nil, `{"seq":%d,"time":"2026-11-26T03:51:53.123456789Z","type":"agent-read","request":{"id":"6f1c2a3b-1111-2222-3333-444455556666","operation":"read","path":"secret/data/app/db","mode":"online","remote_address":"127.0.0.1","namespace":{"id":"edge"}},"response":{"status_code":200}}`, i+1)
		seed := make([]byte, leaf.SeedSize)
		rand.Read(seed)
		fields, _ := leaf.Fields(line)
		leaves[i], _ = leaf.Commit(fields, seed)
		entries[i] = leaf.SignedLine{Line: line, Seed: seed}
	}
	sig, err := leaf.SignBatch(leaves, key)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.b.AppendSigned(SignedBatch{Entries: entries, Signer: "spiffe://x/zone/edge/agent/a", PublicKey: der, Signature: sig}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
}

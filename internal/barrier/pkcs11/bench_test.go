package pkcs11

import (
	"bytes"
	"context"
	"testing"

	"github.com/edgevault/edgevault/internal/barrier/pkcs11/softhsmtest"
)

// BenchmarkUnseal measures what an auto-unseal costs in the HSM: opening a
// session (login, key lookup) on a fresh protector, as a restarted server
// does, and unwrapping the root key.
func BenchmarkUnseal(b *testing.B) {
	softhsmtest.NewToken(b)
	cfg := testConfig()
	if err := GenerateKey(cfg); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	p, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	root := bytes.Repeat([]byte{7}, 32)
	blob, err := p.Wrap(ctx, root)
	p.Close()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		p, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Unwrap(ctx, blob); err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}

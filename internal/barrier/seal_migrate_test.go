package barrier

import (
	"context"
	"errors"
	"testing"

	"github.com/edgevault/edgevault/internal/storage/inmem"
)

func TestSealMigrationRoundTrip(t *testing.T) {
	ctx := context.Background()
	phys := inmem.New()
	b := New(phys)
	m := NewSeal(b, phys)
	unseal, err := m.Init(ctx, 3, 2, func(ctx context.Context) error { return b.Put(ctx, "data/x", []byte("v")) })
	if err != nil {
		t.Fatal(err)
	}
	p := newGCMProtector(t)

	// Refusals change nothing.
	if _, err := MigrateToAuto(ctx, phys, unseal[:1], "pkcs11", p, 3, 2); !errors.Is(err, ErrInvalidShare) {
		t.Fatalf("too few unseal keys: %v", err)
	}
	wrong := [][]byte{append([]byte(nil), unseal[0]...), unseal[1]}
	wrong[0][0] ^= 1
	if _, err := MigrateToAuto(ctx, phys, wrong, "pkcs11", p, 3, 2); !errors.Is(err, ErrBadRootKey) {
		t.Fatalf("wrong unseal key: %v", err)
	}
	if _, err := MigrateToAuto(ctx, phys, unseal[:2], "pkcs11", p, 2, 3); !errors.Is(err, ErrInvalidSealConfig) {
		t.Fatalf("bad recovery config: %v", err)
	}
	if _, err := MigrateToShamir(ctx, phys, unseal[:2], p, 3, 2); err == nil {
		t.Fatal("migrating shamir to shamir succeeded")
	}
	if _, err := phys.Get(ctx, WrappedRootKeyPath); err == nil {
		t.Fatal("a refused migration wrote the wrapped key")
	}

	recovery, err := MigrateToAuto(ctx, phys, unseal[1:3], "pkcs11", p, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := NewAutoSeal(New(phys), phys, "pkcs11", p)
	if err := a.AutoUnseal(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := a.b.Get(ctx, "data/x"); err != nil || string(v) != "v" {
		t.Fatalf("data after migration to pkcs11: %q %v", v, err)
	}

	if _, err := MigrateToShamir(ctx, phys, recovery[:2], p, 1, 1); !errors.Is(err, ErrInvalidShare) {
		t.Fatalf("too few recovery keys: %v", err)
	}
	if _, err := MigrateToShamir(ctx, phys, unseal[:3], p, 1, 1); !errors.Is(err, ErrInvalidShare) {
		t.Fatalf("unseal keys as recovery keys: %v", err)
	}
	newKeys, err := MigrateToShamir(ctx, phys, recovery[2:5], p, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{WrappedRootKeyPath, RecoveryVerifierPath} {
		if _, err := phys.Get(ctx, k); err == nil {
			t.Fatalf("%s left after migrating back to shamir", k)
		}
	}
	b2 := New(phys)
	m2 := NewSeal(b2, phys)
	if st, err := m2.SubmitShare(ctx, newKeys[0]); err != nil || st.Sealed {
		t.Fatalf("unseal with the new key: %+v %v", st, err)
	}
	if v, err := b2.Get(ctx, "data/x"); err != nil || string(v) != "v" {
		t.Fatalf("data after migration back: %q %v", v, err)
	}
}

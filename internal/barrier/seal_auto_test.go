package barrier

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// gcmProtector is a software Protector for tests: the real one (an HSM
// over PKCS#11) is tested in package pkcs11 and in cmd/edgevault.
type gcmProtector struct {
	aead cipher.AEAD
	fail error
}

var _ Protector = (*gcmProtector)(nil)

func newGCMProtector(t *testing.T) *gcmProtector {
	key := make([]byte, 32)
	rand.Read(key)
	blk, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(blk)
	return &gcmProtector{aead: aead}
}

func (p *gcmProtector) Wrap(_ context.Context, k []byte) ([]byte, error) {
	if p.fail != nil {
		return nil, p.fail
	}
	n := make([]byte, 12)
	rand.Read(n)
	return p.aead.Seal(n, n, k, nil), nil
}

func (p *gcmProtector) Unwrap(_ context.Context, b []byte) ([]byte, error) {
	if p.fail != nil {
		return nil, p.fail
	}
	if len(b) < 12 {
		return nil, errors.New("short")
	}
	return p.aead.Open(nil, b[:12], b[12:], nil)
}

func TestAutoSealInitAndUnseal(t *testing.T) {
	ctx := context.Background()
	phys := inmem.New()
	p := newGCMProtector(t)
	b := New(phys)
	m, err := NewAutoSeal(b, phys, "pkcs11", p)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := m.Status(ctx)
	if st.Type != "pkcs11" || !st.RecoverySeal || st.Initialized {
		t.Fatalf("status before init: %+v", st)
	}
	if _, err := m.Init(ctx, 1, 1, nil); !errors.Is(err, ErrInvalidSealConfig) {
		t.Fatalf("Init with secret shares on an auto seal: %v", err)
	}
	for _, tt := range []struct{ n, k int }{{0, 0}, {3, 1}, {2, 3}, {256, 2}} {
		if _, err := m.InitRecovery(ctx, tt.n, tt.k, nil); !errors.Is(err, ErrInvalidSealConfig) {
			t.Errorf("InitRecovery(%d,%d): %v", tt.n, tt.k, err)
		}
	}
	// A protector failure leaves storage uninitialized.
	p.fail = errors.New("hsm down")
	if _, err := m.InitRecovery(ctx, 5, 3, nil); err == nil {
		t.Fatal("init with a failing protector succeeded")
	}
	if ok, _ := b.Initialized(ctx); ok {
		t.Fatal("failed init left storage initialized")
	}
	p.fail = nil

	keys, err := m.InitRecovery(ctx, 5, 3, func(ctx context.Context) error {
		return b.Put(ctx, "data/x", []byte("hello"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 5 {
		t.Fatalf("%d recovery shares", len(keys))
	}
	if _, err := m.InitRecovery(ctx, 5, 3, nil); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("second init: %v", err)
	}
	wrapped, err := phys.Get(ctx, WrappedRootKeyPath)
	if err != nil || len(wrapped) == 0 {
		t.Fatalf("wrapped root key not stored: %v", err)
	}

	// A restarted server: fresh barrier and seal over the same storage.
	b2 := New(phys)
	m2, _ := NewAutoSeal(b2, phys, "pkcs11", p)
	p.fail = errors.New("hsm down")
	if err := m2.AutoUnseal(ctx); err == nil || !b2.Sealed() {
		t.Fatal("auto-unseal with the HSM down succeeded")
	}
	p.fail = nil
	if err := m2.AutoUnseal(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := b2.Get(ctx, "data/x"); err != nil || string(v) != "hello" {
		t.Fatalf("data after auto-unseal: %q %v", v, err)
	}
	st, _ = m2.Status(ctx)
	if st.Type != "pkcs11" || !st.RecoverySeal || st.Sealed || st.T != 3 || st.N != 5 {
		t.Fatalf("status after auto-unseal: %+v", st)
	}
	if _, err := m2.SubmitShare(ctx, keys[0]); err != nil {
		t.Fatalf("SubmitShare while unsealed should only report status: %v", err)
	}
	m2.SealNow()
	if _, err := m2.SubmitShare(ctx, keys[0]); !errors.Is(err, ErrInvalidShare) {
		t.Fatalf("unseal key on an auto seal: %v", err)
	}

	// Recovery key verification.
	if err := m2.VerifyRecoveryKey(ctx, keys[1:4]); err != nil {
		t.Fatalf("verify recovery key: %v", err)
	}
	if err := m2.VerifyRecoveryKey(ctx, keys[:2]); !errors.Is(err, ErrInvalidShare) {
		t.Fatalf("too few shares: %v", err)
	}
	bad := bytes.Clone(keys[0])
	bad[0] ^= 1
	if err := m2.VerifyRecoveryKey(ctx, [][]byte{bad, keys[1], keys[2]}); !errors.Is(err, ErrInvalidShare) {
		t.Fatalf("bad share: %v", err)
	}

	// Tampering with the wrapped key is detected.
	tampered := bytes.Clone(wrapped)
	tampered[len(tampered)-1] ^= 1
	phys.Put(ctx, WrappedRootKeyPath, tampered)
	b3 := New(phys)
	m3, _ := NewAutoSeal(b3, phys, "pkcs11", p)
	if err := m3.AutoUnseal(ctx); err == nil || !b3.Sealed() {
		t.Fatal("tampered wrapped key unsealed")
	}
}

func TestAutoSealTypeMismatch(t *testing.T) {
	ctx := context.Background()
	phys := inmem.New()
	m := NewSeal(New(phys), phys)
	if _, err := m.Init(ctx, 1, 1, nil); err != nil {
		t.Fatal(err)
	}
	m2, _ := NewAutoSeal(New(phys), phys, "pkcs11", newGCMProtector(t))
	if err := m2.AutoUnseal(ctx); !errors.Is(err, ErrSealTypeMismatch) {
		t.Fatalf("got %v, want ErrSealTypeMismatch", err)
	}
	empty := inmem.New()
	m3, _ := NewAutoSeal(New(empty), empty, "pkcs11", newGCMProtector(t))
	if err := m3.AutoUnseal(ctx); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("got %v, want ErrNotInitialized", err)
	}
	if _, err := NewAutoSeal(New(empty), empty, "shamir", newGCMProtector(t)); err == nil {
		t.Fatal("NewAutoSeal accepted type shamir")
	}
	var _ storage.Backend = empty
}

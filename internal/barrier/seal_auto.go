package barrier

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/edgevault/edgevault/internal/barrier/shamir"
	"github.com/edgevault/edgevault/internal/storage"
)

// Physical keys of an auto-unseal seal, under ReservedPrefix.
const (
	// WrappedRootKeyPath holds the root key wrapped by the Protector.
	WrappedRootKeyPath = ReservedPrefix + "wrapped-root-key"
	// RecoveryVerifierPath holds a SHA-256 verifier of the recovery key
	// (never the key or its shares).
	RecoveryVerifierPath = ReservedPrefix + "recovery-key-verifier"
)

// recoveryVerifierDomain separates the verifier hash from any other use.
const recoveryVerifierDomain = "edgevault recovery key verifier v1\x00"

// Protector protects the root key for an auto-unseal seal, typically with a
// key that never leaves an HSM. Wrap must return a blob that only Unwrap of
// the same key turns back into rootKey, and that fails authentication when
// modified. Both may be called concurrently and may fail while the key's
// holder is unreachable; errors must not contain key material or PINs.
type Protector interface {
	Wrap(ctx context.Context, rootKey []byte) ([]byte, error)
	Unwrap(ctx context.Context, blob []byte) ([]byte, error)
}

// autoSeal is the auto-unseal part of a Seal.
type autoSeal struct {
	typ string
	p   Protector
}

// NewAutoSeal returns a Seal whose root key is protected by p instead of
// Shamir unseal keys: InitRecovery stores the wrapped root key and hands
// out recovery key shares; AutoUnseal unseals without operators. typ names
// the seal in the stored configuration and in seal-status ("pkcs11").
func NewAutoSeal(b *Barrier, physical storage.Backend, typ string, p Protector) (*Seal, error) {
	if typ == "" || typ == "shamir" {
		return nil, fmt.Errorf("barrier: auto seal type %q: must name an auto-unseal seal", typ)
	}
	if p == nil {
		return nil, errors.New("barrier: auto seal: nil Protector")
	}
	m := NewSeal(b, physical)
	m.auto = &autoSeal{typ: typ, p: p}
	return m, nil
}

// InitRecovery initializes an auto-unseal seal: it generates the root key,
// wraps it with the Protector, and splits a separate random recovery key
// into shares recovery key shares, threshold of which rebuild it. Only a
// verifier of the recovery key is stored. Otherwise it behaves as Init:
// onInit runs on the briefly unsealed barrier, nothing is stored unless
// everything succeeds, and the barrier is sealed again on return (call
// AutoUnseal next).
func (m *Seal) InitRecovery(ctx context.Context, shares, threshold int, onInit func(ctx context.Context) error) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.auto == nil {
		return nil, fmt.Errorf("%w: recovery_shares and recovery_threshold apply only to auto-unseal, which this seal is not", ErrInvalidSealConfig)
	}
	cfg := SealConfig{Type: m.auto.typ, RecoveryShares: shares, RecoveryThreshold: threshold}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if ok, err := m.b.Initialized(ctx); err != nil {
		return nil, err
	} else if ok {
		return nil, ErrAlreadyInitialized
	}
	cfgBlob, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("barrier: init: encoding seal config: %w", err)
	}
	rootKey := make([]byte, KeySize)
	defer clear(rootKey)
	_, _ = rand.Read(rootKey) // never fails (Go 1.24+)
	wrapped, err := m.auto.p.Wrap(ctx, rootKey)
	if err != nil {
		return nil, fmt.Errorf("barrier: init: wrapping root key with the %s seal: %w", m.auto.typ, err)
	}
	recovery := make([]byte, KeySize)
	defer clear(recovery)
	_, _ = rand.Read(recovery)
	var keys [][]byte
	if shares == 1 {
		keys = [][]byte{append([]byte(nil), recovery...)}
	} else if keys, err = shamir.Split(recovery, shares, threshold); err != nil {
		return nil, fmt.Errorf("barrier: init: splitting recovery key: %w", err)
	}
	extra := []storage.Op{
		{Kind: storage.OpPut, Key: SealConfigPath, Value: cfgBlob},
		{Kind: storage.OpPut, Key: WrappedRootKeyPath, Value: wrapped},
		{Kind: storage.OpPut, Key: RecoveryVerifierPath, Value: recoveryVerifier(recovery)},
	}
	if err := m.b.initialize(ctx, rootKey, extra, onInit); err != nil {
		for _, k := range keys {
			clear(k)
		}
		return nil, err
	}
	m.cfg = &cfg
	m.resetLocked()
	return keys, nil
}

func recoveryVerifier(key []byte) []byte {
	h := sha256.New()
	h.Write([]byte(recoveryVerifierDomain))
	h.Write(key)
	return h.Sum(nil)
}

// VerifyRecoveryKey reports whether shares (threshold of the recovery key
// shares, or the key itself for one share) rebuild the stored recovery key.
// It returns ErrInvalidShare when they do not.
func (m *Seal) VerifyRecoveryKey(ctx context.Context, shares [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg, err := m.config(ctx)
	if err != nil {
		return err
	}
	if cfg == nil {
		return fmt.Errorf("barrier: verify recovery key: %w", ErrNotInitialized)
	}
	if !cfg.auto() {
		return fmt.Errorf("%w: the %s seal has no recovery key", ErrInvalidShare, cfg.Type)
	}
	want, err := m.physical.Get(ctx, RecoveryVerifierPath)
	if err != nil {
		return fmt.Errorf("barrier: reading recovery key verifier: %w", err)
	}
	var key []byte
	switch {
	case len(shares) < cfg.RecoveryThreshold:
		return fmt.Errorf("%w: %d recovery key shares given, %d needed", ErrInvalidShare, len(shares), cfg.RecoveryThreshold)
	case cfg.RecoveryShares == 1:
		key = append([]byte(nil), shares[0]...)
	default:
		if key, err = shamir.Combine(shares); err != nil {
			return fmt.Errorf("%w: combining the recovery key shares: %v", ErrInvalidShare, err)
		}
	}
	defer clear(key)
	if subtle.ConstantTimeCompare(recoveryVerifier(key), want) != 1 {
		return fmt.Errorf("%w: the recovery key shares do not rebuild the recovery key", ErrInvalidShare)
	}
	return nil
}

// AutoUnseal unwraps the stored root key with the Protector and unseals the
// barrier. It returns nil when already unsealed, ErrNotInitialized before
// InitRecovery, and ErrSealTypeMismatch when storage was initialized with
// another seal type (seal migration is needed). Protector errors are
// returned wrapped, so the caller can tell a wrong PIN from an unreachable
// HSM.
func (m *Seal) AutoUnseal(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.auto == nil {
		return errors.New("barrier: auto-unseal: this seal is not an auto-unseal seal")
	}
	if !m.b.Sealed() {
		return nil
	}
	cfg, err := m.config(ctx)
	if err != nil {
		return err
	}
	if cfg == nil {
		return fmt.Errorf("barrier: auto-unseal: %w", ErrNotInitialized)
	}
	if cfg.Type != m.auto.typ {
		return fmt.Errorf("%w: storage was initialized with the %q seal, the server is configured with %q", ErrSealTypeMismatch, cfg.Type, m.auto.typ)
	}
	wrapped, err := m.physical.Get(ctx, WrappedRootKeyPath)
	if err != nil {
		return fmt.Errorf("barrier: auto-unseal: reading the wrapped root key: %w", err)
	}
	rootKey, err := m.auto.p.Unwrap(ctx, wrapped)
	if err != nil {
		return fmt.Errorf("barrier: auto-unseal: unwrapping the root key with the %s seal: %w", m.auto.typ, err)
	}
	defer clear(rootKey)
	if err := m.b.Unseal(ctx, rootKey); err != nil {
		return fmt.Errorf("barrier: auto-unseal: %w", err)
	}
	return nil
}

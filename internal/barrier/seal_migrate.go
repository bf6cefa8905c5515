package barrier

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/edgevault/edgevault/internal/barrier/shamir"
	"github.com/edgevault/edgevault/internal/storage"
)

// Seal migration changes what protects the root key, not the root key: the
// keyring and every record stay as they are, and only the records of the
// seal (configuration, wrapped root key, recovery verifier) change, in one
// transaction. It runs offline, on storage no server is using.

// MigrateToAuto moves storage initialized with the Shamir seal to the
// auto-unseal seal typ protected by p. unsealKeys must be threshold of the
// current unseal keys (the root key itself for one share); they are checked
// against the keyring before anything is written. It returns the shares of
// a new recovery key, as InitRecovery does.
func MigrateToAuto(ctx context.Context, physical storage.Backend, unsealKeys [][]byte, typ string, p Protector, recoveryShares, recoveryThreshold int) ([][]byte, error) {
	m, err := NewAutoSeal(New(physical), physical, typ, p)
	if err != nil {
		return nil, err
	}
	cfg, err := m.config(ctx)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, fmt.Errorf("barrier: seal migration: %w", ErrNotInitialized)
	}
	if cfg.auto() {
		return nil, fmt.Errorf("barrier: seal migration: storage already uses the %q seal", cfg.Type)
	}
	newCfg := SealConfig{Type: typ, RecoveryShares: recoveryShares, RecoveryThreshold: recoveryThreshold}
	if err := newCfg.Validate(); err != nil {
		return nil, err
	}
	rootKey, err := combineKeys(*cfg, unsealKeys)
	if err != nil {
		return nil, err
	}
	defer clear(rootKey)
	if err := checkRootKey(ctx, physical, rootKey); err != nil {
		return nil, err
	}
	wrapped, err := p.Wrap(ctx, rootKey)
	if err != nil {
		return nil, fmt.Errorf("barrier: seal migration: wrapping the root key with the %s seal: %w", typ, err)
	}
	// The wrap must round-trip before the Shamir configuration is replaced.
	back, err := p.Unwrap(ctx, wrapped)
	if err != nil || !slices.Equal(back, rootKey) {
		clear(back)
		return nil, fmt.Errorf("barrier: seal migration: the %s seal did not unwrap what it wrapped: %v", typ, err)
	}
	clear(back)
	recovery := make([]byte, KeySize)
	defer clear(recovery)
	_, _ = rand.Read(recovery) // never fails (Go 1.24+)
	keys, err := newShares(recovery, recoveryShares, recoveryThreshold)
	if err != nil {
		return nil, err
	}
	cfgBlob, err := json.Marshal(newCfg)
	if err != nil {
		return nil, fmt.Errorf("barrier: seal migration: encoding seal config: %w", err)
	}
	if err := physical.Txn(ctx, []storage.Op{
		{Kind: storage.OpPut, Key: SealConfigPath, Value: cfgBlob},
		{Kind: storage.OpPut, Key: WrappedRootKeyPath, Value: wrapped},
		{Kind: storage.OpPut, Key: RecoveryVerifierPath, Value: recoveryVerifier(recovery)},
	}); err != nil {
		return nil, fmt.Errorf("barrier: seal migration: %w", err)
	}
	return keys, nil
}

// MigrateToShamir moves storage initialized with an auto-unseal seal back to
// the Shamir seal. recoveryKeys must be threshold of the recovery key shares
// (they authorise the migration); p must unwrap the stored root key. It
// returns the new unseal keys, split shares/threshold.
func MigrateToShamir(ctx context.Context, physical storage.Backend, recoveryKeys [][]byte, p Protector, shares, threshold int) ([][]byte, error) {
	newCfg := SealConfig{Type: "shamir", SecretShares: shares, SecretThreshold: threshold}
	if err := newCfg.Validate(); err != nil {
		return nil, err
	}
	m := NewSeal(New(physical), physical)
	cfg, err := m.config(ctx)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, fmt.Errorf("barrier: seal migration: %w", ErrNotInitialized)
	}
	if !cfg.auto() {
		return nil, errors.New("barrier: seal migration: storage already uses the shamir seal")
	}
	if err := m.VerifyRecoveryKey(ctx, recoveryKeys); err != nil {
		return nil, fmt.Errorf("barrier: seal migration: %w", err)
	}
	wrapped, err := physical.Get(ctx, WrappedRootKeyPath)
	if err != nil {
		return nil, fmt.Errorf("barrier: seal migration: reading the wrapped root key: %w", err)
	}
	rootKey, err := p.Unwrap(ctx, wrapped)
	if err != nil {
		return nil, fmt.Errorf("barrier: seal migration: unwrapping the root key with the %s seal: %w", cfg.Type, err)
	}
	defer clear(rootKey)
	if err := checkRootKey(ctx, physical, rootKey); err != nil {
		return nil, err
	}
	keys, err := newShares(rootKey, shares, threshold)
	if err != nil {
		return nil, err
	}
	cfgBlob, err := json.Marshal(newCfg)
	if err != nil {
		return nil, fmt.Errorf("barrier: seal migration: encoding seal config: %w", err)
	}
	if err := physical.Txn(ctx, []storage.Op{
		{Kind: storage.OpPut, Key: SealConfigPath, Value: cfgBlob},
		{Kind: storage.OpDelete, Key: WrappedRootKeyPath},
		{Kind: storage.OpDelete, Key: RecoveryVerifierPath},
	}); err != nil {
		return nil, fmt.Errorf("barrier: seal migration: %w", err)
	}
	return keys, nil
}

// combineKeys rebuilds the root key from Shamir unseal keys.
func combineKeys(cfg SealConfig, keys [][]byte) ([]byte, error) {
	if len(keys) < cfg.SecretThreshold {
		return nil, fmt.Errorf("%w: %d unseal keys given, %d needed", ErrInvalidShare, len(keys), cfg.SecretThreshold)
	}
	for _, k := range keys {
		if len(k) != cfg.shareLen() {
			return nil, fmt.Errorf("%w: key: must be %d bytes, got %d", ErrInvalidShare, cfg.shareLen(), len(k))
		}
	}
	if cfg.SecretShares == 1 {
		return slices.Clone(keys[0]), nil
	}
	k, err := shamir.Combine(keys)
	if err != nil {
		return nil, fmt.Errorf("%w: combining the key shares: %v", ErrInvalidShare, err)
	}
	return k, nil
}

// checkRootKey returns ErrBadRootKey unless rootKey opens the keyring.
func checkRootKey(ctx context.Context, physical storage.Backend, rootKey []byte) error {
	b := New(physical)
	if err := b.Unseal(ctx, rootKey); err != nil {
		return fmt.Errorf("barrier: seal migration: %w", err)
	}
	b.Seal()
	return nil
}

// newShares splits key into shares; one share is the key itself.
func newShares(key []byte, shares, threshold int) ([][]byte, error) {
	if shares == 1 {
		return [][]byte{slices.Clone(key)}, nil
	}
	keys, err := shamir.Split(key, shares, threshold)
	if err != nil {
		return nil, fmt.Errorf("barrier: seal migration: splitting key: %w", err)
	}
	return keys, nil
}

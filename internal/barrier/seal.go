package barrier

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/edgevault/edgevault/internal/barrier/shamir"
	"github.com/edgevault/edgevault/internal/storage"
)

// SealConfig is the seal configuration stored in plaintext at
// SealConfigPath. It holds no secret.
type SealConfig struct {
	// Type is the seal type: "shamir", or an auto-unseal type ("pkcs11").
	Type string `json:"type"`
	// SecretShares is the number of unseal keys (Vault's secret_shares, n);
	// 0 with an auto-unseal seal.
	SecretShares int `json:"secret_shares"`
	// SecretThreshold is how many of them unseal (secret_threshold, t).
	SecretThreshold int `json:"secret_threshold"`
	// RecoveryShares and RecoveryThreshold describe the recovery key of an
	// auto-unseal seal; 0 with Shamir.
	RecoveryShares    int `json:"recovery_shares,omitempty"`
	RecoveryThreshold int `json:"recovery_threshold,omitempty"`
}

// auto reports whether c is an auto-unseal (recovery) configuration.
func (c SealConfig) auto() bool { return c.Type != "shamir" && c.Type != "" }

// Validate applies Vault's rules; the error wraps ErrInvalidSealConfig and
// uses Vault's wording.
func (c SealConfig) Validate() error {
	if c.auto() {
		if c.SecretShares != 0 || c.SecretThreshold != 0 {
			return fmt.Errorf("%w: secret_shares and secret_threshold must be 0 with an auto-unseal seal (%s); use recovery_shares and recovery_threshold", ErrInvalidSealConfig, c.Type)
		}
		return validateShares(c.RecoveryShares, c.RecoveryThreshold, "recovery ")
	}
	if c.RecoveryShares != 0 || c.RecoveryThreshold != 0 {
		return fmt.Errorf("%w: recovery_shares and recovery_threshold apply only to auto-unseal, which this seal is not", ErrInvalidSealConfig)
	}
	return validateShares(c.SecretShares, c.SecretThreshold, "")
}

// validateShares applies Vault's share/threshold rules; kind prefixes the
// words ("recovery ") for recovery keys.
func validateShares(shares, threshold int, kind string) error {
	var msg string
	switch {
	case shares < 1:
		msg = kind + "shares must be at least one"
	case threshold < 1:
		msg = kind + "threshold must be at least one"
	case shares > 1 && threshold == 1:
		msg = kind + "threshold must be greater than one for multiple shares"
	case shares > shamir.MaxParts:
		msg = kind + "shares must be less than 256"
	case threshold > shares:
		msg = kind + "threshold cannot be larger than shares"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidSealConfig, msg)
}

// shareLen is the length of one unseal key: the root key itself for a
// single share, a Shamir share (root key + x byte) otherwise.
func (c SealConfig) shareLen() int {
	if c.SecretShares == 1 {
		return KeySize
	}
	return KeySize + 1
}

// Status is the seal status, as GET /v1/sys/seal-status reports it.
type Status struct {
	// Type is the seal type ("shamir", "pkcs11"). Before initialization it
	// is the configured auto-unseal type, or empty for Shamir.
	Type        string
	Initialized bool
	Sealed      bool
	// T is the threshold and N the number of shares; 0 before initialization.
	T, N int
	// Progress is how many distinct unseal keys the current attempt has.
	Progress int
	// Nonce identifies the current unseal attempt; empty when none is in
	// progress. A new one is drawn when the first key of an attempt arrives.
	Nonce string
	// RecoverySeal is true for an auto-unseal seal; T and N are then the
	// recovery threshold and shares, as in Vault.
	RecoverySeal bool
}

// Seal runs Vault's init and unseal protocol over a Barrier: it makes the
// root key, splits it into unseal keys, and collects them back. It is safe
// for concurrent use; all methods are serialised.
type Seal struct {
	b        *Barrier
	physical storage.Backend

	// auto, when not nil, protects the root key instead of Shamir shares.
	auto *autoSeal

	mu       sync.Mutex
	cfg      *SealConfig // cached once read or written
	progress [][]byte    // unseal keys of the current attempt
	nonce    string
}

// NewSeal returns a Seal for b. physical must be the backend b was created
// over (New(physical)): the seal configuration is stored there, at
// SealConfigPath, in the same transaction as the barrier's keyring.
func NewSeal(b *Barrier, physical storage.Backend) *Seal {
	return &Seal{b: b, physical: physical}
}

// Init initializes the barrier with a fresh random root key split into
// shares unseal keys, threshold of which unseal. With one share the key is
// the root key itself, as in Vault. Before returning, it unseals the barrier,
// calls onInit (if not nil) so the caller can write its initial records
// through the barrier (the server creates the root token and the default
// policy), then seals again.
//
// Nothing is persisted until onInit has succeeded; then the seal
// configuration and the keyring are stored in one transaction. On any
// failure, keys onInit wrote through the barrier are deleted and storage is
// left uninitialized. onInit must not call the Seal or seal, unseal or
// rotate the barrier.
//
// The returned keys are secret: the caller hands them to the operator and
// forgets them.
func (m *Seal) Init(ctx context.Context, shares, threshold int, onInit func(ctx context.Context) error) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.init(ctx, shares, threshold, onInit)
}

func (m *Seal) init(ctx context.Context, shares, threshold int, onInit func(ctx context.Context) error) ([][]byte, error) {
	if m.auto != nil {
		return nil, fmt.Errorf("%w: secret_shares and secret_threshold must be 0 with an auto-unseal seal (%s); use recovery_shares and recovery_threshold", ErrInvalidSealConfig, m.auto.typ)
	}
	cfg := SealConfig{Type: "shamir", SecretShares: shares, SecretThreshold: threshold}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfgBlob, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("barrier: init: encoding seal config: %w", err)
	}

	rootKey := make([]byte, KeySize)
	defer clear(rootKey)
	if _, err := rand.Read(rootKey); err != nil {
		return nil, fmt.Errorf("barrier: init: generating root key: %w", err)
	}
	var keys [][]byte
	if shares == 1 {
		keys = [][]byte{slices.Clone(rootKey)}
	} else if keys, err = shamir.Split(rootKey, shares, threshold); err != nil {
		return nil, fmt.Errorf("barrier: init: splitting root key: %w", err)
	}

	extra := []storage.Op{{Kind: storage.OpPut, Key: SealConfigPath, Value: cfgBlob}}
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

// InitDev initializes with a single unseal key, unseals, and returns the
// root key (which is that unseal key). For the dev server only.
func (m *Seal) InitDev(ctx context.Context, onInit func(ctx context.Context) error) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys, err := m.init(ctx, 1, 1, onInit)
	if err != nil {
		return nil, err
	}
	if err := m.b.Unseal(ctx, keys[0]); err != nil {
		clear(keys[0])
		return nil, fmt.Errorf("barrier: dev init: %w", err)
	}
	return keys[0], nil
}

// SubmitShare adds one unseal key to the current attempt. A key already
// given in this attempt is ignored. When the attempt has threshold keys they
// are combined and the barrier is unsealed; if the combined key is wrong the
// error wraps ErrBadRootKey and the attempt is reset, as Vault does.
// On an unsealed barrier it only returns the status; before Init it fails
// with ErrNotInitialized.
func (m *Seal) SubmitShare(ctx context.Context, key []byte) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg, err := m.config(ctx)
	if err != nil {
		return Status{}, err
	}
	if cfg == nil {
		st, _ := m.statusLocked(ctx)
		return st, fmt.Errorf("barrier: unseal: %w", ErrNotInitialized)
	}
	if !m.b.Sealed() {
		return m.statusLocked(ctx)
	}
	if cfg.auto() || m.auto != nil {
		st, _ := m.statusLocked(ctx)
		return st, fmt.Errorf("%w: key: this server is configured with an auto-unseal seal (stored seal %q); it unseals itself and takes no unseal keys", ErrInvalidShare, cfg.Type)
	}
	if want := cfg.shareLen(); len(key) != want {
		st, _ := m.statusLocked(ctx)
		return st, fmt.Errorf("%w: key: must be %d bytes, got %d", ErrInvalidShare, want, len(key))
	}
	for _, p := range m.progress {
		if bytes.Equal(p, key) {
			return m.statusLocked(ctx)
		}
	}
	if cfg.SecretShares > 1 {
		// The last byte is the share's x coordinate: never zero, and one
		// share per x. Refuse a bad one now instead of failing the combine.
		x := key[len(key)-1]
		if x == 0 {
			st, _ := m.statusLocked(ctx)
			return st, fmt.Errorf("%w: key: not a valid unseal key share", ErrInvalidShare)
		}
		for _, p := range m.progress {
			if p[len(p)-1] == x {
				st, _ := m.statusLocked(ctx)
				return st, fmt.Errorf("%w: key: conflicts with a key share already given for this unseal attempt", ErrInvalidShare)
			}
		}
	}
	if len(m.progress) == 0 {
		m.nonce = newNonce()
	}
	m.progress = append(m.progress, slices.Clone(key))
	if len(m.progress) < cfg.SecretThreshold {
		return m.statusLocked(ctx)
	}

	var rootKey []byte
	if cfg.SecretShares == 1 {
		rootKey = slices.Clone(m.progress[0])
	} else {
		rootKey, err = shamir.Combine(m.progress)
	}
	m.resetLocked()
	if err != nil {
		st, _ := m.statusLocked(ctx)
		return st, fmt.Errorf("%w: combining the key shares: %v", ErrInvalidShare, err)
	}
	err = m.b.Unseal(ctx, rootKey)
	clear(rootKey)
	st, serr := m.statusLocked(ctx)
	if err != nil {
		return st, err
	}
	return st, serr
}

// ResetUnseal discards the keys of the current unseal attempt.
func (m *Seal) ResetUnseal() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resetLocked()
}

// SealNow seals the barrier and discards any unseal attempt.
func (m *Seal) SealNow() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.b.Seal()
	m.resetLocked()
}

// Status returns the seal status.
func (m *Seal) Status(ctx context.Context) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.statusLocked(ctx)
}

func (m *Seal) statusLocked(ctx context.Context) (Status, error) {
	st := Status{Sealed: m.b.Sealed(), Progress: len(m.progress), Nonce: m.nonce}
	cfg, err := m.config(ctx)
	if err != nil {
		return st, err
	}
	switch {
	case cfg != nil && cfg.auto():
		st.Type, st.T, st.N, st.RecoverySeal = cfg.Type, cfg.RecoveryThreshold, cfg.RecoveryShares, true
	case cfg != nil:
		st.Type, st.T, st.N = cfg.Type, cfg.SecretThreshold, cfg.SecretShares
	case m.auto != nil:
		st.Type, st.RecoverySeal = m.auto.typ, true
	}
	if st.Initialized, err = m.b.Initialized(ctx); err != nil {
		return st, err
	}
	return st, nil
}

// config returns the seal configuration, reading it once from storage; nil
// (and no error) when there is none yet.
func (m *Seal) config(ctx context.Context) (*SealConfig, error) {
	if m.cfg != nil {
		return m.cfg, nil
	}
	raw, err := m.physical.Get(ctx, SealConfigPath)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("barrier: reading seal config: %w", err)
	}
	var cfg SealConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("barrier: decoding seal config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("barrier: stored seal config: %w", err)
	}
	m.cfg = &cfg
	return m.cfg, nil
}

func (m *Seal) resetLocked() {
	for _, p := range m.progress {
		clear(p)
	}
	m.progress = nil
	m.nonce = ""
}

// newNonce returns a random UUID (version 4), the form Vault's unseal nonce
// takes.
func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Package pkcs11 protects edgevault's root key with an AES-256 key held in
// an HSM, reached over PKCS#11 (github.com/ThalesGroup/crypto11).
//
// The HSM key never leaves the token (it is generated non-extractable, see
// GenerateKey). Wrap encrypts the root key inside the HSM with AES-256-GCM,
// with a fixed label as associated data; the blob is stored next to the
// keyring, and at start the server unwraps it to unseal without operators.
// Whoever holds the storage but not the HSM (and its PIN) cannot read it.
//
// Blob format (version 1):
//
//	[1 byte version = 1][12 bytes nonce][GCM ciphertext || 16-byte tag]
//
// The PIN is never part of the configuration: ResolvePIN reads it from the
// environment or a file, and it never appears in errors or logs.
package pkcs11

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ThalesGroup/crypto11"
	p11 "github.com/miekg/pkcs11"
)

// PINEnv is the environment variable the HSM user PIN is read from.
const PINEnv = "EDGEVAULT_HSM_PIN"

// wrapAD is the associated data bound to every wrapped root key: a blob
// made for another purpose under the same HSM key does not unwrap.
const wrapAD = "edgevault root key v1"

const (
	blobVersion = 1
	nonceSize   = 12
	tagSize     = 16
)

// Errors returned by this package, matched with errors.Is.
var (
	// ErrPINIncorrect is returned when the token refuses the PIN. Retrying
	// with the same PIN would only move the token towards lockout.
	ErrPINIncorrect = errors.New("pkcs11: the HSM refused the PIN (CKR_PIN_INCORRECT)")
	// ErrKeyNotFound is returned when no AES key has the configured label.
	ErrKeyNotFound = errors.New("pkcs11: no key with this label in the token")
	// ErrKeyExists is returned by GenerateKey when the label is taken.
	ErrKeyExists = errors.New("pkcs11: a key with this label already exists in the token")
	// ErrUnwrap is returned when a blob is malformed or fails authentication.
	ErrUnwrap = errors.New("pkcs11: wrapped root key is malformed or failed authentication")
	// ErrNoPIN is returned by ResolvePIN when neither source gives a PIN.
	ErrNoPIN = errors.New("pkcs11: no HSM PIN given")
)

// Config says where the HSM key is. Exactly one of TokenLabel and Slot
// selects the token.
type Config struct {
	// Lib is the absolute path of the PKCS#11 module (.so).
	Lib string
	// TokenLabel selects the token by label.
	TokenLabel string
	// Slot selects the token by slot number when not nil.
	Slot *int
	// KeyLabel is the label (CKA_LABEL) of the AES-256 key.
	KeyLabel string
	// PIN is the user PIN; see ResolvePIN. Never logged.
	PIN string
}

// Validate checks c, naming the field at fault.
func (c Config) Validate() error {
	switch {
	case c.Lib == "":
		return errors.New("pkcs11: lib: the PKCS#11 module path is required")
	case !filepath.IsAbs(c.Lib):
		return fmt.Errorf("pkcs11: lib %q: must be an absolute path", c.Lib)
	case c.TokenLabel == "" && c.Slot == nil:
		return errors.New("pkcs11: token_label or slot is required")
	case c.TokenLabel != "" && c.Slot != nil:
		return errors.New("pkcs11: token_label and slot: give one, not both")
	case c.Slot != nil && *c.Slot < 0:
		return fmt.Errorf("pkcs11: slot %d: must not be negative", *c.Slot)
	case c.KeyLabel == "":
		return errors.New("pkcs11: key_label is required")
	case c.PIN == "":
		return fmt.Errorf("pkcs11: %w: set %s or pin_file", ErrNoPIN, PINEnv)
	}
	return nil
}

// ResolvePIN returns the PIN from envPIN (the value of EDGEVAULT_HSM_PIN)
// or, when that is empty, from the first line of pinFile.
func ResolvePIN(envPIN, pinFile string) (string, error) {
	if envPIN != "" {
		return envPIN, nil
	}
	if pinFile == "" {
		return "", fmt.Errorf("%w: set %s or pin_file", ErrNoPIN, PINEnv)
	}
	raw, err := os.ReadFile(pinFile)
	if err != nil {
		return "", fmt.Errorf("pkcs11: pin_file: %w", err)
	}
	pin, _, _ := strings.Cut(string(raw), "\n")
	pin = strings.TrimSpace(pin)
	if pin == "" {
		return "", fmt.Errorf("%w: pin_file %s is empty", ErrNoPIN, pinFile)
	}
	return pin, nil
}

// open logs in to the token.
func open(cfg Config) (*crypto11.Context, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c11 := &crypto11.Config{Path: cfg.Lib, TokenLabel: cfg.TokenLabel, Pin: cfg.PIN}
	if cfg.Slot != nil {
		slot := *cfg.Slot
		c11.SlotNumber = &slot
	}
	ctx, err := crypto11.Configure(c11)
	if err != nil {
		return nil, fmt.Errorf("pkcs11: open token (lib %s, %s): %w", cfg.Lib, tokenName(cfg), classify(err))
	}
	return ctx, nil
}

func tokenName(cfg Config) string {
	if cfg.Slot != nil {
		return fmt.Sprintf("slot %d", *cfg.Slot)
	}
	return fmt.Sprintf("token_label %q", cfg.TokenLabel)
}

// classify maps a wrong PIN to ErrPINIncorrect, keeping the cause.
func classify(err error) error {
	var pe p11.Error
	if errors.As(err, &pe) && (pe == p11.CKR_PIN_INCORRECT || pe == p11.CKR_PIN_LOCKED) {
		return fmt.Errorf("%w: %v", ErrPINIncorrect, err)
	}
	if err != nil && strings.Contains(err.Error(), "CKR_PIN_INCORRECT") {
		return fmt.Errorf("%w: %v", ErrPINIncorrect, err)
	}
	return err
}

// GenerateKey creates a non-extractable, sensitive AES-256 key labelled
// cfg.KeyLabel in the token. It refuses with ErrKeyExists when the label is
// taken.
func GenerateKey(cfg Config) error {
	ctx, err := open(cfg)
	if err != nil {
		return err
	}
	defer ctx.Close()
	existing, err := ctx.FindKeys(nil, []byte(cfg.KeyLabel))
	if err != nil {
		return fmt.Errorf("pkcs11: look up key_label %q: %w", cfg.KeyLabel, err)
	}
	if len(existing) > 0 {
		return fmt.Errorf("key_label %q: %w", cfg.KeyLabel, ErrKeyExists)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	if _, err := ctx.GenerateSecretKeyWithLabel(id, []byte(cfg.KeyLabel), 256, crypto11.CipherAES); err != nil {
		return fmt.Errorf("pkcs11: generate key_label %q: %w", cfg.KeyLabel, err)
	}
	return nil
}

// Protector wraps and unwraps the root key with the HSM key. It connects
// on first use and reconnects after a failure, so a server can start while
// the HSM is unreachable. It is safe for concurrent use.
type Protector struct {
	cfg Config

	mu  sync.Mutex
	c11 *crypto11.Context
	key *crypto11.SecretKey
}

// New returns a Protector for cfg after validating it. It does not contact
// the HSM yet.
func New(cfg Config) (*Protector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Protector{cfg: cfg}, nil
}

// Check connects to the HSM and finds the key, reporting why it cannot.
func (p *Protector) Check(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := p.keyLocked()
	return err
}

func (p *Protector) keyLocked() (*crypto11.SecretKey, error) {
	if p.key != nil {
		return p.key, nil
	}
	ctx, err := open(p.cfg)
	if err != nil {
		return nil, err
	}
	keys, err := ctx.FindKeys(nil, []byte(p.cfg.KeyLabel))
	if err != nil {
		ctx.Close()
		return nil, fmt.Errorf("pkcs11: look up key_label %q: %w", p.cfg.KeyLabel, err)
	}
	switch len(keys) {
	case 0:
		ctx.Close()
		return nil, fmt.Errorf("key_label %q in %s: %w (create it with `edgevault operator hsm-keygen`)", p.cfg.KeyLabel, tokenName(p.cfg), ErrKeyNotFound)
	case 1:
	default:
		ctx.Close()
		return nil, fmt.Errorf("pkcs11: key_label %q in %s: %d keys have this label; it must name exactly one", p.cfg.KeyLabel, tokenName(p.cfg), len(keys))
	}
	key := keys[0]
	p.c11, p.key = ctx, key
	return key, nil
}

// dropLocked forgets the connection so the next call reconnects.
func (p *Protector) dropLocked() {
	if p.c11 != nil {
		_ = p.c11.Close()
	}
	p.c11, p.key = nil, nil
}

// Wrap encrypts rootKey under the HSM key.
func (p *Protector) Wrap(_ context.Context, rootKey []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key, err := p.keyLocked()
	if err != nil {
		return nil, err
	}
	aead, err := key.NewGCM()
	if err != nil {
		p.dropLocked()
		return nil, fmt.Errorf("pkcs11: wrap: %w", err)
	}
	nonce := make([]byte, nonceSize)
	_, _ = rand.Read(nonce)
	out := append([]byte{blobVersion}, nonce...)
	ct := aead.Seal(nil, nonce, rootKey, []byte(wrapAD))
	if len(ct) != len(rootKey)+tagSize {
		p.dropLocked()
		return nil, errors.New("pkcs11: wrap: the HSM returned a ciphertext of unexpected length")
	}
	return append(out, ct...), nil
}

// Unwrap decrypts a blob made by Wrap. A malformed or tampered blob gives
// ErrUnwrap.
func (p *Protector) Unwrap(_ context.Context, blob []byte) ([]byte, error) {
	if len(blob) < 1+nonceSize+tagSize || blob[0] != blobVersion {
		return nil, fmt.Errorf("%w: bad length or version", ErrUnwrap)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key, err := p.keyLocked()
	if err != nil {
		return nil, err
	}
	aead, err := key.NewGCM()
	if err != nil {
		p.dropLocked()
		return nil, fmt.Errorf("pkcs11: unwrap: %w", err)
	}
	plain, err := aead.Open(nil, blob[1:1+nonceSize], blob[1+nonceSize:], []byte(wrapAD))
	if err != nil {
		var pe p11.Error
		if errors.As(err, &pe) && pe != p11.CKR_ENCRYPTED_DATA_INVALID && pe != p11.CKR_ENCRYPTED_DATA_LEN_RANGE {
			// The connection itself failed; reconnect next time.
			p.dropLocked()
			return nil, fmt.Errorf("pkcs11: unwrap: %w", err)
		}
		return nil, fmt.Errorf("%w: %v", ErrUnwrap, err)
	}
	return plain, nil
}

// Close logs out and releases the module.
func (p *Protector) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropLocked()
	return nil
}

// Package keyfile is the "dev" seal: the root key is wrapped by an AES-256
// key kept in a local file. It auto-unseals like the HSM seal, with none of
// its protection — whoever reads the file and the storage has the secrets —
// so it is meant for development, demos and tests only.
package keyfile

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ErrUnwrap is returned when a blob was not wrapped by this key.
var ErrUnwrap = errors.New("keyfile: the wrapped root key does not open with this key file")

// aad binds every wrapped blob to its purpose.
var aad = []byte("edgevault root key, dev seal")

// Protector wraps the root key with the key in a file.
type Protector struct {
	aead cipher.AEAD
}

// Open reads the hex-encoded 32-byte key at path, creating the file (mode
// 0600) with a random key when it does not exist.
func Open(path string) (*Protector, error) {
	if path == "" {
		return nil, errors.New("keyfile: key_file is required")
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		raw = []byte(hex.EncodeToString(key) + "\n")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			return nil, fmt.Errorf("keyfile: create %s: %w", path, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("keyfile: %s must hold 64 hex digits (a 32-byte key)", path)
	}
	block, err := aes.NewCipher(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Protector{aead: aead}, nil
}

// Wrap encrypts the root key.
func (p *Protector) Wrap(_ context.Context, rootKey []byte) ([]byte, error) {
	nonce := make([]byte, p.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return p.aead.Seal(nonce, nonce, rootKey, aad), nil
}

// Unwrap decrypts a blob made by Wrap.
func (p *Protector) Unwrap(_ context.Context, blob []byte) ([]byte, error) {
	n := p.aead.NonceSize()
	if len(blob) < n+p.aead.Overhead() {
		return nil, ErrUnwrap
	}
	key, err := p.aead.Open(nil, blob[:n], blob[n:], aad)
	if err != nil {
		return nil, ErrUnwrap
	}
	return key, nil
}

// Package keyfile is the development cache.KeyProtector: the agent's cache
// key is wrapped with AES-256-GCM under a key-encryption key kept in a local
// file. Whoever can read that file and the cache can read the secrets, so it
// is for development and tests; production agents seal the cache key to a
// TPM.
//
// The file holds exactly 32 random bytes. Open creates it (mode 0600) when
// it does not exist and refuses one of another size or readable or writable
// by group or others.
package keyfile

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KeySize is the size of the key file's content.
const KeySize = 32

// Errors.
var (
	// ErrBadKeyFile means the key file exists but has the wrong size or
	// permissions; the message says what to fix.
	ErrBadKeyFile = errors.New("keyfile: unusable key file")
	// ErrUnwrap means a blob was not wrapped under this key file.
	ErrUnwrap = errors.New("keyfile: the wrapped cache key does not open with this key file")
)

// aad binds wrapped blobs to their purpose.
var aad = []byte("edgevault agent cache key, keyfile protector v1")

// Protector wraps and unwraps the cache key under the key in a file. It is
// safe for concurrent use.
type Protector struct {
	aead cipher.AEAD
}

// Open reads the key file at path, creating it with a random key if it does
// not exist.
func Open(path string) (*Protector, error) {
	if path == "" {
		return nil, errors.New("keyfile: path is empty")
	}
	key, err := read(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = create(path)
	}
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Protector{aead: aead}, nil
}

func read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // fs.ErrNotExist is handled by the caller
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrBadKeyFile, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, group or others can access it; run chmod 600 %s", ErrBadKeyFile, path, perm, path)
	}
	if fi.Size() != KeySize {
		return nil, fmt.Errorf("%w: %s is %d bytes, a key file is exactly %d", ErrBadKeyFile, path, fi.Size(), KeySize)
	}
	key := make([]byte, KeySize)
	if _, err := f.ReadAt(key, 0); err != nil {
		return nil, fmt.Errorf("keyfile: read %s: %w", path, err)
	}
	return key, nil
}

// create writes a new random key durably. O_EXCL makes a concurrent
// creator fail rather than overwrite.
func create(path string) ([]byte, error) {
	key := make([]byte, KeySize)
	_, _ = rand.Read(key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keyfile: create: %w", err)
	}
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("keyfile: create %s: %w", path, err)
	}
	return key, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Wrap encrypts key under the key file's key.
func (p *Protector) Wrap(key []byte) ([]byte, error) {
	nonce := make([]byte, p.aead.NonceSize(), p.aead.NonceSize()+len(key)+p.aead.Overhead())
	_, _ = rand.Read(nonce)
	return p.aead.Seal(nonce, nonce, key, aad), nil
}

// Unwrap decrypts a blob made by Wrap; any other blob is ErrUnwrap.
func (p *Protector) Unwrap(blob []byte) ([]byte, error) {
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

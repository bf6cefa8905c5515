package zone

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
)

// RootWrapper protects zone KEKs: it is the root of the zone key hierarchy.
// The server builds one from the root key the seal unlocks (NewAESRoot); an
// HSM-backed seal could implement it directly. Both methods must be safe for
// concurrent use. aad binds the wrapped key to its zone and KEK version;
// Unwrap must fail when aad differs from the one given to Wrap.
type RootWrapper interface {
	// Wrap encrypts plaintext (a KEK) bound to aad.
	Wrap(plaintext, aad []byte) ([]byte, error)
	// Unwrap decrypts the output of Wrap; a wrong key or aad is an error.
	Unwrap(ciphertext, aad []byte) ([]byte, error)
}

// KeySize is the size of root keys, KEKs and data keys: AES-256.
const KeySize = 32

// AESRoot is a RootWrapper using AES-256-GCM under a 32-byte root key.
// Wrapped form: [12-byte nonce][ciphertext || 16-byte tag].
type AESRoot struct {
	aead cipher.AEAD
}

var _ RootWrapper = (*AESRoot)(nil)

// NewAESRoot returns a RootWrapper under key, which must be 32 bytes. It
// does not keep key: the caller may clear it afterwards.
func NewAESRoot(key []byte) (*AESRoot, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, fmt.Errorf("zone: root key: %w", err)
	}
	return &AESRoot{aead: aead}, nil
}

// Wrap encrypts plaintext bound to aad with a fresh random nonce.
func (r *AESRoot) Wrap(plaintext, aad []byte) ([]byte, error) {
	return gcmSeal(r.aead, plaintext, aad), nil
}

// Unwrap decrypts the output of Wrap. Errors wrap ErrDecrypt.
func (r *AESRoot) Unwrap(ciphertext, aad []byte) ([]byte, error) {
	return gcmOpen(r.aead, ciphertext, aad)
}

// newAEAD returns AES-256-GCM under key.
func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// gcmSeal returns nonce || Seal(plaintext), for wrapping keys.
func gcmSeal(aead cipher.AEAD, plaintext, aad []byte) []byte {
	out := make([]byte, nonceLen, nonceLen+len(plaintext)+tagLen)
	// crypto/rand.Read never fails (Go 1.24+).
	_, _ = rand.Read(out)
	return aead.Seal(out, out[:nonceLen], plaintext, aad)
}

// gcmOpen opens the output of gcmSeal. Errors wrap ErrDecrypt.
func gcmOpen(aead cipher.AEAD, b, aad []byte) ([]byte, error) {
	if len(b) < nonceLen+tagLen {
		return nil, fmt.Errorf("%w: wrapped key is %d bytes", ErrDecrypt, len(b))
	}
	pt, err := aead.Open(nil, b[:nonceLen], b[nonceLen:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// newKey returns KeySize random bytes.
func newKey() []byte {
	k := make([]byte, KeySize)
	_, _ = rand.Read(k)
	return k
}

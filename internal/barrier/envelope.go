package barrier

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// Envelope layout (format version 1):
//
//	[1 byte version = 1][4 bytes term, big-endian][12 bytes nonce][GCM ciphertext || 16-byte tag]
//
// The associated data is the full storage path the envelope is stored at.
// Term 0 is reserved for the keyring, encrypted under the root key.
const (
	formatVersion byte = 1
	headerLen          = 1 + 4
	nonceLen           = 12
	tagLen             = 16
	// Overhead is how many bytes an envelope adds to its plaintext.
	Overhead = headerLen + nonceLen + tagLen
	// KeySize is the size of the root key and of every data key: AES-256.
	KeySize = 32

	rootTerm uint32 = 0
)

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

// sealEnvelope encrypts plaintext under aead, tagged with term, bound to path.
func sealEnvelope(aead cipher.AEAD, term uint32, path string, plaintext []byte) []byte {
	out := make([]byte, headerLen+nonceLen, Overhead+len(plaintext))
	out[0] = formatVersion
	binary.BigEndian.PutUint32(out[1:headerLen], term)
	nonce := out[headerLen : headerLen+nonceLen]
	// crypto/rand.Read never returns an error (Go 1.24+: it aborts the
	// program instead of returning short randomness).
	_, _ = rand.Read(nonce)
	return aead.Seal(out, nonce, plaintext, []byte(path))
}

// parseEnvelope splits an envelope into its term, nonce and sealed part. It
// never panics and never retains b beyond the returned sub-slices.
func parseEnvelope(b []byte) (term uint32, nonce, sealed []byte, err error) {
	if len(b) < Overhead {
		return 0, nil, nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrMalformed, len(b), Overhead)
	}
	if b[0] != formatVersion {
		return 0, nil, nil, fmt.Errorf("%w: unknown format version %d", ErrMalformed, b[0])
	}
	term = binary.BigEndian.Uint32(b[1:headerLen])
	return term, b[headerLen : headerLen+nonceLen], b[headerLen+nonceLen:], nil
}

// openEnvelope decrypts an envelope whose term has been resolved to aead.
func openEnvelope(aead cipher.AEAD, path string, nonce, sealed []byte) ([]byte, error) {
	pt, err := aead.Open(nil, nonce, sealed, []byte(path))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

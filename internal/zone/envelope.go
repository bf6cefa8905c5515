package zone

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
)

// Record envelope layout (format 1), big-endian:
//
//	[1 byte format = 1][4 bytes data key version][12 bytes nonce][GCM ciphertext || 16-byte tag]
//
// The associated data is recordAAD(zone, path): the zone name and the
// record's logical path inside the zone, so a ciphertext copied to another
// zone or another path fails authentication.
const (
	envelopeFormat byte = 1
	headerLen           = 1 + 4
	nonceLen            = 12
	tagLen              = 16
	// Overhead is how many bytes a record envelope adds to its plaintext.
	Overhead = headerLen + nonceLen + tagLen
)

// Domain separation for the three kinds of associated data.
const (
	aadRecord = "edgevault:zone-record:v1\x00"
	aadKEK    = "edgevault:zone-kek:v1\x00"
	aadDEK    = "edgevault:zone-dek:v1\x00"
)

func recordAAD(zone, path string) []byte {
	b := make([]byte, 0, len(aadRecord)+len(zone)+1+len(path))
	b = append(b, aadRecord...)
	b = append(b, zone...)
	b = append(b, 0)
	return append(b, path...)
}

func keyAAD(kind, zone string, version uint32) []byte {
	return []byte(kind + zone + "\x00" + strconv.FormatUint(uint64(version), 10))
}

// sealRecord encrypts plaintext under aead (data key version), bound to
// zone and path.
func sealRecord(aead cipher.AEAD, version uint32, zone, path string, plaintext []byte) []byte {
	out := make([]byte, headerLen+nonceLen, Overhead+len(plaintext))
	out[0] = envelopeFormat
	binary.BigEndian.PutUint32(out[1:headerLen], version)
	nonce := out[headerLen : headerLen+nonceLen]
	_, _ = rand.Read(nonce) // never fails (Go 1.24+)
	return aead.Seal(out, nonce, plaintext, recordAAD(zone, path))
}

// ParseEnvelope returns the data key version a stored record envelope names,
// without decrypting it. Errors wrap ErrMalformed; it never panics.
func ParseEnvelope(b []byte) (version uint32, err error) {
	v, _, _, err := parseEnvelope(b)
	return v, err
}

func parseEnvelope(b []byte) (version uint32, nonce, sealed []byte, err error) {
	if len(b) < Overhead {
		return 0, nil, nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrMalformed, len(b), Overhead)
	}
	if b[0] != envelopeFormat {
		return 0, nil, nil, fmt.Errorf("%w: unknown format %d", ErrMalformed, b[0])
	}
	version = binary.BigEndian.Uint32(b[1:headerLen])
	if version == 0 {
		return 0, nil, nil, fmt.Errorf("%w: version 0", ErrMalformed)
	}
	return version, b[headerLen : headerLen+nonceLen], b[headerLen+nonceLen:], nil
}

// openRecord decrypts an envelope with the key set ks.
func (ks *keySet) openRecord(zone, path string, b []byte) ([]byte, uint32, error) {
	version, nonce, sealed, err := parseEnvelope(b)
	if err != nil {
		return nil, 0, err
	}
	dk, ok := ks.keys[version]
	if !ok {
		return nil, version, fmt.Errorf("%w: %d", ErrUnknownVersion, version)
	}
	pt, err := dk.aead.Open(nil, nonce, sealed, recordAAD(zone, path))
	if err != nil {
		return nil, version, ErrDecrypt
	}
	return pt, version, nil
}

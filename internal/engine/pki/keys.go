package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"

	"github.com/edgevault/edgevault/internal/logical"
)

// Key types, as Vault names them in key_type and private_key_type.
const (
	keyTypeRSA     = "rsa"
	keyTypeEC      = "ec"
	keyTypeEd25519 = "ed25519"
	keyTypeAny     = "any" // roles used only with sign/:role
)

// normalizeKey checks a key_type/key_bits pair and fills the default size:
// RSA 2048, EC 256 (P-256), Ed25519 0. anyOK admits "any" (sign roles).
func normalizeKey(keyType string, bits int64, anyOK bool) (string, int, error) {
	kt := strings.ToLower(strings.TrimSpace(keyType))
	switch kt {
	case keyTypeRSA:
		switch bits {
		case 0:
			return kt, 2048, nil
		case 2048, 3072, 4096, 8192:
			return kt, int(bits), nil
		}
	case keyTypeEC:
		switch bits {
		case 0:
			return kt, 256, nil
		case 256, 384, 521:
			return kt, int(bits), nil
		}
	case keyTypeEd25519:
		if bits == 0 || bits == 256 {
			return kt, 0, nil
		}
	case keyTypeAny:
		if !anyOK {
			return "", 0, logical.InvalidRequest("field \"key_type\": \"any\" is only valid for roles")
		}
		return kt, 0, nil
	default:
		return "", 0, logical.InvalidRequest("field \"key_type\": unknown key type %q (want rsa, ec or ed25519)", keyType)
	}
	return "", 0, logical.InvalidRequest("field \"key_bits\": %d is not a valid size for key_type %q", bits, kt)
}

// generateKey makes a new private key of a type already checked by normalizeKey.
func generateKey(keyType string, bits int) (crypto.Signer, error) {
	switch keyType {
	case keyTypeRSA:
		return rsa.GenerateKey(rand.Reader, bits)
	case keyTypeEC:
		var c elliptic.Curve
		switch bits {
		case 384:
			c = elliptic.P384()
		case 521:
			c = elliptic.P521()
		default:
			c = elliptic.P256()
		}
		return ecdsa.GenerateKey(c, rand.Reader)
	case keyTypeEd25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("pki: generate key: unsupported key type %q", keyType)
}

// publicKeyType names a public key as Vault does and gives its size in bits
// (0 for Ed25519). ok is false for key kinds the engine does not sign.
func publicKeyType(pub any) (kt string, bits int, ok bool) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return keyTypeRSA, k.N.BitLen(), true
	case *ecdsa.PublicKey:
		return keyTypeEC, k.Curve.Params().BitSize, true
	case ed25519.PublicKey:
		return keyTypeEd25519, 0, true
	}
	return "", 0, false
}

// encodeKey returns the private key as PEM: PKCS#8 when format is "pkcs8",
// otherwise the key type's traditional form (RSA PRIVATE KEY, EC PRIVATE
// KEY), as Vault's private_key_format "der"/"" does. Ed25519 is always PKCS#8.
func encodeKey(key crypto.Signer, format string) (string, error) {
	if format != "pkcs8" {
		switch k := key.(type) {
		case *rsa.PrivateKey:
			return pemString("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)), nil
		case *ecdsa.PrivateKey:
			der, err := x509.MarshalECPrivateKey(k)
			if err != nil {
				return "", fmt.Errorf("pki: encode EC key: %w", err)
			}
			return pemString("EC PRIVATE KEY", der), nil
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("pki: encode key: %w", err)
	}
	return pemString("PRIVATE KEY", der), nil
}

// pemString encodes one PEM block without a trailing newline, as Vault
// returns certificates and keys.
func pemString(typ string, der []byte) string {
	return strings.TrimSuffix(string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})), "\n")
}

// serialBytes is the length of a new serial number: 20 bytes, the most
// RFC 5280 allows, with the top bit cleared so the DER integer stays positive.
const serialBytes = 20

// newSerial returns a random, positive, non-zero certificate serial.
func newSerial() (*big.Int, error) {
	b := make([]byte, serialBytes)
	for {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("pki: serial: %w", err)
		}
		b[0] &= 0x7f
		n := new(big.Int).SetBytes(b)
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// formatSerial writes a serial as Vault does: lower-case hex bytes separated
// by colons ("1f:02:..."), with a leading zero nibble where needed.
func formatSerial(n *big.Int) string {
	b := n.Bytes()
	if len(b) == 0 {
		b = []byte{0}
	}
	var sb strings.Builder
	sb.Grow(len(b) * 3)
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(hex.EncodeToString([]byte{c}))
	}
	return sb.String()
}

// maxSerialLen bounds a serial in a request (RFC 5280: at most 20 octets;
// we accept a little more to read certificates made elsewhere).
const maxSerialLen = 64

// parseSerial accepts a serial written with colons or hyphens (Vault accepts
// both) and returns its canonical colon form. field names the request field
// for errors.
func parseSerial(field, s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", logical.InvalidRequest("field %q: missing serial number", field)
	}
	h := strings.NewReplacer(":", "", "-", "").Replace(s)
	if len(h) > 2*maxSerialLen {
		return "", logical.InvalidRequest("field %q: serial number is too long", field)
	}
	if len(h)%2 == 1 {
		h = "0" + h
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return "", logical.InvalidRequest("field %q: serial number must be hex bytes separated by ':' or '-'", field)
	}
	n := new(big.Int).SetBytes(b)
	if n.Sign() == 0 {
		return "", logical.InvalidRequest("field %q: serial number must not be zero", field)
	}
	return formatSerial(n), nil
}

// storageSerial is the storage form of a canonical serial: hyphens for
// colons, as Vault's certs/ keys and LIST certs output use.
func storageSerial(serial string) string { return strings.ReplaceAll(serial, ":", "-") }

// newID returns a random UUID (version 4) for issuer_id and key_id.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("pki: id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

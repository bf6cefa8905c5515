package jointoken

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/edgevault/edgevault/internal/zone"
)

const (
	// Scheme is the first dot-separated part of every join token.
	Scheme = "evjt"
	// SecretLen is the number of random bytes in a token (256 bits).
	SecretLen = 32
	// RootLabel names the root zone "" inside a token and in SPIFFE IDs.
	RootLabel = "root"
)

// secretTextLen is the length of the encoded secret: SecretLen bytes in
// unpadded base64.
const secretTextLen = (SecretLen*8 + 5) / 6

// ZoneLabel returns the label naming zone in tokens: the zone name, or
// RootLabel for the root zone "".
func ZoneLabel(zone string) string {
	if zone == "" {
		return RootLabel
	}
	return zone
}

// LabelZone is the inverse of ZoneLabel.
func LabelZone(label string) string {
	if label == RootLabel {
		return ""
	}
	return label
}

// validateZone accepts the root zone "" and any valid zone name.
func validateZone(name string) error {
	if name == "" {
		return nil
	}
	return zone.ValidateName(name)
}

// newToken returns a fresh token for zone.
func newToken(zoneName string) (string, error) {
	secret := make([]byte, SecretLen)
	if _, err := rand.Read(secret); err != nil {
		return "", fmt.Errorf("join token: random: %w", err)
	}
	return Scheme + "." + ZoneLabel(zoneName) + "." + base64.RawURLEncoding.EncodeToString(secret), nil
}

// Parse checks a token's shape and returns the zone it names. It does not
// look the token up. Errors wrap ErrTokenUnknown and never quote the token.
func Parse(token string) (zoneName string, err error) {
	bad := func(why string) error { return fmt.Errorf("%w: malformed: %s", ErrTokenUnknown, why) }
	scheme, rest, ok := strings.Cut(token, ".")
	if !ok || scheme != Scheme {
		return "", bad("does not start with \"" + Scheme + ".\"")
	}
	label, secret, ok := strings.Cut(rest, ".")
	if !ok {
		return "", bad("missing zone label")
	}
	zoneName = LabelZone(label)
	if label == "" || validateZone(zoneName) != nil {
		return "", bad("bad zone label")
	}
	if len(secret) != secretTextLen {
		return "", bad(fmt.Sprintf("secret is %d characters, want %d", len(secret), secretTextLen))
	}
	raw, err := base64.RawURLEncoding.DecodeString(secret)
	if err != nil || len(raw) != SecretLen || base64.RawURLEncoding.EncodeToString(raw) != secret {
		return "", bad("secret is not canonical base64url")
	}
	return zoneName, nil
}

// ID returns the token's ID: the hex SHA-256 of its text. The ID is what is
// stored, listed and logged.
func ID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// validID reports whether id looks like an ID returned by ID.
func validID(id string) bool {
	if len(id) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

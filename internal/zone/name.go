package zone

import (
	"fmt"
	"unicode/utf8"
)

// Limits on zone records.
const (
	// MaxNameLen is the longest zone name, as for a DNS label.
	MaxNameLen = 63
	// MaxDescriptionLen bounds Zone.Description, in bytes.
	MaxDescriptionLen = 1024
	// MaxLabels bounds the number of labels on a zone.
	MaxLabels = 64
	// MaxLabelKeyLen bounds a label key, in bytes.
	MaxLabelKeyLen = 63
	// MaxLabelValueLen bounds a label value, in bytes.
	MaxLabelValueLen = 256
)

// ValidateName reports whether name can name a new zone: 1 to 63 characters
// of [a-z0-9-], not starting or ending with '-'. The root zone "" exists
// always and cannot be created. Errors wrap ErrInvalidName and say what is
// wrong.
func ValidateName(name string) error {
	bad := func(problem string) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidName, name, problem)
	}
	switch {
	case name == "":
		return bad("must not be empty (the root zone \"\" always exists)")
	case name == "root":
		return bad("is reserved: it addresses the root zone in X-Vault-Namespace")
	case len(name) > MaxNameLen:
		return bad(fmt.Sprintf("is %d characters long, at most %d allowed", len(name), MaxNameLen))
	case name[0] == '-':
		return bad("must not start with '-'")
	case name[len(name)-1] == '-':
		return bad("must not end with '-'")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isLower(c) && !isDigit(c) && c != '-' {
			return bad(fmt.Sprintf("character %d is %q; only a-z, 0-9 and '-' are allowed", i+1, rune(c)))
		}
	}
	return nil
}

func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlnum(c byte) bool { return isLower(c) || isDigit(c) || (c >= 'A' && c <= 'Z') }

// ValidateLabels checks a zone's labels: at most MaxLabels; keys of 1 to 63
// characters of [A-Za-z0-9._-] beginning and ending with a letter or digit
// (as Kubernetes label names); values of at most 256 bytes of valid UTF-8
// without control characters. Errors wrap ErrInvalidZone and name the label.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%w: labels: %d labels, at most %d allowed", ErrInvalidZone, len(labels), MaxLabels)
	}
	for k, v := range labels {
		if err := validateLabelKey(k); err != nil {
			return fmt.Errorf("%w: labels: key %q: %s", ErrInvalidZone, k, err)
		}
		if err := validateText(v, MaxLabelValueLen); err != nil {
			return fmt.Errorf("%w: labels: value of %q: %s", ErrInvalidZone, k, err)
		}
	}
	return nil
}

func validateLabelKey(k string) error {
	switch {
	case k == "":
		return fmt.Errorf("must not be empty")
	case len(k) > MaxLabelKeyLen:
		return fmt.Errorf("is %d characters long, at most %d allowed", len(k), MaxLabelKeyLen)
	case !isAlnum(k[0]) || !isAlnum(k[len(k)-1]):
		return fmt.Errorf("must begin and end with a letter or digit")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("character %d is %q; only letters, digits, '-', '_' and '.' are allowed", i+1, rune(c))
		}
	}
	return nil
}

// validateText checks free text: valid UTF-8, no control characters, at
// most max bytes.
func validateText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("is %d bytes long, at most %d allowed", len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}

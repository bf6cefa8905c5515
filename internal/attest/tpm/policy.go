package tpm

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Policy limits and defaults.
const (
	// DefaultMaxQuoteAge is Policy.MaxQuoteAge when zero.
	DefaultMaxQuoteAge = 5 * time.Minute
	// MinMaxQuoteAge and MaxMaxQuoteAge bound a non-zero Policy.MaxQuoteAge.
	MinMaxQuoteAge = 10 * time.Second
	MaxMaxQuoteAge = time.Hour
	// MaxPCRIndex is the highest PCR a policy may select (PC Client TPMs
	// have 24).
	MaxPCRIndex = 23
	// MaxEKHashes, MaxEKCAs and MaxPCRSets bound the policy lists.
	MaxEKHashes = 100000
	MaxEKCAs    = 64
	MaxPCRSets  = 64
	// MaxPolicyBytes bounds the JSON ParsePolicy accepts.
	MaxPolicyBytes = 8 << 20
)

// Policy is a zone's TPM attestation policy. The caller stores it as JSON
// (see ParsePolicy); MaxQuoteAge is written as a Go duration string ("5m")
// and read from such a string or from a number of seconds.
type Policy struct {
	// EKHashes are the endorsement keys allowed by hash: lower-case hex
	// SHA-256 of the EK public key's PKIX DER (see EKHash).
	EKHashes []string `json:"ek_hashes,omitempty"`
	// EKCAs are PEM CA certificates (one or more per entry) that may have
	// issued EK certificates; an EK is allowed if its certificate chains to
	// one of them. An EK needs to be allowed by EKHashes or EKCAs; at least
	// one of the two must be non-empty.
	EKCAs []string `json:"ek_ca_pems,omitempty"`
	// PCRs is the SHA-256 bank selection every quote must cover, strictly
	// increasing, each 0..MaxPCRIndex, at least one (e.g. [0,1,...,7]).
	PCRs []int `json:"pcrs"`
	// AllowedPCRs are the allowed PCR value sets: the quoted values must
	// match every entry of at least one set. Keys are decimal PCR indexes
	// among PCRs ("7"), values lower-case hex SHA-256 bank values. A set
	// may name only some of the selected PCRs; the others may hold any
	// value. Several sets allow staged upgrades (old and new firmware).
	// Empty means any values are allowed.
	AllowedPCRs []map[string]string `json:"allowed_pcr_sets,omitempty"`
	// MaxQuoteAge is how long a challenge's nonce stays valid: the agent
	// must answer within it. 0 means DefaultMaxQuoteAge; otherwise
	// MinMaxQuoteAge..MaxMaxQuoteAge.
	MaxQuoteAge time.Duration `json:"max_quote_age,omitzero"`
}

// QuoteAge returns MaxQuoteAge, or DefaultMaxQuoteAge when it is zero.
func (p Policy) QuoteAge() time.Duration {
	if p.MaxQuoteAge == 0 {
		return DefaultMaxQuoteAge
	}
	return p.MaxQuoteAge
}

// Validate reports the first problem with p; the error wraps
// ErrInvalidPolicy and names the field and index.
func (p Policy) Validate() error { return p.validate(true) }

// validate is Validate; parseCAs false skips parsing EKCAs (the costly
// part), for the attestor's per-request check: CheckEK parses them anyway
// when it needs them, and fails with ErrInvalidPolicy.
func (p Policy) validate(parseCAs bool) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidPolicy}, args...)...)
	}
	if len(p.EKHashes) == 0 && len(p.EKCAs) == 0 {
		return bad("ek_hashes and ek_ca_pems are both empty: no endorsement key could be allowed")
	}
	if len(p.EKHashes) > MaxEKHashes {
		return bad("ek_hashes has %d entries, at most %d allowed", len(p.EKHashes), MaxEKHashes)
	}
	seen := make(map[string]int, len(p.EKHashes))
	for i, h := range p.EKHashes {
		if !isLowerHex(h, 32) {
			return bad("ek_hashes[%d] is %q, want 64 lower-case hex digits (SHA-256 of the EK's PKIX DER)", i, truncate(h))
		}
		if j, dup := seen[h]; dup {
			return bad("ek_hashes[%d] repeats ek_hashes[%d]", i, j)
		}
		seen[h] = i
	}
	if len(p.EKCAs) > MaxEKCAs {
		return bad("ek_ca_pems has %d entries, at most %d allowed", len(p.EKCAs), MaxEKCAs)
	}
	for i, s := range p.EKCAs {
		if !parseCAs {
			break
		}
		if _, err := parseCAPEM(s); err != nil {
			return bad("ek_ca_pems[%d]: %v", i, err)
		}
	}
	if len(p.PCRs) == 0 {
		return bad("pcrs is empty: select at least one PCR")
	}
	for i, n := range p.PCRs {
		if n < 0 || n > MaxPCRIndex {
			return bad("pcrs[%d] is %d, want 0..%d", i, n, MaxPCRIndex)
		}
		if i > 0 && n <= p.PCRs[i-1] {
			return bad("pcrs[%d] is %d after %d: list each PCR once, in increasing order", i, n, p.PCRs[i-1])
		}
	}
	if len(p.AllowedPCRs) > MaxPCRSets {
		return bad("allowed_pcr_sets has %d sets, at most %d allowed", len(p.AllowedPCRs), MaxPCRSets)
	}
	for i, set := range p.AllowedPCRs {
		if len(set) == 0 {
			return bad("allowed_pcr_sets[%d] is empty (it would allow any values); remove it", i)
		}
		for k, v := range set {
			n, err := parsePCRKey(k)
			if err != nil {
				return bad("allowed_pcr_sets[%d]: %v", i, err)
			}
			if !p.selects(n) {
				return bad("allowed_pcr_sets[%d] names PCR %d, which pcrs does not select", i, n)
			}
			if !isLowerHex(v, 32) {
				return bad("allowed_pcr_sets[%d][%q] is %q, want 64 lower-case hex digits (a SHA-256 PCR value)", i, k, truncate(v))
			}
		}
	}
	if p.MaxQuoteAge != 0 && (p.MaxQuoteAge < MinMaxQuoteAge || p.MaxQuoteAge > MaxMaxQuoteAge) {
		return bad("max_quote_age is %s, want 0 (default %s) or %s..%s", p.MaxQuoteAge, DefaultMaxQuoteAge, MinMaxQuoteAge, MaxMaxQuoteAge)
	}
	return nil
}

// selects reports whether PCR n is in p.PCRs.
func (p Policy) selects(n int) bool {
	for _, m := range p.PCRs {
		if m == n {
			return true
		}
	}
	return false
}

// ParsePolicy decodes a policy from JSON, refusing unknown fields and
// trailing data, and validates it. Errors wrap ErrInvalidPolicy.
func ParsePolicy(b []byte) (Policy, error) {
	if len(b) > MaxPolicyBytes {
		return Policy{}, fmt.Errorf("%w: %d bytes of JSON, at most %d", ErrInvalidPolicy, len(b), MaxPolicyBytes)
	}
	var p Policy
	if err := decodeStrict(b, &p); err != nil {
		return Policy{}, fmt.Errorf("%w: %v", ErrInvalidPolicy, err)
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// policyJSON is Policy's JSON form, with max_quote_age as a duration.
type policyJSON struct {
	EKHashes    []string            `json:"ek_hashes,omitempty"`
	EKCAs       []string            `json:"ek_ca_pems,omitempty"`
	PCRs        []int               `json:"pcrs"`
	AllowedPCRs []map[string]string `json:"allowed_pcr_sets,omitempty"`
	MaxQuoteAge jsonDuration        `json:"max_quote_age,omitzero"`
}

// MarshalJSON writes max_quote_age as a Go duration string ("5m0s").
func (p Policy) MarshalJSON() ([]byte, error) {
	return json.Marshal(policyJSON{p.EKHashes, p.EKCAs, p.PCRs, p.AllowedPCRs, jsonDuration(p.MaxQuoteAge)})
}

// UnmarshalJSON reads max_quote_age as a Go duration string ("5m") or a
// number of seconds (as Vault's API accepts). It does not validate.
func (p *Policy) UnmarshalJSON(b []byte) error {
	var j policyJSON
	// Called by decodeStrict's decoder, whose DisallowUnknownFields does not
	// reach a nested Unmarshal: decode strictly again here.
	if err := decodeStrict(b, &j); err != nil {
		return err
	}
	*p = Policy{j.EKHashes, j.EKCAs, j.PCRs, j.AllowedPCRs, time.Duration(j.MaxQuoteAge)}
	return nil
}

// jsonDuration is a time.Duration in JSON: "5m" or a number of seconds.
type jsonDuration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string or a whole number of seconds.
func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("max_quote_age: %v", err)
		}
		*d = jsonDuration(v)
		return nil
	}
	var secs int64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("max_quote_age: want a duration string (\"5m\") or whole seconds, got %s", truncate(string(b)))
	}
	if secs < 0 || secs > int64(MaxMaxQuoteAge/time.Second) {
		return fmt.Errorf("max_quote_age: %d seconds is out of range", secs)
	}
	*d = jsonDuration(time.Duration(secs) * time.Second)
	return nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// parseCAPEM parses one or more PEM CERTIFICATE blocks, each a CA, with
// nothing but white space around them.
func parseCAPEM(s string) ([]*x509.Certificate, error) {
	rest := []byte(s)
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", len(certs), block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", len(certs), err)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("certificate %d (%s) is not a CA certificate", len(certs), truncate(c.Subject.String()))
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("data after PEM block %d is not a PEM certificate", len(certs))
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// parsePCRKey parses a canonical decimal PCR index 0..MaxPCRIndex.
func parsePCRKey(k string) (int, error) {
	n, err := strconv.Atoi(k)
	if err != nil || n < 0 || n > MaxPCRIndex || strconv.Itoa(n) != k {
		return 0, fmt.Errorf("PCR key %q is not a decimal PCR index 0..%d", truncate(k), MaxPCRIndex)
	}
	return n, nil
}

// isLowerHex reports whether s is exactly n bytes in lower-case hex.
func isLowerHex(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// truncate shortens untrusted text quoted in an error message.
func truncate(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

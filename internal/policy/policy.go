package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Errors returned by this package. Match them with errors.Is.
var (
	// ErrInvalidPolicy is returned by Parse when the policy text is not a
	// valid policy; the message names the line, path and key at fault.
	ErrInvalidPolicy = errors.New("failed to parse policy")
	// ErrInvalidName is returned for a policy name that cannot be stored.
	ErrInvalidName = errors.New("invalid policy name")
	// ErrProtected is returned when a built-in policy would be changed or
	// deleted ("root" is immutable, "default" cannot be deleted). Errors
	// carrying it also match logical.ErrInvalidRequest.
	ErrProtected = errors.New("protected policy")
)

// Names of the built-in policies.
const (
	// RootName is the policy that grants everything.
	RootName = "root"
	// DefaultName is the policy attached to tokens by default.
	DefaultName = "default"
)

// MaxNameLen is the longest policy name accepted, in bytes.
const MaxNameLen = 128

// Capability is a set of capabilities, one bit each.
type Capability uint16

// Capabilities, as written in policies.
const (
	CapDeny Capability = 1 << iota
	CapCreate
	CapRead
	CapUpdate
	CapPatch
	CapDelete
	CapList
	CapSudo
)

// capNames lists the capabilities in the order Strings returns them (sorted).
func capNames() [8]struct {
	c    Capability
	name string
} {
	return [8]struct {
		c    Capability
		name string
	}{
		{CapCreate, "create"}, {CapDelete, "delete"}, {CapDeny, "deny"}, {CapList, "list"},
		{CapPatch, "patch"}, {CapRead, "read"}, {CapSudo, "sudo"}, {CapUpdate, "update"},
	}
}

// ParseCapability returns the capability named s, or false if s names none.
func ParseCapability(s string) (Capability, bool) {
	for _, c := range capNames() {
		if c.name == s {
			return c.c, true
		}
	}
	return 0, false
}

// Has reports whether every capability in o is in c.
func (c Capability) Has(o Capability) bool { return c&o == o }

// Strings returns the names of the capabilities in c, sorted. A set
// containing deny returns just ["deny"].
func (c Capability) Strings() []string {
	if c.Has(CapDeny) {
		return []string{"deny"}
	}
	var out []string
	for _, n := range capNames() {
		if c.Has(n.c) {
			out = append(out, n.name)
		}
	}
	return out
}

// String joins Strings with commas.
func (c Capability) String() string { return strings.Join(c.Strings(), ",") }

// Permissions is what one path rule grants. Maps and slices are read-only
// once the Permissions belongs to a Policy or an ACL.
type Permissions struct {
	// Capabilities granted; CapDeny alone when the rule denies.
	Capabilities Capability
	// AllowedParameters maps a lower-cased request parameter (or "*") to the
	// values it may take; an empty list allows any value. When non-empty,
	// parameters not listed are refused.
	AllowedParameters map[string][]any
	// DeniedParameters maps a lower-cased parameter (or "*") to the values it
	// may not take; an empty list refuses every value.
	DeniedParameters map[string][]any
	// RequiredParameters must all be present in the request.
	RequiredParameters []string
	// MinWrappingTTL and MaxWrappingTTL bound the response-wrapping TTL a
	// request on this path may ask for; zero means no bound.
	MinWrappingTTL time.Duration
	MaxWrappingTTL time.Duration
	// CacheMaxStale, when positive, lets edge agents of the zone cache what
	// this rule lets them read, and serve it for up to this long past their
	// last sync when the control plane is unreachable (a `cache { max_stale =
	// "24h" }` block). Zero: nothing under the rule is cached.
	CacheMaxStale time.Duration
}

// MaxCacheStale bounds a cache block's max_stale.
const MaxCacheStale = 30 * 24 * time.Hour

// PathRule is one path block of a policy.
type PathRule struct {
	// Path is the pattern as written, without a leading "/", with any
	// trailing "*" kept ("secret/data/*", "secret/+/db").
	Path string
	// Line is the line of the block in the policy text.
	Line int
	Permissions
}

// Policy is a parsed policy.
type Policy struct {
	// Name is the normalised (lower-case) name.
	Name string
	// Raw is the policy text as given to Parse.
	Raw string
	// Paths are the path blocks in the order written. A pattern may appear
	// more than once; NewACL merges the blocks.
	Paths []PathRule
	root  bool
}

// Root reports whether p is the built-in root policy.
func (p *Policy) Root() bool { return p != nil && p.root }

// RootPolicy returns the built-in root policy. It is the only way to obtain
// a Policy for which NewACL grants everything: parsing text named "root"
// does not.
func RootPolicy() *Policy { return &Policy{Name: RootName, root: true} }

// NormalizeName lower-cases name as Vault does and checks it can name a
// stored policy: not empty, at most MaxNameLen bytes, valid UTF-8, no
// control characters, no "/" and no "..".
func NormalizeName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: name is not valid UTF-8", ErrInvalidName)
	}
	n := strings.ToLower(name)
	switch {
	case n == "":
		return "", fmt.Errorf("%w: name must not be empty", ErrInvalidName)
	case len(n) > MaxNameLen:
		return "", fmt.Errorf("%w: name is %d bytes long, the limit is %d", ErrInvalidName, len(n), MaxNameLen)
	case strings.Contains(n, "/"):
		return "", fmt.Errorf("%w: name %q must not contain \"/\"", ErrInvalidName, n)
	case strings.Contains(n, ".."):
		return "", fmt.Errorf("%w: name %q must not contain \"..\"", ErrInvalidName, n)
	case strings.TrimSpace(n) != n:
		return "", fmt.Errorf("%w: name %q must not begin or end with a space", ErrInvalidName, n)
	}
	for _, r := range n {
		if unicode.IsControl(r) {
			return "", fmt.Errorf("%w: name %q must not contain control characters", ErrInvalidName, n)
		}
	}
	return n, nil
}

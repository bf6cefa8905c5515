package token

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
)

// record is what is stored, JSON-encoded, at "id/<hash>". It never holds the
// token id itself.
type record struct {
	Accessor       string            `json:"accessor"`
	Policies       []string          `json:"policies"`
	Meta           map[string]string `json:"meta,omitempty"`
	DisplayName    string            `json:"display_name"`
	Parent         string            `json:"parent,omitempty"` // parent's hash; "" for orphans
	CreationTime   time.Time         `json:"creation_time"`
	TTL            time.Duration     `json:"ttl"` // creation TTL; 0 = never expires
	ExplicitMaxTTL time.Duration     `json:"explicit_max_ttl,omitempty"`
	Period         time.Duration     `json:"period,omitempty"`
	NumUses        int64             `json:"num_uses,omitempty"`
	Renewable      bool              `json:"renewable"`
	Path           string            `json:"path"`
	Type           string            `json:"type"`
	ExpireTime     time.Time         `json:"expire_time,omitzero"` // zero = never
	LastRenewal    time.Time         `json:"last_renewal,omitzero"`
}

// Entry is a snapshot of one stored token. Entries are immutable and may be
// shared between goroutines; every accessor returns a copy of mutable data.
// An Entry never holds the token id: only its keyed hash.
type Entry struct {
	hash string
	rec  record
	// exhausted is set on the entry returned by Use when that use was the
	// token's last one (NumUses is then 0 but the token was use-limited).
	exhausted bool
}

func decodeEntry(hash string, raw []byte) (*Entry, error) {
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("decode token entry: %w", err)
	}
	return &Entry{hash: hash, rec: r}, nil
}

func (e *Entry) encode() ([]byte, error) {
	b, err := json.Marshal(e.rec)
	if err != nil {
		return nil, fmt.Errorf("encode token entry: %w", err)
	}
	return b, nil
}

// clone returns a deep copy that may be modified before it is stored.
func (e *Entry) clone() *Entry {
	c := *e
	c.rec.Policies = slices.Clone(e.rec.Policies)
	c.rec.Meta = maps.Clone(e.rec.Meta)
	return &c
}

// Hash returns the token's storage identity: the hex HMAC-SHA256 of its id
// under the store's salt. It is not a credential and may be logged.
func (e *Entry) Hash() string { return e.hash }

// Accessor returns the token's accessor, a non-secret handle that can look up
// and revoke the token but not authenticate.
func (e *Entry) Accessor() string { return e.rec.Accessor }

// Policies returns the token's policies, sorted.
func (e *Entry) Policies() []string { return slices.Clone(e.rec.Policies) }

// HasPolicy reports whether the token carries the named policy.
func (e *Entry) HasPolicy(name string) bool {
	_, ok := slices.BinarySearch(e.rec.Policies, name)
	return ok
}

// IsRoot reports whether the token carries the root policy.
func (e *Entry) IsRoot() bool { return e.HasPolicy(rootPolicy) }

// Meta returns a copy of the token's metadata (nil when it has none).
func (e *Entry) Meta() map[string]string { return maps.Clone(e.rec.Meta) }

// DisplayName returns the token's display name ("token", "token-<name>", "root").
func (e *Entry) DisplayName() string { return e.rec.DisplayName }

// Path returns the auth path that created the token ("auth/token/create").
func (e *Entry) Path() string { return e.rec.Path }

// Orphan reports whether the token has no parent.
func (e *Entry) Orphan() bool { return e.rec.Parent == "" }

// ParentHash returns the parent's Hash, or "" for an orphan.
func (e *Entry) ParentHash() string { return e.rec.Parent }

// NumUses returns the remaining number of uses; 0 means unlimited, unless
// Exhausted reports true.
func (e *Entry) NumUses() int64 { return e.rec.NumUses }

// Exhausted reports whether this entry was returned by the use that consumed
// the token's last use (the token is revoked in storage).
func (e *Entry) Exhausted() bool { return e.exhausted }

// Renewable reports whether the token may be renewed.
func (e *Entry) Renewable() bool { return e.rec.Renewable }

// CreationTime returns when the token was created.
func (e *Entry) CreationTime() time.Time { return e.rec.CreationTime }

// CreationTTL returns the TTL the token was created with (0: never expires).
func (e *Entry) CreationTTL() time.Duration { return e.rec.TTL }

// ExplicitMaxTTL returns the hard limit on the token's life (0: none).
func (e *Entry) ExplicitMaxTTL() time.Duration { return e.rec.ExplicitMaxTTL }

// Period returns the token's renewal period (0: not periodic).
func (e *Entry) Period() time.Duration { return e.rec.Period }

// ExpireTime returns when the token expires; the zero time means never.
func (e *Entry) ExpireTime() time.Time { return e.rec.ExpireTime }

// TTL returns the time left at now (0 for a token that never expires).
func (e *Entry) TTL(now time.Time) time.Duration {
	if e.rec.ExpireTime.IsZero() {
		return 0
	}
	return max(e.rec.ExpireTime.Sub(now), 0)
}

// expiredAt reports whether the token is past its expiry at now.
func (e *Entry) expiredAt(now time.Time) bool {
	return !e.rec.ExpireTime.IsZero() && !now.Before(e.rec.ExpireTime)
}

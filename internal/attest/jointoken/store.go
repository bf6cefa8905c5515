package jointoken

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
	"unicode"

	"github.com/edgevault/edgevault/internal/keylock"
	"github.com/edgevault/edgevault/internal/storage"
)

// Limits and defaults.
const (
	// DefaultTTL is a token's lifetime when Options.TTL is zero.
	DefaultTTL = 15 * time.Minute
	// MaxTTL is the longest lifetime Create accepts.
	MaxTTL = 24 * time.Hour
	// DefaultClockSkew is Config.ClockSkew when zero.
	DefaultClockSkew = 5 * time.Minute
	// MaxAgentIDLen bounds Options.AgentID, in bytes.
	MaxAgentIDLen = 128
	// MaxLabels bounds the number of Options.Labels.
	MaxLabels = 32
	// MaxLabelLen bounds each label key and value, in bytes.
	MaxLabelLen = 256
)

// prefix is where token records live inside a zone's store.
const prefix = "attest/tokens/"

// Config configures a Store.
type Config struct {
	// Stores returns the storage of a zone ("" is the root zone): the
	// zone's encrypted view, so token records are encrypted at rest.
	// Required.
	Stores func(zone string) (storage.Backend, error)
	// ClockSkew is how far a token's creation time may lie in the future
	// of the redeeming server's clock (servers of a cluster disagree a
	// little). Expiry is not stretched. 0 means DefaultClockSkew.
	ClockSkew time.Duration
}

// Options are the per-token settings of Create.
type Options struct {
	// TTL is how long the token can be redeemed. 0 means DefaultTTL; at
	// most MaxTTL.
	TTL time.Duration
	// AgentID, if set, is the agent ID the redeeming node gets (an operator
	// naming a node); empty lets the enrolling service choose one. The
	// caller validates its syntax; this package only bounds its length.
	AgentID string
	// Labels are operator metadata copied to the enrolled agent's claims.
	Labels map[string]string
}

// Info describes a stored token. It never holds the token text.
type Info struct {
	// ID is the hex SHA-256 of the token text.
	ID string `json:"id"`
	// Zone is the zone the token enrolls into ("" is the root zone).
	Zone string `json:"zone"`
	// AgentID is the agent ID preset by the operator, or empty.
	AgentID string `json:"agent_id,omitempty"`
	// Labels are the operator metadata given to Create.
	Labels map[string]string `json:"labels,omitempty"`
	// CreatedAt and ExpiresAt bound when the token can be redeemed.
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// UsedAt is when the token was redeemed; zero while unused.
	UsedAt time.Time `json:"used_at,omitzero"`
}

// Used reports whether the token was redeemed.
func (i Info) Used() bool { return !i.UsedAt.IsZero() }

// Store creates and redeems join tokens. It is safe for concurrent use.
type Store struct {
	cfg   Config
	locks *keylock.Locks
}

// New returns a Store. Config.Stores is required.
func New(cfg Config) (*Store, error) {
	if cfg.Stores == nil {
		return nil, fmt.Errorf("%w: Config.Stores is nil", ErrInvalidOptions)
	}
	switch {
	case cfg.ClockSkew < 0:
		return nil, fmt.Errorf("%w: ClockSkew must not be negative, got %s", ErrInvalidOptions, cfg.ClockSkew)
	case cfg.ClockSkew == 0:
		cfg.ClockSkew = DefaultClockSkew
	}
	return &Store{cfg: cfg, locks: keylock.New()}, nil
}

func (s *Store) lock(zone, id string) func() {
	return s.locks.Lock(zone, id)
}

func (s *Store) store(zoneName string) (storage.Backend, error) {
	if err := validateZone(zoneName); err != nil {
		return nil, err
	}
	st, err := s.cfg.Stores(zoneName)
	if err != nil {
		return nil, fmt.Errorf("zone %q: %w", zoneName, err)
	}
	return st, nil
}

func (o Options) validate() error {
	switch {
	case o.TTL < 0:
		return fmt.Errorf("%w: TTL must not be negative, got %s", ErrInvalidOptions, o.TTL)
	case o.TTL > MaxTTL:
		return fmt.Errorf("%w: TTL %s is longer than the maximum %s", ErrInvalidOptions, o.TTL, MaxTTL)
	case len(o.AgentID) > MaxAgentIDLen:
		return fmt.Errorf("%w: AgentID is %d bytes, at most %d allowed", ErrInvalidOptions, len(o.AgentID), MaxAgentIDLen)
	case len(o.Labels) > MaxLabels:
		return fmt.Errorf("%w: %d labels, at most %d allowed", ErrInvalidOptions, len(o.Labels), MaxLabels)
	}
	for k, v := range o.Labels {
		if k == "" || len(k) > MaxLabelLen || len(v) > MaxLabelLen || !printable(k) || !printable(v) {
			return fmt.Errorf("%w: label %q: key must be 1 to %d printable bytes, value at most %d", ErrInvalidOptions, k, MaxLabelLen, MaxLabelLen)
		}
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Create mints a token for zone and stores its hash. The returned token text
// is shown once: it is not stored and cannot be recovered.
func (s *Store) Create(ctx context.Context, zoneName string, opts Options, now time.Time) (string, Info, error) {
	fail := func(err error) (string, Info, error) {
		return "", Info{}, fmt.Errorf("join token: create in zone %q: %w", zoneName, err)
	}
	if err := validateZone(zoneName); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrInvalidOptions, err))
	}
	if err := opts.validate(); err != nil {
		return fail(err)
	}
	ttl := opts.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	st, err := s.store(zoneName)
	if err != nil {
		return fail(err)
	}
	token, err := newToken(zoneName)
	if err != nil {
		return fail(err)
	}
	now = now.UTC().Round(0)
	info := Info{
		ID:        ID(token),
		Zone:      zoneName,
		AgentID:   opts.AgentID,
		Labels:    cloneLabels(opts.Labels),
		CreatedAt: now,
		ExpiresAt: now.Add(ttl),
	}
	if err := put(ctx, st, info); err != nil {
		return fail(err)
	}
	return token, info, nil
}

// Redeem checks token against zone and marks it used. Exactly one of any
// number of concurrent Redeem calls for one token succeeds. Errors:
// ErrTokenUnknown (malformed or no record), ErrTokenZone (issued for another
// zone), ErrTokenUsed (replay), ErrTokenExpired, ErrTokenNotYetValid.
func (s *Store) Redeem(ctx context.Context, zoneName, token string, now time.Time) (Info, error) {
	fail := func(err error) (Info, error) {
		return Info{}, fmt.Errorf("join token: redeem in zone %q: %w", zoneName, err)
	}
	tokenZone, err := Parse(token)
	if err != nil {
		return fail(err)
	}
	if tokenZone != zoneName {
		return fail(fmt.Errorf("%w: issued for zone %q", ErrTokenZone, tokenZone))
	}
	st, err := s.store(zoneName)
	if err != nil {
		return fail(err)
	}
	id := ID(token)
	defer s.lock(zoneName, id)()
	info, err := get(ctx, st, id)
	if err != nil {
		return fail(err)
	}
	switch {
	case info.Zone != zoneName:
		return fail(fmt.Errorf("%w: token %s: record names zone %q", ErrTokenZone, id, info.Zone))
	case info.Used():
		return fail(fmt.Errorf("%w: token %s: redeemed at %s", ErrTokenUsed, id, info.UsedAt.Format(time.RFC3339)))
	case !now.Before(info.ExpiresAt):
		return fail(fmt.Errorf("%w: token %s: expired at %s", ErrTokenExpired, id, info.ExpiresAt.Format(time.RFC3339)))
	case now.Add(s.cfg.ClockSkew).Before(info.CreatedAt):
		return fail(fmt.Errorf("%w: token %s: created at %s, more than %s after now", ErrTokenNotYetValid, id, info.CreatedAt.Format(time.RFC3339), s.cfg.ClockSkew))
	}
	info.UsedAt = now.UTC().Round(0)
	if err := put(ctx, st, info); err != nil {
		return fail(fmt.Errorf("token %s: mark used: %w", id, err))
	}
	return info, nil
}

// Get returns the record of the token with the given ID, or an error
// wrapping ErrTokenUnknown.
func (s *Store) Get(ctx context.Context, zoneName, id string) (Info, error) {
	st, err := s.store(zoneName)
	if err != nil {
		return Info{}, fmt.Errorf("join token: get: %w", err)
	}
	info, err := get(ctx, st, id)
	if err != nil {
		return Info{}, fmt.Errorf("join token: get in zone %q: %w", zoneName, err)
	}
	return info, nil
}

// List returns every stored token of zone, sorted by ID.
func (s *Store) List(ctx context.Context, zoneName string) ([]Info, error) {
	st, err := s.store(zoneName)
	if err != nil {
		return nil, fmt.Errorf("join token: list: %w", err)
	}
	ids, err := st.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("join token: list zone %q: %w", zoneName, err)
	}
	sort.Strings(ids)
	out := make([]Info, 0, len(ids))
	for _, id := range ids {
		info, err := get(ctx, st, id)
		if errors.Is(err, ErrTokenUnknown) {
			continue // deleted since List
		}
		if err != nil {
			return nil, fmt.Errorf("join token: list zone %q: %w", zoneName, err)
		}
		out = append(out, info)
	}
	return out, nil
}

// Delete removes the token with the given ID, used or not; a deleted token
// can no longer be redeemed. Deleting a missing token returns nil.
func (s *Store) Delete(ctx context.Context, zoneName, id string) error {
	if !validID(id) {
		return fmt.Errorf("join token: delete in zone %q: %w: bad ID", zoneName, ErrTokenUnknown)
	}
	st, err := s.store(zoneName)
	if err != nil {
		return fmt.Errorf("join token: delete: %w", err)
	}
	defer s.lock(zoneName, id)()
	if err := st.Delete(ctx, prefix+id); err != nil {
		return fmt.Errorf("join token: delete %s in zone %q: %w", id, zoneName, err)
	}
	return nil
}

// Tidy deletes the records of tokens that expired more than ClockSkew
// before now (used or not) and returns how many it deleted. Presenting a
// tidied token yields ErrTokenUnknown instead of ErrTokenExpired or
// ErrTokenUsed; it is refused either way.
func (s *Store) Tidy(ctx context.Context, zoneName string, now time.Time) (int, error) {
	infos, err := s.List(ctx, zoneName)
	if err != nil {
		return 0, fmt.Errorf("join token: tidy: %w", err)
	}
	n := 0
	for _, info := range infos {
		if now.Before(info.ExpiresAt.Add(s.cfg.ClockSkew)) {
			continue
		}
		if err := s.Delete(ctx, zoneName, info.ID); err != nil {
			return n, fmt.Errorf("join token: tidy: %w", err)
		}
		n++
	}
	return n, nil
}

func get(ctx context.Context, st storage.Backend, id string) (Info, error) {
	if !validID(id) {
		return Info{}, fmt.Errorf("%w: bad ID", ErrTokenUnknown)
	}
	b, err := st.Get(ctx, prefix+id)
	if errors.Is(err, storage.ErrNotFound) {
		return Info{}, fmt.Errorf("%w: token %s", ErrTokenUnknown, id)
	}
	if err != nil {
		return Info{}, fmt.Errorf("token %s: %w", id, err)
	}
	info, err := parseRecord(b)
	if err != nil {
		return Info{}, fmt.Errorf("token %s: %w", id, err)
	}
	if info.ID != id {
		return Info{}, fmt.Errorf("token %s: %w: record names ID %q", id, ErrCorrupt, info.ID)
	}
	return info, nil
}

func put(ctx context.Context, st storage.Backend, info Info) error {
	b, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("token %s: encode: %w", info.ID, err)
	}
	if err := st.Put(ctx, prefix+info.ID, b); err != nil {
		return fmt.Errorf("token %s: store: %w", info.ID, err)
	}
	return nil
}

// parseRecord decodes a stored record and checks its fields.
func parseRecord(b []byte) (Info, error) {
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	switch {
	case !validID(info.ID):
		return Info{}, fmt.Errorf("%w: field \"id\" is not a hex SHA-256", ErrCorrupt)
	case validateZone(info.Zone) != nil:
		return Info{}, fmt.Errorf("%w: field \"zone\" is not a zone name", ErrCorrupt)
	case info.CreatedAt.IsZero() || info.ExpiresAt.IsZero():
		return Info{}, fmt.Errorf("%w: field \"created_at\" or \"expires_at\" is missing", ErrCorrupt)
	}
	return info, nil
}

func cloneLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

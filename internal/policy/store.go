package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
)

// aclPrefix is where policies live inside the Store's backend.
const aclPrefix = "acl/"

// maxCachedACLs bounds the ACL cache; past it the cache starts over.
const maxCachedACLs = 4096

// Store keeps ACL policies in a storage.Backend and compiles them into ACLs.
// It is safe for concurrent use.
//
// Errors for bad input wrap logical.ErrInvalidRequest, a missing policy
// wraps logical.ErrNotFound, so callers can hand them to the HTTP layer as
// they are. A call that fails changes nothing in storage.
//
// The ACL cache is invalidated by every Put and Delete made through this
// Store. Changes written by another process (another Raft node applying the
// log) are not seen until Invalidate is called.
type Store struct {
	b        storage.Backend
	onChange func() // after every committed change; see OnChange

	mu    sync.RWMutex
	gen   uint64          // bumped by every change; guards against caching stale ACLs
	cache map[string]*ACL // sorted, NUL-joined policy names → ACL
}

// stored is the storage record of one policy.
type stored struct {
	Name   string `json:"name"`
	Policy string `json:"policy"`
}

// NewStore returns a Store over b; b should be a view reserved for policies.
func NewStore(b storage.Backend) *Store {
	return &Store{b: b, cache: make(map[string]*ACL)}
}

// OnChange sets fn to be called after every committed Put or Delete (the
// edge agents' feed republishes what they may cache). Set it before the
// store is shared; fn must not block.
func (s *Store) OnChange(fn func()) { s.onChange = fn }

// changed runs after a committed change.
func (s *Store) changed() {
	s.Invalidate()
	if s.onChange != nil {
		s.onChange()
	}
}

// protectedError refuses a change to a built-in policy. It matches both
// ErrProtected and logical.ErrInvalidRequest.
type protectedError struct{ verb, name string }

func (e *protectedError) Error() string { return fmt.Sprintf("cannot %s %q policy", e.verb, e.name) }

func (e *protectedError) Is(target error) bool {
	return target == ErrProtected || target == logical.ErrInvalidRequest
}

func invalid(err error) error { return fmt.Errorf("%w: %w", logical.ErrInvalidRequest, err) }

// Get returns the named policy with its text. The root policy is returned
// as RootPolicy(), with empty text, as Vault does. A policy that does not
// exist is an error wrapping logical.ErrNotFound.
func (s *Store) Get(ctx context.Context, name string) (*Policy, error) {
	n, err := NormalizeName(name)
	if err != nil {
		return nil, invalid(err)
	}
	if n == RootName {
		return RootPolicy(), nil
	}
	return s.load(ctx, n)
}

// load reads and parses a stored policy.
func (s *Store) load(ctx context.Context, n string) (*Policy, error) {
	raw, err := s.b.Get(ctx, aclPrefix+n)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: no policy named %q", logical.ErrNotFound, n)
	}
	if err != nil {
		return nil, fmt.Errorf("policy %q: read: %w", n, err)
	}
	var rec stored
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("policy %q: decode stored record: %w", n, err)
	}
	p, err := Parse(n, rec.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy %q: stored text no longer parses: %w", n, err)
	}
	return p, nil
}

// Put parses text and stores it as the named policy, replacing any policy
// of that name. Bad text stores nothing and returns an error wrapping
// logical.ErrInvalidRequest that says what is wrong. "root" cannot be written.
func (s *Store) Put(ctx context.Context, name, text string) error {
	n, err := NormalizeName(name)
	if err != nil {
		return invalid(err)
	}
	if n == RootName {
		return &protectedError{"update", n}
	}
	if _, err := Parse(n, text); err != nil {
		return invalid(err)
	}
	raw, err := json.Marshal(stored{Name: n, Policy: text})
	if err != nil {
		return fmt.Errorf("policy %q: encode: %w", n, err)
	}
	if err := s.b.Put(ctx, aclPrefix+n, raw); err != nil {
		return fmt.Errorf("policy %q: write: %w", n, err)
	}
	s.changed()
	return nil
}

// Delete removes the named policy. Deleting a policy that does not exist
// succeeds. "root" and "default" cannot be deleted.
func (s *Store) Delete(ctx context.Context, name string) error {
	n, err := NormalizeName(name)
	if err != nil {
		return invalid(err)
	}
	if n == RootName || n == DefaultName {
		return &protectedError{"delete", n}
	}
	if err := s.b.Delete(ctx, aclPrefix+n); err != nil {
		return fmt.Errorf("policy %q: delete: %w", n, err)
	}
	s.changed()
	return nil
}

// List returns the names of the stored policies, sorted, followed by
// "root", as Vault's sys/policies/acl LIST answers.
func (s *Store) List(ctx context.Context) ([]string, error) {
	keys, err := s.b.List(ctx, aclPrefix)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	out := make([]string, 0, len(keys)+1)
	for _, k := range keys {
		if !strings.HasSuffix(k, "/") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return append(out, RootName), nil
}

// EnsureDefault writes the default policy (DefaultPolicyText) unless a
// policy named "default" is already stored. Call it once the storage is
// available (after unseal).
func (s *Store) EnsureDefault(ctx context.Context) error {
	_, err := s.b.Get(ctx, aclPrefix+DefaultName)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("policy %q: read: %w", DefaultName, err)
	}
	return s.Put(ctx, DefaultName, DefaultPolicyText)
}

// Invalidate empties the ACL cache. Put and Delete call it; call it when
// policies change underneath the Store.
func (s *Store) Invalidate() {
	s.mu.Lock()
	s.gen++
	clear(s.cache)
	s.mu.Unlock()
}

// ACL returns the compiled ACL for a token's policy names. Names are
// normalised; "root" among them yields the root ACL; names that are invalid
// or not stored grant nothing and are skipped, as Vault skips them. Results
// are cached by name set until the next change.
func (s *Store) ACL(ctx context.Context, names []string) (*ACL, error) {
	set := make([]string, 0, len(names))
	for _, name := range names {
		n, err := NormalizeName(name)
		if err != nil {
			continue
		}
		if n == RootName {
			return RootACL(), nil
		}
		set = append(set, n)
	}
	slices.Sort(set)
	set = slices.Compact(set)
	key := strings.Join(set, "\x00")

	s.mu.RLock()
	acl, ok := s.cache[key]
	gen := s.gen
	s.mu.RUnlock()
	if ok {
		return acl, nil
	}

	policies := make([]*Policy, 0, len(set))
	for _, n := range set {
		p, err := s.load(ctx, n)
		if errors.Is(err, logical.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		policies = append(policies, p)
	}
	acl, err := NewACL(policies...)
	if err != nil {
		return nil, fmt.Errorf("compile policies %v: %w", set, err)
	}

	s.mu.Lock()
	// Cache only if nothing changed since the policies were read: a Put
	// racing with this load must not leave a stale ACL behind.
	if s.gen == gen {
		if len(s.cache) >= maxCachedACLs {
			clear(s.cache)
		}
		s.cache[key] = acl
	}
	s.mu.Unlock()
	return acl, nil
}

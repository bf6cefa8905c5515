package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/edgevault/edgevault/internal/storage"
)

// Storage keys, relative to the Store's backend.
const (
	sourcePrefix = "sources/"
	rulePrefix   = "rules/"
)

// Store keeps sources and rules in a storage.Backend, typically an
// encrypted system view such as storage.NewView(b, "sys/events/"), and
// caches the compiled rules. Safe for concurrent use.
//
// Layout (relative to the backend):
//
//	sources/<name>   a source and its secret (JSON)
//	rules/<name>     a rule as written (JSON)
//	dedupe/<key>     the Deduper's records, if it shares the backend
//
// The cache follows writes made through this Store. Another process
// writing the same backend (a Raft follower applying a log entry) must be
// followed by Invalidate.
type Store struct {
	b        storage.Backend
	compiler *Compiler

	writeMu sync.Mutex                      // serialises rule writes with cache updates
	rules   atomic.Pointer[[]*CompiledRule] // sorted by name; nil = not loaded
}

// NewStore returns a Store over b, compiling rules with c.
func NewStore(b storage.Backend, c *Compiler) *Store {
	return &Store{b: b, compiler: c}
}

// Compiler returns the compiler the store validates rules with.
func (s *Store) Compiler() *Compiler { return s.compiler }

// storedSource is a Source as stored, secret included.
type storedSource struct {
	Source
	Secret []byte `json:"secret"`
}

// PutSource validates src (which must carry a secret, see WithSecret) and
// stores it, replacing any source of the same name.
func (s *Store) PutSource(ctx context.Context, src Source) error {
	if err := src.Validate(); err != nil {
		return err
	}
	src.HasSecret, src.SecretID = false, ""
	v, err := json.Marshal(storedSource{Source: src, Secret: src.secret})
	if err != nil {
		return fmt.Errorf("revoke: source %q: encode: %w", src.Name, err)
	}
	if err := s.b.Put(ctx, sourcePrefix+src.Name, v); err != nil {
		return fmt.Errorf("revoke: source %q: store: %w", src.Name, err)
	}
	return nil
}

// Source returns the named source, secret included (for Authenticate);
// its JSON form shows only HasSecret and SecretID. ErrNotFound if absent.
func (s *Store) Source(ctx context.Context, name string) (Source, error) {
	if !validName(name) {
		return Source{}, fmt.Errorf("revoke: source %q: %w", name, ErrNotFound)
	}
	v, err := s.b.Get(ctx, sourcePrefix+name)
	if errors.Is(err, storage.ErrNotFound) {
		return Source{}, fmt.Errorf("revoke: source %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Source{}, fmt.Errorf("revoke: source %q: read: %w", name, err)
	}
	var st storedSource
	if err := json.Unmarshal(v, &st); err != nil {
		return Source{}, fmt.Errorf("revoke: source %q: decode: %w", name, err)
	}
	return st.Source.WithSecret(st.Secret), nil
}

// DeleteSource removes the named source. Deleting a missing source is not
// an error.
func (s *Store) DeleteSource(ctx context.Context, name string) error {
	if !validName(name) {
		return nil
	}
	if err := s.b.Delete(ctx, sourcePrefix+name); err != nil {
		return fmt.Errorf("revoke: source %q: delete: %w", name, err)
	}
	return nil
}

// ListSources returns the source names, sorted.
func (s *Store) ListSources(ctx context.Context) ([]string, error) {
	names, err := s.b.List(ctx, sourcePrefix)
	if err != nil {
		return nil, fmt.Errorf("revoke: list sources: %w", err)
	}
	return leafNames(names), nil
}

// leafNames drops "sub/" entries, which are not ours.
func leafNames(names []string) []string {
	out := names[:0:0]
	for _, n := range names {
		if !strings.HasSuffix(n, "/") {
			out = append(out, n)
		}
	}
	return out
}

// PutRule compiles r (ErrInvalidRule if anything is wrong: nothing is
// stored then) and stores it, replacing any rule of the same name.
func (s *Store) PutRule(ctx context.Context, r Rule) error {
	cr, err := s.compiler.Compile(r)
	if err != nil {
		return err
	}
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("revoke: rule %q: encode: %w", r.Name, err)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	cur, err := s.loadLocked(ctx)
	if err != nil {
		return err
	}
	if err := s.b.Put(ctx, rulePrefix+r.Name, v); err != nil {
		return fmt.Errorf("revoke: rule %q: store: %w", r.Name, err)
	}
	next := slices.DeleteFunc(slices.Clone(cur), func(c *CompiledRule) bool { return c.rule.Name == r.Name })
	next = append(next, cr)
	slices.SortFunc(next, func(a, b *CompiledRule) int { return strings.Compare(a.rule.Name, b.rule.Name) })
	s.rules.Store(&next)
	return nil
}

// Rule returns the named rule as written. ErrNotFound if absent.
func (s *Store) Rule(ctx context.Context, name string) (Rule, error) {
	cr, err := s.CompiledRule(ctx, name)
	if err != nil {
		return Rule{}, err
	}
	return cr.rule, nil
}

// CompiledRule returns the named rule, compiled, from the cache.
func (s *Store) CompiledRule(ctx context.Context, name string) (*CompiledRule, error) {
	rules, err := s.Rules(ctx)
	if err != nil {
		return nil, err
	}
	i, ok := slices.BinarySearchFunc(rules, name, func(c *CompiledRule, n string) int { return strings.Compare(c.rule.Name, n) })
	if !ok {
		return nil, fmt.Errorf("revoke: rule %q: %w", name, ErrNotFound)
	}
	return rules[i], nil
}

// DeleteRule removes the named rule. Deleting a missing rule is not an
// error.
func (s *Store) DeleteRule(ctx context.Context, name string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	cur, err := s.loadLocked(ctx)
	if err != nil {
		return err
	}
	if !validName(name) {
		return nil
	}
	if err := s.b.Delete(ctx, rulePrefix+name); err != nil {
		return fmt.Errorf("revoke: rule %q: delete: %w", name, err)
	}
	next := slices.DeleteFunc(slices.Clone(cur), func(c *CompiledRule) bool { return c.rule.Name == name })
	s.rules.Store(&next)
	return nil
}

// ListRules returns the rule names, sorted.
func (s *Store) ListRules(ctx context.Context) ([]string, error) {
	rules, err := s.Rules(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.rule.Name
	}
	return out, nil
}

// Rules returns every rule, compiled, sorted by name, loading them from
// storage on first use or after Invalidate. The slice is shared: do not
// modify it.
func (s *Store) Rules(ctx context.Context) ([]*CompiledRule, error) {
	if p := s.rules.Load(); p != nil {
		return *p, nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.loadLocked(ctx)
}

// Invalidate drops the rule cache; the next use reloads from storage.
func (s *Store) Invalidate() { s.rules.Store(nil) }

// loadLocked returns the cached rules, loading them if needed. Called with
// writeMu held. A stored rule that no longer compiles (written by another
// version) fails the load, naming it, rather than being skipped silently.
func (s *Store) loadLocked(ctx context.Context) ([]*CompiledRule, error) {
	if p := s.rules.Load(); p != nil {
		return *p, nil
	}
	names, err := s.b.List(ctx, rulePrefix)
	if err != nil {
		return nil, fmt.Errorf("revoke: list rules: %w", err)
	}
	out := make([]*CompiledRule, 0, len(names))
	for _, n := range leafNames(names) {
		v, err := s.b.Get(ctx, rulePrefix+n)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("revoke: rule %q: read: %w", n, err)
		}
		var r Rule
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("revoke: rule %q: decode: %w", n, err)
		}
		cr, err := s.compiler.Compile(r)
		if err != nil {
			return nil, fmt.Errorf("revoke: stored rule %q: %w", n, err)
		}
		out = append(out, cr)
	}
	slices.SortFunc(out, func(a, b *CompiledRule) int { return strings.Compare(a.rule.Name, b.rule.Name) })
	s.rules.Store(&out)
	return out, nil
}

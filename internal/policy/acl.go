package policy

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

// ACL is the compiled, merged form of a set of policies. It is immutable and
// safe for concurrent use.
//
// Lookups take no locks and allocate nothing: exact patterns sit in a map,
// prefix globs in a radix tree (longest prefix wins among them), and
// patterns with "+" segments in a slice sorted by priority, so the first one
// that matches is the best of its kind.
type ACL struct {
	root      bool
	exact     map[string]*rule
	prefixes  radixNode
	wildcards []*rule // highest priority first
}

// rule is the merged rule for one pattern.
type rule struct {
	// path is the pattern as written (with any trailing "*").
	path string
	// pattern is path without its trailing "*"; it is what priority compares.
	pattern string
	// prefix is true when path ends in "*".
	prefix bool
	// segs is pattern split on "/", for patterns with "+" segments.
	segs []string
	// firstWC is the byte offset of the first "+" segment or of the "*".
	firstWC int
	// wildcards counts the "+" segments.
	wildcards int
	perms     Permissions
}

// outranks reports whether r has higher priority than o, following Vault's
// documented order for two non-exact patterns that both match a path.
func (r *rule) outranks(o *rule) bool {
	switch {
	case r.firstWC != o.firstWC:
		return r.firstWC > o.firstWC // first wildcard later: more specific
	case r.prefix != o.prefix:
		return !r.prefix // not ending in "*": more specific
	case r.wildcards != o.wildcards:
		return r.wildcards < o.wildcards // fewer "+": more specific
	case len(r.pattern) != len(o.pattern):
		return len(r.pattern) > len(o.pattern) // longer: more specific
	default:
		return r.pattern > o.pattern // lexically greater wins
	}
}

// matchSegments reports whether path matches a pattern with "+" segments.
// "+" matches exactly one segment (possibly empty); a trailing "*" makes the
// last segment a prefix and lets any further segments follow.
func (r *rule) matchSegments(path string) bool {
	// Cheap rejection: everything before the first "+" is literal.
	if !strings.HasPrefix(path, r.pattern[:r.firstWC]) {
		return false
	}
	rest, more := path, true
	for i, seg := range r.segs {
		if !more {
			return false // the path has fewer segments than the pattern
		}
		var part string
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			part, rest = rest[:j], rest[j+1:]
		} else {
			part, rest, more = rest, "", false
		}
		switch {
		case seg == "+":
		case r.prefix && i == len(r.segs)-1:
			return strings.HasPrefix(part, seg)
		case seg != part:
			return false
		}
	}
	return !more
}

// newRule classifies a pattern. Parse has already checked it.
func newRule(path string) (*rule, ruleKind) {
	r := &rule{path: path, pattern: path}
	if strings.HasSuffix(path, "*") {
		r.prefix = true
		r.pattern = strings.TrimSuffix(path, "*")
		r.firstWC = len(r.pattern)
	}
	segs := strings.Split(r.pattern, "/")
	off := 0
	for _, s := range segs {
		if s == "+" {
			if r.wildcards == 0 {
				r.firstWC = off
			}
			r.wildcards++
		}
		off += len(s) + 1
	}
	switch {
	case r.wildcards > 0:
		r.segs = segs
		return r, kindSegment
	case r.prefix:
		return r, kindPrefix
	default:
		return r, kindExact
	}
}

type ruleKind int

const (
	kindExact ruleKind = iota
	kindPrefix
	kindSegment
)

// NewACL compiles policies into one ACL. If any of them is RootPolicy(), the
// result is the root ACL, which allows everything with sudo.
//
// Blocks with the same pattern, in one policy or several, merge as Vault
// merges them: a deny in any of them makes the pattern deny-only; otherwise
// capabilities are unioned, the smaller non-zero wrapping TTL bounds win,
// parameter lists are concatenated (an empty list, meaning "any value",
// absorbs the others) and required parameters are unioned.
func NewACL(policies ...*Policy) (*ACL, error) {
	a := &ACL{exact: make(map[string]*rule)}
	prefix := make(map[string]*rule)
	segment := make(map[string]*rule)
	for _, p := range policies {
		if p == nil {
			continue
		}
		if p.root {
			return &ACL{root: true}, nil
		}
		for i := range p.Paths {
			pr := &p.Paths[i]
			r, kind := newRule(pr.Path)
			m := a.exact
			switch kind {
			case kindPrefix:
				m = prefix
			case kindSegment:
				m = segment
			}
			if existing, ok := m[pr.Path]; ok {
				mergePermissions(&existing.perms, &pr.Permissions)
				continue
			}
			r.perms = clonePermissions(pr.Permissions)
			m[pr.Path] = r
		}
	}
	for _, r := range prefix {
		a.prefixes.insert(r.pattern, r)
	}
	for _, r := range segment {
		a.wildcards = append(a.wildcards, r)
	}
	sort.Slice(a.wildcards, func(i, j int) bool { return a.wildcards[i].outranks(a.wildcards[j]) })
	return a, nil
}

// RootACL returns the ACL of the root policy.
func RootACL() *ACL { return &ACL{root: true} }

// IsRoot reports whether a is the root ACL.
func (a *ACL) IsRoot() bool { return a.root }

// match returns the rule that governs path, or nil. For list requests an
// exact pattern without the path's trailing "/" also counts, as in Vault.
func (a *ACL) match(path string, list bool) *rule {
	if r, ok := a.exact[path]; ok {
		return r
	}
	if list && strings.HasSuffix(path, "/") {
		if r, ok := a.exact[path[:len(path)-1]]; ok {
			return r
		}
	}
	best := a.prefixes.longest(path)
	for _, w := range a.wildcards {
		if best != nil && best.outranks(w) {
			break // every remaining wildcard rule ranks lower still
		}
		if w.matchSegments(path) {
			return w
		}
	}
	return best
}

// Allowed reports whether op on path is allowed, and whether the rule that
// decided grants sudo. The root ACL allows everything with sudo. A deny on
// the deciding rule, or no rule at all, refuses.
func (a *ACL) Allowed(op logical.Operation, path string) (allowed, sudo bool) {
	if a.root {
		return true, true
	}
	r := a.match(path, op == logical.ListOperation)
	if r == nil {
		return false, false
	}
	caps := r.perms.Capabilities
	if caps.Has(CapDeny) {
		return false, false
	}
	var need Capability
	switch op {
	case logical.ReadOperation:
		need = CapRead
	case logical.ListOperation:
		need = CapList
	case logical.CreateOperation:
		need = CapCreate
	case logical.UpdateOperation:
		need = CapUpdate
	case logical.PatchOperation:
		need = CapPatch
	case logical.DeleteOperation:
		need = CapDelete
	default:
		return false, caps.Has(CapSudo)
	}
	return caps.Has(need), caps.Has(CapSudo)
}

// Capabilities returns the capabilities the ACL grants on path, sorted, as
// sys/capabilities-self reports them: ["root"] for the root ACL, ["deny"]
// when the deciding rule denies or grants nothing, or when no rule matches.
func (a *ACL) Capabilities(path string) []string {
	if a.root {
		return []string{"root"}
	}
	r := a.match(path, false)
	if r == nil || r.perms.Capabilities == 0 || r.perms.Capabilities.Has(CapDeny) {
		return []string{"deny"}
	}
	return r.perms.Capabilities.Strings()
}

// Rule is the merged rule that decides a path.
type Rule struct {
	// Path is the pattern as written in the policies ("secret/+/db", "secret/*").
	Path string
	Permissions
}

// Rule returns the rule that decides path, for explanations and for
// checks beyond capabilities (wrapping TTLs). The root ACL answers with a
// rule on "*" granting every capability. The Permissions' maps and slices
// are shared with the ACL and must not be modified.
func (a *ACL) Rule(path string) (Rule, bool) {
	if a.root {
		return Rule{Path: "*", Permissions: Permissions{Capabilities: CapCreate | CapRead | CapUpdate | CapPatch | CapDelete | CapList | CapSudo}}, true
	}
	r := a.match(path, false)
	if r == nil {
		return Rule{}, false
	}
	return Rule{Path: r.path, Permissions: r.perms}, true
}

// CacheMaxStale returns how long an edge agent may serve path from its
// cache past its last sync, and whether it may cache it at all: the
// deciding rule must grant read and carry a cache block. The root ACL
// caches nothing (no rule says so).
func (a *ACL) CacheMaxStale(path string) (time.Duration, bool) {
	if a.root {
		return 0, false
	}
	r := a.match(path, false)
	if r == nil || !r.perms.Capabilities.Has(CapRead) || r.perms.Capabilities.Has(CapDeny) || r.perms.CacheMaxStale <= 0 {
		return 0, false
	}
	return r.perms.CacheMaxStale, true
}

// mergePermissions folds n into e as Vault merges two blocks on one pattern.
func mergePermissions(e *Permissions, n *Permissions) {
	switch {
	case e.Capabilities.Has(CapDeny):
		return
	case n.Capabilities.Has(CapDeny):
		*e = Permissions{Capabilities: CapDeny}
		return
	}
	e.Capabilities |= n.Capabilities
	if n.MaxWrappingTTL > 0 && (e.MaxWrappingTTL == 0 || n.MaxWrappingTTL < e.MaxWrappingTTL) {
		e.MaxWrappingTTL = n.MaxWrappingTTL
	}
	if n.MinWrappingTTL > 0 && (e.MinWrappingTTL == 0 || n.MinWrappingTTL < e.MinWrappingTTL) {
		e.MinWrappingTTL = n.MinWrappingTTL
	}
	// Two blocks that both let agents cache: the shorter staleness wins.
	if n.CacheMaxStale > 0 && (e.CacheMaxStale == 0 || n.CacheMaxStale < e.CacheMaxStale) {
		e.CacheMaxStale = n.CacheMaxStale
	}
	e.AllowedParameters = mergeParams(e.AllowedParameters, n.AllowedParameters)
	e.DeniedParameters = mergeParams(e.DeniedParameters, n.DeniedParameters)
	for _, p := range n.RequiredParameters {
		if !slices.Contains(e.RequiredParameters, p) {
			e.RequiredParameters = append(e.RequiredParameters, p)
		}
	}
}

// mergeParams merges parameter lists; e is owned by the ACL, n is not.
func mergeParams(e, n map[string][]any) map[string][]any {
	if len(n) == 0 {
		return e
	}
	if e == nil {
		e = make(map[string][]any, len(n))
	}
	for k, vals := range n {
		old, ok := e[k]
		if len(vals) == 0 || (ok && len(old) == 0) {
			e[k] = []any{} // an empty list allows (or denies) any value
			continue
		}
		e[k] = append(slices.Clone(vals), old...)
	}
	return e
}

// clonePermissions deep-copies p so merging never touches a Policy.
func clonePermissions(p Permissions) Permissions {
	c := p
	c.AllowedParameters = cloneParams(p.AllowedParameters)
	c.DeniedParameters = cloneParams(p.DeniedParameters)
	c.RequiredParameters = slices.Clone(p.RequiredParameters)
	return c
}

func cloneParams(m map[string][]any) map[string][]any {
	if m == nil {
		return nil
	}
	c := make(map[string][]any, len(m))
	for k, v := range m {
		c[k] = slices.Clone(v)
	}
	return c
}

package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/logical"
)

// policySeeds are real policies: Vault's documentation examples, the
// default policy, legacy and JSON forms, and broken inputs.
func policySeeds() []string {
	return []string{
		DefaultPolicyText,
		`path "secret/*" { capabilities = ["create", "read", "update", "patch", "delete", "list"] }
path "secret/super-secret" { capabilities = ["deny"] }
path "secret/restricted" {
  capabilities = ["create"]
  allowed_parameters = { "foo" = [] "bar" = ["zip", "zap"] }
}`,
		`path "sys/*" { policy = "deny" }
path "secret/*" { policy = "write" }
path "secret/foo" { policy = "read" capabilities = ["create", "sudo"] }`,
		`path "secret/+/teamb" { capabilities = ["read"] }
path "secret/+/+/foo/*" { capabilities = ["read"] }`,
		`path "auth/token/create" {
  capabilities = ["create", "update"]
  min_wrapping_ttl = "1s"
  max_wrapping_ttl = 90
  required_parameters = ["bar", "baz"]
  denied_parameters = { "*" = [] }
}`,
		`{"path": {"secret/*": {"capabilities": ["read"]}, "kv/+/x": {"capabilities": ["list"]}}}`,
		`path "a" { capabilities = ["reed"] }`,
		`path "a" {`,
		"path \"a\" { capabilities = [<<EOT\nread\nEOT\n] }",
		"path \"\\u00e9\" { capabilities = [\"read\"] }",
		`path "x" { allowed_parameters = { "n" = [1e3, 0x10, -1, 1.5e-3] } }`,
		`"just a string"`,
		"\x00\xff{}[]",
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range policySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse("fuzz", text)
		if err != nil {
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("error %v does not wrap ErrInvalidPolicy", err)
			}
			return
		}
		for _, r := range p.Paths {
			if msg := checkPattern(r.Path); msg != "" {
				t.Fatalf("accepted pattern %q: %s", r.Path, msg)
			}
			if r.Capabilities.Has(CapDeny) && r.Capabilities != CapDeny {
				t.Fatalf("deny mixed with %v", r.Capabilities)
			}
		}
		a, err := NewACL(p, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Paths {
			path := strings.TrimSuffix(r.Path, "*")
			a.Capabilities(path)
			a.Allowed(logical.ListOperation, path+"/")
			_ = a.CheckParameters(path, map[string]any{"a": "b"})
		}
		again, err := Parse("fuzz", text)
		if err != nil || len(again.Paths) != len(p.Paths) {
			t.Fatalf("second parse differs: %v", err)
		}
	})
}

// FuzzAllowed compares the ACL's matcher (map, radix tree, sorted wildcard
// list with early exit) with a naive reference that tries every pattern the
// way Vault does and sorts the candidates by priority.
func FuzzAllowed(f *testing.F) {
	f.Add("secret/*\nsecret/+/bar\nsecret/foo/*\nsecret/foo", "secret/foo/bar", false)
	f.Add("secret/*\nsecret/+/+/foo/*", "secret/a/b/foo/c", false)
	f.Add("*\n+\n+/*\na/+/b*\na/b", "a/x/bcd", false)
	f.Add("secret/team\nsecret/*", "secret/team/", true)
	f.Add("a/+/+\na/+/b\na/b/+\na/b*\na/*", "a/b/b", false)
	f.Add("a/+/*\na/+\na/b", "a/", false)
	f.Add("ab*\nabc*\na*\nabd*\nb*", "abcd", false)
	f.Fuzz(func(t *testing.T, patterns, path string, list bool) {
		var valid []string
		p := &Policy{Name: "fuzz"}
		for _, pat := range strings.Split(patterns, "\n") {
			if checkPattern(pat) != "" || slices.Contains(valid, pat) || len(valid) >= 64 {
				continue
			}
			valid = append(valid, pat)
			p.Paths = append(p.Paths, PathRule{Path: pat, Permissions: Permissions{Capabilities: CapRead}})
		}
		a, err := NewACL(p)
		if err != nil {
			t.Fatal(err)
		}
		want := referenceMatch(valid, path, list)
		got := ""
		if r := a.match(path, list); r != nil {
			got = r.path
		}
		if got != want {
			t.Fatalf("patterns %q path %q list=%v: matcher chose %q, reference %q", valid, path, list, got, want)
		}
		op := logical.ReadOperation
		if list {
			op = logical.ListOperation
		}
		allowed, _ := a.Allowed(op, path)
		if list && allowed {
			t.Fatalf("list allowed with only read granted")
		}
		if !list && allowed != (want != "") {
			t.Fatalf("Allowed = %v with rule %q", allowed, want)
		}
	})
}

// referenceMatch is the slow, obvious matcher: Vault's algorithm written out.
func referenceMatch(patterns []string, path string, list bool) string {
	isExact := func(p string) bool {
		return !strings.HasSuffix(p, "*") && !slices.Contains(strings.Split(p, "/"), "+")
	}
	for _, p := range patterns {
		if isExact(p) && p == path {
			return p
		}
	}
	if list && strings.HasSuffix(path, "/") {
		for _, p := range patterns {
			if isExact(p) && p == strings.TrimSuffix(path, "/") {
				return p
			}
		}
	}
	var cands []*rule
	parts := strings.Split(path, "/")
	for _, p := range patterns {
		r, kind := newRule(p)
		switch kind {
		case kindPrefix:
			if strings.HasPrefix(path, r.pattern) {
				cands = append(cands, r)
			}
		case kindSegment:
			segs := strings.Split(r.pattern, "/")
			if len(parts) < len(segs) || (!r.prefix && len(parts) != len(segs)) {
				continue
			}
			ok := true
			for i, s := range segs {
				switch {
				case s == "+", s == parts[i]:
				case r.prefix && i == len(segs)-1 && strings.HasPrefix(parts[i], s):
				default:
					ok = false
				}
			}
			if ok {
				cands = append(cands, r)
			}
		}
	}
	if len(cands) == 0 {
		return ""
	}
	slices.SortFunc(cands, func(a, b *rule) int {
		if a.outranks(b) {
			return -1
		}
		return 1
	})
	return cands[0].path
}

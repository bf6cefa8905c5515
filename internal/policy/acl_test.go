package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

// policyOf builds a policy granting read on each pattern.
func policyOf(t testing.TB, name string, patterns ...string) *Policy {
	t.Helper()
	var b strings.Builder
	for _, p := range patterns {
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"read\"]\n}\n", p)
	}
	p, err := Parse(name, b.String())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func mustACL(t testing.TB, ps ...*Policy) *ACL {
	t.Helper()
	a, err := NewACL(ps...)
	if err != nil {
		t.Fatalf("NewACL: %v", err)
	}
	return a
}

// TestPrecedence checks which pattern decides a path, following the
// priority rules of Vault's policy documentation.
func TestPrecedence(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		path     string
		want     string // winning pattern; "" means none matches
	}{
		// From Vault's docs: first wildcard in the same place, both end in
		// "*", the latter has two "+" segments: "secret/*" wins.
		{"docs example", []string{"secret/*", "secret/+/+/foo/*"}, "secret/a/b/foo/c", "secret/*"},
		{"exact beats everything", []string{"secret/*", "secret/+", "secret/foo", "secret/fo*"}, "secret/foo", "secret/foo"},
		{"rule 1: later first glob wins", []string{"secret/*", "secret/foo/*"}, "secret/foo/bar", "secret/foo/*"},
		{"rule 1: later glob beats earlier plus", []string{"secret/+/bar", "secret/foo/*"}, "secret/foo/bar", "secret/foo/*"},
		{"rule 1: later plus beats earlier glob", []string{"secret/*", "secret/foo/+"}, "secret/foo/bar", "secret/foo/+"},
		{"rule 2: not ending in * wins", []string{"secret/*", "secret/+"}, "secret/foo", "secret/+"},
		{"rule 2: plus path beats glob", []string{"secret/*", "secret/+/bar"}, "secret/foo/bar", "secret/+/bar"},
		{"rule 3: fewer plus wins", []string{"secret/+/+", "secret/+/bar"}, "secret/a/bar", "secret/+/bar"},
		{"rule 3: fewer plus wins, both globs", []string{"secret/+/+/*", "secret/+/b/*"}, "secret/a/b/c", "secret/+/b/*"},
		{"rule 4: longer wins", []string{"secret/+/b*", "secret/+/ba*"}, "secret/x/bar", "secret/+/ba*"},
		{"rule 4: longest prefix", []string{"secret/*", "secret/foo*", "secret/f*"}, "secret/foobar", "secret/foo*"},
		{"rule 5: lexically greater wins", []string{"secret/+/+/bar", "secret/+/foo/+"}, "secret/x/foo/bar", "secret/+/foo/+"},
		{"star matches everything", []string{"*"}, "any/path/at/all", "*"},
		{"star matches empty path", []string{"*"}, "", "*"},
		{"glob needs its prefix", []string{"secret/foo*"}, "secret/fo", ""},
		{"glob is a string prefix", []string{"secret/foo*"}, "secret/foobar/baz", "secret/foo*"},
		{"exact does not match a child", []string{"secret/foo"}, "secret/foo/bar", ""},
		{"plus is one segment", []string{"secret/+"}, "secret/a/b", ""},
		{"plus needs the segment", []string{"secret/+"}, "secret", ""},
		{"plus matches an empty segment", []string{"secret/+/bar"}, "secret//bar", "secret/+/bar"},
		{"plus then glob needs the slash", []string{"secret/+/*"}, "secret/a", ""},
		{"plus then glob, empty rest", []string{"secret/+/*"}, "secret/a/", "secret/+/*"},
		{"plus then glob, deep", []string{"secret/+/*"}, "secret/a/b/c", "secret/+/*"},
		{"plus then partial glob", []string{"secret/+/foo*"}, "secret/a/foobar/baz", "secret/+/foo*"},
		{"plus then partial glob mismatch", []string{"secret/+/foo*"}, "secret/a/fo", ""},
		{"leading plus", []string{"+/foo"}, "x/foo", "+/foo"},
		{"bare plus", []string{"+"}, "x", "+"},
		{"bare plus one segment", []string{"+"}, "x/y", ""},
		{"literal plus inside a segment", []string{"secret/a+b"}, "secret/a+b", "secret/a+b"},
		{"literal plus is not a wildcard", []string{"secret/a+b"}, "secret/axb", ""},
		{"kv v2 style", []string{"secret/data/*", "secret/data/+/config", "secret/data/team/*"}, "secret/data/team/config", "secret/data/team/*"},
		{"kv v2 plus beats shallower glob", []string{"secret/data/*", "secret/data/+/config"}, "secret/data/app/config", "secret/data/+/config"},
		{"nothing matches", []string{"secret/*"}, "sys/mounts", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The order patterns are written in must not matter.
			for _, order := range [][]string{tt.patterns, reversed(tt.patterns)} {
				a := mustACL(t, policyOf(t, "p", order...))
				r, ok := a.Rule(tt.path)
				got := ""
				if ok {
					got = r.Path
				}
				if got != tt.want {
					t.Fatalf("patterns %q, path %q: rule %q, want %q", order, tt.path, got, tt.want)
				}
			}
		})
	}
}

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

func TestAllowed(t *testing.T) {
	p, err := Parse("app", `
path "secret/*"            { capabilities = ["read", "list"] }
path "secret/super-secret" { capabilities = ["deny"] }
path "secret/admin/*"      { capabilities = ["create", "update", "sudo"] }
path "secret/team"         { capabilities = ["list"] }
path "secret/empty"        { capabilities = [] }
path "secret/patchme"      { capabilities = ["patch", "delete"] }
`)
	if err != nil {
		t.Fatal(err)
	}
	a := mustACL(t, p)
	tests := []struct {
		op          logical.Operation
		path        string
		allow, sudo bool
	}{
		{logical.ReadOperation, "secret/foo", true, false},
		{logical.ListOperation, "secret/foo/", true, false},
		{logical.UpdateOperation, "secret/foo", false, false},
		{logical.ReadOperation, "secret/super-secret", false, false},
		{logical.ListOperation, "secret/super-secret", false, false},
		{logical.ReadOperation, "secret/super-secret/child", true, false}, // deny is on the exact path only
		{logical.CreateOperation, "secret/admin/x", true, true},
		{logical.ReadOperation, "secret/admin/x", false, true}, // the winning rule does not grant read
		{logical.ListOperation, "secret/team/", true, false},   // list: exact rule without the trailing slash
		{logical.ReadOperation, "secret/team/", true, false},   // not a list: secret/* decides
		{logical.ReadOperation, "secret/empty", false, false},  // an empty rule wins and grants nothing
		{logical.PatchOperation, "secret/patchme", true, false},
		{logical.DeleteOperation, "secret/patchme", true, false},
		{logical.UpdateOperation, "secret/patchme", false, false},
		{logical.ReadOperation, "sys/mounts", false, false},
		{logical.Operation("bogus"), "secret/foo", false, false},
	}
	for _, tt := range tests {
		allow, sudo := a.Allowed(tt.op, tt.path)
		if allow != tt.allow || sudo != tt.sudo {
			t.Errorf("Allowed(%s, %q) = %v, %v; want %v, %v", tt.op, tt.path, allow, sudo, tt.allow, tt.sudo)
		}
	}
}

func TestCapabilities(t *testing.T) {
	p, err := Parse("p", `
path "secret/*"    { capabilities = ["update", "read", "list", "sudo"] }
path "secret/deny" { capabilities = ["read", "deny"] }
path "secret/none" { capabilities = [] }
`)
	if err != nil {
		t.Fatal(err)
	}
	a := mustACL(t, p)
	tests := map[string][]string{
		"secret/x":    {"list", "read", "sudo", "update"},
		"secret/deny": {"deny"},
		"secret/none": {"deny"},
		"other":       {"deny"},
	}
	for path, want := range tests {
		if got := a.Capabilities(path); !slices.Equal(got, want) {
			t.Errorf("Capabilities(%q) = %q, want %q", path, got, want)
		}
	}
	if got := RootACL().Capabilities("anything"); !slices.Equal(got, []string{"root"}) {
		t.Errorf("root Capabilities = %q", got)
	}
}

func TestRootACL(t *testing.T) {
	user := policyOf(t, "user", "secret/*")
	a := mustACL(t, user, RootPolicy())
	if !a.IsRoot() {
		t.Fatal("ACL with the root policy is not root")
	}
	for _, op := range []logical.Operation{logical.ReadOperation, logical.DeleteOperation, logical.ListOperation} {
		if allow, sudo := a.Allowed(op, "sys/raw/anything"); !allow || !sudo {
			t.Errorf("root Allowed(%s) = %v, %v", op, allow, sudo)
		}
	}
	// A parsed policy that happens to be named root is not the root policy.
	fake, err := Parse("root", `path "secret/*" { capabilities = ["read"] }`)
	if err != nil {
		t.Fatal(err)
	}
	if a := mustACL(t, fake); a.IsRoot() {
		t.Fatal("parsed policy named root produced the root ACL")
	}
}

func TestMerge(t *testing.T) {
	parse := func(name, text string) *Policy {
		t.Helper()
		p, err := Parse(name, text)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	reader := parse("reader", `path "secret/foo" { capabilities = ["read"] }
path "secret/*" { capabilities = ["list"] }`)
	writer := parse("writer", `path "secret/foo" { capabilities = ["update", "create"] }`)
	denier := parse("denier", `path "secret/foo" { capabilities = ["deny"] }`)
	globDeny := parse("globdeny", `path "secret/*" { capabilities = ["deny"] }`)

	tests := []struct {
		name     string
		policies []*Policy
		path     string
		want     []string
	}{
		{"union", []*Policy{reader, writer}, "secret/foo", []string{"create", "read", "update"}},
		{"deny wins after", []*Policy{reader, writer, denier}, "secret/foo", []string{"deny"}},
		{"deny wins before", []*Policy{denier, reader, writer}, "secret/foo", []string{"deny"}},
		{"deny on a glob does not reach an exact path", []*Policy{reader, globDeny}, "secret/foo", []string{"read"}},
		{"deny on the glob itself", []*Policy{reader, globDeny}, "secret/bar", []string{"deny"}},
		{"same pattern twice in one policy", []*Policy{parse("twice", `
path "a" { capabilities = ["read"] }
path "a" { capabilities = ["list"] }`)}, "a", []string{"list", "read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustACL(t, tt.policies...)
			if got := a.Capabilities(tt.path); !slices.Equal(got, tt.want) {
				t.Fatalf("Capabilities(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
	// Merging must not modify the policies.
	if got := reader.Paths[0].Capabilities; got != CapRead {
		t.Fatalf("merge modified the reader policy: %v", got)
	}
}

func TestMergeParameters(t *testing.T) {
	a1, err := Parse("a1", `path "x" {
  capabilities = ["update"]
  allowed_parameters = { "color" = ["red"], "size" = [] }
  required_parameters = ["color"]
  max_wrapping_ttl = "1h"
  min_wrapping_ttl = 60
}`)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := Parse("a2", `path "x" {
  capabilities = ["create"]
  allowed_parameters = { "color" = ["blue"], "size" = ["big"] }
  required_parameters = ["color", "shape"]
  max_wrapping_ttl = 300
  min_wrapping_ttl = "2m"
}`)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := mustACL(t, a1, a2).Rule("x")
	if !ok {
		t.Fatal("no rule for x")
	}
	if r.Capabilities != CapCreate|CapUpdate {
		t.Errorf("capabilities %v", r.Capabilities)
	}
	if got := r.AllowedParameters["color"]; len(got) != 2 {
		t.Errorf("color values %v, want red and blue", got)
	}
	if got := r.AllowedParameters["size"]; len(got) != 0 {
		t.Errorf("size values %v, want empty (any value)", got)
	}
	if !slices.Equal(r.RequiredParameters, []string{"color", "shape"}) {
		t.Errorf("required %v", r.RequiredParameters)
	}
	if r.MaxWrappingTTL.Seconds() != 300 || r.MinWrappingTTL.Seconds() != 60 {
		t.Errorf("wrapping ttls min %v max %v, want the smaller of each", r.MinWrappingTTL, r.MaxWrappingTTL)
	}
	if len(a1.Paths[0].AllowedParameters["color"]) != 1 {
		t.Error("merge modified policy a1")
	}
}

func TestCheckParameters(t *testing.T) {
	p, err := Parse("p", `
path "open"    { capabilities = ["update"] }
path "limited" {
  capabilities = ["update"]
  allowed_parameters = {
    "color" = ["red", "dark-*"]
    "count" = [1, 2]
    "note"  = []
  }
  denied_parameters = { "color" = ["dark-evil"] }
  required_parameters = ["Color"]
}
path "wild" {
  capabilities = ["update"]
  allowed_parameters = { "*" = [], "mode" = ["safe"] }
}
path "nodata" {
  capabilities = ["update"]
  denied_parameters = { "*" = [] }
}
path "lonestar" {
  capabilities = ["update"]
  allowed_parameters = { "v" = ["*"] }
}
path "denied" { capabilities = ["deny"] }
`)
	if err != nil {
		t.Fatal(err)
	}
	a := mustACL(t, p)
	num := func(s string) any { return jsonNumber(s) }
	tests := []struct {
		path string
		data map[string]any
		ok   bool
	}{
		{"open", map[string]any{"anything": "goes"}, true},
		{"limited", map[string]any{"color": "red"}, true},
		{"limited", map[string]any{"COLOR": "red"}, true},
		{"limited", map[string]any{"color": "dark-blue", "note": "x", "count": num("2")}, true},
		{"limited", map[string]any{"color": "dark-evil"}, false},
		{"limited", map[string]any{"color": "blue"}, false},
		{"limited", map[string]any{"color": "red", "count": num("3")}, false},
		{"limited", map[string]any{"color": "red", "count": "1"}, false}, // a string is not the number 1
		{"limited", map[string]any{"color": "red", "size": "x"}, false},
		{"limited", map[string]any{"note": "x"}, false}, // color is required
		{"limited", nil, false},
		{"wild", map[string]any{"anything": 1, "mode": "safe"}, true},
		{"wild", map[string]any{"mode": "unsafe"}, false},
		{"nodata", nil, true},
		{"nodata", map[string]any{"a": "b"}, false},
		{"lonestar", map[string]any{"v": "*"}, true},
		{"lonestar", map[string]any{"v": "x"}, false}, // a lone "*" value is literal, as in Vault
		{"denied", nil, false},
		{"nowhere", nil, false},
	}
	for _, tt := range tests {
		err := a.CheckParameters(tt.path, tt.data)
		if (err == nil) != tt.ok {
			t.Errorf("CheckParameters(%q, %v) = %v, want ok=%v", tt.path, tt.data, err, tt.ok)
		}
		if err != nil && !errorsIs(err, logical.ErrPermissionDenied) {
			t.Errorf("CheckParameters(%q) error %v does not wrap ErrPermissionDenied", tt.path, err)
		}
	}
	if err := RootACL().CheckParameters("x", map[string]any{"a": 1}); err != nil {
		t.Errorf("root CheckParameters: %v", err)
	}
}

func TestAllowedDoesNotAllocate(t *testing.T) {
	a := benchACL(t)
	paths := []string{"secret/data/team07/app/db", "sys/mounts", "secret/data/app03/config", "nothing/here", "auth/token/lookup-self"}
	allocs := testing.AllocsPerRun(100, func() {
		for _, p := range paths {
			a.Allowed(logical.ReadOperation, p)
		}
	})
	if allocs != 0 {
		t.Fatalf("Allowed allocates %.1f times per run", allocs)
	}
}

// benchACL builds an ACL of about 50 rules of every kind.
func benchACL(t testing.TB) *ACL {
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "path \"secret/data/team%02d/*\" { capabilities = [\"read\", \"list\"] }\n", i)
		fmt.Fprintf(&b, "path \"secret/data/app%02d/config\" { capabilities = [\"read\"] }\n", i)
		fmt.Fprintf(&b, "path \"secret/data/+/svc%02d\" { capabilities = [\"read\"] }\n", i)
		fmt.Fprintf(&b, "path \"secret/metadata/+/team%02d/*\" { capabilities = [\"list\"] }\n", i)
		fmt.Fprintf(&b, "path \"pki%02d/issue/+\" { capabilities = [\"update\"] }\n", i)
	}
	b.WriteString(DefaultPolicyText)
	p, err := Parse("bench", b.String())
	if err != nil {
		t.Fatal(err)
	}
	return mustACL(t, p)
}

func BenchmarkAllowed(b *testing.B) {
	a := benchACL(b)
	paths := []string{
		"secret/data/app03/config",     // exact
		"secret/data/team07/app/db",    // prefix
		"secret/data/xyz/svc04",        // segment wildcard
		"secret/metadata/a/team02/x/y", // segment wildcard + glob
		"sys/mounts",                   // no match
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		a.Allowed(logical.ReadOperation, paths[i%len(paths)])
	}
}

func BenchmarkAllowedByKind(b *testing.B) {
	a := benchACL(b)
	for _, p := range []string{"secret/data/app03/config", "secret/data/team07/app/db", "secret/data/xyz/svc04", "secret/metadata/a/team02/x/y", "sys/mounts"} {
		b.Run(p, func(b *testing.B) {
			for b.Loop() {
				a.Allowed(logical.ReadOperation, p)
			}
		})
	}
}

// A cache block lets agents cache what a rule lets them read; the most
// specific rule decides, and merged blocks keep the shorter staleness.
func TestCacheMaxStale(t *testing.T) {
	p, err := Parse("edge", `
path "secret/data/app/*" {
  capabilities = ["read"]
  cache { max_stale = "24h" }
}
path "secret/data/app/*" {
  capabilities = ["read", "list"]
  cache { max_stale = "1h" }
}
path "secret/data/app/private" { capabilities = ["read"] }
path "secret/data/edge/+" {
  capabilities = ["read", "list"]
  cache { max_stale = 600 }
}
path "secret/data/denied/*" { capabilities = ["deny"] }
`)
	if err != nil {
		t.Fatal(err)
	}
	acl := mustACL(t, p)
	for path, want := range map[string]time.Duration{
		"secret/data/app/db":      time.Hour,
		"secret/data/app/private": 0,
		"secret/data/edge/site1":  10 * time.Minute,
		"secret/data/other":       0,
		"secret/data/denied/x":    0,
	} {
		got, ok := acl.CacheMaxStale(path)
		if got != want || ok != (want > 0) {
			t.Errorf("CacheMaxStale(%s) = %v, %v; want %v", path, got, ok, want)
		}
	}
	for text, msg := range map[string]string{
		`path "a" { capabilities = ["read"] cache { max_stale = "0s" } }`:    "max_stale 0s",
		`path "a" { capabilities = ["read"] cache { max_stale = "9999h" } }`: "at most 720h",
		`path "a" { capabilities = ["read"] cache { ttl = "1h" } }`:          `unknown key "ttl"`,
		`path "a" { capabilities = ["read"] cache {} }`:                      "max_stale is required",
		`path "a" { capabilities = ["update"] cache { max_stale = "1h" } }`:  `granting "read"`,
		`path "a" { capabilities = ["read"] cache = "1h" }`:                  "expected a block",
	} {
		if _, err := Parse("p", text); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: err = %v, want %q", text, err, msg)
		}
	}
}

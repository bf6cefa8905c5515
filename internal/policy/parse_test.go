package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	p, err := Parse("MyPolicy", `
# A comment.
name = "ignored"

path "/secret/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
  comment = "leading slash is trimmed"
}

path "secret/+/admin" {
  capabilities = ["sudo", "read", "deny"]
}

path "legacy/*" {
  policy = "write"
}

path "legacy/sudo" {
  policy       = "sudo"
  capabilities = ["patch"]
}

path "params" {
  capabilities = "update"
  allowed_parameters = {
    "Color" = ["red", 3, true, 1.5]
  }
  denied_parameters {
    "secret" = []
  }
  required_parameters = ["Owner"]
  min_wrapping_ttl = "1m"
  max_wrapping_ttl = 3600
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "mypolicy" {
		t.Errorf("name %q, want lower-cased", p.Name)
	}
	want := []struct {
		path string
		caps Capability
		line int
	}{
		{"secret/*", CapCreate | CapRead | CapUpdate | CapPatch | CapDelete | CapList, 5},
		{"secret/+/admin", CapDeny, 10},
		{"legacy/*", CapCreate | CapRead | CapUpdate | CapDelete | CapList, 14},
		{"legacy/sudo", CapCreate | CapRead | CapUpdate | CapDelete | CapList | CapSudo | CapPatch, 18},
		{"params", CapUpdate, 23},
	}
	if len(p.Paths) != len(want) {
		t.Fatalf("%d paths, want %d", len(p.Paths), len(want))
	}
	for i, w := range want {
		got := p.Paths[i]
		if got.Path != w.path || got.Capabilities != w.caps || got.Line != w.line {
			t.Errorf("path %d = %q %v line %d, want %q %v line %d", i, got.Path, got.Capabilities, got.Line, w.path, w.caps, w.line)
		}
	}
	pr := p.Paths[4]
	if vals := pr.AllowedParameters["color"]; len(vals) != 4 || vals[0] != "red" || vals[1] != int64(3) || vals[2] != true || vals[3] != 1.5 {
		t.Errorf("allowed_parameters %#v", pr.AllowedParameters)
	}
	if vals, ok := pr.DeniedParameters["secret"]; !ok || len(vals) != 0 {
		t.Errorf("denied_parameters %#v", pr.DeniedParameters)
	}
	if len(pr.RequiredParameters) != 1 || pr.RequiredParameters[0] != "owner" {
		t.Errorf("required_parameters %#v", pr.RequiredParameters)
	}
	if pr.MinWrappingTTL != time.Minute || pr.MaxWrappingTTL != time.Hour {
		t.Errorf("wrapping ttls %v %v", pr.MinWrappingTTL, pr.MaxWrappingTTL)
	}
}

func TestParseJSON(t *testing.T) {
	p, err := Parse("j", `{
  "path": {
    "secret/*":   {"capabilities": ["read", "list"]},
    "secret/foo": {"capabilities": ["deny"], "allowed_parameters": {"a": ["b"]}}
  }
}`)
	if err != nil {
		t.Fatal(err)
	}
	a := mustACL(t, p)
	if got := a.Capabilities("secret/bar"); strings.Join(got, ",") != "list,read" {
		t.Errorf("secret/bar: %q", got)
	}
	if got := a.Capabilities("secret/foo"); strings.Join(got, ",") != "deny" {
		t.Errorf("secret/foo: %q", got)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, text := range []string{"", "   \n# only a comment\n"} {
		p, err := Parse("empty", text)
		if err != nil {
			t.Fatalf("Parse(%q): %v", text, err)
		}
		if len(p.Paths) != 0 {
			t.Fatalf("Parse(%q): %d paths", text, len(p.Paths))
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string // substrings of the error
	}{
		{"unknown capability", "path \"secret/*\" {\n  capabilities = [\"read\", \"reed\"]\n}", []string{`"reed"`, `"secret/*"`, "line 1"}},
		{"unknown capability after deny", `path "a" { capabilities = ["deny", "nope"] }`, []string{`"nope"`}},
		{"capitalised capability", `path "a" { capabilities = ["Read"] }`, []string{`"Read"`}},
		{"unknown key", "\n\npath \"a\" {\n  capabilites = [\"read\"]\n}", []string{`"capabilites"`, "line 4", `path "a"`}},
		{"unknown top-level key", "paths \"a\" { capabilities = [\"read\"] }", []string{`"paths"`, "top-level"}},
		{"glob in the middle", `path "secret/*/foo" { capabilities = ["read"] }`, []string{`"*"`, `"secret/*/foo"`}},
		{"plus glob", `path "secret/+*" { capabilities = ["read"] }`, []string{`"+*"`}},
		{"empty pattern", `path "" { capabilities = ["read"] }`, []string{"empty"}},
		{"templated", `path "secret/{{identity.entity.id}}/*" { capabilities = ["read"] }`, []string{"templated"}},
		{"control char in pattern", "path \"a\\u0001b\" { capabilities = [\"read\"] }", []string{"control"}},
		{"bad legacy policy", `path "a" { policy = "admin" }`, []string{`"admin"`}},
		{"capabilities not a list", `path "a" { capabilities = 3 }`, []string{"capabilities", "list of strings"}},
		{"capability not a string", `path "a" { capabilities = ["read", 3] }`, []string{"item 1"}},
		{"duplicate key", "path \"a\" {\n capabilities = [\"read\"]\n capabilities = [\"list\"]\n}", []string{"capabilities"}},
		{"duplicate key json", `{"path": {"a": {"capabilities": ["read"], "capabilities": ["list"]}}}`, []string{"more than once"}},
		{"path without pattern", `path { capabilities = ["read"] }`, []string{"capabilities"}},
		{"path with two labels", `path "a" "b" { capabilities = ["read"] }`, []string{"exactly one pattern"}},
		{"path not a block", `path "a" = "read"`, []string{"failed to parse policy"}},
		{"path not a block json", `{"path": {"a": "read"}}`, []string{"expected a block", `"a"`}},
		{"path list json", `{"path": ["a"]}`, []string{"needs a pattern"}},
		{"ttl garbage", `path "a" { max_wrapping_ttl = "soon" }`, []string{"max_wrapping_ttl", `"soon"`}},
		{"ttl negative", `path "a" { min_wrapping_ttl = "-5s" }`, []string{"min_wrapping_ttl", "negative"}},
		{"ttl min above max", `path "a" { min_wrapping_ttl = "2h"
max_wrapping_ttl = "1h" }`, []string{"max_wrapping_ttl cannot be less than min_wrapping_ttl"}},
		{"parameters not an object", `path "a" { allowed_parameters = ["x"] }`, []string{"allowed_parameters"}},
		{"parameter value an object", `path "a" { denied_parameters = { "x" = [{ "y" = 1 }] } }`, []string{"denied_parameters", `"x"`}},
		{"control group", `path "a" { control_group = { max_ttl = "1h" } }`, []string{`"control_group"`, "not supported"}},
		{"mfa", `path "a" { mfa_methods = ["x"] }`, []string{`"mfa_methods"`, "not supported"}},
		{"bad HCL", "path \"a\" {\n capabilities = [\"read\"\n", []string{"failed to parse policy"}},
		{"unterminated string", `path "a { }`, []string{"failed to parse policy"}},
		{"number out of range", "path \"a\" {\n allowed_parameters = { \"n\" = [99999999999999999999999] }\n}", []string{"line 2", `"n"`, "malformed"}},
		{"ttl out of range", `path "a" { max_wrapping_ttl = 99999999999999999999999 }`, []string{"max_wrapping_ttl", "malformed"}},
		{"not an object", `"just a string"`, []string{"failed to parse policy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p", tt.text)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", tt.text)
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("error %v does not wrap ErrInvalidPolicy", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNormalizeName(t *testing.T) {
	tests := []struct {
		in, want string
		problem  string // substring of the error; "" when valid
	}{
		{"Admin", "admin", ""},
		{"team-a.read_only@x", "team-a.read_only@x", ""},
		{"ÉQUIPE", "équipe", ""},
		{"", "", "empty"},
		{"a/b", "", `"/"`},
		{"a..b", "", `".."`},
		{"..", "", `".."`},
		{"a\x00b", "", "control"},
		{"a\nb", "", "control"},
		{" padded", "", "space"},
		{strings.Repeat("x", MaxNameLen), strings.Repeat("x", MaxNameLen), ""},
		{strings.Repeat("x", MaxNameLen+1), "", "limit"},
		{"\xff", "", "UTF-8"},
	}
	for _, tt := range tests {
		got, err := NormalizeName(tt.in)
		if tt.problem == "" {
			if err != nil || got != tt.want {
				t.Errorf("NormalizeName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), tt.problem) {
			t.Errorf("NormalizeName(%q) error = %v, want one mentioning %q", tt.in, err, tt.problem)
		}
	}
	if _, err := Parse("a/b", ""); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Parse with a bad name: %v", err)
	}
}

func TestCapabilityStrings(t *testing.T) {
	if got := (CapRead | CapList | CapSudo).String(); got != "list,read,sudo" {
		t.Errorf("String = %q", got)
	}
	if got := (CapRead | CapDeny).Strings(); len(got) != 1 || got[0] != "deny" {
		t.Errorf("deny Strings = %q", got)
	}
	for _, name := range []string{"create", "read", "update", "patch", "delete", "list", "sudo", "deny"} {
		c, ok := ParseCapability(name)
		if !ok || c.Strings()[0] != name {
			t.Errorf("ParseCapability(%q) = %v, %v", name, c, ok)
		}
	}
	if _, ok := ParseCapability("root"); ok {
		t.Error("root parsed as a capability")
	}
}

package httpapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/logical"
)

func TestCleanPath(t *testing.T) {
	ok := []string{"secret/data/a", "secret/metadata/", "sys/health", "a/b.c/d", "a/..b/c"}
	for _, p := range ok {
		if _, err := cleanPath(p); err != nil {
			t.Errorf("%q refused: %v", p, err)
		}
	}
	bad := map[string]string{
		"a/../b": `".."`, "..": `".."`, "a/./b": `"."`, "a//b": "empty segment", "/a": "empty segment",
		"a\x00b": "control character", "a\nb": "control character", "a\x7f": "control character", "\xff": "UTF-8",
	}
	for p, want := range bad {
		_, err := cleanPath(p)
		if !errors.Is(err, logical.ErrInvalidRequest) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want a 400 mentioning %s", p, err, want)
		}
	}
}

func TestDecodeJSONObject(t *testing.T) {
	m, err := decodeJSONObject([]byte(` {"a": 12345678901234567890, "b": {"c": [1, "x"]}} `))
	if err != nil {
		t.Fatal(err)
	}
	if n := m["a"]; n == nil || n.(interface{ String() string }).String() != "12345678901234567890" {
		t.Fatalf("big number lost precision: %v", n)
	}
	for body, want := range map[string]string{
		`{"a":`: "unexpected end", `[1]`: "JSON object", `"s"`: "JSON object", `{"a":1} {"b":2}`: "after the JSON object",
		`{"a":1,}`: "invalid character", `nul`: "",
	} {
		_, err := decodeJSONObject([]byte(body))
		if !errors.Is(err, logical.ErrInvalidRequest) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want a 400 mentioning %q", body, err, want)
		}
	}
	if m, err := decodeJSONObject([]byte("  ")); err != nil || len(m) != 0 {
		t.Fatalf("empty body = %v, %v", m, err)
	}
}

// FuzzRequestDecoding feeds arbitrary paths and bodies to the decoders every
// request goes through: they must never panic, and must either accept or
// refuse with a 400.
func FuzzRequestDecoding(f *testing.F) {
	f.Add("secret/data/app/db", []byte(`{"data":{"password":"x"},"options":{"cas":1}}`))
	f.Add("a/%2e%2e/b", []byte(`{"a":[1,2,{"b":null}]}`))
	f.Add("a//b\x00", []byte(`{"a":`))
	f.Add("sys/policies/acl/x", []byte(`{"policy":"path \"a\" {}"}`))
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		if _, err := cleanPath(path); err != nil && !errors.Is(err, logical.ErrInvalidRequest) {
			t.Fatalf("cleanPath(%q): %v is not a 400", path, err)
		}
		if _, err := decodeJSONObject(body); err != nil && !errors.Is(err, logical.ErrInvalidRequest) {
			t.Fatalf("decodeJSONObject: %v is not a 400", err)
		}
	})
}

package zone

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string // substring; "" means valid
	}{
		{"a", ""},
		{"edge-paris-01", ""},
		{"0zone", ""},
		{strings.Repeat("a", 63), ""},
		{"", "must not be empty"},
		{strings.Repeat("a", 64), "64 characters long"},
		{"-a", "must not start with '-'"},
		{"a-", "must not end with '-'"},
		{"Zone", "character 1 is 'Z'"},
		{"a_b", "character 2 is '_'"},
		{"a/b", "character 2 is '/'"},
		{"a.b", "character 2 is '.'"},
		{"é", "character 1"},
		{"a b", "character 2 is ' '"},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateName(%q) = %v, want nil", tt.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestValidateLabels(t *testing.T) {
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many[strings.Repeat("k", i+1)[:1]+string(rune('a'+i%26))+strings.Repeat("x", i/26)] = "v"
	}
	tests := []struct {
		desc    string
		labels  map[string]string
		wantErr string
	}{
		{"nil", nil, ""},
		{"typical", map[string]string{"region": "eu-west", "site": "paris-01", "app.kubernetes.io_name": "x"}, ""},
		{"empty value", map[string]string{"tier": ""}, ""},
		{"unicode value", map[string]string{"city": "Zürich"}, ""},
		{"empty key", map[string]string{"": "v"}, `key "": must not be empty`},
		{"long key", map[string]string{strings.Repeat("k", 64): "v"}, "64 characters long"},
		{"key starts with dash", map[string]string{"-k": "v"}, "begin and end"},
		{"key with slash", map[string]string{"a/b": "v"}, `character 2 is '/'`},
		{"long value", map[string]string{"k": strings.Repeat("v", 257)}, `value of "k": is 257 bytes`},
		{"control char", map[string]string{"k": "a\nb"}, "control character U+000A"},
		{"bad utf8", map[string]string{"k": "\xff"}, "not valid UTF-8"},
		{"too many", many, "at most 64 allowed"},
	}
	for _, tt := range tests {
		err := ValidateLabels(tt.labels)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: ValidateLabels = %v, want nil", tt.desc, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidZone) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: ValidateLabels = %v, want ErrInvalidZone containing %q", tt.desc, err, tt.wantErr)
		}
	}
}

package keyfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrapUnwrap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.key")
	p, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != KeySize {
		t.Fatalf("created key file: %v %v", fi, err)
	}
	key := bytes.Repeat([]byte{7}, 32)
	blob, err := p.Wrap(key)
	if err != nil || bytes.Contains(blob, key) {
		t.Fatalf("wrap: %v", err)
	}
	again, err := Open(path) // a restarted agent reads the same key
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Unwrap(blob); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("unwrap: %v", err)
	}
	blob[len(blob)-1] ^= 1
	if _, err := again.Unwrap(blob); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("tampered blob: %v", err)
	}
	blob[len(blob)-1] ^= 1
	other, err := Open(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Unwrap(blob); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("another key file: %v", err)
	}
	if _, err := other.Unwrap([]byte{1, 2}); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("short blob: %v", err)
	}
}

func TestBadKeyFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string
	}{
		{"group readable", make([]byte, 32), 0o640, "chmod 600"},
		{"world readable", make([]byte, 32), 0o604, "chmod 600"},
		{"short", make([]byte, 31), 0o600, "31 bytes"},
		{"hex text", []byte(strings.Repeat("ab", 32)), 0o600, "64 bytes"},
		{"empty", nil, 0o400, "0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path)
			if !errors.Is(err, ErrBadKeyFile) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrBadKeyFile saying %q", err, tt.want)
			}
		})
	}
	if _, err := Open(dir); !errors.Is(err, ErrBadKeyFile) {
		t.Fatalf("a directory: %v", err)
	}
	if _, err := Open(""); err == nil {
		t.Fatal("empty path accepted")
	}
	if _, err := Open(filepath.Join(dir, "missing-dir", "k")); err == nil {
		t.Fatal("a key file in a missing directory was created")
	}
}

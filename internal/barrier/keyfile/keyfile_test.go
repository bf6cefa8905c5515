package keyfile

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWrapUnwrap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seal.key")
	p, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	ctx := context.Background()
	root := bytes.Repeat([]byte{9}, 32)
	blob, err := p.Wrap(ctx, root)
	if err != nil || bytes.Contains(blob, root) {
		t.Fatalf("wrap: %v", err)
	}
	again, err := Open(path) // a restarted server reads the same key
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Unwrap(ctx, blob); err != nil || !bytes.Equal(got, root) {
		t.Fatalf("unwrap: %v", err)
	}
	blob[len(blob)-1] ^= 1
	if _, err := again.Unwrap(ctx, blob); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("tampered blob: %v", err)
	}
	other, _ := Open(filepath.Join(t.TempDir(), "other.key"))
	blob[len(blob)-1] ^= 1
	if _, err := other.Unwrap(ctx, blob); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("another key file: %v", err)
	}
	if _, err := other.Unwrap(ctx, []byte{1, 2}); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("short blob: %v", err)
	}
}

func TestBadKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(path, []byte("not hex"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil {
		t.Fatal("a bad key file was accepted")
	}
	if _, err := Open(""); err == nil {
		t.Fatal("an empty path was accepted")
	}
}

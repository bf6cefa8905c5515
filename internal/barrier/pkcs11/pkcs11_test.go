package pkcs11

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgevault/edgevault/internal/barrier/pkcs11/softhsmtest"
)

func testConfig() Config {
	return Config{Lib: softhsmtest.Lib, TokenLabel: softhsmtest.TokenLabel, KeyLabel: "root", PIN: softhsmtest.PIN}
}

func TestWrapUnwrapRoundTrip(t *testing.T) {
	softhsmtest.NewToken(t)
	cfg := testConfig()
	if err := GenerateKey(cfg); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKey(cfg); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second keygen: got %v, want ErrKeyExists", err)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	root := bytes.Repeat([]byte{7}, 32)
	blob, err := p.Wrap(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, root) {
		t.Fatal("blob contains the root key")
	}
	blob2, err := p.Wrap(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(blob, blob2) {
		t.Fatal("two wraps gave the same blob: nonce reused")
	}
	got, err := p.Unwrap(ctx, blob)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, root) {
		t.Fatal("unwrap returned another key")
	}
	// A second protector (a restarted server) unwraps too.
	p2, _ := New(cfg)
	defer p2.Close()
	if got, err := p2.Unwrap(ctx, blob); err != nil || !bytes.Equal(got, root) {
		t.Fatalf("unwrap from a new session: %v", err)
	}

	for i := range blob {
		bad := bytes.Clone(blob)
		bad[i] ^= 0x01
		if _, err := p.Unwrap(ctx, bad); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("tampered byte %d: got %v, want ErrUnwrap", i, err)
		}
	}
	for _, bad := range [][]byte{nil, {1}, blob[:len(blob)-1]} {
		if _, err := p.Unwrap(ctx, bad); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("short blob %d bytes: got %v, want ErrUnwrap", len(bad), err)
		}
	}
	// The key is non-extractable and sensitive; generated keys of another
	// label do not unwrap this blob.
	other := cfg
	other.KeyLabel = "other"
	if err := GenerateKey(other); err != nil {
		t.Fatal(err)
	}
	po, _ := New(other)
	defer po.Close()
	if _, err := po.Unwrap(ctx, blob); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("unwrap under another key: got %v, want ErrUnwrap", err)
	}
}

func TestWrongPIN(t *testing.T) {
	softhsmtest.NewToken(t)
	cfg := testConfig()
	if err := GenerateKey(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.PIN = "9999"
	p, _ := New(cfg)
	defer p.Close()
	_, err := p.Wrap(context.Background(), make([]byte, 32))
	if !errors.Is(err, ErrPINIncorrect) {
		t.Fatalf("got %v, want ErrPINIncorrect", err)
	}
	if bytes.Contains([]byte(err.Error()), []byte("9999")) {
		t.Fatalf("error shows the PIN: %v", err)
	}
}

func TestMissingKeyAndToken(t *testing.T) {
	softhsmtest.NewToken(t)
	cfg := testConfig()
	p, _ := New(cfg)
	defer p.Close()
	err := p.Check(context.Background())
	if !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("missing key: got %v, want ErrKeyNotFound", err)
	}
	cfg.TokenLabel = "nope"
	p2, _ := New(cfg)
	defer p2.Close()
	if err := p2.Check(context.Background()); err == nil || !bytes.Contains([]byte(err.Error()), []byte(`"nope"`)) {
		t.Fatalf("missing token: got %v, want an error naming the token", err)
	}
}

func TestConfigValidate(t *testing.T) {
	slot := 0
	neg := -1
	ok := Config{Lib: "/x.so", TokenLabel: "T", KeyLabel: "k", PIN: "1"}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"slot", func(c *Config) { c.TokenLabel, c.Slot = "", &slot }, ""},
		{"no lib", func(c *Config) { c.Lib = "" }, "lib"},
		{"relative lib", func(c *Config) { c.Lib = "x.so" }, "absolute"},
		{"no token", func(c *Config) { c.TokenLabel = "" }, "token_label or slot"},
		{"both", func(c *Config) { c.Slot = &slot }, "not both"},
		{"negative slot", func(c *Config) { c.TokenLabel, c.Slot = "", &neg }, "slot -1"},
		{"no key", func(c *Config) { c.KeyLabel = "" }, "key_label"},
		{"no pin", func(c *Config) { c.PIN = "" }, PINEnv},
	}
	for _, tt := range tests {
		c := ok
		tt.mod(&c)
		err := c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want))):
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestResolvePIN(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pin")
	os.WriteFile(f, []byte("4321\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if pin, err := ResolvePIN("1111", f); err != nil || pin != "1111" {
		t.Errorf("env wins: %q %v", pin, err)
	}
	if pin, err := ResolvePIN("", f); err != nil || pin != "4321" {
		t.Errorf("file: %q %v", pin, err)
	}
	if _, err := ResolvePIN("", ""); !errors.Is(err, ErrNoPIN) {
		t.Errorf("none: %v", err)
	}
	if _, err := ResolvePIN("", empty); !errors.Is(err, ErrNoPIN) {
		t.Errorf("empty file: %v", err)
	}
	if _, err := ResolvePIN("", filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

// FuzzUnwrapMalformed checks that arbitrary blobs are refused without a
// panic (the HSM is only reached for well-formed lengths).
func FuzzUnwrapMalformed(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add(bytes.Repeat([]byte{2}, 61))
	p := &Protector{cfg: Config{}}
	f.Fuzz(func(t *testing.T, blob []byte) {
		if len(blob) >= 1+nonceSize+tagSize && blob[0] == blobVersion {
			return // would reach the HSM; covered by TestWrapUnwrapRoundTrip
		}
		if _, err := p.Unwrap(context.Background(), blob); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("got %v, want ErrUnwrap", err)
		}
	})
}

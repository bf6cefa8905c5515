package tpmkey

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/tpmdev"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
)

var _ cache.KeyProtector = (*Protector)(nil)

// newSim returns a Device on a fresh simulated TPM. One simulator exists
// per process: close the previous Device before asking for another.
func newSim(t *testing.T) *tpmdev.Device {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	d := tpmdev.New(transport.FromReadWriteCloser(sim), sim)
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func digest(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

func TestWrapUnwrap(t *testing.T) {
	d := newSim(t)
	p := New(d, []int{7, 16})
	key := digest("cache key")
	blob, err := p.Wrap(key)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, key) {
		t.Fatal("blob contains the key")
	}
	if got, err := New(d, []int{7, 16}).Unwrap(blob); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap = %x, %v", got, err)
	}
	if _, err := New(d, []int{99}).Wrap(key); !errors.Is(err, tpmdev.ErrInvalidPCR) {
		t.Fatalf("Wrap to PCR 99: %v", err)
	}
	if _, err := p.Unwrap([]byte("not a blob")); !errors.Is(err, tpmdev.ErrBadBlob) {
		t.Fatalf("Unwrap of garbage: %v", err)
	}
	if err := d.ExtendPCR(16, digest("boot change")); err != nil {
		t.Fatal(err)
	}
	_, err = p.Unwrap(blob)
	if !errors.Is(err, tpmdev.ErrPCRMismatch) || !strings.Contains(err.Error(), "another boot state") {
		t.Fatalf("after extend: %v", err)
	}
	blob2, err := p.Wrap(key) // sealed in the new state
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	other := New(newSim(t), []int{7, 16})
	_, err = other.Unwrap(blob2)
	if !errors.Is(err, tpmdev.ErrOtherTPM) || !strings.Contains(err.Error(), "sealed by another TPM") {
		t.Fatalf("on another TPM: %v", err)
	}
}

// TestCache opens a real cache with the TPM protector: it reopens in the
// same boot state, and refuses after a boot change and on another machine.
func TestCache(t *testing.T) {
	d := newSim(t)
	file := filepath.Join(t.TempDir(), "cache.db")
	kp := New(d, []int{7})
	c, err := cache.Open(file, kp, cache.Options{Zone: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	op := cache.Op{Kind: cache.OpUpsert, Path: "app/db", Version: 1, Data: json.RawMessage(`{"password":"s3cret"}`),
		Metadata: json.RawMessage(`{"version":1}`), MaxStale: time.Hour}
	if err := c.Apply(1, []cache.Op{op}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err = cache.Open(file, kp, cache.Options{Zone: "edge-1"})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if e, err := c.Get("app/db", 0); err != nil || string(e.Data) != `{"password":"s3cret"}` {
		t.Fatalf("get: %+v %v", e, err)
	}
	c.Close()

	if err := d.ExtendPCR(7, digest("new Secure Boot db")); err != nil {
		t.Fatal(err)
	}
	_, err = cache.Open(file, kp, cache.Options{Zone: "edge-1"})
	if !errors.Is(err, cache.ErrKeyMismatch) || !strings.Contains(err.Error(), "another boot state") {
		t.Fatalf("open after boot change: %v", err)
	}

	d.Close()
	_, err = cache.Open(file, New(newSim(t), []int{7}), cache.Options{Zone: "edge-1"})
	if !errors.Is(err, cache.ErrKeyMismatch) || !strings.Contains(err.Error(), "sealed by another TPM") {
		t.Fatalf("open on another TPM: %v", err)
	}
}

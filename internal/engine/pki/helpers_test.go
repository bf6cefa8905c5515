package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/clocktest"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
)

// fakeClock is a settable clock.
type fakeClock = clocktest.Clock

// harness is an engine over a real bbolt file in a temp dir.
type harness struct {
	t     testing.TB
	path  string
	db    *bolt.Backend
	pki   *Backend
	clock *fakeClock
	mount string
}

// newHarness opens a fresh bbolt file and mounts the engine at "pki/".
func newHarness(t testing.TB) *harness {
	t.Helper()
	return newHarnessAt(t, "pki/", clocktest.New(time.Now().Truncate(time.Second)))
}

// newHarnessAt is newHarness with a mount point and a shared clock.
func newHarnessAt(t testing.TB, mount string, clock *fakeClock) *harness {
	t.Helper()
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "vault.db"), clock: clock, mount: mount}
	h.open()
	t.Cleanup(func() { h.db.Close() })
	return h
}

// open (re)opens the bbolt file and builds a new engine over it.
func (h *harness) open() {
	h.t.Helper()
	db, err := bolt.Open(h.path, bolt.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.db = db
	h.pki = New(storage.NewView(db, "logical/"+h.mount), Options{Clock: h.clock.Now})
}

// reopen simulates a restart.
func (h *harness) reopen() {
	h.t.Helper()
	if err := h.db.Close(); err != nil {
		h.t.Fatal(err)
	}
	h.open()
}

// body decodes JSON as httpapi does (UseNumber).
func body(t testing.TB, s string) map[string]any {
	t.Helper()
	if s == "" {
		return nil
	}
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("bad test body %s: %v", s, err)
	}
	return m
}

func (h *harness) do(op logical.Operation, path, js string) (*logical.Response, error) {
	return h.pki.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, MountPoint: h.mount, Data: body(h.t, js)})
}

func (h *harness) must(op logical.Operation, path, js string) *logical.Response {
	h.t.Helper()
	resp, err := h.do(op, path, js)
	if err != nil {
		h.t.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

// str returns a string field of a response.
func str(t testing.TB, resp *logical.Response, k string) string {
	t.Helper()
	if resp == nil {
		t.Fatalf("nil response, want field %q", k)
	}
	s, ok := resp.Data[k].(string)
	if !ok || s == "" {
		t.Fatalf("response field %q = %#v, want a non-empty string", k, resp.Data[k])
	}
	return s
}

// parseCert decodes one PEM certificate.
func parseCert(t testing.TB, s string) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %.60q", s)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantInvalid checks err is a 400 whose text mentions field.
func wantInvalid(t testing.TB, err error, field string) {
	t.Helper()
	if !errors.Is(err, logical.ErrInvalidRequest) {
		t.Fatalf("err = %v, want ErrInvalidRequest naming %q", err, field)
	}
	if !strings.Contains(err.Error(), field) {
		t.Fatalf("err = %q, want it to name %q", err, field)
	}
}

// pemBundle joins PEM strings for files and set-signed.
func pemBundle(certs ...string) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		b.WriteString(strings.TrimSpace(c))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

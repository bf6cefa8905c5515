package attest_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/attest/jointoken"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
	"github.com/edgevault/edgevault/internal/storage/inmem"
	"github.com/edgevault/edgevault/internal/zone"
)

const td = "edgevault.test"

// t0 is the reference clock of the tests.
var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// backends returns the physical stores every test runs over.
func backends() map[string]func(t testing.TB) storage.Backend {
	return map[string]func(t testing.TB) storage.Backend{
		"inmem": func(testing.TB) storage.Backend { return inmem.New() },
		"bolt": func(t testing.TB) storage.Backend {
			b, err := bolt.Open(filepath.Join(t.TempDir(), "edgevault.db"), bolt.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		},
	}
}

// forEachBackend runs fn as a subtest over each physical backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	for name, open := range backends() {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, open(t))
			t.Cleanup(func() { e.check(t) })
			fn(t, e)
		})
	}
}

// env is a Service over real, encrypted zone stores ("east", "west" and
// the root zone) on a physical backend.
type env struct {
	raw   storage.Backend
	root  *zone.AESRoot
	zones *zone.Store
	svc   *attest.Service
}

func newEnv(t testing.TB, raw storage.Backend) *env {
	t.Helper()
	k := make([]byte, zone.KeySize)
	_, _ = rand.Read(k)
	root, err := zone.NewAESRoot(k)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{raw: raw, root: root}
	e.reopen(t)
	for _, z := range []string{"east", "west"} {
		if _, err := e.zones.Create(context.Background(), zone.Zone{Name: z}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// reopen builds a fresh zone.Store and Service over the same storage, as a
// restarted server would.
func (e *env) reopen(t testing.TB) {
	t.Helper()
	zs, err := zone.Open(context.Background(), zone.Config{Storage: e.raw, Root: e.root})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := attest.New(attest.Config{
		TrustDomain: td,
		Stores:      func(z string) (storage.Backend, error) { return zs.Backend(z) },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.zones, e.svc = zs, svc
}

func (e *env) token(t testing.TB, z string, opts jointoken.Options, now time.Time) string {
	t.Helper()
	tok, _, err := e.svc.CreateJoinToken(context.Background(), z, opts, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// enroll enrolls a fresh key into z on a fresh token at now.
func (e *env) enroll(t testing.TB, z string, now time.Time) (attest.Enrollment, *ecdsa.PrivateKey) {
	t.Helper()
	k := newKey(t)
	en, err := e.svc.Enroll(context.Background(), z, e.token(t, z, jointoken.Options{}, now), &k.PublicKey, now)
	if err != nil {
		t.Fatalf("Enroll(%q): %v", z, err)
	}
	return en, k
}

// parseChain decodes PEM certificates, failing on anything else.
func parseChain(t testing.TB, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			t.Fatalf("PEM block %q in chain", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(b)) != 0 {
		t.Fatalf("trailing data after PEM chain: %q", b)
	}
	return out
}

// check re-reads every attest record of every zone after a test: each must
// parse, and each agent must hold a certificate serial and expiry.
func (e *env) check(t *testing.T) {
	ctx := context.Background()
	for _, z := range []string{"", "east", "west"} {
		agents, err := e.svc.Agents().List(ctx, z)
		if err != nil {
			t.Errorf("check: zone %q agents: %v", z, err)
		}
		for _, a := range agents {
			if a.CertSerial == "" || a.CertNotAfter.IsZero() || a.EnrolledAt.IsZero() {
				t.Errorf("check: zone %q agent %q lacks certificate data: %+v", z, a.ID, a)
			}
		}
		if _, err := e.svc.JoinTokens().List(ctx, z); err != nil {
			t.Errorf("check: zone %q tokens: %v", z, err)
		}
	}
}

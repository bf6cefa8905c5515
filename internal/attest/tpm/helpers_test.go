package tpm_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/attest/tpm"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// pcrs07 is the usual boot-state selection.
var pcrs07 = []int{0, 1, 2, 3, 4, 5, 6, 7}

// zeroPCR is a PCR's value after reset, as in a fresh simulator.
const zeroPCR = "0000000000000000000000000000000000000000000000000000000000000000"

// zeroSet is an allowed set naming all of pcrs07 at their reset values.
func zeroSet() map[string]string {
	m := make(map[string]string, 8)
	for _, n := range pcrs07 {
		m[strconv.Itoa(n)] = zeroPCR
	}
	return m
}

// fixture is an Attestor over real bbolt files, one per zone, and a
// mutable policy table. Zone "east" has a policy (set by the test),
// "west" has none.
type fixture struct {
	a      *tpm.Attestor
	stores map[string]storage.Backend

	mu       sync.Mutex
	policies map[string]tpm.Policy
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	stores := map[string]storage.Backend{}
	dir := t.TempDir()
	for _, z := range []string{"east", "west"} {
		b, err := bolt.Open(filepath.Join(dir, z+".db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		stores[z] = b
	}
	return newFixtureOn(t, stores)
}

// newFixtureOn is newFixture over the given zone stores.
func newFixtureOn(t testing.TB, stores map[string]storage.Backend) *fixture {
	t.Helper()
	f := &fixture{stores: stores, policies: map[string]tpm.Policy{}}
	a, err := tpm.New(tpm.Config{
		Policies: tpm.PolicyFunc(func(_ context.Context, zone string) (tpm.Policy, bool, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			p, ok := f.policies[zone]
			return p, ok, nil
		}),
		Stores: func(zone string) (storage.Backend, error) {
			b, ok := f.stores[zone]
			if !ok {
				return nil, errors.New("no such zone")
			}
			return b, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.a = a
	return f
}

func (f *fixture) setPolicy(zone string, p tpm.Policy) {
	f.mu.Lock()
	f.policies[zone] = p
	f.mu.Unlock()
}

// pending lists the challenge records stored in zone.
func (f *fixture) pending(t testing.TB, zone string) []string {
	t.Helper()
	names, err := f.stores[zone].List(context.Background(), "attest/tpm/challenges/")
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// begin sends s's EK and ak to the attestor and decodes the challenge.
func begin(t testing.TB, f *fixture, zone string, s *simTPM, ak simAK, ekCert []byte, now time.Time) (attest.Challenge, tpm.ChallengePayload, error) {
	t.Helper()
	ev := mustJSON(t, tpm.BeginEvidence{EKPublic: s.ekPub, EKCertificate: ekCert, AKPublic: ak.Public})
	ch, err := f.a.Begin(context.Background(), zone, ev, now)
	if err != nil {
		return ch, tpm.ChallengePayload{}, err
	}
	var p tpm.ChallengePayload
	if err := json.Unmarshal(ch.Payload, &p); err != nil {
		t.Fatalf("challenge payload: %v", err)
	}
	return ch, p, nil
}

// answer is the honest agent's answer to payload: activate the
// credential with ak, quote the requested PCRs over the nonce and tlsDER.
func answer(t testing.TB, s *simTPM, ak simAK, p tpm.ChallengePayload, tlsDER []byte) tpm.AttestEvidence {
	t.Helper()
	ev := tpm.AttestEvidence{PublicKeyDER: tlsDER}
	if len(p.CredentialBlob) > 0 {
		secret, err := s.activate(ak, p.CredentialBlob, p.EncryptedSecret)
		if err != nil {
			t.Fatalf("activate credential: %v", err)
		}
		ev.Secret = secret
	}
	ev.Quote = s.quote(ak, tpm.Qualifying(p.Nonce, tlsDER), p.PCRs)
	return ev
}

// attestReq runs Attest for challenge id with ev.
func attestReq(t testing.TB, f *fixture, zone, id string, ev tpm.AttestEvidence, now time.Time) (attest.Identity, error) {
	t.Helper()
	return f.a.Attest(context.Background(), attest.Request{Zone: zone, Challenge: id, Evidence: mustJSON(t, ev), Now: now})
}

// wantErr fails unless err matches every target.
func wantErr(t testing.TB, what string, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v", what, targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("%s: %v, want %v", what, err, target)
		}
	}
}

// decodePayload decodes a challenge's JSON payload.
func decodePayload(t testing.TB, ch attest.Challenge) tpm.ChallengePayload {
	t.Helper()
	var p tpm.ChallengePayload
	if err := json.Unmarshal(ch.Payload, &p); err != nil {
		t.Fatalf("challenge payload: %v", err)
	}
	return p
}

// b64 is standard base64.
func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

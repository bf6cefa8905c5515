package attest_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/attest/jointoken"
)

// hardwareAttestor admits one machine as a TPM-attested agent: it stands in
// for the TPM attestor (tested with real TPMs in attest/tpm) to exercise
// what the Service does with hardware-attested agents.
type hardwareAttestor struct{}

func (hardwareAttestor) Method() string { return attest.MethodTPM }

func (hardwareAttestor) Attest(_ context.Context, req attest.Request) (attest.Identity, error) {
	return attest.Identity{AgentID: "tpm-0011223344556677", Zone: req.Zone, Method: attest.MethodTPM,
		Strength: attest.StrengthHardware, Claims: map[string]string{"ek_hash": "00", "pcr_digest": "aa"}}, nil
}

// A TPM-attested agent renews only by re-attesting; evidence against it
// quarantines it, other failures only refuse; a requested re-attestation
// not done in time leaves it nothing but a renewal.
func TestReattestation(t *testing.T) {
	e := newEnv(t, backends()["inmem"](t))
	ctx := t.Context()
	k := newKey(t)
	en, err := e.svc.Admit(ctx, hardwareAttestor{}, attest.Request{Zone: "east", Now: t0}, &k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{en.Certificate}
	at := t0.Add(time.Minute)
	ok := func(context.Context, attest.Agent) (map[string]string, error) {
		return map[string]string{"ek_hash": "00", "pcr_digest": "bb"}, nil
	}
	if _, err := e.svc.Renew(ctx, chain, &newKey(t).PublicKey, at, nil); !errors.Is(err, attest.ErrAttestation) || !strings.Contains(err.Error(), "fresh quote") {
		t.Fatalf("renewal without re-attestation: %v", err)
	}
	expired := func(context.Context, attest.Agent) (map[string]string, error) {
		return nil, errors.New("challenge expired")
	}
	if _, err := e.svc.Renew(ctx, chain, &newKey(t).PublicKey, at, expired); !errors.Is(err, attest.ErrAttestation) {
		t.Fatalf("renewal with an expired challenge: %v", err)
	}
	if a, _ := e.svc.Agents().Get(ctx, "east", en.Agent.ID); a.Status != attest.StatusActive {
		t.Fatalf("an expired challenge quarantined the agent: %+v", a)
	}

	// Asked to re-attest: fine until the deadline, then only a renewal.
	if _, err := e.svc.RequestReattest(ctx, "east", en.Agent.ID, at.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authorize(ctx, chain, at.Add(time.Minute)); err != nil {
		t.Fatalf("before the deadline: %v", err)
	}
	late := at.Add(3 * time.Minute)
	if _, err := e.svc.Authorize(ctx, chain, late); !errors.Is(err, attest.ErrAttestation) || !strings.Contains(err.Error(), "re-attestation was requested") {
		t.Fatalf("after the deadline: %v", err)
	}
	re, err := e.svc.Renew(ctx, chain, &newKey(t).PublicKey, late, ok)
	if err != nil {
		t.Fatal(err)
	}
	if !re.Agent.ReattestBy.IsZero() || re.Agent.Claims["pcr_digest"] != "bb" {
		t.Fatalf("after re-attesting: %+v", re.Agent)
	}
	chain = []*x509.Certificate{re.Certificate}
	if _, err := e.svc.Authorize(ctx, chain, late); err != nil {
		t.Fatalf("re-attested: %v", err)
	}

	// Evidence against the agent: quarantined, with the reason.
	bad := func(context.Context, attest.Agent) (map[string]string, error) {
		return nil, fmt.Errorf("%w: PCR 7 differs from every allowed set", attest.ErrReattestFailed)
	}
	if _, err := e.svc.Renew(ctx, chain, &newKey(t).PublicKey, late, bad); !errors.Is(err, attest.ErrAttestation) || !strings.Contains(err.Error(), "quarantined") {
		t.Fatalf("failed re-attestation: %v", err)
	}
	a, _ := e.svc.Agents().Get(ctx, "east", en.Agent.ID)
	if a.Status != attest.StatusQuarantined || !strings.Contains(a.StatusReason, "PCR 7") {
		t.Fatalf("after a failed re-attestation: %+v", a)
	}

	// A join-token agent cannot take over the TPM agent's ID.
	if _, err := e.svc.Agents().SetStatus(ctx, "east", en.Agent.ID, attest.StatusActive, "", late); err != nil {
		t.Fatal(err)
	}
	tok, _, err := e.svc.CreateJoinToken(ctx, "east", jointoken.Options{AgentID: en.Agent.ID}, late)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Enroll(ctx, "east", tok, &newKey(t).PublicKey, late); !errors.Is(err, attest.ErrAttestation) || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("join token over a TPM agent: %v", err)
	}
}

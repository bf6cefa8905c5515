package attest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/attest"
)

// challengeAttestor stands in for the TPM attestor, which cannot run here:
// Begin hands out a nonce, Attest wants it back, once, before it expires.
// It exercises the shape of a multi-step attestation through the Service.
type challengeAttestor struct {
	mu      sync.Mutex
	pending map[string]pendingChallenge
}

type pendingChallenge struct {
	zone    string
	nonce   []byte
	machine []byte
	expires time.Time
}

var (
	_ attest.Attestor   = (*challengeAttestor)(nil)
	_ attest.Challenger = (*challengeAttestor)(nil)
)

func (*challengeAttestor) Method() string { return "test-challenge" }

func (c *challengeAttestor) Begin(_ context.Context, zone string, evidence []byte, now time.Time) (attest.Challenge, error) {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	id := hex.EncodeToString(nonce[:8])
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending[id] = pendingChallenge{zone: zone, nonce: nonce, machine: bytes.Clone(evidence), expires: now.Add(time.Minute)}
	return attest.Challenge{ID: id, Payload: nonce, ExpiresAt: now.Add(time.Minute)}, nil
}

func (c *challengeAttestor) Attest(_ context.Context, req attest.Request) (attest.Identity, error) {
	c.mu.Lock()
	p, ok := c.pending[req.Challenge]
	delete(c.pending, req.Challenge)
	c.mu.Unlock()
	switch {
	case !ok:
		return attest.Identity{}, fmt.Errorf("%w: unknown challenge", attest.ErrAttestation)
	case p.zone != req.Zone || !req.Now.Before(p.expires) || !bytes.Equal(req.Evidence, p.nonce):
		return attest.Identity{}, fmt.Errorf("%w: bad answer", attest.ErrAttestation)
	}
	sum := sha256.Sum256(p.machine)
	return attest.Identity{AgentID: "m-" + hex.EncodeToString(sum[:8]), Zone: req.Zone, Method: "test-challenge",
		Strength: attest.StrengthHardware, Claims: map[string]string{"machine": string(p.machine)}}, nil
}

func TestChallengeRound(t *testing.T) {
	e := newEnv(t, backends()["inmem"](t))
	ctx := t.Context()
	a := &challengeAttestor{pending: map[string]pendingChallenge{}}
	ch, err := e.svc.Begin(ctx, a, "east", []byte("ek-1"), t0)
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	en, err := e.svc.Admit(ctx, a, attest.Request{Zone: "east", Evidence: ch.Payload, Challenge: ch.ID, Now: t0}, &k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if en.Agent.Strength != attest.StrengthHardware || en.Agent.Method != "test-challenge" || en.Agent.Claims["machine"] != "ek-1" {
		t.Fatalf("agent %+v", en.Agent)
	}
	// The challenge is single use.
	if _, err := e.svc.Admit(ctx, a, attest.Request{Zone: "east", Evidence: ch.Payload, Challenge: ch.ID, Now: t0}, &k.PublicKey); !errors.Is(err, attest.ErrAttestation) {
		t.Fatalf("replayed challenge: %v", err)
	}
	// The join token attestor has no challenge round.
	if _, err := e.svc.Begin(ctx, attest.NewJoinToken(e.svc.JoinTokens()), "east", nil, t0); !errors.Is(err, attest.ErrAttestation) {
		t.Fatalf("Begin with join tokens: %v", err)
	}
}

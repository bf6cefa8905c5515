package attest

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/edgevault/edgevault/internal/attest/jointoken"
)

// Strength says how much an attested identity is worth.
type Strength string

const (
	// StrengthWeak: the identity rests on a bearer secret (a join token)
	// and says nothing about the machine that presented it.
	StrengthWeak Strength = "weak"
	// StrengthHardware: the identity rests on evidence from a hardware root
	// of trust (a TPM's endorsement key, credential activation, a quote).
	StrengthHardware Strength = "hardware"
)

// Method names of the attestors this package and its planned subpackages
// provide.
const (
	// MethodJoinToken is the join token attestor.
	MethodJoinToken = "join-token"
	// MethodTPM is the TPM 2.0 attestor (a later package).
	MethodTPM = "tpm"
)

// Identity is what an attestor vouches for.
type Identity struct {
	// AgentID is the agent ID the evidence binds to, or empty to let the
	// service choose a random one. A TPM attestor would derive it from the
	// endorsement key, so a machine keeps its ID across re-enrollments.
	AgentID string
	// Zone is the zone the identity was attested for.
	Zone string
	// Method names the attestor (MethodJoinToken, MethodTPM).
	Method string
	// Strength grades the evidence.
	Strength Strength
	// Claims are facts the attestor verified or copied from operator
	// metadata ("token_id", labels, and for TPM e.g. the EK hash and PCR
	// digest). Values are not secret: they are stored and shown.
	Claims map[string]string
}

// Request is one attestation attempt.
type Request struct {
	// Zone is the zone the agent asks to join ("" is the root zone).
	Zone string
	// Evidence is the attestor-specific proof: the token text for
	// MethodJoinToken.
	Evidence []byte
	// Challenge is the Challenge.ID returned by Begin, for attestors that
	// implement Challenger; empty otherwise.
	Challenge string
	// Now is the server's clock.
	Now time.Time
}

// Attestor turns evidence into a verified identity. Attest either returns an
// identity for req.Zone or an error; it must be safe for concurrent use, and
// evidence it accepts once (a join token, a challenge) it must refuse after.
//
// The service issues the certificate and writes the agent record after
// Attest returns; if that fails, single-use evidence is already spent and
// the agent must get new evidence (fail closed).
type Attestor interface {
	// Method names the attestor, e.g. MethodJoinToken.
	Method() string
	// Attest verifies req.Evidence for req.Zone.
	Attest(ctx context.Context, req Request) (Identity, error)
}

// Challenger is implemented by attestors that need a round trip before
// Attest, such as the TPM attestor:
//
//  1. The agent sends its endorsement key (EK) certificate and attestation
//     key (AK) parameters as evidence to Begin.
//  2. Begin checks the EK chain, runs TPM2_MakeCredential for the AK with a
//     random secret, stores (secret, nonce, AK) under a fresh challenge ID
//     with a short expiry in the zone's store, and returns the credential
//     blob and a nonce as the Challenge payload.
//  3. The agent activates the credential (TPM2_ActivateCredential) and
//     quotes its PCRs over the nonce with the AK, and calls Attest with the
//     recovered secret and the quote as evidence and Request.Challenge set.
//  4. Attest loads and deletes the challenge (single use, like a join
//     token), compares the secret, verifies the quote against the zone's
//     PCR policy, and returns a StrengthHardware identity whose AgentID is
//     derived from the EK.
//
// Enroll with a join token needs no challenge, so JoinToken does not
// implement Challenger. The service discovers the capability by type
// assertion.
type Challenger interface {
	// Begin starts an attestation for zone and returns the challenge the
	// agent must answer in its Attest evidence.
	Begin(ctx context.Context, zone string, evidence []byte, now time.Time) (Challenge, error)
}

// Challenge is the server's half of a multi-step attestation.
type Challenge struct {
	// ID names the pending attestation; the agent echoes it in
	// Request.Challenge.
	ID string
	// Payload is attestor-specific (for TPM: credential blob and nonce).
	Payload []byte
	// ExpiresAt is when the pending attestation is forgotten.
	ExpiresAt time.Time
}

// JoinToken is the join token Attestor: evidence is the token text; a token
// is redeemed at most once, for the zone it was created for, before it
// expires. It yields StrengthWeak identities.
type JoinToken struct {
	tokens *jointoken.Store
}

var _ Attestor = (*JoinToken)(nil)

// NewJoinToken returns the join token attestor over tokens.
func NewJoinToken(tokens *jointoken.Store) *JoinToken { return &JoinToken{tokens: tokens} }

// Method returns MethodJoinToken.
func (*JoinToken) Method() string { return MethodJoinToken }

// Attest redeems the token in req.Evidence. Errors wrap ErrTokenUnknown,
// ErrTokenZone, ErrTokenUsed or ErrTokenExpired (among others).
func (j *JoinToken) Attest(ctx context.Context, req Request) (Identity, error) {
	info, err := j.tokens.Redeem(ctx, req.Zone, string(req.Evidence), req.Now)
	if err != nil {
		return Identity{}, fmt.Errorf("attest %s: %w", MethodJoinToken, err)
	}
	claims := make(map[string]string, len(info.Labels)+1)
	maps.Copy(claims, info.Labels)
	claims["token_id"] = info.ID
	return Identity{
		AgentID:  info.AgentID,
		Zone:     info.Zone,
		Method:   MethodJoinToken,
		Strength: StrengthWeak,
		Claims:   claims,
	}, nil
}

package httpapi

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/attest/tpm"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/syncproto"
)

// TPM attestation (the hardware attestation issue):
//
//	GET/POST/DELETE sys/zones/:name/attestation   the zone's TPM attestation policy (root zone, sudo)
//	POST auth/attest/tpm/challenge   {ek_public, ek_certificate, ak_public}   no token: a credential challenge
//	POST auth/attest/enroll          {method: "tpm", challenge_id, secret, quote, event_log, public_key}
//	POST auth/attest/renew/challenge mTLS: a re-attestation nonce for a TPM agent
//	POST auth/attest/renew           {public_key, challenge_id, quote, event_log}   mTLS; TPM agents must re-attest
//	POST sys/agents/:id/reattest     asks the agent, over its sync stream, to re-attest now

// tpmPolicyKey is where a zone's TPM attestation policy is stored, in the
// zone's own encrypted storage.
const tpmPolicyKey = "attest/tpm-policy"

// zoneStores returns a zone's storage ("" is the root zone): the barrier,
// or the zone's encrypted view.
func (s *Server) zoneStores(u *unsealed) func(zone string) (storage.Backend, error) {
	return func(zone string) (storage.Backend, error) {
		if zone == "" {
			return s.barrier, nil
		}
		if _, err := u.zones.Get(context.Background(), zone); err != nil {
			return nil, err
		}
		return u.zones.Backend(zone)
	}
}

// tpmPolicy reads a zone's TPM attestation policy; ok is false if it has none.
func (s *Server) tpmPolicy(u *unsealed) tpm.PolicyFunc {
	stores := s.zoneStores(u)
	return func(ctx context.Context, zone string) (tpm.Policy, bool, error) {
		store, err := stores(zone)
		if err != nil {
			return tpm.Policy{}, false, err
		}
		raw, err := store.Get(ctx, tpmPolicyKey)
		if errors.Is(err, storage.ErrNotFound) {
			return tpm.Policy{}, false, nil
		}
		if err != nil {
			return tpm.Policy{}, false, err
		}
		p, err := tpm.ParsePolicy(raw)
		return p, err == nil, err
	}
}

// zoneAttestation answers sys/zones/:name/attestation.
func (s *Server) zoneAttestation(ctx context.Context, u *unsealed, name string, req *request) (*logical.Response, error) {
	store, err := s.zoneStores(u)(name)
	if err != nil {
		return nil, err
	}
	switch req.Operation {
	case logical.ReadOperation:
		p, ok, err := s.tpmPolicy(u)(ctx, name)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: zone %q has no TPM attestation policy", logical.ErrNotFound, zoneLabel(name))
		}
		return &logical.Response{Data: policyData(p)}, nil
	case logical.CreateOperation, logical.UpdateOperation:
		raw, err := json.Marshal(req.Data)
		if err != nil {
			return nil, logical.InvalidRequest("%v", err)
		}
		p, err := tpm.ParsePolicy(raw)
		if err != nil {
			return nil, logical.InvalidRequest("%v", err)
		}
		canon, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		if err := store.Put(ctx, tpmPolicyKey, canon); err != nil {
			return nil, err
		}
		s.log.Info("zone TPM attestation policy written", "zone", zoneLabel(name), "pcrs", p.PCRs,
			"ek_hashes", len(p.EKHashes), "ek_cas", len(p.EKCAs), "allowed_pcr_sets", len(p.AllowedPCRs))
		return &logical.Response{Data: policyData(p)}, nil
	case logical.DeleteOperation:
		return nil, store.Delete(ctx, tpmPolicyKey)
	}
	return nil, fmt.Errorf("%w: %s on sys/zones/%s/attestation", logical.ErrUnsupportedOperation, req.Operation, name)
}

// policyData is a policy as the API shows it.
func policyData(p tpm.Policy) map[string]any {
	var out map[string]any
	raw, _ := json.Marshal(p)
	_ = json.Unmarshal(raw, &out)
	out["max_quote_age"] = p.QuoteAge().String()
	return out
}

// tpmQuote is a quote as agents send it (base64 fields).
type tpmQuote struct {
	Attest    []byte            `json:"attest"`
	Signature []byte            `json:"signature"`
	PCRs      map[string][]byte `json:"pcrs"`
}

// tpmEvidence builds the attestor's evidence from a request's answer to a
// challenge (the secret, the quote and the optional TCG event log) and the
// public key the certificate is for, so that the quote is checked against
// the key the server is about to certify.
func tpmEvidence(secret []byte, q *tpmQuote, eventLog []byte, pub any) ([]byte, error) {
	if q == nil {
		return nil, logical.InvalidRequest("quote is required: the TPM's quote over the challenge's nonce")
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, logical.InvalidRequest("public_key: %v", err)
	}
	return json.Marshal(tpm.AttestEvidence{Secret: secret, PublicKeyDER: der, EventLog: eventLog,
		Quote: tpm.QuoteEvidence{Attest: q.Attest, Signature: q.Signature, PCRs: q.PCRs}})
}

// challengeResponse is the answer to a (re-)attestation challenge.
func challengeResponse(ch attest.Challenge) (*logical.Response, error) {
	var payload map[string]any
	if err := json.Unmarshal(ch.Payload, &payload); err != nil {
		return nil, err
	}
	payload["challenge_id"] = ch.ID
	payload["expires_at"] = ch.ExpiresAt.UTC().Format(time.RFC3339)
	return &logical.Response{Data: payload}, nil
}

// tpmBegin answers auth/attest/tpm/challenge.
func (s *Server) tpmBegin(ctx context.Context, u *unsealed, c *core, req *request, now time.Time) (*logical.Response, error) {
	raw, err := json.Marshal(req.Data)
	if err != nil {
		return nil, logical.InvalidRequest("%v", err)
	}
	ch, err := u.attest.Begin(ctx, u.tpm, c.zone, raw, now)
	if err != nil {
		return nil, attestError(err)
	}
	return challengeResponse(ch)
}

// tpmReattestChallenge answers auth/attest/renew/challenge: a nonce the
// agent quotes for its renewal.
func (s *Server) tpmReattestChallenge(ctx context.Context, u *unsealed, c *core, r *http.Request, now time.Time) (*logical.Response, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, logical.InvalidRequest("renew/challenge needs the agent's current certificate as the TLS client certificate")
	}
	// An agent past its re-attestation deadline must still get a challenge:
	// quoting it is how it re-attests.
	a, err := u.attest.AuthorizeRenewal(ctx, r.TLS.PeerCertificates, now)
	if err != nil {
		return nil, attestError(err)
	}
	if a.Method != attest.MethodTPM {
		return nil, logical.InvalidRequest("agent %q was admitted with %s: it renews without a quote", a.ID, a.Method)
	}
	ak, err := base64.StdEncoding.DecodeString(a.Claims["ak_public"])
	if err != nil || len(ak) == 0 {
		return nil, operatorError{fmt.Errorf("agent %q: its record holds no usable attestation key (ak_public claim)", a.ID)}
	}
	// The EK as enrolled (absent for agents enrolled before it was kept).
	ek, _ := base64.StdEncoding.DecodeString(a.Claims["ek_public"])
	ekCert, _ := base64.StdEncoding.DecodeString(a.Claims["ek_certificate"])
	ch, err := u.tpm.ReattestChallenge(ctx, a.Zone, a.ID, ak, ek, ekCert, now)
	if err != nil {
		return nil, attestError(err)
	}
	return challengeResponse(ch)
}

// tpmReattest is the re-attestation check of a renewal that answers
// challenge id with evidence. Evidence against the agent (a quote that
// does not verify, PCR values or an EK the policy does not allow, an event
// log that does not replay to the quote) is
// attest.ErrReattestFailed, which quarantines it.
func (s *Server) tpmReattest(u *unsealed, id string, evidence []byte, now time.Time) attest.Reattest {
	return func(ctx context.Context, a attest.Agent) (map[string]string, error) {
		got, err := u.tpm.VerifyReattest(ctx, a.Zone, id, evidence, now)
		for _, bad := range []error{tpm.ErrActivation, tpm.ErrQuoteSignature, tpm.ErrPCRSelection, tpm.ErrPCRValues, tpm.ErrEventLog, tpm.ErrEKNotAllowed, tpm.ErrAKAttributes} {
			if errors.Is(err, bad) {
				return nil, fmt.Errorf("%w: %w", attest.ErrReattestFailed, err)
			}
		}
		if err != nil {
			return nil, err
		}
		if got.AgentID != a.ID {
			return nil, fmt.Errorf("%w: challenge %s was made for agent %q", tpm.ErrNonce, id, got.AgentID)
		}
		claims := maps.Clone(got.Claims)
		if _, ok := claims["ek_hash"]; !ok && a.Claims["ek_hash"] != "" {
			claims["ek_hash"] = a.Claims["ek_hash"] // enrollment proved it; a re-attestation uses the AK alone
		}
		return claims, nil
	}
}

// reattestGrace is how long an agent asked to re-attest has to do it;
// past it, its certificate serves only to renew (and so re-attest).
const reattestGrace = 2 * time.Minute

// requestReattest asks agent id to re-attest: recorded with a deadline in
// the registry (an agent that ignores the request is refused after it),
// and published on the zone's sync stream (an agent offline gets it from
// the backlog when it reconnects, or is refused and renews).
func (s *Server) requestReattest(ctx context.Context, u *unsealed, zone, id string, now time.Time) (attest.Agent, error) {
	a, err := u.attest.RequestReattest(ctx, zone, id, now.Add(reattestGrace))
	if err != nil {
		return attest.Agent{}, err
	}
	s.startFeed(u, zone)
	_, err = u.feed.Publish(zone, syncproto.Event{Kind: syncproto.Reattest, Path: id})
	return a, err
}

// agentIDOf is the agent ID in a client certificate chain's SPIFFE ID (""
// if it has none).
func agentIDOf(chain []*x509.Certificate, td string) string {
	if len(chain) == 0 || len(chain[0].URIs) != 1 {
		return ""
	}
	n, err := attest.ParseAgentName(chain[0].URIs[0])
	if err != nil || n.TrustDomain != td {
		return ""
	}
	return n.ID
}

// challengeTidyInterval is how often expired TPM challenges are removed.
const challengeTidyInterval = time.Minute

// tidyChallenges removes expired pending TPM challenges of every zone until
// the server seals: anyone may ask for a challenge, none outlives its
// max_quote_age by more than a minute.
func (s *Server) tidyChallenges(u *unsealed) {
	t := time.NewTicker(challengeTidyInterval)
	defer t.Stop()
	for {
		select {
		case <-u.bg.Done():
			return
		case <-t.C:
		}
		zones, err := u.zones.List(u.bg)
		if err != nil {
			s.log.Warn("tpm: tidy challenges: list zones", "err", err)
			continue
		}
		for _, z := range append([]string{""}, zones...) {
			if n, err := u.tpm.Tidy(u.bg, z, time.Now()); err != nil {
				s.log.Warn("tpm: tidy challenges", "zone", zoneLabel(z), "err", err)
			} else if n > 0 {
				s.log.Info("tpm: expired challenges removed", "zone", zoneLabel(z), "count", n)
			}
		}
	}
}

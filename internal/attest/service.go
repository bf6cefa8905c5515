package attest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/edgevault/edgevault/internal/attest/jointoken"
	"github.com/edgevault/edgevault/internal/storage"
)

// caKey is where a zone's CA lives inside the zone's store.
const caKey = "attest/ca"

// Config configures a Service. Field comments are the documentation.
type Config struct {
	// TrustDomain is the SPIFFE trust domain of every agent ID, e.g.
	// "edgevault.example". Required.
	TrustDomain string
	// Stores returns the storage of a zone ("" is the root zone). Pass the
	// zone's encrypted view: the CA private key is stored in it. Required.
	Stores func(zone string) (storage.Backend, error)
	// CertTTL is the lifetime of agent certificates. 0 means
	// DefaultCertTTL; at most MaxCertTTL.
	CertTTL time.Duration
	// ClockSkew is how far certificates' NotBefore is backdated and how far
	// in the future a join token's creation may be. 0 means
	// DefaultClockSkew.
	ClockSkew time.Duration
	// Logger receives enrollments, renewals and refusals (IDs only, never
	// tokens or keys). nil discards.
	Logger *slog.Logger
	// RenewGrace is how long after its certificate expired an agent may
	// still renew it (an edge node that was cut off): the certificate must
	// still be its current one and the agent active. 0 means
	// DefaultRenewGrace; a negative value allows none.
	RenewGrace time.Duration
}

// DefaultRenewGrace lets an agent that was offline up to 30 days (the
// longest cache max_stale) renew without a new join token.
const DefaultRenewGrace = 30 * 24 * time.Hour

// Service enrolls, renews and authorizes agents of every zone: it owns the
// zones' CAs, the join token store and the agent registry. Safe for
// concurrent use.
type Service struct {
	cfg    Config
	log    *slog.Logger
	tokens *jointoken.Store
	join   *JoinToken
	agents *Registry

	createMu sync.Mutex // serialises CA creation
	casMu    sync.RWMutex
	cas      map[string]*CA
}

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if err := ValidateTrustDomain(cfg.TrustDomain); err != nil {
		return nil, fmt.Errorf("attest: config: %w", err)
	}
	if cfg.Stores == nil {
		return nil, fmt.Errorf("attest: config: %w: Stores is nil", ErrInvalidConfig)
	}
	switch {
	case cfg.CertTTL < 0 || cfg.CertTTL > MaxCertTTL:
		return nil, fmt.Errorf("attest: config: %w: CertTTL %s is outside 0..%s", ErrInvalidConfig, cfg.CertTTL, MaxCertTTL)
	case cfg.CertTTL == 0:
		cfg.CertTTL = DefaultCertTTL
	}
	switch {
	case cfg.ClockSkew < 0 || cfg.ClockSkew > time.Hour:
		return nil, fmt.Errorf("attest: config: %w: ClockSkew %s is outside 0..1h", ErrInvalidConfig, cfg.ClockSkew)
	case cfg.ClockSkew == 0:
		cfg.ClockSkew = DefaultClockSkew
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tokens, err := jointoken.New(jointoken.Config{Stores: cfg.Stores, ClockSkew: cfg.ClockSkew})
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	return &Service{
		cfg:    cfg,
		log:    log,
		tokens: tokens,
		join:   NewJoinToken(tokens),
		agents: newRegistry(cfg.Stores),
		cas:    make(map[string]*CA),
	}, nil
}

// TrustDomain returns the configured SPIFFE trust domain.
func (s *Service) TrustDomain() string { return s.cfg.TrustDomain }

// JoinTokens returns the join token store (list, delete, tidy).
func (s *Service) JoinTokens() *jointoken.Store { return s.tokens }

// Agents returns the agent registry.
func (s *Service) Agents() *Registry { return s.agents }

// CreateJoinToken mints a join token for zone (see jointoken.Store.Create),
// checking a preset agent ID against ValidateAgentID. The token text is
// returned once and never stored.
func (s *Service) CreateJoinToken(ctx context.Context, zone string, opts jointoken.Options, now time.Time) (string, jointoken.Info, error) {
	if opts.AgentID != "" {
		if err := ValidateAgentID(opts.AgentID); err != nil {
			return "", jointoken.Info{}, fmt.Errorf("attest: create join token: %w", err)
		}
	}
	return s.tokens.Create(ctx, zone, opts, now)
}

// CA returns zone's CA, creating and storing it on first use.
func (s *Service) CA(ctx context.Context, zone string, now time.Time) (*CA, error) {
	if ca, err := s.loadCA(ctx, zone); !errors.Is(err, ErrNoCA) {
		return ca, err
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()
	if ca, err := s.loadCA(ctx, zone); !errors.Is(err, ErrNoCA) {
		return ca, err
	}
	ca, err := newCA(s.cfg.TrustDomain, zone, s.cfg.ClockSkew, now)
	if err != nil {
		return nil, fmt.Errorf("attest: zone %q: create CA: %w", zone, err)
	}
	b, err := ca.marshal()
	if err != nil {
		return nil, fmt.Errorf("attest: zone %q: create CA: %w", zone, err)
	}
	st, err := s.cfg.Stores(zone)
	if err != nil {
		return nil, fmt.Errorf("attest: zone %q: %w", zone, err)
	}
	if err := st.Put(ctx, caKey, b); err != nil {
		return nil, fmt.Errorf("attest: zone %q: store CA: %w", zone, err)
	}
	s.casMu.Lock()
	s.cas[zone] = ca
	s.casMu.Unlock()
	s.log.Info("attest: zone CA created", "zone", zone, "serial", ca.cert.SerialNumber.Text(16))
	return ca, nil
}

// loadCA returns zone's CA from the cache or the store, or ErrNoCA.
func (s *Service) loadCA(ctx context.Context, zone string) (*CA, error) {
	s.casMu.RLock()
	ca := s.cas[zone]
	s.casMu.RUnlock()
	if ca != nil {
		return ca, nil
	}
	st, err := s.cfg.Stores(zone)
	if err != nil {
		return nil, fmt.Errorf("attest: zone %q: %w", zone, err)
	}
	b, err := st.Get(ctx, caKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("attest: zone %q: %w", zone, ErrNoCA)
	}
	if err != nil {
		return nil, fmt.Errorf("attest: zone %q: load CA: %w", zone, err)
	}
	ca, err = parseCA(s.cfg.TrustDomain, zone, s.cfg.ClockSkew, b)
	if err != nil {
		return nil, fmt.Errorf("attest: zone %q: load CA: %w", zone, err)
	}
	s.casMu.Lock()
	if cached := s.cas[zone]; cached != nil {
		ca = cached
	} else {
		s.cas[zone] = ca
	}
	s.casMu.Unlock()
	return ca, nil
}

// ClientCAs returns a pool of the CAs of zones that have one, for a TLS
// listener's ClientCAs: the handshake then accepts any of these zones'
// agents, and Authorize pins each certificate to its own zone's CA. Zones
// without a CA are skipped; none is created.
func (s *Service) ClientCAs(ctx context.Context, zones []string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, z := range zones {
		ca, err := s.loadCA(ctx, z)
		if errors.Is(err, ErrNoCA) {
			continue
		}
		if err != nil {
			return nil, err
		}
		pool.AddCert(ca.cert)
	}
	return pool, nil
}

// ForgetCA drops zone's CA from the in-memory cache, so it is re-read from
// storage next time (call it after deleting or restoring a zone).
func (s *Service) ForgetCA(zone string) {
	s.casMu.Lock()
	delete(s.cas, zone)
	s.casMu.Unlock()
}

// Enrollment is the result of a successful Enroll, Admit or Renew.
type Enrollment struct {
	// Agent is the agent's stored record.
	Agent Agent
	// Certificate is the agent's new certificate.
	Certificate *x509.Certificate
	// ChainPEM is the certificate followed by the zone CA certificate, in
	// PEM: what the agent presents in its TLS handshakes.
	ChainPEM []byte
	// CAPEM is the zone CA certificate alone, in PEM.
	CAPEM []byte
}

// Enroll admits a new agent into zone on a join token: the token is
// redeemed (once), a certificate for pub (ECDSA P-256) is issued, and the
// agent's record is written. It is Admit with the JoinToken attestor.
func (s *Service) Enroll(ctx context.Context, zone, joinToken string, pub crypto.PublicKey, now time.Time) (Enrollment, error) {
	return s.Admit(ctx, s.join, Request{Zone: zone, Evidence: []byte(joinToken), Now: now}, pub)
}

// Admit runs attestor a on req and, if it vouches for an identity, issues a
// certificate for pub and writes (or replaces) the agent's record. The key
// and the zone's CA are checked before the attestor runs, so a bad key
// does not spend single-use evidence. When the identity names an existing
// active agent (a reinstalled node), its record is replaced and its old
// certificate superseded; re-enrolling a quarantined or revoked agent ID is
// refused (ErrAgentQuarantined, ErrAgentRevoked).
func (s *Service) Admit(ctx context.Context, a Attestor, req Request, pub crypto.PublicKey) (Enrollment, error) {
	fail := func(err error) (Enrollment, error) {
		s.log.Warn("attest: enrollment refused", "zone", req.Zone, "method", a.Method(), "error", err)
		return Enrollment{}, fmt.Errorf("attest: enroll in zone %q: %w", req.Zone, err)
	}
	if err := checkAgentKey(pub); err != nil {
		return fail(err)
	}
	ca, err := s.CA(ctx, req.Zone, req.Now)
	if err != nil {
		return fail(err)
	}
	id, err := a.Attest(ctx, req)
	if err != nil {
		return fail(err)
	}
	if id.Zone != req.Zone {
		return fail(fmt.Errorf("%w: attestor %s vouched for zone %q", ErrAttestation, a.Method(), id.Zone))
	}
	random := id.AgentID == ""
	if random {
		if id.AgentID, err = randomAgentID(); err != nil {
			return fail(err)
		}
	}
	if err := ValidateAgentID(id.AgentID); err != nil {
		return fail(err)
	}
	defer s.agents.lock(req.Zone, id.AgentID)()
	old, err := s.agents.get(ctx, req.Zone, id.AgentID)
	switch {
	case errors.Is(err, ErrAgentUnknown):
	case err != nil:
		return fail(err)
	case random:
		return fail(fmt.Errorf("random agent ID %q collides with an existing agent", id.AgentID))
	case old.Status == StatusRevoked:
		return fail(fmt.Errorf("agent %q: %w", id.AgentID, ErrAgentRevoked))
	case old.Status == StatusQuarantined:
		return fail(fmt.Errorf("agent %q: %w", id.AgentID, ErrAgentQuarantined))
	case old.Method != id.Method:
		return fail(fmt.Errorf("%w: agent %q was admitted with %s; delete it before enrolling it with %s", ErrAttestation, id.AgentID, old.Method, id.Method))
	}
	cert, err := ca.Issue(pub, id.AgentID, s.cfg.CertTTL, req.Now)
	if err != nil {
		return fail(err)
	}
	now := req.Now.UTC().Round(0)
	agent := Agent{
		ID:           id.AgentID,
		Zone:         req.Zone,
		Method:       id.Method,
		Strength:     id.Strength,
		Claims:       maps.Clone(id.Claims),
		CertSerial:   serialHex(cert),
		CertNotAfter: cert.NotAfter,
		EnrolledAt:   now,
		LastSeen:     now,
		Status:       StatusActive,
	}
	if old.ID != "" {
		// The same agent again: what the log holds of its audit spool stays.
		agent.AuditSpool, agent.AuditSeq, agent.AuditLast = old.AuditSpool, old.AuditSeq, old.AuditLast
	}
	if err := s.agents.put(ctx, agent); err != nil {
		return fail(err)
	}
	s.log.Info("attest: agent enrolled", "zone", req.Zone, "agent", agent.ID, "method", agent.Method,
		"strength", string(agent.Strength), "serial", agent.CertSerial)
	return Enrollment{Agent: agent, Certificate: cert, ChainPEM: EncodeChainPEM(cert, ca.cert), CAPEM: ca.CertificatePEM()}, nil
}

// Begin starts a multi-step attestation with attestor a, which must
// implement Challenger (the TPM attestor will); the agent answers the
// returned challenge through Admit with Request.Challenge set to its ID.
// Attestors without a challenge round return an error wrapping
// ErrAttestation.
func (s *Service) Begin(ctx context.Context, a Attestor, zone string, evidence []byte, now time.Time) (Challenge, error) {
	c, ok := a.(Challenger)
	if !ok {
		return Challenge{}, fmt.Errorf("attest: begin in zone %q: %w: attestor %s takes no challenge", zone, ErrAttestation, a.Method())
	}
	ch, err := c.Begin(ctx, zone, evidence, now)
	if err != nil {
		return Challenge{}, fmt.Errorf("attest: begin %s in zone %q: %w", a.Method(), zone, err)
	}
	return ch, nil
}

// Authorize checks a client certificate chain presented at now: the leaf's
// SPIFFE ID names the zone, whose CA must have issued it; the agent's record
// must exist, be active, and hold this certificate's serial. It returns the
// agent's record. It never creates a CA. Errors wrap ErrCertZone,
// ErrCertExpired, ErrCertNotYetValid, ErrCertInvalid, ErrNoCA,
// ErrAgentUnknown, ErrAgentQuarantined, ErrAgentRevoked or
// ErrCertSuperseded.
func (s *Service) Authorize(ctx context.Context, chain []*x509.Certificate, now time.Time) (Agent, error) {
	a, err := s.authorize(ctx, chain, now, false)
	if err != nil {
		return Agent{}, fmt.Errorf("attest: authorize: %w", err)
	}
	if a.PrevSerial != "" {
		// The renewed certificate is in use: the one it replaced is done.
		a, err = s.agents.Update(ctx, a.Zone, a.ID, func(cur *Agent) error {
			if cur.CertSerial == a.CertSerial {
				cur.PrevSerial = ""
			}
			return nil
		})
		if err != nil {
			return Agent{}, fmt.Errorf("attest: authorize: %w", err)
		}
	}
	return a, nil
}

// AuthorizeRenewal is Authorize for the steps of a renewal (a re-attestation
// challenge): an agent past its re-attestation deadline is accepted, since
// renewing with fresh evidence is how it meets it, and so is the certificate
// the last renewal replaced while the new one is unused.
func (s *Service) AuthorizeRenewal(ctx context.Context, chain []*x509.Certificate, now time.Time) (Agent, error) {
	a, err := s.authorize(ctx, chain, now, true)
	if err != nil {
		return Agent{}, fmt.Errorf("attest: authorize renewal: %w", err)
	}
	return a, nil
}

// authorize checks chain; allowPrev also accepts the certificate the last
// renewal replaced while the new one is unused (for Renew only).
func (s *Service) authorize(ctx context.Context, chain []*x509.Certificate, now time.Time, allowPrev bool) (Agent, error) {
	if len(chain) == 0 || chain[0] == nil {
		return Agent{}, fmt.Errorf("%w: no certificate", ErrCertInvalid)
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 {
		return Agent{}, fmt.Errorf("%w: %d URI SANs, want exactly one SPIFFE ID", ErrCertInvalid, len(leaf.URIs))
	}
	name, err := ParseAgentName(leaf.URIs[0])
	if err != nil {
		return Agent{}, err
	}
	if name.TrustDomain != s.cfg.TrustDomain {
		return Agent{}, fmt.Errorf("%w: trust domain %q, want %q", ErrCertZone, name.TrustDomain, s.cfg.TrustDomain)
	}
	ca, err := s.loadCA(ctx, name.Zone)
	if err != nil {
		return Agent{}, err
	}
	if _, err := ca.Verify(chain, now); err != nil {
		return Agent{}, err
	}
	a, err := s.agents.get(ctx, name.Zone, name.ID)
	if err != nil {
		return Agent{}, err
	}
	switch {
	case a.Status == StatusRevoked:
		return Agent{}, fmt.Errorf("zone %q agent %q: %w", a.Zone, a.ID, ErrAgentRevoked)
	case a.Status == StatusQuarantined:
		return Agent{}, fmt.Errorf("zone %q agent %q: %w", a.Zone, a.ID, ErrAgentQuarantined)
	case a.CertSerial != serialHex(leaf) && !(allowPrev && a.PrevSerial != "" && a.PrevSerial == serialHex(leaf)):
		return Agent{}, fmt.Errorf("zone %q agent %q: %w: serial %s, current %s", a.Zone, a.ID, ErrCertSuperseded, serialHex(leaf), a.CertSerial)
	case !allowPrev && !a.ReattestBy.IsZero() && now.After(a.ReattestBy):
		// Asked to re-attest and did not: only a renewal (which
		// re-attests) is accepted until it does.
		return Agent{}, fmt.Errorf("zone %q agent %q: %w: re-attestation was requested and not done by %s", a.Zone, a.ID,
			ErrAttestation, a.ReattestBy.UTC().Format(time.RFC3339))
	}
	return a, nil
}

// Reattest verifies an agent's fresh evidence at renewal and returns the
// agent's claims from then on (they replace its claims). An error wrapping
// ErrReattestFailed is evidence against the agent: it is quarantined; any
// other error only refuses the renewal.
type Reattest func(ctx context.Context, a Agent) (map[string]string, error)

// RequestReattest asks agent id to re-attest by deadline: after it, the
// agent's certificate is refused for everything but a renewal, which
// re-attests (and clears the request).
func (s *Service) RequestReattest(ctx context.Context, zone, id string, deadline time.Time) (Agent, error) {
	return s.agents.Update(ctx, zone, id, func(a *Agent) error {
		if a.Method != MethodTPM {
			return fmt.Errorf("%w: agent %q was admitted with %s: it has no TPM to re-attest with", ErrAttestation, id, a.Method)
		}
		if a.ReattestBy.IsZero() || deadline.Before(a.ReattestBy) {
			a.ReattestBy = deadline.UTC().Round(0)
		}
		return nil
	})
}

// Renew issues a fresh certificate for pub to the agent holding chain,
// after Authorize accepts chain at now. The old certificate is superseded:
// Authorize refuses it from then on. An agent admitted with hardware
// evidence (MethodTPM) must re-attest: reattest checks its fresh evidence,
// and a failure quarantines it, with the reason, before the error returns.
func (s *Service) Renew(ctx context.Context, chain []*x509.Certificate, pub crypto.PublicKey, now time.Time, reattest Reattest) (Enrollment, error) {
	fail := func(err error) (Enrollment, error) {
		return Enrollment{}, fmt.Errorf("attest: renew: %w", err)
	}
	if err := checkAgentKey(pub); err != nil {
		return fail(err)
	}
	a, err := s.authorize(ctx, chain, now, true)
	if errors.Is(err, ErrCertExpired) && len(chain) > 0 && chain[0] != nil {
		// Expired while the agent was cut off: renewable within the grace,
		// judged as of the certificate's last valid second.
		grace := s.cfg.RenewGrace
		if grace == 0 {
			grace = DefaultRenewGrace
		}
		if last := chain[0].NotAfter; grace > 0 && now.Sub(last) <= grace {
			a, err = s.authorize(ctx, chain, last.Add(-time.Second), true)
		}
	}
	if err != nil {
		return fail(err)
	}
	ca, err := s.loadCA(ctx, a.Zone)
	if err != nil {
		return fail(err)
	}
	var claims map[string]string
	switch {
	case a.Method != MethodTPM:
		// Nothing to re-attest with: a join-token agent renews on its
		// certificate alone, whatever it sends.
	case reattest == nil:
		return fail(fmt.Errorf("%w: agent %q was admitted with TPM evidence and renews only with a fresh quote", ErrAttestation, a.ID))
	default:
		if claims, err = reattest(ctx, a); errors.Is(err, ErrReattestFailed) {
			err = fmt.Errorf("%w: %w", ErrAttestation, err)
			if _, qerr := s.agents.SetStatus(context.WithoutCancel(ctx), a.Zone, a.ID, StatusQuarantined, err.Error(), now); qerr != nil {
				s.log.Error("attest: quarantine after a failed re-attestation", "zone", a.Zone, "agent", a.ID, "err", qerr)
			}
			s.log.Warn("attest: re-attestation failed; agent quarantined", "zone", a.Zone, "agent", a.ID, "err", err)
			return fail(fmt.Errorf("%w; agent quarantined", err))
		}
		if err != nil { // not evidence against the agent (an expired challenge, a storage error): refused only
			return fail(fmt.Errorf("%w: re-attestation: %w", ErrAttestation, err))
		}
	}
	var cert *x509.Certificate
	presented := serialHex(chain[0])
	a, err = s.agents.Update(ctx, a.Zone, a.ID, func(cur *Agent) error {
		// Re-check under the lock: a concurrent renewal, quarantine or
		// revocation wins over this one.
		if cur.Status != StatusActive || (cur.CertSerial != presented && cur.PrevSerial != presented) {
			return fmt.Errorf("%w: agent changed during renewal (status %s)", ErrCertSuperseded, cur.Status)
		}
		if cur.CertSerial == presented {
			// The presented certificate may renew again until the new one
			// is used (the answer may not reach the agent).
			cur.PrevSerial = presented
		}
		c, err := ca.Issue(pub, cur.ID, s.cfg.CertTTL, now)
		if err != nil {
			return err
		}
		cert = c
		cur.CertSerial, cur.CertNotAfter = serialHex(c), c.NotAfter
		cur.LastSeen = now.UTC().Round(0)
		if claims != nil {
			cur.Claims = maps.Clone(claims)
			cur.ReattestBy = time.Time{}
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	s.log.Info("attest: agent certificate renewed", "zone", a.Zone, "agent", a.ID, "serial", a.CertSerial)
	return Enrollment{Agent: a, Certificate: cert, ChainPEM: EncodeChainPEM(cert, ca.cert), CAPEM: ca.CertificatePEM()}, nil
}

// randomAgentID returns "agent-" followed by 128 random bits in hex.
func randomAgentID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random agent ID: %w", err)
	}
	return "agent-" + hex.EncodeToString(b), nil
}

func serialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

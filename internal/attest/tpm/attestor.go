package tpm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/keylock"
	"github.com/edgevault/edgevault/internal/storage"
)

// NonceLen is the length of a challenge nonce and of a credential secret.
const NonceLen = 32

// AgentIDPrefix starts every agent ID the TPM attestor derives (AgentID).
const AgentIDPrefix = "tpm-"

// PolicySource looks up zones' TPM attestation policies.
type PolicySource interface {
	// AttestationPolicy returns zone's policy; ok is false when the zone
	// has none (TPM attestation disabled there). The policy need not be
	// validated: the attestor validates it.
	AttestationPolicy(ctx context.Context, zone string) (p Policy, ok bool, err error)
}

// PolicyFunc adapts a function to PolicySource.
type PolicyFunc func(ctx context.Context, zone string) (Policy, bool, error)

// AttestationPolicy calls f.
func (f PolicyFunc) AttestationPolicy(ctx context.Context, zone string) (Policy, bool, error) {
	return f(ctx, zone)
}

// Config configures an Attestor.
type Config struct {
	// Policies supplies each zone's policy. Required.
	Policies PolicySource
	// Stores returns the storage of a zone ("" is the root zone): pass the
	// zone's encrypted view. Pending challenges are kept there. Required.
	Stores func(zone string) (storage.Backend, error)
}

// Attestor is the TPM 2.0 attestor: Begin issues a credential challenge,
// Attest checks the answer (attest.Attestor and attest.Challenger).
// ReattestChallenge and VerifyReattest do the same for an enrolled agent
// with a quote alone. Safe for concurrent use.
type Attestor struct {
	cfg   Config
	locks *keylock.Locks
	// rand supplies nonces and credential secrets (crypto/rand; tests may
	// replace it to pre-generate evidence). Challenge IDs always come from
	// crypto/rand.
	rand io.Reader
}

var (
	_ attest.Attestor   = (*Attestor)(nil)
	_ attest.Challenger = (*Attestor)(nil)
)

// New returns an Attestor. Both Config fields are required.
func New(cfg Config) (*Attestor, error) {
	switch {
	case cfg.Policies == nil:
		return nil, fmt.Errorf("tpm attestor: %w: Config.Policies is nil", attest.ErrInvalidConfig)
	case cfg.Stores == nil:
		return nil, fmt.Errorf("tpm attestor: %w: Config.Stores is nil", attest.ErrInvalidConfig)
	}
	return &Attestor{cfg: cfg, locks: keylock.New(), rand: rand.Reader}, nil
}

// Method returns attest.MethodTPM.
func (*Attestor) Method() string { return attest.MethodTPM }

// AgentID derives an agent's ID from its EK hash: "tpm-" and the first 16
// hex digits, so a machine keeps its ID across re-enrollments.
func AgentID(ekHash string) string {
	if len(ekHash) > 16 {
		ekHash = ekHash[:16]
	}
	return AgentIDPrefix + ekHash
}

// Begin starts an enrollment in zone. evidence is a BeginEvidence in JSON.
// The EK must be allowed by the zone's policy (CheckEK) and the AK
// acceptable; Begin then encrypts a random secret to the EK for the AK
// (MakeCredential), stores the pending challenge, and returns its ID and
// a ChallengePayload in JSON. The challenge expires after the policy's
// MaxQuoteAge. Errors wrap attest.ErrAttestation and ErrNoPolicy,
// ErrInvalidPolicy, ErrEvidence, ErrEKNotAllowed or ErrAKAttributes.
func (a *Attestor) Begin(ctx context.Context, zone string, evidence []byte, now time.Time) (attest.Challenge, error) {
	fail := func(err error) (attest.Challenge, error) {
		return attest.Challenge{}, fmt.Errorf("%w: tpm begin in zone %q: %w", attest.ErrAttestation, zone, err)
	}
	ev, err := ParseBeginEvidence(evidence)
	if err != nil {
		return fail(err)
	}
	p, err := a.policy(ctx, zone)
	if err != nil {
		return fail(err)
	}
	ekHash, err := CheckEK(p, ev.EKPublic, ev.EKCertificate, now)
	if err != nil {
		return fail(err)
	}
	secret, nonce := make([]byte, NonceLen), make([]byte, NonceLen)
	if _, err := io.ReadFull(a.rand, secret); err != nil {
		return fail(fmt.Errorf("random secret: %w", err))
	}
	if _, err := io.ReadFull(a.rand, nonce); err != nil {
		return fail(fmt.Errorf("random nonce: %w", err))
	}
	blob, encSecret, err := MakeCredential(ev.EKPublic, ev.AKPublic, secret)
	if err != nil {
		return fail(err)
	}
	secretHash := sha256.Sum256(secret)
	rec := challengeRecord{
		Kind:       kindEnroll,
		Zone:       zone,
		AgentID:    AgentID(ekHash),
		EKHash:     ekHash,
		EKPublic:   ev.EKPublic,
		EKCert:     ev.EKCertificate,
		AKPublic:   ev.AKPublic,
		SecretHash: secretHash[:],
		Nonce:      nonce,
	}
	ch, err := a.store(ctx, zone, rec, p, now, ChallengePayload{CredentialBlob: blob, EncryptedSecret: encSecret})
	if err != nil {
		return fail(err)
	}
	return ch, nil
}

// Attest answers an enrollment challenge: req.Challenge is the ID Begin
// returned and req.Evidence an AttestEvidence in JSON. The challenge is
// deleted before anything is checked (single use). The secret must be the
// one Begin encrypted (ErrActivation) and the quote must pass VerifyQuote
// with Qualifying(nonce, PublicKeyDER) under the zone's current policy.
//
// The identity's AgentID derives from the EK (AgentID); its claims are
// "ek_hash", "ak_public" (base64 TPMT_PUBLIC: the AK that re-attestations
// must use), "pcr_digest" (hex), "pcr_set" (index of the allowed set
// matched, when the policy has sets), "quote_time" (RFC 3339, req.Now) and
// "tls_key_sha256" (hex SHA-256 of PublicKeyDER); with an event log,
// "event_log_events" (its number of events) and "secure_boot" ("enabled"
// or "disabled", when the log measures the SecureBoot variable into a
// quoted PCR). The caller must check
// that the key it certifies hashes to tls_key_sha256: that is what binds
// the certificate to this attestation.
//
// An event log, when the evidence has one, must replay to the quoted
// values of the PCRs it covers (CheckEventLog).
//
// Errors wrap attest.ErrAttestation and ErrNonce, ErrActivation,
// ErrEvidence, ErrNoPolicy, ErrQuoteSignature, ErrPCRSelection,
// ErrPCRValues or ErrEventLog.
func (a *Attestor) Attest(ctx context.Context, req attest.Request) (attest.Identity, error) {
	id, err := a.verify(ctx, kindEnroll, req.Zone, req.Challenge, req.Evidence, req.Now)
	if err != nil {
		return attest.Identity{}, fmt.Errorf("%w: tpm attest in zone %q: %w", attest.ErrAttestation, req.Zone, err)
	}
	return id, nil
}

// ReattestChallenge starts a re-attestation of an enrolled agent: the
// agent must quote a fresh nonce with the AK it enrolled with (akPublic,
// the "ak_public" claim decoded), no credential step. It returns a
// ChallengePayload in JSON with only the nonce and PCR selection. Errors
// wrap attest.ErrAttestation and ErrNoPolicy, ErrEvidence or
// ErrAKAttributes.
func (a *Attestor) ReattestChallenge(ctx context.Context, zone, agentID string, akPublic, ekPublic, ekCert []byte, now time.Time) (attest.Challenge, error) {
	fail := func(err error) (attest.Challenge, error) {
		return attest.Challenge{}, fmt.Errorf("%w: tpm re-attestation challenge for agent %q in zone %q: %w", attest.ErrAttestation, agentID, zone, err)
	}
	if err := attest.ValidateAgentID(agentID); err != nil {
		return fail(err)
	}
	ak, err := decodePublic(akPublic, "ak_public")
	if err != nil {
		return fail(err)
	}
	if _, err := akKey(ak, "ak_public"); err != nil {
		return fail(err)
	}
	p, err := a.policy(ctx, zone)
	if err != nil {
		return fail(err)
	}
	nonce := make([]byte, NonceLen)
	if _, err := io.ReadFull(a.rand, nonce); err != nil {
		return fail(fmt.Errorf("random nonce: %w", err))
	}
	rec := challengeRecord{Kind: kindReattest, Zone: zone, AgentID: agentID, AKPublic: akPublic, Nonce: nonce, EKPublic: ekPublic, EKCert: ekCert}
	if len(ekPublic) > 0 {
		if rec.EKHash, err = EKHash(ekPublic); err != nil {
			return fail(err)
		}
	}
	ch, err := a.store(ctx, zone, rec, p, now, ChallengePayload{})
	if err != nil {
		return fail(err)
	}
	return ch, nil
}

// VerifyReattest checks the answer to a re-attestation challenge:
// evidence is an AttestEvidence in JSON without a secret. Like Attest, it
// spends the challenge first, then verifies the quote against the stored
// AK and the zone's current policy. The identity names the agent the
// challenge was made for; its claims are "ak_public", "pcr_digest",
// "pcr_set", "quote_time", "tls_key_sha256" and the event log's (as in
// Attest). Errors wrap
// attest.ErrAttestation and the sentinels Attest returns.
func (a *Attestor) VerifyReattest(ctx context.Context, zone, challengeID string, evidence []byte, now time.Time) (attest.Identity, error) {
	id, err := a.verify(ctx, kindReattest, zone, challengeID, evidence, now)
	if err != nil {
		return attest.Identity{}, fmt.Errorf("%w: tpm re-attestation in zone %q: %w", attest.ErrAttestation, zone, err)
	}
	return id, nil
}

// verify spends challenge id of kind in zone and checks evidence.
func (a *Attestor) verify(ctx context.Context, kind, zone, id string, evidence []byte, now time.Time) (attest.Identity, error) {
	ev, q, err := ParseAttestEvidence(evidence)
	if err != nil {
		return attest.Identity{}, err
	}
	switch {
	case kind == kindEnroll && len(ev.Secret) == 0:
		return attest.Identity{}, fmt.Errorf("%w: secret is missing", ErrEvidence)
	case kind == kindReattest && len(ev.Secret) != 0:
		return attest.Identity{}, fmt.Errorf("%w: secret must be empty in a re-attestation", ErrEvidence)
	}
	p, err := a.policy(ctx, zone)
	if err != nil {
		return attest.Identity{}, err
	}
	rec, err := a.take(ctx, zone, id)
	if err != nil {
		return attest.Identity{}, err
	}
	switch {
	case rec.Kind != kind:
		return attest.Identity{}, fmt.Errorf("%w: challenge %s is a %s challenge, not %s", ErrNonce, id, rec.Kind, kind)
	case rec.Zone != zone:
		return attest.Identity{}, fmt.Errorf("%w: challenge %s belongs to zone %q", ErrNonce, id, rec.Zone)
	case !now.Before(rec.ExpiresAt):
		return attest.Identity{}, fmt.Errorf("%w: challenge %s expired at %s", ErrNonce, id, rec.ExpiresAt.Format(time.RFC3339))
	}
	// The EK must still be allowed: a machine taken out of the policy
	// can no longer enroll or renew.
	if len(rec.EKPublic) > 0 {
		if _, err := CheckEK(p, rec.EKPublic, rec.EKCert, now); err != nil {
			return attest.Identity{}, err
		}
	}
	if kind == kindEnroll {
		got := sha256.Sum256(ev.Secret)
		if subtle.ConstantTimeCompare(got[:], rec.SecretHash) != 1 {
			return attest.Identity{}, fmt.Errorf("%w: secret does not match challenge %s", ErrActivation, id)
		}
	}
	res, err := VerifyQuote(p, rec.AKPublic, q, Qualifying(rec.Nonce, ev.PublicKeyDER))
	if err != nil {
		return attest.Identity{}, err
	}
	// The event log is optional; when sent, it must explain the quoted
	// values it covers (q.PCRs are the values VerifyQuote just checked).
	var logRes *EventLogResult
	if len(ev.EventLog) > 0 {
		r, err := CheckEventLog(ev.EventLog, q.PCRs)
		if err != nil {
			return attest.Identity{}, err
		}
		logRes = &r
	}
	tlsKey := sha256.Sum256(ev.PublicKeyDER)
	claims := map[string]string{
		"ak_public":      base64.StdEncoding.EncodeToString(rec.AKPublic),
		"pcr_digest":     res.PCRDigest,
		"quote_time":     now.UTC().Format(time.RFC3339),
		"tls_key_sha256": hex.EncodeToString(tlsKey[:]),
	}
	if rec.EKHash != "" {
		claims["ek_hash"] = rec.EKHash
	}
	if len(rec.EKPublic) > 0 {
		claims["ek_public"] = base64.StdEncoding.EncodeToString(rec.EKPublic)
	}
	if len(rec.EKCert) > 0 {
		claims["ek_certificate"] = base64.StdEncoding.EncodeToString(rec.EKCert)
	}
	if res.AllowedSet >= 0 {
		claims["pcr_set"] = fmt.Sprint(res.AllowedSet)
	}
	if logRes != nil {
		claims["event_log_events"] = fmt.Sprint(logRes.Events)
		if logRes.SecureBoot != "" {
			claims["secure_boot"] = logRes.SecureBoot
		}
	}
	return attest.Identity{
		AgentID:  rec.AgentID,
		Zone:     zone,
		Method:   attest.MethodTPM,
		Strength: attest.StrengthHardware,
		Claims:   claims,
	}, nil
}

// policy loads and validates zone's policy (the EK CA certificates are
// parsed, and so checked, only by CheckEK, when an EK needs them).
func (a *Attestor) policy(ctx context.Context, zone string) (Policy, error) {
	p, ok, err := a.cfg.Policies.AttestationPolicy(ctx, zone)
	switch {
	case err != nil:
		return Policy{}, fmt.Errorf("load policy: %w", err)
	case !ok:
		return Policy{}, ErrNoPolicy
	}
	if err := p.validate(false); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Challenge kinds.
const (
	kindEnroll   = "enroll"
	kindReattest = "reattest"
)

// challengePrefix is where pending challenges live in a zone's store.
const challengePrefix = "attest/tpm/challenges/"

// challengeIDLen is the length of a challenge ID: 16 random bytes in hex.
const challengeIDLen = 32

// challengeRecord is a pending challenge as stored.
type challengeRecord struct {
	Kind       string    `json:"kind"`
	Zone       string    `json:"zone"`
	AgentID    string    `json:"agent_id"`
	EKHash     string    `json:"ek_hash,omitempty"`
	EKPublic   []byte    `json:"ek_public,omitempty"`
	EKCert     []byte    `json:"ek_certificate,omitempty"`
	AKPublic   []byte    `json:"ak_public"`
	SecretHash []byte    `json:"secret_hash,omitempty"`
	Nonce      []byte    `json:"nonce"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// parseRecord decodes and checks a stored challenge record.
func parseRecord(b []byte) (challengeRecord, error) {
	var r challengeRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return challengeRecord{}, err
	}
	switch {
	case r.Kind != kindEnroll && r.Kind != kindReattest:
		return challengeRecord{}, fmt.Errorf("kind %q", truncate(r.Kind))
	case r.Kind == kindEnroll && len(r.SecretHash) != sha256.Size:
		return challengeRecord{}, fmt.Errorf("secret_hash is %d bytes", len(r.SecretHash))
	case len(r.Nonce) != NonceLen:
		return challengeRecord{}, fmt.Errorf("nonce is %d bytes", len(r.Nonce))
	case len(r.AKPublic) == 0:
		return challengeRecord{}, errors.New("ak_public is empty")
	case r.AgentID == "" || r.ExpiresAt.IsZero():
		return challengeRecord{}, errors.New("agent_id or expires_at missing")
	}
	return r, nil
}

// store writes rec as a new challenge expiring after p's quote age and
// returns it with payload (nonce and PCRs filled in).
func (a *Attestor) store(ctx context.Context, zone string, rec challengeRecord, p Policy, now time.Time, payload ChallengePayload) (attest.Challenge, error) {
	raw := make([]byte, challengeIDLen/2)
	if _, err := rand.Read(raw); err != nil {
		return attest.Challenge{}, fmt.Errorf("random challenge ID: %w", err)
	}
	id := hex.EncodeToString(raw)
	rec.CreatedAt = now.UTC().Round(0)
	rec.ExpiresAt = rec.CreatedAt.Add(p.QuoteAge())
	b, err := json.Marshal(rec)
	if err != nil {
		return attest.Challenge{}, fmt.Errorf("encode challenge: %w", err)
	}
	st, err := a.cfg.Stores(zone)
	if err != nil {
		return attest.Challenge{}, fmt.Errorf("store: %w", err)
	}
	if err := st.Put(ctx, challengeKey(id), b); err != nil {
		return attest.Challenge{}, fmt.Errorf("store challenge: %w", err)
	}
	payload.Nonce, payload.PCRs = rec.Nonce, p.PCRs
	pb, err := json.Marshal(payload)
	if err != nil {
		return attest.Challenge{}, fmt.Errorf("encode challenge payload: %w", err)
	}
	return attest.Challenge{ID: id, Payload: pb, ExpiresAt: rec.ExpiresAt}, nil
}

// take loads and deletes challenge id of zone, under its lock stripe, so
// that of concurrent answers to one challenge exactly one gets it.
func (a *Attestor) take(ctx context.Context, zone, id string) (challengeRecord, error) {
	if !isLowerHex(id, challengeIDLen/2) {
		return challengeRecord{}, fmt.Errorf("%w: challenge ID %q is malformed", ErrNonce, truncate(id))
	}
	st, err := a.cfg.Stores(zone)
	if err != nil {
		return challengeRecord{}, fmt.Errorf("store: %w", err)
	}
	key := challengeKey(id)
	defer a.locks.Lock(zone, key)()
	b, err := st.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return challengeRecord{}, fmt.Errorf("%w: challenge %s is unknown or already used", ErrNonce, id)
	}
	if err != nil {
		return challengeRecord{}, fmt.Errorf("load challenge %s: %w", id, err)
	}
	if err := st.Delete(ctx, key); err != nil {
		return challengeRecord{}, fmt.Errorf("spend challenge %s: %w", id, err)
	}
	rec, err := parseRecord(b)
	if err != nil {
		return challengeRecord{}, fmt.Errorf("%w: challenge %s: corrupt record: %v", attest.ErrCorrupt, id, err)
	}
	return rec, nil
}

// Tidy deletes zone's challenges that expired before now (never answered)
// and returns how many it deleted.
func (a *Attestor) Tidy(ctx context.Context, zone string, now time.Time) (int, error) {
	st, err := a.cfg.Stores(zone)
	if err != nil {
		return 0, fmt.Errorf("tpm tidy in zone %q: store: %w", zone, err)
	}
	names, err := st.List(ctx, challengePrefix)
	if err != nil {
		return 0, fmt.Errorf("tpm tidy in zone %q: list: %w", zone, err)
	}
	n := 0
	for _, name := range names {
		key := challengePrefix + name
		unlock := a.locks.Lock(zone, key)
		b, err := st.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			unlock()
			continue
		}
		if err != nil {
			unlock()
			return n, fmt.Errorf("tpm tidy in zone %q: load %s: %w", zone, name, err)
		}
		rec, perr := parseRecord(b)
		if perr == nil && now.Before(rec.ExpiresAt) {
			unlock()
			continue
		}
		// Expired, or unreadable: either way it can never be answered.
		err = st.Delete(ctx, key)
		unlock()
		if err != nil {
			return n, fmt.Errorf("tpm tidy in zone %q: delete %s: %w", zone, name, err)
		}
		n++
	}
	return n, nil
}

// challengeKey is the storage key of challenge id: its hash, so the store
// never holds a usable challenge ID.
func challengeKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return challengePrefix + hex.EncodeToString(sum[:])
}

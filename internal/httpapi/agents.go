package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/attest/jointoken"
	"github.com/edgevault/edgevault/internal/attest/tpm"
	"github.com/edgevault/edgevault/internal/audit"
	"github.com/edgevault/edgevault/internal/audit/leaf"
	"github.com/edgevault/edgevault/internal/logical"
)

// DefaultTrustDomain is the SPIFFE trust domain of agent IDs when the
// configuration names none.
const DefaultTrustDomain = "edgevault.local"

// Agent enrollment and the agent registry (the edge agent issue):
//
//	POST   auth/attest/join-token   {ttl, agent_id}     a single-use join token of the request's zone (sudo)
//	POST   auth/attest/enroll       {join_token, public_key | csr}   no token: the join token is the credential
//	POST   auth/attest/renew        {public_key | csr}  with the agent's client certificate (mTLS)
//	LIST   sys/agents, GET/DELETE sys/agents/:id, POST/DELETE sys/agents/:id/quarantine, POST sys/agents/:id/reattest
//	POST   sys/agents/audit         {spool, signature, entries: [{line, seed}]}   mTLS: the agent's entries, signed by batch
//	POST   sys/agents/pki-sub-ca    {mount, role, public_key}   mTLS: an offline sub-CA for the agent (agents_subca.go)
//
// Every one of them is audited like any request, refusals included.

// unauthenticatedAuth are the auth paths served without a Vault token: their
// credential is in the request (a join token, a client certificate).
var unauthenticatedAuth = map[string]bool{
	"auth/attest/enroll": true, "auth/attest/renew": true, "auth/attest/tpm/challenge": true, "auth/attest/renew/challenge": true,
	"sys/agents/audit": true, "sys/agents/pki-sub-ca": true,
}

// serveAttest answers auth/attest/*.
func serveAttest(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	u := s.state.Load()
	if u == nil {
		s.writeError(w, r, logical.ErrSealed)
		return
	}
	if req.Operation != logical.UpdateOperation && req.Operation != logical.CreateOperation {
		s.writeError(w, r, fmt.Errorf("%w: auth/attest/%s takes POST", logical.ErrUnsupportedOperation, req.Path))
		return
	}
	now := time.Now()
	switch req.Path {
	case "join-token":
		var body struct {
			TTL     string            `json:"ttl"`
			AgentID string            `json:"agent_id"`
			Labels  map[string]string `json:"labels"`
		}
		if err := remarshal(req.Data, &body); err != nil {
			s.writeError(w, r, err)
			return
		}
		var ttl time.Duration
		if body.TTL != "" {
			d, err := time.ParseDuration(body.TTL)
			if err != nil || d <= 0 {
				s.writeError(w, r, logical.InvalidRequest("ttl %q: expected a positive duration such as \"15m\"", body.TTL))
				return
			}
			ttl = d
		}
		tok, info, err := u.attest.CreateJoinToken(r.Context(), c.zone, jointoken.Options{TTL: ttl, AgentID: body.AgentID, Labels: body.Labels}, now)
		if err != nil {
			s.writeError(w, r, attestError(err))
			return
		}
		writeResponse(w, &logical.Response{Data: map[string]any{
			"join_token": tok, "id": info.ID, "zone": zoneLabel(c.zone), "expires_at": info.ExpiresAt.UTC().Format(time.RFC3339),
			"agent_id": info.AgentID, "attestation": "join token (weak: no hardware evidence)",
		}}, "token")
	case "tpm/challenge", "renew/challenge":
		var (
			resp *logical.Response
			err  error
		)
		if req.Path == "tpm/challenge" {
			resp, err = s.tpmBegin(r.Context(), u, c, req, now)
		} else {
			resp, err = s.tpmReattestChallenge(r.Context(), u, c, r, now)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeResponse(w, resp, "token")
	case "enroll", "renew":
		var body struct {
			Method      string    `json:"method"` // "join-token" (default) or "tpm"
			JoinToken   string    `json:"join_token"`
			PublicKey   string    `json:"public_key"` // base64 PKIX DER
			CSR         string    `json:"csr"`        // PEM
			ChallengeID string    `json:"challenge_id"`
			Secret      []byte    `json:"secret"` // base64: what TPM2_ActivateCredential released
			Quote       *tpmQuote `json:"quote"`
			EventLog    []byte    `json:"event_log"` // base64: the TPM's TCG2 event log, optional
		}
		if err := remarshal(req.Data, &body); err != nil {
			s.writeError(w, r, err)
			return
		}
		pub, err := agentKey(body.PublicKey, body.CSR)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var e attest.Enrollment
		switch {
		case req.Path == "enroll" && body.Method == attest.MethodTPM:
			if body.ChallengeID == "" {
				s.writeError(w, r, logical.InvalidRequest("challenge_id is required: start with auth/attest/tpm/challenge"))
				return
			}
			var evidence []byte
			if evidence, err = tpmEvidence(body.Secret, body.Quote, body.EventLog, pub); err != nil {
				s.writeError(w, r, err)
				return
			}
			e, err = u.attest.Admit(r.Context(), u.tpm, attest.Request{Zone: c.zone, Evidence: evidence, Challenge: body.ChallengeID, Now: now}, pub)
		case req.Path == "enroll" && (body.Method == "" || body.Method == attest.MethodJoinToken):
			if body.JoinToken == "" {
				s.writeError(w, r, logical.InvalidRequest("join_token is required"))
				return
			}
			e, err = u.attest.Enroll(r.Context(), c.zone, body.JoinToken, pub, now)
		case req.Path == "enroll":
			s.writeError(w, r, logical.InvalidRequest("method %q: expected %q or %q", body.Method, attest.MethodJoinToken, attest.MethodTPM))
			return
		default:
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
				s.writeError(w, r, logical.InvalidRequest("renew needs the agent's current certificate as the TLS client certificate"))
				return
			}
			var reattest attest.Reattest
			if body.ChallengeID != "" {
				evidence, err := tpmEvidence(nil, body.Quote, body.EventLog, pub)
				if err != nil {
					s.writeError(w, r, err)
					return
				}
				reattest = s.tpmReattest(u, body.ChallengeID, evidence, now)
			}
			e, err = u.attest.Renew(r.Context(), r.TLS.PeerCertificates, pub, now, reattest)
			if errors.Is(err, attest.ErrAttestation) && reattest != nil {
				u.sync.Disconnect(c.zone, agentIDOf(r.TLS.PeerCertificates, u.attest.TrustDomain()))
			}
		}
		if err != nil {
			s.writeError(w, r, attestError(err))
			return
		}
		writeResponse(w, &logical.Response{Data: map[string]any{
			"agent_id": e.Agent.ID, "spiffe_id": e.Agent.Name(u.attest.TrustDomain()).String(), "zone": zoneLabel(e.Agent.Zone),
			"certificate_chain": string(e.ChainPEM), "ca_certificate": string(e.CAPEM),
			"expires_at": e.Certificate.NotAfter.UTC().Format(time.RFC3339), "attestation": string(e.Agent.Strength),
		}}, "token")
	default:
		s.writeError(w, r, fmt.Errorf("%w: auth/attest/%s", logical.ErrUnsupportedPath, req.Path))
	}
}

// agentKey reads the agent's public key from base64 PKIX DER or a PEM CSR.
func agentKey(pkix, csrPEM string) (any, error) {
	switch {
	case pkix != "" && csrPEM != "":
		return nil, logical.InvalidRequest("give public_key or csr, not both")
	case pkix != "":
		der, err := base64.StdEncoding.DecodeString(pkix)
		if err != nil {
			return nil, logical.InvalidRequest("public_key: not base64: %v", err)
		}
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return nil, logical.InvalidRequest("public_key: not a PKIX public key: %v", err)
		}
		return pub, nil
	case csrPEM != "":
		blk, _ := pem.Decode([]byte(csrPEM))
		if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
			return nil, logical.InvalidRequest("csr: expected a PEM CERTIFICATE REQUEST")
		}
		pub, err := attest.ParseCSR(blk.Bytes)
		if err != nil {
			return nil, logical.InvalidRequest("csr: %v", err)
		}
		return pub, nil
	}
	return nil, logical.InvalidRequest("public_key (base64 PKIX DER of an ECDSA P-256 key) or csr is required")
}

// attestError maps the attest package's refusals onto API errors that say
// exactly what was refused (400), keeping internal failures internal.
func attestError(err error) error {
	for _, e := range []error{
		jointoken.ErrTokenUnknown, jointoken.ErrTokenExpired, jointoken.ErrTokenUsed, jointoken.ErrTokenZone,
		jointoken.ErrTokenNotYetValid, jointoken.ErrInvalidOptions, attest.ErrCertZone, attest.ErrCertExpired,
		attest.ErrCertNotYetValid, attest.ErrCertInvalid, attest.ErrNoCA, attest.ErrAgentUnknown,
		attest.ErrAgentQuarantined, attest.ErrAgentRevoked, attest.ErrCertSuperseded, attest.ErrInvalidAgentID,
		attest.ErrInvalidKey, attest.ErrAttestation, tpm.ErrNoPolicy, tpm.ErrInvalidPolicy, tpm.ErrEvidence,
		tpm.ErrEKNotAllowed, tpm.ErrAKAttributes, tpm.ErrActivation, tpm.ErrNonce, tpm.ErrQuoteSignature,
		tpm.ErrPCRSelection, tpm.ErrPCRValues, tpm.ErrEventLog,
	} {
		if errors.Is(err, e) {
			return logical.InvalidRequest("%s", strings.TrimPrefix(err.Error(), "attest: "))
		}
	}
	return err
}

// zoneLabel names a zone for people: "" is the root zone.
func zoneLabel(z string) string {
	if z == "" {
		return "root"
	}
	return z
}

// serveAgents answers sys/agents and sys/agents/:id[/quarantine].
func serveAgents(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	u := s.state.Load()
	if u == nil {
		s.writeError(w, r, logical.ErrSealed)
		return
	}
	reg := u.attest.Agents()
	rest := strings.Trim(strings.TrimPrefix(req.Path, "agents"), "/")
	id, sub, _ := strings.Cut(rest, "/")
	ctx := r.Context()
	switch {
	case id == "" && (req.Operation == logical.ListOperation || req.Operation == logical.ReadOperation):
		agents, err := reg.List(ctx, c.zone)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		keys := make([]string, 0, len(agents))
		info := map[string]any{}
		for _, a := range agents {
			keys = append(keys, a.ID)
			info[a.ID] = agentOutput(a, u.attest.TrustDomain())
		}
		writeResponse(w, &logical.Response{Data: map[string]any{"keys": keys, "key_info": info}}, "system")
	case id != "" && sub == "" && req.Operation == logical.ReadOperation:
		a, err := reg.Get(ctx, c.zone, id)
		if err != nil {
			s.writeError(w, r, agentLookupError(err, id))
			return
		}
		writeResponse(w, &logical.Response{Data: agentOutput(a, u.attest.TrustDomain())}, "system")
	case id != "" && sub == "" && req.Operation == logical.DeleteOperation:
		if err := reg.Delete(ctx, c.zone, id); err != nil {
			s.writeError(w, r, agentLookupError(err, id))
			return
		}
		u.sync.Disconnect(c.zone, id) // its certificate is refused from now on
		w.WriteHeader(http.StatusNoContent)
	case id != "" && sub == "reattest" && (req.Operation == logical.UpdateOperation || req.Operation == logical.CreateOperation):
		a, err := s.requestReattest(ctx, u, c.zone, id, time.Now())
		if err != nil {
			s.writeError(w, r, agentLookupError(err, id))
			return
		}
		writeResponse(w, &logical.Response{Data: agentOutput(a, u.attest.TrustDomain())}, "system")
	case id != "" && sub == "quarantine" && (req.Operation == logical.UpdateOperation || req.Operation == logical.CreateOperation || req.Operation == logical.DeleteOperation):
		status, reason := attest.StatusQuarantined, ""
		if v, ok := req.Data["reason"].(string); ok {
			reason = v
		}
		if req.Operation == logical.DeleteOperation {
			status, reason = attest.StatusActive, "released by an operator"
		}
		a, err := reg.SetStatus(ctx, c.zone, id, status, reason, time.Now())
		if err != nil {
			s.writeError(w, r, agentLookupError(err, id))
			return
		}
		if status != attest.StatusActive {
			u.sync.Disconnect(c.zone, id) // nothing more reaches it
		}
		writeResponse(w, &logical.Response{Data: agentOutput(a, u.attest.TrustDomain())}, "system")
	default:
		s.writeError(w, r, fmt.Errorf("%w: sys/%s takes LIST, GET, DELETE, or POST/DELETE on :id/quarantine", logical.ErrUnsupportedOperation, req.Path))
	}
}

func agentLookupError(err error, id string) error {
	if errors.Is(err, attest.ErrAgentUnknown) {
		return fmt.Errorf("%w: agent %q", logical.ErrNotFound, id)
	}
	return attestError(err)
}

// agentOutput is what sys/agents shows of an agent. The attestation
// strength is spelled out: a join token is weaker than hardware evidence.
func agentOutput(a attest.Agent, td string) map[string]any {
	out := map[string]any{
		"id": a.ID, "zone": zoneLabel(a.Zone), "spiffe_id": a.Name(td).String(), "status": string(a.Status),
		"attestation_method": a.Method, "attestation_strength": string(a.Strength),
		"cert_serial": a.CertSerial, "cert_expiry": a.CertNotAfter.UTC().Format(time.RFC3339),
		"enrolled_at": a.EnrolledAt.UTC().Format(time.RFC3339), "cache_watermark": a.AckedSeq, "status_reason": a.StatusReason,
		"last_seen": "",
	}
	if a.Method == attest.MethodJoinToken {
		out["attestation_strength"] = string(a.Strength) + " (join token: no hardware evidence)"
	}
	if a.Method == attest.MethodTPM {
		out["ek_hash"], out["last_quote"], out["pcr_digest"] = a.Claims["ek_hash"], a.Claims["quote_time"], a.Claims["pcr_digest"]
		// From the event log of the last quote, when the agent sent one.
		for _, k := range []string{"event_log_events", "secure_boot"} {
			if v, ok := a.Claims[k]; ok {
				out[k] = v
			}
		}
		if !a.ReattestBy.IsZero() {
			out["reattest_by"] = a.ReattestBy.UTC().Format(time.RFC3339)
		}
	}
	if !a.LastSeen.IsZero() {
		out["last_seen"] = a.LastSeen.UTC().Format(time.RFC3339)
	}
	return out
}

// agentPost checks a POST an enrolled agent makes over mTLS (sys/agents/
// audit, sys/agents/pki-sub-ca): the server unsealed, the operation, and
// the agent the server authenticates on this connection — its certificate,
// never what the body claims — active and of this zone. It answers the
// refusal itself and reports whether to go on.
func (s *Server) agentPost(c *core, w http.ResponseWriter, r *http.Request, req *request) (*unsealed, attest.Agent, bool) {
	u := s.state.Load()
	if u == nil {
		s.writeError(w, r, logical.ErrSealed)
		return nil, attest.Agent{}, false
	}
	path := "sys/" + req.Path
	if req.Operation != logical.UpdateOperation && req.Operation != logical.CreateOperation {
		s.writeError(w, r, fmt.Errorf("%w: %s takes POST", logical.ErrUnsupportedOperation, path))
		return nil, attest.Agent{}, false
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		s.writeError(w, r, logical.InvalidRequest("%s needs the agent's certificate as the TLS client certificate", path))
		return nil, attest.Agent{}, false
	}
	a, err := u.attest.Authorize(r.Context(), r.TLS.PeerCertificates, time.Now())
	if err != nil {
		s.writeError(w, r, attestError(err))
		return nil, attest.Agent{}, false
	}
	if a.Zone != c.zone {
		s.writeError(w, r, logical.InvalidRequest("agent %q belongs to zone %q, not %q", a.ID, zoneLabel(a.Zone), zoneLabel(c.zone)))
		return nil, attest.Agent{}, false
	}
	return u, a, true
}

// agentAuditBatch is the body of POST sys/agents/audit: entries an agent
// recorded for the reads it served locally (online or degraded), forwarded
// from its spool in order and signed together (leaf.SignBatch).
type agentAuditBatch struct {
	Spool     string `json:"spool"`     // the agent's spool ID
	Signature []byte `json:"signature"` // base64, over leaf.BatchMessage of the entries
	Entries   []struct {
		Line string `json:"line"` // one compact JSON object with the spool's "seq"
		Seed []byte `json:"seed"` // base64, 32 bytes
	} `json:"entries"`
}

// maxAgentAuditBatch bounds one forward.
const maxAgentAuditBatch = 1000

// serveAgentAudit answers POST sys/agents/audit over mTLS: the agent's
// signed batch is checked and its entries appended to every audit device in
// one write, with the identity and key the server authenticated on this
// connection (its zone certificate) — not what the agent claims. Entries
// carry consecutive spool sequence numbers; those the log already holds (a
// batch sent again because its answer was lost) are not logged twice. The
// answer's "audit_seq" is the highest sequence number the log holds.
func serveAgentAudit(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	u, a, ok := s.agentPost(c, w, r, req)
	if !ok {
		return
	}
	var body agentAuditBatch
	if err := remarshal(req.Data, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.Spool == "" || len(body.Spool) > 64 {
		s.writeError(w, r, logical.InvalidRequest("spool: want the agent's spool ID (1 to 64 characters)"))
		return
	}
	if len(body.Entries) == 0 || len(body.Entries) > maxAgentAuditBatch {
		s.writeError(w, r, logical.InvalidRequest("entries: want 1 to %d entries, got %d", maxAgentAuditBatch, len(body.Entries)))
		return
	}
	batch := audit.SignedBatch{Entries: make([]leaf.SignedLine, len(body.Entries)), Signature: body.Signature}
	var first uint64
	for i, e := range body.Entries {
		seq, msg := agentLineProblem([]byte(e.Line), a.Zone)
		if msg == "" && i > 0 && seq != first+uint64(i) {
			msg = fmt.Sprintf("seq %d does not follow seq %d", seq, first+uint64(i)-1)
		}
		if msg != "" {
			s.writeError(w, r, logical.InvalidRequest("entries[%d]: %s", i, msg))
			return
		}
		if i == 0 {
			first = seq
		}
		batch.Entries[i] = leaf.SignedLine{Line: []byte(e.Line), Seed: e.Seed}
	}
	var err error
	if batch.PublicKey, err = x509.MarshalPKIXPublicKey(r.TLS.PeerCertificates[0].PublicKey); err != nil {
		s.writeError(w, r, err)
		return
	}
	batch.Signer = a.Name(u.attest.TrustDomain()).String()
	last := first + uint64(len(body.Entries)) - 1
	var indexes []uint64
	// The log write and the record of what it holds go together: not cut
	// short by the agent hanging up between them.
	ctx := context.WithoutCancel(r.Context())
	_, err = u.attest.Agents().Update(ctx, a.Zone, a.ID, func(ag *attest.Agent) error {
		held := ag.AuditSeq
		if ag.AuditSpool != body.Spool {
			held = 0
		}
		if held >= first {
			at := min(held, last) - first
			// An entry the log holds comes back identical; a different
			// one means the agent's spool went back in time (a restored
			// snapshot): its numbers are taken, it must start a new spool.
			if held <= last && ag.AuditLast != lineDigest(body.Entries[at].Line) {
				return fmt.Errorf("%w: spool %q: entry %d differs from the one the log holds under that number; start a new spool",
					errSpoolReused, body.Spool, held)
			}
			batch.From = int(at + 1)
		}
		if indexes, err = c.audit.AppendSigned(batch); err != nil {
			return err
		}
		if last > held {
			ag.AuditSpool, ag.AuditSeq, ag.AuditLast = body.Spool, last, lineDigest(body.Entries[len(body.Entries)-1].Line)
		}
		return nil
	})
	if err != nil {
		switch {
		case errors.Is(err, errSpoolReused):
			_, msg, _ := strings.Cut(err.Error(), errSpoolReused.Error()+": ")
			err = fmt.Errorf("%w: %s", logical.ErrConflict, msg)
		case errors.Is(err, audit.ErrBadSignature), errors.Is(err, audit.ErrBadEntry):
			_, msg, _ := strings.Cut(err.Error(), "audit: ")
			err = logical.InvalidRequest("%s", msg)
		}
		s.writeError(w, r, err)
		return
	}
	writeResponse(w, &logical.Response{Data: map[string]any{
		"accepted": len(indexes), "duplicates": batch.From, "indexes": indexes, "audit_seq": last, "signer": batch.Signer,
	}}, "system")
}

// errSpoolReused: an agent's spool numbers an entry the log already holds
// differently.
var errSpoolReused = errors.New("agent audit spool reused")

// lineDigest identifies an agent's entry line (hex SHA-256).
func lineDigest(line string) string {
	d := sha256.Sum256([]byte(line))
	return hex.EncodeToString(d[:])
}

// agentField is the kind of value a field of an agent's entry holds.
type agentField int

const (
	agentString agentField = iota + 1
	agentInt
	agentNamespace // {"id": "<zone>"}
)

// agentFields are the fields an agent's entry may have: what was read,
// how, when — never a value or a token (agents hold no audit salt).
var agentFields = map[string]agentField{
	"seq": agentInt, "time": agentString, "type": agentString, "error": agentString,
	"request.id": agentString, "request.operation": agentString, "request.path": agentString, "request.version": agentInt,
	"request.mode": agentString, "request.stale_seconds": agentInt, "request.remote_address": agentString,
	"request.namespace": agentNamespace, "response.status_code": agentInt, "response.mount_type": agentString,
	// The serial of a certificate the agent issued offline from its sub-CA.
	"response.serial_number": agentString,
}

// agentRequired are the fields every agent entry has.
var agentRequired = []string{"seq", "time", "type", "request.path", "request.namespace", "response.status_code"}

// agentLineProblem refuses agent entries that could carry secrets, whose
// fields hold values of the wrong kind, that claim another zone than the
// agent's, or that lack a required field; it returns the entry's "seq".
func agentLineProblem(line []byte, zone string) (uint64, string) {
	fields, err := leaf.Fields(line)
	if err != nil {
		return 0, "line: " + err.Error()
	}
	var seq uint64
	seen := 0
	for _, f := range fields {
		kind := agentFields[f.Name]
		if kind == 0 {
			return 0, fmt.Sprintf("line: field %q is not allowed in an agent's entry (agents record what was read, never values or tokens)", f.Name)
		}
		if slices.Contains(agentRequired, f.Name) {
			seen++
		}
		switch kind {
		case agentString:
			var v string
			if json.Unmarshal(f.Value, &v) != nil {
				return 0, fmt.Sprintf("line: %s must be a string", f.Name)
			}
			if f.Name == "type" && v != "agent-read" {
				return 0, `line: type must be "agent-read"`
			}
		case agentInt:
			var n uint64
			if json.Unmarshal(f.Value, &n) != nil {
				return 0, fmt.Sprintf("line: %s must be a non-negative integer", f.Name)
			}
			if f.Name == "seq" {
				seq = n
			}
		case agentNamespace:
			var ns struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(f.Value, &ns) != nil || ns.ID != zoneLabel(zone) {
				return 0, fmt.Sprintf("line: request.namespace must be the agent's zone {\"id\":%q}", zoneLabel(zone))
			}
		}
	}
	if seen != len(agentRequired) {
		return 0, "line: an agent's entry needs " + strings.Join(agentRequired, ", ")
	}
	if seq == 0 {
		return 0, "line: seq must be the entry's spool sequence number (from 1)"
	}
	return seq, ""
}

package attest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/edgevault/edgevault/internal/keylock"
	"github.com/edgevault/edgevault/internal/storage"
)

// agentPrefix is where agent records live inside a zone's store.
const agentPrefix = "attest/agents/"

// Status is an agent's standing.
type Status string

const (
	// StatusActive agents are authorized.
	StatusActive Status = "active"
	// StatusQuarantined agents are refused by Authorize until an operator
	// sets them active again; their record and ID are kept.
	StatusQuarantined Status = "quarantined"
	// StatusRevoked agents are refused for good: Authorize refuses them and
	// their ID cannot be enrolled again until the record is deleted.
	StatusRevoked Status = "revoked"
)

func (s Status) valid() bool {
	return s == StatusActive || s == StatusQuarantined || s == StatusRevoked
}

// Agent is the server's record of one enrolled agent.
type Agent struct {
	// ID is the agent ID, unique inside its zone.
	ID string `json:"id"`
	// Zone is the agent's zone ("" is the root zone).
	Zone string `json:"zone"`
	// Method and Strength describe the attestation that admitted the agent.
	Method   string   `json:"method"`
	Strength Strength `json:"strength"`
	// Claims are the attestor's claims (see Identity.Claims).
	Claims map[string]string `json:"claims,omitempty"`
	// CertSerial is the hex serial number of the agent's current
	// certificate; Authorize refuses any other.
	CertSerial string `json:"cert_serial"`
	// PrevSerial is the certificate the last renewal replaced, while the
	// new one has not been used yet: it can renew again (the answer to the
	// renewal may have been lost), and nothing else.
	PrevSerial string `json:"prev_serial,omitempty"`
	// CertNotAfter is when the current certificate expires.
	CertNotAfter time.Time `json:"cert_not_after"`
	// EnrolledAt is when the agent last enrolled.
	EnrolledAt time.Time `json:"enrolled_at"`
	// LastSeen is when the agent last acked or renewed; zero if never.
	LastSeen time.Time `json:"last_seen,omitzero"`
	// AckedSeq is the highest sync sequence number the agent acked as
	// durably applied to its cache (its watermark).
	AckedSeq uint64 `json:"acked_seq"`
	// AuditSpool names the agent's audit spool and AuditSeq is the highest
	// sequence number of its entries the audit log holds: a batch forwarded
	// again (its answer was lost) is not logged twice.
	AuditSpool string `json:"audit_spool,omitempty"`
	AuditSeq   uint64 `json:"audit_seq,omitempty"`
	// AuditLast identifies the entry numbered AuditSeq (hex SHA-256 of its
	// line), to tell an entry sent again from a new one under a reused number.
	AuditLast string `json:"audit_last,omitempty"`
	// ReattestBy, when set, is when a requested re-attestation is due:
	// past it only a renewal (which re-attests) is accepted.
	ReattestBy time.Time `json:"reattest_by,omitzero"`
	// Status is active, quarantined or revoked.
	Status Status `json:"status"`
	// StatusReason is the operator's or rule's reason for the status.
	StatusReason string `json:"status_reason,omitempty"`
	// StatusChangedAt is when Status last changed.
	StatusChangedAt time.Time `json:"status_changed_at,omitzero"`
}

// Name returns the agent's SPIFFE name in trust domain td.
func (a Agent) Name(td string) AgentName { return AgentName{TrustDomain: td, Zone: a.Zone, ID: a.ID} }

// Registry stores agent records in each zone's store at
// attest/agents/<id>. It is safe for concurrent use: writers to one agent
// take a lock stripe (the storage interface has no compare-and-swap), so
// only one server process may write a zone's agents, as for the zone
// package.
type Registry struct {
	stores func(zone string) (storage.Backend, error)
	locks  *keylock.Locks
}

func newRegistry(stores func(string) (storage.Backend, error)) *Registry {
	return &Registry{stores: stores, locks: keylock.New()}
}

func (r *Registry) lock(zone, id string) func() {
	return r.locks.Lock(zone, id)
}

func (r *Registry) store(zone string) (storage.Backend, error) {
	st, err := r.stores(zone)
	if err != nil {
		return nil, fmt.Errorf("zone %q: %w", zone, err)
	}
	return st, nil
}

// Get returns the record of agent id in zone, or an error wrapping
// ErrAgentUnknown.
func (r *Registry) Get(ctx context.Context, zone, id string) (Agent, error) {
	a, err := r.get(ctx, zone, id)
	if err != nil {
		return Agent{}, fmt.Errorf("agent registry: get: %w", err)
	}
	return a, nil
}

func (r *Registry) get(ctx context.Context, zone, id string) (Agent, error) {
	if err := ValidateAgentID(id); err != nil {
		return Agent{}, fmt.Errorf("zone %q agent %q: %w: %w", zone, id, ErrAgentUnknown, err)
	}
	st, err := r.store(zone)
	if err != nil {
		return Agent{}, err
	}
	b, err := st.Get(ctx, agentPrefix+id)
	if errors.Is(err, storage.ErrNotFound) {
		return Agent{}, fmt.Errorf("zone %q agent %q: %w", zone, id, ErrAgentUnknown)
	}
	if err != nil {
		return Agent{}, fmt.Errorf("zone %q agent %q: %w", zone, id, err)
	}
	a, err := parseAgent(b)
	if err != nil {
		return Agent{}, fmt.Errorf("zone %q agent %q: %w", zone, id, err)
	}
	if a.ID != id || a.Zone != zone {
		return Agent{}, fmt.Errorf("zone %q agent %q: %w: record names zone %q agent %q", zone, id, ErrCorrupt, a.Zone, a.ID)
	}
	return a, nil
}

// parseAgent decodes a stored agent record and checks its fields.
func parseAgent(b []byte) (Agent, error) {
	var a Agent
	if err := json.Unmarshal(b, &a); err != nil {
		return Agent{}, fmt.Errorf("%w: agent record: %w", ErrCorrupt, err)
	}
	if err := ValidateAgentID(a.ID); err != nil {
		return Agent{}, fmt.Errorf("%w: agent record field \"id\": %w", ErrCorrupt, err)
	}
	if !a.Status.valid() {
		return Agent{}, fmt.Errorf("%w: agent record field \"status\" is %q", ErrCorrupt, a.Status)
	}
	return a, nil
}

func (r *Registry) put(ctx context.Context, a Agent) error {
	st, err := r.store(a.Zone)
	if err != nil {
		return err
	}
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("zone %q agent %q: encode: %w", a.Zone, a.ID, err)
	}
	if err := st.Put(ctx, agentPrefix+a.ID, b); err != nil {
		return fmt.Errorf("zone %q agent %q: store: %w", a.Zone, a.ID, err)
	}
	return nil
}

// List returns every agent record of zone, sorted by ID.
func (r *Registry) List(ctx context.Context, zone string) ([]Agent, error) {
	st, err := r.store(zone)
	if err != nil {
		return nil, fmt.Errorf("agent registry: list: %w", err)
	}
	ids, err := st.List(ctx, agentPrefix)
	if err != nil {
		return nil, fmt.Errorf("agent registry: list zone %q: %w", zone, err)
	}
	sort.Strings(ids)
	out := make([]Agent, 0, len(ids))
	for _, id := range ids {
		a, err := r.get(ctx, zone, id)
		if errors.Is(err, ErrAgentUnknown) {
			continue // deleted since List
		}
		if err != nil {
			return nil, fmt.Errorf("agent registry: list: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// Update applies fn to agent id's record and stores the result, holding the
// agent's lock so concurrent updates do not lose each other's changes. fn
// must not change ID or Zone; if it returns an error nothing is stored.
func (r *Registry) Update(ctx context.Context, zone, id string, fn func(*Agent) error) (Agent, error) {
	defer r.lock(zone, id)()
	a, err := r.get(ctx, zone, id)
	if err != nil {
		return Agent{}, fmt.Errorf("agent registry: update: %w", err)
	}
	if err := fn(&a); err != nil {
		return Agent{}, fmt.Errorf("agent registry: update zone %q agent %q: %w", zone, id, err)
	}
	if a.ID != id || a.Zone != zone {
		return Agent{}, fmt.Errorf("agent registry: update zone %q agent %q: %w: ID and zone cannot change", zone, id, ErrInvalidAgentID)
	}
	if !a.Status.valid() {
		return Agent{}, fmt.Errorf("agent registry: update zone %q agent %q: %w: status %q", zone, id, ErrInvalidConfig, a.Status)
	}
	if err := r.put(ctx, a); err != nil {
		return Agent{}, fmt.Errorf("agent registry: update: %w", err)
	}
	return a, nil
}

// SetStatus changes agent id's status. Quarantine and revocation take
// effect at the agent's next Authorize (connection or renewal); the caller
// closes open streams.
func (r *Registry) SetStatus(ctx context.Context, zone, id string, status Status, reason string, now time.Time) (Agent, error) {
	if !status.valid() {
		return Agent{}, fmt.Errorf("agent registry: set status: %w: status %q is not active, quarantined or revoked", ErrInvalidConfig, status)
	}
	return r.Update(ctx, zone, id, func(a *Agent) error {
		if a.Status == StatusRevoked && status != StatusRevoked {
			return fmt.Errorf("%w: a revoked agent stays revoked; delete it to reuse its ID", ErrAgentRevoked)
		}
		if a.Status != status {
			a.StatusChangedAt = now.UTC().Round(0)
		}
		a.Status, a.StatusReason = status, reason
		return nil
	})
}

// Ack records that agent id durably applied the sync stream up to seq:
// AckedSeq only moves forward (a re-sent older ack is harmless), and
// LastSeen becomes now.
func (r *Registry) Ack(ctx context.Context, zone, id string, seq uint64, now time.Time) (Agent, error) {
	return r.Update(ctx, zone, id, func(a *Agent) error {
		a.AckedSeq = max(a.AckedSeq, seq)
		a.LastSeen = now.UTC().Round(0)
		return nil
	})
}

// Delete removes agent id's record: its certificates are refused from then
// on (ErrAgentUnknown) and the ID can be enrolled again. Deleting a missing
// agent returns nil.
func (r *Registry) Delete(ctx context.Context, zone, id string) error {
	if err := ValidateAgentID(id); err != nil {
		return fmt.Errorf("agent registry: delete: %w", err)
	}
	defer r.lock(zone, id)()
	st, err := r.store(zone)
	if err != nil {
		return fmt.Errorf("agent registry: delete: %w", err)
	}
	if err := st.Delete(ctx, agentPrefix+id); err != nil {
		return fmt.Errorf("agent registry: delete zone %q agent %q: %w", zone, id, err)
	}
	return nil
}

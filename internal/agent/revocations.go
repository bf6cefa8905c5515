package agent

// Revocations pushed by the server (event-driven revocation, sys/events).
//
// A syncproto.Revoke event purges the cached secrets under its Path (""
// purges the zone). The server's revocation log adds, in the event's
// Metadata, what the revocation is:
//
//	{"revocation_id": "...", "action": "revoke_prefix|revoke_agent|quarantine_agent|seal_zone|...",
//	 "agent_id": "<only when targeted at one agent>", "lease_prefix": "<for revoke_prefix>"}
//
// and the agent applies it as follows, from the sync stream's goroutine,
// in the order of the stream (after a reconnect the whole catch-up is
// applied before the agent reports itself online, so a revocation
// published while it was offline is applied before it serves anything as
// an online agent):
//
//   - agent_id names another agent: nothing (the event is still acked:
//     its sequence number is part of the batch);
//   - otherwise Path is purged from the secret cache as before, and the
//     lease cache's entries whose request path or lease ID starts with
//     Path, or with lease_prefix, are evicted (Path "" evicts them all);
//   - revoke_agent naming this agent: everything is wiped — the secret
//     cache, the lease cache, the offline sub-CAs — and the agent stops
//     serving: every local request but sys/health is refused (403), and
//     sys/health reports mode "revoked" (503) with the revocation. The
//     state is sealed into the cache file, so a restart does not undo it;
//     an operator re-enrolls the node with a fresh state directory;
//   - quarantine_agent naming this agent: the agent re-attests at once,
//     as for a Reattest event.
//
// While the catch-up after a reconnect is being applied the agent is still
// degraded, and would serve its cache: so the sync client hands it the
// catch-up's removals first (syncproto.Client.ApplyRevocations), which
// evicts the leased credentials they cover at once and makes the local API
// refuse (503) reads of every path they cover until the batch holding them
// is durable; only then are they lifted. A revocation published while the
// agent was away is thus never served past, from the moment its catch-up
// has arrived.
//
// A Revoke without Metadata (the server republishing a zone after a policy
// change) purges the secret cache only, as it always did. Metadata that
// cannot be read is treated as naming no agent: the purge happens (a
// removal is always safe), the targeted actions do not. Each revocation
// applied is logged at Info with its ID and action — never a secret.

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/syncproto"
)

// Revocation actions the agent treats specially (the others only purge).
const (
	actionRevokeAgent     = "revoke_agent"
	actionQuarantineAgent = "quarantine_agent"
)

// revokedBlob is where the agent seals its revoked state in the cache file
// (blobs survive a cache reset).
const revokedBlobKind, revokedBlobKey = "revoked", "agent"

// revocation is what a Revoke event's Metadata says about it; the zero
// value is an untargeted purge (an event without Metadata).
type revocation struct {
	// ID is the revocation's ID in the server's log
	// (sys/events/revocations/:id).
	ID string `json:"revocation_id,omitempty"`
	// Action is the rule action that produced it (revoke_prefix, ...).
	Action string `json:"action,omitempty"`
	// AgentID, if set, is the one agent the revocation is for.
	AgentID string `json:"agent_id,omitempty"`
	// LeasePrefix, if set, is a lease-ID prefix to evict besides Path.
	LeasePrefix string `json:"lease_prefix,omitempty"`
}

// parseRevocation reads a Revoke event's Metadata. Empty or null Metadata
// is the zero revocation. Fields of other types than strings are an error
// (the caller then purges as for an untargeted revocation).
func parseRevocation(raw json.RawMessage) (revocation, error) {
	var r revocation
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return r, nil
	}
	if t[0] != '{' {
		return r, errors.New("metadata is not a JSON object")
	}
	if err := json.Unmarshal(t, &r); err != nil {
		return revocation{}, err
	}
	return r, nil
}

// targeted reports whether the revocation names an agent.
func (r *revocation) targeted() bool { return r.AgentID != "" }

// revocationHooks carry out what a revocation asks of the agent beyond its
// secret cache. They are called from the sync stream's goroutine, while
// the batch holding the revocation is being built, before it commits:
// removing early is always safe, and a batch that fails is applied again.
type revocationHooks interface {
	// selfID is this agent's ID ("" before it has enrolled).
	selfID() string
	// purgeLeases evicts the lease cache's entries whose request path
	// (without /v1/ and query) or lease ID starts with one of prefixes (""
	// evicts every entry); it returns how many it evicted.
	purgeLeases(why string, prefixes ...string) int
	// wipe drops everything the agent holds besides its secret cache
	// (lease cache, offline sub-CAs) and stops it serving, for good.
	wipe(r revocation, at time.Time)
}

// opsForRevoke returns the cache ops of a Revoke event and carries out the
// rest of it through a.hooks (nil: the secret cache only).
func (a *applier) opsForRevoke(ev *syncproto.Event, ops []cache.Op) []cache.Op {
	p := ev.Path
	rev, err := parseRevocation(ev.Metadata)
	if err != nil {
		a.log.Warn("sync: revocation metadata unreadable; purging the path for every agent", "seq", ev.Seq, "path", p, "err", err)
	}
	self := ""
	if a.hooks != nil {
		self = a.hooks.selfID()
	}
	if rev.targeted() && rev.AgentID != self {
		a.log.Debug("sync: revocation for another agent", "seq", ev.Seq, "revocation_id", rev.ID, "action", rev.Action, "agent_id", rev.AgentID)
		return ops
	}
	wipe := rev.targeted() && rev.Action == actionRevokeAgent
	if wipe {
		p = ""
	}
	ops = append(ops, cache.Op{Kind: cache.OpPurgePrefix, Path: p})
	if p != "" {
		ops = append(ops, cache.Op{Kind: cache.OpPurgePrefix, Path: metaPath(p)})
	}
	leases := 0
	// Metadata-less Revokes are the server republishing a zone (a policy
	// changed what agents may cache): leased credentials are not cached by
	// policy and stay.
	if a.hooks != nil && (rev.ID != "" || rev.Action != "") {
		prefixes := []string{p}
		if rev.LeasePrefix != "" && !wipe {
			prefixes = append(prefixes, rev.LeasePrefix)
		}
		leases = a.hooks.purgeLeases("revocation "+rev.ID+" ("+rev.Action+")", prefixes...)
	}
	switch {
	case wipe:
		a.halted = true
		if a.hooks != nil {
			a.hooks.wipe(rev, a.now())
		}
	case rev.targeted() && rev.Action == actionQuarantineAgent && a.reattest != nil:
		a.reattest(rev.AgentID)
	}
	if p == "" && (rev.ID != "" || rev.Action != "") {
		// A revocation emptied the cache (not a zone republished after a
		// policy change, which the server refills): start again from a
		// full resync once it is durable.
		a.resetAfter = true
	}
	if rev.ID != "" || rev.Action != "" {
		a.log.Info("sync: revocation applied", "seq", ev.Seq, "revocation_id", rev.ID, "action", rev.Action,
			"agent_id", rev.AgentID, "path", p, "lease_prefix", rev.LeasePrefix, "leases_evicted", leases)
	}
	return ops
}

// agent's revocationHooks.

func (a *agent) selfID() string {
	if id := a.id.Load(); id != nil {
		return id.agentID
	}
	return ""
}

func (a *agent) purgeLeases(why string, prefixes ...string) int {
	if a.leases == nil {
		return 0
	}
	return a.leases.purge(why, prefixes...)
}

// revokedState is the agent's revoked state, as sealed in the cache file
// and shown by sys/health.
type revokedState struct {
	RevocationID string    `json:"revocation_id"`
	Action       string    `json:"action"`
	AppliedAt    time.Time `json:"applied_at"`
}

func (a *agent) wipe(r revocation, at time.Time) {
	st := &revokedState{RevocationID: r.ID, Action: r.Action, AppliedAt: at.UTC()}
	a.revoked.Store(st) // refuse first, then drop
	if raw, err := json.Marshal(st); err == nil {
		if err := a.cache.PutBlob(revokedBlobKind, revokedBlobKey, raw); err != nil && !errors.Is(err, cache.ErrClosed) {
			a.log.Error("agent revoked: the revoked state could not be sealed into the cache file; a restart would not remember it", "err", err)
		}
	}
	leases := a.purgeLeases("the agent was revoked", "")
	subCAs := a.subCAs.drop()
	a.log.Error("agent revoked by the control plane: cache, leased credentials and offline sub-CAs wiped; the agent serves nothing from now on",
		"revocation_id", r.ID, "action", r.Action, "leases_evicted", leases, "sub_cas_dropped", subCAs)
}

// loadRevoked restores the revoked state sealed in the cache file, if any.
func (a *agent) loadRevoked() {
	raw, err := a.cache.GetBlob(revokedBlobKind, revokedBlobKey)
	if errors.Is(err, cache.ErrNotCached) {
		return
	}
	st := new(revokedState)
	if err == nil {
		err = json.Unmarshal(raw, st)
	}
	if err != nil {
		// Unreadable: stay revoked rather than serve.
		a.log.Error("agent: the sealed revoked state cannot be read; staying revoked", "err", err)
		st = &revokedState{Action: actionRevokeAgent}
	}
	a.revoked.Store(st)
	a.log.Error("agent revoked by the control plane (remembered from the cache file): it serves nothing; re-enroll the node with a fresh state directory",
		"revocation_id", st.RevocationID, "applied_at", st.AppliedAt.Format(time.RFC3339))
}

// refusedBlobKey names the cache record that remembers the server refusing
// this agent (kind revokedBlobKind), so a restart does not forget it.
const refusedBlobKey = "refused"

// setRefused records whether the server refuses this agent (see
// agent.refused), durably when it changes.
func (a *agent) setRefused(v bool) {
	if a.refused.Swap(v) == v {
		return
	}
	var err error
	if v {
		a.log.Error("agent: the control plane refuses this agent; it serves nothing until the control plane accepts it again")
		err = a.cache.PutBlob(revokedBlobKind, refusedBlobKey, []byte{1})
	} else {
		err = a.cache.DeleteBlob(revokedBlobKind, refusedBlobKey)
	}
	if err != nil {
		a.log.Warn("agent: cannot record in the cache file whether the control plane refuses this agent", "refused", v, "err", err)
	}
}

// loadRefused restores the refusal a previous run recorded: until the
// server accepts it again, the agent serves nothing (an unreadable record
// counts as refused).
func (a *agent) loadRefused() {
	if _, err := a.cache.GetBlob(revokedBlobKind, refusedBlobKey); !errors.Is(err, cache.ErrNotCached) {
		a.refused.Store(true)
		a.log.Error("agent: the control plane refused this agent when it last reached it; it serves nothing until accepted again", "err", err)
	}
}

// drop forgets every sub-CA the agent holds, in memory and in the cache
// file, and returns how many it held. A nil *subCAs holds none.
func (s *subCAs) drop() int {
	if s == nil {
		return 0
	}
	n := 0
	for _, sl := range s.slots {
		if sl.held.Swap(nil) != nil {
			n++
		}
		if err := s.a.cache.DeleteBlob(subCABlobKind, sl.key()); err != nil && !errors.Is(err, cache.ErrClosed) {
			s.a.log.Error("agent revoked: drop the sealed sub-CA", "mount", sl.mount, "role", sl.role, "err", err)
		}
	}
	return n
}

// pendingRevocations are removals received in a catch-up and not yet
// durably applied to the cache: the local API refuses reads of the paths
// they cover. Safe for concurrent use; the zero value is empty.
type pendingRevocations struct {
	mu   sync.Mutex
	list []pendingRevocation
}

// pendingRevocation is one removal: every path starting with prefix, until
// the cache's watermark reaches seq.
type pendingRevocation struct {
	seq    uint64
	prefix string
}

func (p *pendingRevocations) add(seq uint64, prefix string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, pendingRevocation{seq, prefix})
}

// covers reports whether a pending removal covers path (or, for a secret's
// metadata, its secret path).
func (p *pendingRevocations) covers(path string) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.list {
		if strings.HasPrefix(path, r.prefix) {
			return true
		}
	}
	return false
}

// done lifts the removals at or below watermark: they are in the cache.
func (p *pendingRevocations) done(watermark uint64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.list[:0]
	for _, r := range p.list {
		if r.seq > watermark {
			kept = append(kept, r)
		}
	}
	p.list = kept
}

// applyRevocations is syncproto.Client.ApplyRevocations: the removals of a
// catch-up, before the catch-up is applied. It does not touch the cache
// (Apply does, in order, and moves the watermark): it marks the paths they
// cover as pending, so they are refused from now on, and evicts the leased
// credentials revocations cover (removing early is safe; Apply finds them
// gone). Removals for another agent, and those already applied, are
// skipped.
func (a *applier) applyRevocations(evs []syncproto.Event) error {
	if a.pending == nil {
		return nil
	}
	w := a.c.Watermark()
	for i := range evs {
		ev := &evs[i]
		switch ev.Kind {
		case syncproto.Resync:
			a.pending.add(ev.Seq, "")
		case syncproto.Delete, syncproto.DeleteVersion:
			if ev.Seq > w {
				a.pending.add(ev.Seq, ev.Path)
			}
		case syncproto.Revoke:
			if ev.Seq <= w {
				continue
			}
			rev, err := parseRevocation(ev.Metadata)
			self := ""
			if a.hooks != nil {
				self = a.hooks.selfID()
			}
			if err == nil && rev.targeted() && rev.AgentID != self {
				continue
			}
			p := ev.Path
			if err == nil && rev.targeted() && rev.Action == actionRevokeAgent {
				p = ""
			}
			a.pending.add(ev.Seq, p)
			if a.hooks != nil && err == nil && (rev.ID != "" || rev.Action != "") {
				prefixes := []string{p}
				if rev.LeasePrefix != "" {
					prefixes = append(prefixes, rev.LeasePrefix)
				}
				a.hooks.purgeLeases("revocation "+rev.ID+" ("+rev.Action+"), before the catch-up", prefixes...)
			}
		}
	}
	return nil
}

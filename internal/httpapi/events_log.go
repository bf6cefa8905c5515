package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/revoke"
	"github.com/edgevault/edgevault/internal/storage"
)

// The revocation log (issue 8): every action a rule takes is an entry,
// numbered per zone, kept in the root barrier (so it survives a zone being
// sealed by an event and is readable only through sys/events/revocations):
//
//	sys/revocations/<zone label>/<seq, 20 digits>   one entry (JSON)
//
// An entry's ID is "<zone label>.<seq>" ("edge-eu.12", "root.3"): zone names
// never contain a dot, so the ID names the key without an index. An entry is
// written before its action runs (received_at, no executed_at) and again
// once it ran (executed_at, feed_seq, targets, error), and a last time when
// every target agent acked it (applied, completed_at) or when the server
// stopped waiting (timed_out_at, after revocationTimeout). An entry a
// restart cut short (no executed_at) is marked interrupted_at at the next
// unseal. Finished entries older than revocationRetention are pruned at
// unseal and daily after, except each zone's newest (it numbers the next
// one).
const revocationPrefix = "sys/revocations/"

// Bounds of the revocation log and tracker.
const (
	// revocationTimeout is how long the server follows a revocation's acks;
	// past it the entry is marked timed out (an agent that reconnects later
	// is still resynced before it serves).
	revocationTimeout = 10 * time.Minute
	// revocationRetention is how long finished entries are kept.
	revocationRetention = 30 * 24 * time.Hour
)

// revocation is one entry of the revocation log.
type revocation struct {
	ID       string            `json:"id"`
	Zone     string            `json:"zone"` // zone label: "root" for the root zone
	Seq      uint64            `json:"seq"`
	Rule     string            `json:"rule"`
	Source   string            `json:"source"`
	EventID  string            `json:"event_id"`
	Action   revoke.ActionType `json:"action"`
	Recovery bool              `json:"recovery,omitempty"`
	// Params are the resolved parameters: names, prefixes, a URL — never a
	// secret.
	Params     map[string]string `json:"params"`
	ReceivedAt time.Time         `json:"received_at"`
	ExecutedAt time.Time         `json:"executed_at,omitzero"`
	// FeedSeq is the zone feed's sequence number of the Revoke event
	// published for the action (0: nothing was published).
	FeedSeq uint64 `json:"feed_seq,omitempty"`
	// Targets are the agents expected to ack FeedSeq.
	Targets []string `json:"targets"`
	// Refused are the zone's agents not expected to ack: quarantined,
	// revoked or past a re-attestation deadline, they are refused the
	// stream and apply the revocation only once released (a reconnecting
	// agent is resynced before it serves).
	Refused []string `json:"refused,omitempty"`
	// Applied holds when each target acked; written once all did, or at
	// the timeout (then some targets are missing).
	Applied     map[string]time.Time `json:"applied,omitempty"`
	CompletedAt time.Time            `json:"completed_at,omitzero"`
	// TimedOutAt is set when some target had not acked after
	// revocationTimeout and the server stopped following the entry.
	TimedOutAt time.Time `json:"timed_out_at,omitzero"`
	// InterruptedAt is set at unseal on an entry whose action a restart cut
	// short (it has no ExecutedAt). Its event was not acknowledged to the
	// sender, whose retry runs it again as a new entry.
	InterruptedAt time.Time `json:"interrupted_at,omitzero"`
	// Notes are what the action did or could not do that is not a failure.
	Notes []string `json:"notes,omitempty"`
	Error string   `json:"error,omitempty"`
}

// finished reports whether rv needs nothing more: it ran and every target
// acked (or it had none), or it timed out, or it was interrupted.
func (rv revocation) finished() bool {
	return revocationDone(rv) || !rv.TimedOutAt.IsZero() || !rv.InterruptedAt.IsZero()
}

// revocationLog stores the entries. Safe for concurrent use.
type revocationLog struct {
	store storage.Backend // the root barrier
	mu    sync.Mutex      // serialises appends, so seqs are dense and ordered
	heads map[string]uint64
	// first is, per zone, the first seq this process appended: entries from
	// there on are this process's, not a previous one's to resume.
	first map[string]uint64
}

func newRevocationLog(store storage.Backend) *revocationLog {
	return &revocationLog{store: store, heads: map[string]uint64{}, first: map[string]uint64{}}
}

// mine reports whether entry seq of the zone was appended by this process.
func (l *revocationLog) mine(zoneLabel string, seq uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.first[zoneLabel]
	return ok && seq >= f
}

func revocationKey(zoneLabel string, seq uint64) string {
	return fmt.Sprintf("%s%s/%020d", revocationPrefix, zoneLabel, seq)
}

// parseRevocationID splits "<zone>.<seq>"; ok is false for anything else.
func parseRevocationID(id string) (zoneLabel string, seq uint64, ok bool) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 {
		return "", 0, false
	}
	zoneLabel = id[:i]
	for _, r := range zoneLabel {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return "", 0, false
		}
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil || seq == 0 {
		return "", 0, false
	}
	return zoneLabel, seq, true
}

// append numbers rv in its zone, sets its ID and writes it durably.
func (l *revocationLog) append(ctx context.Context, rv *revocation) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	head, ok := l.heads[rv.Zone]
	if !ok {
		keys, err := l.store.List(ctx, revocationPrefix+rv.Zone+"/")
		if err != nil {
			return fmt.Errorf("revocation log: zone %q: %w", rv.Zone, err)
		}
		for _, k := range slices.Backward(keys) {
			if n, err := strconv.ParseUint(k, 10, 64); err == nil {
				head = n
				break
			}
		}
	}
	rv.Seq = head + 1
	rv.ID = rv.Zone + "." + strconv.FormatUint(rv.Seq, 10)
	if _, ok := l.first[rv.Zone]; !ok {
		l.first[rv.Zone] = rv.Seq
	}
	if err := l.put(ctx, rv); err != nil {
		return err
	}
	l.heads[rv.Zone] = rv.Seq
	return nil
}

// prune deletes the finished entries received before cutoff, keeping each
// zone's newest entry (append numbers the next one after it). It returns
// how many it deleted.
func (l *revocationLog) prune(ctx context.Context, cutoff time.Time) (int, error) {
	zones, err := l.store.List(ctx, revocationPrefix)
	if err != nil {
		return 0, fmt.Errorf("revocation log: %w", err)
	}
	n := 0
	for _, z := range zones {
		z = strings.TrimSuffix(z, "/")
		keys, err := l.store.List(ctx, revocationPrefix+z+"/")
		if err != nil {
			return n, fmt.Errorf("revocation log: zone %q: %w", z, err)
		}
		slices.Sort(keys)
		for i, k := range keys {
			seq, err := strconv.ParseUint(k, 10, 64)
			if err != nil || i == len(keys)-1 {
				continue
			}
			rv, err := l.get(ctx, z+"."+strconv.FormatUint(seq, 10))
			if err != nil || !rv.finished() || !rv.ReceivedAt.Before(cutoff) {
				continue
			}
			if err := l.store.Delete(ctx, revocationKey(z, seq)); err != nil {
				return n, fmt.Errorf("revocation log: prune %s: %w", rv.ID, err)
			}
			n++
		}
	}
	return n, nil
}

// put writes rv (already numbered) durably.
func (l *revocationLog) put(ctx context.Context, rv *revocation) error {
	raw, err := json.Marshal(rv)
	if err != nil {
		return err
	}
	if err := l.store.Put(ctx, revocationKey(rv.Zone, rv.Seq), raw); err != nil {
		return fmt.Errorf("revocation log: write %s: %w", rv.ID, err)
	}
	return nil
}

// get reads the entry id; a malformed or unknown id is logical.ErrNotFound.
func (l *revocationLog) get(ctx context.Context, id string) (revocation, error) {
	z, seq, ok := parseRevocationID(id)
	if !ok {
		return revocation{}, fmt.Errorf("%w: revocation %q (IDs look like \"edge-eu.12\")", logical.ErrNotFound, id)
	}
	raw, err := l.store.Get(ctx, revocationKey(z, seq))
	if errors.Is(err, storage.ErrNotFound) {
		return revocation{}, fmt.Errorf("%w: revocation %q", logical.ErrNotFound, id)
	}
	if err != nil {
		return revocation{}, fmt.Errorf("revocation log: read %s: %w", id, err)
	}
	var rv revocation
	if err := json.Unmarshal(raw, &rv); err != nil {
		return revocation{}, fmt.Errorf("revocation log: read %s: %w", id, err)
	}
	return rv, nil
}

// recent returns up to limit entries of every zone, newest first.
func (l *revocationLog) recent(ctx context.Context, limit int) ([]revocation, error) {
	zones, err := l.store.List(ctx, revocationPrefix)
	if err != nil {
		return nil, fmt.Errorf("revocation log: %w", err)
	}
	var out []revocation
	for _, z := range zones {
		z = strings.TrimSuffix(z, "/")
		keys, err := l.store.List(ctx, revocationPrefix+z+"/")
		if err != nil {
			return nil, fmt.Errorf("revocation log: zone %q: %w", z, err)
		}
		if len(keys) > limit {
			keys = keys[len(keys)-limit:]
		}
		for _, k := range keys {
			seq, err := strconv.ParseUint(k, 10, 64)
			if err != nil {
				continue
			}
			rv, err := l.get(ctx, z+"."+strconv.FormatUint(seq, 10))
			if err != nil {
				return nil, err
			}
			out = append(out, rv)
		}
	}
	slices.SortFunc(out, func(a, b revocation) int {
		if c := b.ReceivedAt.Compare(a.ReceivedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// pendingRevocation is a revocation whose targets' acks are followed. It is
// opened before its Revoke event is published, so no ack can slip between
// the publication and the bookkeeping; until it is armed (its feed_seq and
// targets known) the acks of its zone are only remembered, and it never
// times out: its action may take long (a revoke_prefix against a slow
// database), and the timeout counts from arming.
type pendingRevocation struct {
	rv    revocation
	zone  string // internal zone name ("" root), as the feed and acks name it
	armed bool
	// since is when the wait for acks began (arming; the execution for a
	// revocation resumed from the log): the timeout counts from it.
	since time.Time
	// early holds, per agent, the acks seen before arming (a few at most:
	// the window is one publication).
	early   map[string][]ackAt
	waiting map[string]bool
	applied map[string]time.Time
	done    chan struct{} // closed (by finish) once every target acked, or at the timeout
	closed  sync.Once
}

// finish closes p.done, once however many paths end p.
func (p *pendingRevocation) finish() { p.closed.Do(func() { close(p.done) }) }

// ackAt is an ack seen before its revocation was armed.
type ackAt struct {
	seq uint64
	at  time.Time
}

// maxEarlyAcks bounds the acks remembered per agent before arming; past it
// the latest replaces the last kept (acks only grow, so coverage is kept).
const maxEarlyAcks = 8

// revocationTracker follows the acks of published revocations, in memory
// (rebuilt from the log at unseal). Safe for concurrent use.
type revocationTracker struct {
	mu     sync.Mutex
	byID   map[string]*pendingRevocation
	byZone map[string]map[string]*pendingRevocation
	// complete is called, outside the lock, for each revocation every
	// target acked; timedOut for each expire gave up on.
	complete func(p *pendingRevocation)
	timedOut func(p *pendingRevocation, now time.Time)
}

func newRevocationTracker(complete func(*pendingRevocation), timedOut func(*pendingRevocation, time.Time)) *revocationTracker {
	return &revocationTracker{byID: map[string]*pendingRevocation{}, byZone: map[string]map[string]*pendingRevocation{},
		complete: complete, timedOut: timedOut}
}

// open starts following revocation id of zone before it is published.
// Every open must be followed by arm or cancel.
func (t *revocationTracker) open(zone, id string) *pendingRevocation {
	p := &pendingRevocation{rv: revocation{ID: id}, zone: zone, early: map[string][]ackAt{},
		waiting: map[string]bool{}, applied: map[string]time.Time{}, done: make(chan struct{})}
	t.mu.Lock()
	t.trackLocked(p)
	t.mu.Unlock()
	return p
}

func (t *revocationTracker) trackLocked(p *pendingRevocation) {
	t.byID[p.rv.ID] = p
	if t.byZone[p.zone] == nil {
		t.byZone[p.zone] = map[string]*pendingRevocation{}
	}
	t.byZone[p.zone][p.rv.ID] = p
}

// cancel stops following p (nothing was published, or no target).
func (t *revocationTracker) cancel(p *pendingRevocation) {
	t.mu.Lock()
	t.removeLocked(p)
	t.mu.Unlock()
}

func (t *revocationTracker) removeLocked(p *pendingRevocation) {
	delete(t.byID, p.rv.ID)
	delete(t.byZone[p.zone], p.rv.ID)
	if len(t.byZone[p.zone]) == 0 {
		delete(t.byZone, p.zone)
	}
}

// arm sets what p waits for: rv's targets must ack rv.FeedSeq, and the
// timeout counts from since. Acks seen since open count, and so do those in
// snapshot (targets known to have acked it, e.g. from the sync server's
// table). It returns p; if nothing is left to wait for, p is done and
// complete was called. A p no longer tracked (nothing drops an un-armed
// record today; this guards against one) is tracked again rather than left
// orphaned with its entry never finished.
func (t *revocationTracker) arm(p *pendingRevocation, rv revocation, snapshot map[string]time.Time, since time.Time) *pendingRevocation {
	t.mu.Lock()
	if p.armed {
		t.mu.Unlock()
		return p // armed twice: the first arming stands
	}
	if t.byID[p.rv.ID] != p {
		t.trackLocked(p)
	}
	p.rv, p.armed, p.since = rv, true, since
	for _, id := range rv.Targets {
		if at, ok := firstCovering(p.early[id], rv.FeedSeq); ok {
			p.applied[id] = at
		} else if at, ok := snapshot[id]; ok {
			p.applied[id] = at
		} else {
			p.waiting[id] = true
		}
	}
	p.early = nil
	finished := len(p.waiting) == 0
	if finished {
		t.removeLocked(p)
		p.finish()
	}
	t.mu.Unlock()
	if finished {
		t.complete(p)
	}
	return p
}

// firstCovering returns the time of the first ack at or above seq.
func firstCovering(acks []ackAt, seq uint64) (time.Time, bool) {
	for _, a := range acks {
		if a.seq >= seq {
			return a.at, true
		}
	}
	return time.Time{}, false
}

// add follows rv at once (open then arm): used for revocations resumed from
// the log. It returns the pending record, done if nothing was left to wait
// for (complete was called).
func (t *revocationTracker) add(zone string, rv revocation, applied map[string]time.Time) *pendingRevocation {
	return t.arm(t.open(zone, rv.ID), rv, applied, rv.ExecutedAt)
}

// acked records that agentID of zone applied its feed up to seq.
func (t *revocationTracker) acked(agentID, zone string, seq uint64, now time.Time) {
	var finished []*pendingRevocation
	t.mu.Lock()
	for _, p := range t.byZone[zone] {
		if !p.armed {
			acks := p.early[agentID]
			if len(acks) < maxEarlyAcks {
				p.early[agentID] = append(acks, ackAt{seq, now})
			} else {
				acks[len(acks)-1] = ackAt{seq, now}
			}
			continue
		}
		if p.rv.FeedSeq > seq || !p.waiting[agentID] {
			continue
		}
		delete(p.waiting, agentID)
		p.applied[agentID] = now
		if len(p.waiting) == 0 {
			t.removeLocked(p)
			p.finish()
			finished = append(finished, p)
		}
	}
	t.mu.Unlock()
	for _, p := range finished {
		t.complete(p)
	}
}

// expire gives up on the revocations armed for longer than timeout: they
// are dropped and timedOut is called for each (outside the lock). A record
// not yet armed is left alone, however long its action runs: its run arms
// or cancels it.
func (t *revocationTracker) expire(now time.Time, timeout time.Duration) {
	var gone []*pendingRevocation
	t.mu.Lock()
	for _, p := range t.byID {
		if !p.armed || now.Sub(p.since) <= timeout {
			continue
		}
		t.removeLocked(p)
		p.finish()
		gone = append(gone, p)
	}
	t.mu.Unlock()
	for _, p := range gone {
		t.timedOut(p, now)
	}
}

// status returns when each target of revocation id acked so far, and
// whether the revocation is being followed.
func (t *revocationTracker) status(id string) (map[string]time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.byID[id]
	if !ok || !p.armed {
		return nil, false
	}
	out := make(map[string]time.Time, len(p.applied))
	for k, v := range p.applied {
		out[k] = v
	}
	return out, true
}

// pending returns how many revocations are waiting for acks.
func (t *revocationTracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// eventMetrics are the revocation metrics, in the Server's own registry
// (served by GET sys/metrics?format=prometheus).
type eventMetrics struct {
	registry *prometheus.Registry
	// isolate is the time from an event received to the last target agent's
	// ack of the revocation it caused (to its execution, for actions no
	// agent has to apply), with outcome "applied"; a revocation some target
	// did not ack within revocationTimeout is observed at the timeout with
	// outcome "timed_out".
	isolate *prometheus.HistogramVec
	// events counts events by source and outcome.
	events *prometheus.CounterVec
}

func newEventMetrics() *eventMetrics {
	m := &eventMetrics{
		registry: prometheus.NewRegistry(),
		isolate: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "edgevault", Subsystem: "revocation", Name: "time_to_isolate_seconds",
			Help:    "Time from an event received to the last affected agent's ack of the revocation it caused (outcome applied), or to the server giving up waiting (outcome timed_out).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 600, 3600},
		}, []string{"source", "rule", "outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "edgevault", Subsystem: "events", Name: "received_total",
			Help: "Events posted to the intake endpoints, by source and outcome.",
		}, []string{"source", "outcome"}),
	}
	m.registry.MustRegister(m.isolate, m.events)
	return m
}

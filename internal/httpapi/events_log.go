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
// every target agent acked it (applied, completed_at).
const revocationPrefix = "sys/revocations/"

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
	// Applied holds when each target acked; written once all did.
	Applied     map[string]time.Time `json:"applied,omitempty"`
	CompletedAt time.Time            `json:"completed_at,omitzero"`
	// Notes are what the action did or could not do that is not a failure.
	Notes []string `json:"notes,omitempty"`
	Error string   `json:"error,omitempty"`
}

// revocationLog stores the entries. Safe for concurrent use.
type revocationLog struct {
	store storage.Backend // the root barrier
	mu    sync.Mutex      // serialises appends, so seqs are dense and ordered
	heads map[string]uint64
}

func newRevocationLog(store storage.Backend) *revocationLog {
	return &revocationLog{store: store, heads: map[string]uint64{}}
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
	if err := l.put(ctx, rv); err != nil {
		return err
	}
	l.heads[rv.Zone] = rv.Seq
	return nil
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

// pendingRevocation is a published revocation some targets have not acked.
type pendingRevocation struct {
	rv      revocation
	zone    string // internal zone name ("" root), as the feed and acks name it
	waiting map[string]bool
	applied map[string]time.Time
	done    chan struct{} // closed once every target acked
}

// revocationTracker follows the acks of published revocations, in memory
// (rebuilt from the log at unseal). Safe for concurrent use.
type revocationTracker struct {
	mu     sync.Mutex
	byID   map[string]*pendingRevocation
	byZone map[string]map[string]*pendingRevocation
	// complete is called, outside the lock, for each revocation every
	// target acked.
	complete func(p *pendingRevocation)
}

func newRevocationTracker(complete func(*pendingRevocation)) *revocationTracker {
	return &revocationTracker{byID: map[string]*pendingRevocation{}, byZone: map[string]map[string]*pendingRevocation{}, complete: complete}
}

// add starts following rv, whose targets must ack rv.FeedSeq; applied are
// targets already known to have acked it. It returns the pending record,
// or nil when nothing is left to wait for (complete was called).
func (t *revocationTracker) add(zone string, rv revocation, applied map[string]time.Time) *pendingRevocation {
	p := &pendingRevocation{rv: rv, zone: zone, waiting: map[string]bool{}, applied: map[string]time.Time{}, done: make(chan struct{})}
	for _, id := range rv.Targets {
		if at, ok := applied[id]; ok {
			p.applied[id] = at
		} else {
			p.waiting[id] = true
		}
	}
	if len(p.waiting) == 0 {
		close(p.done)
		t.complete(p)
		return p
	}
	t.mu.Lock()
	t.byID[rv.ID] = p
	if t.byZone[zone] == nil {
		t.byZone[zone] = map[string]*pendingRevocation{}
	}
	t.byZone[zone][rv.ID] = p
	t.mu.Unlock()
	return p
}

// acked records that agentID of zone applied its feed up to seq.
func (t *revocationTracker) acked(agentID, zone string, seq uint64, now time.Time) {
	var finished []*pendingRevocation
	t.mu.Lock()
	for id, p := range t.byZone[zone] {
		if p.rv.FeedSeq > seq || !p.waiting[agentID] {
			continue
		}
		delete(p.waiting, agentID)
		p.applied[agentID] = now
		if len(p.waiting) == 0 {
			delete(t.byZone[zone], id) // byID keeps it until complete recorded it
			close(p.done)
			finished = append(finished, p)
		}
	}
	t.mu.Unlock()
	for _, p := range finished {
		t.complete(p)
		t.mu.Lock()
		delete(t.byID, p.rv.ID)
		t.mu.Unlock()
	}
}

// status returns when each target of revocation id acked so far, and
// whether the revocation is being followed.
func (t *revocationTracker) status(id string) (map[string]time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.byID[id]
	if !ok {
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
	// agent has to apply).
	isolate *prometheus.HistogramVec
	// events counts events by source and outcome.
	events *prometheus.CounterVec
}

func newEventMetrics() *eventMetrics {
	m := &eventMetrics{
		registry: prometheus.NewRegistry(),
		isolate: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "edgevault", Subsystem: "revocation", Name: "time_to_isolate_seconds",
			Help:    "Time from an event received to the last affected agent's ack of the revocation it caused.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600},
		}, []string{"source", "rule"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "edgevault", Subsystem: "events", Name: "received_total",
			Help: "Events posted to the intake endpoints, by source and outcome.",
		}, []string{"source", "outcome"}),
	}
	m.registry.MustRegister(m.isolate, m.events)
	return m
}

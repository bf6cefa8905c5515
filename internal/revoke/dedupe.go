package revoke

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
)

// ErrDuplicate is returned by Deduper.Claim for an event already processed
// (within the TTL) or being processed right now by another request.
var ErrDuplicate = errors.New("revoke: duplicate event")

// Dedupe defaults.
const (
	// DefaultDedupeTTL is how long a processed event is remembered. It
	// should exceed Alertmanager's repeat_interval (4h by default), so
	// re-notifications of a still-firing alert are recognised.
	DefaultDedupeTTL = 24 * time.Hour
	// DefaultDedupeMax is how many processed events are remembered at most.
	DefaultDedupeMax = 100000
)

// dedupePrefix is where the Deduper keeps its records in its backend.
const dedupePrefix = "dedupe/"

// Deduper remembers which events were processed, by Event.DedupeKey, in a
// storage.Backend, for a TTL and up to a maximum count. Safe for concurrent
// use within one process; a cluster must run intake on one node (the
// leader), as the check and the mark are not one storage transaction.
//
// Processing is claim, then commit or release: Claim reserves the event (a
// second Claim of the same event fails with ErrDuplicate while the first
// is in flight), Commit records it durably as processed, Release forgets
// the claim so a retry is processed. An event is therefore recorded only
// after its actions ran, and a failure leaves it to be retried.
//
// Bounded: past Max records, expired ones are removed, then the ones
// closest to expiry. Evicting a record can let a late duplicate through
// (processed twice); it never makes a distinct event be dropped.
//
// Storage layout (relative to the backend given): dedupe/<DedupeKey> holds
// the expiry time as 8 bytes, big-endian Unix nanoseconds.
type Deduper struct {
	b   storage.Backend
	ttl time.Duration
	max int
	now func() time.Time

	mu       sync.Mutex
	loaded   bool
	expiry   map[string]time.Time // committed records
	inflight map[string]struct{}  // claimed, not yet committed or released
}

// NewDeduper returns a Deduper over b. ttl <= 0 means DefaultDedupeTTL,
// maxEntries <= 0 DefaultDedupeMax; now nil means time.Now.
func NewDeduper(b storage.Backend, ttl time.Duration, maxEntries int, now func() time.Time) *Deduper {
	if ttl <= 0 {
		ttl = DefaultDedupeTTL
	}
	if maxEntries <= 0 {
		maxEntries = DefaultDedupeMax
	}
	if now == nil {
		now = time.Now
	}
	return &Deduper{b: b, ttl: ttl, max: maxEntries, now: now,
		expiry: map[string]time.Time{}, inflight: map[string]struct{}{}}
}

// load reads the stored records once. Called with d.mu held.
func (d *Deduper) load(ctx context.Context) error {
	if d.loaded {
		return nil
	}
	names, err := d.b.List(ctx, dedupePrefix)
	if err != nil {
		return fmt.Errorf("dedupe: list: %w", err)
	}
	for _, n := range names {
		v, err := d.b.Get(ctx, dedupePrefix+n)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("dedupe: read %q: %w", n, err)
		}
		if len(v) != 8 {
			continue // not ours; ignore rather than fail intake
		}
		d.expiry[n] = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
	}
	d.loaded = true
	return nil
}

// Claim reserves ev for processing. It returns ErrDuplicate if ev was
// committed less than the TTL ago or is claimed and not yet released.
func (d *Deduper) Claim(ctx context.Context, ev Event) (*Claim, error) {
	key := ev.DedupeKey()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.load(ctx); err != nil {
		return nil, err
	}
	if _, ok := d.inflight[key]; ok {
		return nil, fmt.Errorf("event %q: %w (in flight)", ev.ID, ErrDuplicate)
	}
	if exp, ok := d.expiry[key]; ok && d.now().Before(exp) {
		return nil, fmt.Errorf("event %q: %w", ev.ID, ErrDuplicate)
	}
	d.inflight[key] = struct{}{}
	return &Claim{d: d, key: key}, nil
}

// Len returns the number of committed records held (expired ones included
// until pruned).
func (d *Deduper) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.expiry)
}

// Claim is a reservation of one event by Deduper.Claim. Exactly one of
// Commit or Release should be called; later calls do nothing.
type Claim struct {
	d    *Deduper
	key  string
	done bool
}

// Commit durably records the event as processed, until the TTL passes.
// On error the claim is released, so a retry will process the event.
func (c *Claim) Commit(ctx context.Context) error {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.done {
		return nil
	}
	c.done = true
	delete(d.inflight, c.key)
	exp := d.now().Add(d.ttl)
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(exp.UnixNano()))
	ops := []storage.Op{{Kind: storage.OpPut, Key: dedupePrefix + c.key, Value: v[:]}}
	evict := d.evictions()
	for _, k := range evict {
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: dedupePrefix + k})
	}
	if err := d.b.Txn(ctx, ops); err != nil {
		return fmt.Errorf("dedupe: commit: %w", err)
	}
	for _, k := range evict {
		delete(d.expiry, k)
	}
	d.expiry[c.key] = exp
	return nil
}

// Release forgets the claim without recording the event.
func (c *Claim) Release() {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	delete(d.inflight, c.key)
}

// evictions returns the records to delete so that one more fits under max:
// nothing while there is room; otherwise every expired record and, if that
// is not enough, the records closest to expiry, down to 90% of max so the
// sort is paid once per max/10 commits. Called with d.mu held.
func (d *Deduper) evictions() []string {
	if len(d.expiry) < d.max {
		return nil
	}
	now := d.now()
	type rec struct {
		k   string
		exp time.Time
	}
	var out []string
	live := make([]rec, 0, len(d.expiry))
	for k, exp := range d.expiry {
		if !now.Before(exp) {
			out = append(out, k)
		} else {
			live = append(live, rec{k, exp})
		}
	}
	target := d.max - d.max/10 - 1
	if len(live) > target {
		slices.SortFunc(live, func(a, b rec) int { return cmp.Or(a.exp.Compare(b.exp), cmp.Compare(a.k, b.k)) })
		for _, r := range live[:len(live)-max(target, 0)] {
			out = append(out, r.k)
		}
	}
	return out
}

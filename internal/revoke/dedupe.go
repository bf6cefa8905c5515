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

// Errors returned by Deduper.Claim. Match them with errors.Is.
var (
	// ErrDuplicate is returned for an event already processed (committed
	// within the TTL). The sender can be told it was delivered.
	ErrDuplicate = errors.New("revoke: duplicate event")
	// ErrInFlight is returned for an event claimed by another request that
	// has neither committed nor released it yet. It is not a duplicate: the
	// other attempt may still fail and release it, so the sender must be
	// told to retry (503 with Retry-After), never that it was delivered.
	ErrInFlight = errors.New("revoke: event being processed by another request")
)

// Dedupe defaults.
const (
	// DefaultDedupeTTL is how long a processed event is remembered. It
	// should exceed Alertmanager's repeat_interval (4h by default), so
	// re-notifications of a still-firing alert are recognised.
	DefaultDedupeTTL = 24 * time.Hour
	// DefaultDedupeMax is how many processed events are remembered at most,
	// per source.
	DefaultDedupeMax = 100000
)

// dedupePrefix is where the Deduper keeps its records in its backend.
const dedupePrefix = "dedupe/"

// Deduper remembers which events were processed, by Event.DedupeKey, in a
// storage.Backend, for a TTL and up to a maximum count per source (so a
// source flooding distinct events evicts only its own records). Safe for concurrent
// use within one process; a cluster must run intake on one node (the
// leader), as the check and the mark are not one storage transaction.
//
// Processing is claim, then commit or release: Claim reserves the event (a
// second Claim of the same event fails with ErrInFlight while the first is
// in flight, with ErrDuplicate once it committed), Commit records it durably as processed, Release forgets
// the claim so a retry is processed. An event is therefore recorded only
// after its actions ran, and a failure leaves it to be retried.
//
// Bounded: past Max records of one source, expired ones are removed, then
// that source's records closest to expiry. Evicting a record can let a late duplicate through
// (processed twice); it never makes a distinct event be dropped.
//
// Storage layout (relative to the backend given): dedupe/<DedupeKey> holds
// the expiry time as 8 bytes, big-endian Unix nanoseconds, followed by the
// source name (absent in records written before the cap was per source:
// they count as a source named "").
type Deduper struct {
	b   storage.Backend
	ttl time.Duration
	max int
	now func() time.Time

	mu       sync.Mutex
	loaded   bool
	records  map[string]record   // committed records, by key
	perSrc   map[string]int      // committed records, by source
	inflight map[string]struct{} // claimed, not yet committed or released
}

// record is one committed event.
type record struct {
	exp    time.Time
	source string
}

// NewDeduper returns a Deduper over b. ttl <= 0 means DefaultDedupeTTL,
// maxEntries (per source) <= 0 DefaultDedupeMax; now nil means time.Now.
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
		records: map[string]record{}, perSrc: map[string]int{}, inflight: map[string]struct{}{}}
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
		if len(v) < 8 {
			continue // not ours; ignore rather than fail intake
		}
		d.put(n, record{exp: time.Unix(0, int64(binary.BigEndian.Uint64(v))), source: string(v[8:])})
	}
	d.loaded = true
	return nil
}

// put adds or replaces a record. Called with d.mu held.
func (d *Deduper) put(key string, r record) {
	d.drop(key)
	d.records[key] = r
	d.perSrc[r.source]++
}

// drop removes a record. Called with d.mu held.
func (d *Deduper) drop(key string) {
	old, ok := d.records[key]
	if !ok {
		return
	}
	delete(d.records, key)
	if d.perSrc[old.source]--; d.perSrc[old.source] <= 0 {
		delete(d.perSrc, old.source)
	}
}

// Claim reserves ev for processing. It returns ErrDuplicate if ev was
// committed less than the TTL ago, ErrInFlight if it is claimed and not yet
// committed or released.
func (d *Deduper) Claim(ctx context.Context, ev Event) (*Claim, error) {
	key := ev.DedupeKey()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.load(ctx); err != nil {
		return nil, err
	}
	if _, ok := d.inflight[key]; ok {
		return nil, fmt.Errorf("event %q: %w", ev.ID, ErrInFlight)
	}
	if r, ok := d.records[key]; ok && d.now().Before(r.exp) {
		return nil, fmt.Errorf("event %q: %w", ev.ID, ErrDuplicate)
	}
	d.inflight[key] = struct{}{}
	return &Claim{d: d, key: key, source: ev.Source}, nil
}

// Len returns the number of committed records held (expired ones included
// until pruned).
func (d *Deduper) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.records)
}

// Claim is a reservation of one event by Deduper.Claim. Exactly one of
// Commit or Release should be called; later calls do nothing.
type Claim struct {
	d      *Deduper
	key    string
	source string
	done   bool
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
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(c.source)), uint64(exp.UnixNano()))
	v = append(v, c.source...)
	ops := []storage.Op{{Kind: storage.OpPut, Key: dedupePrefix + c.key, Value: v}}
	evict := d.evictions(c.source)
	for _, k := range evict {
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: dedupePrefix + k})
	}
	if err := d.b.Txn(ctx, ops); err != nil {
		return fmt.Errorf("dedupe: commit: %w", err)
	}
	for _, k := range evict {
		d.drop(k)
	}
	d.put(c.key, record{exp: exp, source: c.source})
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

// evictions returns the records to delete so that one more record of
// source fits under max: nothing while the source has room; otherwise every
// expired record (of any source) and, if that is not enough, the source's
// records closest to expiry, down to 90% of max so the sort is paid once per
// max/10 commits. Called with d.mu held.
func (d *Deduper) evictions(source string) []string {
	if d.perSrc[source] < d.max {
		return nil
	}
	now := d.now()
	type rec struct {
		k   string
		exp time.Time
	}
	var out []string
	live := make([]rec, 0, d.perSrc[source])
	for k, r := range d.records {
		switch {
		case !now.Before(r.exp):
			out = append(out, k)
		case r.source == source:
			live = append(live, rec{k, r.exp})
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

package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/syncproto"
)

// metaPrefix starts the cache path under which the agent keeps a secret's
// KV metadata (the server's GET <mount>metadata/<key> data) as one version
// at the secret's current version. Secret paths are "<mount><key>" and a
// mount never starts with "/", so the two cannot collide.
const metaPrefix = "/metadata/"

func metaPath(p string) string { return metaPrefix + p }

// emptyObject is the version metadata of a metaPrefix entry.
var emptyObject = json.RawMessage(`{}`)

// secretRead is the "data" object of a KV v2 data read, as the server
// sends it in an Upsert.
type secretRead struct {
	Data     json.RawMessage `json:"data"`
	Metadata json.RawMessage `json:"metadata"`
}

// versionOf is the part of a version's metadata the agent checks.
type versionOf struct {
	Version *int `json:"version"`
}

// pathMetadata is the part of a secret's KV metadata the agent reads.
type pathMetadata struct {
	Versions map[string]json.RawMessage `json:"versions"`
}

// parseUpsert extracts the version's data and metadata from an Upsert and
// checks what the cache would refuse, so one bad event cannot block the
// stream.
func parseUpsert(ev *syncproto.Event) (secretRead, error) {
	var sr secretRead
	if ev.Version < 1 {
		return sr, fmt.Errorf("version %d", ev.Version)
	}
	if ev.MaxStale <= 0 {
		return sr, errors.New("max_stale is 0: not to be served while disconnected")
	}
	if err := json.Unmarshal(ev.Data, &sr); err != nil {
		return sr, fmt.Errorf("data: %w", err)
	}
	if len(sr.Data) == 0 {
		sr.Data = json.RawMessage("null")
	}
	if t := bytes.TrimLeft(sr.Metadata, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return sr, errors.New("data.metadata is not an object")
	}
	var v versionOf
	if err := json.Unmarshal(sr.Metadata, &v); err != nil {
		return sr, fmt.Errorf("data.metadata: %w", err)
	}
	if v.Version != nil && *v.Version != ev.Version {
		return sr, fmt.Errorf("data.metadata.version %d, event version %d", *v.Version, ev.Version)
	}
	return sr, nil
}

// applier turns stream events into cache batches.
type applier struct {
	c     *cache.Cache
	log   *slog.Logger
	clock func() time.Time // nil: time.Now
	// budgetMemory makes the applier limit the process's Go memory during
	// large bursts of events (see budgetLocked). Only the agent's own
	// process should: the limit is process state, and tests or tools
	// applying events in a shared process would have their heap limited.
	budgetMemory bool
	// reattest is called for a re-attestation request naming an agent ID
	// ("" for every agent of the zone).
	reattest func(agentID string)
	// hooks carry out revocations beyond the secret cache (revocations.go);
	// nil: the secret cache only.
	hooks revocationHooks
	// pending, if set, holds the catch-up's removals until they are
	// durable (revocations.go); the local API refuses what they cover.
	pending *pendingRevocations
	// halted is set once a revocation revoked this agent: what the stream
	// brings afterwards is acked but never cached. Apply's goroutine only.
	halted bool
	// resetAfter is set while a batch holds a revocation that purged the
	// whole cache (a quarantine, a sealed zone): once the batch is durable
	// the cache is reset, so its next stream asks for a full resync — the
	// server does not send again what the agent held. Apply's goroutine only.
	resetAfter bool
	// resetAt is the sequence number of the last such reset (see acked).
	resetAt uint64

	mu sync.Mutex // guards the fields below; the idle timer runs on its own goroutine
	// applied counts events since the agent last gave memory back.
	applied int
	// idle fires releaseIdle after the last Apply of a burst.
	idle *time.Timer
	// held is the Go footprint measured right after the last release (0:
	// none yet), and base the cache's size then.
	held int64
	base cache.Stats
	// limit is the memory limit the applier set and that is in force (0:
	// none); foreign is set once another limit is found (the operator's
	// GOMEMLIMIT), which the applier then leaves alone.
	limit   int64
	foreign bool
}

// Giving memory back after a sync. The cache's index is the agent's live
// heap (about 20 MiB for 10,000 secrets of 1 KiB and their KV metadata); a
// sync allocates about 30 KiB per event of short-lived garbage (decoded
// events, ciphertexts, bbolt's per-transaction nodes and pages). Left to the
// default GC pacing, the heap grows to twice the index between collections
// and the runtime keeps those pages, so a synced agent would sit at the
// index plus a copy. So the applier:
//   - every releaseEvery events, and releaseIdle after the last event of a
//     burst of at least releaseIdleMin, collects and returns free memory to
//     the OS (debug.FreeOSMemory; the cache itself drops the file pages each
//     write touched when it commits);
//   - if budgetMemory is set, limits the Go memory while such a burst goes
//     on, to the footprint measured at the last release plus headroom
//     (max(budgetMin, 1/budgetFraction of it)) plus what the cache has
//     grown by since, so the burst collects instead of doubling the heap,
//     and lifts the limit when the burst ends. This is a complement, not the
//     fix: the limit is soft (the runtime never fails an allocation over it
//     and caps the GC's CPU at half), and it is lifted afterwards because
//     a limit this close to the live heap makes every allocation-heavy
//     activity, such as serving reads, collect constantly (measured: local
//     reads 2-3 times slower). Trickles of fewer than releaseIdleMin events
//     never set it. An operator's limit (GOMEMLIMIT) is left alone.
const (
	releaseEvery   = 4096
	releaseIdle    = 250 * time.Millisecond
	releaseIdleMin = 64
	budgetMin      = 2 << 20
	budgetFraction = 16 // headroom = footprint / budgetFraction
	// entryOverhead is the index's memory per cached version besides its
	// data and metadata (map slot, path, entry structs), about 200 bytes.
	entryOverhead = 256
)

// noteApplied counts n applied events and gives memory back when a
// release is due.
func (a *applier) noteApplied(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.applied += n; a.applied >= releaseEvery {
		a.releaseLocked(true)
		return
	}
	if a.applied < releaseIdleMin {
		return
	}
	a.budgetLocked()
	if a.idle == nil {
		a.idle = time.AfterFunc(releaseIdle, a.onIdle)
	} else {
		a.idle.Reset(releaseIdle)
	}
}

// onIdle is the idle timer: the stream has been quiet for releaseIdle.
func (a *applier) onIdle() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.applied >= releaseIdleMin {
		a.releaseLocked(false)
	}
}

// releaseLocked gives memory back and measures what is left; inBurst says
// whether events are still coming (the budget stays) or not (it is lifted).
// Called with mu held.
func (a *applier) releaseLocked(inBurst bool) {
	a.applied = 0
	if a.idle != nil {
		a.idle.Stop()
	}
	if err := a.c.Release(); err != nil && !errors.Is(err, cache.ErrClosed) {
		a.log.Warn("sync: release the cache's memory", "err", err)
	}
	debug.FreeOSMemory()
	a.measure()
	if inBurst {
		a.budgetLocked()
	} else {
		a.unlimit()
	}
}

// measure records the Go footprint (what the runtime holds from the OS) and
// the cache's size. Called with mu held, right after a collection.
func (a *applier) measure() {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 && s[1].Value.Kind() == metrics.KindUint64 {
		a.held = int64(s[0].Value.Uint64() - s[1].Value.Uint64())
	}
	a.base = a.c.Stats()
}

// owns reports whether the memory limit in force is the applier's (or
// none), and remembers when it is not. Called with mu held.
func (a *applier) owns() bool {
	if a.foreign {
		return false
	}
	cur := debug.SetMemoryLimit(-1)
	if cur == a.limit || (a.limit == 0 && cur == math.MaxInt64) {
		return true
	}
	a.foreign = true
	return false
}

// budgetLocked sets or moves the memory limit for a burst: the footprint at
// the last release, headroom, and the cache's growth since. Called with mu
// held.
func (a *applier) budgetLocked() {
	if !a.budgetMemory || !a.owns() {
		return
	}
	if a.held == 0 { // no release yet: measure once
		debug.FreeOSMemory()
		a.measure()
		if a.held == 0 {
			return
		}
	}
	st := a.c.Stats()
	grown := st.Bytes - a.base.Bytes + int64(st.Entries-a.base.Entries)*entryOverhead
	want := a.held + max(budgetMin, a.held/budgetFraction) + max(grown, 0)
	if want-a.limit > 1<<20 || a.limit-want > 1<<20 {
		a.limit = want
		debug.SetMemoryLimit(want)
	}
}

// unlimit lifts the applier's memory limit at the end of a burst. Called
// with mu held.
func (a *applier) unlimit() {
	if a.limit == 0 || !a.owns() {
		return
	}
	debug.SetMemoryLimit(math.MaxInt64)
	a.limit = 0
}

func (a *applier) now() time.Time {
	if a.clock == nil {
		return time.Now()
	}
	return a.clock()
}

// opsFor returns the cache ops of one event (never Resync or Heartbeat).
func (a *applier) opsFor(ev *syncproto.Event, ops []cache.Op) []cache.Op {
	p := ev.Path
	if a.halted && (ev.Kind == syncproto.Upsert || ev.Kind == syncproto.Lease) {
		return ops // the agent was revoked: it caches nothing more
	}
	drop := func() []cache.Op {
		return append(ops, cache.Op{Kind: cache.OpDelete, Path: p}, cache.Op{Kind: cache.OpDelete, Path: metaPath(p)})
	}
	switch ev.Kind {
	case syncproto.Upsert:
		sr, err := parseUpsert(ev)
		if err != nil {
			// Never keep serving an older value of a secret the server
			// changed: drop it, so reads go to the server.
			a.log.Warn("sync: upsert not cached, dropping the path", "seq", ev.Seq, "path", p, "reason", err)
			return drop()
		}
		ops = append(ops, cache.Op{Kind: cache.OpUpsert, Path: p, Version: ev.Version,
			Data: sr.Data, Metadata: sr.Metadata, MaxStale: ev.MaxStale})
		ops = append(ops, cache.Op{Kind: cache.OpDelete, Path: metaPath(p)})
		var pm pathMetadata
		if t := bytes.TrimLeft(ev.Metadata, " \t\r\n"); len(t) > 0 && t[0] == '{' && json.Unmarshal(ev.Metadata, &pm) == nil {
			// The path's metadata is read rarely: kept on disk, out of memory.
			ops = append(ops, cache.Op{Kind: cache.OpUpsert, Path: metaPath(p), Version: ev.Version,
				Data: ev.Metadata, Metadata: emptyObject, MaxStale: ev.MaxStale, OnDisk: true})
			// Deletion times are on the server's clock: judge them by the
			// event's, not by the agent's (which may be behind).
			at := ev.Time
			if at.IsZero() {
				at = a.now()
			}
			ops = a.prune(p, ev.Version, pm, at, ops)
		}
		return ops
	case syncproto.Delete:
		return drop()
	case syncproto.DeleteVersion:
		return append(ops, cache.Op{Kind: cache.OpDeleteVersion, Path: p, Version: ev.Version})
	case syncproto.Lease:
		if ev.MaxStale <= 0 {
			return drop()
		}
		return append(ops, cache.Op{Kind: cache.OpSetMaxStale, Path: p, MaxStale: ev.MaxStale},
			cache.Op{Kind: cache.OpSetMaxStale, Path: metaPath(p), MaxStale: ev.MaxStale})
	case syncproto.Revoke:
		return a.opsForRevoke(ev, ops)
	case syncproto.Reattest:
		if a.reattest != nil {
			a.reattest(ev.Path)
		}
	}
	return ops
}

// prune drops cached versions of p that the server no longer lists
// (removed by max_versions or a metadata delete) or lists as deleted at
// time at, so the cache does not grow with every write and never serves a
// deleted version.
func (a *applier) prune(p string, current int, pm pathMetadata, at time.Time, ops []cache.Op) []cache.Op {
	if pm.Versions == nil {
		return ops
	}
	info, err := a.c.Metadata(p)
	if err != nil {
		return ops // not cached, or too stale to look at: nothing to prune
	}
	for _, v := range info.Versions {
		raw, listed := pm.Versions[strconv.Itoa(v.Version)]
		if v.Version == current {
			continue
		}
		if !listed || versionGone(raw, at) {
			ops = append(ops, cache.Op{Kind: cache.OpDeleteVersion, Path: p, Version: v.Version})
		}
	}
	return ops
}

// versionGone reports whether the server's metadata of one version says it
// is destroyed or deleted: such a version is never served from the cache.
func versionGone(raw json.RawMessage, now time.Time) bool {
	var vm struct {
		Destroyed    bool   `json:"destroyed"`
		DeletionTime string `json:"deletion_time"`
	}
	if json.Unmarshal(raw, &vm) != nil {
		return true
	}
	if vm.Destroyed {
		return true
	}
	if vm.DeletionTime != "" {
		t, err := time.Parse(time.RFC3339Nano, vm.DeletionTime)
		return err != nil || !t.After(now)
	}
	return false
}

// applyChunk bounds the events of one cache batch: a long catch-up is
// applied as several bbolt transactions, each holding the ops, ciphertexts
// and dirty pages of at most this many events, instead of one that holds
// them all (and the whole B+tree's nodes) at once.
const applyChunk = 512

// apply is syncproto.Client.Apply: the events become cache batches of about
// applyChunk events, in order, each at its highest sequence number, so an
// interrupted catch-up resumes after the last batch committed. Events that
// share a sequence number (a Resync and its snapshot) are never split: the
// cache's watermark could not tell a partly applied snapshot from a whole
// one. A Resync resets the cache first. Events at or below the watermark (a
// replay) are skipped.
func (a *applier) apply(evs []syncproto.Event) (uint64, error) {
	defer func() { a.pending.done(a.acked()) }()
	for len(evs) > 0 {
		n := chunkLen(evs)
		if err := a.applyBatch(evs[:n]); err != nil {
			return a.acked(), err
		}
		evs = evs[n:]
	}
	return a.acked(), nil
}

// acked is the sequence number to ack: the cache's watermark, or, after a
// whole-cache revocation reset the cache (its watermark 0, so the next
// stream resyncs), the revocation's: it was applied, and the server must
// know.
func (a *applier) acked() uint64 {
	return max(a.c.Watermark(), a.resetAt)
}

// chunkLen returns how many of evs go into the next batch: applyChunk,
// extended to the end of a run of events sharing a sequence number.
func chunkLen(evs []syncproto.Event) int {
	n := min(len(evs), applyChunk)
	for n < len(evs) && evs[n].Seq <= evs[n-1].Seq {
		n++
	}
	return n
}

// applyBatch applies evs as one cache batch.
func (a *applier) applyBatch(evs []syncproto.Event) error {
	a.resetAfter = false
	w := a.c.Watermark()
	var ops []cache.Op
	var seq uint64
	resynced := false
	for i := range evs {
		ev := &evs[i]
		switch {
		case ev.Kind == syncproto.Resync:
			if err := a.c.Reset(); err != nil {
				return fmt.Errorf("resync at seq %d: %w", ev.Seq, err)
			}
			a.log.Info("sync: full resync", "seq", ev.Seq)
			ops, w, resynced = ops[:0], 0, true
			seq = max(seq, ev.Seq)
			continue
		case ev.Kind == syncproto.Heartbeat:
			continue
		case ev.Seq <= w && !resynced:
			continue
		}
		ops = a.opsFor(ev, ops)
		seq = max(seq, ev.Seq)
	}
	if seq <= w {
		if resynced && len(ops) > 0 {
			// The cache cannot record a batch at sequence 0 (a restarted
			// server's empty feed): its secrets are cached as they change.
			a.log.Warn("sync: a snapshot at sequence 0 cannot be cached; secrets are cached as they are next written", "events", len(ops))
		}
		return nil
	}
	if err := a.c.Apply(seq, ops); err != nil && !errors.Is(err, cache.ErrAlreadyApplied) {
		return err
	}
	if a.resetAfter {
		// Durable, unlike a flag in memory: a restart before the next
		// stream still asks for the resync.
		if err := a.c.Reset(); err != nil {
			return fmt.Errorf("reset the cache after a whole-cache revocation at seq %d: %w", seq, err)
		}
		a.resetAt = max(a.resetAt, seq)
		a.log.Info("sync: the whole cache was revoked; the next stream starts with a full resync", "seq", seq)
	}
	a.noteApplied(len(evs))
	return nil
}

// markInterval is how often an online agent records that its cache is
// current.
const markInterval = time.Second

package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
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
	// applied counts events since the cache last gave its memory back.
	applied int
}

// releaseEvery is how many applied events make the agent give back the
// memory a sync's writes left behind (mapped pages, heap): after a large
// catch-up the resident set is the index again, not the index plus a copy.
const releaseEvery = 4096

// release gives memory back after many applied events.
func (a *applier) release(n int) {
	if a.applied += n; a.applied < releaseEvery {
		return
	}
	a.applied = 0
	if err := a.c.Release(); err != nil {
		a.log.Warn("sync: release the cache's memory", "err", err)
	}
	debug.FreeOSMemory()
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
			ops = append(ops, cache.Op{Kind: cache.OpUpsert, Path: metaPath(p), Version: ev.Version,
				Data: ev.Metadata, Metadata: emptyObject, MaxStale: ev.MaxStale})
			ops = a.prune(p, ev.Version, pm, ops)
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
		ops = append(ops, cache.Op{Kind: cache.OpPurgePrefix, Path: p})
		if p != "" {
			ops = append(ops, cache.Op{Kind: cache.OpPurgePrefix, Path: metaPath(p)})
		}
		return ops
	case syncproto.Reattest:
		a.log.Warn("sync: the server asks for re-attestation, which this agent's join-token attestor cannot give", "seq", ev.Seq)
	}
	return ops
}

// prune drops cached versions of p that the server no longer lists
// (removed by max_versions or a metadata delete), so the cache does not
// grow with every write.
func (a *applier) prune(p string, current int, pm pathMetadata, ops []cache.Op) []cache.Op {
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
		if !listed || versionGone(raw, a.now()) {
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

// apply is syncproto.Client.Apply: the events become one cache batch at
// the highest sequence number. A Resync resets the cache first (its
// snapshot follows it in the same catch-up). Events at or below the
// watermark (a replay) are skipped.
func (a *applier) apply(evs []syncproto.Event) (uint64, error) {
	w := a.c.Watermark()
	var ops []cache.Op
	var seq uint64
	resynced := false
	for i := range evs {
		ev := &evs[i]
		switch {
		case ev.Kind == syncproto.Resync:
			if err := a.c.Reset(); err != nil {
				return a.c.Watermark(), fmt.Errorf("resync at seq %d: %w", ev.Seq, err)
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
		return a.c.Watermark(), nil
	}
	if err := a.c.Apply(seq, ops); err != nil && !errors.Is(err, cache.ErrAlreadyApplied) {
		return a.c.Watermark(), err
	}
	a.release(len(evs))
	return a.c.Watermark(), nil
}

// markInterval is how often an online agent records that its cache is
// current.
const markInterval = time.Second

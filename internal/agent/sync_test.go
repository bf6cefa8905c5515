package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/agent/cache/keyfile"
	"github.com/edgevault/edgevault/internal/syncproto"
)

func openTestCache(t testing.TB) *cache.Cache {
	t.Helper()
	dir := t.TempDir()
	kp, err := keyfile.Open(filepath.Join(dir, "cache.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(filepath.Join(dir, "cache.db"), kp, cache.Options{Zone: testZone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// upsert is an Upsert as the server publishes it.
func upsert(seq uint64, path string, version int, password string) syncproto.Event {
	data := fmt.Sprintf(`{"data":{"password":%q},"metadata":{"created_time":"2026-01-01T00:00:00Z","custom_metadata":null,"deletion_time":"","destroyed":false,"version":%d}}`, password, version)
	versions := ""
	for v := 1; v <= version; v++ {
		if v > 1 {
			versions += ","
		}
		versions += fmt.Sprintf(`"%d":{"created_time":"2026-01-01T00:00:00Z","deletion_time":"","destroyed":false}`, v)
	}
	meta := fmt.Sprintf(`{"cas_required":false,"current_version":%d,"max_versions":0,"oldest_version":0,"versions":{%s}}`, version, versions)
	return syncproto.Event{Seq: seq, Kind: syncproto.Upsert, Path: path, Version: version,
		Data: json.RawMessage(data), Metadata: json.RawMessage(meta), MaxStale: time.Hour}
}

func password(t *testing.T, c *cache.Cache, path string, version int) string {
	t.Helper()
	e, err := c.Get(path, version)
	if errors.Is(err, cache.ErrNotCached) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	var d struct{ Password string }
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d.Password
}

// Events become cache batches: upserts with their metadata, deletes,
// revocations by prefix, a resync that starts over, replays skipped, and a
// malformed upsert that drops the path instead of blocking the stream.
func TestApplyEvents(t *testing.T) {
	c := openTestCache(t)
	a := &applier{c: c, log: slog.New(slog.DiscardHandler)}
	step := func(want uint64, evs ...syncproto.Event) {
		t.Helper()
		got, err := a.apply(evs)
		if err != nil || got != want {
			t.Fatalf("apply: watermark %d, %v; want %d", got, err, want)
		}
	}
	step(3, upsert(1, "secret/app/db", 1, "v1"), upsert(2, "secret/app/db", 2, "v2"), upsert(3, "secret/app/web", 1, "w1"))
	if password(t, c, "secret/app/db", 0) != "v2" || password(t, c, "secret/app/db", 1) != "v1" {
		t.Fatal("upserts not applied")
	}
	if e, err := c.Get(metaPath("secret/app/db"), 0); err != nil || e.Version != 2 || !json.Valid(e.Data) {
		t.Fatalf("metadata entry: %+v %v", e, err)
	}
	if info, _ := c.Metadata(metaPath("secret/app/db")); len(info.Versions) != 1 {
		t.Fatalf("the metadata entry keeps %d versions, want 1", len(info.Versions))
	}
	// A replay changes nothing.
	step(3, upsert(2, "secret/app/db", 1, "stale"))
	if password(t, c, "secret/app/db", 0) != "v2" {
		t.Fatal("a replayed event was applied")
	}
	// The server forgot version 1 (max_versions): the agent prunes it.
	ev := upsert(4, "secret/app/db", 3, "v3")
	ev.Metadata = json.RawMessage(`{"current_version":3,"versions":{"2":{},"3":{}}}`)
	step(4, ev)
	if password(t, c, "secret/app/db", 1) != "<none>" || password(t, c, "secret/app/db", 2) != "v2" {
		t.Fatal("version 1 not pruned")
	}
	// A malformed upsert drops the path rather than failing the batch.
	bad := upsert(5, "secret/app/web", 2, "w2")
	bad.Data = json.RawMessage(`{"data":{},"metadata":{"version":7}}`)
	step(6, bad, upsert(6, "secret/app/api", 1, "a1"))
	if password(t, c, "secret/app/web", 0) != "<none>" || password(t, c, "secret/app/api", 0) != "a1" {
		t.Fatal("malformed upsert handling")
	}
	// Delete and revoke.
	step(8, syncproto.Event{Seq: 7, Kind: syncproto.Delete, Path: "secret/app/api"},
		syncproto.Event{Seq: 8, Kind: syncproto.Revoke, Path: "secret/app/"})
	if password(t, c, "secret/app/api", 0) != "<none>" || password(t, c, "secret/app/db", 0) != "<none>" {
		t.Fatal("delete or revoke not applied")
	}
	if _, err := c.Get(metaPath("secret/app/db"), 0); !errors.Is(err, cache.ErrNotCached) {
		t.Fatalf("revoke left the metadata: %v", err)
	}
	// A resync purges everything, even below the watermark, and rebuilds.
	step(9, upsert(9, "secret/old/x", 1, "x"))
	step(5, syncproto.Event{Seq: 5, Kind: syncproto.Resync}, upsert(5, "secret/app/db", 4, "v4"))
	if password(t, c, "secret/old/x", 0) != "<none>" || password(t, c, "secret/app/db", 0) != "v4" {
		t.Fatal("resync")
	}
	// A snapshot at sequence 0 cannot be recorded: the cache is left empty
	// at watermark 0, and the stream goes on.
	step(0, syncproto.Event{Seq: 0, Kind: syncproto.Resync}, upsert(0, "secret/app/db", 4, "v4"))
	if password(t, c, "secret/app/db", 0) != "<none>" {
		t.Fatal("resync at 0")
	}
}

// A version the server's metadata marks destroyed, or deleted in the past,
// is never kept: versionGone decides it.
func TestVersionGone(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for raw, want := range map[string]bool{
		`{"destroyed":false,"deletion_time":""}`:                     false,
		`{"destroyed":true,"deletion_time":""}`:                      true,
		`{"destroyed":false,"deletion_time":"2026-11-26T11:00:00Z"}`: true,
		`{"destroyed":false,"deletion_time":"2026-11-26T13:00:00Z"}`: false,
		`{"destroyed":false,"deletion_time":"garbage"}`:              true,
		`not json`: true,
	} {
		if got := versionGone(json.RawMessage(raw), now); got != want {
			t.Errorf("versionGone(%s) = %v, want %v", raw, got, want)
		}
	}
}

// A long catch-up is applied in batches of about applyChunk events, each
// committed at its own highest sequence number; a Resync and the snapshot
// sharing its sequence number stay in one batch.
func TestApplyInChunks(t *testing.T) {
	var evs []syncproto.Event
	for i := range 1300 {
		evs = append(evs, upsert(uint64(i+1), fmt.Sprintf("secret/app/s%04d", i), 1, "p"))
	}
	if n := chunkLen(evs); n != applyChunk {
		t.Fatalf("chunkLen of 1300 events with distinct sequence numbers = %d, want %d", n, applyChunk)
	}
	snap := []syncproto.Event{{Seq: 7, Kind: syncproto.Resync}}
	for i := range 1000 {
		snap = append(snap, upsert(7, fmt.Sprintf("secret/snap/s%04d", i), 1, "s"))
	}
	snap = append(snap, upsert(8, "secret/after", 1, "a"))
	if n := chunkLen(snap); n != 1001 {
		t.Fatalf("chunkLen of a 1000-event snapshot = %d, want 1001 (the Resync and the whole snapshot)", n)
	}

	c := openTestCache(t)
	a := &applier{c: c, log: slog.New(slog.DiscardHandler)}
	if got, err := a.apply(evs); err != nil || got != 1300 {
		t.Fatalf("apply: watermark %d, %v; want 1300", got, err)
	}
	if st := c.Stats(); st.Paths != 2*1300 {
		t.Fatalf("%d paths cached, want %d (secrets and their metadata)", st.Paths, 2*1300)
	}
	// The snapshot replaces everything, whole.
	if got, err := a.apply(snap); err != nil || got != 8 {
		t.Fatalf("apply snapshot: watermark %d, %v; want 8", got, err)
	}
	if st := c.Stats(); st.Paths != 2*1001 {
		t.Fatalf("%d paths cached after the snapshot, want %d", st.Paths, 2*1001)
	}
	if password(t, c, "secret/snap/s0999", 0) != "s" || password(t, c, "secret/app/s0000", 0) != "<none>" {
		t.Fatal("snapshot not applied whole")
	}
}

// After a burst of events the applier gives memory back once the stream is
// quiet. If asked to, it limits the Go memory while a burst goes on (the
// footprint it measured plus headroom, moved as the cache grows) and lifts
// the limit when the burst ends; an operator's limit is left alone.
func TestApplierGivesMemoryBack(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	if prev != math.MaxInt64 {
		t.Skip("a memory limit is set (GOMEMLIMIT): the applier would leave it")
	}
	seq := uint64(0)
	burst := func(a *applier, n int, value string) {
		t.Helper()
		var evs []syncproto.Event
		for range n {
			seq++
			evs = append(evs, upsert(seq, fmt.Sprintf("secret/app/s%05d", seq), 1, value))
		}
		if _, err := a.apply(evs); err != nil {
			t.Fatal(err)
		}
	}
	released := func(a *applier) bool {
		deadline := time.Now().Add(5 * releaseIdle)
		for time.Now().Before(deadline) {
			a.mu.Lock()
			n := a.applied
			a.mu.Unlock()
			if n == 0 {
				return true
			}
			time.Sleep(releaseIdle / 10)
		}
		return false
	}
	limit := func(a *applier) (int64, int64) {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.limit, a.held
	}

	a := &applier{c: openTestCache(t), log: slog.New(slog.DiscardHandler), budgetMemory: true}
	burst(a, releaseIdleMin-1, "p")
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("memory limit %d after a trickle of events, want none", got)
	}
	burst(a, 1, "p")
	lim, held := limit(a)
	if got := debug.SetMemoryLimit(-1); held == 0 || got != lim || lim < held+budgetMin {
		t.Fatalf("during a burst: memory limit %d, applier limit %d, footprint %d: want footprint plus headroom", got, lim, held)
	}
	// The limit follows the cache as it grows.
	burst(a, 2000, strings.Repeat("x", 1024))
	if got := debug.SetMemoryLimit(-1); got < held+budgetMin+2000*1024 {
		t.Fatalf("memory limit %d after caching 2000 more secrets of 1 KiB, want at least %d", got, held+budgetMin+2000*1024)
	}
	if !released(a) {
		t.Fatal("no release after a quiet period")
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("memory limit %d once the burst is over, want it lifted", got)
	}

	// An operator's limit is left alone.
	debug.SetMemoryLimit(1 << 40)
	burst(a, 2*releaseIdleMin, "p")
	if !released(a) {
		t.Fatal("no release after a quiet period")
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("memory limit %d: the operator's limit was replaced", got)
	}
}

package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/syncproto"
)

// lockedBuffer is a log sink that goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var _ revocationHooks = (*agent)(nil)

// putLease stores a leased answer for path (a /v1/ URL path) in l.
func putLease(t *testing.T, l *leaseCache, path, leaseID string) {
	t.Helper()
	now := time.Now()
	e := &leaseEntry{Method: "GET", Path: path, Token: "tok", Stored: now, key: leaseKey("tok", "read", path, "", nil)}
	resp, _ := json.Marshal(map[string]any{"lease_id": leaseID, "lease_duration": 3600, "data": map[string]any{"password": "leased-secret"}})
	if !e.takeAnswer(resp, now) {
		t.Fatalf("takeAnswer refused %s", resp)
	}
	l.put(e, nil)
}

func leaseIDs(l *leaseCache) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for _, e := range l.entries {
		ids = append(ids, e.LeaseID)
	}
	return ids
}

func revokeEvent(seq uint64, path, meta string) syncproto.Event {
	ev := syncproto.Event{Seq: seq, Kind: syncproto.Revoke, Path: path}
	if meta != "" {
		ev.Metadata = json.RawMessage(meta)
	}
	return ev
}

// A Revoke naming another agent changes nothing but is acked; one naming
// this agent, or none, purges its path from the secret cache and the lease
// cache (by path and by lease_prefix); one without Metadata purges the
// secret cache only, as before; unreadable Metadata purges; a quarantine
// re-attests; a revoke_agent wipes the cache, the lease cache and the
// sub-CAs, caches nothing afterwards and is remembered across a restart.
// Each applied revocation is logged with its ID and action, without
// secrets.
func TestRevocationsApplied(t *testing.T) {
	dir := t.TempDir()
	l := newTestLeaseCache(t, dir)
	a := l.a
	logs := &lockedBuffer{}
	a.log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a.id.Store(&identity{agentID: "node-a"})
	a.leases = l
	sl := &subCASlot{mount: "pki", role: "web", path: "/v1/pki/issue/web"}
	sl.held.Store(&heldSubCA{serial: "11:22"})
	if err := a.cache.PutBlob(subCABlobKind, sl.key(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	a.subCAs = &subCAs{a: a, slots: []*subCASlot{sl}}
	var reattested []string
	ap := &applier{c: a.cache, log: a.log, hooks: a, reattest: func(id string) { reattested = append(reattested, id) }}
	step := func(want uint64, evs ...syncproto.Event) {
		t.Helper()
		got, err := ap.apply(evs)
		if err != nil || got != want {
			t.Fatalf("apply: watermark %d, %v; want %d", got, err, want)
		}
	}
	cached := func(p string) bool { return password(t, a.cache, p, 0) != "<none>" }
	expect := func(what string, paths map[string]bool, leases ...string) {
		t.Helper()
		for p, want := range paths {
			if got := cached(p); got != want {
				t.Fatalf("%s: %s cached=%v, want %v", what, p, got, want)
			}
		}
		got := leaseIDs(l)
		if strings.Join(sortedCopy(got), ",") != strings.Join(sortedCopy(leases), ",") {
			t.Fatalf("%s: lease cache holds %v, want %v", what, got, leases)
		}
	}

	step(3, upsert(1, "secret/app/db", 1, "s3cr3t-db"), upsert(2, "secret/app/web", 1, "s3cr3t-web"), upsert(3, "secret/other/x", 1, "s3cr3t-x"))
	putLease(t, l, "/v1/database/creds/ro", "database/creds/ro/abc")
	putLease(t, l, "/v1/pki/issue/web", "pki/issue/web/def")
	all := map[string]bool{"secret/app/db": true, "secret/app/web": true, "secret/other/x": true}
	expect("start", all, "database/creds/ro/abc", "pki/issue/web/def")

	step(4, revokeEvent(4, "", `{"revocation_id":"r1","action":"revoke_agent","agent_id":"node-b"}`))
	expect("revoke_agent for another agent", all, "database/creds/ro/abc", "pki/issue/web/def")
	if a.revoked.Load() != nil || ap.halted {
		t.Fatal("revoked by a revocation for another agent")
	}

	step(5, revokeEvent(5, "secret/app/", `{"revocation_id":"r2","action":"revoke_prefix","lease_prefix":"database/creds/ro/"}`))
	expect("revoke_prefix", map[string]bool{"secret/app/db": false, "secret/app/web": false, "secret/other/x": true}, "pki/issue/web/def")
	if _, err := a.cache.Get(metaPath("secret/app/db"), 0); !errors.Is(err, cache.ErrNotCached) {
		t.Fatalf("metadata of a revoked path still cached: %v", err)
	}

	step(6, revokeEvent(6, "pki/", ""))
	expect("Revoke without metadata", map[string]bool{"secret/other/x": true}, "pki/issue/web/def")

	step(7, revokeEvent(7, "pki/", `{"revocation_id":"r3","action":"revoke_prefix","agent_id":"node-a"}`))
	expect("revoke_prefix for this agent", map[string]bool{"secret/other/x": true})

	step(9, revokeEvent(8, "nothing/", `{"revocation_id":"r4","action":"quarantine_agent","agent_id":"node-b"}`),
		revokeEvent(9, "nothing/", `{"revocation_id":"r5","action":"quarantine_agent","agent_id":"node-a"}`))
	if strings.Join(reattested, ",") != "node-a" {
		t.Fatalf("re-attestations asked: %v, want [node-a]", reattested)
	}

	step(10, revokeEvent(10, "secret/other/", `"compromised"`))
	expect("unreadable metadata", map[string]bool{"secret/other/x": false})

	step(11, upsert(11, "secret/app/db", 2, "s3cr3t-db2"))
	putLease(t, l, "/v1/database/creds/rw", "database/creds/rw/ghi")
	step(13, revokeEvent(12, "unrelated/", `{"revocation_id":"r6","action":"revoke_agent","agent_id":"node-a"}`),
		upsert(13, "secret/app/new", 1, "s3cr3t-new"))
	expect("revoke_agent for this agent", map[string]bool{"secret/app/db": false, "secret/app/new": false})
	if st := a.cache.Stats(); st.Paths != 0 {
		t.Fatalf("cache holds %d paths after revoke_agent", st.Paths)
	}
	if sl.held.Load() != nil {
		t.Fatal("the sub-CA is still held")
	}
	if _, err := a.cache.GetBlob(subCABlobKind, sl.key()); !errors.Is(err, cache.ErrNotCached) {
		t.Fatalf("the sealed sub-CA is still in the cache file: %v", err)
	}
	st := a.revoked.Load()
	if st == nil || st.RevocationID != "r6" || st.Action != actionRevokeAgent {
		t.Fatalf("revoked state %+v", st)
	}
	step(14, upsert(14, "secret/app/later", 1, "s3cr3t-later"))
	if cached("secret/app/later") {
		t.Fatal("a revoked agent cached a later upsert")
	}

	// The log names every applied revocation, and no secret.
	out := logs.String()
	for _, id := range []string{"r2", "r3", "r5", "r6"} {
		if !strings.Contains(out, `"msg":"sync: revocation applied"`) || !strings.Contains(out, `"revocation_id":"`+id+`"`) {
			t.Errorf("log lacks revocation %s:\n%s", id, out)
		}
	}
	if !strings.Contains(out, `"action":"revoke_prefix"`) || !strings.Contains(out, `"action":"revoke_agent"`) {
		t.Errorf("log lacks the actions:\n%s", out)
	}
	if strings.Contains(out, "s3cr3t") || strings.Contains(out, "leased-secret") || strings.Contains(out, `"tok"`) {
		t.Errorf("a secret reached the log:\n%s", out)
	}

	// After a restart: no lease left in the file, still revoked.
	a.cache.Close()
	l2 := newTestLeaseCache(t, dir)
	if ids := leaseIDs(l2); len(ids) != 0 {
		t.Fatalf("lease cache file still holds %v", ids)
	}
	l2.a.loadRevoked()
	if st := l2.a.revoked.Load(); st == nil || st.RevocationID != "r6" {
		t.Fatalf("revoked state after a restart: %+v", st)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// parseRevocation reads the server's metadata, tolerates none, and
// refuses what is not an object of strings.
func TestParseRevocation(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		want    revocation
		wantErr bool
	}{
		{"", revocation{}, false},
		{"null", revocation{}, false},
		{` {"revocation_id":"r","action":"revoke_prefix","lease_prefix":"db/creds/"} `, revocation{ID: "r", Action: "revoke_prefix", LeasePrefix: "db/creds/"}, false},
		{`{"revocation_id":"r","action":"seal_zone","extra":[1,2]}`, revocation{ID: "r", Action: "seal_zone"}, false},
		{`"reason"`, revocation{}, true},
		{`{"agent_id":7}`, revocation{}, true},
		{`{`, revocation{}, true},
	} {
		got, err := parseRevocation(json.RawMessage(tc.raw))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseRevocation(%q) = %+v, %v; want %+v, error %v", tc.raw, got, err, tc.want, tc.wantErr)
		}
	}
}

// FuzzRevokeMetadata: any Metadata on a Revoke is applied without error or
// panic, and either names another agent (nothing purged) or purges Path.
func FuzzRevokeMetadata(f *testing.F) {
	for _, s := range []string{``, `null`, `"reason"`, `{"revocation_id":"r1","action":"revoke_prefix","lease_prefix":"db/"}`,
		`{"revocation_id":"r2","action":"revoke_agent","agent_id":"node-b"}`, `{"action":"quarantine_agent","agent_id":"node-a"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, meta string) {
		c := openTestCache(t)
		ap := &applier{c: c, log: slog.New(slog.DiscardHandler)}
		if _, err := ap.apply([]syncproto.Event{upsert(1, "secret/app/db", 1, "v1"), revokeEvent(2, "secret/", meta)}); err != nil {
			t.Fatal(err)
		}
		rev, err := parseRevocation(json.RawMessage(meta))
		other := err == nil && rev.AgentID != ""
		if got := password(t, c, "secret/app/db", 0) != "<none>"; got != other {
			t.Fatalf("metadata %q: still cached=%v, want %v", meta, got, other)
		}
		if c.Watermark() != 2 {
			t.Fatalf("metadata %q: watermark %d", meta, c.Watermark())
		}
	})
}

// An applied revocation is logged at Info with its ID and action.
func TestRevocationLogLine(t *testing.T) {
	c := openTestCache(t)
	logs := &lockedBuffer{}
	ap := &applier{c: c, log: slog.New(slog.NewTextHandler(logs, nil))}
	if _, err := ap.apply([]syncproto.Event{revokeEvent(1, "secret/", `{"revocation_id":"rev-7","action":"seal_zone"}`)}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("level=INFO msg=%q seq=1 revocation_id=rev-7 action=seal_zone", "sync: revocation applied")
	if !strings.Contains(logs.String(), want) {
		t.Fatalf("log %q lacks %q", logs.String(), want)
	}
}

// The removals of a catch-up are pending from ApplyRevocations until the
// batch holding them is durable: what they cover is refused meanwhile, a
// revocation for another agent covers nothing, and a failed Apply keeps
// them pending.
func TestCatchupRevocationsPendingUntilDurable(t *testing.T) {
	dir := t.TempDir()
	l := newTestLeaseCache(t, dir)
	a := l.a
	a.id.Store(&identity{agentID: "node-a"})
	a.leases = l
	ap := &applier{c: a.cache, log: a.log, hooks: a, pending: &a.revoking}
	if _, err := ap.apply([]syncproto.Event{upsert(1, "secret/app/db", 1, "v1"), upsert(2, "secret/other/x", 1, "x1")}); err != nil {
		t.Fatal(err)
	}
	putLease(t, l, "/v1/database/creds/ro", "database/creds/ro/abc")
	catchup := []syncproto.Event{
		upsert(3, "secret/new/y", 1, "y1"),
		revokeEvent(4, "secret/other/", `{"revocation_id":"r1","action":"revoke_prefix","agent_id":"node-b"}`),
		revokeEvent(5, "secret/app/", `{"revocation_id":"r2","action":"revoke_prefix","lease_prefix":"database/creds/"}`),
		{Seq: 6, Kind: syncproto.Delete, Path: "secret/new/z"},
		revokeEvent(1, "secret/", `{"revocation_id":"old","action":"revoke_prefix"}`), // already applied
	}
	var rev []syncproto.Event
	for _, ev := range catchup {
		if ev.Kind.Revokes() {
			rev = append(rev, ev)
		}
	}
	if err := ap.applyRevocations(rev); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"secret/app/db": true, "secret/new/z": true, "secret/other/x": false, "secret/new/y": false} {
		if got := a.revoking.covers(p); got != want {
			t.Fatalf("before Apply: covers(%s) = %v, want %v", p, got, want)
		}
	}
	if ids := leaseIDs(l); len(ids) != 0 {
		t.Fatalf("the revoked lease is still served before Apply: %v", ids)
	}
	if a.cache.Watermark() != 2 || password(t, a.cache, "secret/app/db", 0) != "v1" {
		t.Fatal("ApplyRevocations changed the cache or its watermark")
	}
	// Apply fails (the cache is closed): still pending.
	a.cache.Close()
	if _, err := ap.apply(catchup[:4]); err == nil {
		t.Fatal("apply on a closed cache succeeded")
	}
	if !a.revoking.covers("secret/app/db") {
		t.Fatal("a removal not yet durable was lifted")
	}
	l2 := newTestLeaseCache(t, dir)
	ap.c = l2.a.cache
	if _, err := ap.apply(catchup[:4]); err != nil {
		t.Fatal(err)
	}
	if a.revoking.covers("secret/app/db") || a.revoking.covers("secret/new/z") {
		t.Fatal("removals still pending once durable")
	}
	if password(t, ap.c, "secret/app/db", 0) != "<none>" {
		t.Fatal("the revoked secret is cached after Apply")
	}
}

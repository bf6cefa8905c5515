package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage/inmem"
	"github.com/edgevault/edgevault/internal/zone"
)

func TestParseRevocationID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		zone string
		seq  uint64
		ok   bool
	}{
		{"edge-eu.12", "edge-eu", 12, true},
		{"root.1", "root", 1, true},
		{"edge.eu.3", "", 0, false}, // a zone name has no dot
		{"edge-eu.0", "", 0, false},
		{"edge-eu.", "", 0, false},
		{".5", "", 0, false},
		{"Edge.5", "", 0, false},
		{"../x.5", "", 0, false},
		{"edge-eu.-1", "", 0, false},
		{"edge-eu.18446744073709551616", "", 0, false},
	} {
		z, seq, ok := parseRevocationID(tc.id)
		if ok != tc.ok || z != tc.zone || seq != tc.seq {
			t.Errorf("parseRevocationID(%q) = %q, %d, %v; want %q, %d, %v", tc.id, z, seq, ok, tc.zone, tc.seq, tc.ok)
		}
	}
}

// FuzzParseRevocationID: an accepted ID names exactly one log key, inside
// the zone's prefix, and prints back to itself.
func FuzzParseRevocationID(f *testing.F) {
	for _, s := range []string{"edge-eu.12", "root.1", "a.b.c", "x/../y.1", "z.01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		z, seq, ok := parseRevocationID(id)
		if !ok {
			return
		}
		key := revocationKey(z, seq)
		if strings.Contains(z, "/") || strings.Contains(z, ".") || !strings.HasPrefix(key, revocationPrefix+z+"/") {
			t.Fatalf("%q: key %q", id, key)
		}
		if again := z + "." + strconv.FormatUint(seq, 10); again != id && strings.TrimLeft(id[len(z)+1:], "0") != strconv.FormatUint(seq, 10) {
			t.Fatalf("%q parses to %q", id, again)
		}
	})
}

// The tracker completes a revocation once every target acked a sequence
// number at or above its feed_seq, and only then.
func TestRevocationTracker(t *testing.T) {
	var done []*pendingRevocation
	tr := newRevocationTracker(func(p *pendingRevocation) { done = append(done, p) }, nil)
	rv := revocation{ID: "z.1", Zone: "z", FeedSeq: 10, Targets: []string{"a", "b", "c"}}
	p := tr.add("z", rv, map[string]time.Time{"c": time.Unix(1, 0)})
	now := time.Unix(100, 0)
	tr.acked("a", "z", 9, now)      // before the revocation
	tr.acked("b", "other", 50, now) // another zone
	tr.acked("x", "z", 50, now)     // not a target
	if len(done) != 0 || tr.pending() != 1 {
		t.Fatalf("completed early: %d done, %d pending", len(done), tr.pending())
	}
	tr.acked("a", "z", 10, now)
	if st, ok := tr.status("z.1"); !ok || len(st) != 2 {
		t.Fatalf("status %v %v", st, ok)
	}
	tr.acked("b", "z", 11, now.Add(time.Second))
	select {
	case <-p.done:
	default:
		t.Fatal("done not closed")
	}
	if len(done) != 1 || len(done[0].applied) != 3 || tr.pending() != 0 {
		t.Fatalf("done %v, pending %d", done, tr.pending())
	}
	if _, ok := tr.status("z.1"); ok {
		t.Fatal("still followed after completion")
	}
	// Every target already acked: completed at once.
	tr.add("z", revocation{ID: "z.2", FeedSeq: 1, Targets: []string{"a"}}, map[string]time.Time{"a": now})
	if len(done) != 2 {
		t.Fatal("a revocation every target had acked was not completed")
	}
}

// An ack that lands after the revocation is published but before its
// targets are known (the sync server updates its table, then calls OnAck)
// is not lost: the tracker is opened before publishing and remembers it.
func TestRevocationTrackerAckBeforeArm(t *testing.T) {
	var done []*pendingRevocation
	tr := newRevocationTracker(func(p *pendingRevocation) { done = append(done, p) }, nil)
	at := time.Unix(50, 0)
	p := tr.open("z", "z.1")
	tr.acked("a", "z", 9, at)                   // older than the revocation
	tr.acked("b", "z", 10, at.Add(time.Second)) // covers feed_seq 10
	tr.acked("c", "other", 99, at)              // another zone
	rv := revocation{ID: "z.1", Zone: "z", FeedSeq: 10, Targets: []string{"a", "b"}}
	tr.arm(p, rv, nil, at) // the snapshot missed b's ack
	if st, ok := tr.status("z.1"); !ok || len(st) != 1 || !st["b"].Equal(at.Add(time.Second)) {
		t.Fatalf("after arm: %v %v, want b applied at its ack", st, ok)
	}
	tr.acked("a", "z", 10, at.Add(2*time.Second))
	if len(done) != 1 || len(done[0].applied) != 2 || tr.pending() != 0 {
		t.Fatalf("done %d, pending %d", len(done), tr.pending())
	}
	// Opened then cancelled (nothing published): nothing is left behind.
	tr.cancel(tr.open("z", "z.2"))
	if tr.pending() != 0 {
		t.Fatalf("a cancelled revocation is still followed")
	}
	// The snapshot merges in too.
	q := tr.arm(tr.open("z", "z.3"), revocation{ID: "z.3", FeedSeq: 20, Targets: []string{"a"}}, map[string]time.Time{"a": at}, at)
	select {
	case <-q.done:
	default:
		t.Fatal("a revocation the snapshot shows applied is not done")
	}
}

// A revocation followed for longer than the timeout is given up on: it is
// reported with the acks so far, then no longer followed.
func TestRevocationTrackerTimeout(t *testing.T) {
	var timedOut []*pendingRevocation
	tr := newRevocationTracker(func(*pendingRevocation) { t.Fatal("completed") },
		func(p *pendingRevocation, _ time.Time) { timedOut = append(timedOut, p) })
	start := time.Unix(1000, 0)
	p := tr.arm(tr.open("z", "z.1"), revocation{ID: "z.1", FeedSeq: 5, Targets: []string{"a", "b"}}, nil, start)
	tr.acked("a", "z", 5, start.Add(time.Second))
	tr.expire(start.Add(revocationTimeout), revocationTimeout)
	if len(timedOut) != 0 || tr.pending() != 1 {
		t.Fatal("expired before the timeout")
	}
	tr.expire(start.Add(revocationTimeout+time.Second), revocationTimeout)
	if len(timedOut) != 1 || len(timedOut[0].applied) != 1 || tr.pending() != 0 {
		t.Fatalf("timed out %d (applied %v), pending %d", len(timedOut), p.applied, tr.pending())
	}
	select {
	case <-p.done:
	default:
		t.Fatal("done not closed at the timeout")
	}
	tr.acked("b", "z", 5, start.Add(revocationTimeout+2*time.Second)) // late: ignored
}

// A revocation whose action outlasts the timeout (a revoke_prefix against a
// hung database) is not given up on before it is armed: arming it later
// neither panics nor orphans it, and its timeout counts from arming.
func TestRevocationTrackerSlowAction(t *testing.T) {
	var done, timedOut []*pendingRevocation
	tr := newRevocationTracker(func(p *pendingRevocation) { done = append(done, p) },
		func(p *pendingRevocation, _ time.Time) { timedOut = append(timedOut, p) })
	start := time.Unix(1000, 0)
	p := tr.open("z", "z.1")
	tr.expire(start.Add(2*revocationTimeout), revocationTimeout)
	if len(timedOut) != 0 || tr.pending() != 1 {
		t.Fatalf("an un-armed revocation expired: %d timed out, %d pending", len(timedOut), tr.pending())
	}
	armed := start.Add(2 * revocationTimeout)
	tr.arm(p, revocation{ID: "z.1", FeedSeq: 5, Targets: []string{"a", "b"}}, nil, armed)
	tr.expire(armed.Add(revocationTimeout/2), revocationTimeout)
	if len(timedOut) != 0 || tr.pending() != 1 {
		t.Fatal("the timeout did not count from arming")
	}
	tr.acked("a", "z", 5, armed.Add(time.Second))
	tr.acked("b", "z", 6, armed.Add(2*time.Second))
	if len(done) != 1 || tr.pending() != 0 {
		t.Fatalf("not completed after every ack: %d done, %d pending", len(done), tr.pending())
	}
	select {
	case <-p.done:
	default:
		t.Fatal("done not closed")
	}
	p.finish() // a second end is harmless
}

// prune deletes finished entries older than the cutoff, never an
// unfinished one and never a zone's newest (which numbers the next).
func TestRevocationLogPrune(t *testing.T) {
	ctx := context.Background()
	l := newRevocationLog(inmem.New())
	old := time.Now().Add(-40 * 24 * time.Hour).UTC()
	add := func(z string, rv revocation) string {
		t.Helper()
		rv.Zone, rv.Targets = z, []string{}
		if err := l.append(ctx, &rv); err != nil {
			t.Fatal(err)
		}
		return rv.ID
	}
	done := add("edge", revocation{ReceivedAt: old, ExecutedAt: old})
	pending := add("edge", revocation{ReceivedAt: old, ExecutedAt: old, FeedSeq: 3, Targets: []string{"a"}})
	timedOut := add("edge", revocation{ReceivedAt: old, ExecutedAt: old, FeedSeq: 4, TimedOutAt: old})
	recent := add("edge", revocation{ReceivedAt: time.Now().UTC(), ExecutedAt: time.Now().UTC()})
	newestOld := add("root", revocation{ReceivedAt: old, ExecutedAt: old})
	// The pending one kept its targets (add reset them): rewrite it.
	rv, _ := l.get(ctx, pending)
	rv.Targets = []string{"a"}
	if err := l.put(ctx, &rv); err != nil {
		t.Fatal(err)
	}
	n, err := l.prune(ctx, time.Now().Add(-revocationRetention))
	if err != nil || n != 2 {
		t.Fatalf("pruned %d, %v; want 2", n, err)
	}
	for id, want := range map[string]bool{done: false, timedOut: false, pending: true, recent: true, newestOld: true} {
		_, err := l.get(ctx, id)
		if got := err == nil; got != want {
			t.Errorf("%s kept = %v, want %v (%v)", id, got, want, err)
		}
	}
	// A fresh log (a restart) numbers after the kept newest entry.
	l2 := newRevocationLog(l.store)
	if id := func() string {
		rv := revocation{Zone: "root", Targets: []string{}}
		_ = l2.append(ctx, &rv)
		return rv.ID
	}(); id != "root.2" {
		t.Fatalf("next root entry %s, want root.2", id)
	}
}

// A server that stays unsealed prunes the log on its minute tick, at most
// once per revocationPruneInterval, not only at unseal.
func TestRevocationTickPrunesDaily(t *testing.T) {
	ctx := context.Background()
	l := newRevocationLog(inmem.New())
	s := &Server{log: slog.New(slog.DiscardHandler)}
	u := &unsealed{bg: ctx, events: &events{log: l, track: newRevocationTracker(func(*pendingRevocation) {}, func(*pendingRevocation, time.Time) {})}}
	now := time.Now()
	old := now.Add(-revocationRetention - time.Hour).UTC()
	var ids []string
	for range 3 {
		rv := revocation{Zone: "edge", Targets: []string{}, ReceivedAt: old, ExecutedAt: old}
		if err := l.append(ctx, &rv); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rv.ID)
	}
	kept := func() int {
		n := 0
		for _, id := range ids {
			if _, err := l.get(ctx, id); err == nil {
				n++
			}
		}
		return n
	}
	pruned := now.Add(-revocationPruneInterval + time.Minute)
	s.revocationTick(u, now, &pruned)
	if kept() != 3 {
		t.Fatal("pruned within a day of the last pruning")
	}
	s.revocationTick(u, now.Add(time.Minute), &pruned)
	if kept() != 1 || !pruned.Equal(now.Add(time.Minute)) {
		t.Fatalf("after a day: %d entries kept, last pruning %v; want the newest alone, pruned now", kept(), pruned)
	}
}

// Notify URLs keep scheme and host only: paths and queries carry secrets.
func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T000/B000/XXXXSECRET": "https://hooks.slack.com/(redacted)",
		"https://discord.com/api/webhooks/123/tok?wait=true":    "https://discord.com/(redacted)",
		"https://user:pw@example.com":                           "https://example.com",
		"http://127.0.0.1:8080/":                                "http://127.0.0.1:8080",
		"::not a url":                                           "(redacted URL)",
	} {
		if got := redactURL(in); got != want || strings.Contains(got, "SECRET") || strings.Contains(got, "tok") {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	p := redactParams(map[string]string{"url": "https://hooks.slack.com/services/T/B/S", "message": "m"})
	if p["url"] != "https://hooks.slack.com/(redacted)" || p["message"] != "m" {
		t.Fatalf("redactParams: %v", p)
	}
}

// Failures a retry would meet again are permanent; storage failures,
// cancellations and unknown errors are transient.
func TestPermanentActionError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("zone %q agent %q: %w", "z", "a", attest.ErrAgentUnknown), true},
		{fmt.Errorf("%w: zone %q does not exist", logical.ErrNotFound, "z"), true},
		{fmt.Errorf("rotate: %w", zone.ErrNotFound), true},
		{permanentError{errors.New("root zone")}, true},
		{errors.New("bolt: disk full"), false},
		{fmt.Errorf("write: %w", context.Canceled), false},
		{fmt.Errorf("%w: %w", logical.ErrNotFound, context.DeadlineExceeded), false},
	} {
		if got := permanentActionError(tc.err); got != tc.want {
			t.Errorf("permanentActionError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

package revoke

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
)

func genEvent(id string) Event {
	return Event{Kind: KindGeneric, ID: id, Status: StatusFiring,
		Labels: map[string]string{}, Annotations: map[string]string{}, Data: map[string]any{}}
}

func TestDedupeOnceAndPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	raw, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := storage.NewView(raw, "sys/events/")
	clk := newClock()
	ctx := t.Context()
	evs, err := ParseAlertmanager(readFile(t, "alertmanager.json"))
	if err != nil {
		t.Fatal(err)
	}
	src := bearerSource()
	src.RateLimit = RateLimit{PerSecond: 1000, Burst: 1000}
	in := NewIntake(NewDeduper(b, time.Hour, 0, clk.now), NewLimiter(), clk.now)

	adm, dups, err := in.Admit(ctx, src, evs)
	if err != nil || len(adm) != 3 || dups != 0 {
		t.Fatalf("first delivery: %d admitted, %d dups, %v", len(adm), dups, err)
	}
	if adm[0].Event.Source != "am" || !adm[0].Event.ReceivedAt.Equal(clk.now()) {
		t.Fatalf("not stamped: %+v", adm[0].Event)
	}
	// The HA twin delivers the same group while the first is in flight: it
	// must retry (the first attempt may still fail), and claims nothing.
	twin, dups, err := in.Admit(ctx, src, evs)
	if !errors.Is(err, ErrInFlight) || errors.Is(err, ErrDuplicate) || len(twin) != 0 || dups != 0 {
		t.Fatalf("in-flight duplicate: %d admitted, %d dups, %v; want ErrInFlight", len(twin), dups, err)
	}
	// Alert 1 fails to execute and is released; the others commit.
	adm[1].Release()
	for _, i := range []int{0, 2} {
		if err := adm[i].Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	again, dups, err := in.Admit(ctx, src, evs)
	if err != nil || len(again) != 1 || dups != 2 || again[0].Event.ID != evs[1].ID {
		t.Fatalf("retry: %d admitted, %d dups, %v", len(again), dups, err)
	}
	if err := again[0].Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// A restarted server (new Deduper over the reopened file) remembers.
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	in2 := NewIntake(NewDeduper(reopenBolt(t, path), time.Hour, 0, clk.now), NewLimiter(), clk.now)
	adm, dups, err = in2.Admit(ctx, src, evs)
	if err != nil || len(adm) != 0 || dups != 3 {
		t.Fatalf("after restart: %d admitted, %d dups, %v", len(adm), dups, err)
	}
	// The same alert resolving is a new event.
	res := evs[0]
	res.Status = StatusResolved
	adm, _, err = in2.Admit(ctx, src, []Event{res})
	if err != nil || len(adm) != 1 {
		t.Fatalf("resolution: %d admitted, %v", len(adm), err)
	}
	adm[0].Release()
	// After the TTL, a re-send is processed again.
	clk.advance(time.Hour + time.Second)
	adm, dups, err = in2.Admit(ctx, src, evs)
	if err != nil || len(adm) != 3 || dups != 0 {
		t.Fatalf("after TTL: %d admitted, %d dups, %v", len(adm), dups, err)
	}
}

func TestDedupeBounded(t *testing.T) {
	b, _ := openBolt(t)
	clk := newClock()
	ctx := t.Context()
	d := NewDeduper(b, time.Hour, 50, clk.now)
	for i := range 200 {
		c, err := d.Claim(ctx, genEvent(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		clk.advance(time.Millisecond)
		if d.Len() > 50 {
			t.Fatalf("after %d commits, %d records, max 50", i+1, d.Len())
		}
	}
	// The newest are remembered; storage holds no more than memory.
	if _, err := d.Claim(ctx, genEvent("199")); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("newest forgotten: %v", err)
	}
	names, err := b.List(ctx, dedupePrefix)
	if err != nil || len(names) != d.Len() {
		t.Fatalf("stored %d records, in memory %d (%v)", len(names), d.Len(), err)
	}
	// Eviction never refuses a new event.
	if _, err := d.Claim(ctx, genEvent("0")); err != nil {
		t.Fatalf("evicted event refused: %v", err)
	}
}

// The cap is per source: a source flooding distinct events evicts its own
// oldest records, never another source's; records survive a reload with
// their source.
func TestDedupeCapPerSource(t *testing.T) {
	b, _ := openBolt(t)
	clk := newClock()
	ctx := t.Context()
	d := NewDeduper(b, time.Hour, 20, clk.now)
	commit := func(d *Deduper, src, id string) {
		t.Helper()
		ev := genEvent(id)
		ev.Source = src
		c, err := d.Claim(ctx, ev)
		if err != nil {
			t.Fatalf("%s/%s: %v", src, id, err)
		}
		if err := c.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		clk.advance(time.Millisecond)
	}
	for i := range 10 {
		commit(d, "quiet", fmt.Sprint(i))
	}
	for i := range 200 {
		commit(d, "noisy", fmt.Sprint(i))
	}
	dupOf := func(d *Deduper, src, id string) bool {
		ev := genEvent(id)
		ev.Source = src
		c, err := d.Claim(ctx, ev)
		if err == nil {
			c.Release()
		}
		return errors.Is(err, ErrDuplicate)
	}
	for i := range 10 {
		if !dupOf(d, "quiet", fmt.Sprint(i)) {
			t.Fatalf("quiet/%d was evicted by another source's flood", i)
		}
	}
	if !dupOf(d, "noisy", "199") || dupOf(d, "noisy", "0") {
		t.Fatal("the noisy source's cap keeps the wrong records")
	}
	if n := d.Len(); n > 30 {
		t.Fatalf("%d records, want at most 20 + 10", n)
	}
	// A new Deduper over the same storage (a restart) knows the sources of
	// the stored records.
	d2 := NewDeduper(b, time.Hour, 20, clk.now)
	for i := range 30 {
		commit(d2, "noisy", fmt.Sprint(1000+i))
	}
	for i := range 10 {
		if !dupOf(d2, "quiet", fmt.Sprint(i)) {
			t.Fatalf("after reload, quiet/%d was evicted by another source", i)
		}
	}
}

func TestRateLimitNoLoss(t *testing.T) {
	b, _ := openBolt(t)
	clk := newClock()
	ctx := t.Context()
	src := Source{Name: "gen", Kinds: []Kind{KindGeneric}, Auth: Auth{Method: AuthBearer},
		RateLimit: RateLimit{PerSecond: 2, Burst: 5}}.WithSecret(testSecret)
	in := NewIntake(NewDeduper(b, time.Hour, 0, clk.now), NewLimiter(), clk.now)

	// A flood of 40 distinct events, one per request, each retried (as
	// Alertmanager retries) until accepted: every one is processed once.
	processed := map[string]int{}
	pending := make([]string, 40)
	for i := range pending {
		pending[i] = fmt.Sprintf("ev-%02d", i)
	}
	limited := 0
	for rounds := 0; len(pending) > 0; rounds++ {
		if rounds > 1000 {
			t.Fatalf("never drained; %d pending", len(pending))
		}
		var retry []string
		for _, id := range pending {
			adm, _, err := in.Admit(ctx, src, []Event{genEvent(id)})
			var rl *RateLimitedError
			if errors.As(err, &rl) {
				if !errors.Is(err, ErrRateLimited) || rl.RetryAfter <= 0 || rl.RetryAfterSeconds() < 1 || rl.Source != "gen" {
					t.Fatalf("bad rate-limit error: %+v", rl)
				}
				limited++
				retry = append(retry, id)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range adm {
				processed[a.Event.ID]++
				if err := a.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		pending = retry
		clk.advance(time.Second)
	}
	if limited == 0 {
		t.Fatal("flood never limited")
	}
	if len(processed) != 40 {
		t.Fatalf("processed %d distinct events, want 40", len(processed))
	}
	for id, n := range processed {
		if n != 1 {
			t.Fatalf("%s processed %d times", id, n)
		}
	}
}

func TestRateLimitBatch(t *testing.T) {
	clk := newClock()
	l := NewLimiter()
	src := Source{Name: "am", RateLimit: RateLimit{PerSecond: 1, Burst: 3}}
	// A group larger than the burst passes an idle bucket...
	if err := l.Take(src, 10, clk.now()); err != nil {
		t.Fatalf("large batch on idle bucket: %v", err)
	}
	// ...and empties it: the next request must wait about 3s.
	err := l.Take(src, 1, clk.now())
	var rl *RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfterSeconds() != 1 || rl.Events != 1 {
		t.Fatalf("after batch: %v", err)
	}
	clk.advance(time.Second)
	if err := l.Take(src, 1, clk.now()); err != nil {
		t.Fatalf("after refill: %v", err)
	}
	// A refused request charges nothing.
	if err := l.Take(src, 3, clk.now()); err == nil {
		t.Fatal("3 events with an empty bucket accepted")
	}
	clk.advance(time.Second)
	if err := l.Take(src, 1, clk.now()); err != nil {
		t.Fatalf("refused request was charged: %v", err)
	}
	// Changing the limit resets the bucket.
	src.RateLimit = RateLimit{PerSecond: 100, Burst: 100}
	if err := l.Take(src, 50, clk.now()); err != nil {
		t.Fatalf("after raising the limit: %v", err)
	}
}

func TestAdmitKindNotAllowed(t *testing.T) {
	b, _ := openBolt(t)
	in := NewIntake(NewDeduper(b, 0, 0, nil), NewLimiter(), nil)
	_, _, err := in.Admit(t.Context(), bearerSource(), []Event{genEvent("x")})
	if !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("generic event from an alertmanager-only source: %v", err)
	}
}

// A payload that carries the same alert twice admits it once, counts the
// repeat as a duplicate, and admits the distinct alerts beside it, instead
// of colliding with its own claim (ErrInFlight, 503 forever).
func TestAdmitRepeatWithinPayload(t *testing.T) {
	b, _ := openBolt(t)
	in := NewIntake(NewDeduper(b, 0, 0, nil), NewLimiter(), nil)
	src := Source{Name: "gen", Kinds: []Kind{KindGeneric}}
	got, dups, err := in.Admit(t.Context(), src, []Event{genEvent("a"), genEvent("b"), genEvent("a")})
	if err != nil || len(got) != 2 || dups != 1 || got[0].Event.ID != "a" || got[1].Event.ID != "b" {
		t.Fatalf("admit: %d admitted, %d duplicates, %v; want a and b, 1 duplicate", len(got), dups, err)
	}
	for _, a := range got {
		if err := a.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// Sent again: every event is now a duplicate.
	got, dups, err = in.Admit(t.Context(), src, []Event{genEvent("a"), genEvent("b"), genEvent("a")})
	if err != nil || len(got) != 0 || dups != 3 {
		t.Fatalf("resend: %d admitted, %d duplicates, %v", len(got), dups, err)
	}
}

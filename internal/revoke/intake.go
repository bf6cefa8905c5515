package revoke

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Intake admits parsed events from an authenticated source: it stamps them,
// drops duplicates and charges the rest to the source's rate limit. Safe
// for concurrent use.
type Intake struct {
	dedupe *Deduper
	limits *Limiter
	now    func() time.Time
}

// NewIntake returns an Intake using d for duplicates and l for rate limits.
// now nil means time.Now.
func NewIntake(d *Deduper, l *Limiter, now func() time.Time) *Intake {
	if now == nil {
		now = time.Now
	}
	return &Intake{dedupe: d, limits: l, now: now}
}

// Admitted is one new event accepted by Admit, claimed for processing.
// Call Commit once its actions ran (it is then never processed again
// within the dedupe TTL), or Release if they failed (a retry processes it).
type Admitted struct {
	Event Event
	claim *Claim
}

// Commit records the event as processed.
func (a Admitted) Commit(ctx context.Context) error { return a.claim.Commit(ctx) }

// Release gives the event up so that a retry processes it.
func (a Admitted) Release() { a.claim.Release() }

// Admit sets Source and ReceivedAt on events, claims each one with the
// deduper, and charges the new ones to src's rate limit, all or nothing.
//
// It returns the new events and how many were duplicates (committed
// earlier, or repeated within events: an event whose DedupeKey an earlier
// one of the same request has is counted as a duplicate and not claimed
// again, so a payload carrying one alert twice does not collide with its
// own claim). If the source is over its limit, every claim is released and
// the error is a *RateLimitedError (Retry-After): no event is lost, as the
// sender retries the whole request and the events still count as new. If
// an event is in flight in another request, every claim is released too
// and the error matches ErrInFlight (503 with Retry-After): that request may
// still fail, so this one must not be acknowledged as delivered. src must
// already be authenticated and allowed to send events of their kind.
func (in *Intake) Admit(ctx context.Context, src Source, events []Event) (admitted []Admitted, duplicates int, err error) {
	now := in.now()
	release := func() {
		for _, a := range admitted {
			a.Release()
		}
	}
	seen := make(map[string]bool, len(events))
	for i := range events {
		ev := events[i]
		if !src.Allows(ev.Kind) {
			release()
			return nil, 0, fmt.Errorf("events[%d]: %w: source %q may not send %s events", i, ErrUnauthenticated, src.Name, ev.Kind)
		}
		ev.Source = src.Name
		ev.ReceivedAt = now
		key := ev.DedupeKey()
		if seen[key] {
			duplicates++
			continue
		}
		seen[key] = true
		c, err := in.dedupe.Claim(ctx, ev)
		if errors.Is(err, ErrDuplicate) {
			duplicates++
			continue
		}
		if err != nil {
			release()
			return nil, 0, fmt.Errorf("events[%d]: %w", i, err)
		}
		admitted = append(admitted, Admitted{Event: ev, claim: c})
	}
	if err := in.limits.Take(src, len(admitted), now); err != nil {
		release()
		return nil, duplicates, err
	}
	return admitted, duplicates, nil
}

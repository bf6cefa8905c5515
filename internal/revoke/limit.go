package revoke

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ErrRateLimited is matched (errors.Is) by a *RateLimitedError.
var ErrRateLimited = errors.New("revoke: source rate limited")

// RateLimitedError is returned by Limiter.Take and Intake.Admit when a
// source sends faster than its RateLimit. Nothing of the request was
// accepted or remembered, and the sender must retry it, so a flood is
// slowed down, never thinned out. The endpoint answers with a Retry-After
// header of RetryAfterSeconds and a status the sender retries:
//
//   - Alertmanager (0.25) retries a failed webhook delivery within the
//     notification only on 5xx; a 429 is an unrecoverable error after which
//     the group waits for its next group_interval (5 min by default), and
//     an alert that resolves meanwhile never delivers its firing. Its
//     endpoint therefore answers 503 Service Unavailable.
//   - CloudEvents and generic senders get 429 Too Many Requests, the status
//     HTTP clients and webhook libraries know to back off on.
type RateLimitedError struct {
	// Source is the source that was limited.
	Source string
	// Events is how many events the refused request held.
	Events int
	// RetryAfter is when the request would be accepted, from now.
	RetryAfter time.Duration
}

// Error describes the refusal.
func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("revoke: source %q rate limited: %d events, retry after %s", e.Source, e.Events, e.RetryAfter)
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// RetryAfterSeconds is RetryAfter rounded up to whole seconds, at least 1,
// for the Retry-After header.
func (e *RateLimitedError) RetryAfterSeconds() int {
	s := int(math.Ceil(e.RetryAfter.Seconds()))
	return max(s, 1)
}

// Limiter holds one token bucket per source, in memory. Safe for concurrent
// use. A bucket is rebuilt (full) when its source's RateLimit changes.
type Limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	cfg RateLimit
	lim *rate.Limiter
}

// NewLimiter returns a Limiter with no buckets.
func NewLimiter() *Limiter {
	return &Limiter{buckets: map[string]*bucket{}}
}

// Take charges n events to src at time now, all or nothing. A request of
// more than Burst events is charged Burst, so a single large Alertmanager
// group can always get through an idle bucket; the parsers bound what one
// request may hold (MaxAlerts), which bounds that discount. If the bucket does not hold
// enough tokens, nothing is charged and a *RateLimitedError says when to
// retry.
func (l *Limiter) Take(src Source, n int, now time.Time) error {
	if n <= 0 {
		return nil
	}
	cfg := src.RateLimit.effective()
	l.mu.Lock()
	b := l.buckets[src.Name]
	if b == nil || b.cfg != cfg {
		b = &bucket{cfg: cfg, lim: rate.NewLimiter(rate.Limit(cfg.PerSecond), cfg.Burst)}
		l.buckets[src.Name] = b
	}
	l.mu.Unlock()
	cost := min(n, cfg.Burst)
	r := b.lim.ReserveN(now, cost)
	if !r.OK() {
		return &RateLimitedError{Source: src.Name, Events: n, RetryAfter: time.Second}
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return &RateLimitedError{Source: src.Name, Events: n, RetryAfter: d}
	}
	return nil
}

// Forget drops src's bucket, e.g. when the source is deleted.
func (l *Limiter) Forget(name string) {
	l.mu.Lock()
	delete(l.buckets, name)
	l.mu.Unlock()
}

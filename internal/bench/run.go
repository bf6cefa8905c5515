package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Run validates cfg, prepares the server (kv-read and mixed write their Keys
// secrets first; pki-issue and db-creds mount and configure their engine,
// see OpPKIIssue and OpDBCreds), runs the workers for cfg.Warmup without measuring, then
// for cfg.Duration while measuring, and returns what it measured. It stops by
// itself: requests still in flight when the window closes are waited for at
// most cfg.Timeout, then counted as errors.
//
// Cancelling ctx stops the run early: Run then returns the partial Result
// together with an error wrapping ctx.Err(). Requests cut short by the
// cancellation are not counted. An error during setup fails the run.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	t, err := newTarget(cfg)
	if err != nil {
		return Result{}, err
	}
	if cfg.Op == OpFill {
		start := time.Now()
		if err := t.setup(ctx, cfg.Concurrency); err != nil {
			return Result{}, fmt.Errorf("fill of %d keys: %w", t.keys, err)
		}
		return Result{Op: cfg.Op, Concurrency: cfg.Concurrency, Elapsed: time.Since(start), Ops: int64(t.keys)}, nil
	}
	if err := t.prepare(ctx, cfg); err != nil {
		return Result{}, fmt.Errorf("setup of %s at %s/: %w", cfg.Op, t.mount, err)
	}
	if cfg.Op == OpKVRead || cfg.Op == OpMixed {
		if err := t.setup(ctx, cfg.Concurrency); err != nil {
			return Result{}, fmt.Errorf("setup of %d keys: %w", t.keys, err)
		}
	}
	return t.run(ctx, cfg)
}

// setup writes every key once, from up to workers goroutines, and stops at
// the first failure.
func (t *target) setup(ctx context.Context, workers int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next    atomic.Int64
		errOnce sync.Once
		failure error
		wg      sync.WaitGroup
	)
	for range min(workers, t.keys) {
		w := t.newWorker(ctx, nil)
		wg.Go(func() {
			defer w.close()
			for {
				i := int(next.Add(1) - 1)
				if i >= t.keys || ctx.Err() != nil {
					return
				}
				if err := w.do(kindWrite, i, time.Now().Add(t.timeout)); err != nil {
					errOnce.Do(func() { failure = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if failure != nil {
		return failure
	}
	return ctx.Err()
}

// run drives the workers through warm-up and the measured window.
func (t *target) run(ctx context.Context, cfg Config) (Result, error) {
	seed := cfg.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	perWorker := sampleCapacity(cfg)
	workers := make([]*worker, cfg.Concurrency)
	for i := range workers {
		workers[i] = t.newWorker(ctx, rand.New(rand.NewPCG(seed, uint64(i))))
		workers[i].lat = make([]time.Duration, 0, perWorker)
	}
	start := time.Now()
	measureStart := start.Add(cfg.Warmup)
	end := measureStart.Add(cfg.Duration)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			defer w.close()
			w.loop(measureStart, end, end.Add(cfg.Timeout))
		})
	}
	wg.Wait()
	stopped := time.Now()

	res := Result{Op: cfg.Op, Concurrency: cfg.Concurrency}
	if stopped.After(end) {
		stopped = end
	}
	res.Elapsed = max(0, stopped.Sub(measureStart))
	samples := make([][]time.Duration, len(workers))
	for i, w := range workers {
		samples[i] = w.lat
		res.Ops += int64(len(w.lat))
		res.Errors += w.errs
	}
	res.summarize(samples)
	res.FirstError = t.first.get()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench interrupted: %w", err)
	}
	return res, nil
}

// sampleCapacity guesses how many samples one worker records (up to 200,000
// requests/s in all), so the hot path rarely grows its slice; it never
// preallocates more than 64 MiB in all.
func sampleCapacity(cfg Config) int {
	const rate, maxTotal = 200_000, 1 << 23
	est := int(cfg.Duration.Seconds()*rate) / cfg.Concurrency
	return max(1024, min(est, maxTotal/cfg.Concurrency))
}

// loop runs requests until end. Requests that finished before measureStart
// are the warm-up and are not recorded; deadline bounds every request.
func (w *worker) loop(measureStart, end, deadline time.Time) {
	for {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		k, key := w.next()
		err := w.do(k, key, deadline)
		if k == kindCreds && err == nil {
			err = w.do(kindRevoke, 0, deadline)
		}
		if err != nil && w.ctx.Err() != nil {
			return // cancelled: neither an op nor an error
		}
		t1 := time.Now()
		if t1.Before(measureStart) {
			continue
		}
		w.lat = append(w.lat, t1.Sub(t0))
		if err != nil {
			w.errs++
			w.t.first.set(err)
		}
	}
}

// next picks the next request according to the operation.
func (w *worker) next() (kind, int) {
	key := w.rng.IntN(w.t.keys)
	switch w.t.op {
	case OpKVWrite:
		return kindWrite, key
	case OpTokenCreate:
		return kindToken, 0
	case OpPKIIssue:
		return kindIssue, key
	case OpDBCreds:
		return kindCreds, 0
	case OpMixed:
		if w.rng.IntN(10) == 0 {
			return kindWrite, key
		}
	}
	return kindRead, key
}

// firstError keeps the message of the first error of the window.
type firstError struct {
	claimed atomic.Bool
	msg     atomic.Pointer[string]
}

func (f *firstError) set(err error) {
	if f.claimed.CompareAndSwap(false, true) {
		m := err.Error()
		f.msg.Store(&m)
	}
}

func (f *firstError) get() string {
	if m := f.msg.Load(); m != nil {
		return *m
	}
	return ""
}

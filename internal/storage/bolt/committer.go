package bolt

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
	"go.etcd.io/bbolt"
)

// Request states. A request moves from queued to exactly one of taken (by
// the committer) or abandoned (by its caller whose context ended).
const (
	stateQueued uint32 = iota
	stateTaken
	stateAbandoned
)

// request is one write call waiting for the committer.
type request struct {
	ops   []storage.Op
	state atomic.Uint32
	done  chan error // buffered: the committer never blocks on a caller
}

func newRequest(ops []storage.Op) *request {
	return &request{ops: ops, done: make(chan error, 1)}
}

// take claims a queued request for a transaction. It fails if the caller
// abandoned it first.
func (r *request) take() bool { return r.state.CompareAndSwap(stateQueued, stateTaken) }

// abandon withdraws a request the committer has not taken yet. It fails if
// the request is already in a transaction.
func (r *request) abandon() bool { return r.state.CompareAndSwap(stateQueued, stateAbandoned) }

// committer owns every bbolt write transaction. Callers enqueue requests;
// run commits them in groups.
type committer struct {
	db       *bbolt.DB
	log      *slog.Logger
	maxBatch int

	mu      sync.Mutex
	queue   []*request
	stopped bool

	wake chan struct{} // capacity 1: "the queue may be non-empty"
	done chan struct{} // closed when run returns

	commits  atomic.Uint64
	requests atomic.Uint64
	taken    atomic.Uint64 // requests taken into a transaction, committed or not
}

func newCommitter(db *bbolt.DB, opts Options) *committer {
	return &committer{
		db:       db,
		log:      opts.Logger,
		maxBatch: opts.MaxBatch,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
}

// enqueue adds r to the queue, or returns storage.ErrClosed after stop.
func (c *committer) enqueue(r *request) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return storage.ErrClosed
	}
	c.queue = append(c.queue, r)
	c.mu.Unlock()
	c.signal()
	return nil
}

func (c *committer) signal() {
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// stop refuses new requests and waits until run has committed every
// request queued before it.
func (c *committer) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.signal()
	<-c.done
}

// run is the committer goroutine: it commits whatever is queued as soon as
// the previous commit is done (after gathering, see gather), and returns once
// stopped with an empty queue.
func (c *committer) run() {
	defer close(c.done)
	var last commitInfo
	for {
		c.gather(last)
		batch, stopped := c.next()
		if len(batch) > 0 {
			start := time.Now()
			c.commit(batch)
			last = commitInfo{size: len(batch), took: time.Since(start)}
			continue
		}
		if stopped {
			return
		}
		<-c.wake
	}
}

// commitInfo describes the previous commit.
type commitInfo struct {
	size int           // requests in it
	took time.Duration // how long applying and fsyncing it took
}

// maxGather bounds the time gather waits.
const maxGather = time.Millisecond

// gather waits, before a commit, for the writers acknowledged by the previous
// commit to come back: while fewer requests are queued than the previous
// commit held, it waits up to half that commit's duration (at most
// maxGather). Without it, the first writer to come back is committed alone
// and the others queue behind that commit, so under steady concurrent load
// most batches are tiny and the fsyncs are wasted. A lone writer (previous
// batch of one) never waits.
func (c *committer) gather(last commitInfo) {
	want := min(last.size, c.maxBatch)
	if last.size <= 1 {
		return
	}
	deadline := time.Now().Add(min(last.took/2, maxGather))
	var timer *time.Timer
	for {
		c.mu.Lock()
		n, stopped := len(c.queue), c.stopped
		c.mu.Unlock()
		wait := time.Until(deadline)
		if n >= want || stopped || wait <= 0 {
			if timer != nil {
				timer.Stop()
			}
			return
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-c.wake:
		case <-timer.C:
		}
	}
}

// next removes up to maxBatch requests from the head of the queue.
func (c *committer) next() ([]*request, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := min(len(c.queue), c.maxBatch)
	if n == 0 {
		return nil, c.stopped
	}
	batch := make([]*request, n)
	copy(batch, c.queue)
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:]) // drop references to handed-out requests
	c.queue = c.queue[:rest]
	return batch, c.stopped
}

// commit applies the live requests of batch in one transaction and
// acknowledges each. If that transaction fails, each request is retried in
// a transaction of its own so that only the failing ones see an error.
func (c *committer) commit(batch []*request) {
	live := batch[:0]
	for _, r := range batch {
		if r.take() {
			live = append(live, r)
		}
	}
	c.taken.Add(uint64(len(live)))
	if len(live) == 0 {
		return
	}
	err := c.update(live)
	if err == nil {
		for _, r := range live {
			r.done <- nil
		}
		return
	}
	if len(live) == 1 {
		c.log.Error("bolt commit failed", "err", err)
		live[0].done <- err
		return
	}
	c.log.Warn("bolt group commit failed; retrying each request alone", "requests", len(live), "err", err)
	for _, r := range live {
		err := c.update([]*request{r})
		if err != nil {
			c.log.Error("bolt commit failed", "err", err)
		}
		r.done <- err
	}
}

// update runs one bbolt write transaction holding reqs, in order, and counts
// it if it commits.
func (c *committer) update(reqs []*request) error {
	err := c.db.Update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketName)
		for _, r := range reqs {
			if err := apply(bk, r.ops); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	c.commits.Add(1)
	c.requests.Add(uint64(len(reqs)))
	return nil
}

// apply performs ops in bk. The ops were validated when queued.
func apply(bk *bbolt.Bucket, ops []storage.Op) error {
	for _, op := range ops {
		var err error
		if op.Kind == storage.OpPut {
			err = bk.Put([]byte(op.Key), op.Value)
		} else {
			err = bk.Delete([]byte(op.Key))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

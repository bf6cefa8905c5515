package lease

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
)

// enqueue adds (due, id) to the expiry queue and wakes the loop if the new
// entry is the earliest.
func (m *Manager) enqueue(due time.Time, id string) {
	ns := max(due.UnixNano(), 0)
	m.mu.Lock()
	m.q.push(entry{due: ns, id: id})
	first := m.q[0].due == ns
	m.mu.Unlock()
	if first {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// QueueLen returns the number of entries in the in-memory expiry queue
// (stale entries of renewed or revoked leases included until they pop).
func (m *Manager) QueueLen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.q)
}

// Start rebuilds the expiry queue from storage (one List of the due/
// index; no lease record is read), then runs expiry until ctx is done or
// Stop is called: each lease is revoked when due, and those already due
// (expired while the server was down, or retries) right away. It returns
// once the queue is rebuilt; an error means nothing was started.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return ErrStarted
	}
	m.started = true
	m.mu.Unlock()

	names, err := m.cfg.Store.List(ctx, pfxDue)
	if err != nil {
		m.mu.Lock()
		m.started = false
		m.mu.Unlock()
		return fmt.Errorf("lease: start: list due index: %w", err)
	}
	h := make(dueHeap, 0, len(names)+len(names)/8)
	for i, n := range names {
		ns, id, err := parseDueName(n)
		if err != nil {
			// A bad index key must not stop expiry of every other lease.
			m.cfg.Logger.Error("lease: skipping corrupt due index key; run tidy", "error", err)
			continue
		}
		h = append(h, entry{due: ns, id: id})
		names[i] = "" // let the List result go as we copy out of it
	}
	m.mu.Lock()
	h = append(h, m.q...) // leases registered while we listed
	h.heapify()
	m.q = h
	m.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	work := make(chan entry)
	m.mu.Lock()
	m.cancel = cancel
	m.done.Add(1 + m.cfg.Workers)
	m.mu.Unlock()
	go m.loop(ctx, work)
	for range m.cfg.Workers {
		go m.worker(ctx, work)
	}
	return nil
}

// Stop ends expiry started by Start and waits for in-flight revocations.
func (m *Manager) Stop() {
	m.mu.Lock()
	cancel := m.cancel
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	m.done.Wait()
}

// loop hands due entries to the workers in due order.
func (m *Manager) loop(ctx context.Context, work chan<- entry) {
	defer m.done.Done()
	defer close(work)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		m.mu.Lock()
		wait := time.Hour
		var e entry
		ready := false
		if len(m.q) > 0 {
			if d := time.Duration(m.q[0].due - m.cfg.Now().UnixNano()); d <= 0 {
				e, ready = m.q.pop(), true
			} else {
				wait = min(d, wait)
			}
		}
		m.mu.Unlock()
		if ready {
			select {
			case work <- e:
				continue
			case <-ctx.Done():
				return
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		case <-timer.C:
		}
	}
}

func (m *Manager) worker(ctx context.Context, work <-chan entry) {
	defer m.done.Done()
	for e := range work {
		m.expire(ctx, e)
	}
}

// expire acts on a popped queue entry: stale entries (lease gone, or its
// due time moved later by a renewal, which queued a new entry) are dropped.
func (m *Manager) expire(ctx context.Context, e entry) {
	unlock := m.locks.Lock(e.id)
	defer unlock()
	l, err := m.load(ctx, e.id)
	if errors.Is(err, ErrNotFound) {
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			m.cfg.Logger.Error("lease: expiry: cannot read lease; retrying", "lease_id", e.id, "error", err)
			m.retrySoon(e.id)
		}
		return
	}
	if l.Due().UnixNano() > e.due {
		return
	}
	_ = m.revokeLocked(ctx, l) // failures are recorded, logged and re-queued
}

// TidyReport counts what Tidy repaired.
type TidyReport struct {
	// Leases is the number of lease records checked.
	Leases int
	// MissingDue counts leases that had no due/ key (re-added and queued).
	MissingDue int
	// StaleIndex counts due/, tok/ and fail/ keys removed because their
	// lease is gone or no longer matches them.
	StaleIndex int
	// Corrupt counts undecodable keys or records (left in place, logged).
	Corrupt int
}

// Tidy checks every lease against its index keys and repairs them, as
// Vault's sys/leases/tidy cleans invalid entries. It reads every record,
// so it is an operator action, not part of normal operation.
func (m *Manager) Tidy(ctx context.Context) (TidyReport, error) {
	var rep TidyReport
	// Index keys pointing to missing or changed leases.
	dues, err := m.cfg.Store.List(ctx, pfxDue)
	if err != nil {
		return rep, fmt.Errorf("lease: tidy: %w", err)
	}
	dueSet := make(map[string]struct{}, len(dues))
	for _, n := range dues {
		_, id, err := parseDueName(n)
		if err != nil {
			rep.Corrupt++
			m.cfg.Logger.Error("lease: tidy: corrupt due key", "error", err)
			continue
		}
		if err := m.tidyKey(ctx, &rep, id, pfxDue+n, func(l *Lease) bool { return dueKey(l) == pfxDue+n }); err != nil {
			return rep, err
		}
		dueSet[pfxDue+n] = struct{}{}
	}
	for _, idx := range []string{pfxFail, pfxTok} {
		if err := m.tidyIndex(ctx, &rep, idx); err != nil {
			return rep, err
		}
	}
	// Leases without their due key.
	err = m.walk(ctx, "", func(id string) error {
		rep.Leases++
		unlock := m.locks.Lock(id)
		defer unlock()
		l, err := m.load(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil
		case errors.Is(err, ErrCorrupt):
			rep.Corrupt++
			m.cfg.Logger.Error("lease: tidy: corrupt lease record", "error", err)
			return nil
		case err != nil:
			return err
		}
		if _, ok := dueSet[dueKey(l)]; ok {
			return nil
		}
		if _, err := m.cfg.Store.Get(ctx, dueKey(l)); err == nil {
			return nil // written after we listed
		}
		rep.MissingDue++
		if err := m.cfg.Store.Put(ctx, dueKey(l), []byte{}); err != nil {
			return fmt.Errorf("lease: tidy %q: %w", id, err)
		}
		m.enqueue(l.Due(), id)
		return nil
	})
	return rep, err
}

// tidyIndex checks fail/<b64> or tok/<acc>/<b64> keys.
func (m *Manager) tidyIndex(ctx context.Context, rep *TidyReport, pfx string) error {
	dirs := []string{pfx}
	if pfx == pfxTok {
		accs, err := m.cfg.Store.List(ctx, pfxTok)
		if err != nil {
			return fmt.Errorf("lease: tidy: %w", err)
		}
		dirs = dirs[:0]
		for _, a := range accs {
			dirs = append(dirs, pfxTok+a)
		}
	}
	for _, dir := range dirs {
		names, err := m.cfg.Store.List(ctx, dir)
		if err != nil {
			return fmt.Errorf("lease: tidy: %w", err)
		}
		for _, n := range names {
			raw, err := b64.DecodeString(n)
			if err != nil || strings.HasSuffix(n, "/") {
				rep.Corrupt++
				continue
			}
			id, key := string(raw), dir+n
			match := func(l *Lease) bool { return l.Failing() }
			if pfx == pfxTok {
				match = func(l *Lease) bool { return tokKey(l.TokenAccessor, l.ID) == key }
			}
			if err := m.tidyKey(ctx, rep, id, key, match); err != nil {
				return err
			}
		}
	}
	return nil
}

// tidyKey deletes index key if lease id is gone or !match(lease).
func (m *Manager) tidyKey(ctx context.Context, rep *TidyReport, id, key string, match func(*Lease) bool) error {
	unlock := m.locks.Lock(id)
	defer unlock()
	l, err := m.load(ctx, id)
	switch {
	case err == nil && match(l):
		return nil
	case err == nil, errors.Is(err, ErrNotFound):
		rep.StaleIndex++
		if err := m.cfg.Store.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("lease: tidy: delete %q: %w", key, err)
		}
		return nil
	case errors.Is(err, ErrCorrupt):
		rep.Corrupt++
		return nil
	default:
		return err
	}
}

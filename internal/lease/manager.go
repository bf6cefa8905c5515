package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
)

// Manager keeps the leases of one zone. Create it with New; call Start to
// run expiry. All methods are safe for concurrent use.
type Manager struct {
	cfg   Config
	locks *idLocks

	mu      sync.Mutex
	q       dueHeap
	started bool
	wake    chan struct{}

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// New validates cfg and returns a Manager. It reads nothing from storage;
// Start does.
func New(cfg Config) (*Manager, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Manager{cfg: c, locks: newIDLocks(), wake: make(chan struct{}, 1)}, nil
}

// Register validates l, completes it and stores it durably, then queues
// its expiry. The caller sets Path, TTL, and optionally ID (else generated
// as Path+"/"+24 characters, see newSuffix), MaxTTL (0 means Config.DefaultMaxTTL),
// IssueTime (zero means now), Renewable, TokenAccessor and Data. Failure
// fields are reset. It returns the lease as stored.
func (m *Manager) Register(ctx context.Context, l Lease) (Lease, error) {
	if err := m.validateNew(&l); err != nil {
		return Lease{}, err
	}
	generated := l.ID == ""
	if generated {
		suffix, err := newSuffix(m.cfg.Now(), m.cfg.Rand)
		if err != nil {
			return Lease{}, fmt.Errorf("lease: register %q: generate id: %w", l.Path, err)
		}
		l.ID = l.Path + "/" + suffix
	}
	if l.IssueTime.IsZero() {
		l.IssueTime = m.cfg.Now()
	}
	l.IssueTime = l.IssueTime.Round(0).UTC()
	l.ExpireTime = l.IssueTime.Add(l.TTL)
	l.Zone = m.cfg.Zone
	l.RevokeAttempts, l.LastError, l.NextAttempt, l.LastRenewal = 0, "", time.Time{}, time.Time{}

	unlock := m.locks.Lock(l.ID)
	defer unlock()
	if !generated { // a generated id has 95 random bits: no collision check
		switch _, err := m.cfg.Store.Get(ctx, idKey(l.ID)); {
		case err == nil:
			return Lease{}, fmt.Errorf("lease: register: id: %w: %q", ErrExists, l.ID)
		case !errors.Is(err, storage.ErrNotFound):
			return Lease{}, fmt.Errorf("lease: register %q: %w", l.ID, err)
		}
	}
	rec, err := json.Marshal(&l)
	if err != nil {
		return Lease{}, fmt.Errorf("lease: register %q: encode: %w", l.ID, err)
	}
	ops := []storage.Op{
		{Kind: storage.OpPut, Key: idKey(l.ID), Value: rec},
		{Kind: storage.OpPut, Key: dueKey(&l), Value: []byte{}},
	}
	if l.TokenAccessor != "" {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: tokKey(l.TokenAccessor, l.ID), Value: []byte{}})
	}
	if err := m.cfg.Store.Txn(ctx, ops); err != nil {
		return Lease{}, fmt.Errorf("lease: register %q: %w", l.ID, err)
	}
	m.enqueue(l.Due(), l.ID)
	return l, nil
}

func (m *Manager) validateNew(l *Lease) error {
	if err := checkID("path", l.Path); err != nil {
		return err
	}
	if l.ID != "" {
		if err := checkID("id", l.ID); err != nil {
			return err
		}
	} else if len(l.Path)+25 > MaxIDLen {
		return fmt.Errorf("%w: path: longer than %d bytes", ErrInvalid, MaxIDLen-25)
	}
	if l.TTL <= 0 {
		return fmt.Errorf("%w: ttl: must be positive, got %s", ErrInvalid, l.TTL)
	}
	if l.MaxTTL < 0 {
		return fmt.Errorf("%w: max_ttl: must not be negative, got %s", ErrInvalid, l.MaxTTL)
	}
	if l.MaxTTL == 0 {
		l.MaxTTL = m.cfg.DefaultMaxTTL
	}
	if l.TTL > l.MaxTTL {
		return fmt.Errorf("%w: ttl: %s exceeds max_ttl %s", ErrInvalid, l.TTL, l.MaxTTL)
	}
	if a := l.TokenAccessor; a != "" && (len(a) > 256 || strings.ContainsAny(a, "/\x00")) {
		return fmt.Errorf("%w: token_accessor: must be at most 256 bytes without '/' or NUL", ErrInvalid)
	}
	if len(l.Data) > MaxDataLen {
		return fmt.Errorf("%w: data: %d bytes exceeds %d", ErrInvalid, len(l.Data), MaxDataLen)
	}
	if len(l.Data) > 0 && !json.Valid(l.Data) {
		return fmt.Errorf("%w: data: not valid JSON", ErrInvalid)
	}
	return nil
}

// idAlphabet is base62 in ASCII order, so encoded numbers sort as strings.
const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newSuffix returns a 24-character base62 lease id suffix: 8 characters of
// the issue time in milliseconds, then 16 random ones (≈95 bits, drawn
// without modulo bias). The time prefix makes ids under one path sort by
// issue time, so a B+tree backend appends new leases to the same pages
// instead of dirtying a random page per lease (lease ids are handles, not
// secrets: Vault's lookup shows the issue time anyway).
func newSuffix(now time.Time, r io.Reader) (string, error) {
	out := make([]byte, 8, 24)
	ms := uint64(max(now.UnixMilli(), 0))
	for i := 7; i >= 0; i-- {
		out[i] = idAlphabet[ms%62]
		ms /= 62
	}
	var buf [32]byte
	for len(out) < 24 {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b < 248 && len(out) < 24 { // 248 = 4*62
				out = append(out, idAlphabet[b%62])
			}
		}
	}
	return string(out), nil
}

// Lookup returns the lease with id, or an error matching ErrNotFound.
func (m *Manager) Lookup(ctx context.Context, id string) (Lease, error) {
	if err := checkID("lease_id", id); err != nil {
		return Lease{}, err
	}
	l, err := m.load(ctx, id)
	if err != nil {
		return Lease{}, err
	}
	return *l, nil
}

func (m *Manager) load(ctx context.Context, id string) (*Lease, error) {
	raw, err := m.cfg.Store.Get(ctx, idKey(id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("lease_id: %w: %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("lease %q: %w", id, err)
	}
	return decodeLease(id, raw)
}

// List returns the names one level under prefix, as Vault's LIST
// sys/leases/lookup/<prefix>: lease id suffixes and sub-paths ending in "/".
// prefix "" lists the top level (mounts).
func (m *Manager) List(ctx context.Context, prefix string) ([]string, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	names, err := m.cfg.Store.List(ctx, pfxID+prefix)
	if err != nil {
		return nil, fmt.Errorf("lease: list %q: %w", prefix, err)
	}
	return names, nil
}

// Renew extends lease id by increment from now (0 means the lease's TTL),
// capped at IssueTime+MaxTTL, after the engine's Renewer (if it has one)
// accepts the new expiry. It returns the renewed lease; when the cap cut
// the increment, ExpireTime shows it (Vault answers with a warning).
func (m *Manager) Renew(ctx context.Context, id string, increment time.Duration) (Lease, error) {
	if err := checkID("lease_id", id); err != nil {
		return Lease{}, err
	}
	if increment < 0 {
		return Lease{}, fmt.Errorf("%w: increment: must not be negative, got %s", ErrInvalid, increment)
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	l, err := m.load(ctx, id)
	if err != nil {
		return Lease{}, err
	}
	now := m.cfg.Now()
	switch {
	case !l.Renewable:
		return Lease{}, fmt.Errorf("lease %q: %w", id, ErrNotRenewable)
	case l.Failing() || !now.Before(l.ExpireTime):
		return Lease{}, fmt.Errorf("lease %q: %w", id, ErrExpired)
	}
	if increment == 0 {
		increment = l.TTL
	}
	newExp := now.Add(increment)
	if capAt := l.MaxExpire(); newExp.After(capAt) {
		newExp = capAt
	}
	newExp = newExp.Round(0).UTC()
	r := m.cfg.Revokers(l.Path)
	if r == nil {
		return Lease{}, fmt.Errorf("lease %q: renew: %w %q", id, ErrNoRevoker, l.Path)
	}
	if rn, ok := r.(Renewer); ok {
		cctx, cancel := m.cfg.ctxTimeout(ctx)
		err := rn.Renew(cctx, *l, newExp)
		cancel()
		if err != nil {
			return Lease{}, fmt.Errorf("lease %q: renew: engine: %w", id, err)
		}
	}
	oldDue := dueKey(l)
	l.ExpireTime, l.LastRenewal = newExp, now.Round(0).UTC()
	if err := m.rewrite(ctx, l, oldDue, nil); err != nil {
		return Lease{}, fmt.Errorf("lease %q: renew: %w", id, err)
	}
	return *l, nil
}

// rewrite stores l, moves its due/ key from oldDue, applies extra ops, and
// queues the new due time.
func (m *Manager) rewrite(ctx context.Context, l *Lease, oldDue string, extra []storage.Op) error {
	rec, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	ops := append([]storage.Op{{Kind: storage.OpPut, Key: idKey(l.ID), Value: rec}}, extra...)
	if nd := dueKey(l); nd != oldDue {
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: oldDue}, storage.Op{Kind: storage.OpPut, Key: nd, Value: []byte{}})
	}
	if err := m.cfg.Store.Txn(ctx, ops); err != nil {
		return err
	}
	m.enqueue(l.Due(), l.ID)
	return nil
}

// deleteOps removes l and all its index keys.
func deleteOps(l *Lease) []storage.Op {
	ops := []storage.Op{
		{Kind: storage.OpDelete, Key: idKey(l.ID)},
		{Kind: storage.OpDelete, Key: dueKey(l)},
		{Kind: storage.OpDelete, Key: failKey(l.ID)},
	}
	if l.TokenAccessor != "" {
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: tokKey(l.TokenAccessor, l.ID)})
	}
	return ops
}

// Revoke revokes lease id now: the engine undoes the secret, then the lease
// is deleted. If the engine fails, the lease is kept, marked failing and
// retried with backoff, and the error matches ErrRevokeFailed.
func (m *Manager) Revoke(ctx context.Context, id string) error {
	if err := checkID("lease_id", id); err != nil {
		return err
	}
	unlock := m.locks.Lock(id)
	defer unlock()
	l, err := m.load(ctx, id)
	if err != nil {
		return err
	}
	return m.revokeLocked(ctx, l)
}

// revokeLocked revokes l, whose lock the caller holds.
func (m *Manager) revokeLocked(ctx context.Context, l *Lease) error {
	var err error
	if r := m.cfg.Revokers(l.Path); r == nil {
		err = fmt.Errorf("%w %q", ErrNoRevoker, l.Path)
	} else {
		cctx, cancel := m.cfg.ctxTimeout(ctx)
		err = r.Revoke(cctx, *l)
		cancel()
	}
	if err == nil {
		// The secret is gone: record it even if ctx ends now (Stop), rather
		// than revoking it again at the next Start.
		if err := m.cfg.Store.Txn(context.WithoutCancel(ctx), deleteOps(l)); err != nil {
			m.retrySoon(l.ID)
			return fmt.Errorf("lease %q: revoked by engine, delete failed: %w", l.ID, err)
		}
		return nil
	}
	if ctx.Err() != nil { // shutting down: not the engine's fault
		return fmt.Errorf("lease %q: revoke: %w", l.ID, ctx.Err())
	}
	oldDue := dueKey(l)
	l.RevokeAttempts++
	l.LastError = err.Error()
	if len(l.LastError) > 1024 {
		l.LastError = l.LastError[:1024]
	}
	l.NextAttempt = m.cfg.Now().Add(m.cfg.backoff(l.RevokeAttempts)).Round(0).UTC()
	m.cfg.Logger.Warn("lease revocation failed; will retry",
		"lease_id", l.ID, "path", l.Path, "attempts", l.RevokeAttempts, "next_attempt", l.NextAttempt, "error", err)
	extra := []storage.Op{{Kind: storage.OpPut, Key: failKey(l.ID), Value: []byte{}}}
	if werr := m.rewrite(ctx, l, oldDue, extra); werr != nil {
		m.retrySoon(l.ID)
		return fmt.Errorf("lease %q: %w: %w (and recording the failure: %v)", l.ID, ErrRevokeFailed, err, werr)
	}
	return fmt.Errorf("lease %q: %w: %w", l.ID, ErrRevokeFailed, err)
}

// retrySoon queues id again after RetryMin when storage failed while
// revoking it, so the queue does not lose a due lease until the next Start.
// (If the lease was not due, the extra entry is dropped as stale.)
func (m *Manager) retrySoon(id string) {
	m.enqueue(m.cfg.Now().Add(m.cfg.RetryMin), id)
}

// RevokePrefix revokes every lease whose id is prefix or starts with
// prefix+"/" (Vault's sys/leases/revoke-prefix). It tries them all and
// returns how many were revoked and the joined errors of the others
// (each matching ErrRevokeFailed; those leases are kept and retried).
func (m *Manager) RevokePrefix(ctx context.Context, prefix string) (int, error) {
	if err := checkID("prefix", strings.TrimSuffix(prefix, "/")); err != nil {
		return 0, err
	}
	ids, err := m.idsUnder(ctx, strings.TrimSuffix(prefix, "/"))
	if err != nil {
		return 0, err
	}
	return m.revokeAll(ctx, ids)
}

// RevokeByToken revokes every lease registered with TokenAccessor acc, now.
// Results as RevokePrefix.
func (m *Manager) RevokeByToken(ctx context.Context, acc string) (int, error) {
	ids, err := m.tokenLeases(ctx, acc)
	if err != nil {
		return 0, err
	}
	return m.revokeAll(ctx, ids)
}

// ExpireByToken makes every lease registered with TokenAccessor acc due now,
// durably, and leaves the revocations to the expiry workers (with their
// retries): the token revocation hook calls it, so revoking a token never
// waits on an engine, and a crash after it loses nothing. Leases are moved
// in transactions of expireBatch, so a token with many leases costs few
// writes. It returns how many leases it brought forward.
func (m *Manager) ExpireByToken(ctx context.Context, acc string) (int, error) {
	ids, err := m.tokenLeases(ctx, acc)
	if err != nil {
		return 0, err
	}
	now := m.cfg.Now().Round(0).UTC()
	slices.Sort(ids) // expireNow's lock order
	n := 0
	for start := 0; start < len(ids); start += expireBatch {
		moved, err := m.expireNow(ctx, ids[start:min(start+expireBatch, len(ids))], now)
		n += moved
		if err != nil {
			return n, fmt.Errorf("lease: expire leases of token: %w", err)
		}
	}
	return n, nil
}

// expireBatch bounds the leases ExpireByToken moves in one transaction.
const expireBatch = 256

// expireNow brings the expiry of the leases ids forward to now, in one
// transaction, and reports how many it moved (a lease already due, failing
// or gone is left as it is). ids are distinct and sorted; each lease's
// lock is held until the transaction is written. Every other path takes
// one lease lock at a time, and concurrent ExpireByToken calls take theirs
// in the same (sorted) order, so this cannot deadlock.
func (m *Manager) expireNow(ctx context.Context, ids []string, now time.Time) (int, error) {
	var ops []storage.Op
	var moved []*Lease
	for _, id := range ids {
		unlock := m.locks.Lock(id)
		defer unlock()
		l, err := m.load(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // revoked meanwhile
		}
		if err != nil {
			return 0, err
		}
		if l.Failing() || !l.ExpireTime.After(now) {
			continue
		}
		oldDue := dueKey(l)
		l.ExpireTime = now
		rec, err := json.Marshal(l)
		if err != nil {
			return 0, fmt.Errorf("encode lease %q: %w", id, err)
		}
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: idKey(l.ID), Value: rec},
			storage.Op{Kind: storage.OpDelete, Key: oldDue}, storage.Op{Kind: storage.OpPut, Key: dueKey(l), Value: []byte{}})
		moved = append(moved, l)
	}
	if len(ops) == 0 {
		return 0, nil
	}
	if err := m.cfg.Store.Txn(ctx, ops); err != nil {
		return 0, err
	}
	for _, l := range moved {
		m.enqueue(l.Due(), l.ID)
	}
	return len(moved), nil
}

// tokenLeases returns the ids of the leases registered with accessor acc.
func (m *Manager) tokenLeases(ctx context.Context, acc string) ([]string, error) {
	if acc == "" || len(acc) > 256 || strings.ContainsAny(acc, "/\x00") {
		return nil, fmt.Errorf("%w: accessor: must be 1 to 256 bytes without '/' or NUL", ErrInvalid)
	}
	names, err := m.cfg.Store.List(ctx, pfxTok+acc+"/")
	if err != nil {
		return nil, fmt.Errorf("lease: leases of token: %w", err)
	}
	ids := make([]string, 0, len(names))
	for _, n := range names {
		id, err := b64.DecodeString(n)
		if err != nil {
			return nil, fmt.Errorf("%w: token index key %q", ErrCorrupt, n)
		}
		ids = append(ids, string(id))
	}
	return ids, nil
}

func (m *Manager) revokeAll(ctx context.Context, ids []string) (int, error) {
	var errs []error
	n := 0
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return n, errors.Join(append(errs, err)...)
		}
		err := m.Revoke(ctx, id)
		switch {
		case err == nil:
			n++
		case errors.Is(err, ErrNotFound): // revoked meanwhile
		default:
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// RevokeForce deletes every lease under prefix (as RevokePrefix) whatever
// its engine says: the engine is asked to revoke (bounded by RevokeTimeout)
// but its errors are ignored, so the secrets may still be live. It is the
// operator's way out for a mount whose backend is gone for good (Vault's
// revoke-force). It returns the ids deleted so the caller can report them,
// and logs each one the engine could not revoke at Warn.
func (m *Manager) RevokeForce(ctx context.Context, prefix string) ([]string, error) {
	p := strings.TrimSuffix(prefix, "/")
	if err := checkID("prefix", p); err != nil {
		return nil, err
	}
	ids, err := m.idsUnder(ctx, p)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, id := range ids {
		unlock := m.locks.Lock(id)
		l, err := m.load(ctx, id)
		var engineErr error
		if err == nil {
			if r := m.cfg.Revokers(l.Path); r == nil {
				engineErr = fmt.Errorf("%w %q", ErrNoRevoker, l.Path)
			} else {
				cctx, cancel := m.cfg.ctxTimeout(ctx)
				engineErr = r.Revoke(cctx, *l)
				cancel()
			}
			err = m.cfg.Store.Txn(ctx, deleteOps(l))
		}
		unlock()
		switch {
		case err == nil:
			done = append(done, id)
			if engineErr != nil {
				m.cfg.Logger.Warn("lease force-revoked; its engine could not revoke the secret, which may still be live",
					"lease_id", id, "path", l.Path, "error", engineErr)
			}
		case errors.Is(err, ErrNotFound):
		default:
			return done, fmt.Errorf("lease: revoke-force %q: %w", id, err)
		}
	}
	return done, nil
}

// idsUnder returns the lease ids equal to p or below p+"/".
func (m *Manager) idsUnder(ctx context.Context, p string) ([]string, error) {
	var ids []string
	switch _, err := m.cfg.Store.Get(ctx, idKey(p)); {
	case err == nil:
		ids = append(ids, p)
	case !errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("lease: %q: %w", p, err)
	}
	err := m.walk(ctx, p+"/", func(id string) error { ids = append(ids, id); return nil })
	return ids, err
}

// walk calls fn for every lease id under dir (ending in "/"), depth first.
func (m *Manager) walk(ctx context.Context, dir string, fn func(id string) error) error {
	names, err := m.cfg.Store.List(ctx, pfxID+dir)
	if err != nil {
		return fmt.Errorf("lease: list %q: %w", dir, err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, "/") {
			if err := m.walk(ctx, dir+n, fn); err != nil {
				return err
			}
			continue
		}
		if err := fn(dir + n); err != nil {
			return err
		}
	}
	return nil
}

// Failing returns every lease whose revocation has failed and is being
// retried, oldest id order. Such leases are never dropped except by a
// successful revocation or RevokeForce.
func (m *Manager) Failing(ctx context.Context) ([]Lease, error) {
	names, err := m.cfg.Store.List(ctx, pfxFail)
	if err != nil {
		return nil, fmt.Errorf("lease: failing: %w", err)
	}
	out := make([]Lease, 0, len(names))
	for _, n := range names {
		id, err := b64.DecodeString(n)
		if err != nil {
			return nil, fmt.Errorf("%w: failing index key %q", ErrCorrupt, n)
		}
		l, err := m.load(ctx, string(id))
		if errors.Is(err, ErrNotFound) {
			continue // revoked between List and Get
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *l)
	}
	return out, nil
}

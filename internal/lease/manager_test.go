package lease

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
)

func TestExpiryOnTime(t *testing.T) {
	backends(t, func(t *testing.T, st storage.Backend) {
		r := newTestRevoker()
		m := newManager(t, st, r, true)
		var ls []Lease
		for _, ttl := range []time.Duration{300 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
			ls = append(ls, register(t, m, "database/creds/ro", ttl))
		}
		long := register(t, m, "database/creds/ro", time.Hour)
		for _, l := range ls {
			waitFor(t, time.Second, "revocation of "+l.ID, func() bool { return r.revokedCount(l.ID) == 1 })
			at := r.attemptTimes(l.ID)[0]
			if late := at.Sub(l.ExpireTime); late < 0 || late > 100*time.Millisecond {
				t.Errorf("lease ttl %s revoked %s after its expiry, want within [0, 100ms]", l.TTL, late)
			}
			waitFor(t, time.Second, "deletion after revocation", func() bool {
				_, err := m.Lookup(t.Context(), l.ID)
				return errors.Is(err, ErrNotFound)
			})
		}
		if got, err := m.Lookup(t.Context(), long.ID); err != nil || got.ID != long.ID || r.revokedCount(long.ID) != 0 {
			t.Errorf("long lease: Lookup = %+v, %v; revoked %d times", got, err, r.revokedCount(long.ID))
		}
	})
}

func TestRestartKeepsExpiry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zone.db")
	r := newTestRevoker()
	var early, late, failing Lease
	{
		st := openBolt(t, path)
		m, err := New(Config{Store: storage.NewView(st, "sys/expire/"), Revokers: MountTable(map[string]Revoker{"database/": r}),
			RetryMin: 50 * time.Millisecond, RetryMax: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		early = register(t, m, "database/creds/ro", 100*time.Millisecond)
		late = register(t, m, "database/creds/ro", 800*time.Millisecond)
		failing = register(t, m, "database/creds/rw", time.Hour)
		r.setFail(true)
		if err := m.Revoke(t.Context(), failing.ID); !errors.Is(err, ErrRevokeFailed) || !errors.Is(err, errDown) {
			t.Fatalf("Revoke with engine down = %v, want ErrRevokeFailed wrapping errDown", err)
		}
		m.Stop()
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	r.setFail(false)
	time.Sleep(300 * time.Millisecond) // early expires while we are down
	if n := r.revokedCount(early.ID); n != 0 {
		t.Fatalf("early lease revoked %d times while the manager was down", n)
	}

	st := openBolt(t, path)
	m := newManager(t, st, r, false)
	started := time.Now()
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start = %v, want ErrStarted", err)
	}
	waitFor(t, time.Second, "lease expired while down", func() bool { return r.revokedCount(early.ID) == 1 })
	if d := time.Since(started); d > 100*time.Millisecond {
		t.Errorf("lease that expired while down revoked %s after Start, want < 100ms", d)
	}
	waitFor(t, time.Second, "failing lease retried after restart", func() bool { return r.revokedCount(failing.ID) == 1 })
	if r.revokedCount(late.ID) != 0 {
		t.Fatalf("late lease revoked before its expiry %s", late.ExpireTime)
	}
	waitFor(t, 2*time.Second, "late lease", func() bool { return r.revokedCount(late.ID) == 1 })
	if d := r.attemptTimes(late.ID)[0].Sub(late.ExpireTime); d < 0 || d > 100*time.Millisecond {
		t.Errorf("late lease revoked %s after expiry across restart", d)
	}
	waitFor(t, time.Second, "failing list to empty", func() bool {
		f, err := m.Failing(t.Context())
		return err == nil && len(f) == 0
	})
}

func TestRenew(t *testing.T) {
	backends(t, func(t *testing.T, st storage.Backend) {
		r := newTestRevoker()
		m := newManager(t, st, r, true)
		ctx := t.Context()

		l := register(t, m, "database/creds/ro", time.Second, func(l *Lease) { l.MaxTTL = 2 * time.Second })
		got, err := m.Renew(ctx, l.ID, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !got.ExpireTime.Equal(l.IssueTime.Add(2 * time.Second)) {
			t.Errorf("renew +10s with max_ttl 2s: expire %s, want issue+2s %s", got.ExpireTime, l.IssueTime.Add(2*time.Second))
		}
		if rn := r.renewed[l.ID]; !rn.Equal(got.ExpireTime) {
			t.Errorf("engine told new expiry %s, want %s", rn, got.ExpireTime)
		}
		if stored, _ := m.Lookup(ctx, l.ID); !stored.ExpireTime.Equal(got.ExpireTime) || stored.LastRenewal.IsZero() {
			t.Errorf("stored after renew: %+v", stored)
		}
		// increment 0 renews by the lease's TTL.
		l0 := register(t, m, "database/creds/ro", 3*time.Second)
		got0, err := m.Renew(ctx, l0.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if d := got0.ExpireTime.Sub(time.Now()); d < 2900*time.Millisecond || d > 3*time.Second {
			t.Errorf("renew 0: remaining %s, want ≈ ttl 3s", d)
		}

		nr := register(t, m, "database/creds/ro", time.Hour, func(l *Lease) { l.Renewable = false })
		if _, err := m.Renew(ctx, nr.ID, time.Minute); !errors.Is(err, ErrNotRenewable) {
			t.Errorf("renew non-renewable = %v, want ErrNotRenewable", err)
		}
		r.failRen = true
		if _, err := m.Renew(ctx, l0.ID, time.Minute); !errors.Is(err, errDown) {
			t.Errorf("renew with engine refusing = %v, want its error", err)
		}
		if after, _ := m.Lookup(ctx, l0.ID); !after.ExpireTime.Equal(got0.ExpireTime) {
			t.Errorf("failed renew changed expiry: %s -> %s", got0.ExpireTime, after.ExpireTime)
		}
		r.failRen = false

		// A renewed lease expires at its new time, not the old one.
		s := register(t, m, "database/creds/ro", 150*time.Millisecond)
		rs, err := m.Renew(ctx, s.ID, 500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if r.revokedCount(s.ID) != 0 {
			t.Fatal("renewed lease revoked at its old expiry")
		}
		waitFor(t, time.Second, "renewed lease expiry", func() bool { return r.revokedCount(s.ID) == 1 })
		if d := r.attemptTimes(s.ID)[0].Sub(rs.ExpireTime); d < 0 || d > 100*time.Millisecond {
			t.Errorf("renewed lease revoked %s after its new expiry", d)
		}
		if _, err := m.Renew(ctx, s.ID, time.Second); !errors.Is(err, ErrNotFound) {
			t.Errorf("renew revoked lease = %v, want ErrNotFound", err)
		}
	})
}

func TestRevokeFailingRetriedWithBackoff(t *testing.T) {
	backends(t, func(t *testing.T, st storage.Backend) {
		r := newTestRevoker()
		m := newManager(t, st, r, true)
		r.setFail(true)
		l := register(t, m, "database/creds/ro", 50*time.Millisecond)
		waitFor(t, 2*time.Second, "5 revoke attempts", func() bool { return len(r.attemptTimes(l.ID)) >= 5 })

		f, err := m.Failing(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(f) != 1 || f[0].ID != l.ID || f[0].RevokeAttempts < 4 || !strings.Contains(f[0].LastError, "engine down") {
			t.Fatalf("Failing = %+v, want %s with ≥4 attempts and its error", f, l.ID)
		}
		if f[0].NextAttempt.Before(f[0].ExpireTime) {
			t.Errorf("NextAttempt %s before expiry %s", f[0].NextAttempt, f[0].ExpireTime)
		}
		if _, err := m.Renew(t.Context(), l.ID, time.Minute); !errors.Is(err, ErrExpired) {
			t.Errorf("renew failing lease = %v, want ErrExpired", err)
		}
		// Gaps double from RetryMin 20ms and stop at RetryMax 80ms.
		at := r.attemptTimes(l.ID)
		want := []time.Duration{20, 40, 80, 80}
		for i, w := range want {
			if i+1 >= len(at) {
				break
			}
			gap := at[i+1].Sub(at[i])
			if w *= time.Millisecond; gap < w || gap > w+60*time.Millisecond {
				t.Errorf("gap before attempt %d = %s, want ≈ %s", i+2, gap, w)
			}
		}
		r.setFail(false)
		waitFor(t, time.Second, "revocation after engine recovered", func() bool { return r.revokedCount(l.ID) == 1 })
		waitFor(t, time.Second, "lease deleted and failing list empty", func() bool {
			f, err := m.Failing(t.Context())
			_, lerr := m.Lookup(t.Context(), l.ID)
			return err == nil && len(f) == 0 && errors.Is(lerr, ErrNotFound)
		})
	})
}

func TestRevokeNoRevokerKeepsLease(t *testing.T) {
	st := openBolt(t, filepath.Join(t.TempDir(), "z.db"))
	m := newManager(t, st, newTestRevoker(), false)
	l := register(t, m, "gone/creds/x", time.Hour)
	if err := m.Revoke(t.Context(), l.ID); !errors.Is(err, ErrRevokeFailed) || !errors.Is(err, ErrNoRevoker) {
		t.Fatalf("revoke with no mount = %v", err)
	}
	if f, _ := m.Failing(t.Context()); len(f) != 1 {
		t.Fatalf("Failing = %v", f)
	}
	ids, err := m.RevokeForce(t.Context(), "gone")
	if err != nil || !slices.Equal(ids, []string{l.ID}) {
		t.Fatalf("RevokeForce = %v, %v", ids, err)
	}
	if f, _ := m.Failing(t.Context()); len(f) != 0 {
		t.Fatalf("Failing after force = %v", f)
	}
}

func TestPrefixForceAndToken(t *testing.T) {
	backends(t, func(t *testing.T, st storage.Backend) {
		r := newTestRevoker()
		m := newManager(t, st, r, true)
		ctx := t.Context()
		tok := func(a string) func(*Lease) { return func(l *Lease) { l.TokenAccessor = a } }
		var ro, rw, pki, byTok []string
		for range 3 {
			ro = append(ro, register(t, m, "database/creds/ro", time.Hour).ID)
		}
		roo := register(t, m, "database/creds/roo", time.Hour).ID // shares a string prefix, not a path
		for range 2 {
			id := register(t, m, "database/creds/rw", time.Hour, tok("acc1")).ID
			rw, byTok = append(rw, id), append(byTok, id)
		}
		for range 2 {
			pki = append(pki, register(t, m, "pki/issue/web", time.Hour).ID)
		}
		other := register(t, m, "pki/issue/web", time.Hour, tok("acc2")).ID
		pki = append(pki, other)

		names, err := m.List(ctx, "database/creds")
		if err != nil || !slices.Equal(names, []string{"ro/", "roo/", "rw/"}) {
			t.Errorf("List(database/creds) = %v, %v", names, err)
		}
		if names, _ := m.List(ctx, "database/creds/ro/"); len(names) != 3 {
			t.Errorf("List(database/creds/ro/) = %v, want 3 ids", names)
		}

		n, err := m.RevokePrefix(ctx, "database/creds/ro")
		if err != nil || n != 3 {
			t.Fatalf("RevokePrefix = %d, %v; want 3", n, err)
		}
		for _, id := range ro {
			if r.revokedCount(id) != 1 {
				t.Errorf("%s not revoked by prefix", id)
			}
		}
		if r.revokedCount(roo) != 0 {
			t.Errorf("prefix database/creds/ro revoked %s", roo)
		}
		// An exact id is a prefix too.
		if n, err := m.RevokePrefix(ctx, roo); n != 1 || err != nil {
			t.Errorf("RevokePrefix(exact id) = %d, %v", n, err)
		}

		n, err = m.RevokeByToken(ctx, "acc1")
		if err != nil || n != 2 {
			t.Fatalf("RevokeByToken = %d, %v", n, err)
		}
		for _, id := range byTok {
			if r.revokedCount(id) != 1 {
				t.Errorf("%s not revoked by token", id)
			}
		}
		if n, err := m.RevokeByToken(ctx, "acc1"); n != 0 || err != nil {
			t.Errorf("second RevokeByToken = %d, %v; want 0, nil", n, err)
		}

		// The engine is asked, and its failure does not keep the leases.
		r.setFail(true)
		ids, err := m.RevokeForce(ctx, "pki/")
		r.setFail(false)
		slices.Sort(ids)
		slices.Sort(pki)
		if err != nil || !slices.Equal(ids, pki) {
			t.Fatalf("RevokeForce = %v, %v; want %v", ids, err, pki)
		}
		for _, id := range pki {
			if len(r.attemptTimes(id)) == 0 {
				t.Errorf("RevokeForce did not ask the engine to revoke %s", id)
			}
		}
		if names, _ := m.List(ctx, ""); len(names) != 0 {
			t.Errorf("leases left: %v", names)
		}

		// Failures during a prefix revoke are reported, the rest proceed.
		a := register(t, m, "database/creds/x", time.Hour).ID
		r.setFail(true)
		n, err = m.RevokePrefix(ctx, "database")
		if n != 0 || !errors.Is(err, ErrRevokeFailed) || !strings.Contains(err.Error(), a) {
			t.Errorf("RevokePrefix with engine down = %d, %v", n, err)
		}
		r.setFail(false)
	})
}

func TestBadInput(t *testing.T) {
	st := openBolt(t, filepath.Join(t.TempDir(), "z.db"))
	m := newManager(t, st, newTestRevoker(), false)
	ctx := t.Context()
	ok := Lease{Path: "database/creds/ro", TTL: time.Minute, MaxTTL: time.Hour}
	for _, tc := range []struct {
		field string
		mod   func(*Lease)
	}{
		{"path", func(l *Lease) { l.Path = "" }},
		{"path", func(l *Lease) { l.Path = "a//b" }},
		{"path", func(l *Lease) { l.Path = "a/../b" }},
		{"path", func(l *Lease) { l.Path = strings.Repeat("p", MaxIDLen) }},
		{"id", func(l *Lease) { l.ID = "x/\x00" }},
		{"ttl", func(l *Lease) { l.TTL = 0 }},
		{"ttl", func(l *Lease) { l.TTL = -time.Second }},
		{"ttl", func(l *Lease) { l.TTL = 2 * time.Hour }},
		{"max_ttl", func(l *Lease) { l.MaxTTL = -1 }},
		{"token_accessor", func(l *Lease) { l.TokenAccessor = "a/b" }},
		{"data", func(l *Lease) { l.Data = []byte("{not json") }},
		{"data", func(l *Lease) { l.Data = make([]byte, MaxDataLen+1) }},
	} {
		l := ok
		tc.mod(&l)
		_, err := m.Register(ctx, l)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Register(%+v) = %v, want ErrInvalid naming %q", l, err, tc.field)
		}
	}
	l := register(t, m, "database/creds/ro", time.Minute, func(l *Lease) { l.ID = "database/creds/ro/fixed" })
	if _, err := m.Register(ctx, Lease{ID: l.ID, Path: l.Path, TTL: time.Minute}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate id = %v, want ErrExists", err)
	}
	if _, err := m.Renew(ctx, l.ID, -time.Second); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "increment") {
		t.Errorf("negative increment = %v", err)
	}
	for name, err := range map[string]error{
		"Lookup": func() error { _, err := m.Lookup(ctx, "database/creds/ro/nope"); return err }(),
		"Renew":  func() error { _, err := m.Renew(ctx, "database/creds/ro/nope", 0); return err }(),
		"Revoke": m.Revoke(ctx, "database/creds/ro/nope"),
	} {
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "lease_id") {
			t.Errorf("%s(unknown) = %v, want ErrNotFound naming lease_id", name, err)
		}
	}
	if _, err := m.Lookup(ctx, ""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "lease_id") {
		t.Errorf("Lookup(\"\") = %v", err)
	}
	if _, err := m.RevokePrefix(ctx, ""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "prefix") {
		t.Errorf("RevokePrefix(\"\") = %v", err)
	}
	if _, err := m.RevokeForce(ctx, "/"); !errors.Is(err, ErrInvalid) {
		t.Errorf("RevokeForce(\"/\") = %v", err)
	}
	if _, err := m.RevokeByToken(ctx, ""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "accessor") {
		t.Errorf("RevokeByToken(\"\") = %v", err)
	}
	if _, err := m.List(ctx, "a//"); !errors.Is(err, ErrInvalid) {
		t.Errorf("List(a//) = %v", err)
	}
	for _, c := range []Config{
		{Revokers: MountTable(nil)},
		{Store: st},
		{Store: st, Revokers: MountTable(nil), RetryMin: -1},
		{Store: st, Revokers: MountTable(nil), RetryMin: time.Hour, RetryMax: time.Second},
		{Store: st, Revokers: MountTable(nil), Workers: -1},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestCorruptRecord(t *testing.T) {
	st := openBolt(t, filepath.Join(t.TempDir(), "z.db"))
	m := newManager(t, st, newTestRevoker(), false)
	l := register(t, m, "database/creds/ro", time.Hour)
	if err := st.Put(t.Context(), "sys/expire/id/"+l.ID, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lookup(t.Context(), l.ID); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), l.ID) {
		t.Errorf("Lookup(corrupt) = %v, want ErrCorrupt naming the lease", err)
	}
	if err := st.Put(t.Context(), "sys/expire/id/"+l.ID, []byte(`{"id":"other"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lookup(t.Context(), l.ID); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Lookup(record of another id) = %v", err)
	}
	if _, err := m.RevokeForce(t.Context(), "database"); err == nil {
		t.Error("RevokeForce over corrupt record succeeded")
	}
	// Clean up so cleanup invariants hold.
	if err := st.Txn(t.Context(), []storage.Op{{Kind: storage.OpDelete, Key: "sys/expire/id/" + l.ID}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Tidy(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestTidyRepairs(t *testing.T) {
	st := openBolt(t, filepath.Join(t.TempDir(), "z.db"))
	r := newTestRevoker()
	m := newManager(t, st, r, false)
	ctx := t.Context()
	l := register(t, m, "database/creds/ro", time.Hour, func(l *Lease) { l.TokenAccessor = "acc" })
	ops := []storage.Op{
		{Kind: storage.OpDelete, Key: "sys/expire/" + dueKey(&l)},
		{Kind: storage.OpPut, Key: "sys/expire/" + tokKey("acc", "database/creds/ro/ghost"), Value: []byte{}},
		{Kind: storage.OpPut, Key: "sys/expire/" + failKey(l.ID), Value: []byte{}},
		{Kind: storage.OpPut, Key: "sys/expire/" + pfxDue + dueName(time.Now(), "database/creds/ro/ghost"), Value: []byte{}},
	}
	if err := st.Txn(ctx, ops); err != nil {
		t.Fatal(err)
	}
	rep, err := m.Tidy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (TidyReport{Leases: 1, MissingDue: 1, StaleIndex: 3}); rep != want {
		t.Errorf("Tidy = %+v, want %+v", rep, want)
	}
	if _, err := st.Get(ctx, "sys/expire/"+dueKey(&l)); err != nil {
		t.Errorf("due key not restored: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	backends(t, func(t *testing.T, st storage.Backend) {
		r := newTestRevoker()
		m := newManager(t, st, r, true)
		ctx := t.Context()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var kept []string
		for g := range 8 {
			wg.Go(func() {
				acc := fmt.Sprintf("acc%d", g%2)
				for i := range 40 {
					ttl := time.Hour
					if i%4 == 0 {
						ttl = time.Duration(20+i) * time.Millisecond
					}
					l, err := m.Register(ctx, Lease{Path: fmt.Sprintf("database/creds/r%d", g%3), TTL: ttl, Renewable: true, TokenAccessor: acc})
					if err != nil {
						t.Error(err)
						return
					}
					switch i % 4 {
					case 1:
						if _, err := m.Renew(ctx, l.ID, time.Hour); err != nil {
							t.Error(err)
						}
						mu.Lock()
						kept = append(kept, l.ID)
						mu.Unlock()
					case 2:
						if err := m.Revoke(ctx, l.ID); err != nil && !errors.Is(err, ErrNotFound) {
							t.Error(err)
						}
					case 3:
						if _, err := m.Renew(ctx, l.ID, 10*time.Millisecond); err != nil {
							t.Error(err)
						}
					}
					if _, err := m.List(ctx, "database/creds/"); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Go(func() {
			for range 5 {
				if _, err := m.RevokePrefix(ctx, "database/creds/r2"); err != nil {
					t.Error(err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
		wg.Wait()
		if _, err := m.RevokeByToken(ctx, "acc1"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Second, "short leases to expire", func() bool {
			n := 0
			for _, p := range []string{"r0", "r1", "r2"} {
				ids, _ := m.List(ctx, "database/creds/"+p)
				n += len(ids)
			}
			mu.Lock()
			defer mu.Unlock()
			return n <= len(kept)
		})
		r.mu.Lock()
		for id, c := range r.revoked {
			if c != 1 {
				t.Errorf("%s revoked %d times", id, c)
			}
		}
		r.mu.Unlock()
	})
}

// blockingRevoker blocks every Revoke until release is closed.
type blockingRevoker struct{ release chan struct{} }

func (b blockingRevoker) Revoke(ctx context.Context, _ Lease) error {
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestHungEngineDoesNotBlockOthers(t *testing.T) {
	st := openBolt(t, filepath.Join(t.TempDir(), "z.db"))
	hung := blockingRevoker{release: make(chan struct{})}
	r := newTestRevoker()
	m, err := New(Config{Store: st, Revokers: MountTable(map[string]Revoker{"database/": hung, "pki/": r})})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	defer close(hung.release)
	for range 200 { // more than any lock-stripe count, all expiring now
		register(t, m, "database/creds/ro", time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // workers are now stuck in the hung engine
	done := make(chan error, 1)
	go func() {
		for range 100 {
			l, err := m.Register(context.Background(), Lease{Path: "pki/issue/web", TTL: time.Hour, Renewable: true})
			if err == nil {
				_, err = m.Renew(context.Background(), l.ID, time.Minute)
			}
			if err == nil {
				err = m.Revoke(context.Background(), l.ID)
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Register/Renew/Revoke of other leases blocked behind a hung engine")
	}
}

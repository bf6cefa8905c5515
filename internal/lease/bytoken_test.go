package lease

import (
	"context"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// TestExpireByToken checks that a token's leases are brought forward and
// revoked by the expiry workers, others are left alone, and a failing
// engine keeps the lease, failing, until it recovers.
func TestExpireByToken(t *testing.T) {
	backends(t, func(t *testing.T, st storage.Backend) {
		ctx := context.Background()
		r := newTestRevoker()
		m := newManager(t, st, r, true)
		owned := func(l *Lease) { l.TokenAccessor = "acc1" }
		a := register(t, m, "database/creds/ro", time.Hour, owned)
		b := register(t, m, "pki/issue/web", time.Hour, owned)
		other := register(t, m, "database/creds/ro", time.Hour, func(l *Lease) { l.TokenAccessor = "acc2" })

		r.setFail(true)
		n, err := m.ExpireByToken(ctx, "acc1")
		if err != nil || n != 2 {
			t.Fatalf("ExpireByToken = %d, %v; want 2", n, err)
		}
		waitFor(t, 2*time.Second, "a failing revocation", func() bool {
			f, _ := m.Failing(ctx)
			return len(f) == 2
		})
		if _, err := m.Lookup(ctx, a.ID); err != nil {
			t.Fatalf("a lease whose revocation fails must stay: %v", err)
		}
		r.setFail(false)
		waitFor(t, 2*time.Second, "the retried revocations", func() bool {
			return r.revokedCount(a.ID) == 1 && r.revokedCount(b.ID) == 1
		})
		if got, err := m.Lookup(ctx, other.ID); err != nil || got.ExpireTime != other.ExpireTime {
			t.Fatalf("another token's lease changed: %+v, %v", got, err)
		}
		if n, err := m.ExpireByToken(ctx, "acc1"); n != 0 || err != nil {
			t.Fatalf("second ExpireByToken = %d, %v; want 0, nil", n, err)
		}
		if _, err := m.ExpireByToken(ctx, "a/b"); err == nil {
			t.Fatal("ExpireByToken accepted an accessor with '/'")
		}
	})
}

// TestExpireByTokenBatches moves a token's leases over several transactions
// and revokes every one.
func TestExpireByTokenBatches(t *testing.T) {
	st := inmem.New()
	t.Cleanup(func() { st.Close() })
	r := newTestRevoker()
	m := newManager(t, st, r, true)
	n := 2*expireBatch + 7
	ids := make([]string, n)
	for i := range ids {
		ids[i] = register(t, m, "database/creds/ro", time.Hour, func(l *Lease) { l.TokenAccessor = "many" }).ID
	}
	moved, err := m.ExpireByToken(context.Background(), "many")
	if err != nil || moved != n {
		t.Fatalf("ExpireByToken = %d, %v; want %d", moved, err, n)
	}
	waitFor(t, 10*time.Second, "every lease revoked", func() bool { return r.totalRevoked() == n })
}

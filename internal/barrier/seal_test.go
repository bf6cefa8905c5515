package barrier

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"regexp"
	"slices"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

func newSeal(t *testing.T) (*Seal, *Barrier, *inmem.Backend) {
	t.Helper()
	phys := inmem.New()
	b := New(phys)
	return NewSeal(b, phys), b, phys
}

func TestInitValidation(t *testing.T) {
	tests := []struct {
		shares, threshold int
		wantMsg           string // "" = valid
	}{
		{1, 1, ""},
		{5, 3, ""},
		{2, 2, ""},
		{255, 255, ""},
		{0, 0, "shares must be at least one"},
		{3, 0, "threshold must be at least one"},
		{3, 1, "threshold must be greater than one for multiple shares"},
		{256, 3, "shares must be less than 256"},
		{3, 4, "threshold cannot be larger than shares"},
		{-1, 1, "shares must be at least one"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d-of-%d", tc.threshold, tc.shares), func(t *testing.T) {
			m, b, phys := newSeal(t)
			keys, err := m.Init(t.Context(), tc.shares, tc.threshold, nil)
			if tc.wantMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(keys) != tc.shares {
					t.Fatalf("%d keys, want %d", len(keys), tc.shares)
				}
				if !b.Sealed() {
					t.Fatal("Init left the barrier unsealed")
				}
				return
			}
			if !errors.Is(err, ErrInvalidSealConfig) {
				t.Fatalf("err = %v, want ErrInvalidSealConfig", err)
			}
			if want := "invalid seal configuration: " + tc.wantMsg; err.Error() != want {
				t.Fatalf("err = %q, want %q", err, want)
			}
			if got := dumpPhysical(t, phys); len(got) != 0 {
				t.Fatalf("rejected Init stored %v", got)
			}
		})
	}
}

func TestInitUnsealSealCycle(t *testing.T) {
	m, b, _ := newSeal(t)
	ctx := t.Context()
	keys, err := m.Init(ctx, 5, 3, func(ctx context.Context) error {
		return b.Put(ctx, "sys/token/root", []byte("root token record"))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if len(k) != KeySize+1 {
			t.Fatalf("share of %d bytes, want %d", len(k), KeySize+1)
		}
	}
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := Status{Type: "shamir", Initialized: true, Sealed: true, T: 3, N: 5}
	if st != want {
		t.Fatalf("Status = %+v, want %+v", st, want)
	}

	rng := mrand.New(mrand.NewPCG(7, 7))
	for round := 0; round < 6; round++ {
		order := rng.Perm(5)[:3]
		var nonce string
		for i, idx := range order {
			st, err := m.SubmitShare(ctx, keys[idx])
			if err != nil {
				t.Fatalf("round %d share %d: %v", round, i, err)
			}
			if i < 2 {
				if !st.Sealed || st.Progress != i+1 {
					t.Fatalf("after %d shares: %+v", i+1, st)
				}
				if i == 0 {
					nonce = st.Nonce
					if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(nonce) {
						t.Fatalf("nonce %q is not a UUIDv4", nonce)
					}
				} else if st.Nonce != nonce {
					t.Fatal("nonce changed within one attempt")
				}
			} else if st.Sealed || st.Progress != 0 || st.Nonce != "" {
				t.Fatalf("after threshold: %+v", st)
			}
		}
		if v, err := b.Get(ctx, "sys/token/root"); err != nil || string(v) != "root token record" {
			t.Fatalf("round %d: record written by onInit = %q, %v", round, v, err)
		}
		// Submitting to an unsealed barrier is harmless.
		if st, err := m.SubmitShare(ctx, keys[0]); err != nil || st.Sealed {
			t.Fatalf("share when unsealed: %+v, %v", st, err)
		}
		m.SealNow()
		if !b.Sealed() {
			t.Fatal("SealNow did not seal")
		}
	}
}

func TestSubmitShareDuplicateIgnored(t *testing.T) {
	m, b, _ := newSeal(t)
	ctx := t.Context()
	keys, err := m.Init(ctx, 3, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := m.SubmitShare(ctx, keys[1])
	st2, err := m.SubmitShare(ctx, slices.Clone(keys[1]))
	if err != nil || st2.Progress != 1 || !st2.Sealed || st2.Nonce != st.Nonce {
		t.Fatalf("duplicate share: %+v, %v", st2, err)
	}
	if st, err := m.SubmitShare(ctx, keys[2]); err != nil || st.Sealed {
		t.Fatalf("second distinct share: %+v, %v", st, err)
	}
	if b.Sealed() {
		t.Fatal("barrier still sealed")
	}
}

func TestSubmitShareWrongKeysResetProgress(t *testing.T) {
	m, b, _ := newSeal(t)
	ctx := t.Context()
	keys, err := m.Init(ctx, 3, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Shares of another root key combine to a wrong key.
	other, _, _ := newSeal(t)
	otherKeys, err := other.Init(ctx, 3, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.SubmitShare(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	st, err := m.SubmitShare(ctx, otherKeys[1])
	if !errors.Is(err, ErrBadRootKey) {
		t.Fatalf("wrong combination: %v, want ErrBadRootKey", err)
	}
	if !st.Sealed || st.Progress != 0 || st.Nonce != "" || !b.Sealed() {
		t.Fatalf("after wrong combination: %+v", st)
	}
	// A share with the x of one already given, or x = 0, is refused
	// without touching progress.
	bad := slices.Clone(keys[0])
	bad[0] ^= 1
	_, _ = m.SubmitShare(ctx, keys[0])
	if st, err := m.SubmitShare(ctx, bad); !errors.Is(err, ErrInvalidShare) || st.Progress != 1 {
		t.Fatalf("same-x shares: %+v, %v", st, err)
	}
	zeroX := slices.Clone(keys[1])
	zeroX[len(zeroX)-1] = 0
	if st, err := m.SubmitShare(ctx, zeroX); !errors.Is(err, ErrInvalidShare) || st.Progress != 1 {
		t.Fatalf("x = 0 share: %+v, %v", st, err)
	}
	// Wrong length is refused without touching progress.
	if st, err := m.SubmitShare(ctx, keys[1][:10]); !errors.Is(err, ErrInvalidShare) || st.Progress != 1 {
		t.Fatalf("short share: %+v, %v", st, err)
	}
	m.ResetUnseal()
	if st, _ := m.Status(ctx); st.Progress != 0 || st.Nonce != "" {
		t.Fatalf("after ResetUnseal: %+v", st)
	}
	// The right shares still work.
	_, _ = m.SubmitShare(ctx, keys[2])
	if st, err := m.SubmitShare(ctx, keys[0]); err != nil || st.Sealed {
		t.Fatalf("right shares: %+v, %v", st, err)
	}
}

func TestSingleShareIsRootKey(t *testing.T) {
	m, b, phys := newSeal(t)
	ctx := t.Context()
	keys, err := m.Init(ctx, 1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || len(keys[0]) != KeySize {
		t.Fatalf("single share: %d keys of %d bytes", len(keys), len(keys[0]))
	}
	// The key is the root key: a bare Barrier unseals with it.
	if err := New(phys).Unseal(ctx, keys[0]); err != nil {
		t.Fatalf("single share is not the root key: %v", err)
	}
	if st, err := m.SubmitShare(ctx, keys[0]); err != nil || st.Sealed || b.Sealed() {
		t.Fatalf("unseal with single share: %+v, %v", st, err)
	}
}

func TestInitTwiceFails(t *testing.T) {
	m, _, phys := newSeal(t)
	ctx := t.Context()
	if _, err := m.Init(ctx, 3, 2, nil); err != nil {
		t.Fatal(err)
	}
	before := dumpPhysical(t, phys)
	called := false
	keys, err := m.Init(ctx, 5, 3, func(context.Context) error { called = true; return nil })
	if !errors.Is(err, ErrAlreadyInitialized) || keys != nil {
		t.Fatalf("second Init: %v, %d keys", err, len(keys))
	}
	if called {
		t.Fatal("second Init ran onInit")
	}
	if after := dumpPhysical(t, phys); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("second Init changed storage")
	}
	if st, _ := m.Status(ctx); st.N != 3 || st.T != 2 {
		t.Fatalf("Status after second Init: %+v", st)
	}
}

func TestFailedInitLeavesNothing(t *testing.T) {
	t.Run("onInit fails", func(t *testing.T) {
		m, b, phys := newSeal(t)
		ctx := t.Context()
		boom := errors.New("boom")
		_, err := m.Init(ctx, 3, 2, func(ctx context.Context) error {
			if b.Sealed() {
				t.Error("barrier sealed during onInit")
			}
			if err := b.Put(ctx, "sys/token/root", []byte("x")); err != nil {
				return err
			}
			if err := b.Txn(ctx, []storage.Op{{Kind: storage.OpPut, Key: "sys/policy/default", Value: []byte("p")}}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Init: %v, want the onInit error", err)
		}
		if got := dumpPhysical(t, phys); len(got) != 0 {
			t.Fatalf("failed Init left %v", got)
		}
		if !b.Sealed() {
			t.Fatal("failed Init left the barrier unsealed")
		}
		st, err := m.Status(ctx)
		if err != nil || st.Initialized || st.N != 0 {
			t.Fatalf("Status after failed Init: %+v, %v", st, err)
		}
		// And Init can be retried.
		if _, err := m.Init(ctx, 3, 2, nil); err != nil {
			t.Fatalf("retry: %v", err)
		}
	})
	t.Run("storage fails", func(t *testing.T) {
		phys := &faultyBackend{Backend: inmem.New()}
		b := New(phys)
		m := NewSeal(b, phys)
		ctx := t.Context()
		_, err := m.Init(ctx, 3, 2, func(ctx context.Context) error {
			if err := b.Put(ctx, "sys/token/root", []byte("x")); err != nil {
				return err
			}
			phys.failNext.Store(1) // the keyring write fails; the cleanup works
			return nil
		})
		if !errors.Is(err, errInjected) {
			t.Fatalf("Init: %v, want injected fault", err)
		}
		if got := dumpPhysical(t, phys); len(got) != 0 {
			t.Fatalf("failed Init left %v", got)
		}
		if ok, _ := b.Initialized(ctx); ok || !b.Sealed() {
			t.Fatal("failed Init left the barrier initialized or unsealed")
		}
	})
	t.Run("storage down, cleanup fails too", func(t *testing.T) {
		phys := &faultyBackend{Backend: inmem.New()}
		b := New(phys)
		m := NewSeal(b, phys)
		_, err := m.Init(t.Context(), 3, 2, func(ctx context.Context) error {
			if err := b.Put(ctx, "sys/token/root", []byte("x")); err != nil {
				return err
			}
			phys.failWrites.Store(true)
			return nil
		})
		if !errors.Is(err, errInjected) {
			t.Fatalf("Init: %v, want injected fault", err)
		}
		// The orphan record is unreadable garbage, but the store is not
		// initialized and Init can be run again once storage recovers.
		phys.failWrites.Store(false)
		if ok, _ := b.Initialized(t.Context()); ok {
			t.Fatal("failed Init left the barrier initialized")
		}
		if _, err := m.Init(t.Context(), 3, 2, nil); err != nil {
			t.Fatalf("retry: %v", err)
		}
	})
}

func TestNotInitialized(t *testing.T) {
	m, _, _ := newSeal(t)
	ctx := t.Context()
	st, err := m.Status(ctx)
	if err != nil || st != (Status{Sealed: true}) {
		t.Fatalf("Status before init: %+v, %v", st, err)
	}
	if _, err := m.SubmitShare(ctx, make([]byte, 33)); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("SubmitShare before init: %v", err)
	}
}

func TestInitDev(t *testing.T) {
	m, b, phys := newSeal(t)
	ctx := t.Context()
	root, err := m.InitDev(ctx, func(ctx context.Context) error {
		return b.Put(ctx, "k", []byte("v"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if b.Sealed() {
		t.Fatal("InitDev left the barrier sealed")
	}
	if v, err := b.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	st, _ := m.Status(ctx)
	if st.N != 1 || st.T != 1 || !st.Initialized || st.Sealed {
		t.Fatalf("Status = %+v", st)
	}
	m.SealNow()
	if err := New(phys).Unseal(ctx, root); err != nil {
		t.Fatalf("returned key is not the root key: %v", err)
	}
	if _, err := m.InitDev(ctx, nil); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("second InitDev: %v", err)
	}
}

// A manager over existing storage (a restarted server) reads the stored
// configuration and unseals with the shares.
func TestSealAfterRestart(t *testing.T) {
	m, _, phys := newSeal(t)
	ctx := t.Context()
	keys, err := m.Init(ctx, 4, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	b2 := New(phys)
	m2 := NewSeal(b2, phys)
	if st, _ := m2.Status(ctx); st.T != 3 || st.N != 4 || !st.Initialized || !st.Sealed {
		t.Fatalf("Status after restart: %+v", st)
	}
	for _, k := range keys[1:] {
		if _, err := m2.SubmitShare(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if b2.Sealed() {
		t.Fatal("not unsealed after restart")
	}
}

func TestSealConcurrentShares(t *testing.T) {
	m, b, _ := newSeal(t)
	ctx := t.Context()
	keys, err := m.Init(ctx, 10, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = m.SubmitShare(ctx, k)
			_, _ = m.Status(ctx)
		}()
	}
	wg.Wait()
	if b.Sealed() {
		t.Fatal("ten valid shares submitted concurrently did not unseal")
	}
}

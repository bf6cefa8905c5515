package barrier

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
	"github.com/edgevault/edgevault/internal/storage/storagetest"
)

// An unsealed barrier is a storage.Backend like any other.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b, _, _ := newUnsealed(t)
		return b
	})
}

func TestRoundTripAndCiphertextAtRest(t *testing.T) {
	b, phys, _ := newUnsealed(t)
	ctx := t.Context()
	secret := []byte("correct horse battery staple")
	if err := b.Put(ctx, "secret/data/app", secret); err != nil {
		t.Fatal(err)
	}
	got, err := b.Get(ctx, "secret/data/app")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	raw, err := phys.Get(ctx, "secret/data/app")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, secret) {
		t.Fatal("plaintext visible in physical storage")
	}
	if len(raw) != len(secret)+Overhead {
		t.Fatalf("envelope is %d bytes, want %d", len(raw), len(secret)+Overhead)
	}
	if raw[0] != formatVersion || binary.BigEndian.Uint32(raw[1:5]) != 1 {
		t.Fatalf("envelope header %x, want version 1 term 1", raw[:5])
	}
	// Two writes of the same value differ (fresh nonce).
	if err := b.Put(ctx, "secret/data/app", secret); err != nil {
		t.Fatal(err)
	}
	raw2, _ := phys.Get(ctx, "secret/data/app")
	if bytes.Equal(raw, raw2) {
		t.Fatal("same ciphertext for two writes: nonce reused")
	}
}

func TestAssociatedDataBindsPath(t *testing.T) {
	b, phys, _ := newUnsealed(t)
	ctx := t.Context()
	if err := b.Put(ctx, "a/one", []byte("v")); err != nil {
		t.Fatal(err)
	}
	raw, _ := phys.Get(ctx, "a/one")
	if err := phys.Put(ctx, "a/two", raw); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "a/two"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Get of moved ciphertext: %v, want ErrDecrypt", err)
	}
	// The keyring envelope cannot be planted as data either.
	kr, _ := phys.Get(ctx, KeyringPath)
	_ = phys.Put(ctx, "a/keyring", kr)
	if _, err := b.Get(ctx, "a/keyring"); !errors.Is(err, ErrUnknownTerm) {
		t.Fatalf("Get of keyring envelope: %v, want ErrUnknownTerm", err)
	}
}

func TestTamperingDetected(t *testing.T) {
	b, phys, _ := newUnsealed(t)
	ctx := t.Context()
	if err := b.Put(ctx, "k", []byte("some value")); err != nil {
		t.Fatal(err)
	}
	orig, _ := phys.Get(ctx, "k")
	for i := range orig {
		for _, bit := range []byte{0x01, 0x80} {
			mod := slices.Clone(orig)
			mod[i] ^= bit
			_ = phys.Put(ctx, "k", mod)
			if v, err := b.Get(ctx, "k"); err == nil {
				t.Fatalf("flipping bit %#x of byte %d went unnoticed: %q", bit, i, v)
			}
		}
	}
	for _, n := range []int{0, 1, Overhead - 1, len(orig) - 1} {
		_ = phys.Put(ctx, "k", orig[:n])
		if _, err := b.Get(ctx, "k"); err == nil {
			t.Fatalf("truncation to %d bytes went unnoticed", n)
		}
	}
}

func TestSealedRefusesEverything(t *testing.T) {
	b, _, key := newUnsealed(t)
	ctx := t.Context()
	if err := b.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	b.Seal()
	if !b.Sealed() {
		t.Fatal("Sealed() = false after Seal")
	}
	checks := map[string]func() error{
		"Get":    func() error { _, err := b.Get(ctx, "k"); return err },
		"Put":    func() error { return b.Put(ctx, "k", []byte("x")) },
		"Delete": func() error { return b.Delete(ctx, "k") },
		"List":   func() error { _, err := b.List(ctx, ""); return err },
		"Txn": func() error {
			return b.Txn(ctx, []storage.Op{{Kind: storage.OpPut, Key: "k", Value: []byte("x")}})
		},
		"Rotate":    func() error { _, err := b.Rotate(ctx); return err },
		"KeyStatus": func() error { _, _, err := b.KeyStatus(); return err },
	}
	for name, fn := range checks {
		if err := fn(); !errors.Is(err, ErrSealed) {
			t.Errorf("%s while sealed: %v, want ErrSealed", name, err)
		}
	}
	if ok, err := b.Initialized(ctx); err != nil || !ok {
		t.Fatalf("Initialized while sealed = %v, %v", ok, err)
	}
	if err := b.Unseal(ctx, key); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("after unseal Get = %q, %v (a sealed write leaked through?)", v, err)
	}
}

func TestSealZeroesKeys(t *testing.T) {
	b, _, _ := newUnsealed(t)
	st := b.state.Load()
	b.Seal()
	if !bytes.Equal(st.rootKey, make([]byte, KeySize)) {
		t.Fatal("root key not zeroed")
	}
	for _, tk := range st.kr.terms {
		if !bytes.Equal(tk.key, make([]byte, KeySize)) {
			t.Fatalf("term %d key not zeroed", tk.term)
		}
	}
	b.Seal() // sealing twice is fine
}

func TestWrongRootKey(t *testing.T) {
	b, phys, key := newUnsealed(t)
	ctx := t.Context()
	b.Seal()
	wrong := slices.Clone(key)
	wrong[0] ^= 1
	for name, k := range map[string][]byte{"flipped": wrong, "short": key[:16], "empty": nil, "long": append(slices.Clone(key), 0)} {
		if err := b.Unseal(ctx, k); !errors.Is(err, ErrBadRootKey) {
			t.Errorf("%s key: %v, want ErrBadRootKey", name, err)
		}
		if !b.Sealed() {
			t.Fatalf("%s key unsealed the barrier", name)
		}
	}
	// A corrupted keyring does not unseal either.
	kr, _ := phys.Get(ctx, KeyringPath)
	bad := slices.Clone(kr)
	bad[len(bad)-1] ^= 1
	_ = phys.Put(ctx, KeyringPath, bad)
	if err := b.Unseal(ctx, key); err == nil || !b.Sealed() {
		t.Fatalf("corrupt keyring: %v, sealed=%v", err, b.Sealed())
	}
	_ = phys.Put(ctx, KeyringPath, kr)
	if err := b.Unseal(ctx, key); err != nil {
		t.Fatal(err)
	}
	// Unseal on an unsealed barrier checks the key and changes nothing.
	if err := b.Unseal(ctx, wrong); !errors.Is(err, ErrBadRootKey) {
		t.Fatalf("wrong key on unsealed barrier: %v", err)
	}
	if b.Sealed() {
		t.Fatal("wrong key sealed the barrier")
	}
}

func TestInitializeTwiceAndNotInitialized(t *testing.T) {
	phys := inmem.New()
	b := New(phys)
	ctx := t.Context()
	if err := b.Unseal(ctx, randKey(t)); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("Unseal before Initialize: %v", err)
	}
	if err := b.Initialize(ctx, make([]byte, 16)); !errors.Is(err, ErrBadRootKey) {
		t.Fatalf("Initialize with short key: %v", err)
	}
	if ok, _ := b.Initialized(ctx); ok {
		t.Fatal("failed Initialize left the barrier initialized")
	}
	key := randKey(t)
	if err := b.Initialize(ctx, key); err != nil {
		t.Fatal(err)
	}
	if !b.Sealed() {
		t.Fatal("Initialize unsealed the barrier")
	}
	before, _ := phys.Get(ctx, KeyringPath)
	if err := b.Initialize(ctx, randKey(t)); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("second Initialize: %v", err)
	}
	after, _ := phys.Get(ctx, KeyringPath)
	if !bytes.Equal(before, after) {
		t.Fatal("second Initialize changed the keyring")
	}
}

func termOf(t *testing.T, phys storage.Backend, key string) uint32 {
	t.Helper()
	raw, err := phys.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint32(raw[1:5])
}

func TestRotate(t *testing.T) {
	b, phys, key := newUnsealed(t)
	ctx := t.Context()
	if err := b.Put(ctx, "old", []byte("written under term 1")); err != nil {
		t.Fatal(err)
	}
	term, installed, err := b.KeyStatus()
	if err != nil || term != 1 || time.Since(installed) > time.Minute {
		t.Fatalf("KeyStatus = %d, %v, %v", term, installed, err)
	}
	for want := uint32(2); want <= 4; want++ {
		got, err := b.Rotate(ctx)
		if err != nil || got != want {
			t.Fatalf("Rotate = %d, %v, want %d", got, err, want)
		}
	}
	if err := b.Put(ctx, "new", []byte("written under term 4")); err != nil {
		t.Fatal(err)
	}
	if got := termOf(t, phys, "old"); got != 1 {
		t.Fatalf("old record term %d, want 1", got)
	}
	if got := termOf(t, phys, "new"); got != 4 {
		t.Fatalf("new record term %d, want 4", got)
	}
	// Survives seal/unseal: the rotated keyring was persisted.
	b.Seal()
	if err := b.Unseal(ctx, key); err != nil {
		t.Fatal(err)
	}
	if term, _, _ := b.KeyStatus(); term != 4 {
		t.Fatalf("active term after unseal = %d, want 4", term)
	}
	for k, want := range map[string]string{"old": "written under term 1", "new": "written under term 4"} {
		if v, err := b.Get(ctx, k); err != nil || string(v) != want {
			t.Fatalf("Get(%s) = %q, %v", k, v, err)
		}
	}
	// A fresh Barrier over the same storage sees the same keyring.
	b2 := New(phys)
	if err := b2.Unseal(ctx, key); err != nil {
		t.Fatal(err)
	}
	if v, err := b2.Get(ctx, "old"); err != nil || string(v) != "written under term 1" {
		t.Fatalf("fresh barrier Get(old) = %q, %v", v, err)
	}
}

func TestRotateStoreFailureChangesNothing(t *testing.T) {
	phys := &faultyBackend{Backend: inmem.New()}
	b := New(phys)
	ctx := t.Context()
	key := randKey(t)
	if err := b.Initialize(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := b.Unseal(ctx, key); err != nil {
		t.Fatal(err)
	}
	phys.failWrites.Store(true)
	if _, err := b.Rotate(ctx); !errors.Is(err, errInjected) {
		t.Fatalf("Rotate with failing storage: %v", err)
	}
	if term, _, _ := b.KeyStatus(); term != 1 {
		t.Fatalf("active term %d after failed rotate, want 1", term)
	}
	phys.failWrites.Store(false)
	if err := b.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if got := termOf(t, phys, "k"); got != 1 {
		t.Fatalf("write after failed rotate used term %d", got)
	}
	if term, err := b.Rotate(ctx); err != nil || term != 2 {
		t.Fatalf("Rotate after recovery = %d, %v", term, err)
	}
}

func TestReservedKeys(t *testing.T) {
	b, phys, _ := newUnsealed(t)
	ctx := t.Context()
	before := dumpPhysical(t, phys)
	for _, k := range []string{KeyringPath, SealConfigPath, ReservedPrefix + "other"} {
		if _, err := b.Get(ctx, k); !errors.Is(err, ErrReservedKey) {
			t.Errorf("Get(%s): %v", k, err)
		}
		if err := b.Put(ctx, k, []byte("x")); !errors.Is(err, ErrReservedKey) {
			t.Errorf("Put(%s): %v", k, err)
		}
		if err := b.Delete(ctx, k); !errors.Is(err, ErrReservedKey) {
			t.Errorf("Delete(%s): %v", k, err)
		}
		err := b.Txn(ctx, []storage.Op{
			{Kind: storage.OpPut, Key: "fine", Value: []byte("x")},
			{Kind: storage.OpDelete, Key: k},
		})
		if !errors.Is(err, ErrReservedKey) {
			t.Errorf("Txn(%s): %v", k, err)
		}
	}
	if _, err := b.List(ctx, ReservedPrefix); !errors.Is(err, ErrReservedKey) {
		t.Errorf("List(reserved): %v", err)
	}
	after := dumpPhysical(t, phys)
	if len(before) != len(after) {
		t.Fatalf("refused calls changed storage: %v -> %v", before, after)
	}
}

func TestListHidesReserved(t *testing.T) {
	b, _, _ := newUnsealed(t)
	ctx := t.Context()
	list := func(p string) []string {
		t.Helper()
		got, err := b.List(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, p := range []string{"", "core/", "core/barr", "core/barrier"} {
		if got := list(p); len(got) != 0 {
			t.Fatalf("List(%q) on an empty barrier = %q", p, got)
		}
	}
	_ = b.Put(ctx, "core/mounts", []byte("m"))
	_ = b.Put(ctx, "secret/x", []byte("s"))
	if got := list(""); !slices.Equal(got, []string{"core/", "secret/"}) {
		t.Fatalf("List(\"\") = %q", got)
	}
	if got := list("core/"); !slices.Equal(got, []string{"mounts"}) {
		t.Fatalf("List(core/) = %q", got)
	}
	_ = b.Put(ctx, "core/barrierish", []byte("b"))
	if got := list("core/"); !slices.Equal(got, []string{"barrierish", "mounts"}) {
		t.Fatalf("List(core/) = %q", got)
	}
}

func TestTxnEncryptsAndIsAtomic(t *testing.T) {
	b, phys, _ := newUnsealed(t)
	ctx := t.Context()
	err := b.Txn(ctx, []storage.Op{
		{Kind: storage.OpPut, Key: "t/a", Value: []byte("A")},
		{Kind: storage.OpPut, Key: "t/b", Value: []byte("B")},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := phys.Get(ctx, "t/a")
	if bytes.Equal(raw, []byte("A")) || len(raw) != 1+Overhead {
		t.Fatalf("txn value not encrypted: %x", raw)
	}
	if v, _ := b.Get(ctx, "t/b"); string(v) != "B" {
		t.Fatalf("Get(t/b) = %q", v)
	}
}

// Get and Put race with Rotate and Seal/Unseal without data races or wrong
// plaintexts (run with -race).
func TestConcurrentUse(t *testing.T) {
	b, _, key := newUnsealed(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := string(rune('a' + w))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				val := []byte{byte(w), byte(i)}
				if err := b.Put(ctx, k, val); err != nil {
					if errors.Is(err, ErrSealed) {
						continue
					}
					t.Error(err)
					return
				}
				got, err := b.Get(ctx, k)
				if err != nil && !errors.Is(err, ErrSealed) {
					t.Error(err)
					return
				}
				if err == nil && got[0] != byte(w) {
					t.Errorf("read %x, wrote %x", got, val)
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		if _, err := b.Rotate(ctx); err != nil && !errors.Is(err, ErrSealed) {
			t.Fatal(err)
		}
		if i%5 == 0 {
			b.Seal()
			if err := b.Unseal(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
		_, _, _ = b.KeyStatus()
	}
	close(stop)
	wg.Wait()
}

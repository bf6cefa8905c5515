package barrier

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
)

// Reserved physical keys. See the package doc.
const (
	// ReservedPrefix is the part of the physical key space the barrier keeps
	// for itself; the Barrier refuses and hides every key under it.
	ReservedPrefix = "core/barrier/"
	// KeyringPath holds the keyring, encrypted under the root key with this
	// path as associated data.
	KeyringPath = ReservedPrefix + "keyring"
	// SealConfigPath holds the seal configuration (shares, threshold) in
	// plaintext; it is written by the Seal.
	SealConfigPath = ReservedPrefix + "seal-config"
)

// IsReserved reports whether key is under ReservedPrefix.
func IsReserved(key string) bool { return strings.HasPrefix(key, ReservedPrefix) }

// Barrier is a storage.Backend that encrypts every value with AES-256-GCM
// before handing it to the physical backend beneath, and decrypts on the way
// back. Keys (paths) are passed through unchanged; each value is bound to
// its path.
//
// A Barrier is safe for concurrent use. Get, Put, Delete, List and Txn take
// no lock: they read the current keyring snapshot through an atomic pointer.
// An operation that loaded the snapshot before a concurrent Seal may still
// complete after it. Initialize, Unseal, Seal and Rotate are serialised.
type Barrier struct {
	physical storage.Backend
	rand     io.Reader
	now      func() time.Time

	mu    sync.Mutex               // serialises key changes: Initialize, Unseal, Seal, Rotate
	state atomic.Pointer[unsealed] // nil while sealed

	// journal, when set (during Seal.Init), records every key written
	// through the barrier so a failed init can remove them.
	journal atomic.Pointer[journal]
}

var _ storage.Backend = (*Barrier)(nil)

// unsealed is the immutable key material of an unsealed barrier.
type unsealed struct {
	root    cipher.AEAD // under the root key, for re-encrypting the keyring
	rootKey []byte      // kept only to be zeroed on Seal
	kr      *Keyring
}

func (u *unsealed) zero() {
	clear(u.rootKey)
	u.kr.Zero()
}

// New returns a sealed Barrier over physical, which it uses for both its
// own records (under ReservedPrefix) and the encrypted values.
func New(physical storage.Backend) *Barrier {
	return &Barrier{physical: physical, rand: rand.Reader, now: time.Now}
}

// Sealed reports whether the barrier holds no keys. It is one atomic load.
func (b *Barrier) Sealed() bool { return b.state.Load() == nil }

// Initialized reports whether a keyring has been stored. It works sealed.
func (b *Barrier) Initialized(ctx context.Context) (bool, error) {
	_, err := b.physical.Get(ctx, KeyringPath)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("barrier: checking initialization: %w", err)
	}
}

// Initialize creates the keyring with term 1, encrypts it under rootKey (32
// bytes) and stores it. The barrier stays sealed. It fails with
// ErrAlreadyInitialized if a keyring exists, and stores nothing on error.
func (b *Barrier) Initialize(ctx context.Context, rootKey []byte) error {
	return b.initialize(ctx, rootKey, nil, nil)
}

// initialize is Initialize with two hooks for the Seal: extra ops are
// stored in the same transaction as the keyring, and, when during is not nil,
// the barrier is unsealed in memory while during runs, before anything is
// persisted. On any failure, keys written through the barrier while during
// ran are deleted and nothing else is stored. The barrier ends sealed.
func (b *Barrier) initialize(ctx context.Context, rootKey []byte, extra []storage.Op, during func(context.Context) error) (err error) {
	if len(rootKey) != KeySize {
		return fmt.Errorf("barrier: initialize: root key must be %d bytes, got %d: %w", KeySize, len(rootKey), ErrBadRootKey)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if inited, err := b.Initialized(ctx); err != nil {
		return fmt.Errorf("barrier: initialize: %w", err)
	} else if inited {
		return fmt.Errorf("barrier: initialize: %w", ErrAlreadyInitialized)
	}
	if b.state.Load() != nil {
		// Only reachable if the store was wiped under an unsealed barrier.
		return fmt.Errorf("barrier: initialize: barrier is unsealed")
	}

	st, err := b.newState(rootKey)
	if err != nil {
		return fmt.Errorf("barrier: initialize: %w", err)
	}
	defer st.zero() // whatever happens, the barrier ends sealed
	blob, err := b.encryptKeyring(st)
	if err != nil {
		return fmt.Errorf("barrier: initialize: %w", err)
	}

	if during != nil {
		j := &journal{keys: map[string]struct{}{}}
		b.journal.Store(j)
		b.state.Store(st)
		defer func() {
			b.state.Store(nil)
			b.journal.Store(nil)
			if err != nil {
				if cerr := b.cleanup(context.WithoutCancel(ctx), j); cerr != nil {
					err = errors.Join(err, cerr)
				}
			}
		}()
		if err := during(ctx); err != nil {
			return fmt.Errorf("barrier: initialize: %w", err)
		}
	}

	ops := append(slices.Clone(extra), storage.Op{Kind: storage.OpPut, Key: KeyringPath, Value: blob})
	if err := b.physical.Txn(ctx, ops); err != nil {
		return fmt.Errorf("barrier: initialize: storing keyring: %w", err)
	}
	return nil
}

// newState builds a fresh keyring (term 1) under a copy of rootKey.
func (b *Barrier) newState(rootKey []byte) (*unsealed, error) {
	root, err := newAEAD(rootKey)
	if err != nil {
		return nil, err
	}
	kr, err := NewKeyring(b.rand, b.now())
	if err != nil {
		return nil, err
	}
	return &unsealed{root: root, rootKey: slices.Clone(rootKey), kr: kr}, nil
}

// encryptKeyring seals st's keyring under the root key at KeyringPath.
func (b *Barrier) encryptKeyring(st *unsealed) ([]byte, error) {
	plain, err := st.kr.MarshalBinary()
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	return sealEnvelope(st.root, rootTerm, KeyringPath, plain), nil
}

// cleanup removes every key recorded in j.
func (b *Barrier) cleanup(ctx context.Context, j *journal) error {
	keys := j.list()
	if len(keys) == 0 {
		return nil
	}
	ops := make([]storage.Op, len(keys))
	for i, k := range keys {
		ops[i] = storage.Op{Kind: storage.OpDelete, Key: k}
	}
	if err := b.physical.Txn(ctx, ops); err != nil {
		return fmt.Errorf("barrier: cleaning up after failed initialize: %w", err)
	}
	return nil
}

// Unseal decrypts the stored keyring with rootKey and makes the barrier
// usable. A wrong key returns ErrBadRootKey and leaves the barrier sealed.
// On an already unsealed barrier it only checks the key.
func (b *Barrier) Unseal(ctx context.Context, rootKey []byte) error {
	if len(rootKey) != KeySize {
		return fmt.Errorf("barrier: unseal: root key must be %d bytes, got %d: %w", KeySize, len(rootKey), ErrBadRootKey)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	blob, err := b.physical.Get(ctx, KeyringPath)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("barrier: unseal: %w", ErrNotInitialized)
	}
	if err != nil {
		return fmt.Errorf("barrier: unseal: reading keyring: %w", err)
	}
	root, err := newAEAD(rootKey)
	if err != nil {
		return fmt.Errorf("barrier: unseal: %w", err)
	}
	kr, err := decryptKeyring(root, blob)
	if err != nil {
		return fmt.Errorf("barrier: unseal: %w", err)
	}
	if b.state.Load() != nil {
		kr.Zero()
		return nil
	}
	b.state.Store(&unsealed{root: root, rootKey: slices.Clone(rootKey), kr: kr})
	return nil
}

// decryptKeyring opens the keyring envelope under the root key.
func decryptKeyring(root cipher.AEAD, blob []byte) (*Keyring, error) {
	term, nonce, sealed, err := parseEnvelope(blob)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if term != rootTerm {
		return nil, fmt.Errorf("keyring: %w: envelope term %d, want %d", ErrMalformed, term, rootTerm)
	}
	plain, err := openEnvelope(root, KeyringPath, nonce, sealed)
	if err != nil {
		// GCM cannot tell a wrong key from a tampered keyring; the wrong
		// key is by far the likelier.
		return nil, ErrBadRootKey
	}
	defer clear(plain)
	return ParseKeyring(plain)
}

// Seal drops the keys from memory, zeroing the key bytes. Sealing a sealed
// barrier does nothing.
func (b *Barrier) Seal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.state.Swap(nil); st != nil {
		st.zero()
	}
}

// Rotate adds a key term and makes it active. The new keyring is stored
// before any write uses the new term; if storing fails, nothing changes.
func (b *Barrier) Rotate(ctx context.Context) (uint32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state.Load()
	if st == nil {
		return 0, ErrSealed
	}
	kr, err := st.kr.Rotate(b.rand, b.now())
	if err != nil {
		return 0, err
	}
	next := &unsealed{root: st.root, rootKey: st.rootKey, kr: kr}
	blob, err := b.encryptKeyring(next)
	if err == nil {
		err = b.physical.Put(ctx, KeyringPath, blob)
	}
	if err != nil {
		kr.zeroTerm(kr.ActiveTerm())
		return 0, fmt.Errorf("barrier: rotate: storing keyring: %w", err)
	}
	b.state.Store(next)
	return kr.ActiveTerm(), nil
}

// KeyStatus returns the active term and when it was installed.
func (b *Barrier) KeyStatus() (term uint32, installTime time.Time, err error) {
	st := b.state.Load()
	if st == nil {
		return 0, time.Time{}, ErrSealed
	}
	term = st.kr.ActiveTerm()
	installTime, _ = st.kr.InstallTime(term)
	return term, installTime, nil
}

// checkKey validates a key for a storage method.
func checkKey(key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	if IsReserved(key) {
		return fmt.Errorf("%w: %q", ErrReservedKey, key)
	}
	return nil
}

// Get reads and decrypts the value at key. A value that does not decrypt
// returns an error wrapping ErrMalformed, ErrUnknownTerm or ErrDecrypt.
func (b *Barrier) Get(ctx context.Context, key string) ([]byte, error) {
	st := b.state.Load()
	if st == nil {
		return nil, ErrSealed
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	ct, err := b.physical.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	pt, err := st.kr.Decrypt(key, ct)
	if err != nil {
		return nil, fmt.Errorf("barrier: get %q: %w", key, err)
	}
	return pt, nil
}

// Put encrypts value under the active term and stores it at key.
func (b *Barrier) Put(ctx context.Context, key string, value []byte) error {
	st := b.state.Load()
	if st == nil {
		return ErrSealed
	}
	if err := checkKey(key); err != nil {
		return err
	}
	ct := st.kr.Encrypt(key, value)
	b.record(key)
	return b.physical.Put(ctx, key, ct)
}

// Delete removes key.
func (b *Barrier) Delete(ctx context.Context, key string) error {
	if b.state.Load() == nil {
		return ErrSealed
	}
	if err := checkKey(key); err != nil {
		return err
	}
	return b.physical.Delete(ctx, key)
}

// Txn encrypts every put and applies all ops atomically. An invalid or
// reserved key, or an unknown op kind, fails the whole transaction before
// anything reaches storage.
func (b *Barrier) Txn(ctx context.Context, ops []storage.Op) error {
	st := b.state.Load()
	if st == nil {
		return ErrSealed
	}
	out := make([]storage.Op, len(ops))
	for i, op := range ops {
		if err := checkKey(op.Key); err != nil {
			return fmt.Errorf("barrier: txn op %d: %w", i, err)
		}
		switch op.Kind {
		case storage.OpPut:
			out[i] = storage.Op{Kind: storage.OpPut, Key: op.Key, Value: st.kr.Encrypt(op.Key, op.Value)}
		case storage.OpDelete:
			out[i] = storage.Op{Kind: storage.OpDelete, Key: op.Key}
		default:
			return fmt.Errorf("barrier: txn op %d: unknown op kind %d", i, op.Kind)
		}
	}
	for _, op := range out {
		if op.Kind == storage.OpPut {
			b.record(op.Key)
		}
	}
	return b.physical.Txn(ctx, out)
}

// List lists the names one level under prefix, hiding the barrier's own
// records. Listing inside ReservedPrefix returns ErrReservedKey.
func (b *Barrier) List(ctx context.Context, prefix string) ([]string, error) {
	if b.state.Load() == nil {
		return nil, ErrSealed
	}
	if IsReserved(prefix) {
		return nil, fmt.Errorf("%w: %q", ErrReservedKey, prefix)
	}
	names, err := b.physical.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	return b.hideReserved(ctx, prefix, names)
}

// hideReserved drops from names (the listing of prefix) the entry leading
// to ReservedPrefix, unless that directory holds other keys too.
func (b *Barrier) hideReserved(ctx context.Context, prefix string, names []string) ([]string, error) {
	if !strings.HasPrefix(ReservedPrefix, prefix) {
		return names, nil // prefix is not an ancestor of the reserved space
	}
	rest := ReservedPrefix[len(prefix):]
	entry := rest[:strings.IndexByte(rest, '/')+1]
	i, found := slices.BinarySearch(names, entry)
	if !found {
		return names, nil
	}
	if prefix+entry != ReservedPrefix {
		sub, err := b.physical.List(ctx, prefix+entry)
		if err != nil {
			return nil, err
		}
		if sub, err = b.hideReserved(ctx, prefix+entry, sub); err != nil || len(sub) > 0 {
			return names, err
		}
	}
	return slices.Delete(names, i, i+1), nil
}

// record adds key to the init journal, if one is active.
func (b *Barrier) record(key string) {
	if j := b.journal.Load(); j != nil {
		j.add(key)
	}
}

// journal is the set of keys written during a Seal.Init.
type journal struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

func (j *journal) add(key string) {
	j.mu.Lock()
	j.keys[key] = struct{}{}
	j.mu.Unlock()
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]string, 0, len(j.keys))
	for k := range j.keys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

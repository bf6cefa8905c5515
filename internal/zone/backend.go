package zone

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/edgevault/edgevault/internal/storage"
)

// stripeCount is the number of per-key lock stripes per zone. Writers and
// the rewrap worker take the stripe of the key they change.
const stripeCount = 256

// stripe returns the lock stripe of key.
func (zs *zoneState) stripe(key string) *sync.Mutex {
	return &zs.stripes[zs.stripeIndex(key)]
}

func (zs *zoneState) stripeIndex(key string) int {
	return int(maphash.String(zs.seed, key) % stripeCount)
}

// Backend is a storage.Backend confined to one zone: keys are the zone's
// logical paths, values are encrypted with the zone's current data key,
// bound to the zone name and the path.
//
// Concurrency: Get and List take no lock; they read an atomic snapshot of
// the zone's keys, loaded before the physical read so a version destroyed
// after the snapshot was taken is still in it. Put, Delete and Txn hold the
// lock stripe of each key they change (as the rewrap worker does), so a
// rewrap never overwrites a concurrent write with stale data, and load the
// key snapshot and check the zone still exists under it, so neither a
// destroyed key version nor a deleted zone can be written to.
type Backend struct {
	zs  *zoneState
	raw *storage.View
}

var _ storage.Backend = (*Backend)(nil)

// Backend returns the encrypted view of zone name, or ErrNotFound. After the
// zone is deleted, the view's methods return ErrNotFound.
func (s *Store) Backend(name string) (*Backend, error) {
	zs, err := s.zone(name)
	if err != nil {
		return nil, fmt.Errorf("zone: backend: %w", err)
	}
	return &Backend{zs: zs, raw: storage.NewView(s.st, dataPrefix+zs.id+"/")}, nil
}

func (b *Backend) live() (*keySet, error) {
	if b.zs.deleted.Load() {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, b.zs.name)
	}
	return b.zs.keys.Load(), nil
}

// Get decrypts the record at key. Errors wrap storage.ErrNotFound,
// ErrMalformed, ErrUnknownVersion or ErrDecrypt.
//
// The key snapshot is loaded before the physical read, so a version
// destroyed after the read is still in it. A version added after the
// snapshot (a Rotate racing with this Get) shows up as an unknown version:
// then the snapshot has changed, and Get reads again with the new one.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		ks, err := b.live()
		if err != nil {
			return nil, err
		}
		env, err := b.raw.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		pt, _, err := ks.openRecord(b.zs.name, key, env)
		if errors.Is(err, ErrUnknownVersion) && attempt < maxGetRetries && b.zs.keys.Load() != ks {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("zone %q: get %q: %w", b.zs.name, key, err)
		}
		return pt, nil
	}
}

// maxGetRetries bounds Get's re-reads after key snapshot changes; each
// needs a concurrent Rotate, so more than a few means something is wrong.
const maxGetRetries = 3

// Put encrypts value under the active data key and stores it at key.
func (b *Backend) Put(ctx context.Context, key string, value []byte) error {
	mu := b.zs.stripe(key)
	mu.Lock()
	defer mu.Unlock()
	ks, err := b.live() // under the stripe: see Store.destroyUnused and Store.Delete
	if err != nil {
		return err
	}
	return b.raw.Put(ctx, key, sealRecord(ks.keys[ks.active].aead, ks.active, b.zs.name, key, value))
}

// Delete removes key.
func (b *Backend) Delete(ctx context.Context, key string) error {
	mu := b.zs.stripe(key)
	mu.Lock()
	defer mu.Unlock()
	if _, err := b.live(); err != nil {
		return err
	}
	return b.raw.Delete(ctx, key)
}

// List lists one level under prefix inside the zone.
func (b *Backend) List(ctx context.Context, prefix string) ([]string, error) {
	if _, err := b.live(); err != nil {
		return nil, err
	}
	return b.raw.List(ctx, prefix)
}

// Txn encrypts every put under the active data key and applies ops
// atomically.
func (b *Backend) Txn(ctx context.Context, ops []storage.Op) error {
	idx := make([]int, 0, len(ops))
	for _, op := range ops {
		idx = append(idx, b.zs.stripeIndex(op.Key))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		b.zs.stripes[i].Lock()
	}
	defer func() {
		for _, i := range idx {
			b.zs.stripes[i].Unlock()
		}
	}()
	ks, err := b.live()
	if err != nil {
		return err
	}
	dk := ks.keys[ks.active]
	out := make([]storage.Op, len(ops))
	for i, op := range ops {
		out[i] = op
		if op.Kind == storage.OpPut {
			out[i].Value = sealRecord(dk.aead, ks.active, b.zs.name, op.Key, op.Value)
		}
	}
	return b.raw.Txn(ctx, out)
}

// Package inmem is a storage.Backend held in memory, for dev servers and
// tests. Nothing survives the process; "durable" means "applied".
package inmem

import (
	"context"
	"sort"
	"strings"
	"sync"

	"github.com/edgevault/edgevault/internal/storage"
)

// Backend is an in-memory storage.Backend. The zero value is not usable; call New.
type Backend struct {
	mu     sync.RWMutex
	data   map[string][]byte
	closed bool
}

var _ storage.Backend = (*Backend)(nil)

// New returns an empty in-memory backend.
func New() *Backend {
	return &Backend{data: make(map[string][]byte)}
}

// Get returns a copy of the value at key.
func (b *Backend) Get(_ context.Context, key string) ([]byte, error) {
	if err := storage.ValidateKey(key); err != nil {
		return nil, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, storage.ErrClosed
	}
	v, ok := b.data[key]
	if !ok {
		return nil, storage.ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

// Put stores a copy of value at key.
func (b *Backend) Put(ctx context.Context, key string, value []byte) error {
	return b.Txn(ctx, []storage.Op{{Kind: storage.OpPut, Key: key, Value: value}})
}

// Delete removes key.
func (b *Backend) Delete(ctx context.Context, key string) error {
	return b.Txn(ctx, []storage.Op{{Kind: storage.OpDelete, Key: key}})
}

// List returns the names one level under prefix.
func (b *Backend) List(_ context.Context, prefix string) ([]string, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, storage.ErrClosed
	}
	seen := make(map[string]struct{})
	for k := range b.data {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		rest := k[len(prefix):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i+1]
		}
		seen[rest] = struct{}{}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

// Txn applies ops atomically.
func (b *Backend) Txn(_ context.Context, ops []storage.Op) error {
	for _, op := range ops {
		if err := storage.ValidateKey(op.Key); err != nil {
			return err
		}
		if op.Kind != storage.OpPut && op.Kind != storage.OpDelete {
			return storage.ErrInvalidKey
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return storage.ErrClosed
	}
	for _, op := range ops {
		if op.Kind == storage.OpPut {
			b.data[op.Key] = append([]byte(nil), op.Value...)
		} else {
			delete(b.data, op.Key)
		}
	}
	return nil
}

// Close releases the data; later calls return storage.ErrClosed.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.data = nil
	return nil
}

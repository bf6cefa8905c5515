package token

import "sync"

// cache is a bounded map from token hash to its immutable *Entry, so that the
// per-request Lookup costs an HMAC and a map read instead of a storage read
// and a decryption.
//
// Staleness is prevented with an epoch: every invalidation bumps it, and a
// reader that missed the cache records the epoch before reading storage and
// inserts what it read only if no invalidation happened meanwhile. A revoked
// or renewed entry can therefore never be re-inserted by a slow reader.
type cache struct {
	mu    sync.RWMutex
	m     map[string]*Entry
	max   int
	epoch uint64
}

func newCache(size int) *cache {
	return &cache{m: make(map[string]*Entry), max: size}
}

func (c *cache) get(hash string) (*Entry, bool) {
	if c.max <= 0 {
		return nil, false
	}
	c.mu.RLock()
	e, ok := c.m[hash]
	c.mu.RUnlock()
	return e, ok
}

// snapshot returns the current epoch, to pass to add.
func (c *cache) snapshot() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.epoch
}

// add inserts e if nothing was invalidated since epoch was taken. When full it
// evicts an arbitrary entry (Go's map iteration order is randomised), which is
// cheap and good enough for a hot set that mostly fits.
func (c *cache) add(e *Entry, epoch uint64) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return
	}
	if _, ok := c.m[e.hash]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[e.hash] = e
}

// invalidate drops hashes and bumps the epoch.
func (c *cache) invalidate(hashes ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for _, h := range hashes {
		delete(c.m, h)
	}
}

// len returns the number of cached entries (tests).
func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

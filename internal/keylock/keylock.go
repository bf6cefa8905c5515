// Package keylock serialises work on one key (a zone and a name, say) with
// a fixed set of mutexes: keys that hash alike share one, which only costs
// a little waiting, and memory stays constant however many keys there are.
package keylock

import (
	"hash/maphash"
	"sync"
)

// Locks is a set of lock stripes. The zero value is not ready: use New.
type Locks struct {
	seed    maphash.Seed
	stripes [64]sync.Mutex
}

// New returns a ready set of locks.
func New() *Locks { return &Locks{seed: maphash.MakeSeed()} }

// Lock locks the key made of parts (joined with a zero byte, so ("a","bc")
// and ("ab","c") differ) and returns its unlock function.
func (l *Locks) Lock(parts ...string) (unlock func()) {
	var h maphash.Hash
	h.SetSeed(l.seed)
	for i, p := range parts {
		if i > 0 {
			h.WriteByte(0)
		}
		h.WriteString(p)
	}
	mu := &l.stripes[h.Sum64()%uint64(len(l.stripes))]
	mu.Lock()
	return mu.Unlock
}

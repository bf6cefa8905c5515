package lease

import "sync"

// idLocks serialises work on one lease id. Unlike a fixed set of lock
// stripes, unrelated ids never share a lock, which matters because an
// engine's Revoke runs under the lock and may hang until RevokeTimeout
// (PostgreSQL down): 64 stuck revocations must not stall Register or Renew
// of other leases. Memory is held only for ids currently locked.
type idLocks struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	mu   sync.Mutex
	refs int // guarded by idLocks.mu
}

func newIDLocks() *idLocks { return &idLocks{m: make(map[string]*idLock)} }

// Lock locks id and returns its unlock function.
func (l *idLocks) Lock(id string) (unlock func()) {
	l.mu.Lock()
	e := l.m[id]
	if e == nil {
		e = &idLock{}
		l.m[id] = e
	}
	e.refs++
	l.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}

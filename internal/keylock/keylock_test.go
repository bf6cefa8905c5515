package keylock

import (
	"runtime"
	"sync"
	"testing"
)

// Work under one key's lock is never concurrent.
func TestLockSerialises(t *testing.T) {
	l := New()
	var wg sync.WaitGroup
	inside, max := 0, 0
	var mu sync.Mutex
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := l.Lock("zone", "agent-1")
			mu.Lock()
			inside++
			max = maxInt(max, inside)
			mu.Unlock()
			runtime.Gosched() // let another goroutine try to get in
			mu.Lock()
			inside--
			mu.Unlock()
			unlock()
		}()
	}
	wg.Wait()
	if max != 1 {
		t.Fatalf("%d holders of one key at once", max)
	}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

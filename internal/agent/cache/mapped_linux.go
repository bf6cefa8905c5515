//go:build linux

package cache

import (
	"syscall"

	"go.etcd.io/bbolt"
)

// dropMappedPages tells the kernel that the first size bytes of db's
// read-only shared mapping of its file are not needed. The pages stay in the
// page cache (bbolt writes with pwrite, not through the mapping); only this
// process's page-table entries go, so they no longer count in its resident
// set. The next access of a page faults it back in from the page cache.
//
// size must not exceed the mapping: a Tx's Size (its high-water mark) never
// does, because bbolt maps at least every page up to it. It returns false if
// the kernel refused, in which case nothing was dropped.
func dropMappedPages(db *bbolt.DB, size int64) bool {
	if size <= 0 {
		return true
	}
	info := db.Info()
	_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, info.Data, uintptr(size), syscall.MADV_DONTNEED)
	return errno == 0
}

//go:build unix

package cache

import (
	"os"
	"syscall"
)

// releaseFile drops bbolt's flock on f and closes it. Closing alone does
// not release the lock while bbolt's memory mapping still references the
// open file.
func releaseFile(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	_ = f.Close()
}

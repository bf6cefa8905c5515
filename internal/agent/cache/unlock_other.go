//go:build !unix

package cache

import "os"

// releaseFile closes f.
func releaseFile(f *os.File) { _ = f.Close() }

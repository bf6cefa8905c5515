//go:build !linux

package cache

import "go.etcd.io/bbolt"

// dropMappedPages reports false: without madvise the pages of the mapping
// are given back only by closing and reopening the file (Release).
func dropMappedPages(*bbolt.DB, int64) bool { return false }

package cache

import "errors"

// Errors of Open.
var (
	// ErrCorrupt means the cache file is not a readable bbolt file (bad
	// meta pages, truncated, or a page bbolt cannot walk). The cache cannot
	// be repaired: remove the file and let the agent re-sync from scratch.
	ErrCorrupt = errors.New("cache: file is corrupted")
	// ErrKeyMismatch means the KeyProtector could not unwrap the cache key
	// stored in the file: the file was made under another key (copied from
	// another agent, or the key file or TPM changed). Nothing in it can be
	// read; remove it and re-sync.
	ErrKeyMismatch = errors.New("cache: the cache key does not unwrap with this key protector")
	// ErrZoneMismatch means the file belongs to another zone than
	// Options.Zone.
	ErrZoneMismatch = errors.New("cache: file belongs to another zone")
)

// Errors of reads (Get, Metadata).
var (
	// ErrNotCached means the path or version is not in the cache.
	ErrNotCached = errors.New("cache: not cached")
	// ErrTooStale means the entry is cached but more than its max_stale has
	// passed since it was last known to be current; it must not be served.
	ErrTooStale = errors.New("cache: entry is past its max_stale")
	// ErrTampered means a stored record failed authentication (edited on
	// disk, moved to another path or version, or written under another
	// key). Such records are deleted at Open and never served; reads of
	// their path return ErrTampered until the path is written again or the
	// cache is Reset.
	ErrTampered = errors.New("cache: record failed authentication and was dropped")
)

// Errors of writes (Apply, Reset, MarkSynced).
var (
	// ErrAlreadyApplied is returned by Apply for a sequence number at or
	// below the watermark. Nothing is changed: the events are already in
	// the cache, so a caller replaying after a reconnect treats it as
	// success and acks the watermark.
	ErrAlreadyApplied = errors.New("cache: sequence already applied")
	// ErrInvalidOp is returned by Apply for a malformed op (unknown kind,
	// bad path, version or JSON, max_stale not positive). The whole batch
	// is refused and nothing is applied.
	ErrInvalidOp = errors.New("cache: invalid op")
)

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("cache: closed")

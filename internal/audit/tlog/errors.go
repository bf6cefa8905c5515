package tlog

import "errors"

// Errors returned by this package, matched with errors.Is. Errors carry
// context (the file, tile path or index at fault) around these sentinels.
var (
	// ErrNotFound: the tile, checkpoint or entry asked for does not exist.
	ErrNotFound = errors.New("tlog: not found")
	// ErrBadSignature: a checkpoint is not signed by the expected key, or
	// its signature does not verify.
	ErrBadSignature = errors.New("tlog: bad checkpoint signature")
	// ErrCorrupt: stored data is inconsistent (a tile that does not hash to
	// its parent, a journal shorter than the checkpoint, a bad record...).
	ErrCorrupt = errors.New("tlog: corrupt log")
	// ErrClosed: the Log has been closed.
	ErrClosed = errors.New("tlog: log closed")
	// ErrOutOfRange: an index or size beyond what the log holds, or an entry
	// larger than the format allows.
	ErrOutOfRange = errors.New("tlog: out of range")
)

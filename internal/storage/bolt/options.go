package bolt

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults applied by Open to zero-valued Options fields.
const (
	// DefaultMaxBatch is the default for Options.MaxBatch.
	DefaultMaxBatch = 256
	// DefaultLockTimeout is the default for Options.LockTimeout.
	DefaultLockTimeout = 5 * time.Second
)

// Options tunes a Backend. The zero value is valid: every zero field takes
// its default.
type Options struct {
	// MaxBatch is the largest number of write requests (Put, Delete or Txn
	// calls) the committer applies in one bbolt transaction, and so covers
	// with one fsync. Requests beyond it wait for the next commit.
	// 0 means DefaultMaxBatch; negative is an error.
	MaxBatch int

	// LockTimeout bounds how long Open waits for the file lock when another
	// process holds the file open. 0 means DefaultLockTimeout; negative is an
	// error.
	LockTimeout time.Duration

	// Logger receives operational events: open, close, failed commits and
	// their per-request retries. Keys and values are never logged.
	// nil discards everything.
	Logger *slog.Logger
}

// DefaultOptions returns the options Open uses when given a zero Options.
func DefaultOptions() Options {
	return Options{
		MaxBatch:    DefaultMaxBatch,
		LockTimeout: DefaultLockTimeout,
		Logger:      slog.New(slog.DiscardHandler),
	}
}

// withDefaults validates o and fills its zero fields from DefaultOptions.
func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	switch {
	case o.MaxBatch < 0:
		return o, fmt.Errorf("bolt: options: MaxBatch must not be negative, got %d", o.MaxBatch)
	case o.MaxBatch == 0:
		o.MaxBatch = d.MaxBatch
	}
	switch {
	case o.LockTimeout < 0:
		return o, fmt.Errorf("bolt: options: LockTimeout must not be negative, got %s", o.LockTimeout)
	case o.LockTimeout == 0:
		o.LockTimeout = d.LockTimeout
	}
	if o.Logger == nil {
		o.Logger = d.Logger
	}
	return o, nil
}

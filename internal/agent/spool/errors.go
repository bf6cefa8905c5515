package spool

import "errors"

// Errors returned by the spool, matched with errors.Is. Returned errors wrap
// them with the file, offset, or value at fault.
var (
	// ErrFull means Append was refused because the unforwarded records would
	// exceed Options.MaxBytes. Nothing was written; Append succeeds again once
	// a Commit has freed room.
	ErrFull = errors.New("spool: full")

	// ErrClosed means the spool was closed (Append, Next, Commit, Sync or
	// Close after Close).
	ErrClosed = errors.New("spool: closed")

	// ErrCorrupt means a segment or the cursor file holds data that is not a
	// torn tail: a bad record followed by valid ones, damage in a segment
	// other than the last, or a gap in sequence numbers. The wrapping error
	// names the file and byte offset. The spool does not skip such records;
	// an operator must inspect the directory.
	ErrCorrupt = errors.New("spool: corrupt")

	// ErrTooLarge means Append was given a record longer than MaxRecordSize.
	ErrTooLarge = errors.New("spool: record too large")

	// ErrUnknownSeq means Commit was given a sequence number that was never
	// appended.
	ErrUnknownSeq = errors.New("spool: sequence number not appended")

	// ErrFailed means an earlier write or fsync failed in a way that leaves
	// the state of the current segment unknown, so the spool refuses further
	// appends rather than risk a record that would not survive. The wrapping
	// error carries the original failure. Reopening the spool recovers.
	ErrFailed = errors.New("spool: failed")
)

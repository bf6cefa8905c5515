// Package audit records every request and response twice: as a line in
// Vault's file audit device format (a JSON-lines file operators already
// know) and as a leaf of an append-only Merkle log (package tlog) that anyone
// can verify against a signed checkpoint.
//
// A line hides tokens, accessors and every string of request and response
// data behind HMAC-SHA256 under the zone's audit salt. Its leaf commits to
// the line field by field — (name, SHA-256(salt ‖ value)) with a private
// per-field salt (package leaf) — so one entry's chosen fields can later be
// disclosed to an auditor with a proof, and nothing else.
//
// The Broker is the pipeline. Requests hand it entries; it encodes them on
// the caller's goroutine, then one caller at a time writes everything queued
// (group commit): first to every file device, then to the log. A batch that
// a required device refuses is removed from the devices that took it, and
// every request in it fails ("audit unavailable") before it changes
// anything. So the file and the log hold the same entries in the same
// order; after a crash the file's tail that the log never received (a batch
// cut short; no request in it was answered) is cut off at start.
package audit

import (
	"errors"
)

// Errors of the pipeline.
var (
	// ErrUnavailable means a required device did not accept an entry; the
	// request must fail without changing anything.
	ErrUnavailable = errors.New("audit unavailable")
	// ErrClosed means the broker or a device was closed.
	ErrClosed = errors.New("audit: closed")
	// ErrInvalidDevice means a device configuration was refused.
	ErrInvalidDevice = errors.New("audit: invalid device")
	// ErrBadSignature means a signed entry's signature did not verify.
	ErrBadSignature = errors.New("audit: bad signature")
	// ErrBadEntry means a signed entry is malformed (its seed, its line).
	ErrBadEntry = errors.New("audit: bad entry")
)

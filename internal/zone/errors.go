package zone

import "errors"

// Errors returned by this package, grouped by phase. Match them with
// errors.Is; they are returned wrapped with the zone name and operation.
var (
	// ErrInvalidName is returned for a zone name that is not a DNS-label-like
	// string; the wrapped message names the problem.
	ErrInvalidName = errors.New("invalid zone name")
	// ErrInvalidZone is returned for a zone record with a bad field
	// (description, labels, parent); the wrapped message names the field.
	ErrInvalidZone = errors.New("invalid zone")
	// ErrNotFound is returned when a zone does not exist. httpapi maps it to
	// 404; the wrapped message names the zone.
	ErrNotFound = errors.New("zone not found")
	// ErrExists is returned by Create when the zone already exists.
	ErrExists = errors.New("zone already exists")
	// ErrNotEmpty is returned by Delete when the zone still holds records,
	// child zones, or anything the caller's emptiness check reports.
	ErrNotEmpty = errors.New("zone is not empty")
	// ErrRootZone is returned for operations the root zone "" refuses
	// (Delete).
	ErrRootZone = errors.New("the root zone cannot be changed this way")

	// ErrMalformed is returned when a stored record is not a well-formed
	// zone envelope (too short, unknown format).
	ErrMalformed = errors.New("zone: malformed ciphertext envelope")
	// ErrUnknownVersion is returned when an envelope names a data key
	// version the zone does not hold (never created, or destroyed).
	ErrUnknownVersion = errors.New("zone: unknown data key version")
	// ErrDecrypt is returned when a ciphertext fails authentication: it was
	// tampered with, copied from another zone or path, or the wrong key
	// (root key, KEK) was used.
	ErrDecrypt = errors.New("zone: ciphertext failed authentication")
	// ErrCorruptKeys is returned when a zone's stored key document cannot be
	// parsed.
	ErrCorruptKeys = errors.New("zone: corrupt key document")
)

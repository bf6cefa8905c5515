package jointoken

import "errors"

// Errors returned by this package. Match them with errors.Is; they are
// returned wrapped with the zone and, where known, the token ID (never the
// token text).
var (
	// ErrTokenUnknown is returned by Redeem for a malformed token, or one
	// that no record matches (never created, deleted, or tidied away).
	ErrTokenUnknown = errors.New("join token unknown")
	// ErrTokenExpired is returned by Redeem when the token's lifetime is over.
	ErrTokenExpired = errors.New("join token expired")
	// ErrTokenUsed is returned by Redeem when the token was already redeemed:
	// a replay.
	ErrTokenUsed = errors.New("join token already used")
	// ErrTokenZone is returned by Redeem when the token was issued for
	// another zone than the one it is presented to.
	ErrTokenZone = errors.New("join token belongs to another zone")
	// ErrTokenNotYetValid is returned by Redeem when the token's creation
	// time is further in the future than the allowed clock skew: the clocks
	// of the server that made it and the one redeeming it disagree badly.
	ErrTokenNotYetValid = errors.New("join token not yet valid")
	// ErrInvalidOptions is returned by Create and New for a bad option
	// (TTL out of range, bad zone name, bad agent ID); the message names it.
	ErrInvalidOptions = errors.New("invalid join token options")
	// ErrCorrupt is returned when a stored token record cannot be parsed.
	ErrCorrupt = errors.New("corrupt join token record")
)

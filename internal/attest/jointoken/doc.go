// Package jointoken mints and redeems join tokens: random, single-use,
// short-lived secrets an operator hands to a new edge node so it can enroll
// with one trust zone.
//
// # The idea
//
// A join token proves only that whoever presents it was given it by an
// operator of the zone, recently, and that nobody presented it before. It
// says nothing about the machine presenting it, so an identity admitted on a
// join token alone is weak; the TPM attestor (a later package) adds evidence
// about the machine itself.
//
// # Token format
//
//	evjt.<zone label>.<43 characters: 32 random bytes, unpadded base64url>
//
// The zone label is the zone name, or "root" for the root zone "" (the name
// "root" is reserved, so it cannot collide). The label lets a server say
// "this token belongs to another zone" (ErrTokenZone) without any lookup; it
// grants nothing, because the stored record is found by the hash of the
// whole token text, so a token whose label was edited is unknown.
//
// # Storage
//
// The token text is shown once, by Create, and never stored. A zone's store
// (the caller passes the zone's encrypted view) holds one JSON record per
// token at
//
//	attest/tokens/<hex SHA-256 of the token text>
//
// The hash is the token's ID: it is safe to list and log, and it cannot be
// turned back into the token (256 random bits need no salt or stretching).
//
// # Single use
//
// Redeem reads the record, checks it, and writes it back marked used while
// holding a lock stripe chosen by the token's ID. storage.Backend offers no
// compare-and-swap, so the lock stands in for one: exactly one of any number
// of concurrent redemptions of a token in this process succeeds. As with the
// zone package, only one server process may write a zone (a Raft leader).
package jointoken

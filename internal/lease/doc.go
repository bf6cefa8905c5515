// Package lease is edgevault's lease manager: it remembers every dynamic
// secret handed out (a PostgreSQL user, a certificate, ...), renews it on
// request within its cap, and revokes it through the engine that made it
// when it expires, when asked, or when the token that obtained it is
// revoked.
//
// # Model
//
// A Lease names the engine path that created it (Path, e.g.
// "database/creds/ro"), when it was issued, how long it lives (TTL, counted
// from the last renewal) and the absolute cap IssueTime+MaxTTL no renewal can
// pass. Data is opaque JSON the engine needs to undo the secret (a username,
// a certificate serial); the manager stores it and hands it back.
//
// Revocation is two steps: the engine's Revoker undoes the secret, then the
// lease is deleted. If the engine fails (PostgreSQL down), the lease is NOT
// deleted: it is marked failing (RevokeAttempts, LastError, NextAttempt) and
// retried with exponential backoff between Config.RetryMin and
// Config.RetryMax, for ever. Failing lists such leases; only RevokeForce,
// an explicit operator action, drops a lease without its engine.
//
// # Storage layout
//
// A Manager owns one storage.Backend (one zone's encrypted system view,
// e.g. storage.NewView(zone, "sys/expire/")). Its keys:
//
//	id/<lease id>                 the lease record (JSON); lease ids are
//	                              "<path>/<24 chars>", so List(prefix) is
//	                              one storage List of one level. Generated
//	                              suffixes start with the issue time, so
//	                              new leases of a path land on the same
//	                              B+tree pages (2.5x Register on bbolt).
//	due/<16 hex ns>.<b64 id>      empty; one per lease: the next time the
//	                              manager must act on it (expiry, or the
//	                              next revoke retry). Names sort by time.
//	tok/<accessor>/<b64 id>       empty; leases obtained by a token
//	fail/<b64 id>                 empty; leases whose revocation failed
//
// (<b64 id> is the lease id in unpadded base64url, so it holds no "/".)
// Every change to a lease and its index keys is one storage Txn, so a crash
// never leaves a lease without its due/ key.
//
// # Expiry queue
//
// Start rebuilds an in-memory min-heap of (due time, lease id) from ONE List
// of due/ (names only, no record is read), then runs a timer on the heap's
// minimum. The heap holds nothing else: about 24 bytes plus the id string
// per lease. Entries are never removed in place; a renewal pushes a new
// entry and the stale one is recognised when it pops (the stored lease's due
// time is later) and dropped. Leases that expired while the server was down
// are due in the past and are revoked as soon as Start has rebuilt the
// queue. Due leases are handed to Config.Workers goroutines, so revocations
// of many leases overlap and the storage backend can group their commits.
//
// # Concurrency
//
// A Manager is safe for concurrent use. Operations on one lease are
// serialised by a per-id lock (unrelated leases never wait for each other,
// even while an engine hangs); the engine's Revoke and Renew are called
// with that lock held, so an engine never sees two calls for one lease at
// once.
package lease

// Package zone implements trust zones: named, labelled partitions of
// edgevault whose secrets are separated by keys, not only by policy.
//
// # Key hierarchy
//
//	seal ─unlocks─► root key ─wraps─► zone KEK ─wraps─► zone data keys ─encrypt─► records
//
// Each level protects the next:
//
//   - The root key is whatever the seal unlocks. This package sees it only
//     through a RootWrapper (NewAESRoot builds one from 32 key bytes; an HSM
//     could implement the interface itself). It wraps one thing per zone:
//     the zone's key-encryption key (KEK).
//   - Each zone has one KEK at a time, numbered (KEK version). It wraps the
//     zone's data keys. RotateKEK replaces it and rewraps the data keys in
//     the same write.
//   - Each zone has one or more data keys, numbered from 1; one is active
//     and encrypts new records. Rotate adds a version; Rewrap moves old
//     records to the active version and destroys every version no record
//     uses any more.
//   - Records are AES-256-GCM envelopes (format below) whose associated
//     data is the zone name and the record's path inside the zone: a
//     ciphertext copied to another zone or another path does not decrypt.
//
// Every wrapped key carries associated data naming its kind, zone and
// version, so a wrapped KEK or data key cannot be moved between zones or
// versions either. Rotating the root key (RewrapKEKs) rewrites one small key
// document per zone, in one transaction; no data key or record changes.
//
// # Record envelope (format 1)
//
//	[1 byte format = 1][4 bytes data key version, big-endian][12 bytes nonce][GCM ciphertext || 16-byte tag]
//
// ParseEnvelope reads the version without a key (KeyStatus counts records
// per version this way).
//
// # Storage
//
// A Store keeps everything in one storage.Backend (the server passes a
// barrier view, so zone metadata is also encrypted at rest):
//
//	zones/meta/<name>      zone record (JSON)
//	zones/keys/<id>        key document: wrapped KEK, wrapped data keys, active version (JSON)
//	zones/rewrap/<id>      rewrap checkpoint (JSON)
//	zones/data/<id>/<path> record envelopes
//
// <id> is the zone name, or "_root" for the root zone "". A zone view's keys
// are stored under a prefix, so they can be at most storage.MaxKeyLen minus
// the prefix length.
//
// # Concurrency and rewrap
//
// A zone's Backend reads keys through an atomic snapshot: Get and List take
// no lock. Writers (Put, Delete, Txn) take per-key lock stripes; the rewrap
// worker takes the same stripes for each batch it re-reads, re-encrypts and
// writes back, so it never overwrites a concurrent write with stale data
// (the stripes stand in for a compare-and-swap the storage interface lacks;
// they are per process, so only one server may write a zone's records, as
// with a Raft leader). Each batch is written in one transaction together
// with the rewrap checkpoint, so a crash loses no progress and leaves every
// record under a version that still exists. A version is destroyed only
// after writers have been quiesced (every stripe cycled, so none holds an
// older snapshot) and a full count finds no record under it.
package zone

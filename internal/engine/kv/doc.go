// Package kv is edgevault's versioned key/value secrets engine: Vault's KV
// version 2 API (config, data, metadata, delete, undelete, destroy, subkeys)
// served as a logical.Handler over one mount's storage view.
//
// # Model
//
// Every secret path ("app/db") has one metadata record and a list of
// numbered versions. Writing data creates version current+1; reading
// returns the latest version unless ?version=N asks for another. A version
// can be soft-deleted (a deletion_time is set and reads answer 404 with the
// version's metadata; undelete clears it) or destroyed (its data is removed
// for good and it stays listed as destroyed). At most max_versions versions
// are kept: the key's own setting, else the mount's config, else
// DefaultMaxVersions; older ones are pruned, data and metadata, when a new
// version is written. delete_version_after gives each new version a
// deletion_time in the future; once the clock passes it the version reads as
// deleted. Check-and-set (options.cas) makes a write conditional on the
// current version number; cas 0 means "only if no version exists yet".
//
// # Storage layout
//
// The engine receives a storage.Backend that is already confined to the
// mount and encrypted by the barrier; its keys are private to this package:
//
//	config           mount configuration (JSON)
//	m/<path>         key metadata, in a compact binary form, INCLUDING the
//	                 JSON data of the current version
//	v/<path>/<n>     the JSON data of every retained, non-destroyed version
//	                 n that is no longer the current one
//
// Reads are the hot path, so the current version's data lives inside the
// metadata record: reading the latest version is exactly one storage Get
// (and one decryption), with no lock taken. Reading an older version is the
// metadata Get plus one version Get. When a new version is written, the
// previous current data moves into its own v/ record in the same
// transaction, so a write is ONE storage Txn (metadata + at most one moved
// version + pruned versions), atomic and durable with one commit, and every
// version's data is stored exactly once.
//
// # Concurrency
//
// Writers to one path are serialised by a striped lock set (256 mutexes
// chosen by a hash of the path), so check-and-set and the read-modify-write
// of metadata are exact, while writes to different paths proceed in parallel
// and their transactions can be grouped by the storage backend into one
// fsync. No lock is held across paths, and none is taken to read the latest
// version (one Get is atomic). Older versions are read under the path's read
// lock so a concurrent prune or destroy cannot remove the record between the
// two Gets.
//
// # Errors
//
// Bad input returns errors matching logical.ErrInvalidRequest whose text
// names the field or the problem; a failed check-and-set matches
// logical.ErrCASMismatch; a missing secret matches logical.ErrNotFound. A
// read of a deleted or destroyed version returns a Response with
// StatusCode 404 and Data {"data": null, "metadata": {...}} exactly as Vault
// does, so clients can see the deletion_time. A request that fails changes
// nothing in storage. Error texts never contain secret data.
package kv

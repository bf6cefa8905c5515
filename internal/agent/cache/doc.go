// Package cache is the edge agent's encrypted persistent cache of KV v2
// secrets, the data the agent serves when its control plane is slow or
// unreachable.
//
// # Model
//
// The server streams ordered events; the agent turns each batch into Ops
// and calls Apply(seq, ops). A batch and the watermark (the last applied
// sequence number) are committed in ONE bbolt transaction, so after a crash
// the watermark never claims events that are not on disk, and the agent
// resumes its stream from Watermark() without losing or double-applying
// anything. A replayed batch (seq ≤ watermark) changes nothing and returns
// ErrAlreadyApplied. Watermark 0 means "needs a full sync"; Reset drops
// everything atomically for one.
//
// Reads never touch the disk: Open decrypts every record into an in-memory
// index, and Get is a map lookup under a shared lock returning slices of
// that index (no allocation, no decryption). Each path carries max_stale
// and synced_at; the agent calls MarkSynced on heartbeats while it is
// current. Get reports the entry's age (from Options.Clock) and refuses, with
// ErrTooStale, an entry more than max_stale past its last sync.
//
// # Protection at rest
//
// The file holds a random 32-byte cache key wrapped by a KeyProtector (a
// key file now, a TPM-sealed key later). Record and digest keys are derived
// from it with HKDF. Every record is AES-256-GCM encrypted with associated
// data binding it to its zone, kind, path and version, so a value that is
// edited, or moved to another path or version, fails to open. Such a record
// is deleted at Open, counted (Stats.Dropped), logged by key without its
// value, and reads of its path return ErrTampered.
//
// Per-record AEAD cannot see records deleted, added back or replaced by an
// older copy (for instance a secret resurrected after its revocation).
// So the encrypted state record also holds a digest of the whole set: the
// sum modulo 2^256 of an HMAC of every (bucket, key, value), kept current
// by each write and recomputed at Open. On any mismatch or dropped record,
// the cache no longer trusts its cache-wide sync time or watermark: entries
// that authenticate stay servable only within max_stale of their own last
// write, and the watermark drops to 0 so the agent does a full resync.
//
// What it does not stop: an attacker who can read the key (the key file,
// in dev) can read and forge everything; a rollback of the WHOLE file to an
// older copy is consistent and undetected (its entries still expire by
// their own synced_at) until a monotonic counter (TPM NV) is bound in.
//
// # Memory
//
// The index holds each version's data and metadata in one exact-size buffer
// (about 14 MiB of heap for 10,000 secrets of 1 KiB). The file itself must
// not stay resident next to it: bbolt reads it through a shared read-only
// memory mapping, and every page a transaction reads (its B+tree path, the
// old values it replaces) stays in the process's resident set until unmapped.
// Open reads every page, then closes and reopens the file; each write
// transaction, once committed, tells the kernel (madvise MADV_DONTNEED, on
// Linux) that the mapping's pages are not needed, which drops them from the
// resident set but not from the page cache, so the next transaction faults
// back in only the few pages it reads. Release does the same on demand
// (elsewhere than Linux, by reopening the file).
//
// A file bbolt cannot read is reported as ErrCorrupt naming the file: the
// agent removes it and re-syncs from scratch.
package cache

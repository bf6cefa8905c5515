// Package spool is the edge agent's durable audit spool: an append-only,
// segmented, on-disk queue of opaque audit records that the agent writes
// before it answers a local read, and that a forwarder later ships to the
// control plane in order.
//
// # Guarantees
//
// Every record gets a sequence number: 1, 2, 3, ... across restarts, strictly
// increasing and without gaps. A record whose Append returned nil is in the
// kernel's page cache: it survives the agent being killed (kill -9, panic,
// OOM) at any moment and is returned by Next, in sequence order, until a
// Commit covers it. Append does not fsync. The spool fsyncs on a timer
// (Options.SyncInterval, default one second), in Next before it hands out
// records not yet durable, and at Close. A power loss or kernel crash may
// therefore lose records appended during the last SyncInterval before it,
// never older ones, and never a record the forwarder has read: a record the
// server has seen is never lost and its sequence number never reused.
//
// Append costs one write(2) under a mutex: no fsync and no goroutine hand-off
// per record, so it can sit on the agent's read path. Starting a new segment
// only creates a file; its fsyncs are left to the next Sync.
//
// # Forwarding
//
// One forwarder calls Next to read the records after the committed cursor,
// ships them, and calls Commit with the last sequence number the server
// acknowledged. Until Commit, Next returns the same records again (delivery
// is at least once; the server deduplicates by sequence number). Commit
// persists the cursor (temporary file, fsync, rename, directory fsync) before
// it deletes the segments it consumed. Wait returns a channel that is
// signalled when records are appended, so the forwarder can sleep.
//
// # On-disk format
//
// The spool is a directory holding segment files and a cursor file. A segment
// is named after the sequence number of its first record, as twenty decimal
// digits with the suffix ".spool" (00000000000000000001.spool), and holds
// consecutive records, each framed as
//
//	length  uint32, big-endian: length of payload (at most MaxRecordSize)
//	crc     uint32, big-endian: CRC-32C (Castagnoli) of seq || payload
//	seq     uint64, big-endian
//	payload length bytes
//
// A new segment starts when the current one would grow past
// Options.SegmentSize. The file "cursor" holds the last committed sequence
// number in decimal followed by a newline. The file "synced" is the durable
// mark: after each fsync it records the segment and offset up to which the
// spool is known to be on disk (two big-endian uint64 and their CRC-32C).
//
// # Recovery
//
// Open scans every segment that holds an uncommitted record, checking each
// frame's length, checksum and sequence number, and fsyncs them. Damage is
// handled by where it is:
//
//   - a record cut short or failing its checksum at the end of the last
//     segment, with no valid record after it, is a torn write: Open logs it
//     and truncates the segment there;
//   - damage of that kind (or a missing stretch between segments) at or past
//     the durable mark concerns writes that were never fsynced, which only a
//     power loss or kernel crash can leave behind: Open logs it, truncates
//     there and deletes the later segments;
//   - anything else (a bad record followed by good ones before the mark, a
//     gap in sequence numbers, a valid record with the wrong number) is
//     reported as ErrCorrupt naming the file and byte offset. Records are
//     never silently skipped.
package spool

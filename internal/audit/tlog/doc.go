// Package tlog is edgevault's transparency log: an append-only Merkle log
// (RFC 6962 hashing) kept in local files, published in the C2SP tlog-tiles
// layout with signed checkpoints in the C2SP tlog-checkpoint format.
//
// # The idea
//
// Every audited request becomes one log entry with two parts. The public
// part, the leaf data, is what the world may see and what the Merkle tree
// commits to: leaf hash = SHA-256(0x00 || leaf data). The private part (the
// full audit entry and its secret salts) is kept beside it in a private
// journal and is never published; it lets the operator later disclose one
// entry and prove, with an inclusion proof against a signed checkpoint, that
// it was logged and never changed.
//
// Appending is cheap and synchronous: [Log.Append] writes the batch to the
// journal with a single write(2) and returns its index. A background
// integrator, every [Options.CheckpointInterval], fsyncs the journal, hashes
// the new entries into tiles, writes and fsyncs the tiles, and only then
// signs and atomically replaces the checkpoint. So a checkpoint never
// covers an entry that could be lost in a crash, and a crash loses at most
// entries that were written but neither fsynced nor checkpointed by the
// kernel (those written before the crash usually survive in the page cache;
// a power cut can lose them).
//
// # Layout of Dir
//
//	checkpoint                 latest signed checkpoint (signed note: origin,
//	                           size, base64 root hash, blank line, signatures);
//	                           replaced atomically (tmp, fsync, rename, dir fsync)
//	tile/<L>/<N>               full hash tile: 256 hashes of Merkle level 8·L
//	tile/<L>/<N>.p/<W>         partial hash tile of width W (1..255)
//	tile/entries/<N>           entry bundle: 256 leaves, each a 2-byte big-endian
//	tile/entries/<N>.p/<W>     length followed by the leaf data
//	private/journal            private journal (mode 0700 directory; never publish it)
//	private/journal.idx        sparse index into the journal
//	lock                       held (flock) by the process that has the log open
//
// <N> uses the tlog-tiles encoding: decimal digits in groups of three, every
// group but the last prefixed with "x" (1234067 → x001/x234/067). Partial
// tiles for a checkpoint's size are written before that checkpoint. Once a
// tile is full, its partial versions are removed one checkpoint later (a
// client holding an older checkpoint falls back to the full tile). Serving checkpoint and tile/ with any static web server
// gives a standard tlog-tiles log (tile height 8).
//
// # The journal
//
// The journal is the source of truth for entries not yet integrated and the
// only home of the private bytes. It is a sequence of records:
//
//	u32 body length | u64 index | u16 leaf length | leaf | private | u32 CRC-32C
//
// (big-endian; the checksum covers everything before it). A torn tail —
// a short record or a bad checksum after a crash — is cut off on [Open].
// private/journal.idx holds the byte offset of every 256th record as a big-endian
// u64, so entry i is found by seeking to the record of i&^255 and skipping
// forward; it is rebuilt from the journal when it is short or wrong.
//
// # Recovery
//
// [Open] takes the lock, cuts the journal's torn tail, reads the checkpoint
// and checks that the signer's key signed it, reloads the right edge of the
// tree from the partial tiles and checks it against the checkpoint's root,
// then integrates whatever the journal holds beyond the checkpoint. A
// journal shorter than the checkpoint is [ErrCorrupt]: the log cannot
// reproduce what it already published.
//
// # Verification
//
// [VerifyDir] re-derives everything from the journal and compares it with
// what is published; [ReadJournal] lets an offline tool walk the entries.
package tlog

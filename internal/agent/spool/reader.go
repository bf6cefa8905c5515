package spool

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// position is a byte offset in a segment, named by its first sequence number.
type position struct {
	seg uint64
	off int64
}

// reader is the forwarder's side of the spool, guarded by Spool.rmu.
type reader struct {
	pos        position            // where the first uncommitted record starts (or will start)
	files      map[uint64]*os.File // segments open for reading, by first sequence number
	batchFirst uint64              // sequence number of the first record of the last Next
	batchEnds  []position          // where each record of the last Next ends
	segs       []segment           // scratch for snapshots
}

// closeFiles closes every segment open for reading.
func (r *reader) closeFiles() {
	for first, f := range r.files {
		f.Close()
		delete(r.files, first)
	}
}

// file returns the segment first, open for reading.
func (s *Spool) readFile(first uint64) (*os.File, error) {
	if f, ok := s.rd.files[first]; ok {
		return f, nil
	}
	f, err := os.Open(filepath.Join(s.dir, segmentName(first)))
	if err != nil {
		return nil, fmt.Errorf("spool: open segment for reading: %w", err)
	}
	s.rd.files[first] = f
	return f, nil
}

// snapshot copies the live segments, with the active one's current size,
// into the reader's scratch slice. Every byte within those sizes was written
// by a completed Append.
func (s *Spool) snapshot() []segment {
	s.mu.Lock()
	s.rd.segs = append(s.rd.segs[:0], s.segs...)
	s.rd.segs[len(s.rd.segs)-1].size = s.activeSize
	s.mu.Unlock()
	return s.rd.segs
}

// segIndex returns the index of the segment first in segs.
func segIndex(segs []segment, first uint64) (int, error) {
	for i, sg := range segs {
		if sg.first == first {
			return i, nil
		}
	}
	return 0, fmt.Errorf("spool: internal error: read position in segment %d, which is not live", first)
}

// Next returns, in order, up to maxRecords records after the committed
// cursor whose payloads total at most maxBytes; it returns at least one
// record when any is pending, however large, and nil when none is. The
// records it returns are durable: if some were not yet fsynced, Next fsyncs
// them first (without holding up Append), so a record the forwarder ships
// survives a power loss and its sequence number is never reused. Until
// Commit moves the cursor, Next returns the same records again. Record.Data
// is a fresh slice the caller may keep. maxRecords below 1 counts as 1.
// Next fails with ErrCorrupt if a record read back is damaged, naming the
// file and offset.
func (s *Spool) Next(maxRecords, maxBytes int) ([]Record, error) {
	maxRecords = max(maxRecords, 1)
	maxBytes = max(maxBytes, 0)
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.isClosed.Load() {
		return nil, ErrClosed
	}
	segs := s.snapshot()
	next := s.committed.Load() + 1
	s.rd.batchFirst = next
	s.rd.batchEnds = s.rd.batchEnds[:0]
	pos := s.rd.pos
	i, err := segIndex(segs, pos.seg)
	if err != nil {
		return nil, err
	}
	if i == len(segs)-1 && pos.off >= segs[i].size {
		return nil, nil // nothing pending
	}
	// Hand out only durable records: once the server has a record, a power
	// loss must not take it back and let its number be reused. The fsync
	// runs after the snapshot, so it covers every byte Next reads.
	if err := s.Sync(); err != nil {
		return nil, err
	}
	var out []Record
	payloadBytes := 0
	for len(out) < maxRecords {
		sg := segs[i]
		avail := sg.size - pos.off
		if avail <= 0 {
			if i == len(segs)-1 {
				break
			}
			i++
			pos = position{seg: segs[i].first}
			continue
		}
		// Read what the budget allows, but always enough for one whole
		// frame so that a large record is not read in pieces.
		want := min(int64(maxBytes-payloadBytes), avail)
		if left := int64(maxRecords - len(out)); left >= avail/headerSize {
			want = avail
		} else {
			want += left * headerSize
		}
		want = min(max(want, headerSize+MaxRecordSize), avail)
		buf := make([]byte, want)
		f, err := s.readFile(sg.first)
		if err != nil {
			return nil, err
		}
		if _, err := f.ReadAt(buf, pos.off); err != nil {
			return nil, fmt.Errorf("spool: read %s at offset %d: %w", f.Name(), pos.off, err)
		}
		p, full := 0, false
		for len(out) < maxRecords && p < len(buf) {
			seq, payload, size, problem := decodeFrame(buf[p:], s.tab, next)
			if problem == frameShort && p > 0 {
				break // the rest of this frame is beyond buf: read again from here
			}
			if problem != frameOK {
				return nil, fmt.Errorf("spool: segment %s offset %d: record %d: %s: %w", f.Name(), pos.off+int64(p), next, problem, ErrCorrupt)
			}
			if len(out) > 0 && payloadBytes+len(payload) > maxBytes {
				full = true
				break
			}
			out = append(out, Record{Seq: seq, Data: payload})
			payloadBytes += len(payload)
			p += size
			next++
			s.rd.batchEnds = append(s.rd.batchEnds, position{seg: sg.first, off: pos.off + int64(p)})
		}
		pos.off += int64(p)
		if full {
			break
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// Commit records that every record numbered seq or lower has been forwarded:
// it persists the cursor (temporary file, fsync, rename, directory fsync) and
// then deletes the segments that hold only committed records. After Commit
// returns nil, Next never returns those records again, in this process or
// after a restart. Committing a number at or below the cursor does nothing;
// a number never appended fails with ErrUnknownSeq.
func (s *Spool) Commit(seq uint64) error {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.isClosed.Load() {
		return ErrClosed
	}
	committed := s.committed.Load()
	if seq <= committed {
		return nil
	}
	if last := s.lastSeq.Load(); seq > last {
		return fmt.Errorf("spool: commit %d: last appended is %d: %w", seq, last, ErrUnknownSeq)
	}
	segs := s.snapshot()
	var to position
	if r := &s.rd; r.batchFirst == committed+1 && seq-r.batchFirst < uint64(len(r.batchEnds)) {
		to = r.batchEnds[seq-r.batchFirst]
	} else {
		var err error
		if to, err = s.walk(segs, s.rd.pos, committed+1, seq); err != nil {
			return err
		}
	}
	// Step past the ends of sealed segments so that they can be deleted.
	i, err := segIndex(segs, to.seg)
	if err != nil {
		return err
	}
	for i < len(segs)-1 && to.off >= segs[i].size {
		i++
		to = position{seg: segs[i].first}
	}
	consumed, err := bytesBetween(segs, s.rd.pos, to)
	if err != nil {
		return err
	}
	if err := s.writeCursor(seq); err != nil {
		return err
	}
	s.rd.pos = to
	s.rd.batchEnds = s.rd.batchEnds[:0]
	s.committed.Store(seq)
	s.pendingBytes.Add(-consumed)

	s.mu.Lock()
	n := 0
	for n < len(s.segs)-1 && s.segs[n].first < to.seg {
		n++
	}
	dead := append([]segment(nil), s.segs[:n]...)
	s.segs = append(s.segs[:0], s.segs[n:]...)
	s.mu.Unlock()
	for _, sg := range dead {
		if f, ok := s.rd.files[sg.first]; ok {
			f.Close()
			delete(s.rd.files, sg.first)
		}
		path := filepath.Join(s.dir, segmentName(sg.first))
		if err := os.Remove(path); err != nil {
			// The cursor is durable; Open deletes the file next time.
			s.log.Warn("spool: remove committed segment", "file", path, "err", err)
		}
	}
	return nil
}

// walk returns where record to ends, reading frame headers from the record
// numbered from at position pos. Commit uses it when seq was not returned by
// the last Next.
func (s *Spool) walk(segs []segment, pos position, from, to uint64) (position, error) {
	i, err := segIndex(segs, pos.seg)
	if err != nil {
		return pos, err
	}
	var hdr [headerSize]byte
	for seq := from; seq <= to; {
		if pos.off >= segs[i].size {
			if i == len(segs)-1 {
				return pos, fmt.Errorf("spool: commit %d: record %d not found: %w", to, seq, ErrCorrupt)
			}
			i++
			pos = position{seg: segs[i].first}
			continue
		}
		f, err := s.readFile(pos.seg)
		if err != nil {
			return pos, err
		}
		if _, err := f.ReadAt(hdr[:], pos.off); err != nil {
			return pos, fmt.Errorf("spool: read %s at offset %d: %w", f.Name(), pos.off, err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if got := binary.BigEndian.Uint64(hdr[8:]); got != seq || n > MaxRecordSize {
			return pos, fmt.Errorf("spool: segment %s offset %d: record %d: bad header: %w", f.Name(), pos.off, seq, ErrCorrupt)
		}
		pos.off += headerSize + int64(n)
		seq++
	}
	return pos, nil
}

// bytesBetween returns the number of bytes from a to b, a at or before b.
func bytesBetween(segs []segment, a, b position) (int64, error) {
	if a.seg == b.seg {
		return b.off - a.off, nil
	}
	i, err := segIndex(segs, a.seg)
	if err != nil {
		return 0, err
	}
	n := segs[i].size - a.off
	for i++; i < len(segs) && segs[i].first != b.seg; i++ {
		n += segs[i].size
	}
	return n + b.off, nil
}

// cursorName is the file holding the last committed sequence number.
const cursorName = "cursor"

// writeCursor durably replaces the cursor file with seq.
func (s *Spool) writeCursor(seq uint64) error {
	path := filepath.Join(s.dir, cursorName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: commit %d: %w", seq, err)
	}
	_, err = f.Write(append(strconv.AppendUint(nil, seq, 10), '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: commit %d: write cursor: %w", seq, err)
	}
	return nil
}

package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// readCursor returns the committed sequence number stored in dir, 0 if the
// cursor file does not exist.
func readCursor(dir string) (uint64, error) {
	path := filepath.Join(dir, cursorName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("spool: read cursor: %w", err)
	}
	text, ok := strings.CutSuffix(string(b), "\n")
	seq, err := strconv.ParseUint(text, 10, 64)
	if !ok || err != nil {
		return 0, fmt.Errorf("spool: cursor file %s: content %q is not a sequence number: %w", path, b, ErrCorrupt)
	}
	return seq, nil
}

// listSegments returns the first sequence numbers of the segment files in
// dir, in increasing order.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: list directory: %w", err)
	}
	var firsts []uint64
	for _, e := range entries { // sorted by name: fixed-width names sort by number
		if first, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			firsts = append(firsts, first)
		}
	}
	return firsts, nil
}

// recover rebuilds the spool's state from dir; see Open.
func (s *Spool) recover() error {
	committed, err := readCursor(s.dir)
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.dir, cursorName+".tmp")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: remove stale cursor: %w", err)
	}
	firsts, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	// A segment followed by one that starts at or below committed+1 holds
	// only committed records: a crash came between Commit's cursor write and
	// its deletes.
	live := 0
	for live < len(firsts)-1 && firsts[live+1] <= committed+1 {
		live++
	}
	if err := s.removeSegments(firsts[:live]); err != nil {
		return err
	}
	firsts = firsts[live:]

	mark, hasMark := s.readMark()
	// unsynced reports whether position p is at or past the durable mark:
	// bytes there were never fsynced, so a power loss may have damaged them
	// and recovery may drop them.
	unsynced := func(p position) bool { return hasMark && !p.before(mark) }
	var (
		segs     []segment
		last     = committed // last sequence number on disk, once a segment is scanned
		readPos  = position{off: -1}
		lastSize int64
		dropFrom = -1 // index in firsts of the first segment to drop
	)
	for i, first := range firsts {
		path := filepath.Join(s.dir, segmentName(first))
		if i == 0 && first > committed+1 {
			return fmt.Errorf("spool: segment %s starts at record %d but the cursor is at %d: records missing: %w", path, first, committed, ErrCorrupt)
		}
		if i > 0 && first != last+1 {
			prev := segs[len(segs)-1]
			if !unsynced(position{seg: prev.first, off: prev.size}) {
				return fmt.Errorf("spool: segment %s starts at record %d but the previous segment ends at %d: %w", path, first, last, ErrCorrupt)
			}
			s.log.Warn("spool: records written after the last fsync are missing (power loss?); dropping later segments", "file", path, "first", first, "previous_last", last)
			dropFrom = i
			break
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("spool: read segment: %w", err)
		}
		isLast := i == len(firsts)-1
		res := scanSegment(data, s.tab, first, committed+1)
		if res.problem != frameOK {
			switch {
			case isLast && res.problem.torn() && !validFrameAfter(data[res.end:], s.tab, res.last+1):
				s.log.Warn("spool: truncating torn tail", "file", path, "offset", res.end, "bytes", int64(len(data))-res.end, "problem", res.problem.String())
			case res.problem.torn() && unsynced(position{seg: first, off: res.end}):
				s.log.Warn("spool: records written after the last fsync are damaged (power loss?); truncating", "file", path, "offset", res.end, "problem", res.problem.String(), "later_segments_dropped", len(firsts)-i-1)
				dropFrom = i + 1
			default:
				return fmt.Errorf("spool: segment %s offset %d: record %d: %s: %w", path, res.end, res.last+1, res.problem, ErrCorrupt)
			}
			if err := truncateSync(path, res.end); err != nil {
				return err
			}
		} else if err := fsyncPath(path); err != nil {
			// Records a killed process left in the page cache become
			// durable before the mark says they are.
			return err
		}
		if res.wantOff >= 0 {
			readPos = position{seg: first, off: res.wantOff}
		}
		segs = append(segs, segment{first: first, size: res.end})
		last = res.last
		lastSize = res.end
		if dropFrom >= 0 {
			break
		}
	}
	if dropFrom >= 0 && dropFrom < len(firsts) {
		if err := s.removeSegments(firsts[dropFrom:]); err != nil {
			return err
		}
		if err := syncDir(s.dir); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		firsts = firsts[:dropFrom]
	}

	if len(segs) == 0 || last <= committed {
		// Nothing uncommitted is on disk. If the cursor is ahead of the
		// records (a power loss took records the server already has), the
		// sequence continues after the cursor so numbers are never reused.
		if len(segs) > 0 && last < committed {
			s.log.Warn("spool: records lost before the cursor; continuing after it", "last_on_disk", last, "cursor", committed)
		}
		if err := s.removeSegments(firsts); err != nil {
			return err
		}
		f, err := s.createSegment(committed + 1)
		if err != nil {
			return err
		}
		s.active = f
		s.segs = []segment{{first: committed + 1}}
		s.nextSeq = committed + 1
		s.rd.pos = position{seg: committed + 1}
		s.committed.Store(committed)
		s.lastSeq.Store(committed)
		return s.initMark(position{seg: committed + 1})
	}
	if readPos.off < 0 {
		return fmt.Errorf("spool: record %d after the cursor not found: %w", committed+1, ErrCorrupt)
	}
	lastFirst := segs[len(segs)-1].first
	f, err := os.OpenFile(filepath.Join(s.dir, segmentName(lastFirst)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("spool: open last segment: %w", err)
	}
	s.active = f
	s.activeSize = lastSize
	s.segs = segs
	s.nextSeq = last + 1
	s.rd.pos = readPos
	s.committed.Store(committed)
	s.lastSeq.Store(last)
	pending, err := bytesBetween(segs, readPos, position{seg: lastFirst, off: lastSize})
	if err != nil {
		f.Close()
		return err
	}
	s.pendingBytes.Store(pending)
	return s.initMark(position{seg: lastFirst, off: lastSize})
}

// removeSegments deletes the named segments.
func (s *Spool) removeSegments(firsts []uint64) error {
	for _, first := range firsts {
		path := filepath.Join(s.dir, segmentName(first))
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("spool: remove committed segment: %w", err)
		}
	}
	return nil
}

// truncateSync truncates the file at path to size and fsyncs it.
func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("spool: truncate torn tail: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("spool: truncate torn tail: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: truncate torn tail: fsync %s: %w", path, err)
	}
	return nil
}

// fsyncPath fsyncs the file at path.
func fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: fsync %s: %w", path, err)
	}
	return nil
}

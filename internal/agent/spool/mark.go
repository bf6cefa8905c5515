package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The mark file records how far the spool is known to be durable: after
// every successful Sync it holds the position (segment, offset) that the
// fsyncs covered. Recovery trusts everything before the mark; damage at or
// past it can only come from a power loss or kernel crash that lost writes
// never fsynced, so recovery drops those records instead of refusing to
// open. Layout: first seq of the segment (uint64), offset (uint64), CRC-32C
// of those 16 bytes (uint32), all big-endian.
const (
	markName = "synced"
	markSize = 20
)

// before reports whether p comes before q in the spool.
func (p position) before(q position) bool {
	return p.seg < q.seg || (p.seg == q.seg && p.off < q.off)
}

// readMark returns the durable mark, and false if there is none or it is
// unreadable (then recovery applies its strict rules).
func (s *Spool) readMark() (position, bool) {
	path := filepath.Join(s.dir, markName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return position{}, false
	}
	if err != nil || len(b) != markSize || binary.BigEndian.Uint32(b[16:]) != frameChecksum(s.tab, b[:16]) {
		s.log.Warn("spool: durable mark unreadable; any damage will be treated as corruption", "file", path, "err", err, "size", len(b))
		return position{}, false
	}
	return position{seg: binary.BigEndian.Uint64(b), off: int64(binary.BigEndian.Uint64(b[8:]))}, true
}

// initMark opens the mark file at Open and records end, the end of the
// recovered (and fsynced) records.
func (s *Spool) initMark(end position) error {
	path := filepath.Join(s.dir, markName)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("spool: open durable mark: %w", err)
	}
	s.mark = f
	if errors.Is(statErr, fs.ErrNotExist) {
		if err := syncDir(s.dir); err != nil {
			return fmt.Errorf("spool: create durable mark: %w", err)
		}
	}
	return s.writeMark(end)
}

// writeMark durably records that everything before p is fsynced. Callers
// hold syncMu (or own the spool, in Open).
func (s *Spool) writeMark(p position) error {
	var b [markSize]byte
	binary.BigEndian.PutUint64(b[:], p.seg)
	binary.BigEndian.PutUint64(b[8:], uint64(p.off))
	binary.BigEndian.PutUint32(b[16:], frameChecksum(s.tab, b[:16]))
	if _, err := s.mark.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("write durable mark: %w", err)
	}
	if err := s.mark.Sync(); err != nil {
		return fmt.Errorf("fsync durable mark: %w", err)
	}
	s.markPos = p
	return nil
}

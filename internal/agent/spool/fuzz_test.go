package spool

import (
	"bytes"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRecover writes arbitrary bytes as the only segment of a spool, with
// or without a durable mark at offset mark, and opens it. Open must not
// panic; it either refuses with ErrCorrupt or recovers, and then the records
// it yields must be exactly a valid prefix of the bytes (nothing past the
// first damage), numbered from 1; it may drop valid records after damage
// only past the mark; and the spool must accept and keep a new record.
func FuzzRecover(f *testing.F) {
	tab := crc32.MakeTable(crc32.Castagnoli)
	var good []byte
	for i := range 4 {
		good = appendFrame(good, tab, uint64(i+1), payload(i))
	}
	mid := bytes.Clone(good)
	mid[frameLen(0)+headerSize+1] ^= 1
	f.Add(good, false, uint32(0))
	f.Add(good[:len(good)-5], false, uint32(0))
	f.Add(append(bytes.Clone(good[:40]), "garbage after a cut"...), false, uint32(0))
	f.Add(mid, false, uint32(0))
	f.Add(mid, true, uint32(frameLen(0)))
	f.Add(mid, true, uint32(len(mid)))
	f.Add(append(bytes.Clone(good), make([]byte, 64)...), true, uint32(len(good)))
	f.Add(appendFrame(nil, tab, 7, []byte("wrong first seq")), false, uint32(0))
	f.Add([]byte{}, true, uint32(0))

	f.Fuzz(func(t *testing.T, data []byte, hasMark bool, mark uint32) {
		dir := t.TempDir()
		path := filepath.Join(dir, segmentName(1))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if hasMark {
			s := &Spool{dir: dir, tab: tab}
			f, err := os.Create(filepath.Join(dir, markName))
			if err != nil {
				t.Fatal(err)
			}
			s.mark = f
			err = s.writeMark(position{seg: 1, off: int64(mark)})
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		s, err := Open(dir, Options{SyncInterval: -1})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want nil or ErrCorrupt", err)
			}
			return
		}
		defer s.Close()
		recs, err := s.Next(1<<30, 1<<30)
		if err != nil {
			t.Fatalf("Next after successful Open: %v", err)
		}
		var again []byte
		for i, r := range recs {
			if r.Seq != uint64(i+1) {
				t.Fatalf("record %d has seq %d", i, r.Seq)
			}
			again = appendFrame(again, tab, r.Seq, r.Data)
		}
		if !bytes.HasPrefix(data, again) {
			t.Fatalf("recovered records are not a prefix of the segment")
		}
		if len(again) < len(data) && validFrameAfter(data[len(again):], tab, uint64(len(recs)+1)) &&
			(!hasMark || len(again) < int(mark)) {
			t.Fatalf("recovery truncated at %d, before the mark, although a valid record follows", len(again))
		}
		seq, err := s.Append([]byte("after"))
		if err != nil || seq != uint64(len(recs)+1) {
			t.Fatalf("Append after recovery: %d, %v; want %d", seq, err, len(recs)+1)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2, err := Open(dir, Options{SyncInterval: -1})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer s2.Close()
		if st := s2.Stats(); st.LastSeq != seq || st.Pending != int64(seq) {
			t.Fatalf("after reopen %+v, want LastSeq %d", st, seq)
		}
	})
}

// FuzzScanSegment checks the segment scanner alone, far faster than
// FuzzRecover: whatever the bytes, the scan stops on a frame boundary, the
// records before it are numbered from first, and a scan that did not reach
// the end names a problem.
func FuzzScanSegment(f *testing.F) {
	tab := crc32.MakeTable(crc32.Castagnoli)
	var good []byte
	for i := range 3 {
		good = appendFrame(good, tab, uint64(i+5), payload(i))
	}
	f.Add(good, uint64(5))
	f.Add(good[:30], uint64(5))
	f.Add(good, uint64(1))
	f.Fuzz(func(t *testing.T, data []byte, first uint64) {
		if first == 0 {
			first = 1
		}
		res := scanSegment(data, tab, first, first+1)
		if res.end < 0 || res.end > int64(len(data)) {
			t.Fatalf("end %d outside [0, %d]", res.end, len(data))
		}
		if (res.problem == frameOK) != (res.end == int64(len(data))) {
			t.Fatalf("problem %v with end %d of %d", res.problem, res.end, len(data))
		}
		off, seq := 0, first
		for range res.records {
			got, _, size, problem := decodeFrame(data[off:], tab, seq)
			if problem != frameOK || got != seq {
				t.Fatalf("record at %d: %v, seq %d want %d", off, problem, got, seq)
			}
			off += size
			seq++
		}
		if int64(off) != res.end || res.last != seq-1 {
			t.Fatalf("records end at %d seq %d, scan says %d seq %d", off, seq-1, res.end, res.last)
		}
		if res.wantOff >= 0 && (res.records < 2 || res.wantOff == 0) {
			t.Fatalf("record %d found at %d with %d records", first+1, res.wantOff, res.records)
		}
	})
}

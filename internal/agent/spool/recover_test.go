package spool

import (
	"bytes"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// writeRecords makes a closed spool in a fresh directory holding n records
// and returns the directory and its last segment.
func writeRecords(t *testing.T, n int, opts Options) (dir, last string) {
	t.Helper()
	dir = t.TempDir()
	s, err := Open(dir, quiet(opts))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := s.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segmentFiles(t, dir)
	return dir, segs[len(segs)-1]
}

// frameLen is the size of record i's frame.
func frameLen(i int) int64 { return int64(headerSize + len(payload(i))) }

func TestTornTailRecovered(t *testing.T) {
	const n = 10
	var full int64
	for i := range n {
		full += frameLen(i)
	}
	lastStart := full - frameLen(n-1)
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"cut in header", func(t *testing.T, path string) { truncate(t, path, lastStart+5) }},
		{"cut in payload", func(t *testing.T, path string) { truncate(t, path, full-3) }},
		{"cut and garbage", func(t *testing.T, path string) {
			truncate(t, path, lastStart+20)
			appendBytes(t, path, []byte("\x00\x13garbage that is not a record at all, long enough to look like one"))
		}},
		{"zero fill", func(t *testing.T, path string) {
			truncate(t, path, lastStart)
			appendBytes(t, path, make([]byte, 4096))
		}},
		{"bad checksum", func(t *testing.T, path string) { flipByte(t, path, full-1) }},
		{"huge length", func(t *testing.T, path string) {
			truncate(t, path, lastStart)
			appendBytes(t, path, []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 10})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, last := writeRecords(t, n, Options{})
			tc.damage(t, last)
			s := openT(t, dir, Options{})
			recs := drain(t, s)
			if len(recs) != n-1 {
				t.Fatalf("recovered %d records, want %d", len(recs), n-1)
			}
			for i, r := range recs {
				if r.Seq != uint64(i+1) || !bytes.Equal(r.Data, payload(i)) {
					t.Fatalf("record %d: seq %d data %q", i, r.Seq, r.Data)
				}
			}
			if size := fileSize(t, last); size != lastStart {
				t.Fatalf("segment size %d after recovery, want %d (truncated at the torn record)", size, lastStart)
			}
			seq, err := s.Append([]byte("next"))
			if err != nil || seq != n {
				t.Fatalf("Append after recovery: %d, %v; want %d", seq, err, n)
			}
		})
	}
}

func TestTornTailOfLastSegmentOnly(t *testing.T) {
	// Records roll over several segments; damage at the end of the last one
	// is still a torn tail.
	dir, last := writeRecords(t, 100, Options{SegmentSize: 1 << 10})
	size := fileSize(t, last)
	truncate(t, last, size-2)
	s := openT(t, dir, Options{SegmentSize: 1 << 10})
	if st := s.Stats(); st.LastSeq != 99 {
		t.Fatalf("LastSeq %d after torn tail, want 99", st.LastSeq)
	}
}

func TestCorruptionRefused(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		opts   Options
		damage func(t *testing.T, dir string, segs []string) (file string, offset int64)
	}{
		{"mid-file checksum", 10, Options{}, func(t *testing.T, dir string, segs []string) (string, int64) {
			off := frameLen(0) + frameLen(1)
			flipByte(t, segs[0], off+headerSize+2) // payload of record 3
			return segs[0], off
		}},
		{"mid-file length", 10, Options{}, func(t *testing.T, dir string, segs []string) (string, int64) {
			off := frameLen(0)
			flipByte(t, segs[0], off+3) // length of record 2
			return segs[0], off
		}},
		{"mid-file truncated record followed by good ones", 10, Options{}, func(t *testing.T, dir string, segs []string) (string, int64) {
			data := readAll(t, segs[0])
			off := frameLen(0)
			cut := append(append([]byte{}, data[:off+10]...), data[off+frameLen(1):]...)
			writeFile(t, segs[0], cut)
			return segs[0], off
		}},
		{"tail of a segment that is not the last", 60, Options{SegmentSize: 1 << 10}, func(t *testing.T, dir string, segs []string) (string, int64) {
			size := fileSize(t, segs[0])
			truncate(t, segs[0], size-1)
			return segs[0], -1
		}},
		{"missing middle segment", 60, Options{SegmentSize: 1 << 10}, func(t *testing.T, dir string, segs []string) (string, int64) {
			if err := os.Remove(segs[1]); err != nil {
				t.Fatal(err)
			}
			return segs[2], -1
		}},
		{"valid record with wrong seq at tail", 10, Options{}, func(t *testing.T, dir string, segs []string) (string, int64) {
			size := fileSize(t, segs[0])
			appendBytes(t, segs[0], appendFrame(nil, newTable(), 42, []byte("stray")))
			return segs[0], size
		}},
		{"cursor garbage", 3, Options{}, func(t *testing.T, dir string, segs []string) (string, int64) {
			path := filepath.Join(dir, cursorName)
			writeFile(t, path, []byte("twelve\n"))
			return path, -1
		}},
		{"cursor before first segment", 60, Options{SegmentSize: 1 << 10}, func(t *testing.T, dir string, segs []string) (string, int64) {
			if err := os.Remove(segs[0]); err != nil {
				t.Fatal(err)
			}
			return segs[1], -1
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := writeRecords(t, tc.n, tc.opts)
			segs := segmentFiles(t, dir)
			file, off := tc.damage(t, dir, segs)
			_, err := Open(dir, quiet(tc.opts))
			wantErr(t, err, ErrCorrupt)
			msg := err.Error()
			if !strings.Contains(msg, file) {
				t.Errorf("error %q does not name %s", msg, file)
			}
			if off >= 0 && !strings.Contains(msg, "offset "+strconv.FormatInt(off, 10)) {
				t.Errorf("error %q does not name offset %d", msg, off)
			}
		})
	}
}

func TestNextReportsCorruption(t *testing.T) {
	// Damage behind an open spool's back is reported by Next, not skipped.
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	for i := range 5 {
		if _, err := s.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	flipByte(t, segmentFiles(t, dir)[0], frameLen(0)+headerSize)
	_, err := s.Next(10, 1<<20)
	wantErr(t, err, ErrCorrupt)
	recs, err := s.Next(1, 1<<20)
	if err != nil || len(recs) != 1 {
		t.Fatalf("Next of the intact first record: %v, %v", recs, err)
	}
	// Repair so that the cleanup check passes.
	flipByte(t, segmentFiles(t, dir)[0], frameLen(0)+headerSize)
}

func newTable() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	data := readAll(t, path)
	data[off] ^= 0x40
	writeFile(t, path, data)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// snapshotDir copies the files of dir into a fresh directory, as a power
// loss would find them if the page cache had been written back as is.
func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		writeFile(t, filepath.Join(dst, e.Name()), readAll(t, filepath.Join(dir, e.Name())))
	}
	return dst
}

func TestPowerLossPastDurableMark(t *testing.T) {
	for _, tc := range []struct {
		name      string
		segSize   int64
		hole      int // record whose bytes are zeroed (lost write)
		wantLast  uint64
		wantError bool
	}{
		{"hole after mark, one segment", 0, 25, 24, false},
		{"hole after mark, later segments dropped", 1 << 10, 25, 24, false},
		{"hole before mark", 0, 5, 0, true},
		{"hole before mark, segment not last", 1 << 10, 5, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir, Options{SegmentSize: tc.segSize})
			offsets := map[uint64][2]int64{} // seq -> segment first, offset
			for i := range 40 {
				s.mu.Lock()
				first, off := s.segs[len(s.segs)-1].first, s.activeSize
				s.mu.Unlock()
				seq, err := s.Append(payload(i))
				if err != nil {
					t.Fatal(err)
				}
				segSize := tc.segSize
				if segSize == 0 {
					segSize = DefaultSegmentSize
				}
				if off > 0 && off+frameLen(i) > segSize {
					first, off = seq, 0 // this append rolled
				}
				offsets[seq] = [2]int64{int64(first), off}
				if seq == 20 {
					if err := s.Sync(); err != nil { // durable mark after record 20
						t.Fatal(err)
					}
				}
			}
			crash := snapshotDir(t, dir)
			at := offsets[uint64(tc.hole)]
			seg := filepath.Join(crash, segmentName(uint64(at[0])))
			data := readAll(t, seg)
			if at[1] >= int64(len(data)) {
				t.Fatalf("record %d not in %s", tc.hole, seg)
			}
			clear(data[at[1] : at[1]+frameLen(tc.hole-1)]) // the record's page never reached the disk
			writeFile(t, seg, data)
			r, err := Open(crash, quiet(Options{SegmentSize: tc.segSize}))
			if tc.wantError {
				wantErr(t, err, ErrCorrupt)
				return
			}
			if err != nil {
				t.Fatalf("Open after power loss: %v", err)
			}
			defer r.Close()
			if st := r.Stats(); st.LastSeq != tc.wantLast {
				t.Fatalf("LastSeq %d after power loss, want %d", st.LastSeq, tc.wantLast)
			}
			checkSpool(t, r)
			seq, err := r.Append([]byte("after"))
			if err != nil || seq != tc.wantLast+1 {
				t.Fatalf("Append after recovery: %d, %v", seq, err)
			}
		})
	}
}

func TestMarkTracksSync(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	if _, err := s.Append([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	mark, ok := s.readMark()
	if !ok || mark != (position{seg: 1, off: headerSize + 3}) {
		t.Fatalf("mark %+v (ok %v) after Sync, want {1 %d}", mark, ok, headerSize+3)
	}
}

func TestUnreadableMarkIsStrict(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	for i := range 10 {
		if _, err := s.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	crash := snapshotDir(t, dir)
	seg := filepath.Join(crash, segmentName(1))
	data := readAll(t, seg)
	off := frameLen(0) + frameLen(1) + frameLen(2)
	clear(data[off : off+frameLen(3)]) // record 4, past the mark
	writeFile(t, seg, data)
	mark := readAll(t, filepath.Join(crash, markName))
	mark[3] ^= 1
	writeFile(t, filepath.Join(crash, markName), mark)
	_, err := Open(crash, quiet(Options{}))
	wantErr(t, err, ErrCorrupt)
}

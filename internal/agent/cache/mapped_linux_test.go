//go:build linux

package cache

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
)

// mappedKiB returns how much of this process's mappings of file is
// resident, from /proc/self/smaps.
func mappedKiB(t *testing.T, file string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps")
	}
	defer f.Close()
	total, inFile := 0, false
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			inFile = len(fields) >= 6 && fields[5] == file
		case inFile && len(fields) >= 2 && fields[0] == "Rss:":
			kib, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			total += kib
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// Writes read the B+tree through bbolt's memory mapping; each commit drops
// those pages from the resident set, so a long sync does not keep a copy of
// the file resident next to the index. Release does it again.
func TestWritesDropMappedPages(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	for seq := 1; seq <= 40; seq++ {
		ops := make([]Op, 0, 50)
		for i := range 50 {
			ops = append(ops, upsert1K((seq-1)*50+i))
		}
		mustApply(t, c, uint64(seq), ops...)
	}
	fi, err := os.Stat(e.file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 2<<20 {
		t.Fatalf("cache file of %d bytes: the test needs a larger one", fi.Size())
	}
	if kib := mappedKiB(t, e.file); kib > 16 {
		t.Fatalf("%d KiB of the %d KiB file resident after the writes, want at most 16", kib, fi.Size()>>10)
	}
	// Reading through the mapping (as bbolt's check does) makes pages
	// resident; Release gives them back.
	if err := c.db.View(func(tx *bbolt.Tx) error {
		for range tx.Check() {
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if kib := mappedKiB(t, e.file); kib < 1024 {
		t.Fatalf("only %d KiB resident after reading the whole file: the measure is broken", kib)
	}
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if kib := mappedKiB(t, e.file); kib > 16 {
		t.Fatalf("%d KiB resident after Release, want at most 16", kib)
	}
	if e, err := c.Get(upsert1K(1999).Path, 0); err != nil || string(e.Data) != string(secret1K(1999)) {
		t.Fatalf("read after Release: %v", err)
	}
	mustApply(t, c, 41, upsert1K(2000))
	c = e.reopen(c)
	if st := c.Stats(); st.Paths != 2001 || st.Watermark != 41 {
		t.Fatalf("after reopening: %d paths at watermark %d, want 2001 at 41", st.Paths, st.Watermark)
	}
}

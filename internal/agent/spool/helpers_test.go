package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// quiet are options for tests: no sync timer.
func quiet(o Options) Options {
	if o.SyncInterval == 0 {
		o.SyncInterval = -1
	}
	return o
}

// openT opens a spool in dir and closes it at cleanup (if the test did not),
// after checking its invariants.
func openT(t testing.TB, dir string, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, quiet(opts))
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if s.isClosed.Load() {
			return
		}
		checkSpool(t, s)
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// payload returns a record whose content identifies i.
func payload(i int) []byte {
	return fmt.Appendf(nil, "record-%06d-%s", i, bytes.Repeat([]byte{byte('a' + i%26)}, i%97))
}

// drain returns every pending record without committing.
func drain(t testing.TB, s *Spool) []Record {
	t.Helper()
	recs, err := s.Next(1<<30, 1<<30)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return recs
}

// checkSpool verifies the spool's invariants: the pending records are
// numbered Committed+1..LastSeq without gaps, their frames add up to
// PendingBytes, and the segment files on disk are exactly the live ones.
func checkSpool(t testing.TB, s *Spool) {
	t.Helper()
	st := s.Stats()
	if st.Pending != int64(st.LastSeq-st.Committed) {
		t.Errorf("check: Pending %d, LastSeq %d, Committed %d", st.Pending, st.LastSeq, st.Committed)
	}
	recs, err := s.Next(1<<30, 1<<30)
	if err != nil {
		t.Errorf("check: Next: %v", err)
		return
	}
	var frames int64
	for i, r := range recs {
		if want := st.Committed + 1 + uint64(i); r.Seq != want {
			t.Errorf("check: record %d has seq %d, want %d", i, r.Seq, want)
			return
		}
		frames += headerSize + int64(len(r.Data))
	}
	if int64(len(recs)) != st.Pending {
		t.Errorf("check: %d records readable, %d pending", len(recs), st.Pending)
	}
	if frames != st.PendingBytes {
		t.Errorf("check: pending frames %d bytes, PendingBytes %d", frames, st.PendingBytes)
	}
	firsts, err := listSegments(s.dir)
	if err != nil {
		t.Error(err)
		return
	}
	s.mu.Lock()
	var live []uint64
	for _, sg := range s.segs {
		live = append(live, sg.first)
	}
	s.mu.Unlock()
	if !slices.Equal(firsts, live) {
		t.Errorf("check: segment files %v, live segments %v", firsts, live)
	}
}

// segmentFiles returns the paths of the segment files in dir, in order.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	firsts, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range firsts {
		paths = append(paths, filepath.Join(dir, segmentName(f)))
	}
	return paths
}

// wantErr fails the test unless err matches target.
func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

// readAll returns the content of path.
func readAll(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

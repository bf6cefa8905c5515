package spool

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestRoundtrip(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	sizes := []int{0, 1, 300, MaxRecordSize, 17}
	var want [][]byte
	for i := range 100 {
		rec := payload(i)
		if i < len(sizes) {
			rec = bytes.Repeat([]byte{byte(i)}, sizes[i])
		}
		seq, err := s.Append(rec)
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		if seq != uint64(i+1) {
			t.Fatalf("Append %d: seq %d, want %d", i, seq, i+1)
		}
		want = append(want, rec)
	}
	st := s.Stats()
	if st.LastSeq != 100 || st.Committed != 0 || st.Pending != 100 {
		t.Fatalf("Stats %+v", st)
	}
	var got [][]byte
	for {
		recs, err := s.Next(7, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if recs == nil {
			break
		}
		for _, r := range recs {
			if r.Seq != uint64(len(got)+1) {
				t.Fatalf("record seq %d, want %d", r.Seq, len(got)+1)
			}
			got = append(got, r.Data)
		}
		if err := s.Commit(recs[len(recs)-1].Seq); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d differs", i+1)
		}
	}
	if st := s.Stats(); st.Pending != 0 || st.PendingBytes != 0 || st.Committed != 100 {
		t.Fatalf("Stats after commit %+v", st)
	}
}

func TestNextLimits(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	for _, n := range []int{10, 10, 10, 5000, 10} {
		if _, err := s.Append(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		maxRecords, maxBytes int
		want                 int
	}{
		{1, 1 << 20, 1},
		{2, 1 << 20, 2},
		{100, 25, 2}, // 10+10 fit, a third would not
		{100, 30, 3}, // exactly
		{100, 0, 1},  // at least one record
		{0, 1 << 20, 1},
		{100, 1 << 20, 5},
	}
	for _, tc := range tests {
		recs, err := s.Next(tc.maxRecords, tc.maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != tc.want {
			t.Errorf("Next(%d, %d): %d records, want %d", tc.maxRecords, tc.maxBytes, len(recs), tc.want)
		}
	}
	if err := s.Commit(3); err != nil {
		t.Fatal(err)
	}
	// The large record comes alone even though it exceeds maxBytes.
	recs, err := s.Next(100, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Seq != 4 || len(recs[0].Data) != 5000 {
		t.Fatalf("Next after commit: %d records, first %+v", len(recs), recs[0].Seq)
	}
	// Data is the caller's: appending to it does not disturb the next record.
	recs, err = s.Next(100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(recs[0].Data, 0xff, 0xff)
	if recs[1].Seq != 5 || !bytes.Equal(recs[1].Data, make([]byte, 10)) {
		t.Fatalf("record 5 disturbed: %v", recs[1].Data)
	}
}

func TestAppendErrors(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	_, err := s.Append(make([]byte, MaxRecordSize+1))
	wantErr(t, err, ErrTooLarge)
	seq, err := s.Append([]byte("x"))
	if err != nil || seq != 1 {
		t.Fatalf("Append after refusal: seq %d, %v; want 1 (no sequence number consumed)", seq, err)
	}
	wantErr(t, s.Commit(2), ErrUnknownSeq)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = s.Append([]byte("x"))
	wantErr(t, err, ErrClosed)
	_, err = s.Next(1, 1)
	wantErr(t, err, ErrClosed)
	wantErr(t, s.Commit(1), ErrClosed)
	wantErr(t, s.Sync(), ErrClosed)
	wantErr(t, s.Close(), ErrClosed)
	select {
	case _, ok := <-s.Wait():
		if ok {
			// The pending signal from the append; the next receive sees the close.
			if _, ok := <-s.Wait(); ok {
				t.Fatal("Wait channel not closed after Close")
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait channel not closed after Close")
	}
}

func TestOptionsInvalid(t *testing.T) {
	for _, o := range []Options{{SegmentSize: -1}, {MaxBytes: -5}} {
		if _, err := Open(t.TempDir(), o); err == nil {
			t.Errorf("Open with %+v succeeded", o)
		}
	}
}

func TestOpenCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "spool")
	openT(t, dir, Options{})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Fatalf("directory mode %o, want 700", perm)
	}
}

func TestConcurrentAppenders(t *testing.T) {
	const writers, each = 16, 1500
	s := openT(t, t.TempDir(), Options{SegmentSize: 32 << 10, SyncInterval: time.Millisecond})
	var (
		mu     sync.Mutex
		byseq  = make(map[uint64][]byte)
		wg     sync.WaitGroup
		stop   = make(chan struct{})
		fwdErr = make(chan error, 1)
		got    []Record
	)
	go func() { // the forwarder
		defer close(fwdErr)
		for {
			recs, err := s.Next(100, 64<<10)
			if err != nil {
				fwdErr <- err
				return
			}
			if recs == nil {
				select {
				case <-s.Wait():
					continue
				case <-stop:
					if recs, _ := s.Next(1, 1); recs == nil {
						return
					}
					continue
				}
			}
			for _, r := range recs {
				got = append(got, Record{r.Seq, bytes.Clone(r.Data)})
			}
			if err := s.Commit(recs[len(recs)-1].Seq); err != nil {
				fwdErr <- err
				return
			}
		}
	}()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				rec := payload(w*each + i)
				seq, err := s.Append(rec)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				byseq[seq] = rec
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-fwdErr; err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*each || len(byseq) != writers*each {
		t.Fatalf("forwarded %d records, appended %d distinct seqs, want %d", len(got), len(byseq), writers*each)
	}
	for i, r := range got {
		if r.Seq != uint64(i+1) {
			t.Fatalf("forwarded record %d has seq %d", i, r.Seq)
		}
		if !bytes.Equal(r.Data, byseq[r.Seq]) {
			t.Fatalf("record %d: data differs from what Append stored", r.Seq)
		}
	}
	if n := len(segmentFiles(t, s.dir)); n > 2 {
		t.Errorf("%d segment files left after committing everything", n)
	}
}

func TestRestartKeepsSeqAndCursor(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, quiet(Options{SegmentSize: 1 << 10}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := s.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(20); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		s = openT(t, dir, Options{SegmentSize: 1 << 10})
		st := s.Stats()
		if st.LastSeq != uint64(50+round) || st.Committed != uint64(20+round) {
			t.Fatalf("round %d: Stats after reopen %+v", round, st)
		}
		recs := drain(t, s)
		if len(recs) != 30 || recs[0].Seq != uint64(21+round) || !bytes.Equal(recs[0].Data, payload(20+round)) {
			t.Fatalf("round %d: after reopen %d records, first seq %d", round, len(recs), recs[0].Seq)
		}
		seq, err := s.Append(payload(50 + round))
		if err != nil || seq != uint64(51+round) {
			t.Fatalf("round %d: Append after reopen: %d, %v", round, seq, err)
		}
		if err := s.Commit(uint64(21 + round)); err != nil {
			t.Fatal(err)
		}
		checkSpool(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCommitDeletesSegments(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{SegmentSize: 1 << 10})
	for i := range 200 {
		if _, err := s.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	before := segmentFiles(t, dir)
	if len(before) < 10 {
		t.Fatalf("only %d segments; test needs rolls", len(before))
	}
	// Commit without a Next first: Commit must find the position itself.
	if err := s.Commit(150); err != nil {
		t.Fatal(err)
	}
	after := segmentFiles(t, dir)
	if len(after) >= len(before) {
		t.Fatalf("Commit deleted nothing: %d segments before, %d after", len(before), len(after))
	}
	first, _ := parseSegmentName(filepath.Base(after[0]))
	if first > 151 {
		t.Fatalf("segment holding record 151 deleted; first segment now starts at %d", first)
	}
	if len(after) > 1 {
		second, _ := parseSegmentName(filepath.Base(after[1]))
		if second <= 151 {
			t.Fatalf("segment %s holds only committed records but was kept", after[0])
		}
	}
	recs := drain(t, s)
	if len(recs) != 50 || recs[0].Seq != 151 {
		t.Fatalf("after Commit(150): %d records from %d", len(recs), recs[0].Seq)
	}
	// Commit everything: only the active segment remains.
	if err := s.Commit(200); err != nil {
		t.Fatal(err)
	}
	if n := len(segmentFiles(t, dir)); n != 1 {
		t.Fatalf("%d segments after committing all, want 1", n)
	}
	if recs, err := s.Next(10, 10); err != nil || recs != nil {
		t.Fatalf("Next after committing all: %v, %v", recs, err)
	}
}

func TestCrashBetweenCursorAndDelete(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, quiet(Options{SegmentSize: 512}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := s.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The cursor was written but the segments were not yet removed.
	if err := os.WriteFile(filepath.Join(dir, cursorName), []byte("30\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Options{SegmentSize: 512})
	recs := drain(t, s)
	if len(recs) != 10 || recs[0].Seq != 31 {
		t.Fatalf("after reopen: %d records from %d", len(recs), recs[0].Seq)
	}
	first, _ := parseSegmentName(filepath.Base(segmentFiles(t, dir)[0]))
	if first > 31 {
		t.Fatalf("first segment starts at %d", first)
	}
}

func TestCursorAheadOfRecords(t *testing.T) {
	// A power loss took records the forwarder had already committed: the
	// sequence must continue after the cursor, never reuse numbers.
	dir := t.TempDir()
	s, err := Open(dir, quiet(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := s.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(10); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seg := segmentFiles(t, dir)[0]
	if err := os.Truncate(seg, int64(headerSize+len(payload(0)))); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Options{})
	if st := s.Stats(); st.LastSeq != 10 || st.Committed != 10 || st.Pending != 0 {
		t.Fatalf("Stats %+v", st)
	}
	seq, err := s.Append([]byte("after"))
	if err != nil || seq != 11 {
		t.Fatalf("Append: %d, %v; want 11", seq, err)
	}
}

func TestFull(t *testing.T) {
	rec := make([]byte, 100)
	frame := int64(headerSize + len(rec))
	s := openT(t, t.TempDir(), Options{MaxBytes: 10 * frame, SegmentSize: 3 * frame})
	for i := range 10 {
		if _, err := s.Append(rec); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	_, err := s.Append(rec)
	wantErr(t, err, ErrFull)
	if st := s.Stats(); st.PendingBytes != 10*frame || st.LastSeq != 10 {
		t.Fatalf("Stats when full %+v", st)
	}
	if _, err := s.Next(4, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(4); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		seq, err := s.Append(rec)
		if err != nil {
			t.Fatalf("Append %d after Commit: %v", i, err)
		}
		if seq != uint64(11+i) {
			t.Fatalf("seq %d, want %d", seq, 11+i)
		}
	}
	_, err = s.Append(rec)
	wantErr(t, err, ErrFull)
}

func TestWait(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	select {
	case <-s.Wait():
		t.Fatal("Wait signalled before any Append")
	default:
	}
	done := make(chan []Record)
	go func() {
		<-s.Wait()
		recs, _ := s.Next(10, 1<<10)
		done <- recs
	}()
	time.Sleep(10 * time.Millisecond)
	if _, err := s.Append([]byte("wake")); err != nil {
		t.Fatal(err)
	}
	select {
	case recs := <-done:
		if len(recs) != 1 || string(recs[0].Data) != "wake" {
			t.Fatalf("woken forwarder read %v", recs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("forwarder not woken by Append")
	}
}

func TestSyncTimer(t *testing.T) {
	s := openT(t, t.TempDir(), Options{SyncInterval: time.Millisecond})
	if _, err := s.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		dirty := s.dirty
		s.mu.Unlock()
		if !dirty {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sync timer never fsynced the segment")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestFailedWritePoisons(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, quiet(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append([]byte("one")); err != nil {
		t.Fatal(err)
	}
	// Swap the segment for a read-only descriptor: the write fails, and so
	// does the truncate that would undo it, so the spool must refuse to go on.
	s.mu.Lock()
	good := s.active
	ro, err := os.Open(good.Name())
	if err != nil {
		s.mu.Unlock()
		t.Fatal(err)
	}
	s.active = ro
	s.mu.Unlock()
	_, err = s.Append([]byte("two"))
	wantErr(t, err, ErrFailed)
	s.mu.Lock()
	s.active = good
	s.mu.Unlock()
	ro.Close()
	_, err = s.Append([]byte("two"))
	wantErr(t, err, ErrFailed)
	wantErr(t, s.Sync(), ErrFailed)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, Options{})
	seq, err := s.Append([]byte("two"))
	if err != nil || seq != 2 {
		t.Fatalf("Append after reopen: %d, %v; want 2 (the failed append consumed no number)", seq, err)
	}
}

func TestNextReturnsDurableRecords(t *testing.T) {
	s := openT(t, t.TempDir(), Options{}) // no sync timer
	if _, err := s.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	dirty := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.dirty
	}
	if !dirty() {
		t.Fatal("segment not dirty after Append; the test cannot tell whether Next fsyncs")
	}
	if recs, err := s.Next(10, 1<<10); err != nil || len(recs) != 1 {
		t.Fatalf("Next: %v, %v", recs, err)
	}
	if dirty() {
		t.Fatal("Next returned a record that was not fsynced")
	}
}

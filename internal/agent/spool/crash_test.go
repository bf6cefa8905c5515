package spool

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashEnv, when set, makes TestCrashKill9 run as the child process that
// appends to the spool in the directory it names until it is killed.
const crashEnv = "EDGEVAULT_SPOOL_CRASH_DIR"

// TestCrashKill9 runs a child process that appends from several goroutines
// and forwards concurrently, printing every acknowledged record, kills it
// with SIGKILL at a random moment, and checks that every record the child
// saw acknowledged and had not committed is in the reopened spool, with
// sequence numbers contiguous and increasing across restarts.
func TestCrashKill9(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	dir := t.TempDir()
	opts := Options{SegmentSize: 8 << 10, SyncInterval: -1}
	var prevLast uint64
	for round := range 4 {
		acked := runCrashChild(t, dir, round, 300+rand.IntN(3000))
		if len(acked) == 0 {
			t.Fatalf("round %d: child acknowledged nothing", round)
		}
		s, err := Open(dir, opts)
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		st := s.Stats()
		recs := drain(t, s)
		checkSpool(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		byseq := make(map[uint64]string, len(recs))
		for i, r := range recs {
			if r.Seq != st.Committed+1+uint64(i) {
				t.Fatalf("round %d: record %d has seq %d after cursor %d", round, i, r.Seq, st.Committed)
			}
			byseq[r.Seq] = string(r.Data)
		}
		var lost, checked int
		for seq, data := range acked {
			if seq <= prevLast {
				t.Fatalf("round %d: seq %d reused (previous round ended at %d)", round, seq, prevLast)
			}
			if seq > st.LastSeq {
				t.Fatalf("round %d: acknowledged seq %d past LastSeq %d after reopen", round, seq, st.LastSeq)
			}
			if seq <= st.Committed {
				continue // forwarded before the kill
			}
			checked++
			if got, ok := byseq[seq]; !ok || got != data {
				lost++
				t.Errorf("round %d: acknowledged record %d (%q) lost or changed: %q", round, seq, data, got)
			}
		}
		t.Logf("round %d: %d acknowledged, %d still pending and verified, last seq %d, cursor %d", round, len(acked), checked, st.LastSeq, st.Committed)
		if lost > 0 {
			t.FailNow()
		}
		prevLast = st.LastSeq
	}
}

// runCrashChild runs the child for one round, kills it with SIGKILL after it
// has acknowledged about killAfter records, and returns what it acknowledged.
func runCrashChild(t *testing.T, dir string, round, killAfter int) map[uint64]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir, "EDGEVAULT_SPOOL_CRASH_ROUND="+strconv.Itoa(round))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := make(map[uint64]string)
	sc := bufio.NewScanner(out)
	killed := false
	timeout := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timeout.Stop()
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "FAIL "); ok {
			t.Errorf("round %d: child: %s", round, rest)
			continue
		}
		rest, ok := strings.CutPrefix(line, "ACK ")
		if !ok {
			continue
		}
		seqText, data, _ := strings.Cut(rest, " ")
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if err != nil {
			t.Fatalf("round %d: child line %q", round, line)
		}
		if _, dup := acked[seq]; dup {
			t.Fatalf("round %d: seq %d acknowledged twice", round, seq)
		}
		acked[seq] = data
		if !killed && len(acked) >= killAfter {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("round %d: child exited before the kill: %v\n%s", round, err, stderr.String())
	}
	return acked
}

// crashChild appends records from four goroutines and forwards them from a
// fifth, committing every other batch, printing "ACK <seq> <data>" after each
// Append returns; it runs until it is killed.
func crashChild(dir string) {
	round := os.Getenv("EDGEVAULT_SPOOL_CRASH_ROUND")
	s, err := Open(dir, Options{SegmentSize: 8 << 10, SyncInterval: 5 * time.Millisecond})
	if err != nil {
		fmt.Printf("FAIL open: %v\n", err)
		os.Exit(2)
	}
	var outMu sync.Mutex
	for g := range 4 {
		go func() {
			for i := 0; ; i++ {
				data := fmt.Sprintf("r%s-g%d-i%d-%s", round, g, i, strings.Repeat("x", i%200))
				seq, err := s.Append([]byte(data))
				outMu.Lock()
				if err != nil {
					fmt.Printf("FAIL append: %v\n", err)
				} else {
					os.Stdout.WriteString("ACK " + strconv.FormatUint(seq, 10) + " " + data + "\n")
				}
				outMu.Unlock()
			}
		}()
	}
	for batch := 0; ; batch++ {
		recs, err := s.Next(50, 16<<10)
		if err != nil {
			fmt.Printf("FAIL next: %v\n", err)
			os.Exit(2)
		}
		if recs == nil {
			<-s.Wait()
			continue
		}
		if batch%2 == 0 {
			if err := s.Commit(recs[len(recs)-1].Seq); err != nil {
				fmt.Printf("FAIL commit: %v\n", err)
				os.Exit(2)
			}
		}
	}
}

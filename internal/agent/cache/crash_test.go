package cache

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache/keyfile"
)

const crashChildEnv = "EDGEVAULT_CACHE_CRASH_CHILD"

// TestCrashKeepsWatermarkWithOps kills (SIGKILL) a process in the middle of
// a stream of Apply calls. Each batch seq writes version seq of "w" and of
// "x/<seq>". After restart the watermark must be exactly the last batch on
// disk: "w" at version = watermark, every x/<n> for n ≤ watermark present,
// and no record failing authentication.
func TestCrashKeepsWatermarkWithOps(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the child is applying, then kill it mid-stream.
		s := bufio.NewScanner(out)
		for s.Scan() && !strings.HasPrefix(s.Text(), "applying") {
		}
		time.Sleep(time.Duration(50+round*70) * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()

		kp, err := keyfile.Open(filepath.Join(dir, "cache.key"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := Open(filepath.Join(dir, "cache.db"), kp, Options{Zone: "edge-1"})
		if err != nil {
			t.Fatal(err)
		}
		st := c.Stats()
		w := c.Watermark()
		if st.Dropped != 0 || w == 0 {
			t.Fatalf("round %d: after a crash: %+v", round, st)
		}
		mustGet(t, c, "w", 0, int(w))
		if st.Paths != int(w)+1 {
			t.Fatalf("round %d: watermark %d but %d paths", round, w, st.Paths)
		}
		if _, err := c.Get(fmt.Sprintf("x/%d", w+1), 0); err == nil {
			t.Fatalf("round %d: a batch after the watermark is on disk", round)
		}
		t.Logf("round %d: killed at watermark %d", round, w)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		checkFile(t, filepath.Join(dir, "cache.db"))
	}
}

// TestCrashChild is the process TestCrashKeepsWatermarkWithOps kills.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("only run by TestCrashKeepsWatermarkWithOps")
	}
	kp, err := keyfile.Open(filepath.Join(dir, "cache.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(filepath.Join(dir, "cache.db"), kp, Options{Zone: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("applying")
	for seq := c.Watermark() + 1; ; seq++ {
		ops := []Op{upsert("w", int(seq), time.Hour), upsert(fmt.Sprintf("x/%d", seq), 1, time.Hour)}
		if seq > 1 {
			ops = append(ops, Op{Kind: OpDeleteVersion, Path: "w", Version: int(seq - 1)})
		}
		if err := c.Apply(seq, ops); err != nil {
			t.Fatal(err)
		}
	}
}

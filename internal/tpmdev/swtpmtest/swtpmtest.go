// Package swtpmtest runs swtpm, Debian's software TPM 2.0, as a separate
// process for tests: a real TPM to attest with, on a socket.
package swtpmtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Start starts swtpm with its state in a new temporary directory and
// returns the tpmdev.Open spec for it; mode is "tcp" or "unix". The process
// is killed at cleanup. The test is skipped when swtpm is not installed
// (scripts/test installs it).
func Start(tb testing.TB, mode string) string {
	tb.Helper()
	return StartIn(tb, mode, tb.TempDir())
}

// StartIn is Start with the TPM's state in dir: a second process on the
// same dir is the same TPM after a reboot.
func StartIn(tb testing.TB, mode, dir string) string {
	tb.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		tb.Skip("swtpm is not on PATH (Debian: apt-get install swtpm swtpm-tools); skipping the swtpm tests")
	}
	args := []string{"socket", "--tpm2", "--tpmstate", "dir=" + dir,
		"--flags", "not-need-init,startup-clear", "--log", "file=" + filepath.Join(dir, "swtpm.log") + ",level=1"}
	var spec, network, addr string
	switch mode {
	case "tcp":
		port, ctrl := freePort(tb), freePort(tb)
		network, addr = "tcp", fmt.Sprintf("127.0.0.1:%d", port)
		spec = "tcp://" + addr
		args = append(args, "--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", ctrl))
	case "unix":
		network, addr = "unix", filepath.Join(dir, "tpm.sock")
		spec = "unix://" + addr
		args = append(args, "--server", "type=unixio,path="+addr, "--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"))
	default:
		tb.Fatalf("swtpm mode %q: want tcp or unix", mode)
	}
	cmd := exec.Command("swtpm", args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return spec
		}
		if time.Now().After(deadline) {
			tb.Fatalf("swtpm at %s did not come up: %v", spec, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

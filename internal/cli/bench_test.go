package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/bench"
)

// runBench runs edgevault with args and the environment env.
func runBench(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(args, strings.NewReader(""), &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func benchBaselineAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = bench.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

func TestBenchUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"bad format", nil, []string{"bench", "-op", "baseline", "-format", "yaml"}, "-format"},
		{"bad op", nil, []string{"bench", "-op", "kv-delete"}, "-op"},
		{"zero concurrency", nil, []string{"bench", "-op", "baseline", "-c", "0"}, "-c"},
		{"bad duration", nil, []string{"bench", "-op", "baseline", "-d", "soon"}, "duration"},
		{"no token", nil, []string{"bench", "-op", "kv-read"}, "-token"},
		{"bad address env", map[string]string{"EDGEVAULT_ADDR": "127.0.0.1:8200"}, []string{"bench", "-op", "baseline"}, "-address"},
		{"missing CA file", nil, []string{"bench", "-op", "baseline", "-d", "10ms", "-ca-cert", "/nonexistent/ca.pem"}, "-ca-cert"},
		{"extra argument", nil, []string{"bench", "kv-read"}, "unexpected argument"},
		{"unknown flag", nil, []string{"bench", "-bogus"}, "bogus"},
		{"serve-baseline bad address", nil, []string{"bench", "serve-baseline", "-address", "256.0.0.1:x"}, "-address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runBench(t, tt.env, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %q", code, exitUsage, stderr)
			}
			if !strings.HasPrefix(stderr, "error: ") || !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q lacks %q", stderr, tt.want)
			}
		})
	}
}

func TestBenchBaselineJSON(t *testing.T) {
	addr := benchBaselineAddr(t)
	// VAULT_ADDR is the fallback when EDGEVAULT_ADDR is unset.
	code, stdout, stderr := runBench(t, map[string]string{"VAULT_ADDR": addr},
		"bench", "-op=baseline", "-c", "2", "-d", "200ms", "-warmup", "0s", "-format", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	for _, k := range []string{"op", "concurrency", "duration_s", "ops", "ops_per_sec", "errors", "p50_ms", "p99_ms", "p999_ms", "max_ms"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, stdout)
		}
	}
	if got["op"] != "baseline" || got["concurrency"] != 2.0 || got["errors"] != 0.0 || got["ops"].(float64) <= 0 {
		t.Errorf("unexpected result %s", stdout)
	}
}

func TestBenchTableAndAddressPrecedence(t *testing.T) {
	addr := benchBaselineAddr(t)
	env := map[string]string{"EDGEVAULT_ADDR": addr, "VAULT_ADDR": "http://127.0.0.1:1"}
	code, stdout, stderr := runBench(t, env, "bench", "-op", "baseline", "-c", "1", "-d", "100ms", "-warmup", "0s")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"op             baseline", "address        " + addr, "ops/s", "latency p99.9", "errors         0"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}

func TestBenchUnreachableServerHints(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close()
	start := time.Now()
	code, _, stderr := runBench(t, map[string]string{"EDGEVAULT_TOKEN": "evs.secret"}, "bench", "-op", "kv-read", "-address", addr, "-d", "100ms")
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	if !strings.Contains(stderr, "error: setup") || !strings.Contains(stderr, "hint: is a server running at "+addr) {
		t.Errorf("stderr %q", stderr)
	}
	if strings.Contains(stderr, "evs.secret") {
		t.Errorf("stderr shows the token: %q", stderr)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %s", time.Since(start))
	}
}

func TestBenchTokenCreateNote(t *testing.T) {
	addr := benchBaselineAddr(t) // answers 200 to the POSTs too
	code, _, stderr := runBench(t, map[string]string{"VAULT_TOKEN": "t"},
		"bench", "-op", "token-create", "-address", addr, "-c", "1", "-d", "50ms", "-warmup", "0s")
	if code != exitOK || !strings.Contains(stderr, "revokes nothing") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// serve-baseline and bench both speak HTTP over a Unix socket given as
// -address unix:///path.
func TestBenchOverUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "evc") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "baseline.sock")
	addr := "unix://" + sock

	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		root := newRootCmd(&env{stdin: strings.NewReader(""), stdout: out, stderr: io.Discard, getenv: func(string) string { return "" }})
		root.SetArgs(vaultStyleFlags([]string{"bench", "serve-baseline", "-address", addr}))
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		done <- root.ExecuteContext(ctx)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "listening on "+addr) {
		if time.Now().After(deadline) {
			t.Fatalf("serve-baseline did not report listening on %s; stdout %q", addr, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	code, stdout, stderr := runBench(t, map[string]string{"EDGEVAULT_ADDR": addr},
		"bench", "-op", "baseline", "-c", "2", "-d", "200ms", "-warmup", "0s", "-format", "json")
	if code != exitOK {
		t.Fatalf("bench over the socket: exit %d: %s", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if got["errors"] != 0.0 || got["ops"].(float64) <= 0 {
		t.Fatalf("bench over the socket: %s", stdout)
	}
	code, _, stderr = runBench(t, nil, "bench", "serve-baseline", "-address", addr)
	if code != exitUsage || !strings.Contains(stderr, "another process") {
		t.Fatalf("second serve-baseline on a live socket: exit %d, %q", code, stderr)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve-baseline: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve-baseline did not stop")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket after serve-baseline stopped: %v", err)
	}
	code, _, stderr = runBench(t, nil, "bench", "-op", "baseline", "-address", "unix://relative.sock")
	if code != exitUsage || !strings.Contains(stderr, "three slashes") {
		t.Fatalf("relative socket address: exit %d, %q", code, stderr)
	}
}

// lockedBuffer is an io.Writer read while a command writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

package bench

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// socketDir returns a short temporary directory: a Unix socket path must
// fit in 108 bytes, which t.TempDir() under a long test name may not.
func socketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "evb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestSocketPath(t *testing.T) {
	tests := []struct {
		addr    string
		path    string
		ok, err bool
	}{
		{"unix:///run/agent.sock", "/run/agent.sock", true, false},
		{"unix:///tmp/a%20b.sock", "/tmp/a b.sock", true, false},
		{"http://127.0.0.1:8200", "", false, false},
		{"127.0.0.1:8299", "", false, false},
		{"unix://run/agent.sock", "", true, true},
		{"unix:agent.sock", "", true, true},
		{"unix:///", "", true, true},
		{"unix://", "", true, true},
		{"unix:///a.sock#frag", "", true, true},
		{"unix://u@/a.sock", "", true, true},
	}
	for _, tt := range tests {
		path, ok, err := SocketPath(tt.addr)
		if path != tt.path || ok != tt.ok || (err != nil) != tt.err {
			t.Errorf("SocketPath(%q) = %q, %v, %v; want %q, %v, error %v", tt.addr, path, ok, err, tt.path, tt.ok, tt.err)
		}
	}
}

func FuzzSocketPath(f *testing.F) {
	for _, seed := range []string{"unix:///run/edgevault-agent.sock", "unix://host/x", "unix:x", "http://127.0.0.1:8200",
		"unix:///%zz", "unix:///a?b", "unix:////", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		path, ok, err := SocketPath(addr)
		if ok != strings.HasPrefix(addr, "unix:") {
			t.Fatalf("%q: ok = %v", addr, ok)
		}
		if !ok || err != nil {
			if path != "" {
				t.Fatalf("%q: path %q with ok=%v err=%v", addr, path, ok, err)
			}
			return
		}
		if !strings.HasPrefix(path, "/") || path == "/" {
			t.Fatalf("%q: accepted path %q", addr, path)
		}
		if err := checkAddress(addr); err != nil {
			t.Fatalf("%q: SocketPath accepts it, checkAddress does not: %v", addr, err)
		}
	})
}

// A run over a Unix socket sends the same requests as over TCP, with Host
// localhost and no path prefix, and Serve answers them.
func TestRunOverUnixSocket(t *testing.T) {
	sock := filepath.Join(socketDir(t), "b.sock")
	ln, err := Listen(UnixScheme + "://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		seen  = map[string]int{}
		inner = BaselineHandler()
	)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Method+" "+r.Host+" "+strings.TrimRight(r.URL.Path, "0123456789")+" "+r.Header.Get("X-Vault-Token")]++
		mu.Unlock()
		inner.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	cfg := quick(OpBaseline, UnixScheme+"://"+sock)
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, res)
	if res.Errors != 0 {
		t.Fatalf("%d errors, first: %s", res.Errors, res.FirstError)
	}
	mu.Lock()
	defer mu.Unlock()
	want := "GET localhost /v1/secret/data/bench/ " + testToken
	if len(seen) != 1 || seen[want] == 0 {
		t.Fatalf("requests seen: %v, want only %q", seen, want)
	}

	// Nothing listening: every request fails, the run does not.
	cfg.Address, cfg.Duration = UnixScheme+"://"+filepath.Join(filepath.Dir(sock), "none.sock"), 100*time.Millisecond
	res, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors != res.Ops || !strings.Contains(res.FirstError, "none.sock") {
		t.Errorf("without a server: ops=%d errors=%d first=%q", res.Ops, res.Errors, res.FirstError)
	}
}

// Serve on a socket from Listen: a stale socket file is replaced, a live
// one or a regular file is refused, and the file is gone after Serve.
func TestListenUnix(t *testing.T) {
	dir := socketDir(t)
	sock := filepath.Join(dir, "s.sock")
	addr := UnixScheme + "://" + sock

	// A socket file whose listener is gone (not unlinked on close).
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("no stale socket to test with: %v", err)
	}

	ln, err := Listen(addr)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	if _, err := Listen(addr); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln) }()
	cfg := quick(OpBaseline, addr)
	cfg.Duration, cfg.Token = 100*time.Millisecond, ""
	res, err := Run(context.Background(), cfg)
	if err != nil || res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("run against Serve on the socket: %+v %v", res, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file after Serve returned: %v", err)
	}

	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(UnixScheme + "://" + regular); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen on a regular file: %v", err)
	}
	if b, _ := os.ReadFile(regular); string(b) != "x" {
		t.Fatal("Listen changed a regular file")
	}
	if _, err := Listen("unix://relative.sock"); err == nil {
		t.Fatal("Listen accepted unix://relative.sock")
	}
	tcp, err := Listen("127.0.0.1:0")
	if err != nil || tcp.Addr().Network() != "tcp" {
		t.Fatalf("Listen TCP: %v", err)
	}
	tcp.Close()
}

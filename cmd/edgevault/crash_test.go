package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"

	"github.com/edgevault/edgevault/internal/audit"
)

// buildBinary compiles edgevault once for the process tests.
func buildBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "edgevault")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// serverFiles writes, in a new temp dir, the config of a server on a free
// loopback port over a bbolt file, with extra appended to it, and returns
// the config's path, the address and the database's path.
func serverFiles(t *testing.T, extra string) (cfg, addr, db string) {
	t.Helper()
	dir := t.TempDir()
	addr = freeAddr(t)
	db = filepath.Join(dir, "edgevault.db")
	cfg = filepath.Join(dir, "server.hcl")
	conf := fmt.Sprintf("listener \"tcp\" {\n  address = %q\n  tls_disable = true\n}\nstorage \"bolt\" {\n  path = %q\n}\n%s", addr, db, extra)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, addr, db
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess runs `edgevault server -config cfg` and waits until it answers.
func startProcess(t *testing.T, bin, cfg, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "server", "-config", cfg)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/v1/sys/seal-status")
		if err == nil {
			resp.Body.Close()
			return cmd
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	t.Fatal("server did not start")
	return nil
}

func client(t *testing.T, addr, token string) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = "http://" + addr
	cfg.MaxRetries = 0
	cfg.Timeout = 10 * time.Second
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// TestCrashKeepsAcknowledgedWrites kills the server with SIGKILL while
// writes are in flight and checks that every write answered 200 survives.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := buildBinary(t)
	cfg, addr, db := serverFiles(t, "")

	proc := startProcess(t, bin, cfg, addr)
	c := client(t, addr, "")
	init, err := c.Sys().Init(&vault.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sys().Unseal(init.Keys[0]); err != nil {
		t.Fatal(err)
	}
	c.SetToken(init.RootToken)

	// Writers run until the process dies; each records what was acknowledged.
	var (
		mu    sync.Mutex
		acked = map[string]string{}
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			kv := client(t, addr, init.RootToken).KVv2("secret")
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("crash/%d/%d", w, i)
				val := fmt.Sprintf("value-%d-%d", w, i)
				if _, err := kv.Put(ctx, key, map[string]any{"v": val}); err != nil {
					return
				}
				mu.Lock()
				acked[key] = val
				mu.Unlock()
			}
		}(w)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	cancel()
	wg.Wait()
	if len(acked) < 100 {
		t.Fatalf("only %d writes acknowledged before the kill; the test needs writes in flight", len(acked))
	}

	proc = startProcess(t, bin, cfg, addr)
	stopped := false
	defer func() {
		if !stopped {
			proc.Process.Signal(syscall.SIGTERM)
			proc.Wait()
		}
		checkBolt(t, db)
	}()
	c = client(t, addr, "")
	st, err := c.Sys().Unseal(init.Keys[0])
	if err != nil || st.Sealed {
		t.Fatalf("unseal after crash: %+v %v", st, err)
	}
	kv := client(t, addr, init.RootToken).KVv2("secret")
	lost := 0
	for key, want := range acked {
		s, err := kv.Get(context.Background(), key)
		if err != nil || s.Data["v"] != want {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged write %s lost: %v", key, err)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, len(acked))
	}
	t.Logf("%d acknowledged writes all survived SIGKILL", len(acked))

	// The audit file and the transparency log (the default devices, beside
	// the database) agree entry for entry, and every acknowledged write has
	// its response entry.
	key, err := client(t, addr, init.RootToken).Logical().Read("sys/audit-log/key")
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(key.Data["verifier_key"].(string))
	if err != nil {
		t.Fatal(err)
	}
	proc.Process.Signal(syscall.SIGTERM)
	proc.Wait()
	stopped = true
	dir := filepath.Dir(db)
	rep, err := audit.Verify(filepath.Join(dir, "audit-log"), v, []string{filepath.Join(dir, "audit.log")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("after SIGKILL the audit file and log disagree: %+v", rep.Problems)
	}
	written := map[string]bool{}
	err = audit.ReadLines(filepath.Join(dir, "audit.log"), func(line []byte, _ bool) error {
		var e struct {
			Type    string
			Request struct{ Path string }
		}
		if json.Unmarshal(line, &e) == nil && e.Type == "response" {
			written[strings.TrimPrefix(e.Request.Path, "secret/data/")] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key := range acked {
		if !written[key] {
			t.Fatalf("acknowledged write %s has no response entry in the audit file", key)
		}
	}
	t.Logf("audit file and log agree on %d entries", rep.LogSize)
}

// checkBolt runs bbolt's consistency check on the file.
func checkBolt(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("open %s after crash: %v", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatalf("bbolt consistency check: %v", err)
	}
}

package agent

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Clock skew between an agent and its control plane. The server's clock is
// the real one; the agent's Config.Clock runs ahead of or behind it. Within
// the tolerance (attest.DefaultClockSkew, 5 min: the server backdates agent
// certificates by that much) the agent must enroll, sync, serve, renew its
// certificate and bound staleness exactly as with a correct clock; beyond it,
// it must say so clearly and promptly.

// logBuffer collects an agent's log lines, safe for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// skewedAgent is newConfig with the agent's clock skew away from the
// server's, and its log captured.
func skewedAgent(t *testing.T, cp *controlPlane, agentID string, skew time.Duration) (Config, *testClock, *logBuffer) {
	t.Helper()
	clk := &testClock{}
	clk.advance(skew)
	cfg := newConfig(t, cp, cp.joinToken(t, agentID), clk)
	logs := &logBuffer{}
	if cfg.Logger == nil { // AGENT_TEST_LOG keeps its stderr logger
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg, clk, logs
}

// staleSeconds reads path from the agent and returns the status and the
// X-Edgevault-Stale header as a number (-1 if absent).
func staleSeconds(t *testing.T, hc *http.Client, base, path, token string) (int, int64, map[string]any) {
	t.Helper()
	status, hdr, body, _ := rawGet(t, hc, base, path, token)
	v := hdr.Get(StaleHeader)
	if v == "" {
		return status, -1, body
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s = %q: not an integer", StaleHeader, v)
	}
	return status, n, body
}

func TestAgentToleratesClockSkew(t *testing.T) {
	for _, skew := range []time.Duration{5 * time.Minute, -5 * time.Minute} {
		name := "agent " + skew.String() + " ahead"
		if skew < 0 {
			name = "agent " + (-skew).String() + " behind"
		}
		t.Run(name, func(t *testing.T) { testClockSkew(t, skew) })
	}
}

func testClockSkew(t *testing.T, skew time.Duration) {
	const maxStale = 10 * time.Minute
	cp := startControlPlane(t, maxStale.String())
	cp.put(t, "app/db", map[string]any{"password": "v1"})
	cfg, clk, logs := skewedAgent(t, cp, "node-skew", skew)
	defer func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs)
		}
	}()
	ag := startAgent(t, cfg)
	tok := ag.info.LocalToken
	local := agentClient(t, ag.info, tok)
	tcp, sock := "http://"+ag.info.Listen, unixClient(ag.info.Socket)
	hc := &http.Client{}

	// Enrollment and sync: the secret is served over TCP and the socket.
	waitFor(t, "app/db v1 through the agent", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "v1" })
	if _, h := health(t, ag.info); h["mode"] != "online" || h["agent_id"] != "node-skew" {
		t.Fatalf("health: %v", h)
	}
	for _, c := range []struct {
		hc   *http.Client
		base string
	}{{hc, tcp}, {sock, "http://agent"}} {
		status, stale, body := staleSeconds(t, c.hc, c.base, "/v1/secret/data/app/db", tok)
		if status != http.StatusOK || stale != -1 || body["data"].(map[string]any)["data"].(map[string]any)["password"] != "v1" {
			t.Fatalf("online read via %s: %d, stale %d, %v", c.base, status, stale, body)
		}
	}
	id, err := loadIdentity(cfg.StateDir, testZone, nil)
	if err != nil || id == nil || id.cert == nil {
		t.Fatalf("identity after enrollment: %v %v", id, err)
	}
	// The certificate is dated by the server's clock, backdated by the
	// tolerance, so it is already valid on the agent's clock.
	if nb := id.cert.Leaf.NotBefore; nb.After(clk.now()) || time.Since(nb) > 6*time.Minute {
		t.Fatalf("certificate valid from %v; server time %v, agent time %v", nb, time.Now(), clk.now())
	}

	// Staleness once the server is gone is measured on the agent's own
	// clock: near 0 at first (never negative, not off by the skew), and
	// the entry is refused once max_stale has passed on that clock.
	addr := cp.hts.Listener.Addr().String()
	cp.stop()
	waitFor(t, "degraded", func() bool { _, h := health(t, ag.info); return h["mode"] == "degraded" })
	for _, c := range []struct {
		hc   *http.Client
		base string
	}{{hc, tcp}, {sock, "http://agent"}} {
		status, stale, body := staleSeconds(t, c.hc, c.base, "/v1/secret/data/app/db", tok)
		if status != http.StatusOK || stale < 0 || stale > 30 {
			t.Fatalf("read via %s right after the server stopped: %d, %s %d, %v; want 200 and 0..30 s", c.base, status, StaleHeader, stale, body)
		}
	}
	clk.advance(maxStale - 40*time.Second)
	status, stale, body := staleSeconds(t, sock, "http://agent", "/v1/secret/data/app/db", tok)
	if status != http.StatusOK || stale < 560 || stale > 600 {
		t.Fatalf("read %v before max_stale: %d, %s %d, %v; want 200 and 560..600 s", 40*time.Second, status, StaleHeader, stale, body)
	}
	clk.advance(time.Minute)
	status, stale, body = staleSeconds(t, hc, tcp, "/v1/secret/data/app/db", tok)
	if status != http.StatusServiceUnavailable || !strings.Contains(strings.Join(errorsOf(body), " "), "max_stale") {
		t.Fatalf("read 20 s past max_stale: %d, %s %d, %v; want 503 naming max_stale", status, StaleHeader, stale, body)
	}
	clk.advance(-(maxStale + 20*time.Second))
	cp.start(t, addr)
	waitFor(t, "online again", func() bool { _, h := health(t, ag.info); return h["mode"] == "online" })

	// Renewal follows the server's clock (the agent learns how far off its
	// own is from the enrollment's answer) against the certificate's
	// dates: not before two thirds of its lifetime, then with a new key.
	idFile := filepath.Join(cfg.StateDir, identityFile)
	before, err := os.ReadFile(idFile)
	if err != nil {
		t.Fatal(err)
	}
	jump := id.renewAt().Sub(clk.now().Add(-skew)) - 2*time.Minute
	clk.advance(jump)
	time.Sleep(1500 * time.Millisecond) // renewLoop looks every second
	if now, _ := os.ReadFile(idFile); !bytes.Equal(now, before) {
		t.Fatal("renewed 2 minutes (server clock) before two thirds of the certificate's lifetime")
	}
	clk.advance(3 * time.Minute)
	waitFor(t, "renewal", func() bool { now, _ := os.ReadFile(idFile); return !bytes.Equal(now, before) })
	clk.advance(-(jump + 3*time.Minute)) // back to the skewed clock
	time.Sleep(200 * time.Millisecond)   // let a renewal in flight finish
	renewed, err := loadIdentity(cfg.StateDir, testZone, nil)
	if err != nil || renewed.cert == nil || renewed.key.Equal(id.key) || !renewed.cert.Leaf.NotBefore.After(id.cert.Leaf.NotBefore) {
		t.Fatalf("renewed identity: %v %v", renewed, err)
	}
	// Back on the skewed clock the new certificate is not renewed again.
	settled, _ := os.ReadFile(idFile)
	time.Sleep(1500 * time.Millisecond)
	if now, _ := os.ReadFile(idFile); !bytes.Equal(now, settled) {
		t.Fatal("the renewed certificate was renewed again at once")
	}
	// The server accepts the renewed certificate on a new stream.
	cp.stop()
	waitFor(t, "degraded", func() bool { _, h := health(t, ag.info); return h["mode"] != "online" })
	cp.start(t, addr)
	waitFor(t, "online with the renewed certificate", func() bool { _, h := health(t, ag.info); return h["mode"] == "online" })
	cp.put(t, "app/db", map[string]any{"password": "v3"})
	waitFor(t, "app/db v3", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "v3" })
}

// A version deleted on the server is never served by the agent, although
// the deletion_time the server wrote is on the server's clock and the
// agent's clock may be behind it (by 5 min, or by a mere second).
func TestAgentDropsAVersionDeletedOnASkewedServer(t *testing.T) {
	for _, skew := range []time.Duration{5 * time.Minute, -time.Second, -5 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			cp := startControlPlane(t, "1h")
			cp.put(t, "app/db", map[string]any{"password": "v1"})
			cfg, clk, _ := skewedAgent(t, cp, "node-del", skew)
			ag := startAgent(t, cfg)
			local := agentClient(t, ag.info, ag.info.LocalToken)
			waitFor(t, "app/db v1", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "v1" })
			cp.put(t, "app/db", map[string]any{"password": "v2"})
			waitFor(t, "app/db v2", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "v2" })
			if p, err := readPassword(local, "app/db", 1); err != nil || p != "v1" {
				t.Fatalf("version 1 before its deletion: %q %v", p, err)
			}
			if err := cp.zone.KVv2("secret").DeleteVersions(context.Background(), "app/db", []int{1}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the deletion of version 1 in the agent's metadata", func() bool {
				md, err := local.KVv2("secret").GetMetadata(context.Background(), "app/db")
				return err == nil && len(md.Versions) > 0 && !md.Versions["1"].DeletionTime.IsZero()
			})
			for _, after := range []time.Duration{0, 10 * time.Minute} { // not even once the clock has passed it
				clk.advance(after)
				status, _, body, _ := rawGet(t, &http.Client{}, "http://"+ag.info.Listen, "/v1/secret/data/app/db?version=1", ag.info.LocalToken)
				if status != http.StatusNotFound {
					t.Errorf("%v later: read of version 1, deleted on the server: %d %v, want 404", after, status, body)
				}
			}
			if p, err := readPassword(local, "app/db", 0); err != nil || p != "v2" {
				t.Fatalf("current version: %q %v", p, err)
			}
		})
	}
}

// errorsOf returns a Vault error body's messages.
func errorsOf(body map[string]any) []string {
	var out []string
	list, _ := body["errors"].([]any)
	for _, e := range list {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

// An agent whose clock is far outside the tolerance does not carry on as
// if nothing were wrong: within seconds it logs an error that names the
// clock, it does not hammer the server with renewals, and it stops cleanly.
func TestAgentClockBeyondTolerance(t *testing.T) {
	for _, skew := range []time.Duration{-2 * time.Hour, 2 * time.Hour} {
		name := "agent " + (-skew).String() + " behind"
		if skew > 0 {
			name = "agent " + skew.String() + " ahead"
		}
		t.Run(name, func(t *testing.T) {
			cp := startControlPlane(t, "1h")
			cp.put(t, "app/db", map[string]any{"password": "p"})
			cfg, _, logs := skewedAgent(t, cp, "node-far", skew)
			start := time.Now()
			ag := startAgent(t, cfg)
			idFile := filepath.Join(cfg.StateDir, identityFile)
			var (
				writes int
				last   []byte
			)
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if b, err := os.ReadFile(idFile); err == nil && !bytes.Equal(b, last) {
					writes++
					last = b
				}
				time.Sleep(50 * time.Millisecond)
			}
			out := logs.String()
			if writes > 2 {
				t.Errorf("identity.pem rewritten %d times in 5 s: a renewal loop", writes)
			}
			var clockErr string
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "level=ERROR") && strings.Contains(strings.ToLower(line), "clock") {
					clockErr = line
					break
				}
			}
			if clockErr == "" {
				t.Errorf("no ERROR naming the clock within 5 s of start; agent log:\n%s", out)
			} else {
				t.Logf("the agent said: %s", clockErr)
			}
			if err := ag.stop(); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("start to stop took %v", took)
			}
		})
	}
}

package agent

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An agent started while the server is down serves nothing, says it is
// isolated, and enrolls as soon as the server is reachable.
func TestAgentEnrollsWhenTheServerReturns(t *testing.T) {
	cp := startControlPlane(t, "1h")
	cp.put(t, "app/db", map[string]any{"password": "p"})
	token := cp.joinToken(t, "node-b")
	addr := cp.hts.Listener.Addr().String()
	cp.stop()

	ag := startAgent(t, newConfig(t, cp, token, nil))
	if ag.info.AgentID != "" || ag.info.LocalToken == "" {
		t.Fatalf("info before enrollment: %+v", ag.info)
	}
	if status, h := health(t, ag.info); status != http.StatusServiceUnavailable || h["mode"] != "isolated" || h["agent_id"] != "" {
		t.Fatalf("health of an unenrolled agent: %d %v", status, h)
	}
	status, _, _, took := rawGet(t, &http.Client{}, "http://"+ag.info.Listen, "/v1/secret/data/app/db", ag.info.LocalToken)
	if status != http.StatusServiceUnavailable || took > 2*time.Second {
		t.Fatalf("read while isolated: %d in %v", status, took)
	}
	time.Sleep(300 * time.Millisecond) // let an enrollment attempt fail
	cp.start(t, addr)
	waitFor(t, "enrolled and online", func() bool {
		_, h := health(t, ag.info)
		return h["mode"] == "online" && h["agent_id"] == "node-b"
	})
	local := agentClient(t, ag.info, ag.info.LocalToken)
	waitFor(t, "app/db", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "p" })
}

// Without an identity or a valid join token the agent still starts,
// isolated; a refused token is not retried.
func TestAgentWithoutJoinTokenIsIsolated(t *testing.T) {
	cp := startControlPlane(t, "1h")
	used := cp.joinToken(t, "node-x")
	first := startAgent(t, newConfig(t, cp, used, nil))
	waitFor(t, "first agent online", func() bool { _, h := health(t, first.info); return h["mode"] == "online" })
	for _, token := range []string{"", used, "evjt.edge-1.bogus"} {
		ag := startAgent(t, newConfig(t, cp, token, nil))
		time.Sleep(200 * time.Millisecond)
		if status, h := health(t, ag.info); status != http.StatusServiceUnavailable || h["mode"] != "isolated" || h["agent_id"] != "" {
			t.Fatalf("token %q: health: %d %v", token, status, h)
		}
		if err := ag.stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// A corrupted or missing cache file is replaced and filled by a full sync.
func TestAgentResyncsACorruptedOrMissingCache(t *testing.T) {
	cp := startControlPlane(t, "1h")
	cp.put(t, "app/db", map[string]any{"password": "p1"})
	cfg := newConfig(t, cp, cp.joinToken(t, "node-c"), nil)
	ag := startAgent(t, cfg)
	waitFor(t, "app/db", func() bool {
		p, _ := readPassword(agentClient(t, ag.info, ag.info.LocalToken), "app/db", 0)
		return p == "p1"
	})
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(cfg.StateDir, cacheFile)
	for _, damage := range []struct {
		name string
		do   func() error
	}{
		{"corrupted", func() error { return os.WriteFile(file, bytes.Repeat([]byte("garbage!"), 4096), 0o600) }},
		{"missing", func() error { return os.Remove(file) }},
	} {
		if err := damage.do(); err != nil {
			t.Fatal(err)
		}
		ag := startAgent(t, cfg)
		local := agentClient(t, ag.info, ag.info.LocalToken)
		waitFor(t, damage.name+" cache resynced", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "p1" })
		if _, h := health(t, ag.info); h["mode"] != "online" || h["watermark"].(float64) == 0 {
			t.Fatalf("%s: health after resync: %v", damage.name, h)
		}
		if err := ag.stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// The certificate is renewed at two thirds of its lifetime, and the sync
// stream uses the new one (the server refuses the superseded one).
func TestAgentRenewsItsCertificate(t *testing.T) {
	cp := startControlPlane(t, "24h")
	clk := &testClock{}
	cfg := newConfig(t, cp, cp.joinToken(t, "node-d"), clk)
	ag := startAgent(t, cfg)
	waitFor(t, "online", func() bool { _, h := health(t, ag.info); return h["mode"] == "online" })
	idFile := filepath.Join(cfg.StateDir, identityFile)
	before, err := os.ReadFile(idFile)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // no renewal before its time
	if now, _ := os.ReadFile(idFile); !bytes.Equal(now, before) {
		t.Fatal("the certificate was renewed long before two thirds of its lifetime")
	}
	clk.advance(45 * time.Minute) // the server issues 1h certificates
	waitFor(t, "renewal", func() bool { now, _ := os.ReadFile(idFile); return !bytes.Equal(now, before) })
	clk.advance(-45 * time.Minute)
	time.Sleep(100 * time.Millisecond) // let a renewal in flight finish
	renewed, _ := os.ReadFile(idFile)
	if strings.Count(string(renewed), "PRIVATE KEY-----") != 2 || bytes.Equal(renewed[:200], before[:200]) {
		t.Fatal("the renewed identity does not hold a new key")
	}
	// Reconnect: only the new certificate is accepted now.
	addr := cp.hts.Listener.Addr().String()
	cp.stop()
	waitFor(t, "degraded", func() bool { _, h := health(t, ag.info); return h["mode"] == "degraded" || h["mode"] == "isolated" })
	cp.start(t, addr)
	waitFor(t, "online with the renewed certificate", func() bool { _, h := health(t, ag.info); return h["mode"] == "online" })
	// An expired certificate never stops local serving.
	cp.put(t, "app/db", map[string]any{"password": "x"})
	local := agentClient(t, ag.info, ag.info.LocalToken)
	waitFor(t, "app/db", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "x" })
	cp.stop()
	clk.advance(3 * time.Hour)
	if p, err := readPassword(local, "app/db", 0); err != nil || p != "x" {
		t.Fatalf("read with an expired certificate: %q %v", p, err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{ServerAddr: "https://127.0.0.1:8200", Zone: "edge-1", StateDir: "/var/lib/x", Listen: "127.0.0.1:8100"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.ServerAddr = "" }, "ServerAddr"},
		{func(c *Config) { c.ServerAddr = "http://127.0.0.1:8200" }, "ServerAddr"},
		{func(c *Config) { c.ServerAddr = "https://h:1/v1" }, "ServerAddr"},
		{func(c *Config) { c.ServerCA = "/nonexistent/ca.pem" }, "ServerCA"},
		{func(c *Config) { c.Zone = "" }, "Zone"},
		{func(c *Config) { c.Zone = "root" }, "Zone"},
		{func(c *Config) { c.StateDir = "" }, "StateDir"},
		{func(c *Config) { c.Listen = "" }, "Listen or Socket"},
		{func(c *Config) { c.Listen = "0.0.0.0:8100" }, "loopback"},
		{func(c *Config) { c.Listen = "nonsense" }, "Listen"},
	} {
		c := good
		tc.change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %q", c, err, tc.want)
		}
	}
	c := good
	c.Listen, c.Socket = "", "/run/agent.sock"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// Run refuses a state directory others can read.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c = good
	c.StateDir = dir
	if err := Run(context.Background(), c, nil); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("Run with a 0755 state dir: %v", err)
	}
}

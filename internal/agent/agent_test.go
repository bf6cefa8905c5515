package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// newConfig is an agent configuration for cp in a fresh state directory.
func newConfig(t *testing.T, cp *controlPlane, joinToken string, clk *testClock) Config {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{
		ServerAddr: cp.hts.URL,
		ServerCA:   cp.caPEM,
		Zone:       testZone,
		JoinToken:  joinToken,
		StateDir:   filepath.Join(dir, "state"),
		Listen:     "127.0.0.1:0",
		Socket:     filepath.Join(dir, "agent.sock"),
	}
	if clk != nil {
		cfg.Clock = clk.now
	}
	if os.Getenv("AGENT_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

func readPassword(c *vault.Client, key string, version int) (string, error) {
	var s *vault.KVSecret
	var err error
	if version == 0 {
		s, err = c.KVv2("secret").Get(context.Background(), key)
	} else {
		s, err = c.KVv2("secret").GetVersion(context.Background(), key, version)
	}
	if err != nil {
		return "", err
	}
	p, _ := s.Data["password"].(string)
	return p, nil
}

// The agent's whole life: enroll, sync, serve reads online; keep serving
// (stale, bounded, fast refusals) when the server goes away, across an
// agent restart; go back online when the server returns.
func TestAgentServesThroughOutages(t *testing.T) {
	cp := startControlPlane(t, "24h")
	cp.put(t, "app/db", map[string]any{"password": "v1"})
	cp.put(t, "private/key", map[string]any{"password": "never cached"})
	clk := &testClock{}
	cfg := newConfig(t, cp, cp.joinToken(t, "node-a"), clk)
	ag := startAgent(t, cfg)
	local := agentClient(t, ag.info, ag.info.LocalToken)
	base := "http://" + ag.info.Listen
	hc := &http.Client{}

	waitFor(t, "app/db v1 through the agent", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "v1" })
	if status, h := health(t, ag.info); status != 200 || h["mode"] != "online" || h["agent_id"] != "node-a" ||
		h["spiffe_id"] != "spiffe://edgevault.local/zone/edge-1/agent/node-a" || h["attestation"] != "join token (weak)" || h["cert_expiry"] == "" {
		t.Fatalf("health online: %d %v", status, h)
	}
	for _, f := range []string{identityFile, localTokenFile, cacheFile, cacheKeyFile} {
		fi, err := os.Stat(filepath.Join(cfg.StateDir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}

	// An update on the server reaches the agent; older versions stay readable.
	start := time.Now()
	cp.put(t, "app/db", map[string]any{"password": "v2"})
	waitFor(t, "app/db v2 through the agent", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "v2" })
	t.Logf("a server write reached the agent in %v (polling every 20ms)", time.Since(start))
	if p, err := readPassword(local, "app/db", 1); err != nil || p != "v1" {
		t.Fatalf("version=1: %q %v", p, err)
	}
	md, err := local.KVv2("secret").GetMetadata(context.Background(), "app/db")
	if err != nil || md.CurrentVersion != 2 || len(md.Versions) != 2 {
		t.Fatalf("metadata: %+v %v", md, err)
	}
	status, hdr, body, _ := rawGet(t, hc, base, "/v1/secret/data/app/db", ag.info.LocalToken)
	if status != 200 || hdr.Get(StaleHeader) != "" || body["warnings"] != nil || body["mount_type"] != "kv" {
		t.Fatalf("online read: %d %v %v", status, hdr, body)
	}
	nsc := agentClient(t, ag.info, ag.info.LocalToken)
	nsc.SetNamespace(testZone)
	if p, err := readPassword(nsc, "app/db", 0); err != nil || p != "v2" {
		t.Fatalf("read with the agent's zone as namespace: %q %v", p, err)
	}
	nsc.SetNamespace("edge-2")
	if _, err := readPassword(nsc, "app/db", 0); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("read with another zone as namespace: %v, want 400", err)
	}
	self, err := local.Auth().Token().LookupSelf()
	if err != nil || self.Data["display_name"] != "edgevault-agent-local" {
		t.Fatalf("lookup-self: %v %v", self, err)
	}
	// A secret no policy lets agents cache is not in the cache: 404 to the
	// local token; an application's own server token is passed through.
	if s, err := local.KVv2("secret").Get(context.Background(), "private/key"); !errors.Is(err, vault.ErrSecretNotFound) {
		t.Fatalf("uncacheable secret with the local token: %v %v", s, err)
	}
	app := agentClient(t, ag.info, cp.zone.Token())
	app.SetNamespace(testZone)
	if p, err := readPassword(app, "private/key", 0); err != nil || p != "never cached" {
		t.Fatalf("proxied read with the app's token: %q %v", p, err)
	}
	if _, err := app.KVv2("secret").Put(context.Background(), "app/web", map[string]any{"password": "w1"}); err != nil {
		t.Fatalf("proxied write: %v", err)
	}
	waitFor(t, "app/web through the agent", func() bool { p, _ := readPassword(local, "app/web", 0); return p == "w1" })
	if status, _, _, _ := rawGet(t, hc, base, "/v1/secret/data/app/db", "evs.bogus"); status != http.StatusForbidden {
		t.Fatalf("bogus token online: %d, want 403", status)
	}
	// A write with the local token is proxied without it: the server
	// refuses it, and never sees the local token.
	if status, _, _, _ := rawDo(t, hc, http.MethodPut, base, "/v1/secret/data/app/db", ag.info.LocalToken, []byte(`{"data":{"password":"x"}}`)); status != http.StatusForbidden {
		t.Fatalf("write with the local token online: %d, want 403 from the server", status)
	}
	if _, seen := cp.tokens.Load(ag.info.LocalToken); seen {
		t.Fatal("the local token was sent to the server")
	}

	// The server goes away: cached reads go on, marked stale.
	addr := cp.hts.Listener.Addr().String()
	cp.stop()
	waitFor(t, "degraded", func() bool { _, h := health(t, ag.info); return h["mode"] == "degraded" })
	status, hdr, body, _ = rawGet(t, hc, base, "/v1/secret/data/app/db", ag.info.LocalToken)
	if status != 200 || hdr.Get(StaleHeader) == "" || !strings.Contains(strings.Join(toStrings(body["warnings"]), " "), "unreachable") {
		t.Fatalf("degraded read: %d %v %v", status, hdr, body)
	}
	if s, err := local.KVv2("secret").Get(context.Background(), "app/db"); err != nil || s.Data["password"] != "v2" || len(s.Raw.Warnings) == 0 {
		t.Fatalf("degraded read with vault/api: %v %v", s, err)
	}
	status, _, body, took := rawGet(t, hc, base, "/v1/secret/data/app/missing", ag.info.LocalToken)
	if status != http.StatusServiceUnavailable || took > 2*time.Second || !strings.Contains(toStrings(body["errors"])[0], "not in the agent's cache") {
		t.Fatalf("uncached read while degraded: %d in %v: %v", status, took, body)
	}
	status, _, body, took = rawDo(t, hc, http.MethodPut, base, "/v1/secret/data/app/db", ag.info.LocalToken, []byte(`{"data":{"password":"v3"}}`))
	if status != http.StatusServiceUnavailable || took > 2*time.Second || toStrings(body["errors"])[0] != "control plane unreachable" {
		t.Fatalf("write while degraded: %d in %v: %v", status, took, body)
	}
	if status, _, _, _ := rawGet(t, hc, base, "/v1/secret/data/app/db", "evs.bogus"); status != http.StatusForbidden {
		t.Fatalf("bogus token while degraded: %d, want 403", status)
	}
	if status, _, _, _ := rawGet(t, hc, base, "/v1/secret/data/app/db", ""); status != http.StatusForbidden {
		t.Fatalf("no token while degraded: %d, want 403", status)
	}
	// The unix socket serves the same.
	status, _, body, _ = rawGet(t, unixClient(ag.info.Socket), "http://agent", "/v1/secret/data/app/db", ag.info.LocalToken)
	if status != 200 || body["data"].(map[string]any)["data"].(map[string]any)["password"] != "v2" {
		t.Fatalf("unix socket read: %d %v", status, body)
	}
	// Past max_stale: refused, fast.
	clk.advance(25 * time.Hour)
	status, _, body, took = rawGet(t, hc, base, "/v1/secret/data/app/db", ag.info.LocalToken)
	if status != http.StatusServiceUnavailable || took > 2*time.Second || !strings.Contains(toStrings(body["errors"])[0], "max_stale") {
		t.Fatalf("read past max_stale: %d in %v: %v", status, took, body)
	}
	clk.advance(-25 * time.Hour)

	// A restarted agent serves from its cache while the server is down.
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	ag = startAgent(t, cfg)
	local = agentClient(t, ag.info, ag.info.LocalToken)
	if ag.info.AgentID != "node-a" {
		t.Fatalf("restarted agent: %+v", ag.info)
	}
	if status, h := health(t, ag.info); status != 200 || h["mode"] != "degraded" {
		t.Fatalf("health after restart without server: %d %v", status, h)
	}
	if p, err := readPassword(local, "app/db", 0); err != nil || p != "v2" {
		t.Fatalf("read after restart without server: %q %v", p, err)
	}

	// The server comes back: online again, and new writes arrive.
	cp.start(t, addr)
	waitFor(t, "online after the server returns", func() bool { _, h := health(t, ag.info); return h["mode"] == "online" })
	cp.put(t, "app/db", map[string]any{"password": "v3"})
	waitFor(t, "app/db v3", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "v3" })
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := []string{}
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	if len(out) == 0 {
		out = append(out, "")
	}
	return out
}

package agent

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// agentEntries returns the agent-read entries of an audit file.
func agentEntries(t *testing.T, file string) []map[string]any {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if e["type"] == "agent-read" {
			out = append(out, e)
		}
	}
	return out
}

// Every request the agent answers itself is spooled before it is answered
// and reaches the zone's audit devices once, in order, signed by the
// agent — also what it served while the server was down, across an agent
// restart.
func TestAgentAuditsLocalReads(t *testing.T) {
	cp := startControlPlane(t, "24h")
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	if err := cp.admin.Sys().EnableAuditWithOptions("file", &vault.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": auditFile}}); err != nil {
		t.Fatal(err)
	}
	cp.put(t, "app/db", map[string]any{"password": "s3cret-value"})
	cfg := newConfig(t, cp, cp.joinToken(t, "node-a"), nil)
	ag := startAgent(t, cfg)
	local := agentClient(t, ag.info, ag.info.LocalToken)
	waitFor(t, "app/db through the agent", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "s3cret-value" })
	waitFor(t, "the spool forwarded", func() bool { _, h := health(t, ag.info); return h["audit_pending"] == float64(0) })
	before := len(agentEntries(t, auditFile)) // the reads while waiting for the sync
	if before == 0 {
		t.Fatal("no entries for the reads while waiting for the sync")
	}
	hc := &http.Client{}
	base := "http://" + ag.info.Listen
	for range 3 {
		if status, _, _, _ := rawGet(t, hc, base, "/v1/secret/data/app/db?version=1", ag.info.LocalToken); status != 200 {
			t.Fatalf("online read: %d", status)
		}
	}
	// Server down: degraded reads, a miss, a refused write, and an agent restart.
	addr := cp.hts.Listener.Addr().String()
	cp.stop()
	waitFor(t, "degraded mode", func() bool { _, h := health(t, ag.info); return h["mode"] == "degraded" })
	if status, _, _, _ := rawGet(t, hc, base, "/v1/secret/data/app/db", ag.info.LocalToken); status != 200 {
		t.Fatalf("degraded read: %d", status)
	}
	if status, _, _, _ := rawGet(t, hc, base, "/v1/secret/data/app/none", ag.info.LocalToken); status != 503 {
		t.Fatalf("degraded miss: %d", status)
	}
	if status, _, _, _ := rawDo(t, hc, "POST", base, "/v1/secret/data/app/db", ag.info.LocalToken, []byte(`{"data":{}}`)); status != 503 {
		t.Fatalf("degraded write: %d", status)
	}
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	ag = startAgent(t, cfg)
	if status, _, _, _ := rawGet(t, hc, "http://"+ag.info.Listen, "/v1/secret/data/app/db", ag.info.LocalToken); status != 200 {
		t.Fatalf("degraded read after a restart: %d", status)
	}
	cp.start(t, addr)

	want := before + 3 + 4
	waitFor(t, "the agent's entries in the zone's audit file", func() bool { return len(agentEntries(t, auditFile)) >= want })
	entries := agentEntries(t, auditFile)
	if len(entries) != want {
		t.Fatalf("%d agent entries, want %d", len(entries), want)
	}
	raw, _ := os.ReadFile(auditFile)
	if strings.Contains(string(raw), "s3cret-value") || strings.Contains(string(raw), ag.info.LocalToken) {
		t.Fatal("the audit file holds a secret value or the local token")
	}
	type seen struct {
		path, mode string
		status     float64
	}
	var got []seen
	for i, e := range entries {
		if seq, _ := e["seq"].(float64); seq != float64(i+1) {
			t.Fatalf("entry %d: seq %v, want %d", i, e["seq"], i+1)
		}
		if s, _ := e["signer"].(map[string]any); s["id"] != "spiffe://edgevault.local/zone/edge-1/agent/node-a" || s["batch_size"] == nil {
			t.Fatalf("entry %d: signer %v", i, e["signer"])
		}
		req := e["request"].(map[string]any)
		if ns, _ := req["namespace"].(map[string]any); ns["id"] != testZone {
			t.Fatalf("entry %d: namespace %v", i, req["namespace"])
		}
		if i >= before {
			got = append(got, seen{req["path"].(string), req["mode"].(string), e["response"].(map[string]any)["status_code"].(float64)})
		}
	}
	wantSeen := []seen{
		{"secret/data/app/db", "online", 200}, {"secret/data/app/db", "online", 200}, {"secret/data/app/db", "online", 200},
		{"secret/data/app/db", "degraded", 200}, {"secret/data/app/none", "degraded", 503}, {"secret/data/app/db", "degraded", 503},
		{"secret/data/app/db", "degraded", 200},
	}
	for i := range wantSeen {
		if got[i] != wantSeen[i] {
			t.Fatalf("entry %d: %+v, want %+v (all: %+v)", before+i, got[i], wantSeen[i], got)
		}
	}
	if v := entries[before]["request"].(map[string]any)["version"]; v != float64(1) {
		t.Fatalf("version read: %v", v)
	}
	if s := entries[before+3]["request"].(map[string]any)["stale_seconds"]; s == nil {
		t.Fatalf("degraded read without stale_seconds: %v", entries[before+3])
	}
}

// A state directory restored from an old copy numbers new entries like
// ones the server already holds: the server refuses them (409) and the
// agent goes on under a new spool name — nothing is dropped as a
// duplicate.
func TestAgentAuditSpoolRestoredFromACopy(t *testing.T) {
	cp := startControlPlane(t, "24h")
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	if err := cp.admin.Sys().EnableAuditWithOptions("file", &vault.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": auditFile}}); err != nil {
		t.Fatal(err)
	}
	cp.put(t, "app/db", map[string]any{"password": "p"})
	cfg := newConfig(t, cp, cp.joinToken(t, "node-r"), nil)
	ag := startAgent(t, cfg)
	hc := &http.Client{}
	read := func(path string) {
		t.Helper()
		waitFor(t, "online", func() bool { _, h := health(t, ag.info); return h["mode"] == "online" })
		if status, _, _, _ := rawGet(t, hc, "http://"+ag.info.Listen, "/v1/secret/data/"+path, ag.info.LocalToken); status != 200 && status != 404 {
			t.Fatalf("read %s: %d", path, status)
		}
	}
	forwarded := func() {
		t.Helper()
		waitFor(t, "the spool forwarded", func() bool { _, h := health(t, ag.info); return h["audit_pending"] == float64(0) })
	}
	local := agentClient(t, ag.info, ag.info.LocalToken)
	waitFor(t, "app/db through the agent", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "p" })
	forwarded()
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "spool-copy")
	if err := os.CopyFS(backup, os.DirFS(filepath.Join(cfg.StateDir, spoolDir))); err != nil {
		t.Fatal(err)
	}
	ag = startAgent(t, cfg)
	read("app/db")
	forwarded()
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(cfg.StateDir, spoolDir)); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(cfg.StateDir, spoolDir), os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	ag = startAgent(t, cfg)
	read("app/restored-read") // numbered like the read above, which the server holds
	forwarded()
	paths := map[string]int{}
	for _, e := range agentEntries(t, auditFile) {
		paths[e["request"].(map[string]any)["path"].(string)]++
	}
	if paths["secret/data/app/restored-read"] != 1 {
		t.Fatalf("the read after the restore is not in the audit file once: %v", paths)
	}
}

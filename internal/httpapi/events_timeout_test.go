package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// A revocation that timed out while its targets were offline does not show
// "timed_out" forever: an agent that acked it later (its registry watermark
// covers feed_seq) shows applied, noted as after the timeout; one still
// away shows offline, to apply on reconnect before serving.
func TestEventAppliedAfterTimeout(t *testing.T) {
	ts := startServer(t, true)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	enrollSibling(t, ts, ag, "edge-eu", "agent-0099")
	hmacSource(t, ts.client, "gen", nil, "generic")
	writeRule(t, ts.client, "rp", `true`, action("revoke_prefix", "zone", "edge-eu", "prefix", "secret/app"))
	res := post(t, ts, "generic", "gen", hmacSecret, []byte(`{"id":"leak"}`))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 {
		t.Fatalf("intake: %d %s", res.status, res.body)
	}
	id := res.data.Revocations[0]
	ts.srv.ExpireRevocations(time.Now().Add(time.Hour))
	st := revocationStatus(t, ts.client, id)
	if st["state"] != "timed_out" || agentStatus(st, "agent-0042") != "offline" || agentStatus(st, "agent-0099") != "offline" {
		t.Fatalf("after the timeout: %v", st)
	}
	sa := follow(t, ag, 0)
	defer sa.stop()
	waitUntil(t, 10*time.Second, "agent-0042 applied after the timeout", func() bool {
		return agentStatus(revocationStatus(t, ts.client, id), "agent-0042") == "applied"
	})
	st = revocationStatus(t, ts.client, id)
	a := st["agents"].(map[string]any)["agent-0042"].(map[string]any)
	if note, _ := a["note"].(string); !strings.Contains(note, "applied after the timeout") || a["applied_at"] == nil {
		t.Fatalf("agent-0042: %v", a)
	}
	b := st["agents"].(map[string]any)["agent-0099"].(map[string]any)
	if note, _ := b["note"].(string); b["status"] != "offline" || note != "will apply on reconnect before serving" {
		t.Fatalf("agent-0099: %v", b)
	}
	if st["complete"] != false {
		t.Fatalf("complete with agent-0099 away: %v", st)
	}
}

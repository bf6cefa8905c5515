package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/edgevault/edgevault/internal/syncproto"
)

// writeRecoveryRule writes a rule with actions on firing and on_resolved
// actions on resolved.
func writeRecoveryRule(t *testing.T, c *vault.Client, name, expr string, actions, onResolved []map[string]any) {
	t.Helper()
	if _, err := c.Logical().Write("sys/events/rules/"+name, map[string]any{"expression": expr, "actions": actions,
		"on_resolved": onResolved}); err != nil {
		t.Fatal(err)
	}
}

// dryRun runs sys/events/rules/:name/test on event and returns the first
// planned action's targets.
func dryRun(t *testing.T, c *vault.Client, name string, event map[string]any) map[string]any {
	t.Helper()
	s, err := c.Logical().Write("sys/events/rules/"+name+"/test", map[string]any{"event": event})
	if err != nil || s == nil {
		t.Fatalf("dry run of %s: %v", name, err)
	}
	acts, _ := s.Data["actions"].([]any)
	if len(acts) == 0 {
		t.Fatalf("dry run of %s planned nothing: %v", name, s.Data)
	}
	a, _ := acts[0].(map[string]any)
	if a["recovery"] != true {
		t.Fatalf("dry run of %s: action %v is not a recovery", name, a)
	}
	tg, _ := a["targets"].(map[string]any)
	if tg == nil {
		t.Fatalf("dry run of %s: no targets in %v", name, a)
	}
	return tg
}

// streamStatus opens the agent's sync stream once and returns the status.
func streamStatus(t *testing.T, ag testAgent) int {
	t.Helper()
	resp, err := ag.http.Post(ag.url+syncproto.Path, syncproto.ContentType, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func agentRecord(t *testing.T, ag testAgent, id string) map[string]any {
	t.Helper()
	a, err := ag.zone.Logical().Read("sys/agents/" + id)
	if err != nil || a == nil {
		t.Fatalf("read agent %s: %v", id, err)
	}
	return a.Data
}

// quarantine_agent on firing, release_agent on resolved: a join-token agent
// is quarantined and refused its stream, then the alert resolves and it is
// active and accepted again — without an operator. Releasing an active
// agent is a no-op noted in the entry; a revoked agent is never released.
func TestEventReleaseAgentOnResolved(t *testing.T) {
	ts := startServer(t, true)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	enrollSibling(t, ts, ag, "edge-eu", "agent-0099")
	sa := follow(t, ag, 0)
	waitUntil(t, 10*time.Second, "the agent connected", sa.connected)
	hmacSource(t, ts.client, "gen", nil, "generic")
	params := []string{"zone", "{{labels.zone}}", "agent_id", "{{labels.agent_id}}"}
	writeRecoveryRule(t, ts.client, "tamper", `event.labels.alertname == "Tamper"`,
		[]map[string]any{action("quarantine_agent", params...)}, []map[string]any{action("release_agent", params...)})
	alert := func(id, status, agent string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"status":%q,"labels":{"alertname":"Tamper","zone":"edge-eu","agent_id":%q}}`, id, status, agent)
	}

	res := post(t, ts, "generic", "gen", hmacSecret, alert("t1", "firing", "agent-0042"))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 {
		t.Fatalf("firing: %d %s", res.status, res.body)
	}
	waitUntil(t, 10*time.Second, "the stream closed", func() bool { return !sa.connected() })
	sa.stop()
	if st := agentRecord(t, ag, "agent-0042")["status"]; st != "quarantined" {
		t.Fatalf("after firing: agent %v", st)
	}
	if code := streamStatus(t, ag); code != http.StatusForbidden {
		t.Fatalf("quarantined agent's stream: %d, want 403", code)
	}

	// The dry run of the resolved alert shows what would happen, changing nothing.
	resolved := map[string]any{"status": "resolved", "labels": map[string]string{"alertname": "Tamper", "zone": "edge-eu", "agent_id": "agent-0042"}}
	tg := dryRun(t, ts.client, "tamper", resolved)
	if a, _ := tg["agent"].(map[string]any); a["status"] != "quarantined" || !strings.HasPrefix(fmt.Sprint(a["would"]), "release") {
		t.Fatalf("dry run: %v", tg)
	}
	if st := agentRecord(t, ag, "agent-0042")["status"]; st != "quarantined" {
		t.Fatalf("the dry run changed the agent: %v", st)
	}

	res = post(t, ts, "generic", "gen", hmacSecret, alert("t1", "resolved", "agent-0042"))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 || len(res.data.ActionErrors) != 0 {
		t.Fatalf("resolved: %d %s", res.status, res.body)
	}
	id := res.data.Revocations[0]
	st := revocationStatus(t, ts.client, id)
	if st["action"] != "release_agent" || st["recovery"] != true || st["state"] != "complete" || st["feed_seq"] != nil ||
		!strings.Contains(fmt.Sprint(st["notes"]), "agent released") {
		t.Fatalf("release entry: %v", st)
	}
	a := agentRecord(t, ag, "agent-0042")
	if a["status"] != "active" || !strings.Contains(fmt.Sprint(a["status_reason"]), id) ||
		!strings.Contains(fmt.Sprint(a["status_reason"]), `rule "tamper"`) {
		t.Fatalf("after resolved: agent %v", a)
	}
	sa2 := follow(t, ag, 0)
	waitUntil(t, 10*time.Second, "the released agent's stream accepted", sa2.connected)

	// Resolving an alert for an agent that is active changes nothing.
	res = post(t, ts, "generic", "gen", hmacSecret, alert("t2", "resolved", "agent-0042"))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 || len(res.data.ActionErrors) != 0 {
		t.Fatalf("resolved for an active agent: %d %s", res.status, res.body)
	}
	if st := revocationStatus(t, ts.client, res.data.Revocations[0]); !strings.Contains(fmt.Sprint(st["notes"]), "already active") ||
		st["error"] != nil {
		t.Fatalf("no-op entry: %v", st)
	}

	// A revoked agent stays revoked: a permanent error naming why.
	writeRule(t, ts.client, "compromise", `event.labels.alertname == "Compromise"`, action("revoke_agent", params...))
	res = post(t, ts, "generic", "gen", hmacSecret,
		[]byte(`{"id":"c1","labels":{"alertname":"Compromise","zone":"edge-eu","agent_id":"agent-0099"}}`))
	if res.status != http.StatusAccepted || len(res.data.ActionErrors) != 0 {
		t.Fatalf("revoke: %d %s", res.status, res.body)
	}
	tg = dryRun(t, ts.client, "tamper", map[string]any{"status": "resolved",
		"labels": map[string]string{"alertname": "Tamper", "zone": "edge-eu", "agent_id": "agent-0099"}})
	if a, _ := tg["agent"].(map[string]any); a["status"] != "revoked" || !strings.Contains(fmt.Sprint(a["would"]), "never released") {
		t.Fatalf("dry run on a revoked agent: %v", tg)
	}
	res = post(t, ts, "generic", "gen", hmacSecret, alert("t3", "resolved", "agent-0099"))
	if res.status != http.StatusAccepted || len(res.data.ActionErrors) != 1 || !strings.Contains(res.data.ActionErrors[0], "never released") {
		t.Fatalf("release of a revoked agent: %d %s, want 202 with a permanent action error", res.status, res.body)
	}
	st = revocationStatus(t, ts.client, res.data.Revocations[0])
	if !strings.Contains(fmt.Sprint(st["error"]), "revoked") || !strings.Contains(fmt.Sprint(st["notes"]), "permanent error") {
		t.Fatalf("failed release entry: %v", st)
	}
	if s := agentRecord(t, ag, "agent-0099")["status"]; s != "revoked" {
		t.Fatalf("revoked agent after release: %v", s)
	}
}

// seal_zone on firing, unseal_zone on resolved: the zone answers 503 and
// refuses its agents, then serves again once the alert resolves. Unsealing
// a zone that is not sealed is a no-op noted in the entry.
func TestEventUnsealZoneOnResolved(t *testing.T) {
	ts := startServer(t, true)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	sa := follow(t, ag, 0)
	waitUntil(t, 10*time.Second, "the agent connected", sa.connected)
	hmacSource(t, ts.client, "gen", nil, "generic")
	writeRecoveryRule(t, ts.client, "breach", `event.labels.severity == "page"`,
		[]map[string]any{action("seal_zone", "zone", "{{labels.zone}}")},
		[]map[string]any{action("unseal_zone", "zone", "{{labels.zone}}")})
	alert := func(id, status string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"status":%q,"labels":{"severity":"page","zone":"edge-eu"}}`, id, status)
	}
	kv := ag.zone.KVv2("secret")

	res := post(t, ts, "generic", "gen", hmacSecret, alert("b1", "firing"))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 {
		t.Fatalf("firing: %d %s", res.status, res.body)
	}
	seal := res.data.Revocations[0]
	if _, err := kv.Get(t.Context(), "anything"); statusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("request to the sealed zone: %v, want 503", err)
	}
	waitUntil(t, 10*time.Second, "the stream closed", func() bool { return !sa.connected() })
	sa.stop()
	if code := streamStatus(t, ag); code == http.StatusOK {
		t.Fatal("a sealed zone's agent opened a stream")
	}

	tg := dryRun(t, ts.client, "breach", map[string]any{"status": "resolved", "labels": map[string]string{"severity": "page", "zone": "edge-eu"}})
	if tg["zone_sealed"] != true || !strings.Contains(fmt.Sprint(tg["would"]), seal) {
		t.Fatalf("dry run while sealed: %v", tg)
	}
	if _, err := kv.Get(t.Context(), "anything"); statusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("the dry run unsealed the zone: %v", err)
	}

	res = post(t, ts, "generic", "gen", hmacSecret, alert("b1", "resolved"))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 || len(res.data.ActionErrors) != 0 {
		t.Fatalf("resolved: %d %s", res.status, res.body)
	}
	st := revocationStatus(t, ts.client, res.data.Revocations[0])
	if st["action"] != "unseal_zone" || st["recovery"] != true || st["state"] != "complete" ||
		!strings.Contains(fmt.Sprint(st["notes"]), "seal lifted (set by revocation "+seal+`: rule "breach"`) {
		t.Fatalf("unseal entry: %v", st)
	}
	if _, err := kv.Put(t.Context(), "after", map[string]any{"k": "v"}); err != nil {
		t.Fatalf("zone after the recovery: %v", err)
	}
	sa2 := follow(t, ag, 0)
	waitUntil(t, 10*time.Second, "the agent's stream accepted again", sa2.connected)

	// The seal's removal is durable: a restart serves the zone.
	restart(t, ts)
	z := ts.newClient(t, ag.zone.Token())
	z.SetNamespace("edge-eu")
	if _, err := z.KVv2("secret").Get(t.Context(), "after"); err != nil {
		t.Fatalf("zone after a restart: %v", err)
	}

	tg = dryRun(t, ts.client, "breach", map[string]any{"status": "resolved", "labels": map[string]string{"severity": "page", "zone": "edge-eu"}})
	if tg["zone_sealed"] != false || !strings.HasPrefix(fmt.Sprint(tg["would"]), "nothing") {
		t.Fatalf("dry run while unsealed: %v", tg)
	}
	res = post(t, ts, "generic", "gen", hmacSecret, alert("b2", "resolved"))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 || len(res.data.ActionErrors) != 0 {
		t.Fatalf("resolved on an unsealed zone: %d %s", res.status, res.body)
	}
	if st := revocationStatus(t, ts.client, res.data.Revocations[0]); !strings.Contains(fmt.Sprint(st["notes"]), "not sealed by an event") ||
		st["error"] != nil {
		t.Fatalf("no-op entry: %v", st)
	}

	// Two overlapping incidents: c1 seals, then c2 seals again; c1 resolving
	// does not lift c2's seal, c2 resolving does.
	for _, id := range []string{"c1", "c2"} {
		if res := post(t, ts, "generic", "gen", hmacSecret, alert(id, "firing")); res.status != http.StatusAccepted {
			t.Fatalf("firing %s: %d %s", id, res.status, res.body)
		}
	}
	if res := post(t, ts, "generic", "gen", hmacSecret, alert("c1", "resolved")); res.status != http.StatusAccepted {
		t.Fatalf("resolved c1: %d %s", res.status, res.body)
	}
	if _, err := z.KVv2("secret").Get(t.Context(), "after"); statusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("another incident's resolution lifted the seal: %v", err)
	}
	if res := post(t, ts, "generic", "gen", hmacSecret, alert("c2", "resolved")); res.status != http.StatusAccepted {
		t.Fatalf("resolved c2: %d %s", res.status, res.body)
	}
	if _, err := z.KVv2("secret").Get(t.Context(), "after"); err != nil {
		t.Fatalf("the sealing incident's resolution did not lift the seal: %v", err)
	}
}

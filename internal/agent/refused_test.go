package agent

import (
	"net/http"
	"testing"
	"time"
)

// An agent revoked by an event while it was cut off cannot receive the
// revocation (its stream is refused from then on), so on reconnecting it
// must not go on serving its cache as a merely offline agent would: the
// server's refusal stops it serving anything.
func TestRevokedWhileOfflineServesNothingOnReconnect(t *testing.T) {
	cp := startControlPlane(t, "24h")
	cp.put(t, "app/db", map[string]any{"password": "v1"})
	const secret = "refused-bearer-0123456789abcdef"
	if _, err := cp.admin.Logical().Write("sys/events/sources/siem", map[string]any{
		"kinds": []string{"generic"}, "auth": map[string]any{"method": "bearer"}, "secret": secret}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.admin.Logical().Write("sys/events/rules/kill", map[string]any{
		"expression": `event.labels.?action.orValue("") == "kill"`,
		"actions": []map[string]any{{"type": "revoke_agent",
			"params": map[string]string{"zone": testZone, "agent_id": "{{labels.agent_id}}"}}}}); err != nil {
		t.Fatal(err)
	}
	cfg := newConfig(t, cp, cp.joinToken(t, "node-a"), nil)
	ag := startAgent(t, cfg)
	waitFor(t, "the secret cached", func() bool { return localRead(t, ag.info, "app/db") == http.StatusOK })

	addr := cp.hts.Listener.Addr().String()
	cp.stop()
	waitFor(t, "offline", func() bool { _, h := health(t, ag.info); return h["mode"] != "online" })
	if code := localRead(t, ag.info, "app/db"); code != http.StatusOK {
		t.Fatalf("offline read before the revocation: %d", code)
	}
	postEvent(t, cp, "siem", secret, `{"id":"kill-1","status":"firing","labels":{"action":"kill","agent_id":"node-a"}}`)
	// Still cut off: it cannot know yet, and serves as an offline agent.
	if code := localRead(t, ag.info, "app/db"); code != http.StatusOK {
		t.Fatalf("offline read after the revocation, before reconnecting: %d", code)
	}
	cp.start(t, addr)
	waitFor(t, "the agent refusing to serve once the server refuses it", func() bool {
		return localRead(t, ag.info, "app/db") == http.StatusForbidden
	})
	if _, h := health(t, ag.info); h["mode"] != "refused" {
		t.Fatalf("health of a refused agent: %v", h)
	}
	// An outage after the refusal does not make it a merely offline agent
	// again, and neither does a restart.
	cp.stop()
	time.Sleep(syncTimeout + time.Second)
	if code := localRead(t, ag.info, "app/db"); code != http.StatusForbidden {
		t.Fatalf("read during an outage after the refusal: %d, want 403", code)
	}
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	ag = startAgent(t, cfg)
	if code := localRead(t, ag.info, "app/db"); code != http.StatusForbidden {
		t.Fatalf("read after a restart, the server still unreachable: %d, want 403", code)
	}
}

// A zone sealed by an event refuses its agents (they serve nothing); once
// a recovery action unseals it, the agent is accepted again, resyncs the
// cache the seal purged, and serves again.
func TestSealedZoneAgentServesAgainAfterUnseal(t *testing.T) {
	cp := startControlPlane(t, "24h")
	cp.put(t, "app/db", map[string]any{"password": "v1"})
	const secret = "seal-bearer-0123456789abcdef"
	if _, err := cp.admin.Logical().Write("sys/events/sources/siem", map[string]any{
		"kinds": []string{"generic"}, "auth": map[string]any{"method": "bearer"}, "secret": secret}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.admin.Logical().Write("sys/events/rules/seal", map[string]any{
		"expression":  `event.labels.?severity.orValue("") == "page"`,
		"actions":     []map[string]any{{"type": "seal_zone", "params": map[string]string{"zone": testZone}}},
		"on_resolved": []map[string]any{{"type": "unseal_zone", "params": map[string]string{"zone": testZone}}}}); err != nil {
		t.Fatal(err)
	}
	ag := startAgent(t, newConfig(t, cp, cp.joinToken(t, "node-a"), nil))
	waitFor(t, "the secret cached", func() bool { return localRead(t, ag.info, "app/db") == http.StatusOK })

	postEvent(t, cp, "siem", secret, `{"id":"breach","status":"firing","labels":{"severity":"page"}}`)
	waitFor(t, "the agent refusing while its zone is sealed", func() bool {
		return localRead(t, ag.info, "app/db") == http.StatusForbidden
	})
	code, out := serverDo(t, cp, http.MethodPost, "/v1/sys/events/generic?source=siem", "", "",
		http.Header{"Authorization": {"Bearer " + secret}, "Content-Type": {"application/json"}},
		[]byte(`{"id":"breach","status":"resolved","labels":{"severity":"page"}}`))
	if code/100 != 2 {
		t.Fatalf("resolved event: %d %s", code, out)
	}
	waitFor(t, "the secret served again after the unseal", func() bool {
		return localRead(t, ag.info, "app/db") == http.StatusOK
	})
}

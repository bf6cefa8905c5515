package agent

import (
	"testing"
)

// A quarantine_agent rule, fired by an event, takes a TPM agent's access
// away until it re-attests: its stream is refused, it renews at once with a
// fresh quote (swtpm, a separate process), and is back — new certificate,
// new quote, the secret served again — with the revocation applied.
func TestQuarantineEventMakesTPMAgentReattest(t *testing.T) {
	spec, ekHash, pcr7 := tpmIdentity(t)
	cp := startControlPlane(t, "24h")
	cp.put(t, "app/db", map[string]any{"password": "tpm-guarded"})
	allowTPM(t, cp, ekHash, pcr7)
	const secret = "quarantine-bearer-0123456789abcdef"
	if _, err := cp.admin.Logical().Write("sys/events/sources/siem", map[string]any{
		"kinds": []string{"generic"}, "auth": map[string]any{"method": "bearer"}, "secret": secret}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.admin.Logical().Write("sys/events/rules/isolate", map[string]any{
		"expression": `event.labels.?severity.orValue("") == "critical"`,
		"actions": []map[string]any{{"type": "quarantine_agent",
			"params": map[string]string{"zone": testZone, "agent_id": "{{labels.agent_id}}"}}}}); err != nil {
		t.Fatal(err)
	}
	cfg := newConfig(t, cp, "", nil)
	cfg.TPM = spec
	logs := &logBuffer{}
	cfg.Logger = slogTo(logs)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	ag := startAgent(t, cfg)
	local := agentClient(t, ag.info, ag.info.LocalToken)
	waitFor(t, "the secret through the TPM agent", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "tpm-guarded" })
	id := "tpm-" + ekHash[:16]
	before, err := cp.zone.Logical().Read("sys/agents/" + id)
	if err != nil {
		t.Fatal(err)
	}

	revs := postEvent(t, cp, "siem", secret, `{"id":"siem-1","status":"firing","labels":{"severity":"critical","agent_id":"`+id+`"}}`)
	waitFor(t, "a re-attested renewal after the quarantine event", func() bool {
		r, err := cp.zone.Logical().Read("sys/agents/" + id)
		return err == nil && r.Data["status"] == "active" && r.Data["reattest_by"] == nil &&
			r.Data["cert_serial"] != before.Data["cert_serial"] // a renewal with a fresh quote
	})
	waitFor(t, "the revocation applied by the agent", func() bool {
		s, err := cp.admin.Logical().Read("sys/events/revocations/" + revs[0])
		if err != nil || s == nil {
			return false
		}
		return agentApplied(s.Data, id)
	})
	waitFor(t, "the agent online again", func() bool { _, h := health(t, ag.info); return h["mode"] == "online" })
	waitFor(t, "the secret served again", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "tpm-guarded" })
}

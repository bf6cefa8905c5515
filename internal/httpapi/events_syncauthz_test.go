package httpapi_test

import (
	"net/http"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// Only a refusal of the agent itself closes its sync stream with 403 (the
// agent then stops serving its cache); an audit device that cannot write
// the stream's opening is the server's trouble: 503, and the agent keeps
// serving while it retries. Once the device is gone the stream opens, and a
// quarantined agent is refused with 403.
func TestSyncAuditFailureIs503(t *testing.T) {
	ts, _, _ := auditedServer(t)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	err := ts.client.Sys().EnableAuditWithOptions("full", &vault.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": "/dev/full"}})
	if statusOf(err) != http.StatusInternalServerError {
		t.Fatalf("enable /dev/full: %v", err)
	}
	if code := streamStatus(t, ag); code != http.StatusServiceUnavailable {
		t.Fatalf("stream while the audit fails: %d, want 503", code)
	}
	if err := ts.client.Sys().DisableAudit("full"); err != nil {
		t.Fatal(err)
	}
	if code := streamStatus(t, ag); code != http.StatusOK {
		t.Fatalf("stream once the audit works: %d, want 200", code)
	}
	if _, err := ag.zone.Logical().Write("sys/agents/agent-0042/quarantine", map[string]any{"reason": "test"}); err != nil {
		t.Fatal(err)
	}
	if code := streamStatus(t, ag); code != http.StatusForbidden {
		t.Fatalf("a quarantined agent's stream: %d, want 403", code)
	}
}

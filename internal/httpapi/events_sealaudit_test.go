package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A request refused because its zone is sealed by an event is audited like
// any refusal: a request entry with the error.
func TestEventSealedZoneRefusalAudited(t *testing.T) {
	ts, file, _ := auditedServer(t)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	hmacSource(t, ts.client, "gen", nil, "generic")
	writeRule(t, ts.client, "seal", `event.labels.severity == "page"`, action("seal_zone", "zone", "{{labels.zone}}"))
	res := post(t, ts, "generic", "gen", hmacSecret, []byte(`{"id":"breach","labels":{"severity":"page","zone":"edge-eu"}}`))
	if res.status != http.StatusAccepted {
		t.Fatalf("intake: %d %s", res.status, res.body)
	}
	if _, err := ag.zone.KVv2("secret").Get(t.Context(), "anything"); statusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("request to the sealed zone: %v", err)
	}
	waitUntil(t, 5*time.Second, "the refusal in the audit log", func() bool {
		for _, e := range readEntries(t, file) {
			req, _ := e["request"].(map[string]any)
			if req != nil && req["path"] == "secret/data/anything" && strings.Contains(fmt.Sprint(e["error"]), "sealed by revocation") {
				return true
			}
		}
		return false
	})
}

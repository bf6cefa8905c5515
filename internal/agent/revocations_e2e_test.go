package agent

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/syncproto"
)

// serverDo sends one request straight to the control plane's handler, in
// process: the control plane is still up while its listener is down (the
// agent is cut off from it, operators and monitoring are not).
func serverDo(t *testing.T, cp *controlPlane, method, path, token, ns string, hdr http.Header, body []byte) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	if ns != "" {
		req.Header.Set("X-Vault-Namespace", ns)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	cp.srv.Handler().ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// localRead reads secret/<key> from the agent with its local token and
// returns the HTTP status.
func localRead(t *testing.T, info Info, key string) int {
	t.Helper()
	code, _, _, _ := rawGet(t, http.DefaultClient, "http://"+info.Listen, "/v1/secret/data/"+key, info.LocalToken)
	return code
}

// An agent cut off from the control plane when a revocation is published
// applies it on reconnect before it serves anything as an online agent:
// the first read once it reports online is already refused. Both ways the
// server publishes a Revoke today: an event rule's revoke_prefix (with its
// revocation metadata, and the revocation log then shows the agent applied
// it), and a zone republished after a policy change (no metadata).
func TestRevocationAppliedOnReconnectBeforeServing(t *testing.T) {
	for _, how := range []string{"event rule", "policy change"} {
		t.Run(strings.ReplaceAll(how, " ", "-"), func(t *testing.T) {
			cp := startControlPlane(t, "24h")
			cp.put(t, "app/db", map[string]any{"password": "v1"})
			cp.put(t, "keep/other", map[string]any{"password": "k1"})
			if err := cp.zone.Sys().PutPolicy("edge-keep", `
path "secret/data/keep/*" {
  capabilities = ["read"]
  cache { max_stale = "24h" }
}`); err != nil {
				t.Fatal(err)
			}
			const srcSecret = "e2e-bearer-0123456789abcdef"
			if how == "event rule" {
				if _, err := cp.admin.Logical().Write("sys/events/sources/e2e", map[string]any{
					"kinds": []string{"generic"}, "auth": map[string]any{"method": "bearer"}, "secret": srcSecret}); err != nil {
					t.Fatalf("events API: %v", err)
				}
				if _, err := cp.admin.Logical().Write("sys/events/rules/e2e-revoke-app", map[string]any{
					"expression": `event.labels.?alertname.orValue("") == "AppSecretLeaked"`,
					"actions": []map[string]any{{"type": "revoke_prefix",
						"params": map[string]string{"zone": testZone, "prefix": "secret/app/"}}}}); err != nil {
					t.Fatalf("events API: %v", err)
				}
			}
			ag := startAgent(t, newConfig(t, cp, cp.joinToken(t, "node-a"), nil))
			waitFor(t, "the secrets cached", func() bool {
				return localRead(t, ag.info, "app/db") == http.StatusOK && localRead(t, ag.info, "keep/other") == http.StatusOK
			})
			addr := cp.hts.Listener.Addr().String()

			// Cut off: still served from the cache.
			cp.stop()
			waitFor(t, "degraded", func() bool { _, h := health(t, ag.info); return h["mode"] == "degraded" })
			if code := localRead(t, ag.info, "app/db"); code != http.StatusOK {
				t.Fatalf("offline read before the revocation: %d, want 200 (stale)", code)
			}

			// The revocation is published while the agent is away.
			revID := ""
			switch how {
			case "event rule":
				code, body := serverDo(t, cp, http.MethodPost, "/v1/sys/events/generic?source=e2e", "", "",
					http.Header{"Authorization": {"Bearer " + srcSecret}, "Content-Type": {"application/json"}},
					[]byte(`{"id":"leak-1","labels":{"alertname":"AppSecretLeaked"}}`))
				if code != http.StatusAccepted {
					t.Fatalf("intake: %d %s", code, body)
				}
				var out struct {
					Data struct {
						Revocations []string `json:"revocations"`
					} `json:"data"`
				}
				_ = json.Unmarshal(body, &out)
				if len(out.Data.Revocations) != 1 {
					t.Fatalf("intake answer names no revocation: %s", body)
				}
				revID = out.Data.Revocations[0]
			case "policy change":
				code, body := serverDo(t, cp, http.MethodPut, "/v1/sys/policies/acl/edge-cache", cp.zone.Token(), testZone, nil,
					[]byte(`{"policy":"path \"secret/data/app/*\" { capabilities = [\"read\"] }"}`))
				if code != http.StatusNoContent && code != http.StatusOK {
					t.Fatalf("policy write: %d %s", code, body)
				}
			}
			waitFor(t, "the Revoke on the zone's feed", func() bool {
				for _, ev := range cp.srv.SyncEvents(testZone) {
					if ev.Kind == syncproto.Revoke && (ev.Path == "secret/app/" || (how == "policy change" && ev.Path == "")) {
						return true
					}
				}
				return false
			})
			// Still away: it cannot know yet.
			if code := localRead(t, ag.info, "app/db"); code != http.StatusOK {
				t.Fatalf("offline read after the revocation, before reconnecting: %d", code)
			}

			// Back: the first read once online is refused.
			cp.start(t, addr)
			waitFor(t, "online", func() bool { _, h := health(t, ag.info); return h["mode"] == "online" })
			if code := localRead(t, ag.info, "app/db"); code != http.StatusNotFound {
				t.Fatalf("first read after reconnecting: %d, want 404 (revoked)", code)
			}
			if code := localRead(t, ag.info, "keep/other"); code != http.StatusOK {
				t.Fatalf("a secret outside the revoked prefix: %d, want 200", code)
			}

			if how == "event rule" {
				waitFor(t, "the revocation log to show the agent applied it", func() bool {
					s, err := cp.admin.Logical().Read("sys/events/revocations/" + revID)
					if err != nil || s == nil {
						return false
					}
					return agentApplied(s.Data, "node-a")
				})
			}
		})
	}
}

// postEvent sends a generic event to the control plane as source src and
// returns the revocation IDs it created.
func postEvent(t *testing.T, cp *controlPlane, src, secret, body string) []string {
	t.Helper()
	code, out := serverDo(t, cp, http.MethodPost, "/v1/sys/events/generic?source="+src, "", "",
		http.Header{"Authorization": {"Bearer " + secret}, "Content-Type": {"application/json"}}, []byte(body))
	if code != http.StatusAccepted {
		t.Fatalf("intake: %d %s", code, out)
	}
	var resp struct {
		Data struct {
			Revocations []string `json:"revocations"`
		} `json:"data"`
	}
	if err := json.Unmarshal(out, &resp); err != nil || len(resp.Data.Revocations) == 0 {
		t.Fatalf("intake answer names no revocation: %s", out)
	}
	return resp.Data.Revocations
}

// A revoke_agent rule wipes the agent it names — secret cache, leased
// credentials — which then refuses every request and reports "revoked" in
// sys/health, also after a restart; another agent of the zone is not
// touched. A quarantine_agent rule makes the agent it names re-attest at
// once.
func TestRevokeAgentWipesAndStopsServing(t *testing.T) {
	cp := startControlPlane(t, "24h")
	cp.put(t, "app/db", map[string]any{"password": "v1"})
	mountPKI(t, cp, "1h")
	const secret = "e2e-bearer-0123456789abcdef"
	if _, err := cp.admin.Logical().Write("sys/events/sources/e2e", map[string]any{
		"kinds": []string{"generic"}, "auth": map[string]any{"method": "bearer"}, "secret": secret}); err != nil {
		t.Fatalf("events API: %v", err)
	}
	for _, action := range []string{"revoke_agent", "quarantine_agent"} {
		if _, err := cp.admin.Logical().Write("sys/events/rules/e2e-"+action, map[string]any{
			"expression": `event.labels.?action.orValue("") == "` + action + `"`,
			"actions": []map[string]any{{"type": action,
				"params": map[string]string{"zone": testZone, "agent_id": "{{labels.agent_id}}"}}}}); err != nil {
			t.Fatalf("events API: %v", err)
		}
	}
	cfgA := newConfig(t, cp, cp.joinToken(t, "node-a"), nil)
	cfgB := newConfig(t, cp, cp.joinToken(t, "node-b"), nil)
	logsB := &lockedBuffer{}
	cfgB.Logger = slog.New(slog.NewJSONHandler(logsB, nil))
	a, b := startAgent(t, cfgA), startAgent(t, cfgB)
	for _, ag := range []*runningAgent{a, b} {
		waitFor(t, "the secret cached", func() bool { return localRead(t, ag.info, "app/db") == http.StatusOK })
	}
	// A leased certificate in node-a's lease cache, if the server leases them.
	za := zoneClient(t, cp, a.info)
	leased := issue(t, za, "api.edge.example").LeaseID != ""
	t.Logf("leased certificates: %v", leased)
	if leased && !fromLeaseCache(issue(t, za, "api.edge.example")) {
		t.Fatal("the certificate is not in the lease cache")
	}

	ids := postEvent(t, cp, "e2e", secret, `{"id":"tamper-1","labels":{"action":"revoke_agent","agent_id":"node-a"}}`)
	waitFor(t, "node-a revoked and wiped", func() bool {
		_, h := health(t, a.info)
		return h["mode"] == "revoked" && h["cached_entries"] == float64(0)
	})
	code, h := health(t, a.info)
	rv, _ := h["revoked"].(map[string]any)
	if code != http.StatusServiceUnavailable || rv["revocation_id"] != ids[0] || rv["action"] != "revoke_agent" || h["cached_entries"] != float64(0) {
		t.Fatalf("node-a health: %d %v", code, h)
	}
	if code := localRead(t, a.info, "app/db"); code != http.StatusForbidden {
		t.Fatalf("node-a local read after revoke_agent: %d, want 403", code)
	}
	if _, err := za.Logical().Write("pki/issue/web", map[string]any{"common_name": "api.edge.example"}); statusOf(err) != http.StatusForbidden {
		t.Fatalf("node-a issue after revoke_agent: %v, want 403", err)
	}
	if code := localRead(t, b.info, "app/db"); code != http.StatusOK {
		t.Fatalf("node-b read after node-a was revoked: %d, want 200", code)
	}
	if _, hb := health(t, b.info); hb["mode"] != "online" {
		t.Fatalf("node-b: %v", hb)
	}

	// A restart does not undo it.
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	a = startAgent(t, cfgA)
	if code, h := health(t, a.info); code != http.StatusServiceUnavailable || h["mode"] != "revoked" {
		t.Fatalf("node-a after a restart: %d %v", code, h)
	}
	if code := localRead(t, a.info, "app/db"); code != http.StatusForbidden {
		t.Fatalf("node-a read after a restart: %d, want 403", code)
	}

	// Quarantine: node-b re-attests at once.
	postEvent(t, cp, "e2e", secret, `{"id":"suspect-1","labels":{"action":"quarantine_agent","agent_id":"node-b"}}`)
	waitFor(t, "node-b to re-attest", func() bool {
		return strings.Contains(logsB.String(), "the server asks for re-attestation")
	})
	if !strings.Contains(logsB.String(), `"action":"quarantine_agent"`) {
		t.Fatalf("node-b did not log the quarantine:\n%s", logsB.String())
	}
	if _, h := health(t, b.info); h["mode"] == "revoked" {
		t.Fatal("a quarantine revoked node-b")
	}
}

// agentApplied reports whether a sys/events/revocations/:id answer shows
// agent id as having applied the revocation.
func agentApplied(data map[string]any, id string) bool {
	agents, _ := data["agents"].(map[string]any)
	st, _ := agents[id].(map[string]any)
	return st["status"] == "applied"
}

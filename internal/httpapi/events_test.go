package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/edgevault/edgevault/internal/revoke"
	"github.com/edgevault/edgevault/internal/storage/inmem"
	"github.com/edgevault/edgevault/internal/syncproto"
)

// hmacSecret is the test sources' HMAC key.
const hmacSecret = "test-hmac-secret-0123456789"

// amFixture is the Alertmanager v4 payload the revoke package's tests use:
// two firing AgentTamperDetected alerts (agent-0042, agent-0043) and one
// resolved, zone edge-eu.
func amFixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "revoke", "testdata", "alertmanager.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// intakeResult is an intake answer.
type intakeResult struct {
	status int
	header http.Header
	data   struct {
		Accepted     int      `json:"accepted"`
		Duplicates   int      `json:"duplicates"`
		Revocations  []string `json:"revocations"`
		RuleErrors   []string `json:"rule_errors"`
		ActionErrors []string `json:"action_errors"`
	}
	body string
}

// post sends body to sys/events/<kind>?source=src, HMAC-signed with secret
// unless secret is empty.
func post(t *testing.T, ts *testServer, kind, src, secret string, body []byte, hdr ...string) intakeResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.addr+"/v1/sys/events/"+kind+"?source="+src, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set(revoke.DefaultSignatureHeader, revoke.Sign([]byte(secret), "", body))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := intakeResult{status: resp.StatusCode, header: resp.Header, body: string(raw)}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(raw, &env) == nil && len(env.Data) > 0 {
		_ = json.Unmarshal(env.Data, &out.data)
	}
	return out
}

// hmacSource writes an HMAC source allowed to post kinds.
func hmacSource(t *testing.T, c *vault.Client, name string, rate map[string]any, kinds ...string) {
	t.Helper()
	body := map[string]any{"kinds": kinds, "auth": map[string]any{"method": "hmac-sha256"}, "secret": hmacSecret}
	if rate != nil {
		body["rate_limit"] = rate
	}
	if _, err := c.Logical().Write("sys/events/sources/"+name, body); err != nil {
		t.Fatal(err)
	}
}

func writeRule(t *testing.T, c *vault.Client, name, expr string, actions ...map[string]any) {
	t.Helper()
	if _, err := c.Logical().Write("sys/events/rules/"+name, map[string]any{"expression": expr, "actions": actions}); err != nil {
		t.Fatal(err)
	}
}

func action(typ string, params ...string) map[string]any {
	p := map[string]string{}
	for i := 0; i+1 < len(params); i += 2 {
		p[params[i]] = params[i+1]
	}
	return map[string]any{"type": typ, "params": p}
}

// streamAgent follows an enrolled agent's sync stream, applying and acking
// every event, and remembers the revocations it received.
type streamAgent struct {
	mu      sync.Mutex
	acked   uint64
	revokes []syncproto.Event
	state   syncproto.State
	cancel  context.CancelFunc
	done    chan struct{}
}

func follow(t *testing.T, ag testAgent, from uint64) *streamAgent {
	t.Helper()
	sa := &streamAgent{acked: from, done: make(chan struct{})}
	cl := &syncproto.Client{
		URL:       ag.url + syncproto.Path,
		TLSConfig: ag.tls.Clone(),
		From:      func() uint64 { sa.mu.Lock(); defer sa.mu.Unlock(); return sa.acked },
		Apply: func(evs []syncproto.Event) (uint64, error) {
			sa.mu.Lock()
			defer sa.mu.Unlock()
			for _, ev := range evs {
				if ev.Kind == syncproto.Revoke {
					sa.revokes = append(sa.revokes, ev)
				}
				sa.acked = max(sa.acked, ev.Seq)
			}
			return sa.acked, nil
		},
		OnState: func(s syncproto.State, _ error) { sa.mu.Lock(); sa.state = s; sa.mu.Unlock() },
	}
	ctx, cancel := context.WithCancel(context.Background())
	sa.cancel = cancel
	go func() { cl.Run(ctx); close(sa.done) }()
	t.Cleanup(sa.stop)
	return sa
}

func (sa *streamAgent) stop() {
	sa.cancel()
	<-sa.done
}

func (sa *streamAgent) connected() bool {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.state == syncproto.StateConnected
}

// revocation returns the Revoke event carrying revocation id, if received.
func (sa *streamAgent) revocation(id string) (syncproto.Event, map[string]string, bool) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	for _, ev := range sa.revokes {
		var meta map[string]string
		if json.Unmarshal(ev.Metadata, &meta) == nil && meta["revocation_id"] == id {
			return ev, meta, true
		}
	}
	return syncproto.Event{}, nil, false
}

// revocationStatus reads sys/events/revocations/:id.
func revocationStatus(t *testing.T, c *vault.Client, id string) map[string]any {
	t.Helper()
	s, err := c.Logical().Read("sys/events/revocations/" + id)
	if err != nil || s == nil {
		t.Fatalf("read revocation %s: %v", id, err)
	}
	return s.Data
}

func agentStatus(data map[string]any, id string) string {
	agents, _ := data["agents"].(map[string]any)
	st, _ := agents[id].(map[string]any)
	s, _ := st["status"].(string)
	return s
}

// The Alertmanager fixture, HMAC-signed, fires a revoke_prefix rule: the
// zone's leases under the prefix are revoked, the agent's stream receives
// the Revoke, its ack shows as "applied", the time-to-isolate histogram
// counts it; the same delivery again is a duplicate.
func TestEventsAlertmanagerRevokePrefix(t *testing.T) {
	ts, file, _ := auditedServer(t)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	setupPKI(t, ag.zone)
	issued, err := ag.zone.Logical().Write("pki/issue/web", map[string]any{"common_name": "a.edge.example"})
	if err != nil {
		t.Fatal(err)
	}
	lease := issued.LeaseID
	if !strings.HasPrefix(lease, "pki/issue/web/") {
		t.Fatalf("lease %q", lease)
	}
	sa := follow(t, ag, 0)
	waitUntil(t, 10*time.Second, "the agent connected", sa.connected)

	hmacSource(t, ts.client, "am", nil, "alertmanager")
	writeRule(t, ts.client, "tamper", `event.labels.alertname == "AgentTamperDetected"`,
		action("revoke_prefix", "zone", "{{labels.zone}}", "prefix", "pki/issue/web"))

	// A dry run names the lease and the agent, and changes nothing.
	dry, err := ts.client.Logical().Write("sys/events/rules/tamper/test", map[string]any{"event": map[string]any{
		"labels": map[string]string{"alertname": "AgentTamperDetected", "zone": "edge-eu"}}})
	if err != nil {
		t.Fatal(err)
	}
	if dj, _ := json.Marshal(dry.Data); !strings.Contains(string(dj), lease) || !strings.Contains(string(dj), `"agent-0042":"connected"`) {
		t.Fatalf("dry run does not show the lease and the agent: %s", dj)
	}
	if leaseGone(ag.zone, lease) {
		t.Fatal("the dry run revoked the lease")
	}

	body := amFixture(t)
	res := post(t, ts, "alertmanager", "am", hmacSecret, body)
	if res.status != http.StatusAccepted || res.data.Accepted != 3 || len(res.data.Revocations) != 2 {
		t.Fatalf("intake: %d %s", res.status, res.body)
	}
	if !leaseGone(ag.zone, lease) {
		t.Fatal("the lease under the prefix is still there")
	}
	for _, id := range res.data.Revocations {
		waitUntil(t, 10*time.Second, "the agent received "+id, func() bool { _, _, ok := sa.revocation(id); return ok })
		ev, meta, _ := sa.revocation(id)
		if ev.Path != "pki/issue/web" || meta["lease_prefix"] != "pki/issue/web" || meta["action"] != "revoke_prefix" {
			t.Fatalf("revoke event %+v %v", ev, meta)
		}
		waitUntil(t, 10*time.Second, "applied", func() bool {
			return agentStatus(revocationStatus(t, ts.client, id), "agent-0042") == "applied"
		})
		st := revocationStatus(t, ts.client, id)
		if st["zone"] != "edge-eu" || st["rule"] != "tamper" || st["source"] != "am" || st["complete"] != true {
			t.Fatalf("status %v", st)
		}
	}
	// Redelivery: every alert is a duplicate.
	again := post(t, ts, "alertmanager", "am", hmacSecret, body)
	if again.status != http.StatusOK || again.data.Duplicates != 3 || len(again.data.Revocations) != 0 {
		t.Fatalf("redelivery: %d %s", again.status, again.body)
	}
	// The histogram has both, labelled by source and rule.
	code, metrics := ts.raw(t, "GET", "/v1/sys/metrics?format=prometheus", ts.root, nil)
	if code != 200 || !strings.Contains(metrics, `edgevault_revocation_time_to_isolate_seconds_count{outcome="applied",rule="tamper",source="am"} 2`) {
		t.Fatalf("metrics %d:\n%s", code, metrics)
	}
	if code, _ := ts.raw(t, "GET", "/v1/sys/metrics?format=prometheus", "", nil); code != http.StatusForbidden {
		t.Fatalf("metrics without a token: %d", code)
	}
	// The list shows the newest first.
	l, err := ts.client.Logical().List("sys/events/revocations")
	if err != nil {
		t.Fatal(err)
	}
	if keys := toStrings(l.Data["keys"]); len(keys) != 2 || keys[0] != res.data.Revocations[1] {
		t.Fatalf("list %v, want newest (%s) first", keys, res.data.Revocations[1])
	}
	// The delivery is audited, as a request and its response.
	found := 0
	for _, e := range readEntries(t, file) {
		if r, _ := e["request"].(map[string]any); r != nil && r["path"] == "sys/events/alertmanager" {
			found++
		}
	}
	if found != 4 { // two deliveries, each a request and a response entry
		t.Fatalf("%d audit entries for the intake, want 4", found)
	}
}

// Sources: secrets are never returned; bad input is refused naming the
// field and changes nothing.
func TestEventSourcesAndRulesAPI(t *testing.T) {
	ts := startServer(t, true)
	hmacSource(t, ts.client, "am", nil, "alertmanager")
	s, err := ts.client.Logical().Read("sys/events/sources/am")
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := json.Marshal(s.Data); strings.Contains(string(raw), hmacSecret) || s.Data["has_secret"] != true {
		t.Fatalf("source read: %s", raw)
	}
	// An update without secret keeps it.
	if _, err := ts.client.Logical().Write("sys/events/sources/am", map[string]any{"kinds": []string{"alertmanager", "generic"},
		"auth": map[string]any{"method": "hmac-sha256"}}); err != nil {
		t.Fatal(err)
	}
	if res := post(t, ts, "generic", "am", hmacSecret, []byte(`{"id":"e1"}`)); res.status != http.StatusAccepted {
		t.Fatalf("after update: %d %s", res.status, res.body)
	}
	before := ts.snapshot(t)
	for _, tc := range []struct {
		path string
		body map[string]any
		want string
	}{
		{"sys/events/sources/x", map[string]any{"kinds": []string{"carrier-pigeon"}, "auth": map[string]any{"method": "bearer"}, "secret": hmacSecret}, "kinds[0]"},
		{"sys/events/sources/x", map[string]any{"kinds": []string{"generic"}, "auth": map[string]any{"method": "bearer"}, "secret": "short"}, "secret"},
		{"sys/events/sources/x", map[string]any{"kinds": []string{"generic"}, "auth": map[string]any{"method": "bearer"}, "secret": hmacSecret, "colour": 1}, "colour"},
		{"sys/events/rules/r", map[string]any{"expression": `event.labels.x ==`, "actions": []any{action("notify", "url", "http://x")}}, "expression"},
		{"sys/events/rules/r", map[string]any{"expression": `event.status == "firing"`, "actions": []any{action("revoke_prefix", "zone", "z")}}, "prefix"},
		{"sys/events/rules/r", map[string]any{"expression": `1 + 1`, "actions": []any{action("notify", "url", "http://x")}}, "bool"},
	} {
		_, err := ts.client.Logical().Write(tc.path, tc.body)
		if statusOf(err) != 400 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: %v, want 400 naming %q", tc.path, tc.body, err, tc.want)
		}
	}
	if after := ts.snapshot(t); !equalMaps(before, after) {
		t.Fatal("refused writes changed storage")
	}
	// Writes need sudo: a token with write but not sudo is refused.
	if err := ts.client.Sys().PutPolicy("events-writer", `path "sys/events/*" { capabilities = ["create", "update", "read", "list"] }`); err != nil {
		t.Fatal(err)
	}
	tok, err := ts.client.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"events-writer"}})
	if err != nil {
		t.Fatal(err)
	}
	c := ts.newClient(t, tok.Auth.ClientToken)
	if _, err := c.Logical().Write("sys/events/rules/r", map[string]any{"expression": "true", "actions": []any{action("notify", "url", "http://x")}}); statusOf(err) != 403 {
		t.Fatalf("rule write without sudo: %v", err)
	}
	if _, err := c.Logical().Read("sys/events/sources/am"); err != nil {
		t.Fatalf("read without sudo: %v", err)
	}
	// A dry run lists lease IDs and agents of any zone: sudo, as LIST
	// sys/leases/lookup.
	writeRule(t, ts.client, "dry", `true`, action("revoke_prefix", "zone", "edge-1", "prefix", "secret"))
	if _, err := c.Logical().Write("sys/events/rules/dry/test", map[string]any{"event": map[string]any{}}); statusOf(err) != 403 {
		t.Fatalf("dry run without sudo: %v", err)
	}
	if _, err := ts.client.Logical().Write("sys/events/rules/dry/test", map[string]any{"event": map[string]any{}}); err != nil {
		t.Fatalf("dry run with sudo: %v", err)
	}
	// Reading a rule shows its notify URLs as written: sudo. Listing does not.
	if _, err := c.Logical().Read("sys/events/rules/dry"); statusOf(err) != 403 {
		t.Fatalf("rule read without sudo: %v", err)
	}
	if l, err := c.Logical().List("sys/events/rules"); err != nil || l == nil || !strings.Contains(fmt.Sprint(l.Data["keys"]), "dry") {
		t.Fatalf("rule list without sudo: %v %v", l, err)
	}
	if rl, err := ts.client.Logical().Read("sys/events/rules/dry"); err != nil || rl == nil {
		t.Fatalf("rule read with sudo: %v %v", rl, err)
	}
	// Named zones have no sys/events.
	zt := ts.createZone(t, "edge-1")
	if code, body := ts.rawNS(t, "GET", "/v1/sys/events/sources/am", zt, "edge-1"); code != 404 || !strings.Contains(body, "root zone") {
		t.Fatalf("sys/events in a named zone: %d %s", code, body)
	}
	if code, body := ts.rawNS(t, "POST", "/v1/sys/events/generic?source=am", "", "edge-1", []byte(`{"id":"x"}`)); code != 404 {
		t.Fatalf("intake in a named zone: %d %s", code, body)
	}
}

// Refusals: unsigned, badly signed or unknown-source deliveries are 401 and
// audited; malformed payloads 400; nothing is processed.
func TestEventIntakeRefusals(t *testing.T) {
	ts, file, _ := auditedServer(t)
	hmacSource(t, ts.client, "am", nil, "alertmanager")
	writeRule(t, ts.client, "all", `true`, action("rotate_zone_key", "zone", "{{labels.zone}}"))
	body := amFixture(t)
	for name, res := range map[string]intakeResult{
		"unsigned":       post(t, ts, "alertmanager", "am", "", body),
		"bad signature":  post(t, ts, "alertmanager", "am", "another-secret-0123456789", body),
		"unknown source": post(t, ts, "alertmanager", "nobody", hmacSecret, body),
		"no source":      post(t, ts, "alertmanager", "", hmacSecret, body),
	} {
		if res.status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", name, res.status, res.body)
		}
	}
	// Another kind than the source's is forbidden.
	if res := post(t, ts, "generic", "am", hmacSecret, []byte(`{"id":"x"}`)); res.status != http.StatusForbidden {
		t.Errorf("wrong kind: %d %s", res.status, res.body)
	}
	for name, b := range map[string][]byte{
		"not JSON":          []byte(`{"alerts": [`),
		"no fingerprint":    []byte(`{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{},"startsAt":"2026-11-26T05:58:12Z"}]}`),
		"wrong version":     bytes.Replace(body, []byte(`"version": "4"`), []byte(`"version": "3"`), 1),
		"not an object":     []byte(`[1,2,3]`),
		"alerts not a list": []byte(`{"version":"4","alerts":{}}`),
	} {
		if res := post(t, ts, "alertmanager", "am", hmacSecret, b); res.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, res.status, res.body)
		}
	}
	// More alerts than revoke.MaxAlerts in one payload: 413 naming them.
	var many bytes.Buffer
	many.WriteString(`{"version":"4","status":"firing","alerts":[`)
	for i := range revoke.MaxAlerts + 1 {
		if i > 0 {
			many.WriteByte(',')
		}
		fmt.Fprintf(&many, `{"status":"firing","labels":{"alertname":"x"},"fingerprint":"f%d"}`, i)
	}
	many.WriteString(`]}`)
	if res := post(t, ts, "alertmanager", "am", hmacSecret, many.Bytes()); res.status != http.StatusRequestEntityTooLarge ||
		!strings.Contains(res.body, "alerts") {
		t.Errorf("%d alerts: %d %s, want 413 naming alerts", revoke.MaxAlerts+1, res.status, res.body)
	}
	l, err := ts.client.Logical().List("sys/events/revocations")
	if err != nil {
		t.Fatal(err)
	}
	if l != nil && len(toStrings(l.Data["keys"])) != 0 {
		t.Fatalf("refused deliveries created revocations: %v", l.Data["keys"])
	}
	refused := 0
	for _, e := range readEntries(t, file) {
		r, _ := e["request"].(map[string]any)
		if r != nil && r["path"] == "sys/events/alertmanager" && strings.Contains(fmt.Sprint(e["error"]), "not authenticated") {
			refused++
		}
	}
	if refused != 4 {
		t.Fatalf("%d audited 401 refusals, want 4", refused)
	}
}

// A flood is answered 429 with Retry-After; once the sender retries, every
// distinct event is processed, each once.
func TestEventIntakeRateLimit(t *testing.T) {
	ts := startServer(t, true)
	hmacSource(t, ts.client, "gen", map[string]any{"per_second": 2, "burst": 2}, "generic")
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Revocation struct {
				EventID string `json:"event_id"`
			} `json:"revocation"`
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		seen[b.Revocation.EventID]++
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	writeRule(t, ts.client, "notify-all", `true`, action("notify", "url", hook.URL))
	limited := 0
	for i := range 6 {
		body := fmt.Appendf(nil, `{"id":"e%d"}`, i)
		for {
			res := post(t, ts, "generic", "gen", hmacSecret, body)
			if res.status == http.StatusTooManyRequests {
				limited++
				secs, err := strconv.Atoi(res.header.Get("Retry-After"))
				if err != nil || secs < 1 {
					t.Fatalf("429 without Retry-After: %v", res.header)
				}
				time.Sleep(time.Duration(secs) * time.Second)
				continue
			}
			if res.status != http.StatusAccepted || res.data.Accepted != 1 {
				t.Fatalf("event %d: %d %s", i, res.status, res.body)
			}
			break
		}
	}
	if limited == 0 {
		t.Fatal("six events at once were never rate limited (burst 2)")
	}
	// A duplicate is processed once, whatever the rate.
	if res := post(t, ts, "generic", "gen", hmacSecret, []byte(`{"id":"e0"}`)); res.status != http.StatusOK || res.data.Duplicates != 1 {
		t.Fatalf("duplicate: %d %s", res.status, res.body)
	}
	// Alertmanager retries only 5xx: its endpoint answers 503 instead.
	hmacSource(t, ts.client, "am", map[string]any{"per_second": 1, "burst": 1}, "alertmanager")
	if res := post(t, ts, "alertmanager", "am", hmacSecret, amFixture(t)); res.status != http.StatusAccepted {
		t.Fatalf("first Alertmanager delivery: %d %s", res.status, res.body)
	}
	other := bytes.ReplaceAll(amFixture(t), []byte(`"fingerprint": "`), []byte(`"fingerprint": "x`))
	res := post(t, ts, "alertmanager", "am", hmacSecret, other)
	if secs, err := strconv.Atoi(res.header.Get("Retry-After")); res.status != http.StatusServiceUnavailable || err != nil || secs < 1 {
		t.Fatalf("Alertmanager over its rate: %d (Retry-After %q) %s, want 503 with Retry-After", res.status, res.header.Get("Retry-After"), res.body)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range 6 {
		if n := seen[fmt.Sprintf("e%d", i)]; n != 1 {
			t.Errorf("event e%d notified %d times, want 1", i, n)
		}
	}
}

// A rule whose CEL fails at run time is reported; the other rules still run.
func TestEventRuleRuntimeErrorDoesNotBlockOthers(t *testing.T) {
	ts := startServer(t, true)
	ts.createZone(t, "edge-1")
	hmacSource(t, ts.client, "gen", nil, "generic")
	writeRule(t, ts.client, "a-broken", `event.labels.missing == "x"`, action("rotate_zone_key", "zone", "edge-1"))
	writeRule(t, ts.client, "b-works", `event.labels.kind == "leak"`, action("rotate_zone_key", "zone", "edge-1"))
	activeVersion := func() string {
		t.Helper()
		ks, err := ts.client.Logical().Read("sys/zones/edge-1/key-status")
		if err != nil || ks == nil {
			t.Fatalf("key-status: %v", err)
		}
		return fmt.Sprint(ks.Data["active_version"])
	}
	before := activeVersion()
	res := post(t, ts, "generic", "gen", hmacSecret, []byte(`{"id":"leak-1","labels":{"kind":"leak"}}`))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 || len(res.data.RuleErrors) != 1 ||
		!strings.Contains(res.data.RuleErrors[0], "a-broken") {
		t.Fatalf("intake: %d %s", res.status, res.body)
	}
	st := revocationStatus(t, ts.client, res.data.Revocations[0])
	if st["rule"] != "b-works" || st["error"] != nil && st["error"] != "" {
		t.Fatalf("status %v", st)
	}
	if after := activeVersion(); after == before {
		t.Fatalf("zone key not rotated: active_version %s before and after", after)
	}
	// A webhook that fails is recorded and does not make the event fail.
	writeRule(t, ts.client, "c-notify", `event.labels.kind == "leak"`, action("notify", "url", "http://127.0.0.1:1/hook"))
	res = post(t, ts, "generic", "gen", hmacSecret, []byte(`{"id":"leak-2","labels":{"kind":"leak"}}`))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 2 || len(res.data.ActionErrors) != 1 {
		t.Fatalf("intake with a failing webhook: %d %s", res.status, res.body)
	}
}

// quarantine_agent: the agent receives a purge addressed to it, then its
// streams and requests are refused.
func TestEventQuarantineAgent(t *testing.T) {
	ts := startServer(t, true)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	sa := follow(t, ag, 0)
	waitUntil(t, 10*time.Second, "the agent connected", sa.connected)
	hmacSource(t, ts.client, "am", nil, "alertmanager")
	writeRule(t, ts.client, "q", `event.labels.agent_id == "agent-0042"`,
		action("quarantine_agent", "zone", "{{labels.zone}}", "agent_id", "{{labels.agent_id}}"))
	res := post(t, ts, "alertmanager", "am", hmacSecret, amFixture(t))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 {
		t.Fatalf("intake: %d %s", res.status, res.body)
	}
	id := res.data.Revocations[0]
	waitUntil(t, 10*time.Second, "the targeted purge", func() bool { _, _, ok := sa.revocation(id); return ok })
	ev, meta, _ := sa.revocation(id)
	if ev.Path != "" || meta["agent_id"] != "agent-0042" || meta["action"] != "quarantine_agent" {
		t.Fatalf("event %+v %v", ev, meta)
	}
	waitUntil(t, 10*time.Second, "applied", func() bool { return agentStatus(revocationStatus(t, ts.client, id), "agent-0042") == "applied" })
	waitUntil(t, 10*time.Second, "the stream closed", func() bool { return !sa.connected() })
	a, err := ag.zone.Logical().Read("sys/agents/agent-0042")
	if err != nil {
		t.Fatal(err)
	}
	if a.Data["status"] != "quarantined" || !strings.Contains(fmt.Sprint(a.Data["status_reason"]), id) {
		t.Fatalf("agent %v", a.Data)
	}
	// Its next request is refused: a new stream, and a renewal.
	resp, err := ag.http.Post(ag.url+syncproto.Path, syncproto.ContentType, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("quarantined agent's stream: %d", resp.StatusCode)
	}
	_, pub := newAgentKey(t)
	body, _ := json.Marshal(map[string]any{"public_key": pub})
	req, _ := http.NewRequest(http.MethodPost, ag.url+"/v1/auth/attest/renew", bytes.NewReader(body))
	req.Header.Set("X-Vault-Namespace", "edge-eu")
	resp, err = ag.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), "quarantined") {
		t.Fatalf("quarantined agent's renewal: %d %s", resp.StatusCode, msg)
	}
}

// seal_zone: the agents are purged first, then the zone answers 503 and
// refuses its agents until an operator unseals it; the seal survives a
// restart.
func TestEventSealZone(t *testing.T) {
	ts := startServer(t, true)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	sa := follow(t, ag, 0)
	waitUntil(t, 10*time.Second, "the agent connected", sa.connected)
	hmacSource(t, ts.client, "gen", nil, "generic")
	writeRule(t, ts.client, "seal", `event.labels.severity == "page"`, action("seal_zone", "zone", "{{labels.zone}}"))
	res := post(t, ts, "generic", "gen", hmacSecret, []byte(`{"id":"breach","labels":{"severity":"page","zone":"edge-eu"}}`))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 {
		t.Fatalf("intake: %d %s", res.status, res.body)
	}
	id := res.data.Revocations[0]
	waitUntil(t, 10*time.Second, "the zone-wide purge", func() bool { ev, _, ok := sa.revocation(id); return ok && ev.Path == "" })
	_, err := ag.zone.KVv2("secret").Get(t.Context(), "anything")
	if statusOf(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "sealed by revocation "+id) ||
		!strings.Contains(err.Error(), "sys/zones/edge-eu/unseal-events") {
		t.Fatalf("request to the sealed zone: %v", err)
	}
	waitUntil(t, 10*time.Second, "the stream closed", func() bool { return !sa.connected() })
	resp, err := ag.http.Post(ag.url+syncproto.Path, syncproto.ContentType, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("a sealed zone's agent opened a stream")
	}
	// The root zone still serves; a restart keeps the seal.
	restart(t, ts)
	z := ts.newClient(t, ag.zone.Token())
	z.SetNamespace("edge-eu")
	if _, err := z.KVv2("secret").Get(t.Context(), "anything"); statusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("sealed zone after restart: %v", err)
	}
	if _, err := ts.client.Logical().Write("sys/zones/edge-eu/unseal-events", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := z.KVv2("secret").Put(t.Context(), "after", map[string]any{"k": "v"}); err != nil {
		t.Fatalf("unsealed zone: %v", err)
	}
	if _, err := ts.client.Logical().Write("sys/zones/edge-eu/unseal-events", nil); statusOf(err) != 400 {
		t.Fatalf("unsealing an unsealed zone: %v", err)
	}
}

// An agent offline when the revocation is published shows "offline"; once
// it reconnects it applies it (a resync) and shows "applied".
func TestEventOfflineAgentAppliesOnReconnect(t *testing.T) {
	ts := startServer(t, true)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	on := enrolled(t, ts, "edge-eu-2", "other") // another zone: not a target
	_ = on
	hmacSource(t, ts.client, "gen", nil, "generic")
	writeRule(t, ts.client, "rp", `true`, action("revoke_prefix", "zone", "edge-eu", "prefix", "database/creds/app"))
	res := post(t, ts, "generic", "gen", hmacSecret, []byte(`{"id":"leak"}`))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 {
		t.Fatalf("intake: %d %s", res.status, res.body)
	}
	id := res.data.Revocations[0]
	st := revocationStatus(t, ts.client, id)
	if agentStatus(st, "agent-0042") != "offline" || st["complete"] != false {
		t.Fatalf("status before reconnect: %v", st)
	}
	if agents := st["agents"].(map[string]any); len(agents) != 1 {
		t.Fatalf("targets %v, want agent-0042 alone", agents)
	}
	sa := follow(t, ag, 0)
	waitUntil(t, 10*time.Second, "applied after reconnect", func() bool {
		return agentStatus(revocationStatus(t, ts.client, id), "agent-0042") == "applied"
	})
	if !sa.connected() {
		t.Fatal("the agent is not connected")
	}
	if st := revocationStatus(t, ts.client, id); st["complete"] != true || st["completed_at"] == nil {
		t.Fatalf("status after reconnect: %v", st)
	}
}

// refront serves the (restarted) server to an agent on a new TLS front.
func refront(t *testing.T, ts *testServer, ag testAgent) testAgent {
	t.Helper()
	srv := httptest.NewUnstartedServer(ts.srv.Handler())
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	cfg := ag.tls.Clone()
	cfg.RootCAs = roots
	ag.tls, ag.url = cfg, srv.URL
	ag.http = &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: cfg.Clone()}}
	return ag
}

// A server restarted while a revocation waits for an agent resumes it: the
// agent reconnecting to the new process is resynced (its cache purged) and
// its ack completes the revocation, which the log then records.
func TestEventRevocationResumesAfterRestart(t *testing.T) {
	ts := startServer(t, true)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	hmacSource(t, ts.client, "gen", nil, "generic")
	writeRule(t, ts.client, "rp", `true`, action("revoke_prefix", "zone", "edge-eu", "prefix", "secret/app"))
	res := post(t, ts, "generic", "gen", hmacSecret, []byte(`{"id":"leak"}`))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 {
		t.Fatalf("intake: %d %s", res.status, res.body)
	}
	id := res.data.Revocations[0]
	if st := revocationStatus(t, ts.client, id); agentStatus(st, "agent-0042") != "offline" {
		t.Fatalf("before restart: %v", st)
	}
	restart(t, ts)
	if st := revocationStatus(t, ts.client, id); agentStatus(st, "agent-0042") != "offline" || st["complete"] != false {
		t.Fatalf("after restart: %v", st)
	}
	ag = refront(t, ts, ag)
	follow(t, ag, 0)
	waitUntil(t, 10*time.Second, "applied after the restart", func() bool {
		st := revocationStatus(t, ts.client, id)
		return agentStatus(st, "agent-0042") == "applied" && st["completed_at"] != nil
	})
	// The same event is still a duplicate for the new process.
	if res := post(t, ts, "generic", "gen", hmacSecret, []byte(`{"id":"leak"}`)); res.status != http.StatusOK || res.data.Duplicates != 1 {
		t.Fatalf("duplicate after restart: %d %s", res.status, res.body)
	}
}

// A CloudEvent from an EDR (the revoke package's fixture, bearer token)
// fires revoke_agent: the agent receives a wipe addressed to it, is revoked
// in the registry, its stream is closed, and the offline sub-CA it obtained
// is revoked on the zone's pki mount. A revoke_token_accessor in the same
// rule revokes the token.
func TestEventCloudEventRevokeAgent(t *testing.T) {
	ts := startServer(t, true)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	z := ag.zone
	if err := z.Sys().Mount("pki", &vault.MountInput{Type: "pki"}); err != nil {
		t.Fatal(err)
	}
	if _, err := z.Logical().Write("pki/root/generate/internal", map[string]any{"common_name": "Edge Root", "key_type": "ec", "ttl": "720h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := z.Logical().Write("pki/roles/web", map[string]any{"allowed_domains": "edge.example", "allow_subdomains": true,
		"key_type": "ec", "max_ttl": "1h", "allow_offline_sub_ca": true, "offline_sub_ca_ttl": "6h"}); err != nil {
		t.Fatal(err)
	}
	subKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&subKey.PublicKey)
	body, _ := json.Marshal(map[string]any{"mount": "pki", "role": "web",
		"public_key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
	req, _ := http.NewRequest(http.MethodPost, ag.url+"/v1/sys/agents/pki-sub-ca", bytes.NewReader(body))
	req.Header.Set("X-Vault-Namespace", "edge-eu")
	resp, err := ag.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sub struct {
		Data struct {
			Serial string `json:"serial_number"`
		} `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&sub)
	resp.Body.Close()
	if resp.StatusCode != 200 || sub.Data.Serial == "" {
		t.Fatalf("sub-CA: %d %+v", resp.StatusCode, sub)
	}
	victim, err := ts.client.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	sa := follow(t, ag, 0)
	waitUntil(t, 10*time.Second, "the agent connected", sa.connected)

	if _, err := ts.client.Logical().Write("sys/events/sources/edr", map[string]any{"kinds": []string{"cloudevents"},
		"auth": map[string]any{"method": "bearer"}, "secret": "edr-bearer-token-0123456789"}); err != nil {
		t.Fatal(err)
	}
	writeRule(t, ts.client, "edr", `event.labels.type == "com.example.edr.compromise" && event.data.verdict == "malicious"`,
		action("revoke_agent", "zone", "{{labels.zone}}", "agent_id", "{{data.agent_id}}"),
		action("revoke_token_accessor", "accessor", victim.Auth.Accessor))
	ce, err := os.ReadFile(filepath.Join("..", "revoke", "testdata", "cloudevent.json"))
	if err != nil {
		t.Fatal(err)
	}
	// A CloudEvent must come as application/cloudevents+json.
	if res := post(t, ts, "cloudevents", "edr", "", ce, "Authorization", "Bearer edr-bearer-token-0123456789"); res.status != http.StatusUnsupportedMediaType {
		t.Fatalf("CloudEvent as application/json: %d %s", res.status, res.body)
	}
	res := post(t, ts, "cloudevents", "edr", "", ce, "Authorization", "Bearer edr-bearer-token-0123456789",
		"Content-Type", revoke.CloudEventsMediaType)
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 2 || len(res.data.ActionErrors) != 0 {
		t.Fatalf("intake: %d %s", res.status, res.body)
	}
	id := res.data.Revocations[0]
	waitUntil(t, 10*time.Second, "the wipe", func() bool { _, _, ok := sa.revocation(id); return ok })
	if ev, meta, _ := sa.revocation(id); ev.Path != "" || meta["agent_id"] != "agent-0042" || meta["action"] != "revoke_agent" {
		t.Fatalf("wipe %+v %v", ev, meta)
	}
	waitUntil(t, 10*time.Second, "the stream closed", func() bool { return !sa.connected() })
	a, err := z.Logical().Read("sys/agents/agent-0042")
	if err != nil || a.Data["status"] != "revoked" {
		t.Fatalf("agent after revoke_agent: %v %v", a, err)
	}
	cert, err := z.Logical().Read("pki/cert/" + sub.Data.Serial)
	if err != nil || fmt.Sprint(cert.Data["revocation_time"]) == "0" {
		t.Fatalf("the agent's sub-CA is not revoked: %v %v", cert, err)
	}
	st := revocationStatus(t, ts.client, id)
	if notes := fmt.Sprint(st["notes"]); !strings.Contains(notes, "sub-CA revoked: pki/"+strings.ReplaceAll(sub.Data.Serial, ":", "-")) {
		t.Fatalf("notes %s", notes)
	}
	if _, err := ts.newClient(t, victim.Auth.ClientToken).Auth().Token().LookupSelf(); statusOf(err) != 403 {
		t.Fatalf("the token survived revoke_token_accessor: %v", err)
	}
}

// blockingHook is a webhook that holds every request until released, and
// counts them by path.
type blockingHook struct {
	srv     *httptest.Server
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	paths   []string
}

func newBlockingHook(t *testing.T) *blockingHook {
	h := &blockingHook{entered: make(chan struct{}, 16), release: make(chan struct{})}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.paths = append(h.paths, r.URL.Path)
		h.mu.Unlock()
		h.entered <- struct{}{}
		<-h.release
	}))
	t.Cleanup(func() { h.open(); h.srv.Close() })
	return h
}

// open lets every request, held or future, through.
func (h *blockingHook) open() { h.once.Do(func() { close(h.release) }) }

func (h *blockingHook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.paths)
}

// postAsync posts like post, from another goroutine, reporting the status.
func postAsync(ts *testServer, kind, src string, body []byte) <-chan int {
	out := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, ts.addr+"/v1/sys/events/"+kind+"?source="+src, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(revoke.DefaultSignatureHeader, revoke.Sign([]byte(hmacSecret), "", body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- 0
			return
		}
		resp.Body.Close()
		out <- resp.StatusCode
	}()
	return out
}

// stuckInNotify posts a generic event with id whose rule notifies a webhook
// that hangs until hook.open; it returns once the action is running, with
// the body sent and the channel of the delivery's status.
func stuckInNotify(t *testing.T, ts *testServer, id string) (hook *blockingHook, body []byte, first <-chan int) {
	t.Helper()
	hmacSource(t, ts.client, "gen", nil, "generic")
	hook = newBlockingHook(t)
	writeRule(t, ts.client, "n", `true`, action("notify", "url", hook.srv.URL))
	body = fmt.Appendf(nil, `{"id":%q}`, id)
	first = postAsync(ts, "generic", "gen", body)
	<-hook.entered
	return hook, body, first
}

// An event being processed by another request is not a duplicate yet: the
// second delivery is answered 503 with Retry-After (the first may still
// fail and release it); once the first committed, it is a duplicate (200).
func TestEventInFlightDuplicateRetries(t *testing.T) {
	ts := startServer(t, true)
	hook, body, first := stuckInNotify(t, ts, "slow")
	res := post(t, ts, "generic", "gen", hmacSecret, body)
	if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" {
		t.Fatalf("delivery while in flight: %d (Retry-After %q) %s, want 503 with Retry-After", res.status, res.header.Get("Retry-After"), res.body)
	}
	hook.open()
	if code := <-first; code != http.StatusAccepted {
		t.Fatalf("first delivery: %d", code)
	}
	if res := post(t, ts, "generic", "gen", hmacSecret, body); res.status != http.StatusOK || res.data.Duplicates != 1 {
		t.Fatalf("delivery after the commit: %d %s", res.status, res.body)
	}
	if n := hook.count(); n != 1 {
		t.Fatalf("webhook called %d times, want 1", n)
	}
}

// An action failing permanently (the agent does not exist) is reported in
// action_errors with 202 and the event recorded as processed: a redelivery
// is a duplicate and does not re-run the actions that worked.
func TestEventPermanentActionErrorNotRetried(t *testing.T) {
	ts := startServer(t, true)
	ts.createZone(t, "edge-eu")
	hmacSource(t, ts.client, "gen", nil, "generic")
	var (
		mu    sync.Mutex
		calls int
	)
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { mu.Lock(); calls++; mu.Unlock() }))
	t.Cleanup(hook.Close)
	writeRule(t, ts.client, "q", `true`, action("quarantine_agent", "zone", "edge-eu", "agent_id", "ghost"),
		action("notify", "url", hook.URL))
	body := []byte(`{"id":"ghost-1"}`)
	res := post(t, ts, "generic", "gen", hmacSecret, body)
	if res.status != http.StatusAccepted || len(res.data.ActionErrors) != 1 || !strings.Contains(res.data.ActionErrors[0], "ghost") {
		t.Fatalf("intake: %d %s, want 202 with the action error", res.status, res.body)
	}
	st := revocationStatus(t, ts.client, res.data.Revocations[0])
	if st["error"] == nil || !strings.Contains(fmt.Sprint(st["notes"]), "permanent error") {
		t.Fatalf("the failed entry: %v", st)
	}
	again := post(t, ts, "generic", "gen", hmacSecret, body)
	if again.status != http.StatusOK || again.data.Duplicates != 1 || len(again.data.Revocations) != 0 {
		t.Fatalf("redelivery: %d %s, want a duplicate", again.status, again.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Fatalf("notify ran %d times, want 1", calls)
	}
}

// A server that stops in the middle of an action (here: the storage as it
// was while a webhook hung, started again) marks the entry interrupted at
// unseal. The event was not acknowledged to its sender and its dedupe
// record was never written, so the sender's retry runs it again.
func TestEventInterruptedByRestart(t *testing.T) {
	ts := startServer(t, true)
	hook, body, first := stuckInNotify(t, ts, "cut")
	crash := inmem.New() // the storage as a crash now would leave it
	for k, v := range ts.snapshot(t) {
		if err := crash.Put(context.Background(), k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	hook.open()
	<-first
	ts.phys = crash
	restart(t, ts)
	l, err := ts.client.Logical().List("sys/events/revocations")
	if err != nil || l == nil {
		t.Fatalf("list: %v", err)
	}
	keys := toStrings(l.Data["keys"])
	if len(keys) != 1 {
		t.Fatalf("revocations %v, want the cut one", keys)
	}
	waitUntil(t, 10*time.Second, "the entry marked interrupted", func() bool {
		return revocationStatus(t, ts.client, keys[0])["state"] == "interrupted"
	})
	st := revocationStatus(t, ts.client, keys[0])
	if st["interrupted_at"] == nil || !strings.Contains(fmt.Sprint(st["notes"]), "not acknowledged to its sender") {
		t.Fatalf("interrupted entry: %v", st)
	}
	// The sender retries: the event is new to the restarted server.
	res := post(t, ts, "generic", "gen", hmacSecret, body)
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 || res.data.Revocations[0] == keys[0] {
		t.Fatalf("retry after the restart: %d %s", res.status, res.body)
	}
	if st := revocationStatus(t, ts.client, res.data.Revocations[0]); st["state"] != "complete" {
		t.Fatalf("the retried revocation: %v", st)
	}
}

// enrollSibling enrolls another agent in ag's zone (registry only: it never
// connects) and returns its ID.
func enrollSibling(t *testing.T, ts *testServer, ag testAgent, zone, id string) {
	t.Helper()
	jt, err := ag.zone.Logical().Write("auth/attest/join-token", map[string]any{"agent_id": id})
	if err != nil {
		t.Fatal(err)
	}
	_, pub := newAgentKey(t)
	anon := ts.newClient(t, "")
	anon.SetNamespace(zone)
	if _, err := anon.Logical().Write("auth/attest/enroll", map[string]any{"join_token": jt.Data["join_token"], "public_key": pub}); err != nil {
		t.Fatal(err)
	}
}

// A quarantined agent is refused the stream and cannot ack: it is not
// waited for. It shows as refused, and the revocation completes once the
// connected agent applied it.
func TestEventRefusedAgentsNotAwaited(t *testing.T) {
	ts := startServer(t, true)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	enrollSibling(t, ts, ag, "edge-eu", "agent-0099")
	if _, err := ag.zone.Logical().Write("sys/agents/agent-0099/quarantine", map[string]any{"reason": "test"}); err != nil {
		t.Fatal(err)
	}
	sa := follow(t, ag, 0)
	waitUntil(t, 10*time.Second, "the agent connected", sa.connected)
	hmacSource(t, ts.client, "gen", nil, "generic")
	writeRule(t, ts.client, "rp", `true`, action("revoke_prefix", "zone", "edge-eu", "prefix", "secret/app"))
	res := post(t, ts, "generic", "gen", hmacSecret, []byte(`{"id":"leak"}`))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 {
		t.Fatalf("intake: %d %s", res.status, res.body)
	}
	id := res.data.Revocations[0]
	waitUntil(t, 10*time.Second, "complete", func() bool { return revocationStatus(t, ts.client, id)["complete"] == true })
	st := revocationStatus(t, ts.client, id)
	agents, _ := st["agents"].(map[string]any)
	refused, _ := agents["agent-0099"].(map[string]any)
	if agentStatus(st, "agent-0042") != "applied" || refused["status"] != "refused" ||
		!strings.Contains(fmt.Sprint(refused["note"]), "will not apply until released") || st["state"] != "complete" {
		t.Fatalf("status %v", st)
	}
}

// A notify URL carries its secret in the path (Slack, Discord): only the
// outbound call uses it; the log, the status, the list and the dry run show
// scheme and host.
func TestEventNotifyURLRedacted(t *testing.T) {
	ts := startServer(t, true)
	hmacSource(t, ts.client, "gen", nil, "generic")
	var (
		mu    sync.Mutex
		paths []string
	)
	hook := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	const secret = "T0000/B0000/XXXXSECRETXXXX"
	writeRule(t, ts.client, "n", `true`, action("notify", "url", hook.URL+"/services/"+secret))
	res := post(t, ts, "generic", "gen", hmacSecret, []byte(`{"id":"e1"}`))
	if res.status != http.StatusAccepted || len(res.data.Revocations) != 1 {
		t.Fatalf("intake: %d %s", res.status, res.body)
	}
	mu.Lock()
	if len(paths) != 1 || paths[0] != "/services/"+secret {
		t.Fatalf("the webhook got %v", paths)
	}
	mu.Unlock()
	st, _ := json.Marshal(revocationStatus(t, ts.client, res.data.Revocations[0]))
	l, _ := ts.client.Logical().List("sys/events/revocations")
	list, _ := json.Marshal(l.Data)
	dry, err := ts.client.Logical().Write("sys/events/rules/n/test", map[string]any{"event": map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	dj, _ := json.Marshal(dry.Data)
	for name, out := range map[string]string{"status": string(st), "list": string(list), "dry run": string(dj)} {
		if strings.Contains(out, "SECRET") {
			t.Errorf("the %s shows the webhook secret: %s", name, out)
		}
	}
	if !strings.Contains(string(st), strings.TrimPrefix(hook.URL, "http://")) {
		t.Errorf("the status does not name the webhook host: %s", st)
	}
}

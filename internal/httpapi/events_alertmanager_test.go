package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The end-to-end test in this file runs the real Prometheus Alertmanager
// (Debian's prometheus-alertmanager, 0.25) as a separate process with its
// webhook receiver pointed at an in-process server, so the intake is
// exercised with exactly what Alertmanager sends: its payload, its
// Authorization header, its grouping, its resolved notifications and its
// reaction to refusals.

// amEnvRequire names the environment variable that turns "Alertmanager is
// not installed" from a skip into a failure (scripts/test sets it).
const amEnvRequire = "EDGEVAULT_REQUIRE_ALERTMANAGER"

// amBearer is the bearer token of the test's Alertmanager source.
const amBearer = "am-bearer-token-0123456789abcdef"

// alertmanagerBinary returns the Alertmanager executable, or skips the test
// (fails it when EDGEVAULT_REQUIRE_ALERTMANAGER=1).
func alertmanagerBinary(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"prometheus-alertmanager", "alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(amEnvRequire) == "1" {
		t.Fatalf("Alertmanager (prometheus-alertmanager) not found on PATH and %s=1", amEnvRequire)
	}
	t.Skipf("Alertmanager not installed (apt-get install prometheus-alertmanager); set %s=1 to fail instead", amEnvRequire)
	return ""
}

// amDelivery is one webhook request Alertmanager made and the server's
// answer to it.
type amDelivery struct {
	path   string // path and query
	header http.Header
	body   []byte
	status int
	at     time.Time // when the answer was written
}

// deliveryRecorder serves the edgevault handler and remembers every
// request made to it with the status it was answered.
type deliveryRecorder struct {
	next http.Handler
	mu   sync.Mutex
	got  []amDelivery
}

// statusWriter remembers the status written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (d *deliveryRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	sw := &statusWriter{ResponseWriter: w}
	d.next.ServeHTTP(sw, r)
	d.mu.Lock()
	d.got = append(d.got, amDelivery{path: r.URL.RequestURI(), header: r.Header.Clone(), body: body, status: sw.status, at: time.Now()})
	d.mu.Unlock()
}

// deliveries returns the requests recorded so far whose query names source.
func (d *deliveryRecorder) deliveries(source string) []amDelivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []amDelivery
	for _, g := range d.got {
		if strings.HasSuffix(g.path, "?source="+source) {
			out = append(out, g)
		}
	}
	return out
}

// amWebhook is the part of the webhook payload the test reads.
type amWebhook struct {
	Version  string `json:"version"`
	Status   string `json:"status"`
	Receiver string `json:"receiver"`
	Alerts   []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		StartsAt    string            `json:"startsAt"`
		EndsAt      string            `json:"endsAt"`
		Fingerprint string            `json:"fingerprint"`
	} `json:"alerts"`
}

// alertmanager is a running Alertmanager process.
type alertmanager struct {
	url string // http://127.0.0.1:<port>
	log *bytes.Buffer
	mu  *sync.Mutex // guards log
}

// logText returns what the process wrote so far.
func (am alertmanager) logText() string {
	am.mu.Lock()
	defer am.mu.Unlock()
	return am.log.String()
}

// lockedWriter serialises writes to a buffer shared by stdout and stderr.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// startAlertmanager writes config to a temporary directory and runs bin on
// a free loopback port without clustering, until it reports ready. The
// process is killed at the test's cleanup.
func startAlertmanager(t *testing.T, bin, config string) alertmanager {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	am := alertmanager{url: "http://" + addr, log: &bytes.Buffer{}, mu: &sync.Mutex{}}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=debug")
	cmd.Stdout, cmd.Stderr = lockedWriter{am.mu, am.log}, lockedWriter{am.mu, am.log}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("alertmanager log:\n%s", am.logText())
		}
	})
	for end := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("alertmanager exited before it was ready:\n%s", am.logText())
		default:
		}
		if resp, err := http.Get(am.url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return am
			}
		}
		if time.Now().After(end) {
			t.Fatalf("alertmanager not ready after 15s:\n%s", am.logText())
		}
	}
}

// postAlerts posts alerts to Alertmanager's API v2.
func (am alertmanager) postAlerts(t *testing.T, alerts ...map[string]any) {
	t.Helper()
	body, _ := json.Marshal(alerts)
	resp, err := http.Post(am.url+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v2/alerts: %d %s", resp.StatusCode, msg)
	}
}

// metric returns the sum of the samples of a Prometheus text exposition
// whose name and labels start with prefix ("name{a=\"b\"" or "name").
func metric(exposition, prefix string) float64 {
	sum := 0.0
	for _, l := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(l, prefix) || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// A real Alertmanager, its webhook pointed at the server with a bearer
// source, delivers a firing alert: the rule's revoke_prefix revokes the
// zone's lease and the connected agent applies the revocation. The alert,
// resolved through Alertmanager, arrives as a resolved event and runs the
// rule's recovery (a notify). A receiver configured with a wrong bearer
// token gets 401s (audited, counted) and causes nothing.
func TestEventsRealAlertmanager(t *testing.T) {
	bin := alertmanagerBinary(t)
	ts, file, _ := auditedServer(t)
	ag := enrolled(t, ts, "edge-eu", "agent-0042")
	setupPKI(t, ag.zone)
	issued, err := ag.zone.Logical().Write("pki/issue/web", map[string]any{"common_name": "a.edge.example"})
	if err != nil {
		t.Fatal(err)
	}
	lease := issued.LeaseID
	sa := follow(t, ag, 0)
	waitUntil(t, 10*time.Second, "the agent connected", sa.connected)

	var (
		hookMu sync.Mutex
		hooks  []map[string]any
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		_ = json.NewDecoder(r.Body).Decode(&b)
		hookMu.Lock()
		hooks = append(hooks, b)
		hookMu.Unlock()
	}))
	t.Cleanup(hook.Close)
	if _, err := ts.client.Logical().Write("sys/events/sources/am", map[string]any{"kinds": []string{"alertmanager"},
		"auth": map[string]any{"method": "bearer"}, "secret": amBearer}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.client.Logical().Write("sys/events/rules/tamper", map[string]any{
		"expression":  `event.labels.alertname == "AgentTamperDetected"`,
		"actions":     []any{action("revoke_prefix", "zone", "{{labels.zone}}", "prefix", "pki/issue/web")},
		"on_resolved": []any{action("notify", "url", hook.URL, "message", "recovered {{labels.agent_id}}")},
	}); err != nil {
		t.Fatal(err)
	}

	// Alertmanager reaches the server through a recorder on its own
	// listener, so the test can see what it sent and what it was answered.
	rec := &deliveryRecorder{next: ts.srv.Handler()}
	front := httptest.NewServer(rec)
	t.Cleanup(front.Close)
	am := startAlertmanager(t, bin, fmt.Sprintf(`route:
  receiver: edgevault
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - receiver: wrong-credential
      matchers: ['case="wrong-credential"']
receivers:
  - name: edgevault
    webhook_configs:
      - url: "%[1]s/v1/sys/events/alertmanager?source=am"
        send_resolved: true
        http_config:
          authorization: {type: Bearer, credentials: %[2]q}
  - name: wrong-credential
    webhook_configs:
      - url: "%[1]s/v1/sys/events/alertmanager?source=am-wrong"
        send_resolved: true
        http_config:
          authorization: {type: Bearer, credentials: "not-the-source-token-0123456789"}
`, front.URL, amBearer))
	// The wrong-credential receiver posts to a source of its own name that
	// has the right token configured, so only the credential differs.
	if _, err := ts.client.Logical().Write("sys/events/sources/am-wrong", map[string]any{"kinds": []string{"alertmanager"},
		"auth": map[string]any{"method": "bearer"}, "secret": amBearer}); err != nil {
		t.Fatal(err)
	}

	startsAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	tamper := map[string]any{
		"labels": map[string]string{"alertname": "AgentTamperDetected", "agent_id": "agent-0042", "zone": "edge-eu",
			"severity": "critical", "instance": "edge-eu-7:9100"},
		"annotations":  map[string]string{"summary": "Secure boot state changed on edge-eu-7"},
		"startsAt":     startsAt.Format(time.RFC3339Nano),
		"generatorURL": "http://prometheus.example.internal:9090/graph?g0.expr=edge_tpm_pcr_changed+%3E+0",
	}
	wrong := map[string]any{
		"labels": map[string]string{"alertname": "AgentTamperDetected", "agent_id": "agent-0042", "zone": "edge-eu",
			"case": "wrong-credential"},
		"startsAt": startsAt.Format(time.RFC3339Nano),
	}
	posted := time.Now()
	am.postAlerts(t, tamper, wrong)

	// Firing: the lease is revoked and the agent applies the revocation.
	var rid string
	waitUntil(t, 10*time.Second, "a revocation in the log", func() bool {
		l, err := ts.client.Logical().List("sys/events/revocations")
		if err != nil || l == nil {
			return false
		}
		if keys := toStrings(l.Data["keys"]); len(keys) > 0 {
			rid = keys[len(keys)-1]
			return true
		}
		return false
	})
	waitUntil(t, 10*time.Second, "the agent applied "+rid, func() bool {
		return agentStatus(revocationStatus(t, ts.client, rid), "agent-0042") == "applied"
	})
	t.Logf("alert posted to Alertmanager → revocation applied by the agent: %v", time.Since(posted).Round(time.Millisecond))
	st := revocationStatus(t, ts.client, rid)
	if st["action"] != "revoke_prefix" || st["source"] != "am" || st["rule"] != "tamper" || st["zone"] != "edge-eu" ||
		st["complete"] != true {
		t.Fatalf("revocation %s: %v", rid, st)
	}
	if !leaseGone(ag.zone, lease) {
		t.Fatal("the lease under the prefix survived the alert")
	}
	if ev, meta, ok := sa.revocation(rid); !ok || ev.Path != "pki/issue/web" || meta["action"] != "revoke_prefix" {
		t.Fatalf("the agent's revoke event: %+v %v %v", ev, meta, ok)
	}
	firing := rec.deliveries("am")
	if len(firing) == 0 || firing[0].status != http.StatusAccepted {
		t.Fatalf("first delivery: %+v", firing)
	}
	var first amWebhook
	if err := json.Unmarshal(firing[0].body, &first); err != nil {
		t.Fatalf("the webhook body: %v\n%s", err, firing[0].body)
	}
	if first.Version != "4" || first.Status != "firing" || first.Receiver != "edgevault" || len(first.Alerts) != 1 ||
		first.Alerts[0].Fingerprint == "" || first.Alerts[0].Labels["agent_id"] != "agent-0042" {
		t.Fatalf("the firing webhook: %s", firing[0].body)
	}
	fp := first.Alerts[0].Fingerprint
	if st["event_id"] != fp {
		t.Fatalf("revocation event_id %v, want the alert fingerprint %s", st["event_id"], fp)
	}
	if h := firing[0].header; h.Get("Authorization") != "Bearer "+amBearer || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("webhook headers: Authorization set %v, Content-Type %q", h.Get("Authorization") != "", h.Get("Content-Type"))
	}
	t.Logf("Alertmanager's firing webhook (%s, %s):\n%s", firing[0].header.Get("User-Agent"), firing[0].header.Get("Content-Type"), firing[0].body)

	// Resolved through Alertmanager: the resolved alert arrives and runs the
	// recovery, once.
	resolved := map[string]any{}
	for k, v := range tamper {
		resolved[k] = v
	}
	resolved["endsAt"] = time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	am.postAlerts(t, resolved)
	waitUntil(t, 10*time.Second, "the recovery notify", func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		return len(hooks) > 0
	})
	hookMu.Lock()
	got := hooks[0]
	hookMu.Unlock()
	gotRv, _ := got["revocation"].(map[string]any)
	gotEv, _ := got["event"].(map[string]any)
	if got["message"] != "recovered agent-0042" || gotRv["recovery"] != true || gotRv["action"] != "notify" ||
		gotEv["status"] != "resolved" || gotEv["id"] != fp {
		t.Fatalf("recovery notify: %v", got)
	}
	var last amWebhook
	all := rec.deliveries("am")
	if err := json.Unmarshal(all[len(all)-1].body, &last); err != nil || last.Status != "resolved" ||
		len(last.Alerts) != 1 || last.Alerts[0].Fingerprint != fp || all[len(all)-1].status != http.StatusAccepted {
		t.Fatalf("the resolved webhook (%d): %v %s", all[len(all)-1].status, err, all[len(all)-1].body)
	}
	t.Logf("Alertmanager's resolved webhook:\n%s", all[len(all)-1].body)

	// The wrong credential: 401s, audited and counted, and nothing else.
	waitUntil(t, 10*time.Second, "a refused delivery with the wrong token", func() bool {
		return len(rec.deliveries("am-wrong")) > 0
	})
	for _, d := range rec.deliveries("am-wrong") {
		if d.status != http.StatusUnauthorized {
			t.Fatalf("delivery with the wrong token: %d %s", d.status, d.body)
		}
	}
	waitUntil(t, 10*time.Second, "Alertmanager counting the failed notification", func() bool {
		resp, err := http.Get(am.url + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return metric(string(b), `alertmanager_notifications_failed_total{integration="webhook"`) >= 1
	})
	code, metrics := ts.raw(t, "GET", "/v1/sys/metrics?format=prometheus", ts.root, nil)
	if code != 200 || metric(metrics, `edgevault_events_received_total{outcome="unauthenticated"`) < 1 ||
		metric(metrics, `edgevault_events_received_total{outcome="processed",source="am"}`) != 2 {
		t.Fatalf("metrics %d:\n%s", code, metrics)
	}
	refused := 0
	for _, e := range readEntries(t, file) {
		r, _ := e["request"].(map[string]any)
		if r != nil && r["path"] == "sys/events/alertmanager" && strings.Contains(fmt.Sprint(e["error"]), "wrong bearer token") {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("the refused deliveries are not audited")
	}

	// Every delivery to the right source was accepted or a duplicate, and
	// the log holds exactly the revocation and the recovery.
	for i, d := range rec.deliveries("am") {
		if d.status != http.StatusAccepted && d.status != http.StatusOK {
			t.Errorf("delivery %d: %d %s", i, d.status, d.body)
		}
	}
	l, err := ts.client.Logical().List("sys/events/revocations")
	if err != nil {
		t.Fatal(err)
	}
	if keys := toStrings(l.Data["keys"]); len(keys) != 2 {
		t.Fatalf("revocations %v, want the revoke_prefix and the recovery", keys)
	}
	out := am.logText()
	if regexp.MustCompile(`level=error.*err="edgevault/`).MatchString(out) {
		t.Fatalf("alertmanager reported errors for the edgevault receiver:\n%s", out)
	}
	if n := strings.Count(out, `receiver=edgevault integration=webhook[0] msg="Notify success"`); n < 2 {
		t.Fatalf("alertmanager logged %d successful notifications to edgevault, want the firing and the resolved one:\n%s", n, out)
	}
}

// A source over its rate answers Alertmanager 503 with Retry-After:
// Alertmanager 0.25 retries a 5xx within the notification (with its own
// backoff; it ignores Retry-After), so each alert is processed exactly once
// and well before the group's next flush. A 429 would not be retried until
// group_interval later, and a resolution in between would lose the firing.
func TestEventsRealAlertmanagerRateLimited(t *testing.T) {
	bin := alertmanagerBinary(t)
	ts := startServer(t, true)
	var (
		hookMu sync.Mutex
		seen   = map[string]int{}
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Labels map[string]string `json:"labels"`
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		hookMu.Lock()
		seen[b.Labels["alertname"]]++
		hookMu.Unlock()
	}))
	t.Cleanup(hook.Close)
	if _, err := ts.client.Logical().Write("sys/events/sources/am", map[string]any{"kinds": []string{"alertmanager"},
		"auth": map[string]any{"method": "bearer"}, "secret": amBearer,
		"rate_limit": map[string]any{"per_second": 1, "burst": 1}}); err != nil {
		t.Fatal(err)
	}
	writeRule(t, ts.client, "notify-all", `event.status == "firing"`, action("notify", "url", hook.URL))
	rec := &deliveryRecorder{next: ts.srv.Handler()}
	front := httptest.NewServer(rec)
	t.Cleanup(front.Close)
	// A group_interval far longer than the test: every delivery after the
	// first of a group is a retry within its notification.
	const groupInterval = 5 * time.Minute
	am := startAlertmanager(t, bin, fmt.Sprintf(`route:
  receiver: edgevault
  group_by: [alertname]
  group_wait: 0s
  group_interval: %s
  repeat_interval: 1h
receivers:
  - name: edgevault
    webhook_configs:
      - url: "%s/v1/sys/events/alertmanager?source=am"
        send_resolved: true
        http_config:
          authorization: {type: Bearer, credentials: %q}
`, groupInterval, front.URL, amBearer))
	names := []string{"LeakA", "LeakB", "LeakC"}
	var alerts []map[string]any
	for _, n := range names {
		alerts = append(alerts, map[string]any{"labels": map[string]string{"alertname": n}})
	}
	posted := time.Now()
	am.postAlerts(t, alerts...)
	waitUntil(t, 30*time.Second, "every alert notified", func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		return len(seen) == len(names)
	})
	t.Logf("three groups against a burst of 1: all processed after %v (group_interval %v)", time.Since(posted).Round(10*time.Millisecond), groupInterval)
	time.Sleep(200 * time.Millisecond) // a late extra notification would show now
	hookMu.Lock()
	for _, n := range names {
		if seen[n] != 1 {
			t.Errorf("alert %s notified %d times, want 1", n, seen[n])
		}
	}
	hookMu.Unlock()
	// Each group's deliveries: 503s with Retry-After, then one 202.
	limited := 0
	byGroup := map[string][]amDelivery{}
	for _, d := range rec.deliveries("am") {
		var w amWebhook
		if err := json.Unmarshal(d.body, &w); err != nil || len(w.Alerts) != 1 {
			t.Fatalf("delivery %s: %v", d.body, err)
		}
		n := w.Alerts[0].Labels["alertname"]
		byGroup[n] = append(byGroup[n], d)
		switch d.status {
		case http.StatusServiceUnavailable:
			limited++
		case http.StatusAccepted:
		default:
			t.Errorf("group %s: delivery answered %d, want 503 or 202", n, d.status)
		}
	}
	if limited == 0 {
		t.Fatal("three groups at once against a burst of 1 were never rate limited")
	}
	for n, ds := range byGroup {
		codes, gaps := []int{}, []time.Duration{}
		for i, d := range ds {
			codes = append(codes, d.status)
			if i > 0 {
				gaps = append(gaps, d.at.Sub(ds[i-1].at).Round(10*time.Millisecond))
			}
		}
		if codes[len(codes)-1] != http.StatusAccepted {
			t.Errorf("group %s: statuses %v, want 503s then 202", n, codes)
		}
		t.Logf("group %s: statuses %v, retried after %v", n, codes, gaps)
	}
	out := am.logText()
	if strings.Contains(out, "unexpected status code 429") || strings.Contains(out, "notify retry canceled") {
		t.Fatalf("alertmanager gave up on a delivery instead of retrying it:\n%s", out)
	}
	if !strings.Contains(out, "unexpected status code 503") || !strings.Contains(out, "will retry later") {
		t.Fatalf("alertmanager did not retry the 503s:\n%s", out)
	}
}

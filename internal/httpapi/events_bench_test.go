package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/edgevault/edgevault/internal/syncproto"
)

// fleet is a set of simulated agents, each enrolled with its own key and
// certificate and following its own sync stream over its own mTLS
// connection.
type fleet struct {
	agents    []*simAgent
	connected atomic.Int64
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// simAgent is one simulated agent: it applies events by acking them.
type simAgent struct {
	mu    sync.Mutex
	acked uint64
	state syncproto.State
}

// fleetSpec is what simulated agents need to enroll and connect; it is
// JSON so a child process can take it.
type fleetSpec struct {
	Addr       string   `json:"addr"`  // the server, plain HTTP, for enrollment
	Front      string   `json:"front"` // its HTTP/2 mTLS front, for the streams
	FrontCA    []byte   `json:"front_ca"`
	Zone       string   `json:"zone"`
	JoinTokens []string `json:"join_tokens"`
}

// prepareFleet creates zone with n join tokens and an mTLS front of the
// server.
func prepareFleet(tb testing.TB, ts *testServer, zone string, n int) fleetSpec {
	tb.Helper()
	if _, err := ts.client.Logical().Write("sys/zones/"+zone, map[string]any{}); err != nil {
		tb.Fatal(err)
	}
	zt, err := ts.client.Logical().Write("sys/zones/"+zone+"/root-token", nil)
	if err != nil {
		tb.Fatal(err)
	}
	zc := ts.newClient(tb, zt.Auth.ClientToken)
	zc.SetNamespace(zone)
	front := httptest.NewUnstartedServer(ts.srv.Handler())
	front.EnableHTTP2 = true
	front.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	front.StartTLS()
	tb.Cleanup(front.Close)
	spec := fleetSpec{Addr: ts.addr, Front: front.URL, FrontCA: front.Certificate().Raw, Zone: zone}
	for i := range n {
		jt, err := zc.Logical().Write("auth/attest/join-token", map[string]any{"agent_id": fmt.Sprintf("sim-%04d", i)})
		if err != nil {
			tb.Fatal(err)
		}
		spec.JoinTokens = append(spec.JoinTokens, jt.Data["join_token"].(string))
	}
	return spec
}

// startFleet enrolls one agent per join token of spec and opens their
// streams; it returns once all are connected.
func startFleet(tb testing.TB, spec fleetSpec) *fleet {
	tb.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address, cfg.MaxRetries = spec.Addr, 0
	anon, err := vault.NewClient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	anon.ClearToken()
	anon.SetNamespace(spec.Zone)
	ca, err := x509.ParseCertificate(spec.FrontCA)
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	f := &fleet{}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	tb.Cleanup(f.stop)
	for _, jt := range spec.JoinTokens {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
		en, err := anon.Logical().Write("auth/attest/enroll", map[string]any{"join_token": jt,
			"public_key": base64.StdEncoding.EncodeToString(der)})
		if err != nil {
			tb.Fatal(err)
		}
		var chain [][]byte
		rest := []byte(en.Data["certificate_chain"].(string))
		for {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			chain = append(chain, blk.Bytes)
		}
		a := &simAgent{}
		f.agents = append(f.agents, a)
		cl := &syncproto.Client{
			URL:       spec.Front + syncproto.Path,
			TLSConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: key}}},
			From:      func() uint64 { a.mu.Lock(); defer a.mu.Unlock(); return a.acked },
			Apply:     a.apply,
			OnState: func(s syncproto.State, _ error) {
				a.mu.Lock()
				was := a.state
				a.state = s
				a.mu.Unlock()
				switch {
				case s == syncproto.StateConnected && was != syncproto.StateConnected:
					f.connected.Add(1)
				case s != syncproto.StateConnected && was == syncproto.StateConnected:
					f.connected.Add(-1)
				}
			},
		}
		f.wg.Go(func() { _ = cl.Run(ctx) })
	}
	n := int64(len(spec.JoinTokens))
	for end := time.Now().Add(2 * time.Minute); f.connected.Load() < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			tb.Fatalf("only %d of %d agents connected", f.connected.Load(), n)
		}
	}
	return f
}

func (f *fleet) stop() {
	f.cancel()
	f.wg.Wait()
}

// apply acks a batch of events at once.
func (a *simAgent) apply(evs []syncproto.Event) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ev := range evs {
		a.acked = max(a.acked, ev.Seq)
	}
	return a.acked, nil
}

// fleetSize is EDGEVAULT_BENCH_AGENTS, default 1000.
func fleetSize(tb testing.TB) int {
	n := 1000
	if v := os.Getenv("EDGEVAULT_BENCH_AGENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			tb.Fatalf("EDGEVAULT_BENCH_AGENTS=%q: want a positive integer", v)
		}
	}
	return n
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// percentile returns the p-th percentile (0..1) of sorted ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// BenchmarkRevocationFanout measures, with EDGEVAULT_BENCH_AGENTS (1,000)
// simulated agents connected, the time from an Alertmanager alert received
// to the last agent's ack of the revocation it caused, as the server
// records both in sys/events/revocations/:id, over 100 alerts, and the
// memory per connected agent (server and simulated agent together: both
// ends live in this process).
//
//	go test -run XXX -bench RevocationFanout -benchtime 1x -timeout 30m ./internal/httpapi/
func BenchmarkRevocationFanout(b *testing.B) {
	n := fleetSize(b)
	ts := startServer(b, true)
	spec := prepareFleet(b, ts, "edge-1", n)
	before := heapInUse()
	f := startFleet(b, spec)
	after := heapInUse()

	src := setupAlertSource(b, ts)
	const alerts = 100
	var lat []time.Duration
	next := 0 // alert numbers (fingerprints) stay distinct across iterations
	for b.Loop() {
		lat = lat[:0]
		for range alerts {
			lat = append(lat, fireAndWait(b, ts, f, src, next))
			next++
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.Logf("%d agents, %d alerts: p50 %s p99 %s max %s; heap %.1f KiB per connected agent",
		n, len(lat), percentile(lat, 0.5), percentile(lat, 0.99), lat[len(lat)-1], float64(after-before)/float64(n)/1024)
}

// alertSource is a bearer-authenticated Alertmanager source and a rule
// revoking, in zone edge-1, the prefix its alerts name.
type alertSource struct {
	name, secret string
}

func setupAlertSource(tb testing.TB, ts *testServer) alertSource {
	tb.Helper()
	src := alertSource{name: "bench-am", secret: "bench-secret-0123456789abcdef"}
	if _, err := ts.client.Logical().Write("sys/events/sources/"+src.name, map[string]any{
		"kinds": []string{"alertmanager"}, "auth": map[string]any{"method": "bearer"}, "secret": src.secret,
		"rate_limit": map[string]any{"per_second": 1000, "burst": 1000}}); err != nil {
		tb.Fatal(err)
	}
	if _, err := ts.client.Logical().Write("sys/events/rules/bench-isolate", map[string]any{
		"expression": `event.labels["alertname"] == "BenchCompromise"`,
		"actions": []map[string]any{{"type": "revoke_prefix",
			"params": map[string]string{"zone": "edge-1", "prefix": "secret/app/{{labels.target}}"}}}}); err != nil {
		tb.Fatal(err)
	}
	return src
}

// alertBody is an Alertmanager v4 webhook payload with one firing alert.
func alertBody(i int) []byte {
	return fmt.Appendf(nil, `{"version":"4","groupKey":"{}:{alertname=\"BenchCompromise\"}","truncatedAlerts":0,"status":"firing",
"receiver":"edgevault","groupLabels":{"alertname":"BenchCompromise"},"commonLabels":{"alertname":"BenchCompromise"},
"commonAnnotations":{},"externalURL":"http://alertmanager:9093","alerts":[{"status":"firing",
"labels":{"alertname":"BenchCompromise","target":"t%d"},"annotations":{"summary":"bench"},
"startsAt":"2026-11-26T07:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph",
"fingerprint":"%016x"}]}`, i, uint64(i)+1)
}

// fireAndWait sends alert i and waits until the server has every agent's
// ack of the revocation it caused; it returns the server's own figure:
// from the event received (received_at) to the last agent's ack
// (applied_at), as sys/events/revocations/:id records them.
func fireAndWait(tb testing.TB, ts *testServer, f *fleet, src alertSource, i int) time.Duration {
	tb.Helper()
	req, err := http.NewRequest("POST", ts.addr+"/v1/sys/events/alertmanager?source="+src.name, bytes.NewReader(alertBody(i)))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+src.secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		tb.Fatalf("alert %d: %d %s", i, resp.StatusCode, body)
	}
	ids := revocationIDs(body)
	if len(ids) != 1 {
		tb.Fatalf("alert %d: want one revocation, got %v in %s", i, ids, body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := ts.client.Logical().Read("sys/events/revocations/" + ids[0])
		if err != nil {
			tb.Fatal(err)
		}
		if st != nil && st.Data["complete"] == true {
			return isolationTime(tb, st.Data, len(f.agents))
		}
		if time.Now().After(deadline) {
			tb.Fatalf("revocation %s not acked by every agent within 30 s: %v", ids[0], st.Data["summary"])
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// isolationTime is the last applied_at minus received_at of a complete
// revocation's status, which must list n applied agents.
func isolationTime(tb testing.TB, data map[string]any, n int) time.Duration {
	tb.Helper()
	received, err := time.Parse(time.RFC3339Nano, fmt.Sprint(data["received_at"]))
	if err != nil {
		tb.Fatalf("received_at: %v", err)
	}
	agents, _ := data["agents"].(map[string]any)
	if len(agents) != n {
		tb.Fatalf("the revocation lists %d agents, want %d", len(agents), n)
	}
	var last time.Time
	for id, v := range agents {
		st, _ := v.(map[string]any)
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(st["applied_at"]))
		if err != nil {
			tb.Fatalf("agent %s: applied_at: %v (%v)", id, err, st)
		}
		if at.After(last) {
			last = at
		}
	}
	return last.Sub(received)
}

// revocationIDs finds the revocation IDs in an intake answer: the strings
// of data.revocations (or their "id" fields).
func revocationIDs(body []byte) []string {
	var env struct {
		Data struct {
			Revocations []json.RawMessage `json:"revocations"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil
	}
	var ids []string
	for _, r := range env.Data.Revocations {
		var s string
		if json.Unmarshal(r, &s) == nil {
			ids = append(ids, s)
			continue
		}
		var o struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(r, &o) == nil && o.ID != "" {
			ids = append(ids, o.ID)
		}
	}
	return ids
}

// fleetChildEnv names the file holding the fleetSpec a child process
// connects (TestFleetChild).
const fleetChildEnv = "EDGEVAULT_FLEET_SPEC"

// TestFleetChild is not a test: BenchmarkServerMemoryPerAgent runs the test
// binary again with it, so the simulated agents live in another process
// than the server they connect to. It connects the fleet, says so on
// stdout, and holds it until its stdin closes.
func TestFleetChild(t *testing.T) {
	file := os.Getenv(fleetChildEnv)
	if file == "" {
		t.Skip("run by BenchmarkServerMemoryPerAgent")
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var spec fleetSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	startFleet(t, spec)
	fmt.Println("fleet connected")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// BenchmarkServerMemoryPerAgent measures the server's own memory per
// connected agent: EDGEVAULT_BENCH_AGENTS (1,000) simulated agents run in a
// child process, so the live heap growth of this process is the server's.
//
//	go test -run XXX -bench ServerMemoryPerAgent -benchtime 1x ./internal/httpapi/
func BenchmarkServerMemoryPerAgent(b *testing.B) {
	n := fleetSize(b)
	ts := startServer(b, true)
	spec := prepareFleet(b, ts, "edge-1", n)
	raw, err := json.Marshal(spec)
	if err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(b.TempDir(), "fleet.json")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		before := heapInUse()
		cmd := exec.Command(os.Args[0], "-test.run=^TestFleetChild$", "-test.v")
		cmd.Env = append(os.Environ(), fleetChildEnv+"="+file)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		connected := false
		for sc.Scan() {
			if sc.Text() == "fleet connected" {
				connected = true
				break
			}
		}
		if !connected {
			_ = cmd.Process.Kill()
			b.Fatalf("the fleet process ended before connecting: %v", cmd.Wait())
		}
		time.Sleep(2 * time.Second) // a few heartbeats: steady state
		after := heapInUse()
		stdin.Close()
		go func() { _, _ = io.Copy(io.Discard, out) }()
		_ = cmd.Wait()
		b.ReportMetric(float64(after-before)/float64(n), "server-heap-B/agent")
		b.Logf("%d agents in another process: server live heap +%.1f KiB per connected agent", n, float64(after-before)/float64(n)/1024)
	}
}

package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/httpapi"
	"github.com/edgevault/edgevault/internal/storage/inmem"
	vault "github.com/hashicorp/vault/api"
)

const testZone = "edge-1"

// controlPlane is a real edgevault server behind an HTTP/2 TLS listener
// that requests client certificates, as in production.
type controlPlane struct {
	srv   *httpapi.Server
	hts   *httptest.Server
	caPEM string        // file holding the TLS certificate
	zone  *vault.Client // the zone's root token, in the zone
	admin *vault.Client // the root zone's root token
	// tokens records every X-Vault-Token the server received.
	tokens sync.Map
}

func startControlPlane(t testing.TB, maxStale string) *controlPlane {
	t.Helper()
	srv, err := httpapi.New(httpapi.Config{Physical: inmem.New(), StorageType: "inmem", MaxRequestSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	root, _, err := srv.InitDev(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{srv: srv}
	cp.start(t, "127.0.0.1:0")
	t.Cleanup(func() { cp.stop(); srv.Close() })

	admin := cp.client(t, root)
	cp.admin = admin
	if _, err := admin.Logical().Write("sys/zones/"+testZone, map[string]any{}); err != nil {
		t.Fatal(err)
	}
	zt, err := admin.Logical().Write("sys/zones/"+testZone+"/root-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	cp.zone = cp.client(t, zt.Auth.ClientToken)
	cp.zone.SetNamespace(testZone)
	if err := cp.zone.Sys().PutPolicy("edge-cache", `
path "secret/data/app/*" {
  capabilities = ["read"]
  cache { max_stale = "`+maxStale+`" }
}`); err != nil {
		t.Fatal(err)
	}
	return cp
}

// start serves the control plane on addr ("127.0.0.1:0" or the address of
// a stopped instance, to restart it).
func (cp *controlPlane) start(t testing.TB, addr string) {
	t.Helper()
	hts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.Header.Get("X-Vault-Token"); tok != "" {
			cp.tokens.Store(tok, true)
		}
		cp.srv.Handler().ServeHTTP(w, r)
	}))
	var ln net.Listener
	var err error
	for range 50 { // the old port may take a moment to be free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	hts.Listener.Close()
	hts.Listener = ln
	hts.EnableHTTP2 = true
	hts.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	hts.StartTLS()
	cp.hts = hts
	if cp.caPEM == "" {
		cp.caPEM = filepath.Join(t.TempDir(), "server-ca.pem")
		if err := os.WriteFile(cp.caPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hts.Certificate().Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stop kills the control plane's listener and every connection, as a
// crash or a partition would.
func (cp *controlPlane) stop() {
	cp.hts.CloseClientConnections()
	cp.hts.Close()
}

func (cp *controlPlane) client(t testing.TB, token string) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = cp.hts.URL
	cfg.HttpClient = cp.hts.Client()
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

func (cp *controlPlane) joinToken(t testing.TB, agentID string) string {
	t.Helper()
	jt, err := cp.zone.Logical().Write("auth/attest/join-token", map[string]any{"agent_id": agentID})
	if err != nil {
		t.Fatal(err)
	}
	return jt.Data["join_token"].(string)
}

func (cp *controlPlane) put(t testing.TB, key string, data map[string]any) {
	t.Helper()
	if _, err := cp.zone.KVv2("secret").Put(context.Background(), key, data); err != nil {
		t.Fatal(err)
	}
}

// testClock is a Config.Clock that tests can move forward.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// runningAgent is an agent started by startAgent.
type runningAgent struct {
	info Info
	stop func() error // cancels Run and returns its error
}

func startAgent(t *testing.T, cfg Config) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Info, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, func(i Info) { ready <- i }) }()
	ra := &runningAgent{}
	stopped := false
	ra.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("Run did not return within 10s of its context ending")
		}
	}
	t.Cleanup(func() {
		if err := ra.stop(); err != nil {
			t.Error(err)
		}
	})
	select {
	case ra.info = <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the agent was not ready within 10s")
	}
	return ra
}

// agentClient is a vault/api client of the agent's TCP listener.
func agentClient(t *testing.T, info Info, token string) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = "http://" + info.Listen
	cfg.MaxRetries = 0
	cfg.Timeout = 5 * time.Second
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// waitFor polls ok for up to 15s.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// health reads the agent's sys/health.
func health(t *testing.T, info Info) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + info.Listen + "/v1/sys/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// rawGet sends GET path to base (an http://host:port or a unix socket
// client) with token and returns the status, headers, body and duration.
func rawGet(t *testing.T, hc *http.Client, base, path, token string) (int, http.Header, map[string]any, time.Duration) {
	t.Helper()
	return rawDo(t, hc, http.MethodGet, base, path, token, nil)
}

func rawDo(t *testing.T, hc *http.Client, method, base, path, token string, body []byte) (int, http.Header, map[string]any, time.Duration) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	took := time.Since(start)
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v: %q", method, path, err, raw)
		}
	}
	return resp.StatusCode, resp.Header, out, took
}

// unixClient is an HTTP client that dials the unix socket.
func unixClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
}

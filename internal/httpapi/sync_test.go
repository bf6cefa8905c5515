package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/edgevault/edgevault/internal/audit/leaf"
	"github.com/edgevault/edgevault/internal/syncproto"
)

// An enrolled agent follows its zone's feed over mTLS: it receives exactly
// the secrets the zone's policies let agents cache, as they change.
func TestAgentSyncStream(t *testing.T) {
	ts, file, _ := auditedServer(t)
	ag := enrolled(t, ts, "edge-1", "node-a")
	z := ag.zone
	if err := z.Sys().PutPolicy("edge-cache", `
path "secret/data/app/*" {
  capabilities = ["read"]
  cache { max_stale = "24h" }
}`); err != nil {
		t.Fatal(err)
	}
	if _, err := z.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "v1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := z.KVv2("secret").Put(t.Context(), "private/key", map[string]any{"k": "never cached"}); err != nil {
		t.Fatal(err)
	}

	var (
		mu     sync.Mutex
		got    = map[string]syncproto.Event{}
		acked  uint64
		states []syncproto.State
	)
	cl := &syncproto.Client{
		URL:       ag.url + syncproto.Path,
		TLSConfig: ag.tls.Clone(),
		From:      func() uint64 { mu.Lock(); defer mu.Unlock(); return acked },
		Apply: func(evs []syncproto.Event) (uint64, error) {
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range evs {
				got[ev.Path] = ev
				acked = max(acked, ev.Seq)
			}
			return acked, nil
		},
		OnState: func(s syncproto.State, _ error) { mu.Lock(); states = append(states, s); mu.Unlock() },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { cl.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			yes := ok()
			mu.Unlock()
			if yes {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; got %v", what, got)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("app/db v1", func() bool { ev, ok := got["secret/app/db"]; return ok && ev.Version == 1 })
	if _, err := z.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "v2"}); err != nil {
		t.Fatal(err)
	}
	waitFor("app/db v2", func() bool {
		ev := got["secret/app/db"]
		return ev.Version == 2 && strings.Contains(string(ev.Data), `"password":"v2"`) && ev.MaxStale == 24*time.Hour
	})
	if err := z.KVv2("secret").Delete(t.Context(), "app/db"); err != nil {
		t.Fatal(err)
	}
	waitFor("app/db deleted", func() bool { return got["secret/app/db"].Kind == syncproto.Delete })
	mu.Lock()
	if _, ok := got["secret/private/key"]; ok {
		t.Error("a secret no cache block covers reached the agent")
	}
	mu.Unlock()
	// The registry shows the agent's watermark.
	waitFor("the ack in the registry", func() bool {
		a, err := z.Logical().Read("sys/agents/node-a")
		return err == nil && fmt.Sprint(a.Data["cache_watermark"]) != "0"
	})

	// Quarantine ends the open stream: a later write does not reach the agent.
	if _, err := z.Logical().Write("sys/agents/node-a/quarantine", map[string]any{"reason": "test"}); err != nil {
		t.Fatal(err)
	}
	waitFor("the agent cut off", func() bool { return len(states) > 0 && states[len(states)-1] == syncproto.StateDegraded })
	if _, err := z.KVv2("secret").Put(t.Context(), "app/after", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	_, leaked := got["secret/app/after"]
	mu.Unlock()
	if leaked {
		t.Fatal("a write after quarantine reached the agent")
	}
	cancel()
	<-done
	resp, err := ag.http.Post(ag.url+syncproto.Path, syncproto.ContentType, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a quarantined agent's stream: %d, want 403", resp.StatusCode)
	}
	raw := readEntries(t, file)
	opened := 0
	for _, e := range raw {
		if r, _ := e["request"].(map[string]any); r != nil && r["path"] == "sys/agents/sync" {
			opened++
		}
	}
	if opened < 2 {
		t.Fatalf("the sync stream's opening and refusal are not both audited (%d entries)", opened)
	}
}

// testAgent is an enrolled agent, reaching a TLS front of the server.
type testAgent struct {
	zone *vault.Client // a root token of the agent's zone, in the zone
	key  *ecdsa.PrivateKey
	tls  *tls.Config  // the agent's client certificate and the front's CA
	http *http.Client // HTTP/2 over that TLS
	url  string       // the TLS front
}

// enrolled creates zone, enrolls agent id there with a join token, and
// starts an HTTP/2 TLS front of the server that asks for client certificates.
func enrolled(t *testing.T, ts *testServer, zone, id string) testAgent {
	t.Helper()
	if _, err := ts.client.Logical().Write("sys/zones/"+zone, map[string]any{}); err != nil {
		t.Fatal(err)
	}
	zt, err := ts.client.Logical().Write("sys/zones/"+zone+"/root-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	z := ts.newClient(t, zt.Auth.ClientToken)
	z.SetNamespace(zone)
	jt, err := z.Logical().Write("auth/attest/join-token", map[string]any{"agent_id": id})
	if err != nil {
		t.Fatal(err)
	}
	key, pub := newAgentKey(t)
	anon := ts.newClient(t, "")
	anon.SetNamespace(zone)
	en, err := anon.Logical().Write("auth/attest/enroll", map[string]any{"join_token": jt.Data["join_token"], "public_key": pub})
	if err != nil {
		t.Fatal(err)
	}
	var certs [][]byte
	rest := []byte(en.Data["certificate_chain"].(string))
	for {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		certs = append(certs, blk.Bytes)
	}
	srv := httptest.NewUnstartedServer(ts.srv.Handler())
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	cfg := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{{Certificate: certs, PrivateKey: key}}}
	hc := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: cfg.Clone()}}
	return testAgent{zone: z, key: key, tls: cfg, http: hc, url: srv.URL}
}

// Agents forward the entries they signed for local reads; the server binds
// them to the identity and key of the connection and logs them.
func TestAgentSignedAudit(t *testing.T) {
	ts, file, _ := auditedServer(t)
	ag := enrolled(t, ts, "edge-1", "node-a")
	hc, url, key := ag.http, ag.url, ag.key
	line := `{"request":{"mode":"degraded","operation":"read","path":"secret/data/app/db","version":3},"time":"2026-11-26T01:00:00Z","type":"agent-read"}`
	seed := bytes.Repeat([]byte{9}, 32)
	fields, _ := leaf.Fields([]byte(line))
	lf, _ := leaf.Commit(fields, seed)
	sig, err := leaf.Sign(lf, key)
	if err != nil {
		t.Fatal(err)
	}
	post := func(body any) (int, map[string]any) {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", url+"/v1/sys/agents/audit", bytes.NewReader(raw))
		req.Header.Set("X-Vault-Namespace", "edge-1")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	entry := func(l string, s []byte) map[string]any {
		return map[string]any{"line": l, "seed": seed, "signature": s}
	}
	code, out := post(map[string]any{"entries": []any{entry(line, sig)}})
	if code != 200 || out["data"].(map[string]any)["signer"] != "spiffe://edgevault.local/zone/edge-1/agent/node-a" {
		t.Fatalf("forward: %d %v", code, out)
	}
	bad := bytes.Clone(sig)
	bad[len(bad)-1] ^= 1
	withData := `{"request":{"data":{"password":"x"},"path":"secret/data/app/db"},"type":"agent-read"}`
	for _, tc := range []struct {
		body any
		want string
	}{
		{map[string]any{"entries": []any{entry(line, sig), entry(line, bad)}}, "entries[1]"},
		{map[string]any{"entries": []any{entry(withData, sig)}}, `"request.data" is not allowed`},
		{map[string]any{"entries": []any{}}, "want 1 to 1000 entries"},
	} {
		code, out := post(tc.body)
		if code != 400 || !strings.Contains(fmt.Sprint(out["errors"]), tc.want) {
			t.Errorf("%v: %d %v, want 400 %q", tc.want, code, out, tc.want)
		}
	}
	// The file holds the agent's entry with the server-authenticated signer.
	n := 0
	for _, e := range readEntries(t, file) {
		if e["type"] == "agent-read" {
			if e["signer"].(map[string]any)["id"] != "spiffe://edgevault.local/zone/edge-1/agent/node-a" {
				t.Fatalf("signer = %v", e["signer"])
			}
			n++
		}
	}
	if n != 2 { // the first, and the valid first entry of the second batch
		t.Fatalf("%d agent entries in the audit file, want 2", n)
	}
}

// A secret that loses its cache coverage (the policy deleted) leaves the
// agents; so does everything of a disabled mount.
func TestCoverageLossRevokes(t *testing.T) {
	ts, _, _ := auditedServer(t)
	z := enrolled(t, ts, "edge-1", "node-a").zone
	if err := z.Sys().PutPolicy("edge-cache", `path "secret/data/*" {
  capabilities = ["read"]
  cache { max_stale = "1h" }
}`); err != nil {
		t.Fatal(err)
	}
	if _, err := z.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "v1"}); err != nil {
		t.Fatal(err)
	}
	feed := func() []syncproto.Event { return ts.srv.SyncEvents("edge-1") }
	waitUntil := func(what string, ok func([]syncproto.Event) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok(feed()) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %+v", what, feed())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitUntil("the upsert", func(evs []syncproto.Event) bool {
		return len(evs) > 0 && evs[len(evs)-1].Kind == syncproto.Upsert && evs[len(evs)-1].Path == "secret/app/db"
	})
	if err := z.Sys().DeletePolicy("edge-cache"); err != nil {
		t.Fatal(err)
	}
	waitUntil("a full revocation with nothing re-published", func(evs []syncproto.Event) bool {
		last := evs[len(evs)-1]
		return last.Kind == syncproto.Revoke && last.Path == ""
	})
	// Covered again, then the mount disabled: revoked, nothing re-published.
	if err := z.Sys().PutPolicy("edge-cache", `path "secret/data/*" {
  capabilities = ["read"]
  cache { max_stale = "1h" }
}`); err != nil {
		t.Fatal(err)
	}
	waitUntil("the secret re-published", func(evs []syncproto.Event) bool {
		last := evs[len(evs)-1]
		return last.Kind == syncproto.Upsert && last.Path == "secret/app/db"
	})
	if err := z.Sys().Unmount("secret"); err != nil {
		t.Fatal(err)
	}
	waitUntil("the mount's secrets revoked", func(evs []syncproto.Event) bool {
		last := evs[len(evs)-1]
		return last.Kind == syncproto.Revoke && last.Path == ""
	})
}

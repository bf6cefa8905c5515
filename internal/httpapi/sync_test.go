package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
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

// Agents forward the entries they recorded for local reads, signed by
// batch; the server binds them to the identity and key of the connection,
// logs them once each (a batch sent again is not logged twice) and refuses
// entries that could carry secrets.
func TestAgentSignedAudit(t *testing.T) {
	ts, file, _ := auditedServer(t)
	ag := enrolled(t, ts, "edge-1", "node-a")
	post := func(body any) (int, map[string]any) {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", ag.url+"/v1/sys/agents/audit", bytes.NewReader(raw))
		req.Header.Set("X-Vault-Namespace", "edge-1")
		resp, err := ag.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	line := func(seq int) string {
		return fmt.Sprintf(`{"seq":%d,"request":{"mode":"degraded","operation":"read","path":"secret/data/app/db","version":3,"namespace":{"id":"edge-1"}},"response":{"status_code":200},"time":"2026-11-26T01:00:00Z","type":"agent-read"}`, seq)
	}
	// batch signs lines as the agent does and returns the request body.
	batch := func(spool string, lines ...string) map[string]any {
		leaves := make([][]byte, len(lines))
		entries := make([]any, len(lines))
		for i, l := range lines {
			seed := make([]byte, 32)
			rand.Read(seed)
			fields, err := leaf.Fields([]byte(l))
			if err != nil {
				t.Fatal(err)
			}
			leaves[i], _ = leaf.Commit(fields, seed)
			entries[i] = map[string]any{"line": l, "seed": seed}
		}
		sig, err := leaf.SignBatch(leaves, ag.key)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"spool": spool, "signature": sig, "entries": entries}
	}
	for _, tc := range []struct {
		name               string
		body               map[string]any
		accepted, dup, seq float64
	}{
		{"first batch", batch("sp1", line(1), line(2)), 2, 0, 2},
		{"sent again", batch("sp1", line(1), line(2)), 0, 2, 2},
		{"overlapping", batch("sp1", line(2), line(3)), 1, 1, 3},
		{"a new spool starts over", batch("sp2", line(1)), 1, 0, 1},
	} {
		code, out := post(tc.body)
		d, _ := out["data"].(map[string]any)
		if code != 200 || d["accepted"] != tc.accepted || d["duplicates"] != tc.dup || d["audit_seq"] != tc.seq ||
			d["signer"] != "spiffe://edgevault.local/zone/edge-1/agent/node-a" {
			t.Fatalf("%s: %d %v", tc.name, code, out)
		}
	}
	badSig := batch("sp2", line(2))
	badSig["signature"].([]byte)[5] ^= 1
	for _, tc := range []struct {
		body map[string]any
		want string
	}{
		{badSig, "signature does not verify"},
		{batch("sp2", `{"request":{"data":{"password":"x"},"path":"secret/data/app/db"},"seq":2,"type":"agent-read"}`), `entries[0]: line: field "request.data" is not allowed`},
		{batch("sp2", `{"type":"agent-read"}`), "entries[0]: line: an agent's entry needs seq"},
		{batch("sp2", strings.Replace(line(2), `"path":"secret/data/app/db"`, `"path":{"a":1}`, 1)), "request.path must be a string"},
		{batch("sp2", strings.Replace(line(2), `"agent-read"`, `"request"`, 1)), `type must be "agent-read"`},
		{batch("sp2", strings.Replace(line(2), `"edge-1"`, `"edge-2"`, 1)), "request.namespace must be the agent's zone"},
		{batch("sp2", line(2), line(4)), "entries[1]: seq 4 does not follow seq 2"},
		{batch("", line(2)), "spool"},
		{map[string]any{"spool": "sp2", "entries": []any{}}, "want 1 to 1000 entries"},
	} {
		code, out := post(tc.body)
		if code != 400 || !strings.Contains(fmt.Sprint(out["errors"]), tc.want) {
			t.Errorf("%v: %d %v, want 400 %q", tc.want, code, out, tc.want)
		}
	}
	// A spool that went back in time (a restored snapshot) numbers a new
	// entry like one the log holds: refused, nothing logged.
	other := strings.Replace(line(1), "01:00:00Z", "02:00:00Z", 1)
	if code, out := post(batch("sp2", other, line(2))); code != 409 || !strings.Contains(fmt.Sprint(out["errors"]), "start a new spool") {
		t.Fatalf("reused spool numbers: %d %v, want 409", code, out)
	}
	// The file holds each accepted entry once, with the server-authenticated signer.
	n := 0
	for _, e := range readEntries(t, file) {
		if e["type"] == "agent-read" {
			if e["signer"].(map[string]any)["id"] != "spiffe://edgevault.local/zone/edge-1/agent/node-a" {
				t.Fatalf("signer = %v", e["signer"])
			}
			n++
		}
	}
	if n != 4 {
		t.Fatalf("%d agent entries in the audit file, want 4", n)
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

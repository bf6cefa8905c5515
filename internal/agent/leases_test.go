package agent

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/agent/cache/keyfile"
	"github.com/edgevault/edgevault/internal/pgtest"
	vault "github.com/hashicorp/vault/api"
)

// mountPKI mounts a pki engine in the test zone with a root CA and a role
// "web" whose certificates are leased.
func mountPKI(t *testing.T, cp *controlPlane, ttl string) {
	t.Helper()
	if err := cp.zone.Sys().Mount("pki", &vault.MountInput{Type: "pki"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.zone.Logical().Write("pki/root/generate/internal", map[string]any{"common_name": "Edge Root", "key_type": "ec", "ttl": "48h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.zone.Logical().Write("pki/roles/web", map[string]any{"allowed_domains": "edge.example", "allow_subdomains": true,
		"key_type": "ec", "ttl": ttl, "max_ttl": "24h", "generate_lease": true}); err != nil {
		t.Fatal(err)
	}
}

// zoneClient is a client of the agent with the zone's token, in the zone.
func zoneClient(t *testing.T, cp *controlPlane, info Info) *vault.Client {
	t.Helper()
	c := agentClient(t, info, cp.zone.Token())
	c.SetNamespace(testZone)
	return c
}

// issue asks for a certificate through c.
func issue(t *testing.T, c *vault.Client, cn string) *vault.Secret {
	t.Helper()
	s, err := c.Logical().Write("pki/issue/web", map[string]any{"common_name": cn})
	if err != nil {
		t.Fatalf("issue %s: %v", cn, err)
	}
	return s
}

func fromLeaseCache(s *vault.Secret) bool {
	for _, w := range s.Warnings {
		if strings.Contains(w, "lease cache") {
			return true
		}
	}
	return false
}

func serial(s *vault.Secret) string { v, _ := s.Data["serial_number"].(string); return v }

// A leased certificate issued through the agent is answered again from
// the agent's lease cache — online, offline while valid (with the time
// left), after an agent restart offline — and refused once expired; other
// tokens and other bodies never see it.
func TestLeaseCacheServesIssuedCertificates(t *testing.T) {
	cp := startControlPlane(t, "24h")
	cp.put(t, "app/db", map[string]any{"password": "v1"})
	mountPKI(t, cp, "1h")
	clk := &testClock{}
	cfg := newConfig(t, cp, cp.joinToken(t, "node-a"), clk)
	ag := startAgent(t, cfg)
	waitFor(t, "online", func() bool { _, h := health(t, ag.info); return h["mode"] == "online" })
	c := zoneClient(t, cp, ag.info)

	first := issue(t, c, "api.edge.example")
	if first.LeaseID == "" {
		t.Skip("the server does not lease pki/issue answers yet (generate_lease)")
	}
	if fromLeaseCache(first) || first.LeaseDuration != 3600 || first.Renewable {
		t.Fatalf("first issue: lease %q %ds renewable=%v warnings %v", first.LeaseID, first.LeaseDuration, first.Renewable, first.Warnings)
	}
	again := issue(t, c, "api.edge.example")
	if serial(again) != serial(first) || again.LeaseID != first.LeaseID || !fromLeaseCache(again) || again.RequestID == first.RequestID ||
		again.Data["private_key"] != first.Data["private_key"] || again.LeaseDuration > 3600 || again.LeaseDuration < 3590 {
		t.Fatalf("second identical issue not served from the lease cache: serial %s/%s lease %s %ds warnings %v",
			serial(first), serial(again), again.LeaseID, again.LeaseDuration, again.Warnings)
	}
	if other := issue(t, c, "www.edge.example"); serial(other) == serial(first) || fromLeaseCache(other) {
		t.Fatal("another body was answered with the cached certificate")
	}
	tok, err := cp.zone.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"root"}})
	if err != nil {
		t.Fatal(err)
	}
	c2 := agentClient(t, ag.info, tok.Auth.ClientToken)
	c2.SetNamespace(testZone)
	if other := issue(t, c2, "api.edge.example"); serial(other) == serial(first) || fromLeaseCache(other) {
		t.Fatal("another token was answered with the cached certificate")
	}
	// The local token is not a server token: its request is not cached.
	local := agentClient(t, ag.info, ag.info.LocalToken)
	local.SetNamespace(testZone)
	if s, err := local.Logical().Write("pki/issue/web", map[string]any{"common_name": "api.edge.example"}); err == nil {
		t.Fatalf("the local token got a certificate: %v", s)
	}

	// Offline: served while valid, with the time left, audited.
	cp.stop()
	waitFor(t, "offline", func() bool { _, h := health(t, ag.info); return h["mode"] != "online" })
	_, h := health(t, ag.info)
	pending := h["audit_pending"].(float64)
	clk.advance(10 * time.Minute)
	off := issue(t, c, "api.edge.example")
	if serial(off) != serial(first) || off.LeaseDuration > 3000 || off.LeaseDuration < 2980 || !strings.Contains(strings.Join(off.Warnings, " "), "unreachable") {
		t.Fatalf("offline issue: serial %s lease_duration %d warnings %v", serial(off), off.LeaseDuration, off.Warnings)
	}
	if _, h := health(t, ag.info); h["audit_pending"].(float64) != pending+1 {
		t.Fatalf("audit entries pending %v, want %v: the answer was not audited", h["audit_pending"], pending+1)
	}
	if _, err := c.Logical().Write("pki/issue/web", map[string]any{"common_name": "new.edge.example"}); statusOf(err) != 503 {
		t.Fatalf("uncached issue offline: %v", err)
	}

	// Restarted offline, the agent still has it.
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	ag = startAgent(t, cfg)
	c = zoneClient(t, cp, ag.info)
	if re := issue(t, c, "api.edge.example"); serial(re) != serial(first) || re.Data["private_key"] != first.Data["private_key"] {
		t.Fatalf("after an offline restart: serial %s, want %s", serial(re), serial(first))
	}
	// Past its expiry it is refused, naming the path.
	clk.advance(time.Hour)
	_, err = c.Logical().Write("pki/issue/web", map[string]any{"common_name": "api.edge.example"})
	if statusOf(err) != 503 || !strings.Contains(err.Error(), "pki/issue/web") || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired certificate offline: %v", err)
	}
}

// statusOf is the HTTP status of a vault/api error (0 if none).
func statusOf(err error) int {
	if re, ok := err.(*vault.ResponseError); ok {
		return re.StatusCode
	}
	return 0
}

// A certificate that is not renewable is re-issued by the agent near its
// expiry: the next identical request gets the new one from the cache.
func TestLeaseCacheReissuesCertificates(t *testing.T) {
	cp := startControlPlane(t, "24h")
	mountPKI(t, cp, "4s")
	cfg := newConfig(t, cp, cp.joinToken(t, "node-a"), nil)
	ag := startAgent(t, cfg)
	waitFor(t, "online", func() bool { _, h := health(t, ag.info); return h["mode"] == "online" })
	c := zoneClient(t, cp, ag.info)
	first := issue(t, c, "api.edge.example")
	if first.LeaseID == "" {
		t.Skip("the server does not lease pki/issue answers yet (generate_lease)")
	}
	start := time.Now()
	var got *vault.Secret
	waitFor(t, "a re-issued certificate", func() bool {
		got = issue(t, c, "api.edge.example")
		return serial(got) != serial(first)
	})
	if !fromLeaseCache(got) || got.LeaseID == first.LeaseID {
		t.Fatalf("the new certificate was not re-issued by the agent: lease %s warnings %v", got.LeaseID, got.Warnings)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("re-issued after %v, want at 80-90%% of 4s, not at once", took)
	}
	// The old lease is left to expire, not revoked.
	if _, err := cp.zone.Sys().Lookup(first.LeaseID); err != nil && time.Since(start) < 3500*time.Millisecond {
		t.Fatalf("the old lease is gone before its expiry: %v", err)
	}
	// Nobody asks again: the re-issued certificate is left to expire, not
	// re-issued once more (after both terms, no lease is left).
	waitFor(t, "no certificate lease left", func() bool {
		l, err := cp.zone.Logical().List("sys/leases/lookup/pki/issue/web/")
		return err == nil && l == nil
	})
	time.Sleep(1500 * time.Millisecond)
	if l, err := cp.zone.Logical().List("sys/leases/lookup/pki/issue/web/"); err != nil || l != nil {
		t.Fatalf("the agent re-issued a certificate nobody asked for: %v %v", l, err)
	}
}

// Database credentials through the agent: the agent renews the lease (the
// server shows the later expiry), evicts it once the server revoked it,
// and re-issues credentials whose lease reaches its max_ttl.
func TestLeaseCacheDatabaseCredentials(t *testing.T) {
	pgURL := pgtest.Start(t)
	tmpl, user, pw, err := pgtest.SplitURL(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	cp := startControlPlane(t, "24h")
	z := cp.zone
	if err := z.Sys().Mount("database", &vault.MountInput{Type: "database"}); err != nil {
		t.Fatal(err)
	}
	if _, err := z.Logical().Write("database/config/pg", map[string]any{"plugin_name": "postgresql-database-plugin",
		"connection_url": tmpl, "username": user, "password": pw, "allowed_roles": "ro,short"}); err != nil {
		t.Fatal(err)
	}
	create := `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`
	for role, ttls := range map[string][2]string{"ro": {"6s", "1h"}, "short": {"6s", "10s"}} {
		if _, err := z.Logical().Write("database/roles/"+role, map[string]any{"db_name": "pg", "default_ttl": ttls[0], "max_ttl": ttls[1],
			"creation_statements": create}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := newConfig(t, cp, cp.joinToken(t, "node-a"), nil)
	ag := startAgent(t, cfg)
	waitFor(t, "online", func() bool { _, h := health(t, ag.info); return h["mode"] == "online" })
	c := zoneClient(t, cp, ag.info)
	read := func(role string) *vault.Secret {
		t.Helper()
		s, err := c.Logical().Read("database/creds/" + role)
		if err != nil || s == nil {
			t.Fatalf("creds/%s: %v", role, err)
		}
		return s
	}
	expireTime := func(id string) time.Time {
		t.Helper()
		l, err := z.Sys().Lookup(id)
		if err != nil {
			t.Fatalf("lookup %s: %v", id, err)
		}
		et, err := time.Parse(time.RFC3339Nano, l.Data["expire_time"].(string))
		if err != nil {
			t.Fatal(err)
		}
		return et
	}

	ro := read("ro")
	if ro.LeaseID == "" || !ro.Renewable || fromLeaseCache(ro) {
		t.Fatalf("creds/ro: %+v", ro)
	}
	exp0 := expireTime(ro.LeaseID)
	if again := read("ro"); again.LeaseID != ro.LeaseID || again.Data["password"] != ro.Data["password"] || !fromLeaseCache(again) {
		t.Fatalf("second read not from the lease cache: %s %v", again.LeaseID, again.Warnings)
	}
	waitFor(t, "the agent to renew the lease", func() bool { return expireTime(ro.LeaseID).Sub(exp0) > 2*time.Second })

	// Revoked on the server: evicted at the next renewal, never served again.
	if err := z.Sys().Revoke(ro.LeaseID); err != nil {
		t.Fatal(err)
	}
	revokedAt := time.Now()
	var fresh *vault.Secret
	waitFor(t, "the revoked lease to be evicted", func() bool {
		fresh = read("ro")
		return fresh.LeaseID != ro.LeaseID
	})
	if fromLeaseCache(fresh) {
		t.Fatalf("after revocation: lease %s after %v, warnings %v", fresh.LeaseID, time.Since(revokedAt), fresh.Warnings)
	}
	for range 3 {
		if s := read("ro"); s.LeaseID != fresh.LeaseID {
			t.Fatalf("served lease %s, want %s", s.LeaseID, fresh.LeaseID)
		}
	}
	// Revoked through the agent: evicted at once.
	if _, err := c.Logical().Write("sys/leases/revoke", map[string]any{"lease_id": fresh.LeaseID}); err != nil {
		t.Fatal(err)
	}
	if s := read("ro"); s.LeaseID == fresh.LeaseID || fromLeaseCache(s) {
		t.Fatalf("a lease revoked through the agent was served again: %s", s.LeaseID)
	}

	// max_ttl 10s: the second renewal comes back short, so the agent re-issues.
	short := read("short")
	start := time.Now()
	var next *vault.Secret
	waitFor(t, "re-issued credentials", func() bool {
		next = read("short")
		time.Sleep(100 * time.Millisecond)
		return next.LeaseID != short.LeaseID
	})
	// Re-issued by the agent (served from its cache), not fetched anew
	// after the old lease ended. (How soon is a benchmark's business.)
	if !fromLeaseCache(next) || next.Data["username"] == short.Data["username"] {
		t.Fatalf("re-issue: lease %s user %v after %v, warnings %v", next.LeaseID, next.Data["username"], time.Since(start), next.Warnings)
	}
}

// credentialPath recognises the credential-issuing endpoints only.
func TestCredentialPath(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         bool
	}{
		{"GET", "/v1/database/creds/ro", true},
		{"GET", "/v1/team/db/creds/ro", true},
		{"PUT", "/v1/pki/issue/web", true},
		{"POST", "/v1/pki_int/issue/web", true},
		{"GET", "/v1/pki/issue/web", false},
		{"PUT", "/v1/database/creds/ro", false},
		{"GET", "/v1/database/creds/", false},
		{"GET", "/v1/creds/ro", false},
		{"GET", "/v1/sys/creds/ro", false},
		{"PUT", "/v1/auth/x/issue/web", false},
		{"GET", "/v1/secret/data/creds", false},
		{"GET", "/v1/database//creds/ro", false},
		{"GET", "/database/creds/ro", false},
	} {
		if got := credentialPath(tc.method, tc.path); got != tc.want {
			t.Errorf("credentialPath(%s %s) = %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
}

// newTestLeaseCache is a lease cache over a real cache file, without a
// server (nothing is renewed: the agent is offline).
func newTestLeaseCache(t *testing.T, dir string) *leaseCache {
	t.Helper()
	return newTestLeaseCacheFor(t, dir, "https://127.0.0.1:1", nil)
}

func newTestLeaseCacheFor(t *testing.T, dir, server string, roots *x509.CertPool) *leaseCache {
	t.Helper()
	kp, err := keyfile.Open(filepath.Join(dir, "cache.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(filepath.Join(dir, "cache.db"), kp, cache.Options{Zone: testZone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a := &agent{cfg: Config{ServerAddr: server, Zone: testZone}, log: Config{}.logger(), clock: time.Now, cache: c, roots: roots}
	l := &leaseCache{}
	l.start(a)
	return l
}

// The lease cache is bounded: past leaseMaxEntries the oldest entries are
// evicted, in memory and in the file.
func TestLeaseCacheBounded(t *testing.T) {
	dir := t.TempDir()
	l := newTestLeaseCache(t, dir)
	now := time.Now()
	var keys [][32]byte
	for i := range leaseMaxEntries + 3 {
		path := fmt.Sprintf("/v1/pki/issue/web?n=%d", i)
		e := &leaseEntry{Method: "PUT", Path: path, Token: "tok", Stored: now.Add(time.Duration(i) * time.Millisecond),
			key: leaseKey("tok", "update", path, "", nil)}
		resp, _ := json.Marshal(map[string]any{"lease_id": fmt.Sprintf("pki/issue/web/%d", i), "lease_duration": 3600, "data": map[string]any{"n": i}})
		if !e.takeAnswer(resp, now) {
			t.Fatalf("takeAnswer refused %s", resp)
		}
		evicted := l.put(e, nil)
		if want := min(1, max(0, i+1-leaseMaxEntries)); evicted != want {
			t.Fatalf("put %d evicted %d, want %d", i, evicted, want)
		}
		keys = append(keys, e.key)
	}
	check := func(l *leaseCache) {
		t.Helper()
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.entries) != leaseMaxEntries {
			t.Fatalf("%d entries, want %d", len(l.entries), leaseMaxEntries)
		}
		for i, k := range keys {
			if _, ok := l.entries[k]; ok != (i >= 3) {
				t.Fatalf("entry %d present=%v", i, ok)
			}
		}
	}
	check(l)
	l.a.cache.Close()
	check(newTestLeaseCache(t, dir))
}

// FuzzLeaseAnswer: any server answer either carries a lease and rewrites
// into JSON with the asked lease_duration and warning, or is not cached.
func FuzzLeaseAnswer(f *testing.F) {
	f.Add([]byte(`{"request_id":"a","lease_id":"pki/issue/web/x","renewable":false,"lease_duration":600,"data":{"certificate":"-----BEGIN"},"wrap_info":null,"warnings":null,"auth":null}`))
	f.Add([]byte(`{"request_id":"b","lease_id":"database/creds/ro/y","renewable":true,"lease_duration":3600,"data":{"username":"v-x","password":"p"},"warnings":["w"]}`))
	f.Add([]byte(`{"lease_id":"","lease_duration":0}`))
	f.Add([]byte(`{"lease_id":"x","lease_duration":5,"wrap_info":{"token":"t"}}`))
	f.Fuzz(func(t *testing.T, resp []byte) {
		now := time.Unix(1_800_000_000, 0)
		var e leaseEntry
		if !e.takeAnswer(resp, now) {
			return
		}
		if e.LeaseID == "" || e.Increment <= 0 || !e.Expires.After(now) || e.next.Before(now) || e.next.After(e.Expires) {
			t.Fatalf("accepted %q: lease %q increment %d expires %v next %v", resp, e.LeaseID, e.Increment, e.Expires, e.next)
		}
		out, err := rewrite(e.Response, []byte("rid"), 7, "warn")
		if err != nil {
			t.Fatalf("rewrite of an accepted answer: %v", err)
		}
		check(t, out)
		check(t, e.appendAnswer(nil, []byte("rid"), 7, "warn"))
		// Both keep every other field as it was.
		var in, viaRewrite, viaAnswer map[string]json.RawMessage
		_ = json.Unmarshal(resp, &in)
		_ = json.Unmarshal(out, &viaRewrite)
		_ = json.Unmarshal(e.appendAnswer(nil, []byte("rid"), 7, "warn"), &viaAnswer)
		for k, v := range in {
			if strings.EqualFold(k, "request_id") || strings.EqualFold(k, "lease_duration") || strings.EqualFold(k, "warnings") {
				continue
			}
			if !bytes.Equal(compact(v), compact(viaRewrite[k])) || !bytes.Equal(compact(v), compact(viaAnswer[k])) {
				t.Fatalf("field %q: %s became %s / %s", k, v, viaRewrite[k], viaAnswer[k])
			}
		}
	})
}

func compact(raw []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

func check(t *testing.T, out []byte) {
	t.Helper()
	{
		var got struct {
			RequestID     string   `json:"request_id"`
			LeaseDuration int      `json:"lease_duration"`
			Warnings      []string `json:"warnings"`
		}
		if err := json.Unmarshal(out, &got); err != nil || got.RequestID != "rid" || got.LeaseDuration != 7 ||
			len(got.Warnings) == 0 || got.Warnings[len(got.Warnings)-1] != "warn" {
			t.Fatalf("the answer is %s (%v)", out, err)
		}
	}
}

var _ http.ResponseWriter = (*captureWriter)(nil)

// Renewal failures: a network error or a 5xx keeps the entry and backs
// off (doubling); a 4xx evicts it, from memory and from the file.
func TestLeaseCacheRenewFailures(t *testing.T) {
	status := make(chan int, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/sys/leases/renew" || r.Header.Get("X-Vault-Token") != "tok" {
			t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
		}
		writeError(w, <-status, "no")
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	dir := t.TempDir()
	l := newTestLeaseCacheFor(t, dir, srv.URL, roots)
	now := time.Now()
	e := &leaseEntry{Method: "GET", Path: "/v1/database/creds/ro", Token: "tok", Stored: now, key: leaseKey("tok", "read", "/v1/database/creds/ro", "", nil)}
	if !e.takeAnswer([]byte(`{"lease_id":"database/creds/ro/x","lease_duration":3600,"renewable":true,"data":{}}`), now) {
		t.Fatal("takeAnswer")
	}
	l.put(e, nil)
	current := func() *leaseEntry { l.mu.Lock(); defer l.mu.Unlock(); return l.entries[e.key] }
	for i, code := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		cur := current()
		status <- code
		before := time.Now()
		l.act(cur)
		got := current()
		if got == nil || got.retry != leaseMinRetry<<(i+1) || got.next.Before(before.Add(leaseMinRetry<<i)) || got.LeaseID != e.LeaseID {
			t.Fatalf("after a %d: entry %+v", code, got)
		}
	}
	status <- http.StatusBadRequest
	l.act(current())
	if current() != nil {
		t.Fatal("a 400 on renewal did not evict the entry")
	}
	l.a.cache.Close()
	if l2 := newTestLeaseCache(t, dir); len(l2.entries) != 0 {
		t.Fatalf("the evicted entry came back after a restart: %d entries", len(l2.entries))
	}
}

// BenchmarkLeaseCacheHit measures an answer from the lease cache (a PKI
// answer of about 3 KiB) through the local API's handler, audited, at
// GOMAXPROCS concurrency: what an application pays for a cached
// credential, without the network.
func BenchmarkLeaseCacheHit(b *testing.B) {
	a := benchAgent(b, openTestCache(b))
	a.online.Store(true)
	api := &localAPI{a: a, token: []byte("eva.benchmark-local-token-0123456789")}
	api.leases.start(a)
	body := []byte(`{"common_name":"api.edge.example"}`)
	now := time.Now()
	e := &leaseEntry{Method: "PUT", Path: "/v1/pki/issue/web", Token: "tok", Body: body, Stored: now,
		key: leaseKey("tok", "update", "/v1/pki/issue/web", "", body)}
	resp, _ := json.Marshal(map[string]any{"request_id": "x", "lease_id": "pki/issue/web/abc", "lease_duration": 3600, "renewable": false,
		"data": map[string]any{"certificate": strings.Repeat("A", 1000), "issuing_ca": strings.Repeat("B", 1000), "private_key": strings.Repeat("C", 300),
			"serial_number": "01:02:03", "expiration": 1}, "warnings": nil})
	if !e.takeAnswer(resp, now) {
		b.Fatal("takeAnswer")
	}
	api.leases.put(e, nil)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPut, "/v1/pki/issue/web", strings.NewReader(string(body)))
			req.Header.Set(tokenHeader, "tok")
			rec := &recorder{h: http.Header{}}
			api.ServeHTTP(rec, req)
			if rec.status != http.StatusOK {
				b.Fatalf("%d %s", rec.status, rec.body)
			}
		}
	})
}

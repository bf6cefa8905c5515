package httpapi_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/edgevault/edgevault/internal/httpapi"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// testServer is a real server on 127.0.0.1:0 over an in-memory store.
type testServer struct {
	addr   string
	srv    *httpapi.Server
	phys   *inmem.Backend
	client *vault.Client // authenticated with the root token
	root   string
	key    []byte // the dev server's unseal key
}

// startServer starts a server; with dev it is initialised and unsealed.
func startServer(t testing.TB, dev bool) *testServer {
	t.Helper()
	return startServerWith(t, dev, httpapi.AuditConfig{})
}

// startServerWith starts a server with audit devices.
func startServerWith(t testing.TB, dev bool, audit httpapi.AuditConfig) *testServer {
	t.Helper()
	phys := inmem.New()
	srv, err := httpapi.New(httpapi.Config{Physical: phys, StorageType: "inmem", MaxRequestSize: 1 << 20, Audit: audit})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: srv, phys: phys}
	if dev {
		ts.root, ts.key, err = srv.InitDev(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	ts.addr = "http://" + ln.Addr().String()
	ts.client = ts.newClient(t, ts.root)
	return ts
}

func (ts *testServer) newClient(t testing.TB, token string) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = ts.addr
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// snapshot returns every physical key and value, to check that a failed
// request changed nothing.
func (ts *testServer) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix string)
	walk = func(prefix string) {
		keys, err := ts.phys.List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if strings.HasSuffix(k, "/") {
				walk(prefix + k)
				continue
			}
			v, err := ts.phys.Get(context.Background(), prefix+k)
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				t.Fatal(err)
			}
			out[prefix+k] = string(v)
		}
	}
	walk("")
	return out
}

// raw sends a request and returns status and body.
func (ts *testServer) raw(t *testing.T, method, path, token string, body []byte) (int, string) {
	t.Helper()
	return ts.rawNS(t, method, path, token, "", body)
}

// rawNS sends a request to zone ns and returns status and body.
func (ts *testServer) rawNS(t *testing.T, method, path, token, ns string, body ...[]byte) (int, string) {
	t.Helper()
	var b []byte
	if len(body) > 0 {
		b = body[0]
	}
	req, err := http.NewRequest(method, ts.addr+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	if ns != "" {
		req.Header.Set("X-Vault-Namespace", ns)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func statusOf(err error) int {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

func TestKVv2LifeCycle(t *testing.T) {
	ts := startServer(t, true)
	ctx := context.Background()
	kv := ts.client.KVv2("secret")

	s, err := kv.Put(ctx, "app/db", map[string]any{"password": "hunter2", "port": 5432})
	if err != nil {
		t.Fatal(err)
	}
	if s.VersionMetadata.Version != 1 {
		t.Fatalf("first version = %d, want 1", s.VersionMetadata.Version)
	}
	if _, err := kv.Put(ctx, "app/db", map[string]any{"password": "v2"}); err != nil {
		t.Fatal(err)
	}
	got, err := kv.Get(ctx, "app/db")
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["password"] != "v2" || got.VersionMetadata.Version != 2 {
		t.Fatalf("latest = %v v%d", got.Data, got.VersionMetadata.Version)
	}
	old, err := kv.GetVersion(ctx, "app/db", 1)
	if err != nil || old.Data["password"] != "hunter2" {
		t.Fatalf("version 1 = %v, %v", old, err)
	}

	// Check-and-set: a stale cas is refused and changes nothing.
	before := ts.snapshot(t)
	_, err = kv.Put(ctx, "app/db", map[string]any{"password": "stale"}, vault.WithCheckAndSet(1))
	if statusOf(err) != http.StatusBadRequest {
		t.Fatalf("stale cas: err = %v, want 400", err)
	}
	if after := ts.snapshot(t); !equalMaps(before, after) {
		t.Fatal("a refused cas write changed storage")
	}
	if _, err := kv.Put(ctx, "app/db", map[string]any{"password": "v3"}, vault.WithCheckAndSet(2)); err != nil {
		t.Fatalf("right cas: %v", err)
	}

	// Patch merges.
	p, err := kv.Patch(ctx, "app/db", map[string]any{"user": "app"})
	if err != nil {
		t.Fatal(err)
	}
	if p.VersionMetadata.Version != 4 {
		t.Fatalf("patch version = %d", p.VersionMetadata.Version)
	}
	got, _ = kv.Get(ctx, "app/db")
	if got.Data["password"] != "v3" || got.Data["user"] != "app" {
		t.Fatalf("after patch: %v", got.Data)
	}

	// List, soft delete, undelete, destroy.
	if _, err := kv.Put(ctx, "app/cache", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	list, err := ts.client.Logical().List("secret/metadata/app")
	if err != nil {
		t.Fatal(err)
	}
	keys := list.Data["keys"].([]any)
	if len(keys) != 2 || keys[0] != "cache" || keys[1] != "db" {
		t.Fatalf("list = %v", keys)
	}
	if err := kv.Delete(ctx, "app/db"); err != nil {
		t.Fatal(err)
	}
	// A deleted latest version reads as data null with its deletion time, as in Vault.
	if del, err := kv.Get(ctx, "app/db"); err != nil || del.Data != nil || del.VersionMetadata.DeletionTime.IsZero() {
		t.Fatalf("read of deleted version: %+v, %v", del, err)
	}
	if err := kv.Undelete(ctx, "app/db", []int{4}); err != nil {
		t.Fatal(err)
	}
	if got, err := kv.Get(ctx, "app/db"); err != nil || got.Data["user"] != "app" {
		t.Fatalf("after undelete: %v %v", got, err)
	}
	if err := kv.Destroy(ctx, "app/db", []int{1}); err != nil {
		t.Fatal(err)
	}
	versions, err := kv.GetVersionsAsList(ctx, "app/db")
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != 4 || !versions[0].Destroyed {
		t.Fatalf("versions = %+v", versions)
	}
	meta, err := kv.GetMetadata(ctx, "app/db")
	if err != nil || meta.CurrentVersion != 4 {
		t.Fatalf("metadata = %+v, %v", meta, err)
	}
	if err := kv.PutMetadata(ctx, "app/db", vault.KVMetadataPutInput{MaxVersions: 2, CustomMetadata: map[string]any{"owner": "team-a"}}); err != nil {
		t.Fatal(err)
	}
	meta, _ = kv.GetMetadata(ctx, "app/db")
	if meta.MaxVersions != 2 || meta.CustomMetadata["owner"] != "team-a" {
		t.Fatalf("metadata after put = %+v", meta)
	}
	if err := kv.DeleteMetadata(ctx, "app/db"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.GetMetadata(ctx, "app/db"); err == nil {
		t.Fatal("metadata still there after delete-all")
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestMountsAndUIPreflight(t *testing.T) {
	ts := startServer(t, true)
	ctx := context.Background()
	if err := ts.client.Sys().Mount("team", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	mounts, err := ts.client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if m := mounts["team/"]; m == nil || m.Type != "kv" || m.Options["version"] != "2" {
		t.Fatalf("mounts = %v", mounts)
	}
	if _, err := ts.client.KVv2("team").Put(ctx, "x", map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	ui, err := ts.client.Logical().Read("sys/internal/ui/mounts/team/x")
	if err != nil {
		t.Fatal(err)
	}
	if ui.Data["path"] != "team/" || ui.Data["type"] != "kv" {
		t.Fatalf("ui mounts = %v", ui.Data)
	}
	if err := ts.client.Sys().Mount("bad", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); statusOf(err) != 400 {
		t.Fatalf("kv v1 mount: %v", err)
	}
	if err := ts.client.Sys().Mount("team/nested", &vault.MountInput{Type: "kv-v2"}); statusOf(err) != 400 {
		t.Fatalf("overlapping mount: %v", err)
	}
	if err := ts.client.Sys().Unmount("team"); err != nil {
		t.Fatal(err)
	}
	if code, body := ts.raw(t, "GET", "/v1/team/data/x", ts.root, nil); code != http.StatusNotFound {
		t.Fatalf("read from removed mount: %d %s", code, body)
	}
}

func TestTokenTree(t *testing.T) {
	ts := startServer(t, true)
	auth := ts.client.Auth().Token()
	if err := ts.client.Sys().PutPolicy("creator", `path "auth/token/create" { capabilities = ["update"] }`); err != nil {
		t.Fatal(err)
	}
	parent, err := auth.Create(&vault.TokenCreateRequest{Policies: []string{"creator"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(parent.Auth.ClientToken, "evs.") {
		t.Fatalf("token %q lacks the evs. prefix", parent.Auth.ClientToken)
	}
	pc := ts.newClient(t, parent.Auth.ClientToken)
	child, err := pc.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"creator"}})
	if err != nil {
		t.Fatal(err)
	}
	cc := ts.newClient(t, child.Auth.ClientToken)
	grand, err := cc.Auth().Token().Create(&vault.TokenCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// A child cannot widen its policies.
	if _, err := pc.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"root"}}); statusOf(err) != 400 && statusOf(err) != 403 {
		t.Fatalf("widening child: %v", err)
	}
	self, err := cc.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatal(err)
	}
	if self.Data["accessor"] != child.Auth.Accessor {
		t.Fatalf("lookup-self accessor = %v", self.Data["accessor"])
	}
	if _, err := auth.LookupAccessor(grand.Auth.Accessor); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Renew(parent.Auth.ClientToken, 600); err != nil {
		t.Fatal(err)
	}
	// Revoking the parent revokes the whole tree.
	if err := auth.RevokeTree(parent.Auth.ClientToken); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"parent": parent.Auth.ClientToken, "child": child.Auth.ClientToken, "grandchild": grand.Auth.ClientToken} {
		if _, err := ts.newClient(t, tok).Auth().Token().LookupSelf(); statusOf(err) != http.StatusForbidden {
			t.Errorf("%s still valid after parent revoke: %v", name, err)
		}
	}
	// revoke-orphan keeps the children, now orphans.
	p2, _ := auth.Create(&vault.TokenCreateRequest{Policies: []string{"creator"}})
	c2, err := ts.newClient(t, p2.Auth.ClientToken).Auth().Token().Create(&vault.TokenCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.RevokeOrphan(p2.Auth.ClientToken); err != nil {
		t.Fatal(err)
	}
	s, err := ts.newClient(t, c2.Auth.ClientToken).Auth().Token().LookupSelf()
	if err != nil {
		t.Fatalf("orphaned child lost: %v", err)
	}
	if s.Data["orphan"] != true {
		t.Fatalf("child not marked orphan: %v", s.Data["orphan"])
	}
	// num_uses: a token with two uses works twice.
	limited, _ := auth.Create(&vault.TokenCreateRequest{Policies: []string{"default"}, NumUses: 2})
	lc := ts.newClient(t, limited.Auth.ClientToken)
	for i := 0; i < 2; i++ {
		if _, err := lc.Auth().Token().LookupSelf(); err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
	}
	if _, err := lc.Auth().Token().LookupSelf(); statusOf(err) != http.StatusForbidden {
		t.Fatalf("third use: %v", err)
	}
}

func TestPolicyEnforcement(t *testing.T) {
	ts := startServer(t, true)
	ctx := context.Background()
	sys := ts.client.Sys()
	// Cases from Vault's priority-matching documentation.
	const rules = `
path "secret/data/*" { capabilities = ["read"] }
path "secret/data/team/+/config" { capabilities = ["create", "read", "update"] }
path "secret/data/team/admin/config" { capabilities = ["deny"] }
path "secret/metadata/*" { capabilities = ["list"] }
`
	if err := sys.PutPolicy("app", rules); err != nil {
		t.Fatal(err)
	}
	got, err := sys.GetPolicy("app")
	if err != nil || !strings.Contains(got, "team/+/config") {
		t.Fatalf("read back = %q, %v", got, err)
	}
	for _, p := range []string{"team/a/config", "team/admin/config", "plain"} {
		if _, err := ts.client.KVv2("secret").Put(ctx, p, map[string]any{"v": "1"}); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := ts.client.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	c := ts.newClient(t, tok.Auth.ClientToken)
	kv := c.KVv2("secret")
	if _, err := kv.Get(ctx, "plain"); err != nil {
		t.Errorf("read allowed by secret/data/*: %v", err)
	}
	if _, err := kv.Put(ctx, "plain", map[string]any{"v": "2"}); statusOf(err) != 403 {
		t.Errorf("write under read-only glob: %v", err)
	}
	if _, err := kv.Put(ctx, "team/a/config", map[string]any{"v": "2"}); err != nil {
		t.Errorf("write allowed by the + rule: %v", err)
	}
	if _, err := kv.Get(ctx, "team/admin/config"); statusOf(err) != 403 {
		t.Errorf("deny on the exact path must win: %v", err)
	}
	if err := sys.PutPolicy("broken", `path "x" { capabilities = ["fly"] }`); statusOf(err) != 400 {
		t.Errorf("bad HCL: %v", err)
	}
	if err := sys.DeletePolicy("root"); statusOf(err) != 400 {
		t.Errorf("deleting root: %v", err)
	}
	names, err := sys.ListPolicies()
	if err != nil {
		t.Fatal(err)
	}
	if !contains(names, "app") || !contains(names, "default") {
		t.Errorf("policies = %v", names)
	}
	caps, err := c.Sys().CapabilitiesSelf("secret/data/team/admin/config")
	if err != nil || len(caps) != 1 || caps[0] != "deny" {
		t.Errorf("capabilities-self = %v, %v", caps, err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestInitUnsealSeal(t *testing.T) {
	ts := startServer(t, false)
	sys := ts.client.Sys()
	st, err := sys.SealStatus()
	if err != nil {
		t.Fatal(err)
	}
	if st.Initialized || !st.Sealed {
		t.Fatalf("fresh server status = %+v", st)
	}
	if _, err := sys.Init(&vault.InitRequest{SecretShares: 3, SecretThreshold: 5}); statusOf(err) != 400 {
		t.Fatalf("threshold > shares: %v", err)
	}
	init, err := sys.Init(&vault.InitRequest{SecretShares: 5, SecretThreshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(init.Keys) != 5 || init.RootToken == "" {
		t.Fatalf("init = %d keys, root %q", len(init.Keys), init.RootToken)
	}
	if _, err := sys.Init(&vault.InitRequest{SecretShares: 1, SecretThreshold: 1}); statusOf(err) != 400 {
		t.Fatalf("second init: %v", err)
	}
	root := ts.newClient(t, init.RootToken)
	// Sealed: every other request is 503 with Vault's message.
	code, body := ts.raw(t, "GET", "/v1/secret/data/x", init.RootToken, nil)
	if code != 503 || !strings.Contains(body, "Vault is sealed") {
		t.Fatalf("sealed read = %d %s", code, body)
	}
	for i, k := range []string{init.Keys[4], init.KeysB64[1]} {
		st, err := sys.Unseal(k)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Sealed || st.Progress != i+1 {
			t.Fatalf("after share %d: %+v", i+1, st)
		}
	}
	st, err = sys.Unseal(init.Keys[0])
	if err != nil || st.Sealed {
		t.Fatalf("after threshold: %+v %v", st, err)
	}
	if _, err := root.KVv2("secret").Put(context.Background(), "k", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().Seal(); err != nil {
		t.Fatal(err)
	}
	if _, err := root.KVv2("secret").Get(context.Background(), "k"); statusOf(err) != 503 {
		t.Fatalf("read after seal: %v", err)
	}
	// A share that conflicts with one already given is a 400, not a 500.
	if _, err := sys.Unseal(init.Keys[0]); err != nil {
		t.Fatal(err)
	}
	bad := []byte(init.Keys[0])
	if bad[0] == 'a' {
		bad[0] = 'b'
	} else {
		bad[0] = 'a'
	}
	if _, err := sys.Unseal(string(bad)); statusOf(err) != 400 {
		t.Fatalf("conflicting share: %v", err)
	}
	if _, err := sys.ResetUnsealProcess(); err != nil {
		t.Fatal(err)
	}
	// A wrong share set fails and resets progress.
	other, _ := sys.Unseal(init.Keys[0])
	if other.Progress != 1 {
		t.Fatalf("progress = %d", other.Progress)
	}
	if _, err := sys.ResetUnsealProcess(); err != nil {
		t.Fatal(err)
	}
	for _, k := range init.Keys[2:] {
		st, err = sys.Unseal(k)
		if err != nil {
			t.Fatal(err)
		}
	}
	if st.Sealed {
		t.Fatal("still sealed after three fresh shares")
	}
	s, err := root.KVv2("secret").Get(context.Background(), "k")
	if err != nil || s.Data["v"] != "1" {
		t.Fatalf("data after reseal/unseal: %v %v", s, err)
	}
	// Health reflects state, with Vault's code overrides.
	code, _ = ts.raw(t, "GET", "/v1/sys/health", "", nil)
	if code != 200 {
		t.Fatalf("health unsealed = %d", code)
	}
	_ = root.Sys().Seal()
	code, _ = ts.raw(t, "GET", "/v1/sys/health", "", nil)
	if code != 503 {
		t.Fatalf("health sealed = %d", code)
	}
	code, _ = ts.raw(t, "GET", "/v1/sys/health?sealedcode=299", "", nil)
	if code != 299 {
		t.Fatalf("health sealedcode = %d", code)
	}
}

func TestRotate(t *testing.T) {
	ts := startServer(t, true)
	ctx := context.Background()
	kv := ts.client.KVv2("secret")
	if _, err := kv.Put(ctx, "before", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	if err := ts.client.Sys().Rotate(); err != nil {
		t.Fatal(err)
	}
	ks, err := ts.client.Sys().KeyStatus()
	if err != nil || ks.Term != 2 {
		t.Fatalf("key status = %+v %v", ks, err)
	}
	if _, err := kv.Put(ctx, "after", map[string]any{"v": "2"}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"before", "after"} {
		if _, err := kv.Get(ctx, k); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
}

func TestBadInput(t *testing.T) {
	ts := startServer(t, true)
	if _, err := ts.client.KVv2("secret").Put(context.Background(), "seed", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	big := `{"data":{"v":"` + strings.Repeat("a", 2<<20) + `"}}`
	cases := []struct {
		name, method, path, body string
		want                     int
		msg                      string
	}{
		{"malformed json", "POST", "/v1/secret/data/x", `{"data":`, 400, "failed to parse JSON"},
		{"not an object", "POST", "/v1/secret/data/x", `[1,2]`, 400, "JSON object"},
		{"data wrong type", "POST", "/v1/secret/data/x", `{"data":"str"}`, 400, "data"},
		{"unknown field", "POST", "/v1/secret/data/x", `{"data":{"a":"b"},"bogus":1}`, 400, "bogus"},
		{"oversized body", "POST", "/v1/secret/data/x", big, 413, "larger than"},
		{"dotdot", "GET", "/v1/secret/data/a/%2e%2e/b", "", 400, ".."},
		{"double slash", "GET", "/v1/secret/data/a//b", "", 400, "empty segment"},
		{"nul", "GET", "/v1/secret/data/a%00b", "", 400, "control character"},
		{"unknown mount", "GET", "/v1/nomount/data/x", "", 404, "no handler"},
		{"bad hcl", "PUT", "/v1/sys/policies/acl/bad", `{"policy":"path \"x\" {"}`, 400, ""},
		{"policy wrong type", "PUT", "/v1/sys/policies/acl/bad", `{"policy":42}`, 400, "policy"},
		{"token ttl wrong", "POST", "/v1/auth/token/create", `{"ttl":"forever"}`, 400, "ttl"},
		{"token policies wrong", "POST", "/v1/auth/token/create", `{"policies":{"a":1}}`, 400, "policies"},
		{"unseal bad key", "PUT", "/v1/sys/unseal", `{"key":"zz"}`, 400, "key"},
		{"init unknown field", "PUT", "/v1/sys/init", `{"secret_shares":1,"nope":true}`, 400, "nope"},
		{"method", "TRACE", "/v1/secret/data/x", "", 405, ""},
		{"health code", "GET", "/v1/sys/health?sealedcode=abc", "", 400, "sealedcode"},
		{"mount config key", "POST", "/v1/sys/mounts/m1", `{"type":"kv-v2","config":{"bogus":1}}`, 400, "bogus"},
		{"mount negative ttl", "POST", "/v1/sys/mounts/m2", `{"type":"kv-v2","config":{"default_lease_ttl":"-5s"}}`, 400, "default_lease_ttl"},
		{"mount reserved", "POST", "/v1/sys/mounts/sys/x", `{"type":"kv-v2"}`, 400, "reserved"},
		{"policy number", "PUT", "/v1/sys/policies/acl/p", `{"policy":5}`, 400, "expected a string"},
		{"no v1", "GET", "/secret/data/x", "", 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.snapshot(t)
			code, body := ts.raw(t, tc.method, tc.path, ts.root, []byte(tc.body))
			if code != tc.want {
				t.Fatalf("status = %d, want %d; body %s", code, tc.want, body)
			}
			var eb struct{ Errors []string }
			if err := json.Unmarshal([]byte(body), &eb); err != nil && tc.method != "TRACE" {
				t.Fatalf("error body is not Vault's shape: %q", body)
			}
			if tc.msg != "" && !strings.Contains(strings.Join(eb.Errors, " "), tc.msg) {
				t.Fatalf("errors %q do not mention %q", eb.Errors, tc.msg)
			}
			if !equalMaps(before, ts.snapshot(t)) {
				t.Fatal("a failed request changed storage")
			}
		})
	}
	// A request for a wrapped response is refused, never answered in clear.
	req, _ := http.NewRequest("GET", ts.addr+"/v1/secret/data/seed", nil)
	req.Header.Set("X-Vault-Token", ts.root)
	req.Header.Set("X-Vault-Wrap-TTL", "60s")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || strings.Contains(string(body), `"v"`) {
		t.Fatalf("wrap request: %d %s", resp.StatusCode, body)
	}
	// An unmounted path is 404 for a caller allowed there, 403 for others.
	limited, err := ts.client.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := ts.raw(t, "GET", "/v1/nomount/x", limited.Auth.ClientToken, nil); code != 403 {
		t.Fatalf("unmounted path, limited token: %d, want 403", code)
	}
	// No token, bad token: 403 with Vault's message.
	for _, tok := range []string{"", "evs.nope"} {
		code, body := ts.raw(t, "GET", "/v1/secret/data/seed", tok, nil)
		if code != 403 || !strings.Contains(body, "permission denied") {
			t.Fatalf("token %q: %d %s", tok, code, body)
		}
	}
}

func TestEnvelopeShape(t *testing.T) {
	ts := startServer(t, true)
	if _, err := ts.client.KVv2("secret").Put(context.Background(), "shape", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	code, body := ts.raw(t, "GET", "/v1/secret/data/shape", ts.root, nil)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth"} {
		if _, ok := env[k]; !ok {
			t.Errorf("envelope lacks %q: %s", k, body)
		}
	}
}

func TestCreateVersusUpdateCapability(t *testing.T) {
	ts := startServer(t, true)
	ctx := context.Background()
	if err := ts.client.Sys().PutPolicy("create-only", `path "secret/data/*" { capabilities = ["create", "read"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.client.KVv2("secret").Put(ctx, "exists", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	tok, err := ts.client.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"create-only"}})
	if err != nil {
		t.Fatal(err)
	}
	kv := ts.newClient(t, tok.Auth.ClientToken).KVv2("secret")
	if _, err := kv.Put(ctx, "new", map[string]any{"v": "1"}); err != nil {
		t.Fatalf("create of a new key: %v", err)
	}
	if _, err := kv.Put(ctx, "exists", map[string]any{"v": "2"}); statusOf(err) != 403 {
		t.Fatalf("overwrite with only create: %v", err)
	}
	code, _ := ts.raw(t, "PATCH", "/v1/secret/data/exists", ts.root, []byte(`{"data":{"v":"3"}}`))
	if code != http.StatusUnsupportedMediaType {
		t.Fatalf("PATCH without merge-patch content type = %d", code)
	}
}

func TestDevUnsealKeyAndLeader(t *testing.T) {
	phys := inmem.New()
	srv, err := httpapi.New(httpapi.Config{Physical: phys})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	root, key, err := srv.InitDev(context.Background(), "root")
	if err != nil || root != "root" || len(key) != 32 {
		t.Fatalf("InitDev = %q, %d-byte key, %v", root, len(key), err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	defer hs.Close()
	ts := &testServer{addr: "http://" + ln.Addr().String(), root: root}
	c := ts.newClient(t, root)
	if err := c.Sys().Seal(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Sys().Unseal(hex.EncodeToString(key))
	if err != nil || st.Sealed {
		t.Fatalf("unseal a dev server with its key: %+v %v", st, err)
	}
	leader, err := c.Sys().Leader()
	if err != nil || leader.HAEnabled {
		t.Fatalf("sys/leader = %+v, %v", leader, err)
	}
}

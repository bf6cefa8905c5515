package httpapi_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// zoneClient returns a client of zone ns acting with token.
func (ts *testServer) zoneClient(t *testing.T, ns, token string) *vault.Client {
	t.Helper()
	c := ts.newClient(t, token)
	c.SetNamespace(ns)
	return c
}

// createZone creates a zone and returns a root token of it.
func (ts *testServer) createZone(t *testing.T, name string) string {
	t.Helper()
	if _, err := ts.client.Logical().Write("sys/zones/"+name, map[string]any{
		"description": "zone " + name, "labels": map[string]any{"region": "eu-west", "site": name},
	}); err != nil {
		t.Fatalf("create zone %s: %v", name, err)
	}
	s, err := ts.client.Logical().Write("sys/zones/"+name+"/root-token", nil)
	if err != nil {
		t.Fatalf("root token of %s: %v", name, err)
	}
	return s.Auth.ClientToken
}

func TestZoneIsolation(t *testing.T) {
	ts := startServer(t, true)
	ctx := context.Background()
	tokA := ts.createZone(t, "site-a")
	tokB := ts.createZone(t, "site-b")

	a := ts.zoneClient(t, "site-a", tokA)
	b := ts.zoneClient(t, "site-b", tokB)
	if _, err := a.KVv2("secret").Put(ctx, "db", map[string]any{"password": "only-in-a"}); err != nil {
		t.Fatal(err)
	}
	if s, err := a.KVv2("secret").Get(ctx, "db"); err != nil || s.Data["password"] != "only-in-a" {
		t.Fatalf("zone A reads its own secret: %v %v", s, err)
	}
	// Zone B has its own, empty, secret/ mount: A's secret does not exist there.
	if _, err := b.KVv2("secret").Get(ctx, "db"); statusOf(err) != 0 && statusOf(err) != http.StatusNotFound {
		t.Fatalf("zone B reading A's path: %v", err)
	} else if err == nil {
		t.Fatal("zone B sees zone A's secret")
	}
	// Tokens are bound to their zone: A's token is refused in B, in the root
	// zone, and the root zone's token is refused in A.
	for name, c := range map[string]*vault.Client{
		"A token in B":    ts.zoneClient(t, "site-b", tokA),
		"A token in root": ts.newClient(t, tokA),
		"root token in A": ts.zoneClient(t, "site-a", ts.root),
	} {
		if _, err := c.Auth().Token().LookupSelf(); statusOf(err) != http.StatusForbidden {
			t.Errorf("%s: %v, want 403", name, err)
		}
	}
	// Policies and mounts are per zone.
	if err := a.Sys().PutPolicy("app", `path "secret/data/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if names, err := b.Sys().ListPolicies(); err != nil || contains(names, "app") {
		t.Fatalf("zone B policies = %v, %v", names, err)
	}
	if err := a.Sys().Mount("extra", &vault.MountInput{Type: "kv-v2"}); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Sys().ListMounts(); err != nil || m["extra/"] != nil {
		t.Fatalf("zone B mounts = %v, %v", m, err)
	}
	// The blast-radius map: what a credential of zone A could reach.
	if err := a.Sys().PutPolicy("ops", `path "*" { capabilities = ["read", "list"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := a.KVv2("secret").Put(ctx, "team/x", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	br, err := ts.client.Logical().Read("sys/zones/site-a/blast-radius")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(br.Data["secrets"]) != "2" || len(br.Data["cross_zone_grants"].([]any)) != 0 {
		t.Fatalf("blast radius of A: %v", br.Data)
	}
	if f := fmt.Sprint(br.Data["findings"]); !strings.Contains(f, `policy "ops" grants list,read on every path`) || !strings.Contains(f, "1 root token(s)") {
		t.Fatalf("findings = %s", f)
	}
	if brB, err := ts.client.Logical().Read("sys/zones/site-b/blast-radius"); err != nil || fmt.Sprint(brB.Data["secrets"]) != "0" {
		t.Fatalf("blast radius of B: %v %v", brB, err)
	}
	if brRoot, err := ts.client.Logical().Read("sys/zones/-/blast-radius"); err != nil || brRoot.Data["zone"] != "root" {
		t.Fatalf("blast radius of the root zone: %v %v", brRoot, err)
	}
	// A zone token cannot manage zones or seal the server.
	if err := a.Sys().Seal(); statusOf(err) != http.StatusNotFound {
		t.Fatalf("sys/seal from a zone: %v", err)
	}
	if _, err := a.Logical().Write("sys/zones/evil", nil); statusOf(err) != http.StatusNotFound {
		t.Fatalf("sys/zones from a zone: %v", err)
	}
	// Child tokens stay in their parent's zone.
	child, err := a.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.zoneClient(t, "site-a", child.Auth.ClientToken).KVv2("secret").Get(ctx, "db"); err != nil {
		t.Fatalf("child in its zone: %v", err)
	}
	if _, err := ts.newClient(t, child.Auth.ClientToken).Auth().Token().LookupSelf(); statusOf(err) != http.StatusForbidden {
		t.Fatalf("child outside its zone: %v", err)
	}
	// Rotating the root key rewraps the zone KEKs only (one key document per
	// zone changes, no record does), and every zone keeps working.
	before := ts.snapshot(t)
	if err := ts.client.Sys().Rotate(); err != nil {
		t.Fatal(err)
	}
	after := ts.snapshot(t)
	for k, v := range before {
		if strings.HasPrefix(k, "zone/") && !strings.HasPrefix(k, "zone/zones/keys/") && after[k] != v {
			t.Errorf("the root rotation rewrote the zone record %s", k)
		}
	}
	if s, err := a.KVv2("secret").Get(ctx, "db"); err != nil || s.Data["password"] != "only-in-a" {
		t.Fatalf("zone A after a root rotation: %v %v", s, err)
	}
	// Zones, their keys and their tokens survive a seal and unseal.
	if err := ts.client.Sys().Seal(); err != nil {
		t.Fatal(err)
	}
	if st, err := ts.client.Sys().Unseal(hex.EncodeToString(ts.key)); err != nil || st.Sealed {
		t.Fatalf("unseal: %v %v", st, err)
	}
	if s, err := a.KVv2("secret").Get(ctx, "db"); err != nil || s.Data["password"] != "only-in-a" {
		t.Fatalf("zone A after seal and unseal: %v %v", s, err)
	}
	// Zone records are not stored in clear anywhere.
	for k, v := range ts.snapshot(t) {
		if strings.Contains(v, "only-in-a") || strings.Contains(k, "only-in-a") {
			t.Fatalf("secret in clear at %q", k)
		}
	}
}

func TestZoneLifeCycle(t *testing.T) {
	ts := startServer(t, true)
	ctx := context.Background()
	// Bad names and unknown zones.
	for _, bad := range []string{"Bad_Name", "root", "-x", strings.Repeat("a", 64)} {
		if _, err := ts.client.Logical().Write("sys/zones/"+bad, nil); statusOf(err) != 400 {
			t.Fatalf("zone name %q: %v", bad, err)
		}
	}
	if _, err := ts.client.Logical().Write("sys/zones/z1", map[string]any{"labels": "x"}); statusOf(err) != 400 {
		t.Fatalf("labels of the wrong type: %v", err)
	}
	code, body := ts.rawNS(t, "GET", "/v1/secret/data/x", ts.root, "nowhere")
	if code != 404 || !strings.Contains(body, `zone \"nowhere\" does not exist`) {
		t.Fatalf("unknown zone: %d %s", code, body)
	}
	tok := ts.createZone(t, "z1")
	if _, err := ts.client.Logical().Write("sys/zones/z1", nil); statusOf(err) != 400 {
		t.Fatalf("creating a zone twice: %v", err)
	}
	z, err := ts.client.Logical().Read("sys/zones/z1")
	if err != nil || z.Data["description"] != "zone z1" || z.Data["labels"].(map[string]any)["region"] != "eu-west" {
		t.Fatalf("read zone: %v %v", z, err)
	}
	list, err := ts.client.Logical().List("sys/zones")
	if err != nil || len(list.Data["keys"].([]any)) != 1 {
		t.Fatalf("list zones: %v %v", list, err)
	}
	// Rotate while the zone holds secrets: every secret stays readable and
	// the rewrap moves them all to the new key version.
	kv := ts.zoneClient(t, "z1", tok).KVv2("secret")
	for _, k := range []string{"a", "b", "c"} {
		if _, err := kv.Put(ctx, k, map[string]any{"v": k}); err != nil {
			t.Fatal(err)
		}
	}
	rot, err := ts.client.Logical().Write("sys/zones/z1/rotate", nil)
	if err != nil || rot.Data["active_version"] == nil {
		t.Fatalf("rotate: %v %v", rot, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ks, err := ts.client.Logical().Read("sys/zones/z1/key-status")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ks.Data["remaining"]) == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rewrap did not finish: %v", ks.Data)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, k := range []string{"a", "b", "c"} {
		if s, err := kv.Get(ctx, k); err != nil || s.Data["v"] != k {
			t.Fatalf("after rewrap %s: %v %v", k, s, err)
		}
	}
	// A zone with secrets cannot be deleted; once emptied it can.
	if _, err := ts.client.Logical().Delete("sys/zones/z1"); statusOf(err) != 400 {
		t.Fatalf("deleting a zone with secrets: %v", err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if err := kv.DeleteMetadata(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.zoneClient(t, "z1", tok).Auth().Token().RevokeSelf(""); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.client.Logical().Delete("sys/zones/z1"); err != nil {
		t.Fatalf("deleting an empty zone: %v", err)
	}
	if code, _ := ts.rawNS(t, "GET", "/v1/secret/data/a", tok, "z1"); code != 404 {
		t.Fatalf("deleted zone still answers: %d", code)
	}
}

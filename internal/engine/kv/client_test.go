package kv

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// TestVaultAPIClientKVv2 drives the engine with the real
// github.com/hashicorp/vault/api KVv2 helpers, through vaultHTTP (a minimal
// stand-in for httpapi defined in helpers_test.go).
func TestVaultAPIClientKVv2(t *testing.T) {
	h := newHarness(t)
	srv := httptest.NewServer(&vaultHTTP{mount: "secret/", h: h.kv})
	defer srv.Close()
	cfg := vault.DefaultConfig()
	cfg.Address = srv.URL
	cfg.MaxRetries = 0
	client, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken("test")
	ctx := context.Background()
	kv := client.KVv2("secret")

	s, err := kv.Put(ctx, "app/db", map[string]any{"user": "admin", "password": "s3cret"})
	if err != nil || s.VersionMetadata.Version != 1 || !s.VersionMetadata.CreatedTime.Equal(start) {
		t.Fatalf("Put: %+v %v", s, err)
	}
	if _, err := kv.Put(ctx, "app/db", map[string]any{"x": "y"}, vault.WithCheckAndSet(0)); err == nil {
		t.Fatal("Put with cas 0 on an existing key succeeded")
	}
	h.clock.Advance(time.Second)
	if _, err := kv.Put(ctx, "app/db", map[string]any{"user": "admin", "password": "n3w"}, vault.WithCheckAndSet(1)); err != nil {
		t.Fatalf("Put cas 1: %v", err)
	}
	got, err := kv.Get(ctx, "app/db")
	if err != nil || got.Data["password"] != "n3w" || got.VersionMetadata.Version != 2 {
		t.Fatalf("Get: %+v %v", got, err)
	}
	old, err := kv.GetVersion(ctx, "app/db", 1)
	if err != nil || old.Data["password"] != "s3cret" {
		t.Fatalf("GetVersion: %+v %v", old, err)
	}

	p, err := kv.Patch(ctx, "app/db", map[string]any{"password": "patched", "user": nil})
	if err != nil || p.VersionMetadata.Version != 3 {
		t.Fatalf("Patch: %+v %v", p, err)
	}
	got, _ = kv.Get(ctx, "app/db")
	if got.Data["password"] != "patched" || got.Data["user"] != nil || len(got.Data) != 1 {
		t.Errorf("after Patch: %v", got.Data)
	}
	if _, err := kv.Patch(ctx, "nope", map[string]any{"a": "b"}); !errors.Is(err, vault.ErrSecretNotFound) {
		t.Errorf("Patch missing: %v", err)
	}
	if _, err := kv.Get(ctx, "nope"); !errors.Is(err, vault.ErrSecretNotFound) {
		t.Errorf("Get missing: %v", err)
	}

	if err := kv.PutMetadata(ctx, "app/db", vault.KVMetadataPutInput{
		MaxVersions: 7, DeleteVersionAfter: 2 * time.Hour, CustomMetadata: map[string]any{"owner": "team-a"},
	}); err != nil {
		t.Fatalf("PutMetadata: %v", err)
	}
	md, err := kv.GetMetadata(ctx, "app/db")
	if err != nil || md.DeleteVersionAfter != 2*time.Hour || md.MaxVersions != 7 {
		t.Fatalf("GetMetadata: %+v %v", md, err)
	}
	// Rollback (below) refuses versions with a deletion_time, so clear it.
	maxV, noDVA := 8, time.Duration(0)
	if err := kv.PatchMetadata(ctx, "app/db", vault.KVMetadataPatchInput{MaxVersions: &maxV, DeleteVersionAfter: &noDVA,
		CustomMetadata: map[string]any{"env": "prod"}}); err != nil {
		t.Fatalf("PatchMetadata: %v", err)
	}
	md, err = kv.GetMetadata(ctx, "app/db")
	if err != nil {
		t.Fatalf("GetMetadata: %v", err)
	}
	if md.MaxVersions != 8 || md.DeleteVersionAfter != 0 || md.CurrentVersion != 3 ||
		md.CustomMetadata["owner"] != "team-a" || md.CustomMetadata["env"] != "prod" || len(md.Versions) != 3 {
		t.Errorf("metadata %+v", md)
	}
	if got, _ := kv.Get(ctx, "app/db"); got.CustomMetadata["env"] != "prod" {
		t.Errorf("custom metadata on Get: %v", got.CustomMetadata)
	}

	if err := kv.Delete(ctx, "app/db"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	got, err = kv.Get(ctx, "app/db")
	if err != nil || got.Data != nil || got.VersionMetadata.DeletionTime.IsZero() {
		t.Fatalf("Get after Delete: %+v %v", got, err)
	}
	if err := kv.Undelete(ctx, "app/db", []int{3}); err != nil {
		t.Fatalf("Undelete: %v", err)
	}
	if got, _ := kv.Get(ctx, "app/db"); got.Data["password"] != "patched" {
		t.Errorf("after Undelete: %v", got.Data)
	}
	if err := kv.DeleteVersions(ctx, "app/db", []int{1}); err != nil {
		t.Fatalf("DeleteVersions: %v", err)
	}
	if v1, err := kv.GetVersion(ctx, "app/db", 1); err != nil || v1.Data != nil {
		t.Errorf("v1 after DeleteVersions: %+v %v", v1, err)
	}
	if err := kv.Destroy(ctx, "app/db", []int{2}); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if v2, err := kv.GetVersion(ctx, "app/db", 2); err != nil || !v2.VersionMetadata.Destroyed {
		t.Errorf("v2 after Destroy: %+v %v", v2, err)
	}
	list, err := kv.GetVersionsAsList(ctx, "app/db")
	if err != nil || len(list) != 3 || list[0].Version != 1 || !list[1].Destroyed {
		t.Errorf("GetVersionsAsList: %+v %v", list, err)
	}
	rb, err := kv.Rollback(ctx, "app/db", 3)
	if err != nil || rb.VersionMetadata.Version != 4 {
		t.Fatalf("Rollback: %+v %v", rb, err)
	}

	// LIST through the client's Logical().List (the HTTP LIST verb).
	if _, err := kv.Put(ctx, "app/cache", map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	ls, err := client.Logical().ListWithContext(ctx, "secret/metadata/app")
	if err != nil || ls == nil {
		t.Fatalf("List: %v %v", ls, err)
	}
	if keys := ls.Data["keys"].([]any); len(keys) != 2 || keys[0] != "cache" || keys[1] != "db" {
		t.Errorf("List keys %v", ls.Data["keys"])
	}

	if err := kv.DeleteMetadata(ctx, "app/db"); err != nil {
		t.Fatalf("DeleteMetadata: %v", err)
	}
	if _, err := kv.GetMetadata(ctx, "app/db"); !errors.Is(err, vault.ErrSecretNotFound) {
		t.Errorf("GetMetadata after DeleteMetadata: %v", err)
	}
}

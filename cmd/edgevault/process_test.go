package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// TestRealProcess drives a real `edgevault server -config` process with the
// real Vault client: init, unseal, KV v2, a token tree, a policy, sealing,
// and a restart that keeps everything.
func TestRealProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := buildBinary(t)
	cfg, addr, db := serverFiles(t, "")
	proc := startProcess(t, bin, cfg, addr)
	stop := func() {
		proc.Process.Signal(syscall.SIGTERM)
		proc.Wait()
	}
	defer func() { stop() }()

	ctx := context.Background()
	c := client(t, addr, "")
	init, err := c.Sys().Init(&vault.InitRequest{SecretShares: 3, SecretThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	unseal := func() {
		t.Helper()
		for _, k := range init.Keys[:2] {
			if _, err := c.Sys().Unseal(k); err != nil {
				t.Fatal(err)
			}
		}
	}
	unseal()
	root := client(t, addr, init.RootToken)

	kv := root.KVv2("secret")
	if _, err := kv.Put(ctx, "app/db", map[string]any{"password": "p1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "app/db", map[string]any{"password": "p2"}, vault.WithCheckAndSet(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "app/db", map[string]any{"password": "stale"}, vault.WithCheckAndSet(1)); err == nil {
		t.Fatal("stale check-and-set accepted")
	}
	if err := root.Sys().PutPolicy("app", `path "secret/data/app/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	parent, err := root.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	appKV := client(t, addr, parent.Auth.ClientToken).KVv2("secret")
	if s, err := appKV.Get(ctx, "app/db"); err != nil || s.Data["password"] != "p2" {
		t.Fatalf("policy read: %v %v", s, err)
	}
	var re *vault.ResponseError
	if _, err := appKV.Put(ctx, "app/db", map[string]any{"x": "y"}); !errors.As(err, &re) || re.StatusCode != 403 {
		t.Fatalf("write with a read-only policy: %v", err)
	}

	// Sealed: 503 for the data, then unsealed again with two of the keys.
	if err := root.Sys().Seal(); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "app/db"); !errors.As(err, &re) || re.StatusCode != 503 {
		t.Fatalf("read while sealed: %v", err)
	}
	unseal()

	// A restart keeps the data, the policy and the token.
	stop()
	proc = startProcess(t, bin, cfg, addr)
	unseal()
	if s, err := appKV.Get(ctx, "app/db"); err != nil || s.Data["password"] != "p2" || s.VersionMetadata.Version != 2 {
		t.Fatalf("after restart: %+v %v", s, err)
	}
	if err := root.Auth().Token().RevokeTree(parent.Auth.ClientToken); err != nil {
		t.Fatal(err)
	}
	if _, err := appKV.Get(ctx, "app/db"); !errors.As(err, &re) || re.StatusCode != 403 {
		t.Fatalf("read with a revoked token: %v", err)
	}

	// logrotate: the audit file is moved away, SIGHUP reopens it at its path,
	// and the next entries go to the new file.
	auditFile := filepath.Join(filepath.Dir(db), "audit.log")
	if err := os.Rename(auditFile, auditFile+".1"); err != nil {
		t.Fatal(err)
	}
	if err := proc.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := kv.Get(ctx, "app/db"); err != nil {
			t.Fatal(err)
		}
		if raw, err := os.ReadFile(auditFile); err == nil && strings.Contains(string(raw), `"path":"secret/data/app/db"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("after SIGHUP no new audit file was written")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if raw, _ := os.ReadFile(auditFile + ".1"); !strings.Contains(string(raw), `"operation":"update"`) {
		t.Fatal("the rotated file lost its entries")
	}
}

// TestDevSealAutoUnseals runs a real server with seal "dev": initialised
// with recovery keys, it unseals itself after a restart from its key file.
func TestDevSealAutoUnseals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := buildBinary(t)
	cfg, addr, _ := serverFiles(t, fmt.Sprintf("seal \"dev\" {\n  key_file = %q\n}\n", filepath.Join(t.TempDir(), "seal.key")))
	proc := startProcess(t, bin, cfg, addr)
	defer func() {
		proc.Process.Signal(syscall.SIGTERM)
		proc.Wait()
	}()
	c := client(t, addr, "")
	init, err := c.Sys().Init(&vault.InitRequest{RecoveryShares: 1, RecoveryThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func() {
		t.Helper()
		for i := 0; i < 100; i++ {
			if st, err := c.Sys().SealStatus(); err == nil && !st.Sealed {
				if st.Type != "dev" {
					t.Fatalf("seal type %q", st.Type)
				}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("the dev seal did not unseal the server")
	}
	waitFor()
	kv := client(t, addr, init.RootToken).KVv2("secret")
	if _, err := kv.Put(context.Background(), "k", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	proc.Process.Signal(syscall.SIGTERM)
	proc.Wait()
	proc = startProcess(t, bin, cfg, addr)
	waitFor()
	if s, err := kv.Get(context.Background(), "k"); err != nil || s.Data["v"] != "1" {
		t.Fatalf("after restart: %v %v", s, err)
	}
}

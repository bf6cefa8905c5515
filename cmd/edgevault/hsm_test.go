package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/edgevault/edgevault/internal/barrier/pkcs11/softhsmtest"
)

// TestHSMAutoUnseal runs the server as a real process against a real
// SoftHSM2 token: the key is made with `edgevault operator hsm-keygen`,
// init hands out recovery keys, a restart auto-unseals and keeps the data,
// and an unreachable token or a wrong PIN leave the server up but sealed.
func TestHSMAutoUnseal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	softhsmtest.NewToken(t)
	bin := buildBinary(t)
	dir := t.TempDir()

	keygen := func(pinEnv string) ([]byte, error) {
		cmd := exec.Command(bin, "operator", "hsm-keygen", "-lib", softhsmtest.Lib,
			"-token-label", softhsmtest.TokenLabel, "-key-label", "edgevault-root")
		cmd.Env = append(os.Environ(), "EDGEVAULT_HSM_PIN="+pinEnv)
		return cmd.CombinedOutput()
	}
	if out, err := keygen(softhsmtest.PIN); err != nil {
		t.Fatalf("hsm-keygen: %v\n%s", err, out)
	}
	if out, err := keygen(softhsmtest.PIN); err == nil || !strings.Contains(string(out), "already exists") {
		t.Fatalf("second hsm-keygen with the same label: %v\n%s", err, out)
	}

	pinFile := filepath.Join(dir, "pin")
	writeFile(t, pinFile, softhsmtest.PIN+"\n")
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "server.hcl")
	writeConf := func(tokenLabel string) {
		writeFile(t, cfg, fmt.Sprintf(`listener "tcp" {
  address = %q
  tls_disable = true
}
storage "bolt" {
  path = %q
}
seal "pkcs11" {
  lib = %q
  token_label = %q
  key_label = "edgevault-root"
  pin_file = %q
}
`, addr, filepath.Join(dir, "ev.db"), softhsmtest.Lib, tokenLabel, pinFile))
	}
	writeConf(softhsmtest.TokenLabel)

	proc := startProcess(t, bin, cfg, addr)
	stop := func() {
		proc.Process.Signal(syscall.SIGTERM)
		proc.Wait()
	}
	c := client(t, addr, "")
	st, err := c.Sys().SealStatus()
	if err != nil || st.Type != "pkcs11" || !st.RecoverySeal || st.Initialized {
		stop()
		t.Fatalf("seal-status before init: %+v %v", st, err)
	}
	if _, err := c.Sys().Init(&vault.InitRequest{SecretShares: 1, SecretThreshold: 1}); err == nil || !strings.Contains(err.Error(), "secret_shares") {
		stop()
		t.Fatalf("init with secret shares on the pkcs11 seal: %v", err)
	}
	// The CLI sees the recovery seal and asks for recovery keys.
	initCmd := exec.Command(bin, "operator", "init", "-recovery-shares=3", "-recovery-threshold=2", "-format=json")
	initCmd.Env = append(os.Environ(), "EDGEVAULT_ADDR=http://"+addr)
	out, err := initCmd.Output()
	if err != nil {
		stop()
		t.Fatalf("edgevault operator init: %v", err)
	}
	var init vault.InitResponse
	if err := json.Unmarshal(out, &init); err != nil {
		stop()
		t.Fatalf("init output %q: %v", out, err)
	}
	if len(init.RecoveryKeys) != 3 || len(init.Keys) != 0 || init.RootToken == "" {
		stop()
		t.Fatalf("init response: %d recovery keys, %d unseal keys", len(init.RecoveryKeys), len(init.Keys))
	}
	waitUnsealed(t, c)
	ctx := context.Background()
	kv := client(t, addr, init.RootToken).KVv2("secret")
	if _, err := kv.Put(ctx, "hsm/app", map[string]any{"password": "before-restart"}); err != nil {
		stop()
		t.Fatal(err)
	}
	stop()

	// Restart: the server unseals itself with the HSM.
	proc = startProcess(t, bin, cfg, addr)
	waitUnsealed(t, c)
	s, err := kv.Get(ctx, "hsm/app")
	if err != nil || s.Data["password"] != "before-restart" {
		stop()
		t.Fatalf("read after restart: %v %v", s, err)
	}
	st, _ = c.Sys().SealStatus()
	if st.Type != "pkcs11" || !st.RecoverySeal || st.T != 2 || st.N != 3 {
		stop()
		t.Fatalf("seal-status after restart: %+v", st)
	}
	stop()

	// The HSM token is not there: the server starts, sealed, and says so.
	writeConf("no-such-token")
	proc = startProcess(t, bin, cfg, addr)
	time.Sleep(1500 * time.Millisecond)
	st, err = c.Sys().SealStatus()
	if err != nil || !st.Sealed || !st.Initialized || st.Type != "pkcs11" {
		stop()
		t.Fatalf("seal-status with the token missing: %+v %v", st, err)
	}
	if _, err := kv.Get(ctx, "hsm/app"); err == nil || !strings.Contains(err.Error(), "sealed") {
		stop()
		t.Fatalf("read while sealed: %v", err)
	}
	stop()

	// A wrong PIN: sealed, and the server does not keep retrying it.
	writeConf(softhsmtest.TokenLabel)
	writeFile(t, pinFile, "9999\n")
	proc = startProcess(t, bin, cfg, addr)
	time.Sleep(1500 * time.Millisecond)
	st, err = c.Sys().SealStatus()
	stop()
	if err != nil || !st.Sealed {
		t.Fatalf("seal-status with a wrong PIN: %+v %v", st, err)
	}
}

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitUnsealed polls seal-status until the server is unsealed.
func waitUnsealed(t *testing.T, c *vault.Client) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		st, err := c.Sys().SealStatus()
		if err == nil && !st.Sealed {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("server did not auto-unseal")
}

// TestHSMSealMigration migrates a real server's storage shamir → pkcs11 →
// shamir with `edgevault operator seal-migrate`, restarting the real
// process each time, and reads the same secret at every step.
func TestHSMSealMigration(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	softhsmtest.NewToken(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	t.Setenv("EDGEVAULT_HSM_PIN", softhsmtest.PIN)
	if out, err := exec.Command(bin, "operator", "hsm-keygen", "-lib", softhsmtest.Lib,
		"-token-label", softhsmtest.TokenLabel, "-key-label", "k").CombinedOutput(); err != nil {
		t.Fatalf("hsm-keygen: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	base := fmt.Sprintf("listener \"tcp\" {\n address = %q\n tls_disable = true\n}\nstorage \"bolt\" {\n path = %q\n}\n", addr, filepath.Join(dir, "ev.db"))
	shamirCfg := filepath.Join(dir, "shamir.hcl")
	hsmCfg := filepath.Join(dir, "hsm.hcl")
	writeFile(t, shamirCfg, base)
	writeFile(t, hsmCfg, base+fmt.Sprintf("seal \"pkcs11\" {\n lib = %q\n token_label = %q\n key_label = \"k\"\n}\n", softhsmtest.Lib, softhsmtest.TokenLabel))
	ctx := context.Background()

	// 1. Shamir.
	proc := startProcess(t, bin, shamirCfg, addr)
	stop := func() {
		proc.Process.Signal(syscall.SIGTERM)
		proc.Wait()
	}
	c := client(t, addr, "")
	init, err := c.Sys().Init(&vault.InitRequest{SecretShares: 3, SecretThreshold: 2})
	if err != nil {
		stop()
		t.Fatal(err)
	}
	for _, k := range init.Keys[:2] {
		c.Sys().Unseal(k)
	}
	kv := client(t, addr, init.RootToken).KVv2("secret")
	if _, err := kv.Put(ctx, "m/app", map[string]any{"v": "kept"}); err != nil {
		stop()
		t.Fatal(err)
	}
	stop()
	check := func(step string) {
		t.Helper()
		s, err := kv.Get(ctx, "m/app")
		if err != nil || s.Data["v"] != "kept" {
			stop()
			t.Fatalf("%s: read: %v %v", step, s, err)
		}
	}

	migrate := func(to string, keys []string, extra ...string) []string {
		t.Helper()
		args := append([]string{"operator", "seal-migrate", "-config", hsmCfg, "-to", to}, extra...)
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(strings.Join(keys, "\n") + "\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("seal-migrate -to %s: %v\n%s", to, err, out)
		}
		var got []string
		for _, line := range strings.Split(string(out), "\n") {
			if _, k, ok := strings.Cut(line, " Key "); ok {
				if _, v, ok := strings.Cut(k, ": "); ok {
					got = append(got, v)
				}
			}
		}
		return got
	}
	// A wrong unseal key is refused and changes nothing.
	bad := exec.Command(bin, "operator", "seal-migrate", "-config", hsmCfg, "-to", "pkcs11")
	bad.Stdin = strings.NewReader(init.Keys[0] + "\n" + init.Keys[0] + "\n")
	if out, err := bad.CombinedOutput(); err == nil {
		t.Fatalf("seal-migrate with a repeated key succeeded:\n%s", out)
	}

	// 2. shamir → pkcs11: the server unseals itself.
	recovery := migrate("pkcs11", init.Keys[1:3], "-shares", "3", "-threshold", "2")
	if len(recovery) != 3 {
		t.Fatalf("%d recovery keys", len(recovery))
	}
	proc = startProcess(t, bin, hsmCfg, addr)
	waitUnsealed(t, c)
	if st, _ := c.Sys().SealStatus(); st.Type != "pkcs11" || !st.RecoverySeal {
		stop()
		t.Fatalf("seal-status after migration to pkcs11: %+v", st)
	}
	check("after shamir → pkcs11")
	stop()

	// 3. pkcs11 → shamir with the recovery keys.
	unseal := migrate("shamir", recovery[:2], "-shares", "1", "-threshold", "1")
	if len(unseal) != 1 {
		t.Fatalf("%d unseal keys", len(unseal))
	}
	proc = startProcess(t, bin, shamirCfg, addr)
	defer stop()
	if st, err := c.Sys().Unseal(unseal[0]); err != nil || st.Sealed || st.Type != "shamir" {
		t.Fatalf("unseal after migration back: %+v %v", st, err)
	}
	check("after pkcs11 → shamir")
}

package main

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// TestRewrapSurvivesKill rotates a zone's key, kills the server with SIGKILL
// while the rewrap runs, restarts it, and checks that the rewrap finishes
// and every secret of the zone still reads back.
func TestRewrapSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	const secrets = 3000
	bin := buildBinary(t)
	cfg, addr, _ := serverFiles(t, "")
	proc := startProcess(t, bin, cfg, addr)
	defer func() {
		proc.Process.Signal(syscall.SIGTERM)
		proc.Wait()
	}()
	c := client(t, addr, "")
	init, err := c.Sys().Init(&vault.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sys().Unseal(init.Keys[0]); err != nil {
		t.Fatal(err)
	}
	root := client(t, addr, init.RootToken)
	if _, err := root.Logical().Write("sys/zones/edge", nil); err != nil {
		t.Fatal(err)
	}
	zt, err := root.Logical().Write("sys/zones/edge/root-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	fill := exec.Command(bin, "bench", "-op", "fill", "-address", "http://"+addr, "-token", zt.Auth.ClientToken,
		"-namespace", "edge", "-keys", fmt.Sprint(secrets), "-c", "16", "-format", "json")
	if out, err := fill.CombinedOutput(); err != nil {
		t.Fatalf("fill: %v\n%s", err, out)
	}

	if _, err := root.Logical().Write("sys/zones/edge/rotate", nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // let the rewrap start
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	proc.Wait()

	proc = startProcess(t, bin, cfg, addr)
	if st, err := c.Sys().Unseal(init.Keys[0]); err != nil || st.Sealed {
		t.Fatalf("unseal after kill: %+v %v", st, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ks, err := root.Logical().Read("sys/zones/edge/key-status")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ks.Data["remaining"]) == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rewrap did not resume and finish: %v", ks.Data)
		}
		time.Sleep(200 * time.Millisecond)
	}
	zc := client(t, addr, zt.Auth.ClientToken)
	zc.SetNamespace("edge")
	kv := zc.KVv2("secret")
	for i := 0; i < secrets; i++ {
		if s, err := kv.Get(context.Background(), fmt.Sprintf("bench/%d", i)); err != nil || s.Data["value"] == nil {
			t.Fatalf("secret bench/%d after a kill during rewrap: %v %v", i, s, err)
		}
	}
}

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// selfSigned writes a loopback server certificate and key to dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})))
	return certFile, keyFile
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agentGet reads path from the agent's local API.
func agentGet(t *testing.T, addr, token, path string) (int, http.Header, map[string]any, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/"+path, nil)
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	start := time.Now()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("agent %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, resp.Header, body, took
}

// The server and an agent as real processes over real mTLS: the agent
// serves its cache through a hung (SIGSTOP) and a killed (SIGKILL) server,
// saying how stale, refuses what it cannot serve at once, and starts from
// its cache while the server is down.
func TestAgentKeepsServingWhenTheServerDies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	addr, agentAddr := freeAddr(t), freeAddr(t)
	srvCfg := filepath.Join(dir, "server.hcl")
	writeFile(t, srvCfg, fmt.Sprintf("listener \"tcp\" {\n address = %q\n tls_cert_file = %q\n tls_key_file = %q\n}\nstorage \"bolt\" { path = %q }\n",
		addr, certFile, keyFile, filepath.Join(dir, "ev.db")))
	server := exec.Command(bin, "server", "-config", srvCfg)
	server.Stderr = os.Stderr
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { server.Process.Signal(syscall.SIGCONT); server.Process.Kill(); server.Wait() }()
	cfg := vault.DefaultConfig()
	cfg.Address, cfg.MaxRetries, cfg.Timeout = "https://"+addr, 0, 10*time.Second
	if err := cfg.ConfigureTLS(&vault.TLSConfig{CACert: certFile}); err != nil {
		t.Fatal(err)
	}
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server", func() bool { _, err := c.Sys().SealStatus(); return err == nil })
	init, err := c.Sys().Init(&vault.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sys().Unseal(init.Keys[0]); err != nil {
		t.Fatal(err)
	}
	c.SetToken(init.RootToken)
	if _, err := c.Logical().Write("sys/zones/edge", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	zt, err := c.Logical().Write("sys/zones/edge/root-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	z, _ := c.Clone()
	z.SetToken(zt.Auth.ClientToken)
	z.SetNamespace("edge")
	if err := z.Sys().PutPolicy("agent-cache", `path "secret/data/app/*" {
  capabilities = ["read"]
  cache { max_stale = "24h" }
}`); err != nil {
		t.Fatal(err)
	}
	if _, err := z.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "s3cret"}); err != nil {
		t.Fatal(err)
	}
	jt, err := z.Logical().Write("auth/attest/join-token", map[string]any{"agent_id": "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "jt"), jt.Data["join_token"].(string))
	agentCfg := filepath.Join(dir, "agent.hcl")
	state := filepath.Join(dir, "agent-state")
	writeFile(t, agentCfg, fmt.Sprintf("server {\n address = %q\n ca_cert = %q\n}\nzone = \"edge\"\njoin_token_file = %q\nstate_dir = %q\nlistener \"tcp\" { address = %q }\n",
		"https://"+addr, certFile, filepath.Join(dir, "jt"), state, agentAddr))
	startAgent := func() *exec.Cmd {
		a := exec.Command(bin, "agent", "-config", agentCfg)
		a.Stderr = os.Stderr
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		return a
	}
	agent := startAgent()
	defer func() { agent.Process.Kill(); agent.Wait() }()
	mode := func() string {
		_, _, body, _ := agentGet(t, agentAddr, "", "sys/health")
		m, _ := body["mode"].(string)
		return m
	}
	waitFor(t, "the agent online", func() bool {
		conn, err := net.DialTimeout("tcp", agentAddr, time.Second)
		if err != nil {
			return false
		}
		conn.Close()
		return mode() == "online"
	})
	raw, err := os.ReadFile(filepath.Join(state, "local-token"))
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(raw))
	password := func(body map[string]any) any {
		d, _ := body["data"].(map[string]any)
		dd, _ := d["data"].(map[string]any)
		return dd["password"]
	}
	waitFor(t, "the secret in the agent", func() bool {
		code, _, body, _ := agentGet(t, agentAddr, tok, "secret/data/app/db")
		return code == 200 && password(body) == "s3cret"
	})

	// A hung server (SIGSTOP): noticed by heartbeat, not waited on.
	if err := server.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "degraded after SIGSTOP", func() bool { return mode() == "degraded" })
	code, hdr, body, took := agentGet(t, agentAddr, tok, "secret/data/app/db")
	if code != 200 || hdr.Get("X-Edgevault-Stale") == "" || password(body) != "s3cret" || took > time.Second {
		t.Fatalf("read with the server hung: %d %v %v in %s", code, hdr, body, took)
	}
	if w, _ := body["warnings"].([]any); len(w) == 0 {
		t.Fatalf("a stale read carries no warning: %v", body)
	}
	server.Process.Signal(syscall.SIGCONT)
	waitFor(t, "online after SIGCONT", func() bool { return mode() == "online" })

	// A killed server (SIGKILL).
	server.Process.Signal(syscall.SIGKILL)
	server.Wait()
	waitFor(t, "degraded after SIGKILL", func() bool { return mode() == "degraded" })
	if code, _, _, took := agentGet(t, agentAddr, tok, "secret/data/app/other"); code != 503 || took > 100*time.Millisecond {
		t.Fatalf("an uncached read: %d in %s, want 503 within 100 ms", code, took)
	}

	// The agent restarts from its cache while the server is still down.
	agent.Process.Signal(syscall.SIGTERM)
	agent.Wait()
	agent = startAgent()
	waitFor(t, "the restarted agent", func() bool {
		conn, err := net.DialTimeout("tcp", agentAddr, time.Second)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
	code, hdr, body, _ = agentGet(t, agentAddr, tok, "secret/data/app/db")
	if code != 200 || password(body) != "s3cret" || hdr.Get("X-Edgevault-Stale") == "" {
		t.Fatalf("after a restart with the server down: %d %v %v", code, hdr, body)
	}

	// The server comes back (its backlog lost): the agent resyncs and gets
	// what changed since.
	server = exec.Command(bin, "server", "-config", srvCfg)
	server.Stderr = os.Stderr
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server again", func() bool { _, err := c.Sys().SealStatus(); return err == nil })
	if _, err := c.Sys().Unseal(init.Keys[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := z.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "rotated"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rotated secret in the agent", func() bool {
		code, hdr, body, _ := agentGet(t, agentAddr, tok, "secret/data/app/db")
		return code == 200 && password(body) == "rotated" && hdr.Get("X-Edgevault-Stale") == ""
	})
}

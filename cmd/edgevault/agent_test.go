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

	"github.com/edgevault/edgevault/internal/tpmdev/swtpmtest"
)

// selfSigned writes a loopback server certificate and key to dir.
func selfSigned(t testing.TB, dir string) (certFile, keyFile string) {
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
func waitFor(t testing.TB, what string, cond func() bool) {
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
func agentGet(t testing.TB, addr, token, path string) (int, http.Header, map[string]any, time.Duration) {
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

// edgeRig is a real server and a real agent of zone "edge", over mTLS.
type edgeRig struct {
	bin, dir, addr, agentAddr, srvCfg, agentCfg string
	server, agent                               *exec.Cmd
	c, z                                        *vault.Client // root; a root token of zone edge
	unsealKey                                   string
	tok                                         string // the agent's local token
}

// newEdgeRig starts the server and an agent following it, with a policy
// letting agents cache secret/data/app/*, and waits until the agent is online.
func newEdgeRig(t testing.TB) *edgeRig { return newEdgeRigWith(t, "") }

// newEdgeRigWith is newEdgeRig; with tpm (a tpmdev spec) set, the agent
// enrolls by TPM attestation instead of a join token, the zone's policy
// allowing that TPM's endorsement key (read with "agent tpm-ek").
func newEdgeRigWith(t testing.TB, tpm string) *edgeRig {
	r := &edgeRig{bin: buildBinary(t), dir: t.TempDir()}
	certFile, keyFile := selfSigned(t, r.dir)
	r.addr, r.agentAddr = freeAddr(t), freeAddr(t)
	r.srvCfg = filepath.Join(r.dir, "server.hcl")
	writeFile(t, r.srvCfg, fmt.Sprintf("listener \"tcp\" {\n address = %q\n tls_cert_file = %q\n tls_key_file = %q\n}\nstorage \"bolt\" { path = %q }\nlog_level = \"warn\"\n",
		r.addr, certFile, keyFile, filepath.Join(r.dir, "ev.db")))
	r.startServer(t)
	t.Cleanup(func() {
		for _, p := range []*exec.Cmd{r.server, r.agent} {
			if p != nil && p.Process != nil {
				p.Process.Signal(syscall.SIGCONT)
				p.Process.Kill()
				p.Wait()
			}
		}
	})
	cfg := vault.DefaultConfig()
	cfg.Address, cfg.MaxRetries, cfg.Timeout = "https://"+r.addr, 0, 10*time.Second
	if err := cfg.ConfigureTLS(&vault.TLSConfig{CACert: certFile}); err != nil {
		t.Fatal(err)
	}
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	waitFor(t, "the server", func() bool { _, err := c.Sys().SealStatus(); return err == nil })
	init, err := c.Sys().Init(&vault.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	r.unsealKey = init.Keys[0]
	if _, err := c.Sys().Unseal(r.unsealKey); err != nil {
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
	r.z, _ = c.Clone()
	r.z.SetToken(zt.Auth.ClientToken)
	r.z.SetNamespace("edge")
	if err := r.z.Sys().PutPolicy("agent-cache", `path "secret/data/app/*" {
  capabilities = ["read"]
  cache { max_stale = "24h" }
}`); err != nil {
		t.Fatal(err)
	}
	attestation := ""
	if tpm == "" {
		jt, err := r.z.Logical().Write("auth/attest/join-token", map[string]any{"agent_id": "node-a"})
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(r.dir, "jt"), jt.Data["join_token"].(string))
		attestation = fmt.Sprintf("join_token_file = %q\n", filepath.Join(r.dir, "jt"))
	} else {
		out, err := exec.Command(r.bin, "agent", "tpm-ek", "-device", tpm, "-format", "json").Output()
		var ek struct {
			Hash string `json:"ek_hash"`
		}
		if err != nil || json.Unmarshal(out, &ek) != nil || ek.Hash == "" {
			t.Fatalf("agent tpm-ek: %s %v", out, err)
		}
		if _, err := c.Logical().Write("sys/zones/edge/attestation", map[string]any{"ek_hashes": []string{ek.Hash}, "pcrs": []int{0, 1, 2, 3, 4, 5, 6, 7}}); err != nil {
			t.Fatal(err)
		}
		attestation = fmt.Sprintf("tpm { device = %q }\n", tpm)
	}
	r.agentCfg = filepath.Join(r.dir, "agent.hcl")
	state := filepath.Join(r.dir, "agent-state")
	writeFile(t, r.agentCfg, fmt.Sprintf("server {\n address = %q\n ca_cert = %q\n}\nzone = \"edge\"\n%sstate_dir = %q\nlistener \"tcp\" { address = %q }\nlog_level = \"warn\"\n",
		"https://"+r.addr, certFile, attestation, state, r.agentAddr))
	r.startAgent(t)
	waitFor(t, "the agent online", func() bool { return r.mode(t) == "online" })
	raw, err := os.ReadFile(filepath.Join(state, "local-token"))
	if err != nil {
		t.Fatal(err)
	}
	r.tok = strings.TrimSpace(string(raw))
	return r
}

func (r *edgeRig) startServer(t testing.TB) {
	r.server = exec.Command(r.bin, "server", "-config", r.srvCfg)
	r.server.Stderr = os.Stderr
	if err := r.server.Start(); err != nil {
		t.Fatal(err)
	}
}

func (r *edgeRig) startAgent(t testing.TB) {
	r.agent = exec.Command(r.bin, "agent", "-config", r.agentCfg)
	r.agent.Stderr = os.Stderr
	if err := r.agent.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent's listener", func() bool {
		conn, err := net.DialTimeout("tcp", r.agentAddr, time.Second)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
}

// mode is the agent's own health mode.
func (r *edgeRig) mode(t testing.TB) string {
	_, _, body, _ := agentGet(t, r.agentAddr, "", "sys/health")
	m, _ := body["mode"].(string)
	return m
}

// password reads the password field of a KV v2 read answer.
func password(body map[string]any) any {
	d, _ := body["data"].(map[string]any)
	dd, _ := d["data"].(map[string]any)
	return dd["password"]
}

// The server and an agent as real processes over real mTLS: the agent
// serves its cache through a hung (SIGSTOP) and a killed (SIGKILL) server,
// saying how stale, refuses what it cannot serve at once, starts from its
// cache while the server is down, and resyncs when the server comes back.
func TestAgentKeepsServingWhenTheServerDies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	r := newEdgeRig(t)
	server, z, agentAddr, tok := r.server, r.z, r.agentAddr, r.tok
	if _, err := z.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "s3cret"}); err != nil {
		t.Fatal(err)
	}
	mode := func() string { return r.mode(t) }
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

	// The agent is killed and restarts from its cache while the server is
	// still down.
	r.agent.Process.Signal(syscall.SIGKILL)
	r.agent.Wait()
	r.startAgent(t)
	code, hdr, body, _ = agentGet(t, agentAddr, tok, "secret/data/app/db")
	if code != 200 || password(body) != "s3cret" || hdr.Get("X-Edgevault-Stale") == "" {
		t.Fatalf("after a restart with the server down: %d %v %v", code, hdr, body)
	}

	// The server comes back (its backlog lost): the agent resyncs and gets
	// what changed since.
	r.startServer(t)
	waitFor(t, "the server again", func() bool { _, err := r.c.Sys().SealStatus(); return err == nil })
	if _, err := r.c.Sys().Unseal(r.unsealKey); err != nil {
		t.Fatal(err)
	}
	if _, err := z.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "rotated"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rotated secret in the agent", func() bool {
		code, hdr, body, _ := agentGet(t, agentAddr, tok, "secret/data/app/db")
		return code == 200 && password(body) == "rotated" && hdr.Get("X-Edgevault-Stale") == ""
	})

	// Everything the agent answered itself — through the hang, the kill of
	// the server and its own kill -9 — is in the server's audit file, once,
	// in order, signed by the agent.
	waitFor(t, "the agent's audit spool forwarded", func() bool {
		_, _, body, _ := agentGet(t, agentAddr, "", "sys/health")
		return body["audit_pending"] == float64(0)
	})
	raw, err := os.ReadFile(filepath.Join(r.dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var seqs []float64
	modes := map[string]int{}
	for line := range strings.Lines(string(raw)) {
		var e struct {
			Type    string  `json:"type"`
			Seq     float64 `json:"seq"`
			Request struct {
				Mode string `json:"mode"`
				Path string `json:"path"`
			} `json:"request"`
			Response struct {
				Status int `json:"status_code"`
			} `json:"response"`
			Signer struct {
				ID string `json:"id"`
			} `json:"signer"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Type != "agent-read" {
			continue
		}
		if e.Signer.ID != "spiffe://edgevault.local/zone/edge/agent/node-a" {
			t.Fatalf("agent entry signed by %q", e.Signer.ID)
		}
		seqs = append(seqs, e.Seq)
		modes[fmt.Sprintf("%s %s %d", e.Request.Mode, e.Request.Path, e.Response.Status)]++
	}
	for i, s := range seqs {
		if s != float64(i+1) {
			t.Fatalf("agent entries' seq: %v, want 1..%d", seqs, len(seqs))
		}
	}
	for _, want := range []string{"degraded secret/data/app/db 200", "degraded secret/data/app/other 503", "online secret/data/app/db 200"} {
		if modes[want] == 0 {
			t.Fatalf("no agent entry %q in the audit file: %v", want, modes)
		}
	}
	if modes["degraded secret/data/app/db 200"] < 2 {
		t.Fatalf("the degraded reads before and after the agent's kill -9: %v", modes)
	}
}

// The server, swtpm and an agent as three processes: the agent proves its
// TPM (no join token) and serves what it cached, also with the server gone.
func TestAgentWithTPM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	r := newEdgeRigWith(t, swtpmtest.Start(t, "tcp"))
	if _, err := r.z.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "sealed"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the secret in the agent", func() bool {
		code, _, body, _ := agentGet(t, r.agentAddr, r.tok, "secret/data/app/db")
		return code == 200 && password(body) == "sealed"
	})
	_, _, h, _ := agentGet(t, r.agentAddr, "", "sys/health")
	if h["attestation"] != "tpm (hardware)" || h["ek_hash"] == "" || h["pcr_digest"] == "" {
		t.Fatalf("agent health: %v", h)
	}
	list, err := r.z.Logical().List("sys/agents")
	if err != nil || list == nil || len(list.Data["keys"].([]any)) != 1 {
		t.Fatalf("sys/agents: %v %v", list, err)
	}
	id := list.Data["keys"].([]any)[0].(string)
	if info := list.Data["key_info"].(map[string]any)[id].(map[string]any); info["attestation_method"] != "tpm" || info["ek_hash"] != h["ek_hash"] {
		t.Fatalf("registry: %v", info)
	}
	r.server.Process.Signal(syscall.SIGKILL)
	r.server.Wait()
	waitFor(t, "degraded", func() bool { return r.mode(t) == "degraded" })
	if code, hdr, body, _ := agentGet(t, r.agentAddr, r.tok, "secret/data/app/db"); code != 200 || password(body) != "sealed" || hdr.Get("X-Edgevault-Stale") == "" {
		t.Fatalf("degraded read: %d %v", code, body)
	}
}

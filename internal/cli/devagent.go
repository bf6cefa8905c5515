package cli

// This file holds what "edgevault dev" adds for the edge agent: a TLS
// listener for agents (they only speak TLS), a policy letting agents cache
// secret/, and an agent enrolled with a join token, serving on loopback.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/edgevault/edgevault/internal/agent"
)

// devAgentZone and devAgentID name the dev server's agent.
const (
	devAgentZone = "edge"
	devAgentID   = "dev-agent"
)

// devAgentPolicy lets the dev zone's agents cache everything under secret/.
const devAgentPolicy = `path "secret/data/*" {
  capabilities = ["read"]
  cache { max_stale = "24h" }
}`

// devTLS returns a self-signed certificate for loopback and its PEM.
func devTLS() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "edgevault dev server"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(7 * 24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// devCall makes a request to the server's own handler with token, in zone ns.
func devCall(h http.Handler, token, ns, method, path string, body any) (map[string]any, error) {
	raw, _ := json.Marshal(body)
	req := httptest.NewRequest(method, "/v1/"+path, bytes.NewReader(raw))
	req.Header.Set("X-Vault-Token", token)
	if ns != "" {
		req.Header.Set("X-Vault-Namespace", ns)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 300 {
		return nil, fmt.Errorf("%s %s: HTTP %d: %s", method, path, rec.Code, rec.Body.String())
	}
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return out, nil
}

// devAgent is what "edgevault dev" tells about its agent.
type devAgent struct {
	agent.Info
	ZoneToken string // a root token of the agent's zone
}

// startDevAgent serves agents over TLS, creates the zone devAgentZone with a
// policy letting agents cache secret/, enrolls an agent there and runs it on
// agentAddr.
func startDevAgent(ctx context.Context, log *slog.Logger, h http.Handler, root, dir, agentAddr string) (devAgent, error) {
	cert, caPEM, err := devTLS()
	if err != nil {
		return devAgent{}, err
	}
	caFile := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		return devAgent{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return devAgent{}, err
	}
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert,
		NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12})
	go serve(ctx, log, tln, h)
	if _, err := devCall(h, root, "", "POST", "sys/zones/"+devAgentZone, map[string]any{"description": "the dev agent's zone"}); err != nil {
		return devAgent{}, err
	}
	zt, err := devCall(h, root, "", "POST", "sys/zones/"+devAgentZone+"/root-token", nil)
	if err != nil {
		return devAgent{}, err
	}
	zoneToken, _ := zt["auth"].(map[string]any)["client_token"].(string)
	if _, err := devCall(h, zoneToken, devAgentZone, "PUT", "sys/policies/acl/agent-cache", map[string]any{"policy": devAgentPolicy}); err != nil {
		return devAgent{}, err
	}
	jt, err := devCall(h, zoneToken, devAgentZone, "POST", "auth/attest/join-token", map[string]any{"ttl": "15m", "agent_id": devAgentID})
	if err != nil {
		return devAgent{}, err
	}
	token, _ := jt["data"].(map[string]any)["join_token"].(string)
	infoc := make(chan agent.Info, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- agent.Run(ctx, agent.Config{ServerAddr: "https://" + ln.Addr().String(), ServerCA: caFile, Zone: devAgentZone, JoinToken: token,
			StateDir: filepath.Join(dir, "agent"), Listen: agentAddr, Logger: log}, func(i agent.Info) { infoc <- i })
	}()
	select {
	case i := <-infoc:
		return devAgent{Info: i, ZoneToken: zoneToken}, nil
	case err := <-errc:
		return devAgent{}, fmt.Errorf("dev agent: %w", err)
	case <-time.After(30 * time.Second):
		return devAgent{}, fmt.Errorf("dev agent: not serving after 30s")
	}
}

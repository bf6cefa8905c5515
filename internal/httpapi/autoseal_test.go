package httpapi_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/edgevault/edgevault/internal/barrier"
	"github.com/edgevault/edgevault/internal/httpapi"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// softProtector stands in for the HSM (tested for real in cmd/edgevault
// against SoftHSM2): AES-GCM under a key held in memory.
type softProtector struct {
	aead cipher.AEAD
	mu   sync.Mutex
	down bool
}

var _ barrier.Protector = (*softProtector)(nil)

func newSoftProtector() *softProtector {
	k := make([]byte, 32)
	rand.Read(k)
	blk, _ := aes.NewCipher(k)
	a, _ := cipher.NewGCM(blk)
	return &softProtector{aead: a}
}

func (p *softProtector) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return errors.New("hsm unreachable")
	}
	return nil
}

func (p *softProtector) Wrap(_ context.Context, k []byte) ([]byte, error) {
	if err := p.err(); err != nil {
		return nil, err
	}
	n := make([]byte, 12)
	rand.Read(n)
	return p.aead.Seal(n, n, k, nil), nil
}

func (p *softProtector) Unwrap(_ context.Context, b []byte) ([]byte, error) {
	if err := p.err(); err != nil {
		return nil, err
	}
	return p.aead.Open(nil, b[:12], b[12:], nil)
}

func serveAuto(t *testing.T, phys *inmem.Backend, p barrier.Protector) (*httpapi.Server, *vault.Client) {
	t.Helper()
	srv, err := httpapi.New(httpapi.Config{Physical: phys, StorageType: "inmem", Protector: p, SealType: "pkcs11"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	cfg := vault.DefaultConfig()
	cfg.Address = "http://" + ln.Addr().String()
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	return srv, c
}

func TestAutoSealInit(t *testing.T) {
	ctx := context.Background()
	phys := inmem.New()
	p := newSoftProtector()
	srv, c := serveAuto(t, phys, p)

	st, err := c.Sys().SealStatus()
	if err != nil || st.Type != "pkcs11" || !st.RecoverySeal || st.Initialized || !st.Sealed {
		t.Fatalf("seal-status before init: %+v %v", st, err)
	}
	if err := srv.AutoUnseal(ctx); !errors.Is(err, barrier.ErrNotInitialized) {
		t.Fatalf("AutoUnseal before init: %v", err)
	}
	bad := []struct {
		req  vault.InitRequest
		want string
	}{
		{vault.InitRequest{SecretShares: 1, SecretThreshold: 1, RecoveryShares: 1, RecoveryThreshold: 1}, "secret_shares and secret_threshold must be 0"},
		{vault.InitRequest{RecoveryShares: 0, RecoveryThreshold: 0}, "recovery shares must be at least one"},
		{vault.InitRequest{RecoveryShares: 3, RecoveryThreshold: 4}, "recovery threshold cannot be larger than shares"},
	}
	for _, tt := range bad {
		_, err := c.Sys().Init(&tt.req)
		if statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("init %+v: got %v, want 400 with %q", tt.req, err, tt.want)
		}
	}
	if n, _ := phys.List(ctx, ""); len(n) != 0 {
		t.Fatalf("refused init wrote %v", n)
	}

	init, err := c.Sys().Init(&vault.InitRequest{RecoveryShares: 5, RecoveryThreshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(init.RecoveryKeys) != 5 || len(init.RecoveryKeysB64) != 5 || len(init.Keys) != 0 {
		t.Fatalf("init response: %+v", init)
	}
	st, _ = c.Sys().SealStatus()
	if st.Sealed || st.T != 3 || st.N != 5 || !st.RecoverySeal || st.Type != "pkcs11" {
		t.Fatalf("seal-status after init: %+v", st)
	}
	c.SetToken(init.RootToken)
	if _, err := c.KVv2("secret").Put(ctx, "a", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sys().Unseal(init.RecoveryKeysB64[0]); err != nil {
		t.Fatalf("unseal on an unsealed auto seal should report status: %v", err)
	}

	// A restart with the HSM down stays sealed until it is back.
	srv.Close()
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
	srv2, c2 := serveAuto(t, phys, p)
	if err := srv2.AutoUnseal(ctx); err == nil {
		t.Fatal("auto-unseal with the HSM down succeeded")
	}
	if st, _ := c2.Sys().SealStatus(); !st.Sealed || !st.Initialized {
		t.Fatalf("seal-status with the HSM down: %+v", st)
	}
	if _, err := c2.Sys().Unseal(init.RecoveryKeysB64[0]); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("recovery key given as unseal key: %v", err)
	}
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
	if err := srv2.AutoUnseal(ctx); err != nil {
		t.Fatal(err)
	}
	c2.SetToken(init.RootToken)
	s, err := c2.KVv2("secret").Get(ctx, "a")
	if err != nil || s.Data["v"] != "1" {
		t.Fatalf("read after auto-unseal: %v %v", s, err)
	}
}

func TestShamirRefusesRecoveryFields(t *testing.T) {
	ts := startServer(t, false)
	_, err := ts.client.Sys().Init(&vault.InitRequest{SecretShares: 1, SecretThreshold: 1, RecoveryShares: 1, RecoveryThreshold: 1})
	if statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "recovery_shares") {
		t.Fatalf("got %v", err)
	}
}

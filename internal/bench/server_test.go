package bench_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/edgevault/edgevault/internal/bench"
	"github.com/edgevault/edgevault/internal/httpapi"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// TestAgainstRealServer drives every operation against a real edgevault
// server and checks that the server answered each request with success.
func TestAgainstRealServer(t *testing.T) {
	srv, err := httpapi.New(httpapi.Config{Physical: inmem.New()})
	if err != nil {
		t.Fatal(err)
	}
	root, _, err := srv.InitDev(context.Background(), "")
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
	addr := "http://" + ln.Addr().String()

	for _, op := range []bench.Op{bench.OpKVRead, bench.OpKVWrite, bench.OpTokenCreate, bench.OpMixed, bench.OpFill} {
		cfg := bench.DefaultConfig()
		cfg.Op, cfg.Address, cfg.Token = op, addr, root
		cfg.Concurrency, cfg.Duration, cfg.Warmup, cfg.Keys = 4, 300*time.Millisecond, 0, 50
		res, err := bench.Run(context.Background(), cfg)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		if res.Ops == 0 || res.Errors != 0 {
			t.Fatalf("%s: %d ops, %d errors (first: %s)", op, res.Ops, res.Errors, res.FirstError)
		}
	}

	// fill wrote each key exactly once: the mount lists all of them.
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(root)
	list, err := c.Logical().List("secret/metadata/bench")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.Data["keys"].([]any)); n != 50 {
		t.Fatalf("listed %d keys after fill of 50", n)
	}

	// Inside a zone, with the zone's own token.
	if _, err := c.Logical().Write("sys/zones/bz", nil); err != nil {
		t.Fatal(err)
	}
	zt, err := c.Logical().Write("sys/zones/bz/root-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	zcfg := bench.DefaultConfig()
	zcfg.Op, zcfg.Address, zcfg.Token, zcfg.Namespace = bench.OpKVRead, addr, zt.Auth.ClientToken, "bz"
	zcfg.Concurrency, zcfg.Duration, zcfg.Warmup, zcfg.Keys = 4, 300*time.Millisecond, 0, 50
	res, err := bench.Run(context.Background(), zcfg)
	if err != nil || res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("kv-read in a zone: %+v %v", res, err)
	}
	zcfg.Namespace = "" // the zone's token is refused outside its zone
	if _, err := bench.Run(context.Background(), zcfg); err == nil {
		t.Fatal("a zone token was accepted in the root zone")
	}
}

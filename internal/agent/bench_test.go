package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/agent/cache/keyfile"
	"github.com/edgevault/edgevault/internal/syncproto"
)

// BenchmarkLocalRead measures a cached read through the local API at 16
// concurrent clients, over loopback TCP and the unix socket, next to a
// bare net/http handler that writes a response of the same size: the
// difference is the agent's own cost. Compare the req/s of agent-* with
// bare-* of the same run (the target is at least 80%).
func BenchmarkLocalRead(b *testing.B) {
	c := openTestCache(b)
	ap := &applier{c: c, log: slog.New(slog.DiscardHandler)}
	ev := upsert(1, "secret/app/db", 1, "correct horse battery staple")
	if _, err := ap.apply([]syncproto.Event{ev}); err != nil {
		b.Fatal(err)
	}
	a := benchAgent(b, c)
	a.online.Store(true)
	const token = "eva.benchmark-local-token-0123456789"
	api := &localAPI{a: a, token: []byte(token), proxy: nil}

	// One agent response, to size the bare handler's.
	probe := &recorder{h: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "/v1/secret/data/app/db", nil)
	req.Header.Set(tokenHeader, token)
	api.ServeHTTP(probe, req)
	if probe.status != http.StatusOK {
		b.Fatalf("probe: %d %s", probe.status, probe.body)
	}
	body := probe.body
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = jsonCT
		h["Cache-Control"] = noStore
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})

	sock := filepath.Join(b.TempDir(), "b.sock")
	for _, tc := range []struct {
		name    string
		handler http.Handler
		network string
	}{
		{"bare-tcp", bare, "tcp"},
		{"agent-tcp", api, "tcp"},
		{"bare-unix", bare, "unix"},
		{"agent-unix", api, "unix"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			addr := "127.0.0.1:0"
			if tc.network == "unix" {
				addr = sock
			}
			ln, err := net.Listen(tc.network, addr)
			if err != nil {
				b.Fatal(err)
			}
			hs := &http.Server{Handler: tc.handler}
			go hs.Serve(ln)
			defer hs.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: 64, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, tc.network, ln.Addr().String())
			}}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest(http.MethodGet, "http://agent/v1/secret/data/app/db", nil)
				req.Header.Set(tokenHeader, token)
				for pb.Next() {
					resp, err := hc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkKVRead is the local API's handler alone, without the network.
func BenchmarkKVRead(b *testing.B) {
	c := openTestCache(b)
	ap := &applier{c: c, log: slog.New(slog.DiscardHandler)}
	if _, err := ap.apply([]syncproto.Event{upsert(1, "secret/app/db", 1, "correct horse battery staple")}); err != nil {
		b.Fatal(err)
	}
	a := benchAgent(b, c)
	a.online.Store(true)
	const token = "eva.benchmark-local-token-0123456789"
	api := &localAPI{a: a, token: []byte(token)}
	req, _ := http.NewRequest(http.MethodGet, "/v1/secret/data/app/db", nil)
	req.Header.Set(tokenHeader, token)
	w := &recorder{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.body = w.body[:0]
		clear(w.h)
		api.ServeHTTP(w, req)
	}
	if w.status != http.StatusOK {
		b.Fatal(w.status)
	}
}

// recorder is a minimal http.ResponseWriter that keeps the response.
type recorder struct {
	h      http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) WriteHeader(s int)           { r.status = s }
func (r *recorder) Write(p []byte) (int, error) { r.body = append(r.body, p...); return len(p), nil }

// BenchmarkStart10k measures Run's start (to ready) on a cache of 10,000
// secrets of about 1 KiB with their metadata, with no server reachable,
// and the heap the agent then holds.
func BenchmarkStart10k(b *testing.B) {
	dir := b.TempDir()
	cfg := Config{ServerAddr: "https://127.0.0.1:1", Zone: testZone, StateDir: filepath.Join(dir, "state"), Listen: "127.0.0.1:0"}
	if err := prepareDir(cfg.StateDir); err != nil {
		b.Fatal(err)
	}
	kp, err := keyfile.Open(filepath.Join(cfg.StateDir, cacheKeyFile))
	if err != nil {
		b.Fatal(err)
	}
	c, _, err := openCache(cfg, kp, slog.New(slog.DiscardHandler), time.Now)
	if err != nil {
		b.Fatal(err)
	}
	ap := &applier{c: c, log: slog.New(slog.DiscardHandler)}
	value := strings.Repeat("x", 1000)
	var evs []syncproto.Event
	for i := range 10000 {
		evs = append(evs, upsert(uint64(i+1), fmt.Sprintf("secret/app/s%05d", i), 1, value))
		if len(evs) == 1000 {
			if _, err := ap.apply(evs); err != nil {
				b.Fatal(err)
			}
			evs = evs[:0]
		}
	}
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
	var heap uint64
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg, func(Info) { close(ready) }) }()
		select {
		case <-ready:
		case err := <-done:
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = ms.HeapAlloc
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
}

// benchAgent is an agent serving cache c, with an audit spool (never
// forwarded) in a temporary directory.
func benchAgent(b *testing.B, c *cache.Cache) *agent {
	a := &agent{cfg: Config{Zone: testZone}, log: slog.New(slog.DiscardHandler), clock: time.Now, cache: c, attest: joinToken("")}
	var err error
	if a.audit, err = openAuditTrail(a, b.TempDir()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = a.audit.close() })
	return a
}

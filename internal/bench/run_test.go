package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const testToken = "evs.test-token-do-not-print"

// quick returns a short configuration for op against addr.
func quick(op Op, addr string) Config {
	cfg := DefaultConfig()
	cfg.Op = op
	cfg.Address = addr
	cfg.Token = testToken
	cfg.Concurrency = 4
	cfg.Duration = 300 * time.Millisecond
	cfg.Warmup = 50 * time.Millisecond
	cfg.Keys = 20
	cfg.Timeout = 2 * time.Second
	cfg.Seed = 1
	return cfg
}

// startBaseline runs Serve on 127.0.0.1:0 and stops it at cleanup,
// checking that it returns nil.
func startBaseline(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve after cancel: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return "http://" + ln.Addr().String()
}

func checkSane(t *testing.T, res Result) {
	t.Helper()
	if res.Ops <= 0 {
		t.Fatalf("ops = %d, want > 0", res.Ops)
	}
	if !(0 < res.P50 && res.P50 <= res.P99 && res.P99 <= res.P999 && res.P999 <= res.Max) {
		t.Errorf("percentiles out of order: p50=%s p99=%s p999=%s max=%s", res.P50, res.P99, res.P999, res.Max)
	}
	if res.OpsPerSec() <= 0 {
		t.Errorf("ops/s = %v", res.OpsPerSec())
	}
}

func TestRunAgainstBaseline(t *testing.T) {
	addr := startBaseline(t)
	cfg := quick(OpBaseline, addr)
	cfg.Token = ""
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, res)
	if res.Errors != 0 || res.FirstError != "" {
		t.Errorf("errors = %d (%q), want 0", res.Errors, res.FirstError)
	}
	if res.Elapsed != cfg.Duration {
		t.Errorf("elapsed = %s, want %s", res.Elapsed, cfg.Duration)
	}
	if took := time.Since(start); took > cfg.Warmup+cfg.Duration+time.Second {
		t.Errorf("run took %s", took)
	}
	if res.Op != OpBaseline || res.Concurrency != 4 {
		t.Errorf("result names op %q c=%d", res.Op, res.Concurrency)
	}
}

func TestBaselineBody(t *testing.T) {
	b := BaselineBody()
	if len(b) != BaselineBodySize {
		t.Fatalf("len = %d, want %d", len(b), BaselineBodySize)
	}
	if !json.Valid(b) {
		t.Fatalf("not JSON: %s", b)
	}
	rec := httptest.NewRecorder()
	BaselineHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/any/path?x=1", strings.NewReader("{}")))
	if rec.Code != 200 || rec.Body.String() != string(b) || rec.Header().Get("Content-Length") != "200" {
		t.Errorf("handler answered %d %q %v", rec.Code, rec.Body, rec.Header())
	}
}

func TestServeFailsOnClosedListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if err := Serve(context.Background(), ln); err == nil {
		t.Fatal("Serve on a closed listener returned nil")
	}
}

func TestRunCountsServerErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"errors":["storage backend\nexploded"]}`)
	}))
	defer srv.Close()
	res, err := Run(context.Background(), quick(OpKVWrite, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, res)
	if res.Errors != res.Ops {
		t.Errorf("errors = %d, want every op (%d)", res.Errors, res.Ops)
	}
	for _, want := range []string{"PUT /v1/secret/data/bench/", "500 Internal Server Error", "storage backend exploded"} {
		if !strings.Contains(res.FirstError, want) {
			t.Errorf("first error %q lacks %q", res.FirstError, want)
		}
	}
	if strings.Contains(res.FirstError, testToken) {
		t.Errorf("first error shows the token: %q", res.FirstError)
	}
}

// fakeKV is a KV v2 server, enough to check what the driver sends.
type fakeKV struct {
	t       *testing.T
	prefix  string // base path of the address
	mu      sync.Mutex
	data    map[string]string // path -> body written
	methods map[string]int
	bodies  map[string]int // distinct token-create bodies
	badReq  []string
}

func newFakeKV(t *testing.T, prefix string) (*fakeKV, string) {
	f := &fakeKV{t: t, prefix: prefix, data: map[string]string{}, methods: map[string]int{}, bodies: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL + prefix
}

func (f *fakeKV) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.methods[r.Method]++
	if r.Header.Get("X-Vault-Token") != testToken {
		f.badReq = append(f.badReq, "no token on "+r.URL.Path)
		http.Error(w, `{"errors":["permission denied"]}`, http.StatusForbidden)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, f.prefix)
	switch {
	case r.Method == http.MethodPost && path == "/v1/auth/token/create":
		f.bodies[string(body)]++
		io.WriteString(w, `{"auth":{"client_token":"evs.x"}}`)
	case r.Method == http.MethodPut && strings.HasPrefix(path, "/v1/secret/data/bench/"):
		if r.Header.Get("Content-Type") != "application/json" || !json.Valid(body) {
			f.badReq = append(f.badReq, "bad write body "+string(body))
		}
		f.data[path] = string(body)
		io.WriteString(w, `{"data":{"version":1}}`)
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v1/secret/data/bench/"):
		v, ok := f.data[path]
		if !ok {
			http.Error(w, `{"errors":[]}`, http.StatusNotFound)
			return
		}
		io.WriteString(w, `{"data":`+v+`}`)
	default:
		f.badReq = append(f.badReq, r.Method+" "+r.URL.Path)
		http.Error(w, `{"errors":["unsupported path"]}`, http.StatusMethodNotAllowed)
	}
}

func (f *fakeKV) check() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.badReq) > 0 {
		f.t.Errorf("fake KV saw bad requests: %q", f.badReq[:min(5, len(f.badReq))])
	}
}

func TestKVReadSetsUpKeysThenReads(t *testing.T) {
	kv, addr := newFakeKV(t, "/prefix")
	cfg := quick(OpKVRead, addr)
	cfg.ValueSize = 10
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	kv.check()
	checkSane(t, res)
	if res.Errors != 0 {
		t.Errorf("errors = %d (%s): reads of keys setup did not write", res.Errors, res.FirstError)
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if len(kv.data) != cfg.Keys {
		t.Errorf("setup wrote %d keys, want %d", len(kv.data), cfg.Keys)
	}
	for i := range cfg.Keys {
		got := kv.data["/v1/secret/data/bench/"+strconv.Itoa(i)]
		if want := `{"data":{"value":"xxxxxxxxxx"}}`; got != want {
			t.Errorf("key %d = %q, want %q", i, got, want)
		}
	}
	if kv.methods[http.MethodPut] != cfg.Keys {
		t.Errorf("%d writes, want exactly the %d of setup", kv.methods[http.MethodPut], cfg.Keys)
	}
	if int64(kv.methods[http.MethodGet]) < res.Ops {
		t.Errorf("%d GETs for %d ops", kv.methods[http.MethodGet], res.Ops)
	}
}

func TestKVWriteAndMixed(t *testing.T) {
	for _, op := range []Op{OpKVWrite, OpMixed} {
		t.Run(string(op), func(t *testing.T) {
			kv, addr := newFakeKV(t, "")
			cfg := quick(op, addr)
			cfg.Keys = 1000
			before := 0
			if op == OpMixed {
				before = cfg.Keys // setup writes
			}
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			kv.check()
			checkSane(t, res)
			if res.Errors != 0 {
				t.Errorf("errors = %d: %s", res.Errors, res.FirstError)
			}
			kv.mu.Lock()
			writes, reads := kv.methods[http.MethodPut]-before, kv.methods[http.MethodGet]
			kv.mu.Unlock()
			total := writes + reads
			switch op {
			case OpKVWrite:
				if reads != 0 || writes == 0 {
					t.Errorf("kv-write sent %d reads, %d writes", reads, writes)
				}
			case OpMixed:
				if share := float64(writes) / float64(total); share < 0.05 || share > 0.15 {
					t.Errorf("mixed: %d writes of %d requests (%.1f%%), want about 10%%", writes, total, 100*share)
				}
			}
		})
	}
}

func TestTokenCreate(t *testing.T) {
	kv, addr := newFakeKV(t, "")
	res, err := Run(context.Background(), quick(OpTokenCreate, addr))
	if err != nil {
		t.Fatal(err)
	}
	kv.check()
	checkSane(t, res)
	kv.mu.Lock()
	defer kv.mu.Unlock()
	want := `{"policies":["default"],"ttl":"10m"}`
	if len(kv.bodies) != 1 || kv.bodies[want] == 0 {
		t.Errorf("token-create bodies %v, want only %s", kv.bodies, want)
	}
}

func TestSetupFailureFailsRun(t *testing.T) {
	_, addr := newFakeKV(t, "")
	cfg := quick(OpKVRead, addr)
	cfg.Token = "wrong-token"
	_, err := Run(context.Background(), cfg)
	if err == nil {
		t.Fatal("Run with a refused setup returned nil")
	}
	for _, want := range []string{"setup", "403", "permission denied"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "wrong-token") {
		t.Errorf("error shows the token: %q", err)
	}
}

func TestRunHonoursCancellation(t *testing.T) {
	addr := startBaseline(t)
	cfg := quick(OpBaseline, addr)
	cfg.Duration = time.Minute
	cfg.Warmup = 0
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Run took %s after cancellation", took)
	}
	if res.Ops == 0 || res.Errors != 0 || res.Elapsed <= 0 || res.Elapsed > time.Second {
		t.Errorf("partial result: ops=%d errors=%d elapsed=%s", res.Ops, res.Errors, res.Elapsed)
	}
}

// hangServer accepts connections, reads requests and never answers.
func hangServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestRunIsBoundedWhenServerHangs(t *testing.T) {
	cfg := quick(OpBaseline, hangServer(t))
	cfg.Timeout = 300 * time.Millisecond
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("run took %s against a hung server", took)
	}
	if res.Errors != res.Ops || res.Ops != int64(cfg.Concurrency) {
		t.Errorf("ops=%d errors=%d, want one timed-out request per worker", res.Ops, res.Errors)
	}
	if !strings.Contains(res.FirstError, "timeout") {
		t.Errorf("first error %q does not say timeout", res.FirstError)
	}
}

func TestSetupIsBoundedWhenServerHangs(t *testing.T) {
	cfg := quick(OpKVRead, hangServer(t))
	cfg.Timeout = 200 * time.Millisecond
	start := time.Now()
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "setup") {
		t.Fatalf("err = %v, want a setup error", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("setup took %s against a hung server", took)
	}
}

// oneShotServer answers one request per connection, then closes it without
// saying so, as a server closing idle keep-alive connections does.
func oneShotServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestStaleConnectionsAreRetried(t *testing.T) {
	cfg := quick(OpBaseline, oneShotServer(t))
	cfg.Duration = 200 * time.Millisecond
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, res)
	if res.Errors != 0 {
		t.Errorf("errors = %d (%s), want stale connections retried", res.Errors, res.FirstError)
	}
}

func TestConnectionCloseIsHonoured(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "{}")
	}))
	defer srv.Close()
	res, err := Run(context.Background(), quick(OpBaseline, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, res)
	if res.Errors != 0 {
		t.Errorf("errors = %d: %s", res.Errors, res.FirstError)
	}
}

func TestUnreachableServerCountsErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close()
	cfg := quick(OpBaseline, addr)
	cfg.Duration = 100 * time.Millisecond
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops == 0 || res.Errors != res.Ops || !strings.Contains(res.FirstError, "refused") {
		t.Errorf("ops=%d errors=%d first=%q", res.Ops, res.Errors, res.FirstError)
	}
}

func TestTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(BaselineHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the unknown CA case makes handshakes fail
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		caCert     string
		skip       bool
		wantErrors bool
		wantConfig bool
	}{
		{"trusted CA", caFile, false, false, false},
		{"skip verify", "", true, false, false},
		{"unknown CA", "", false, true, false},
		{"missing CA file", filepath.Join(t.TempDir(), "nope.pem"), false, false, true},
		{"CA file without PEM", notPEM, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := quick(OpBaseline, srv.URL)
			cfg.Duration = 150 * time.Millisecond
			cfg.CACert, cfg.TLSSkipVerify = tt.caCert, tt.skip
			res, err := Run(context.Background(), cfg)
			if tt.wantConfig {
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "-ca-cert") {
					t.Fatalf("err = %v, want an -ca-cert configuration error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Ops == 0 {
				t.Fatal("no ops")
			}
			if gotErrors := res.Errors > 0; gotErrors != tt.wantErrors {
				t.Errorf("errors = %d (%s), want errors: %v", res.Errors, res.FirstError, tt.wantErrors)
			}
			if tt.wantErrors && !strings.Contains(res.FirstError, "certificate") {
				t.Errorf("first error %q does not mention the certificate", res.FirstError)
			}
		})
	}
}

func TestRunRejectsInvalidConfig(t *testing.T) {
	cfg := quick(OpKVRead, "http://127.0.0.1:1")
	cfg.Concurrency = 0
	if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
}

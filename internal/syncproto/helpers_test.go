package syncproto

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"
)

const testTrustDomain = "edge.test"

// testPKI is a real CA with a server certificate for 127.0.0.1 and a way to
// issue agent certificates.
type testPKI struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	server tls.Certificate
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{ca: ca, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.server = p.issue(t, "server", nil, []net.IP{net.ParseIP("127.0.0.1")}, x509.ExtKeyUsageServerAuth)
	return p
}

func (p *testPKI) issue(t testing.TB, cn string, uris []*url.URL, ips []net.IP, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		URIs:         uris,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// agentTLS returns a client TLS config for agent id in zone z.
func (p *testPKI) agentTLS(t testing.TB, trustDomain, z, id string) *tls.Config {
	t.Helper()
	u := &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/zone/" + z + "/agent/" + id}
	cert := p.issue(t, id, []*url.URL{u}, nil, x509.ExtKeyUsageClientAuth)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: p.pool, MinVersion: tls.VersionTLS13}
}

// testServer is a real HTTPS server (HTTP/2, mTLS) on loopback that can be
// killed and restarted on the same address.
type testServer struct {
	t       testing.TB
	pki     *testPKI
	handler http.Handler
	addr    string

	mu    sync.Mutex
	srv   *http.Server
	conns int // open client connections
}

// openConns returns how many client connections the server holds open.
func (s *testServer) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

func startServer(t testing.TB, pki *testPKI, h http.Handler) *testServer {
	t.Helper()
	s := &testServer{t: t, pki: pki, handler: h, addr: "127.0.0.1:0"}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *testServer) start() {
	s.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the old socket may linger for a moment after a kill
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle(Path, s.handler)
	srv := &http.Server{
		Handler:  mux,
		ErrorLog: log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			s.mu.Lock()
			defer s.mu.Unlock()
			switch st {
			case http.StateNew:
				s.conns++
			case http.StateClosed, http.StateHijacked:
				s.conns--
			}
		},
		// Timeouts meant for ordinary API requests must not cut streams.
		ReadTimeout:  300 * time.Millisecond,
		WriteTimeout: 300 * time.Millisecond,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{s.pki.server},
			ClientCAs:    s.pki.pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS13,
		},
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.ServeTLS(ln, "", "") }()
}

// kill closes the listener and every connection at once, as a crash would.
func (s *testServer) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		_ = s.srv.Close()
		s.srv = nil
	}
}

func (s *testServer) url() string { return "https://" + s.addr + Path }

// recorder is an agent's durable state, kept in memory: everything applied,
// in order, and the ack.
type recorder struct {
	mu      sync.Mutex
	ack     uint64
	applied []Event
	early   [][]Event // ApplyRevocations calls
	calls   []int     // len(applied) at each Apply, to check batching order
	states  []stateChange
	changed chan struct{}
}

type stateChange struct {
	s   State
	err error
	at  time.Time
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) client(url string, tlsc *tls.Config) *Client {
	return &Client{
		URL:       url,
		TLSConfig: tlsc,
		From: func() uint64 {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.ack
		},
		Apply: func(evs []Event) (uint64, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.calls = append(r.calls, len(r.applied))
			r.applied = append(r.applied, evs...)
			r.ack = evs[len(evs)-1].Seq
			r.poke()
			return r.ack, nil
		},
		ApplyRevocations: func(evs []Event) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.early = append(r.early, evs)
			return nil
		},
		OnState: func(s State, err error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.states = append(r.states, stateChange{s, err, time.Now()})
			r.poke()
		},
		Heartbeat:  50 * time.Millisecond,
		Timeout:    time.Second,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond,
	}
}

// waitFor polls cond (under r.mu) until it holds or d passes.
func (r *recorder) waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

func (r *recorder) lastState() State {
	if len(r.states) == 0 {
		return 0
	}
	return r.states[len(r.states)-1].s
}

// run starts c.Run in the background and stops it at cleanup.
func run(t testing.TB, c *Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
}

// checkApplied verifies the invariant every test relies on: applied events
// have strictly increasing sequence numbers (except a Resync's snapshot).
func checkApplied(t testing.TB, evs []Event) {
	t.Helper()
	var cursor uint64
	snapshot := false
	for i, ev := range evs {
		switch {
		case ev.Kind == Resync:
			cursor, snapshot = ev.Seq, true
		case ev.Seq > cursor:
			cursor, snapshot = ev.Seq, false
		case snapshot && ev.Seq == cursor:
		default:
			t.Fatalf("applied[%d] seq %d (%s) after %d", i, ev.Seq, ev.Kind, cursor)
		}
		if ev.Kind == Heartbeat {
			t.Fatalf("applied[%d] is a heartbeat", i)
		}
	}
}

func upsert(path string, v int) Event {
	return Event{Kind: Upsert, Path: path, Version: v, Data: []byte(`{"password":"s3cret"}`), MaxStale: time.Hour}
}

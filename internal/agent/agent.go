package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/agent/cache/keyfile"
	"github.com/edgevault/edgevault/internal/agent/cache/tpmkey"
	"github.com/edgevault/edgevault/internal/syncproto"
	"github.com/edgevault/edgevault/internal/tpmdev"
)

// Files in StateDir (besides identityFile).
const (
	cacheFile      = "cache.db"
	cacheKeyFile   = "cache.key"
	localTokenFile = "local-token"
)

// Timings.
const (
	// syncTimeout is the sync client's silence timeout; marks of freshness
	// lag real time by it.
	syncTimeout = syncproto.DefaultTimeout
	// minRetry and maxRetry bound the wait between enrollment or renewal
	// attempts.
	minRetry, maxRetry = time.Second, time.Minute
	// shutdownGrace is how long Run lets local requests finish.
	shutdownGrace = 2 * time.Second
	// renewPoll is how often the renewal loop looks at the clock.
	renewPoll = time.Second
	// minRenewGap is the least time between two renewals.
	minRenewGap = 10 * time.Second
	// clockTolerance is how far the agent's clock may be from the server's
	// (agent certificates are backdated by as much).
	clockTolerance = 5*time.Minute + 5*time.Second
)

// mode is the agent's link to its control plane, as sys/health reports it.
type mode int

const (
	modeOnline   mode = iota // the sync stream is connected
	modeDegraded             // no stream; the cache holds entries
	modeIsolated             // no stream and nothing cached
)

func (m mode) String() string {
	switch m {
	case modeOnline:
		return "online"
	case modeDegraded:
		return "degraded"
	}
	return "isolated"
}

// agent is one running agent.
type agent struct {
	cfg    Config
	log    *slog.Logger
	clock  func() time.Time
	cache  *cache.Cache
	attest attestor
	roots  *x509.CertPool // nil: system roots
	audit  *auditTrail
	tpm    *tpmAttestor // nil without a TPM
	// sealer seals the identity file to the TPM (nil without one).
	sealer cache.KeyProtector
	// reattestFirst: the cache was sealed to another TPM or boot state;
	// the agent renews (re-attests) before it syncs again.
	reattestFirst bool
	// renewNow asks the renewal loop to renew (and so re-attest) at once.
	renewNow chan struct{}
	// refusedRenewal is when a refused stream last triggered a renewal
	// (unix ns).
	refusedRenewal atomic.Int64
	// refused is set while the server refuses this agent's stream (401/403:
	// quarantined, revoked, deleted, its zone sealed, a missed
	// re-attestation): the agent is not merely cut off, so it serves
	// nothing until the server accepts it again (api.go).
	refused atomic.Bool
	// subCAs issue certificates offline (subca.go); nil without OfflinePKI.
	subCAs *subCAs
	// leases is the local API's lease cache, which revocations purge
	// (revocations.go).
	leases *leaseCache
	// revoked is set once a revocation revoked this agent: it serves
	// nothing and no longer syncs (revocations.go).
	revoked atomic.Pointer[revokedState]
	// revoking holds the removals of a catch-up until they are durable
	// (revocations.go): the local API refuses what they cover.
	revoking pendingRevocations

	id     atomic.Pointer[identity]
	online atomic.Bool
	// serverAhead is how far the server's clock is ahead of the agent's
	// (negative: behind), as its last enrollment or renewal answer showed.
	serverAhead atomic.Int64
}

// serverNow is the agent's estimate of the server's clock, by which
// certificates are issued and expire.
func (a *agent) serverNow() time.Time {
	return a.clock().Add(time.Duration(a.serverAhead.Load()))
}

func (a *agent) mode(st cache.Stats) mode {
	switch {
	case a.online.Load():
		return modeOnline
	case st.Paths > 0:
		return modeDegraded
	}
	return modeIsolated
}

// Run starts the agent and serves until ctx ends: it opens (or creates)
// StateDir and the cache, starts the local listeners, calls ready (if not
// nil) once they accept connections, and enrolls (if needed) and syncs in
// the background. It serves from the cache whether or not the server is
// reachable. Run returns nil once ctx has ended and everything is closed,
// or an error if start-up fails or a listener stops.
func Run(ctx context.Context, cfg Config, ready func(Info)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	a := &agent{cfg: cfg, log: cfg.logger(), clock: cfg.clock(), attest: joinToken(cfg.JoinToken), renewNow: make(chan struct{}, 1)}
	if err := prepareDir(cfg.StateDir); err != nil {
		return err
	}
	var kp cache.KeyProtector
	if cfg.TPM != "" {
		dev, err := tpmdev.Open(cfg.TPM)
		if err != nil {
			return fmt.Errorf("agent: TPM %s: %w", cfg.TPM, err)
		}
		defer dev.Close()
		ta, err := newTPMAttestor(dev, cfg)
		if err != nil {
			return err
		}
		a.attest, a.tpm = ta, ta
		kp = tpmkey.New(dev, sealPCRs)
		a.sealer = kp
	} else {
		var err error
		if kp, err = keyfile.Open(filepath.Join(cfg.StateDir, cacheKeyFile)); err != nil {
			return fmt.Errorf("agent: cache key: %w", err)
		}
	}
	if cfg.ServerCA != "" {
		pem, err := os.ReadFile(cfg.ServerCA)
		if err != nil {
			return fmt.Errorf("agent: ServerCA: %w", err)
		}
		a.roots = x509.NewCertPool()
		if !a.roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("agent: ServerCA %s: no PEM certificate in it", cfg.ServerCA)
		}
	}
	id, err := loadIdentity(cfg.StateDir, cfg.Zone, a.sealer)
	if errors.Is(err, ErrIdentitySealed) {
		a.log.Error("agent identity sealed to another TPM or another boot state: enrolling again with the TPM", "err", err)
		if err := os.Remove(filepath.Join(cfg.StateDir, identityFile)); err != nil {
			return fmt.Errorf("agent: remove the unusable identity: %w", err)
		}
		id = nil
	} else if err != nil {
		return err
	}
	a.id.Store(id)
	token, err := loadToken(filepath.Join(cfg.StateDir, localTokenFile))
	if err != nil {
		return err
	}
	if a.cache, a.reattestFirst, err = openCache(cfg, kp, a.log, a.clock); err != nil {
		return err
	}
	defer a.cache.Close()
	if a.audit, err = openAuditTrail(a, filepath.Join(cfg.StateDir, spoolDir)); err != nil {
		return err
	}
	defer a.audit.close()

	a.loadRevoked()
	a.loadRefused()
	a.subCAs = newSubCAs(a)
	api := &localAPI{a: a, token: []byte(token)}
	a.leases = &api.leases
	api.proxy = a.newProxy(func(w http.ResponseWriter, r *http.Request) {
		api.refuse(w, r, false, http.StatusServiceUnavailable, ErrControlPlaneUnreachable.Error())
	})
	defer api.proxy.Transport.(*http.Transport).CloseIdleConnections()
	api.leases.start(a) // leased credentials sealed in the cache: renewed from now on
	hs := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	lns, info, err := listen(cfg)
	if err != nil {
		return err
	}
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	info.LocalToken = token
	if id != nil {
		info.AgentID, info.SPIFFEID = id.agentID, id.spiffeID
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	serveErr := make(chan error, len(lns))
	for _, ln := range lns {
		wg.Go(func() {
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("agent: serve %s: %w", ln.Addr(), err)
			}
		})
	}
	wg.Go(func() { a.control(ctx) })
	wg.Go(func() { a.markLoop(ctx) })
	wg.Go(func() { a.audit.forwardLoop(ctx) })
	wg.Go(func() { a.subCAs.run(ctx) })
	a.log.Info("agent started", "zone", cfg.Zone, "listen", info.Listen, "socket", info.Socket,
		"agent_id", info.AgentID, "cached_paths", a.cache.Stats().Paths, "watermark", a.cache.Watermark())
	if ready != nil {
		ready(info)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-serveErr:
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	wg.Wait()
	if err := a.cache.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("agent: %w", err)
	}
	if err := a.audit.close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("agent: audit spool: %w", err)
	}
	a.log.Info("agent stopped")
	return runErr
}

// listen opens the local API's listeners.
func listen(cfg Config) ([]net.Listener, Info, error) {
	var lns []net.Listener
	var info Info
	fail := func(err error) ([]net.Listener, Info, error) {
		for _, ln := range lns {
			_ = ln.Close()
		}
		return nil, Info{}, err
	}
	if cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fail(fmt.Errorf("agent: Listen: %w", err))
		}
		lns = append(lns, ln)
		info.Listen = ln.Addr().String()
	}
	if cfg.Socket != "" {
		ln, err := listenUnix(cfg.Socket)
		if err != nil {
			return fail(err)
		}
		lns = append(lns, ln)
		info.Socket = cfg.Socket
	}
	return lns, info, nil
}

// prepareDir creates StateDir (0700) or checks that group and others
// cannot reach it.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrStateDir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStateDir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrStateDir, dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o and holds the agent's key; run chmod 700 %s", ErrStateDir, dir, perm, dir)
	}
	return nil
}

// loadToken reads the local token, creating it on first start.
func loadToken(file string) (string, error) {
	raw, err := readPrivate(file)
	if err == nil {
		tok := strings.TrimSpace(string(raw))
		if len(tok) < 20 {
			return "", fmt.Errorf("agent: local token %s is too short; remove it to have a new one made", file)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("agent: local token: %w", err)
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := "eva." + base64.RawURLEncoding.EncodeToString(b[:])
	if err := writePrivate(file, []byte(tok+"\n")); err != nil {
		return "", fmt.Errorf("agent: local token: %w", err)
	}
	return tok, nil
}

// openCache opens the cache. A corrupted file, or one whose key kp no
// longer unwraps, is removed: the agent re-syncs from scratch. sealed
// reports that the key was sealed to another TPM or boot state (the agent
// must re-attest before it syncs again).
func openCache(cfg Config, kp cache.KeyProtector, log *slog.Logger, clock func() time.Time) (c *cache.Cache, sealed bool, err error) {
	file := filepath.Join(cfg.StateDir, cacheFile)
	opts := cache.Options{Zone: cfg.Zone, Clock: clock, Logger: log}
	c, err = cache.Open(file, kp, opts)
	if errors.Is(err, tpmdev.ErrPCRMismatch) || errors.Is(err, tpmdev.ErrOtherTPM) {
		sealed = true
		log.Error("agent cache sealed to another TPM or another boot state: it is discarded and rebuilt once the agent "+
			"has re-attested and re-synced", "file", file, "err", err)
	}
	if errors.Is(err, cache.ErrCorrupt) || errors.Is(err, cache.ErrKeyMismatch) {
		log.Warn("agent cache unusable: removing it for a full resync", "file", file, "err", err)
		if rerr := os.Remove(file); rerr != nil {
			return nil, false, fmt.Errorf("agent: remove the unusable cache: %w (after %w)", rerr, err)
		}
		c, err = cache.Open(file, kp, opts)
	}
	if err != nil {
		return nil, false, fmt.Errorf("agent: %w", err)
	}
	return c, sealed, nil
}

// listenUnix listens on a unix socket (0600), replacing a stale socket
// file but nothing else.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("agent: Socket %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, 100*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("agent: Socket %s is in use by another process", path)
		}
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("agent: Socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent: Socket: %w", err)
	}
	return ln, nil
}

// tlsConfig is the server connection's TLS configuration; with client, it
// presents the agent's current certificate.
func (a *agent) tlsConfig(client bool) *tls.Config {
	cfg := &tls.Config{RootCAs: a.roots, MinVersion: tls.VersionTLS12}
	if client {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if id := a.id.Load(); id != nil && id.cert != nil {
				return id.cert, nil
			}
			return &tls.Certificate{}, nil // none: the server refuses
		}
	}
	return cfg
}

func (a *agent) httpClient(client bool) *http.Client {
	return a.newHTTPClient(a.tlsConfig(client))
}

// httpClientAs presents id's certificate, whatever renewal does meanwhile.
func (a *agent) httpClientAs(id *identity) *http.Client {
	cfg := a.tlsConfig(false)
	if id != nil && id.cert != nil {
		cfg.Certificates = []tls.Certificate{*id.cert}
	}
	return a.newHTTPClient(cfg)
}

func (a *agent) newHTTPClient(cfg *tls.Config) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:       cfg,
		ForceAttemptHTTP2:     true,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       time.Minute,
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// newProxy passes requests the agent does not answer to the server. It
// never presents the agent's certificate. When the server cannot be
// reached, unreachable answers the request.
func (a *agent) newProxy(unreachable http.HandlerFunc) *httputil.ReverseProxy {
	target, _ := url.Parse(strings.TrimSuffix(a.cfg.ServerAddr, "/")) // checked by Validate
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: a.httpClient(false).Transport,
		ErrorLog:  slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			a.log.Info("local API: proxy to the server failed", "path", r.URL.Path, "err", err)
			unreachable(w, r)
		},
	}
}

// control enrolls (if needed), then runs the sync stream and certificate
// renewal until ctx ends.
func (a *agent) control(ctx context.Context) {
	if id := a.id.Load(); id == nil || id.cert == nil {
		if !a.enroll(ctx) {
			return
		}
	}
	if a.reattestFirst && !a.reattest(ctx) {
		return
	}
	if a.revoked.Load() != nil {
		return // revoked by the control plane: nothing more to sync
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ap := &applier{c: a.cache, log: a.log, clock: a.clock, budgetMemory: true, reattest: func(agentID string) {
		if id := a.id.Load(); agentID != "" && (id == nil || id.agentID != agentID) {
			return // for another agent of the zone
		}
		select {
		case a.renewNow <- struct{}{}:
		default:
		}
	}, hooks: a, pending: &a.revoking}
	cl := &syncproto.Client{
		URL:       strings.TrimSuffix(a.cfg.ServerAddr, "/") + syncproto.Path,
		TLSConfig: a.tlsConfig(true),
		From:      a.cache.Watermark,
		Apply:     ap.apply,
		// The catch-up's removals, before anything is applied (revocations.go).
		ApplyRevocations: ap.applyRevocations,
		OnState: func(s syncproto.State, err error) {
			a.online.Store(s == syncproto.StateConnected)
			// Only the server accepting the agent clears a refusal: an
			// outage after it must not turn "serves nothing" back into
			// serving what an undelivered revocation covers.
			switch {
			case s == syncproto.StateConnected:
				a.setRefused(false)
			case errors.Is(err, syncproto.ErrRefused):
				a.setRefused(true)
			}
			if s == syncproto.StateConnected {
				a.log.Info("agent online: sync stream connected", "watermark", a.cache.Watermark())
				a.mark()
			} else {
				a.log.Warn("agent degraded: sync stream lost", "err", err)
				a.renewIfRefused(err)
			}
		},
		Timeout: syncTimeout,
		Logger:  a.log,
	}
	wg.Go(func() { _ = cl.Run(ctx) })
	wg.Go(func() { a.renewLoop(ctx) })
	<-ctx.Done()
	a.online.Store(false)
}

// renewIfRefused asks a TPM agent whose stream the server refused to renew,
// which re-attests: a re-attestation it was asked for and missed (the
// request lost with a resync) is the likely reason, and the renewal clears
// it — or fails and says why. At most once a minute.
func (a *agent) renewIfRefused(err error) {
	if a.tpm == nil || !errors.Is(err, syncproto.ErrRefused) {
		return
	}
	now := time.Now().UnixNano()
	last := a.refusedRenewal.Load()
	if now-last < int64(time.Minute) || !a.refusedRenewal.CompareAndSwap(last, now) {
		return
	}
	select {
	case a.renewNow <- struct{}{}:
	default:
	}
}

// reattest renews — with a fresh quote — until it succeeds or the server
// refuses (the agent stays isolated: a quarantine says why on the server).
func (a *agent) reattest(ctx context.Context) bool {
	hc := a.httpClient(true)
	defer hc.CloseIdleConnections()
	wait := minRetry
	for {
		err := a.renew(ctx, hc)
		if err == nil {
			return true
		}
		if errors.Is(err, ErrEnroll) {
			a.log.Error("agent isolated: the server refused the re-attestation after the boot state or TPM changed", "err", err)
			return false
		}
		a.log.Warn("agent: re-attestation failed; retrying", "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, maxRetry)
	}
}

// enroll obtains the first certificate, retrying while the server is
// unreachable. It returns false if ctx ended or there is no join token.
func (a *agent) enroll(ctx context.Context) bool {
	pending := a.id.Load() // a key saved by an enrollment that did not finish
	if pending == nil {
		k, err := newKey()
		if err != nil {
			a.log.Error("agent: generate a key", "err", err)
			return false
		}
		// The key is saved before the join token is spent.
		if err := saveIdentity(a.cfg.StateDir, k, nil, a.sealer); err != nil {
			a.log.Error("agent: save the new key", "err", err)
			return false
		}
		pending = &identity{key: k}
		a.id.Store(pending)
	}
	hc := a.httpClient(false)
	defer hc.CloseIdleConnections()
	wait := minRetry
	for {
		err := a.enrollOnce(ctx, hc, pending)
		if err == nil {
			return true
		}
		if errors.Is(err, ErrNoJoinToken) {
			a.log.Warn("agent isolated: not enrolled and no join token; serving the cache only", "err", err)
			return false
		}
		if errors.Is(err, ErrEnroll) {
			a.log.Error("agent isolated: the server refused the enrollment; restart the agent with a new join token", "err", err)
			return false
		}
		a.log.Warn("agent: enrollment failed; retrying", "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, maxRetry)
	}
}

func (a *agent) enrollOnce(ctx context.Context, hc *http.Client, pending *identity) error {
	body, err := a.attest.enroll(ctx, hc, pending.key)
	if err != nil {
		return err
	}
	if body["public_key"], err = publicKeyField(pending.key); err != nil {
		return err
	}
	chain, date, err := postAttest(ctx, hc, a.cfg.ServerAddr, a.cfg.Zone, "enroll", body)
	if err != nil {
		return err
	}
	a.checkClock(date)
	return a.install(pending.key, chain)
}

// checkClock compares the agent's clock with the server's (an answer's
// Date, to the second) and remembers the difference, so that renewal
// follows the server's clock; beyond the tolerance it says so loudly:
// max_stale and the cache's freshness are judged by the agent's clock.
func (a *agent) checkClock(server time.Time) {
	if server.IsZero() {
		return
	}
	ahead := server.Sub(a.clock())
	if ahead.Abs() < 2*time.Second { // Date has whole seconds
		ahead = 0
	}
	a.serverAhead.Store(int64(ahead))
	if ahead.Abs() > clockTolerance {
		how := "behind"
		if ahead < 0 {
			how = "ahead of"
		}
		a.log.Error("agent: the agent's clock is "+ahead.Abs().Round(time.Second).String()+" "+how+" the control plane's clock "+
			"(tolerance "+clockTolerance.String()+"); fix the node's time (NTP): max_stale and cache freshness are judged by this clock",
			"agent_time", a.clock().UTC().Format(time.RFC3339), "server_time", server.UTC().Format(time.RFC3339))
	}
}

// install checks, saves and switches to a new certificate.
func (a *agent) install(key *ecdsa.PrivateKey, chain [][]byte) error {
	raw, err := encodeIdentity(key, chain)
	if err != nil {
		return err
	}
	id, err := parseIdentity(raw, a.cfg.Zone)
	if err != nil {
		return fmt.Errorf("the server issued an unusable certificate: %w", err)
	}
	if err := saveIdentity(a.cfg.StateDir, key, chain, a.sealer); err != nil {
		return err
	}
	a.id.Store(id)
	a.log.Info("agent: certificate installed", "agent_id", id.agentID, "spiffe_id", id.spiffeID,
		"expires", id.expiry().UTC().Format(time.RFC3339))
	return nil
}

// renewLoop renews the certificate at two thirds of its lifetime, with a
// new key, over mTLS with the current certificate. It looks at the clock
// every renewPoll, so a clock that jumps (a resumed VM) is noticed.
func (a *agent) renewLoop(ctx context.Context) {
	hc := a.httpClient(true)
	defer hc.CloseIdleConnections()
	retry := minRetry
	asked := false // the server asked for a re-attestation: renew now
	for {
		id := a.id.Load()
		wait := min(id.renewAt().Sub(a.serverNow()), renewPoll)
		if wait > 0 && !asked {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
				continue
			case <-a.renewNow:
				a.log.Info("agent: the server asks for re-attestation: renewing now")
			}
		}
		asked = false
		if err := a.renew(ctx, hc); err != nil {
			if a.serverNow().After(id.expiry()) {
				a.log.Error("agent: the certificate has expired and the server refuses to renew it; the agent keeps serving its cache "+
					"but cannot sync: remove "+identityFile+" from the state directory and restart with a new join token", "err", err)
			} else {
				a.log.Warn("agent: certificate renewal failed; retrying", "in", retry, "expires", id.expiry(), "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			retry = min(2*retry, maxRetry)
			continue
		}
		retry = minRetry
		hc.CloseIdleConnections() // the next renewal presents the new certificate
		select {                  // never more than one renewal per minRenewGap, whatever the clocks say — unless the server asks
		case <-ctx.Done():
			return
		case <-time.After(minRenewGap):
		case <-a.renewNow:
			a.log.Info("agent: the server asks for re-attestation: renewing now")
			asked = true
		}
	}
}

func (a *agent) renew(ctx context.Context, hc *http.Client) error {
	k, err := newKey()
	if err != nil {
		return err
	}
	pub, err := publicKeyField(k)
	if err != nil {
		return err
	}
	body := map[string]any{"public_key": pub}
	if err := a.attest.renew(ctx, hc, k, body); err != nil {
		return err
	}
	chain, date, err := postAttest(ctx, hc, a.cfg.ServerAddr, a.cfg.Zone, "renew", body)
	if err != nil {
		return err
	}
	a.checkClock(date)
	return a.install(k, chain)
}

// markLoop records, while online, that the cache is current.
func (a *agent) markLoop(ctx context.Context) {
	t := time.NewTicker(markInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if a.online.Load() {
				a.mark()
			}
		}
	}
}

// mark calls MarkSynced conservatively: a connected stream has heard from
// the server within syncTimeout.
func (a *agent) mark() {
	if err := a.cache.MarkSynced(a.clock().Add(-syncTimeout)); err != nil && !errors.Is(err, cache.ErrClosed) {
		a.log.Warn("agent: mark the cache synced", "err", err)
	}
}

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"errors":["internal error encoding the response"]}`)
	}
	h := w.Header()
	h["Content-Type"] = jsonCT
	h["Cache-Control"] = noStore
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// writeError writes Vault's error body.
func writeError(w http.ResponseWriter, status int, msgs ...string) {
	if msgs == nil {
		msgs = []string{}
	}
	writeJSON(w, status, map[string][]string{"errors": msgs})
}

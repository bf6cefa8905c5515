package cli

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/internal/audit"
	"github.com/edgevault/edgevault/internal/barrier"
	"github.com/edgevault/edgevault/internal/barrier/keyfile"
	"github.com/edgevault/edgevault/internal/barrier/pkcs11"
	"github.com/edgevault/edgevault/internal/config"
	"github.com/edgevault/edgevault/internal/httpapi"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// serverFlags are the flags of `edgevault server`, named as Vault names them.
type serverFlags struct {
	configPath    string
	dev           bool
	devRootToken  string
	devListenAddr string
	devAgentAddr  string // the dev agent's listener; "" runs no agent
	logLevel      string
}

func newServerCmd(e *env) *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the edgevault control plane",
		Long: `Run the edgevault control plane.

With -config FILE it serves the configured listener on the configured storage and
starts sealed: initialise it once with "edgevault operator init", then unseal it
after every start with "edgevault operator unseal".

With -dev it runs in memory, initialised and unsealed, on 127.0.0.1:8200 over plain
HTTP, with a root token printed (or set with -dev-root-token-id). Nothing survives.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if f.dev {
				if f.configPath != "" {
					return usagef("-dev and -config cannot be used together")
				}
				return runDevServer(ctx, e, f, nil)
			}
			if f.configPath == "" {
				return hintError{usagef("no configuration given"), "pass -config FILE, or -dev for an in-memory dev server"}
			}
			cfg, err := config.Load(f.configPath)
			if err != nil {
				return err
			}
			if f.logLevel != "" {
				cfg.LogLevel = f.logLevel
			}
			return runServer(ctx, e, cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configPath, "config", "", "path to the server configuration file (HCL or JSON)")
	fl.BoolVar(&f.dev, "dev", false, "run an in-memory, unsealed dev server")
	fl.StringVar(&f.devRootToken, "dev-root-token-id", "", "root token ID for the dev server (random when empty)")
	fl.StringVar(&f.devListenAddr, "dev-listen-address", "127.0.0.1:8200", "address the dev server listens on (loopback only)")
	fl.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error")
	return cmd
}

func newLogger(e *env, level string) (*slog.Logger, error) {
	var l slog.Level
	if level == "" {
		level = "info"
	}
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("-log-level %q: expected debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: l})), nil
}

// runServer serves cfg until ctx ends.
func runServer(ctx context.Context, e *env, cfg config.Config) error {
	log, err := newLogger(e, cfg.LogLevel)
	if err != nil {
		return err
	}
	var phys storage.Backend
	switch cfg.Storage.Type {
	case "bolt":
		b, err := bolt.Open(cfg.Storage.Path, bolt.Options{Logger: log})
		if err != nil {
			return err
		}
		defer b.Close()
		phys = b
	case "inmem":
		phys = inmem.New()
	}
	hcfg := httpapi.Config{
		Physical: phys, StorageType: cfg.Storage.Type, Logger: log, MaxRequestSize: cfg.MaxRequestSize,
		Audit: auditConfig(cfg.Audit),
	}
	if cfg.Storage.Path != "" {
		hcfg.Audit.Reserved = []string{cfg.Storage.Path}
	}
	switch cfg.Seal {
	case "pkcs11":
		hsm, err := newHSMProtector(e, cfg.PKCS11)
		if err != nil {
			return err
		}
		defer hsm.Close()
		hcfg.Protector, hcfg.SealType = hsm, "pkcs11"
	case "dev":
		p, err := keyfile.Open(cfg.DevKeyFile)
		if err != nil {
			return fmt.Errorf("seal \"dev\": %w", err)
		}
		log.Warn("dev seal: the root key is wrapped by a key in a local file; whoever reads it and the storage reads every secret. Not for production", "key_file", cfg.DevKeyFile)
		hcfg.Protector, hcfg.SealType = p, "dev"
	}
	srv, err := httpapi.New(hcfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	if hcfg.Protector != nil {
		go autoUnseal(ctx, log, srv, hcfg.SealType)
	}
	ln, err := net.Listen("tcp", cfg.Listener.Address)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listener.Address, err)
	}
	scheme := "http"
	if cfg.Listener.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Listener.TLSCertFile, cfg.Listener.TLSKeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listener: load TLS certificate: %w", err)
		}
		// Agents present their zone certificate (auth/attest/renew, the
		// sync stream); the handler verifies it against the zone's CA.
		// HTTP/2 as well: the agents' sync stream needs it.
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			ClientAuth: tls.RequestClientCert, NextProtos: []string{"h2", "http/1.1"}})
		scheme = "https"
	} else if host, _, _ := net.SplitHostPort(cfg.Listener.Address); !isLoopback(host) {
		log.Warn("serving plain HTTP on a non-loopback address: tokens and secrets cross the network in clear", "address", cfg.Listener.Address)
	}
	log.Info("edgevault server started", "address", scheme+"://"+ln.Addr().String(), "storage", cfg.Storage.Type,
		"audit_devices", len(hcfg.Audit.Devices))
	go reopenOnHangup(ctx, log, srv)
	return serve(ctx, log, ln, srv.Handler())
}

// auditConfig maps the configuration file's audit settings to the server's.
func auditConfig(a config.Audit) httpapi.AuditConfig {
	out := httpapi.AuditConfig{RequireAny: a.Require == "any", KeyName: a.KeyName, CheckpointInterval: a.CheckpointInterval,
		AcceptLogReset: a.LogReset}
	for _, d := range a.Devices {
		out.Devices = append(out.Devices, audit.DeviceConfig{Path: d.Path, Type: d.Type, Description: d.Description,
			Options: d.Options, FromConfig: true})
	}
	return out
}

// reopenOnHangup reopens the audit files on SIGHUP, after logrotate moved them.
func reopenOnHangup(ctx context.Context, log *slog.Logger, srv *httpapi.Server) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := srv.ReopenAudit(); err != nil {
				log.Error("SIGHUP: reopen audit files", "err", err)
				continue
			}
			log.Info("SIGHUP: audit files reopened")
		}
	}
}

// newHSMProtector builds the pkcs11 seal's Protector from the config and
// the PIN (EDGEVAULT_HSM_PIN or pin_file). It does not contact the HSM.
func newHSMProtector(e *env, c *config.PKCS11Seal) (*pkcs11.Protector, error) {
	pin, err := pkcs11.ResolvePIN(e.getenv(pkcs11.PINEnv), c.PinFile)
	if err != nil {
		return nil, fmt.Errorf("seal \"pkcs11\": %w", err)
	}
	pc := pkcs11.Config{Lib: c.Lib, TokenLabel: c.TokenLabel, KeyLabel: c.KeyLabel, PIN: pin}
	if c.HasSlot {
		slot := int(c.Slot)
		pc.Slot = &slot
	}
	p, err := pkcs11.New(pc)
	if err != nil {
		return nil, fmt.Errorf("seal \"pkcs11\": %w", err)
	}
	return p, nil
}

// Auto-unseal retry bounds: the wait doubles from the first to the last.
const (
	autoUnsealFirstWait = time.Second
	autoUnsealMaxWait   = time.Minute
)

// autoUnseal unseals srv with its HSM, retrying with capped exponential
// backoff while the HSM is unreachable. It stops for good on errors that a
// retry cannot fix: a wrong PIN (retrying would lock the token), a wrapped
// key that does not authenticate, a seal type mismatch, or no init yet.
func autoUnseal(ctx context.Context, log *slog.Logger, srv *httpapi.Server, sealType string) {
	wait := autoUnsealFirstWait
	for attempt := 1; ; attempt++ {
		err := srv.AutoUnseal(ctx)
		switch {
		case err == nil:
			log.Info("auto-unsealed", "seal", sealType, "attempt", attempt)
			return
		case errors.Is(err, barrier.ErrNotInitialized):
			log.Info("not initialised yet; edgevault operator init (recovery keys) initialises it and unseals it", "seal", sealType)
			return
		case errors.Is(err, pkcs11.ErrPINIncorrect):
			log.Error("auto-unseal stopped: the HSM refused the PIN; not retrying, to avoid locking the token. Fix EDGEVAULT_HSM_PIN or pin_file and restart", "err", err)
			return
		case errors.Is(err, pkcs11.ErrUnwrap), errors.Is(err, keyfile.ErrUnwrap), errors.Is(err, barrier.ErrSealTypeMismatch), errors.Is(err, barrier.ErrBadRootKey):
			log.Error("auto-unseal stopped: retrying cannot fix this; the server stays sealed", "err", err)
			return
		}
		log.Warn("auto-unseal failed; the server stays sealed and retries", "err", err, "attempt", attempt, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, autoUnsealMaxWait)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serve runs an HTTP server on ln until ctx ends, then shuts it down gracefully.
func serve(ctx context.Context, log *slog.Logger, ln net.Listener, h http.Handler) error {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// devInfo is what a running dev server tells its caller.
type devInfo struct {
	addr, rootToken                  string
	auditFile, auditLog, auditVKey   string // the audit devices and the log's verifier key
	agentAddr, agentToken, zoneToken string // the dev agent: its listener, local token, and its zone's root token
}

// runDevServer runs the in-memory dev server. ready, when not nil, receives
// its address, root token and audit paths once it serves.
func runDevServer(ctx context.Context, e *env, f serverFlags, ready func(devInfo)) error {
	log, err := newLogger(e, f.logLevel)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(f.devListenAddr)
	if err != nil {
		return usagef("-dev-listen-address %q: %v", f.devListenAddr, err)
	}
	if !isLoopback(host) {
		return usagef("-dev-listen-address %q: the dev server serves plain HTTP and listens on loopback only", f.devListenAddr)
	}
	ln, err := net.Listen("tcp", f.devListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.devListenAddr, err)
	}
	auditDir, err := os.MkdirTemp("", "edgevault-dev-audit-")
	if err != nil {
		ln.Close()
		return fmt.Errorf("dev audit directory: %w", err)
	}
	defer os.RemoveAll(auditDir)
	auditFile, auditLog := filepath.Join(auditDir, "audit.log"), filepath.Join(auditDir, "audit-log")
	srv, err := httpapi.New(httpapi.Config{Physical: inmem.New(), StorageType: "inmem", Logger: log,
		// Checkpoints every 100ms, so what you just did is provable at once.
		Audit: httpapi.AuditConfig{CheckpointInterval: 100 * time.Millisecond, Devices: []audit.DeviceConfig{
			{Path: "file", Type: audit.TypeFile, Description: "dev: removed at exit", Options: map[string]string{"file_path": auditFile}, FromConfig: true},
			{Path: "log", Type: audit.TypeLog, Description: "dev: removed at exit", Options: map[string]string{"path": auditLog}, FromConfig: true},
		}}})
	if err != nil {
		ln.Close()
		return err
	}
	defer srv.Close()
	root, unsealKey, err := srv.InitDev(ctx, f.devRootToken)
	if err != nil {
		ln.Close()
		return err
	}
	vkey, err := srv.AuditVerifierKey(ctx)
	if err != nil {
		ln.Close()
		return err
	}
	var ag devAgent
	if f.devAgentAddr != "" {
		if ag, err = startDevAgent(ctx, log, srv.Handler(), root, auditDir, f.devAgentAddr); err != nil {
			ln.Close()
			return err
		}
	}
	addr := "http://" + ln.Addr().String()
	fmt.Fprintf(e.stdout, `edgevault dev server: in memory, unsealed, plain HTTP. Nothing survives a restart.

    export EDGEVAULT_ADDR='%s'
    export EDGEVAULT_TOKEN='%s'

Unseal Key: %s
Root Token: %s

Audit file:        %s
Transparency log:  %s
Log verifier key:  %s
`, addr, root, base64.StdEncoding.EncodeToString(unsealKey), root, auditFile, auditLog, vkey)
	if ag.Listen != "" {
		if ag.AgentID == "" {
			ag.AgentID = devAgentID // still enrolling
		}
		fmt.Fprintf(e.stdout, `
Edge agent %s of zone %q, serving the zone's cacheable secrets (secret/) on http://%s:

    # write through the control plane, in the zone:
    EDGEVAULT_NAMESPACE=%s EDGEVAULT_TOKEN='%s' go run ./cmd/edgevault kv put secret/app/db password=s3cret
    # read through the agent (its local token), from its encrypted cache:
    curl -s -H 'X-Vault-Token: %s' http://%s/v1/secret/data/app/db
`, ag.AgentID, devAgentZone, ag.Listen, devAgentZone, ag.ZoneToken, ag.LocalToken, ag.Listen)
	}
	if ready != nil {
		ready(devInfo{addr: addr, rootToken: root, auditFile: auditFile, auditLog: auditLog, auditVKey: vkey,
			agentAddr: ag.Listen, agentToken: ag.LocalToken, zoneToken: ag.ZoneToken})
	}
	return serve(ctx, log, ln, srv.Handler())
}

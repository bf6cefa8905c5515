// Package httpapi serves Vault's HTTP API: it routes /v1/ requests to sys,
// the token store and the mounted secrets engines, authenticates the
// X-Vault-Token, checks ACL policies, and writes Vault's JSON envelope and
// error shape. It owns the one mapping from errors to HTTP status codes.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/internal/barrier"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/policy"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/syncproto"
	"github.com/edgevault/edgevault/internal/token"
)

// Config configures a Server. Zero values take the defaults noted.
type Config struct {
	// Physical is the raw store (bbolt, inmem). Required.
	Physical storage.Backend
	// StorageType names Physical in seal-status ("bolt", "inmem").
	StorageType string
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// MaxRequestSize bounds request bodies; 0 means DefaultMaxRequestSize.
	MaxRequestSize int64
	// Version is reported by sys/health and sys/seal-status.
	Version string
	// TokenTidyInterval is how often expired tokens are removed; 0 means 1m.
	TokenTidyInterval time.Duration
	// Protector, when not nil, makes the seal an auto-unseal seal of type
	// SealType ("pkcs11"): init hands out recovery keys and AutoUnseal
	// unseals without operators. Nil means Shamir unseal keys.
	Protector barrier.Protector
	// SealType names the auto-unseal seal; required with Protector.
	SealType string
	// Audit configures the audit devices; none means nothing is audited.
	Audit AuditConfig
	// TrustDomain is the SPIFFE trust domain of agent IDs (default
	// DefaultTrustDomain).
	TrustDomain string
}

// Server is the Vault-compatible API over one barrier. Create it with New.
type Server struct {
	cfg     Config
	log     *slog.Logger
	barrier *barrier.Barrier
	seal    *barrier.Seal
	metrics *eventMetrics // the server's own Prometheus registry (sys/metrics)

	// mu serialises unseal, seal and mount-table changes. Requests never take it.
	mu    sync.Mutex
	state atomic.Pointer[unsealed]
}

// New returns a Server over cfg.Physical. It starts sealed (or uninitialised).
func New(cfg Config) (*Server, error) {
	if cfg.Physical == nil {
		return nil, errors.New("httpapi: Config.Physical is required")
	}
	if cfg.MaxRequestSize <= 0 {
		cfg.MaxRequestSize = DefaultMaxRequestSize
	}
	if cfg.TokenTidyInterval <= 0 {
		cfg.TokenTidyInterval = time.Minute
	}
	if cfg.Version == "" {
		cfg.Version = "0.1.0"
	}
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = DefaultTrustDomain
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := barrier.New(cfg.Physical)
	seal := barrier.NewSeal(b, cfg.Physical)
	if cfg.Protector != nil {
		var err error
		if seal, err = barrier.NewAutoSeal(b, cfg.Physical, cfg.SealType, cfg.Protector); err != nil {
			return nil, fmt.Errorf("httpapi: %w", err)
		}
	}
	return &Server{
		cfg:     cfg,
		log:     log,
		barrier: b,
		seal:    seal,
		metrics: newEventMetrics(),
	}, nil
}

// AutoUnseal unseals an auto-unseal server with its Protector and loads its
// state. It returns nil when already unsealed, and wraps
// barrier.ErrNotInitialized before init (init unseals by itself then).
func (s *Server) AutoUnseal(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Protector == nil {
		return errors.New("httpapi: auto-unseal: the server has a Shamir seal")
	}
	if !s.barrier.Sealed() && s.state.Load() != nil {
		return nil
	}
	if err := s.seal.AutoUnseal(ctx); err != nil {
		return err
	}
	if err := s.loadCoreLocked(ctx); err != nil {
		s.seal.SealNow()
		return fmt.Errorf("load state after auto-unseal: %w", err)
	}
	return nil
}

// Handler returns the HTTP handler serving /v1/.
func (s *Server) Handler() http.Handler { return s }

// Close seals the server and stops its background work.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropCoreLocked()
	s.seal.SealNow()
	return nil
}

// InitDev initialises storage with one unseal key, unseals, and creates a
// root token with rootTokenID (random when empty). It returns the root token
// and the unseal key (the root key itself: one share), so a dev server that
// was sealed can be unsealed again. For dev servers only.
func (s *Server) InitDev(ctx context.Context, rootTokenID string) (rootToken string, unsealKey []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	unsealKey, err = s.seal.InitDev(ctx, func(ctx context.Context) error {
		rootToken, err = s.bootstrap(ctx, rootTokenID)
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("dev init: %w", err)
	}
	if err := s.loadCoreLocked(ctx); err != nil {
		return "", nil, err
	}
	return rootToken, unsealKey, nil
}

// ServeHTTP routes one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Path
	if raw == syncproto.Path {
		// An agent's sync stream: its client certificate is the credential.
		u := s.state.Load()
		if u == nil || s.barrier.Sealed() {
			s.writeError(w, r, barrier.ErrSealed)
			return
		}
		u.sync.ServeHTTP(w, r)
		return
	}
	if !strings.HasPrefix(raw, "/v1/") {
		errorf(w, http.StatusNotFound, "unsupported path: API paths start with /v1/")
		return
	}
	path, err := cleanPath(raw[len("/v1/"):])
	if err == nil && r.URL.RawPath != "" {
		// An escaped path ("%2e%2e", "%2F") is checked as the client wrote it too.
		_, err = cleanPath(strings.TrimPrefix(r.URL.RawPath, "/v1/"))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if h, ok := unauthenticatedSys[path]; ok {
		h(s, w, r)
		return
	}
	u := s.state.Load()
	if u == nil || s.barrier.Sealed() {
		s.writeError(w, r, barrier.ErrSealed)
		return
	}
	// A zone is addressed as Vault clients address a namespace.
	ns := strings.Trim(r.Header.Get("X-Vault-Namespace"), "/")
	if ns == "root" {
		ns = ""
	}
	c, err := s.zoneCore(r.Context(), u, ns)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.serveAudited(c, w, r, path)
}

// request is one authenticated, authorised request on its way to a handler.
type request struct {
	logical.Request
	token *token.Entry
	acl   *policy.ACL
}

// serveAuthenticated serves a request that needs a token. t, when auditing
// is on, collects what the audit entries say; the request entry is written
// before the request can change anything.
func (s *Server) serveAuthenticated(c *core, w http.ResponseWriter, r *http.Request, path string, t *trail) {
	ctx := r.Context()
	if u := s.state.Load(); u != nil {
		// A zone sealed by an event refuses everything, audited.
		if err := u.zoneSealedByEvent(c.zone); err != nil {
			writeZoneSealed(w, err)
			return
		}
	}
	op, ok := operationFor(r)
	if !ok {
		errorf(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not supported", r.Method))
		return
	}
	if unauthenticatedAuth[path] {
		s.serveCredentialed(c, w, r, path, op, t)
		return
	}
	if kind, ok := intakeKinds[path]; ok {
		s.serveEventIntake(c, w, r, kind, t) // the event source's credential, not a token
		return
	}
	tok := r.Header.Get("X-Vault-Token")
	if tok == "" {
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			tok = strings.TrimPrefix(a, "Bearer ")
		}
	}
	route, rel, routeErr := c.route(path) // looked up once, used below
	if op == logical.ReadOperation && routeErr == nil && route.public != nil && route.public(rel) {
		// As in Vault, a token is neither needed nor checked there.
		s.servePublic(c, w, r, route, rel, t)
		return
	}
	if tok == "" {
		errorf(w, http.StatusForbidden, "permission denied")
		return
	}
	if r.Header.Get("X-Vault-Wrap-TTL") != "" {
		errorf(w, http.StatusBadRequest, "response wrapping (X-Vault-Wrap-TTL) is not supported yet; the response would not be wrapped")
		return
	}
	if t != nil {
		t.entry.Request.ClientToken = tok
	}
	entry, err := c.tokens.Lookup(ctx, tok)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if t != nil {
		t.entry.Auth = authEntry(tok, entry)
		t.entry.Request.ClientTokenAccessor = entry.Accessor()
	}
	acl, err := c.policies.ACL(ctx, entry.Policies())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if routeErr != nil {
		// As Vault does, a caller not allowed on the path learns nothing
		// about what is mounted there.
		if allowed, _ := acl.Allowed(op, path); !allowed {
			errorf(w, http.StatusForbidden, "permission denied")
			return
		}
		s.writeError(w, r, routeErr)
		return
	}
	if t != nil {
		t.entry.Request.MountPoint, t.entry.Request.MountType = route.mountPoint, route.mountType
	}
	if op == logical.PatchOperation {
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/merge-patch+json" {
			errorf(w, http.StatusUnsupportedMediaType, fmt.Sprintf("PATCH requires Content-Type application/merge-patch+json, got %q", r.Header.Get("Content-Type")))
			return
		}
	}
	var data map[string]any
	if op == logical.ReadOperation || op == logical.ListOperation {
		data = queryData(r)
	} else {
		data, err = decodeBody(w, r, s.cfg.MaxRequestSize)
		if err != nil {
			var tooBig errBodyTooLarge
			if errors.As(err, &tooBig) {
				errorf(w, http.StatusRequestEntityTooLarge, err.Error())
				return
			}
			s.writeError(w, r, err)
			return
		}
	}
	req := &request{
		Request: logical.Request{
			Operation:   op,
			Path:        rel,
			MountPoint:  route.mountPoint,
			Data:        data,
			Query:       r.URL.Query(),
			ClientToken: tok,
			ContentType: r.Header.Get("Content-Type"),
		},
		token: entry,
		acl:   acl,
	}
	if op == logical.UpdateOperation {
		if ec, ok := route.handler.(existenceChecker); ok {
			exists, err := ec.ExistenceCheck(ctx, &req.Request)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			if !exists {
				req.Operation = logical.CreateOperation
			}
		}
	}
	allowed, sudo := acl.Allowed(req.Operation, path)
	if !allowed || (route.sudo(rel) && !sudo) {
		errorf(w, http.StatusForbidden, "permission denied")
		return
	}
	req.Sudo = sudo
	if t != nil {
		t.entry.Request.Operation = string(req.Operation)
		t.entry.Request.Data = data
		if err := c.logRequest(t); err != nil {
			s.auditFailed(w, r, err)
			return
		}
	}
	// Use returns the entry as the use left it: the use that exhausts a
	// token still completes this request, through token.WithCaller.
	if entry, err = c.tokens.Use(ctx, entry); err != nil {
		s.writeError(w, r, err)
		return
	}
	req.token = entry
	ctx = token.WithCaller(ctx, entry)
	if route.serve != nil {
		route.serve(s, c, w, r, req)
		return
	}
	resp, err := route.handler.HandleRequest(ctx, &req.Request)
	if err == nil {
		err = c.leaseResponse(ctx, route, &req.Request, resp)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	requestID := ""
	if t != nil {
		t.resp = resp
		requestID = t.entry.Request.ID // the envelope and the audit entries name one request
	}
	writeResponseID(w, resp, route.mountType, requestID)
}

// servePublic serves a read of an unauthenticated mount path (rt.public),
// audited like the rest.
func (s *Server) servePublic(c *core, w http.ResponseWriter, r *http.Request, rt *route, rel string, t *trail) {
	data := queryData(r)
	if t != nil {
		t.entry.Request.MountPoint, t.entry.Request.MountType = rt.mountPoint, rt.mountType
		t.entry.Request.Operation, t.entry.Request.Data = string(logical.ReadOperation), data
		if err := c.logRequest(t); err != nil {
			s.auditFailed(w, r, err)
			return
		}
	}
	resp, err := rt.handler.HandleRequest(r.Context(), &logical.Request{Operation: logical.ReadOperation, Path: rel,
		MountPoint: rt.mountPoint, Data: data, Query: r.URL.Query()})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	requestID := ""
	if t != nil {
		t.resp = resp
		requestID = t.entry.Request.ID
	}
	writeResponseID(w, resp, rt.mountType, requestID)
}

// serveCredentialed serves an auth path whose credential is in the request
// itself (a join token, a client certificate) rather than a Vault token. It
// is audited like the rest: the request entry is written before anything
// can change.
func (s *Server) serveCredentialed(c *core, w http.ResponseWriter, r *http.Request, path string, op logical.Operation, t *trail) {
	route, rel, err := c.route(path)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	data, err := decodeBody(w, r, s.cfg.MaxRequestSize)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if t != nil {
		t.entry.Request.MountPoint, t.entry.Request.MountType = route.mountPoint, route.mountType
		t.entry.Request.Data = data
		if err := c.logRequest(t); err != nil {
			s.auditFailed(w, r, err)
			return
		}
	}
	route.serve(s, c, w, r, &request{Request: logical.Request{Operation: op, Path: rel, MountPoint: route.mountPoint, Data: data, Query: r.URL.Query()}})
}

// existenceChecker is implemented by handlers that tell create from update,
// so a policy granting only "create" cannot overwrite.
type existenceChecker interface {
	ExistenceCheck(ctx context.Context, req *logical.Request) (bool, error)
}

// queryData turns query parameters into request data for reads and lists.
func queryData(r *http.Request) map[string]any {
	q := r.URL.Query()
	if len(q) == 0 {
		return map[string]any{}
	}
	data := make(map[string]any, len(q))
	for k, v := range q {
		if k == "list" || len(v) == 0 {
			continue
		}
		data[k] = v[0]
	}
	return data
}

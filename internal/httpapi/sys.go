package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/barrier"
	"github.com/edgevault/edgevault/internal/logical"
)

// unauthenticatedSys are the sys endpoints served without a token, sealed or not.
var unauthenticatedSys = map[string]func(*Server, http.ResponseWriter, *http.Request){
	"sys/init":        (*Server).serveInit,
	"sys/seal-status": (*Server).serveSealStatus,
	"sys/unseal":      (*Server).serveUnseal,
	"sys/health":      (*Server).serveHealth,
	"sys/leader":      (*Server).serveLeader,
}

// sysRoute returns the route for an authenticated sys path (rel to "sys/").
func (c *core) sysRoute(rel string) *route {
	sys := func(serve func(*Server, *core, http.ResponseWriter, *http.Request, *request), sudo ...string) *route {
		return &route{mountPoint: "sys/", mountType: "system", serve: serve, sudoPaths: sudo}
	}
	if c.zone != "" && rootZoneOnly(rel) {
		return sys(func(s *Server, _ *core, w http.ResponseWriter, r *http.Request, _ *request) {
			s.writeError(w, r, fmt.Errorf("%w: sys/%s exists only in the root zone", logical.ErrUnsupportedPath, rel))
		})
	}
	switch {
	case strings.HasPrefix(rel, "zones/") && strings.HasSuffix(rel, "/unseal-events"):
		return sys(serveZoneUnsealEvents, rel)
	case rel == "zones" || strings.HasPrefix(rel, "zones/"):
		return sys(serveZones, rel)
	case strings.HasPrefix(rel, "events/"):
		return sys(serveEvents) // writes need sudo: checked in serveEvents
	case rel == "metrics":
		return sys(serveMetrics)
	case rel == "audit":
		return sys(serveAuditList, rel)
	case strings.HasPrefix(rel, "audit/"):
		return sys(serveAuditDevice, rel)
	case strings.HasPrefix(rel, "audit-hash/"):
		return sys(serveAuditHash)
	case strings.HasPrefix(rel, "audit-log/"):
		return sys(serveAuditLog, "audit-log/disclose")
	case rel == "agents/audit":
		return sys(serveAgentAudit)
	case rel == "agents/pki-sub-ca":
		return sys(serveAgentSubCA)
	case rel == "agents" || strings.HasPrefix(rel, "agents/"):
		return sys(serveAgents)
	case strings.HasPrefix(rel, "leases/"):
		return &route{mountPoint: "sys/", mountType: "system", handler: leaseHandler{c.leases}, sudoPaths: leaseSudo}
	case rel == "mounts":
		return sys(serveMounts)
	case strings.HasPrefix(rel, "mounts/"):
		return sys(serveMount)
	case rel == "internal/ui/mounts" || strings.HasPrefix(rel, "internal/ui/mounts/"):
		return sys(serveUIMounts)
	case rel == "seal":
		return sys(serveSeal, "seal")
	case rel == "rotate":
		return sys(serveRotate, "rotate")
	case rel == "key-status":
		return sys(serveKeyStatus)
	case rel == "capabilities-self" || rel == "capabilities":
		return sys(serveCapabilities)
	case rel == "auth":
		return sys(serveAuthMounts)
	case rel == "policy" || strings.HasPrefix(rel, "policy/") ||
		rel == "policies/acl" || strings.HasPrefix(rel, "policies/acl/"):
		return &route{mountPoint: "sys/", mountType: "system", handler: c.policies}
	}
	return sys(func(s *Server, _ *core, w http.ResponseWriter, r *http.Request, _ *request) {
		s.writeError(w, r, fmt.Errorf("%w: sys/%s", logical.ErrUnsupportedPath, rel))
	})
}

// rootZoneOnly reports whether sys/rel acts on the whole server, so only the
// root zone (the operators') may call it.
func rootZoneOnly(rel string) bool {
	switch {
	case rel == "seal", rel == "rotate", rel == "key-status", rel == "zones", strings.HasPrefix(rel, "zones/"),
		rel == "audit", strings.HasPrefix(rel, "audit/"), strings.HasPrefix(rel, "audit-log/"),
		strings.HasPrefix(rel, "events/"), rel == "metrics":
		return true
	}
	return false
}

// initRequest is the body of PUT sys/init. The Vault client sends every
// field; the PGP and recovery ones must be empty.
type initRequest struct {
	SecretShares      int      `json:"secret_shares"`
	SecretThreshold   int      `json:"secret_threshold"`
	StoredShares      int      `json:"stored_shares"`
	PGPKeys           []string `json:"pgp_keys"`
	RecoveryShares    int      `json:"recovery_shares"`
	RecoveryThreshold int      `json:"recovery_threshold"`
	RecoveryPGPKeys   []string `json:"recovery_pgp_keys"`
	RootTokenPGPKey   string   `json:"root_token_pgp_key"`
}

func (s *Server) serveInit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	switch r.Method {
	case http.MethodGet:
		st, err := s.seal.Status(ctx)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"initialized": st.Initialized})
		return
	case http.MethodPut, http.MethodPost:
	default:
		errorf(w, http.StatusMethodNotAllowed, "sys/init takes GET or PUT")
		return
	}
	var req initRequest
	if err := decodeStrict(w, r, s.cfg.MaxRequestSize, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	switch {
	case len(req.PGPKeys) > 0 || req.RootTokenPGPKey != "" || len(req.RecoveryPGPKeys) > 0:
		s.writeError(w, r, logical.InvalidRequest("PGP-encrypted key shares are not supported"))
		return
	case s.cfg.Protector == nil && (req.RecoveryShares != 0 || req.RecoveryThreshold != 0):
		s.writeError(w, r, logical.InvalidRequest("recovery_shares and recovery_threshold apply only to auto-unseal, which this seal is not"))
		return
	case s.cfg.Protector != nil && (req.SecretShares != 0 || req.SecretThreshold != 0):
		s.writeError(w, r, logical.InvalidRequest("secret_shares and secret_threshold must be 0 (or absent) with the %s auto-unseal seal; use recovery_shares and recovery_threshold", s.cfg.SealType))
		return
	case s.cfg.Protector == nil && req.StoredShares != 0:
		s.writeError(w, r, logical.InvalidRequest("stored_shares must be 0 with a Shamir seal"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var root string
	bootstrap := func(ctx2 context.Context) error {
		var err error
		root, err = s.bootstrap(ctx2, "")
		return err
	}
	var keys [][]byte
	var err error
	if s.cfg.Protector != nil {
		keys, err = s.seal.InitRecovery(ctx, req.RecoveryShares, req.RecoveryThreshold, bootstrap)
	} else {
		keys, err = s.seal.Init(ctx, req.SecretShares, req.SecretThreshold, bootstrap)
	}
	if err != nil {
		s.writeError(w, r, initError(err))
		return
	}
	out := struct {
		Keys       []string `json:"keys"`
		KeysB64    []string `json:"keys_base64"`
		RecKeys    []string `json:"recovery_keys,omitempty"`
		RecKeysB64 []string `json:"recovery_keys_base64,omitempty"`
		RootToken  string   `json:"root_token"`
	}{RootToken: root, Keys: []string{}, KeysB64: []string{}}
	for _, k := range keys {
		if s.cfg.Protector != nil {
			out.RecKeys = append(out.RecKeys, hex.EncodeToString(k))
			out.RecKeysB64 = append(out.RecKeysB64, base64.StdEncoding.EncodeToString(k))
		} else {
			out.Keys = append(out.Keys, hex.EncodeToString(k))
			out.KeysB64 = append(out.KeysB64, base64.StdEncoding.EncodeToString(k))
		}
	}
	if s.cfg.Protector != nil {
		s.log.Info("initialised with auto-unseal", "seal", s.cfg.SealType, "recovery_shares", req.RecoveryShares, "recovery_threshold", req.RecoveryThreshold)
		// As Vault does, an auto-unseal server is unsealed right after init.
		if err := s.seal.AutoUnseal(ctx); err != nil {
			s.log.Error("auto-unseal after init failed", "err", err)
		} else if err := s.loadCoreLocked(ctx); err != nil {
			s.seal.SealNow()
			s.log.Error("load state after init failed", "err", err)
		}
	} else {
		s.log.Info("initialised", "shares", req.SecretShares, "threshold", req.SecretThreshold)
	}
	writeJSON(w, http.StatusOK, out)
}

// initError turns the seal's validation errors into 400s.
func initError(err error) error {
	if errors.Is(err, barrier.ErrAlreadyInitialized) {
		return logical.InvalidRequest("Vault is already initialized")
	}
	if errors.Is(err, barrier.ErrInvalidSealConfig) {
		return fmt.Errorf("%w: %s", logical.ErrInvalidRequest, strings.TrimPrefix(err.Error(), barrier.ErrInvalidSealConfig.Error()+": "))
	}
	return err
}

// sealStatus is the body of sys/seal-status and sys/unseal.
type sealStatus struct {
	Type         string `json:"type"`
	Initialized  bool   `json:"initialized"`
	Sealed       bool   `json:"sealed"`
	T            int    `json:"t"`
	N            int    `json:"n"`
	Progress     int    `json:"progress"`
	Nonce        string `json:"nonce"`
	Version      string `json:"version"`
	BuildDate    string `json:"build_date"`
	Migration    bool   `json:"migration"`
	RecoverySeal bool   `json:"recovery_seal"`
	StorageType  string `json:"storage_type,omitempty"`
}

func (s *Server) sealStatus(st barrier.Status) sealStatus {
	typ := st.Type
	if typ == "" {
		typ = "shamir"
	}
	// Unsealed means ready to serve: the barrier is open and the state
	// (mounts, zones, audit devices) is loaded.
	sealed := st.Sealed || s.state.Load() == nil
	return sealStatus{
		Type: typ, Initialized: st.Initialized, Sealed: sealed, T: st.T, N: st.N,
		Progress: st.Progress, Nonce: st.Nonce, Version: s.cfg.Version, StorageType: s.cfg.StorageType,
		RecoverySeal: st.RecoverySeal,
	}
}

func (s *Server) serveSealStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		errorf(w, http.StatusMethodNotAllowed, "sys/seal-status takes GET")
		return
	}
	st, err := s.seal.Status(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.sealStatus(st))
}

// unsealRequest is the body of PUT sys/unseal.
type unsealRequest struct {
	Key     string `json:"key"`
	Reset   bool   `json:"reset"`
	Migrate bool   `json:"migrate"`
}

func (s *Server) serveUnseal(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		errorf(w, http.StatusMethodNotAllowed, "sys/unseal takes PUT")
		return
	}
	ctx := r.Context()
	var req unsealRequest
	if err := decodeStrict(w, r, s.cfg.MaxRequestSize, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Migrate {
		s.writeError(w, r, logical.InvalidRequest("seal migration through sys/unseal is not supported; stop the server and run \"edgevault operator seal-migrate\""))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Reset {
		s.seal.ResetUnseal()
	} else {
		if req.Key == "" {
			s.writeError(w, r, logical.InvalidRequest("field \"key\": missing the unseal key share"))
			return
		}
		key, err := decodeKeyShare(req.Key)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		wasSealed := s.barrier.Sealed()
		if _, err := s.seal.SubmitShare(ctx, key); err != nil {
			if errors.Is(err, barrier.ErrNotInitialized) {
				s.writeError(w, r, logical.InvalidRequest("Vault is not initialized"))
				return
			}
			if errors.Is(err, barrier.ErrBadRootKey) {
				s.writeError(w, r, logical.InvalidRequest("the unseal keys given do not rebuild the root key; unseal progress was reset"))
				return
			}
			if errors.Is(err, barrier.ErrInvalidShare) {
				s.writeError(w, r, logical.InvalidRequest("%s", strings.TrimPrefix(err.Error(), barrier.ErrInvalidShare.Error()+": ")))
				return
			}
			s.writeError(w, r, err)
			return
		}
		if wasSealed && !s.barrier.Sealed() {
			if err := s.loadCoreLocked(ctx); err != nil {
				s.seal.SealNow()
				s.writeError(w, r, fmt.Errorf("load state after unseal: %w", err))
				return
			}
		}
	}
	st, err := s.seal.Status(ctx)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.sealStatus(st))
}

// decodeKeyShare accepts a key share in hex or base64, as Vault does.
func decodeKeyShare(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return nil, logical.InvalidRequest("field \"key\": the unseal key share is neither hex nor base64")
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		errorf(w, http.StatusMethodNotAllowed, "sys/health takes GET or HEAD")
		return
	}
	st, err := s.seal.Status(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	code := func(name string, def int) (int, error) {
		v := q.Get(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 599 {
			return 0, logical.InvalidRequest("query parameter %q: not an HTTP status code: %q", name, v)
		}
		return n, nil
	}
	codes := map[string]int{}
	for _, name := range []string{"activecode", "uninitcode", "sealedcode", "standbycode", "drsecondarycode",
		"performancestandbycode", "removedcode", "haunhealthycode"} {
		c, err := code(name, 0)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		codes[name] = c
	}
	pick := func(name string, def int) int {
		if c := codes[name]; c != 0 {
			return c
		}
		return def
	}
	status := pick("activecode", http.StatusOK)
	switch {
	case !st.Initialized:
		status = pick("uninitcode", http.StatusNotImplemented)
	case st.Sealed:
		status = pick("sealedcode", http.StatusServiceUnavailable)
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, map[string]any{
		"initialized":                  st.Initialized,
		"sealed":                       st.Sealed,
		"standby":                      false,
		"performance_standby":          false,
		"replication_performance_mode": "disabled",
		"replication_dr_mode":          "disabled",
		"server_time_utc":              time.Now().Unix(),
		"version":                      s.cfg.Version,
		"enterprise":                   false,
	})
}

// serveLeader answers sys/leader: a single server is its own leader and HA
// is not enabled (the vault CLI's status command asks).
func (s *Server) serveLeader(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		errorf(w, http.StatusMethodNotAllowed, "sys/leader takes GET")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"ha_enabled":                          false,
		"is_self":                             false,
		"active_time":                         "0001-01-01T00:00:00Z",
		"leader_address":                      "",
		"leader_cluster_address":              "",
		"performance_standby":                 false,
		"performance_standby_last_remote_wal": 0,
	})
}

func serveSeal(s *Server, _ *core, w http.ResponseWriter, r *http.Request, req *request) {
	if req.Operation != logical.UpdateOperation && req.Operation != logical.CreateOperation {
		s.writeError(w, r, fmt.Errorf("%w: sys/seal takes PUT", logical.ErrUnsupportedOperation))
		return
	}
	s.mu.Lock()
	s.dropCoreLocked()
	s.seal.SealNow()
	s.mu.Unlock()
	s.log.Info("sealed by request")
	w.WriteHeader(http.StatusNoContent)
}

func serveRotate(s *Server, _ *core, w http.ResponseWriter, r *http.Request, req *request) {
	if req.Operation != logical.UpdateOperation && req.Operation != logical.CreateOperation {
		s.writeError(w, r, fmt.Errorf("%w: sys/rotate takes PUT", logical.ErrUnsupportedOperation))
		return
	}
	term, err := s.barrier.Rotate(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("rotated the barrier key", "term", term)
	// The zones' root key rotates with it: every zone KEK is rewrapped, no
	// record is rewritten.
	if u := s.state.Load(); u != nil {
		s.mu.Lock()
		err := s.rotateZoneRoot(r.Context(), u)
		s.mu.Unlock()
		if err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func serveKeyStatus(s *Server, _ *core, w http.ResponseWriter, r *http.Request, req *request) {
	term, installed, err := s.barrier.KeyStatus()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeResponse(w, &logical.Response{Data: map[string]any{
		"term":         term,
		"install_time": installed.UTC().Format(time.RFC3339Nano),
		"encryptions":  0,
	}}, "system")
}

// serveCapabilities answers sys/capabilities-self and sys/capabilities.
func serveCapabilities(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	if req.Operation != logical.UpdateOperation && req.Operation != logical.CreateOperation {
		s.writeError(w, r, fmt.Errorf("%w: capabilities take POST", logical.ErrUnsupportedOperation))
		return
	}
	if err := logical.CheckFields(req.Data, "paths", "path", "token"); err != nil {
		s.writeError(w, r, err)
		return
	}
	paths, _, err := logical.Strings(req.Data, "paths")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if p, ok, err := logical.String(req.Data, "path"); err != nil {
		s.writeError(w, r, err)
		return
	} else if ok {
		paths = append(paths, p)
	}
	if len(paths) == 0 {
		s.writeError(w, r, logical.InvalidRequest("field \"paths\": at least one path is required"))
		return
	}
	acl := req.acl
	if req.Path == "capabilities" {
		tok, _, err := logical.String(req.Data, "token")
		if err != nil || tok == "" {
			s.writeError(w, r, logical.InvalidRequest("field \"token\" is required"))
			return
		}
		e, err := c.tokens.Lookup(r.Context(), tok)
		if err != nil {
			s.writeError(w, r, logical.InvalidRequest("field \"token\": no such token"))
			return
		}
		if acl, err = c.policies.ACL(r.Context(), e.Policies()); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	data := map[string]any{}
	for _, p := range paths {
		caps := acl.Capabilities(strings.TrimPrefix(p, "/"))
		data[p] = caps
	}
	if len(paths) == 1 {
		data["capabilities"] = data[paths[0]]
	}
	writeResponse(w, &logical.Response{Data: data}, "system")
}

// serveAuthMounts answers sys/auth: the token method is always there.
func serveAuthMounts(s *Server, _ *core, w http.ResponseWriter, r *http.Request, req *request) {
	writeResponse(w, &logical.Response{Data: map[string]any{
		"token/": map[string]any{
			"type": "token", "description": "token based credentials", "accessor": "auth_token",
			"config": map[string]any{"default_lease_ttl": 0, "max_lease_ttl": 0}, "options": map[string]string{}, "local": false,
		},
	}}, "system")
}

package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/policy"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/token"
)

// Where each subsystem keeps its records inside the barrier.
const (
	tokenPrefix  = "sys/token/"
	policyPrefix = "sys/policy/"
	mountsKey    = "sys/mounts"
	enginePrefix = "logical/"
)

// core is everything that exists only while the barrier is unsealed.
type core struct {
	tokens   *token.Store
	policies *policy.Store
	mounts   *mountTable
	cancel   context.CancelFunc
}

// bootstrap runs once, inside init, while the barrier is briefly unsealed:
// it writes the default policy and mount table and creates the root token.
func (s *Server) bootstrap(ctx context.Context, rootTokenID string) (string, error) {
	policies := policy.NewStore(storage.NewView(s.barrier, policyPrefix))
	if err := policies.EnsureDefault(ctx); err != nil {
		return "", fmt.Errorf("write default policy: %w", err)
	}
	if err := writeMountTable(ctx, s.barrier, defaultMounts()); err != nil {
		return "", err
	}
	tokens := token.NewStore(storage.NewView(s.barrier, tokenPrefix), token.Options{Logger: s.log})
	if rootTokenID != "" {
		if _, err := tokens.CreateRootWithID(ctx, rootTokenID); err != nil {
			return "", fmt.Errorf("create root token: %w", err)
		}
		return rootTokenID, nil
	}
	id, err := tokens.CreateRoot(ctx)
	if err != nil {
		return "", fmt.Errorf("create root token: %w", err)
	}
	return id, nil
}

// loadCoreLocked builds the unsealed state from storage. s.mu is held.
func (s *Server) loadCoreLocked(ctx context.Context) error {
	s.dropCoreLocked()
	entries, err := readMountTable(ctx, s.barrier)
	if err != nil {
		return err
	}
	mt, err := s.buildMountTable(entries)
	if err != nil {
		return err
	}
	bg, cancel := context.WithCancel(context.Background())
	c := &core{
		tokens:   token.NewStore(storage.NewView(s.barrier, tokenPrefix), token.Options{Logger: s.log, TidyInterval: s.cfg.TokenTidyInterval}),
		policies: policy.NewStore(storage.NewView(s.barrier, policyPrefix)),
		mounts:   mt,
		cancel:   cancel,
	}
	go c.tokens.Run(bg)
	s.state.Store(c)
	s.log.Info("unsealed", "mounts", len(entries))
	return nil
}

// dropCoreLocked forgets the unsealed state. s.mu is held.
func (s *Server) dropCoreLocked() {
	if c := s.state.Swap(nil); c != nil {
		c.cancel()
	}
}

// route is where a request goes once authorised.
type route struct {
	mountPoint string
	mountType  string
	handler    logical.Handler
	// serve, when set, answers the request itself (sys endpoints whose
	// responses are not plain logical responses).
	serve func(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request)
	// sudoPaths lists relative paths that need sudo on top of the capability.
	sudoPaths []string
}

func (rt *route) sudo(rel string) bool {
	for _, p := range rt.sudoPaths {
		if rel == p {
			return true
		}
	}
	return false
}

// route finds the handler for path (relative to /v1/) and the path relative
// to its mount.
func (c *core) route(path string) (*route, string, error) {
	switch {
	case strings.HasPrefix(path, "sys/"):
		rel := path[len("sys/"):]
		return c.sysRoute(rel), rel, nil
	case path == "sys":
		return nil, "", fmt.Errorf("%w: %s", logical.ErrUnsupportedPath, path)
	case strings.HasPrefix(path, "auth/token/"):
		return &route{mountPoint: "auth/token/", mountType: "token", handler: c.tokens, sudoPaths: []string{"revoke-orphan"}},
			path[len("auth/token/"):], nil
	}
	m := c.mounts.match(path)
	if m == nil {
		return nil, "", fmt.Errorf("%w: no handler for route %q; route entry not found", logical.ErrUnsupportedPath, path)
	}
	return &route{mountPoint: m.Path, mountType: m.Type, handler: m.handler}, path[len(m.Path):], nil
}

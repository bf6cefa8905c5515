package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/engine/database"
	"github.com/edgevault/edgevault/internal/engine/kv"
	"github.com/edgevault/edgevault/internal/engine/pki"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
)

// mountEntry is one secrets engine in the mount table, as stored.
type mountEntry struct {
	Path        string            `json:"path"` // with trailing slash: "secret/"
	Type        string            `json:"type"` // "kv"
	Description string            `json:"description"`
	UUID        string            `json:"uuid"`
	Accessor    string            `json:"accessor"`
	Options     map[string]string `json:"options"`
	Created     time.Time         `json:"created"`

	handler logical.Handler
}

// mountTable is an immutable snapshot; changes build a new one.
type mountTable struct {
	entries []*mountEntry // longest path first
}

// match returns the mount whose path is the longest prefix of path.
func (t *mountTable) match(path string) *mountEntry {
	for _, m := range t.entries {
		if strings.HasPrefix(path, m.Path) || path+"/" == m.Path {
			return m
		}
	}
	return nil
}

func (t *mountTable) stored() []*mountEntry {
	return t.entries
}

func defaultMounts() []*mountEntry {
	return []*mountEntry{newMountEntry("secret/", "kv", "key/value secret storage", map[string]string{"version": "2"})}
}

func newMountEntry(path, typ, desc string, opts map[string]string) *mountEntry {
	return &mountEntry{
		Path: path, Type: typ, Description: desc, Options: opts,
		UUID: randomUUID(), Accessor: typ + "_" + randomHex(4), Created: time.Now().UTC(),
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomUUID() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func readMountTable(ctx context.Context, b storage.Backend) ([]*mountEntry, error) {
	raw, err := b.Get(ctx, mountsKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	var entries []*mountEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("decode mount table: %w", err)
	}
	return entries, nil
}

func writeMountTable(ctx context.Context, b storage.Backend, entries []*mountEntry) error {
	raw, err := json.Marshal(entries)
	if err != nil {
		return fmt.Errorf("encode mount table: %w", err)
	}
	if err := b.Put(ctx, mountsKey, raw); err != nil {
		return fmt.Errorf("write mount table: %w", err)
	}
	return nil
}

// buildMountTable starts an engine for each stored entry of zone, over
// store; an entry already running in prev (same UUID) keeps its engine, with
// its connections and caches.
func (s *Server) buildMountTable(zone string, store storage.Backend, entries []*mountEntry, prev *mountTable) (*mountTable, error) {
	running := map[string]logical.Handler{}
	if prev != nil {
		for _, e := range prev.entries {
			running[e.UUID] = e.handler
		}
	}
	t := &mountTable{}
	for _, e := range entries {
		cp := *e
		if h := running[cp.UUID]; h != nil {
			cp.handler = h
			t.entries = append(t.entries, &cp)
			continue
		}
		switch cp.Type {
		case "kv":
			onChange := func(key string) {
				if u := s.state.Load(); u != nil {
					u.kvChanged(zone, cp.Path, key)
				}
			}
			cp.handler = kv.New(storage.NewView(store, enginePrefix+cp.UUID+"/"), kv.Options{Logger: s.log, OnChange: onChange})
		case "pki":
			cp.handler = pki.New(storage.NewView(store, enginePrefix+cp.UUID+"/"), pki.Options{Logger: s.log})
		case "database":
			cp.handler = database.New(storage.NewView(store, enginePrefix+cp.UUID+"/"), database.Options{Logger: s.log, Leases: leaseRecorder{s, zone}})
		default:
			return nil, fmt.Errorf("mount %q: unknown engine type %q", cp.Path, cp.Type)
		}
		t.entries = append(t.entries, &cp)
	}
	sort.Slice(t.entries, func(i, j int) bool { return len(t.entries[i].Path) > len(t.entries[j].Path) })
	return t, nil
}

// mountOutput is a mount as sys/mounts shows it.
func mountOutput(m *mountEntry) map[string]any {
	opts := m.Options
	if opts == nil {
		opts = map[string]string{}
	}
	return map[string]any{
		"type":        m.Type,
		"description": m.Description,
		"uuid":        m.UUID,
		"accessor":    m.Accessor,
		"config": map[string]any{
			"default_lease_ttl": 0,
			"max_lease_ttl":     0,
			"force_no_cache":    false,
		},
		"options":                 opts,
		"local":                   false,
		"seal_wrap":               false,
		"external_entropy_access": false,
		"plugin_version":          "",
		"running_plugin_version":  "v0.1.0+builtin",
		"running_sha256":          "",
	}
}

func sysMountOutput() map[string]any {
	return map[string]any{
		"type": "system", "description": "system endpoints used for control, policy and debugging",
		"uuid": "", "accessor": "system", "options": map[string]string{}, "local": false, "seal_wrap": true,
		"config": map[string]any{"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false},
	}
}

// serveMounts answers sys/mounts (GET: list).
func serveMounts(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	if req.Operation != logical.ReadOperation {
		s.writeError(w, r, fmt.Errorf("%w: sys/mounts only takes GET", logical.ErrUnsupportedOperation))
		return
	}
	data := map[string]any{"sys/": sysMountOutput()}
	for _, m := range c.mounts.Load().entries {
		data[m.Path] = mountOutput(m)
	}
	writeResponse(w, &logical.Response{Data: data}, "system")
}

// mountPathArg validates the mount path in sys/mounts/:path.
func mountPathArg(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", logical.InvalidRequest("mount path must not be empty")
	}
	first := strings.SplitN(p, "/", 2)[0]
	switch first {
	case "sys", "auth", "cubbyhole", "identity":
		return "", logical.InvalidRequest("mount path %q: %q is reserved", p+"/", first+"/")
	}
	return p + "/", nil
}

// serveMount answers sys/mounts/:path: GET shows, POST enables, DELETE disables.
func serveMount(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	path, err := mountPathArg(strings.TrimPrefix(req.Path, "mounts/"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch req.Operation {
	case logical.ReadOperation:
		m := c.mounts.Load().exact(path)
		if m == nil {
			s.writeError(w, r, logical.InvalidRequest("no secret engine mount at %s", path))
			return
		}
		writeResponse(w, &logical.Response{Data: mountOutput(m)}, "system")
	case logical.CreateOperation, logical.UpdateOperation:
		if err := s.enableMount(r.Context(), c, path, req.Data); err != nil {
			s.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case logical.DeleteOperation:
		if err := s.disableMount(r.Context(), c, path); err != nil {
			s.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		s.writeError(w, r, fmt.Errorf("%w: %s on sys/mounts/%s", logical.ErrUnsupportedOperation, req.Operation, path))
	}
}

func (t *mountTable) exact(path string) *mountEntry {
	for _, m := range t.entries {
		if m.Path == path {
			return m
		}
	}
	return nil
}

// enableMount validates a sys/mounts/:path body and adds the mount.
func (s *Server) enableMount(ctx context.Context, c *core, path string, data map[string]any) error {
	// The Vault client sends every MountInput field; accept them, use the ones we implement.
	if err := logical.CheckFields(data, "type", "description", "config", "local", "seal_wrap",
		"external_entropy_access", "options", "plugin_name", "plugin_version"); err != nil {
		return err
	}
	typ, _, err := logical.String(data, "type")
	if err != nil {
		return err
	}
	desc, _, err := logical.String(data, "description")
	if err != nil {
		return err
	}
	opts, _, err := logical.StringMap(data, "options")
	if err != nil {
		return err
	}
	cfg, _, err := logical.Object(data, "config")
	if err != nil {
		return err
	}
	if err := checkMountConfig(cfg); err != nil {
		return err
	}
	for _, name := range []string{"local", "seal_wrap", "external_entropy_access"} {
		if v, _, err := logical.Bool(data, name); err != nil {
			return err
		} else if v {
			return logical.InvalidRequest("field %q: not supported", name)
		}
	}
	entryOpts := map[string]string{"version": "2"}
	switch typ {
	case "kv-v2":
		typ = "kv"
	case "kv":
		if v := opts["version"]; v != "2" {
			return logical.InvalidRequest("field \"options\": kv version %q is not supported; use {\"version\":\"2\"} or type \"kv-v2\"", v)
		}
	case "pki", "database":
		if len(opts) > 0 {
			return logical.InvalidRequest("field \"options\": the %s engine takes none", typ)
		}
		entryOpts = map[string]string{}
	case "":
		return logical.InvalidRequest("field \"type\" is required")
	default:
		return logical.InvalidRequest("field \"type\": unknown secrets engine type %q (supported: kv, kv-v2, pki, database)", typ)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range c.mounts.Load().entries {
		if strings.HasPrefix(path, m.Path) || strings.HasPrefix(m.Path, path) {
			return logical.InvalidRequest("path is already in use at %s", m.Path)
		}
	}
	entries := append(append([]*mountEntry(nil), c.mounts.Load().stored()...),
		newMountEntry(path, typ, desc, entryOpts))
	return s.replaceMountsLocked(ctx, c, entries)
}

// checkMountConfig validates the "config" object of a mount request. The
// Vault client always sends the lease TTLs, force_no_cache and options; KV v2
// issues no leases, so valid TTLs are accepted and have no effect. Anything
// else set is refused rather than silently ignored.
func checkMountConfig(cfg map[string]any) error {
	for k, v := range cfg {
		switch k {
		case "default_lease_ttl", "max_lease_ttl":
			if _, _, err := logical.Duration(cfg, k); err != nil {
				return logical.InvalidRequest("field \"config\": %s", strings.TrimPrefix(err.Error(), logical.ErrInvalidRequest.Error()+": "))
			}
		case "force_no_cache":
			if b, _, err := logical.Bool(cfg, k); err != nil || b {
				return logical.InvalidRequest("field \"config\": force_no_cache: only false is supported")
			}
		case "description":
			if _, _, err := logical.String(cfg, k); err != nil {
				return logical.InvalidRequest("field \"config\": description: expected a string")
			}
		case "options":
			// The client sends null here; mount options are the top-level field.
			if m, ok := v.(map[string]any); v != nil && (!ok || len(m) > 0) {
				return logical.InvalidRequest("field \"config\": options: give mount options in the top-level \"options\" field")
			}
		default:
			if v != nil {
				return logical.InvalidRequest("field \"config\": %q is not supported (supported: default_lease_ttl, max_lease_ttl)", k)
			}
		}
	}
	return nil
}

// disableMount removes the mount at path and every record it stored.
func (s *Server) disableMount(ctx context.Context, c *core, path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []*mountEntry
	var gone *mountEntry
	for _, m := range c.mounts.Load().entries {
		if m.Path == path {
			gone = m
			continue
		}
		keep = append(keep, m)
	}
	if gone == nil {
		return nil // Vault answers 204 for a path with no mount.
	}
	// As Vault does, the mount's leases are revoked first: its secrets must
	// not outlive the engine that can revoke them. New requests are turned
	// away meanwhile, so none adds a lease behind the revocation. A failure
	// keeps the mount.
	c.unmounting.Store(gone.UUID, true)
	defer c.unmounting.Delete(gone.UUID)
	if _, err := c.leases.RevokePrefix(ctx, strings.TrimSuffix(path, "/")); err != nil {
		return fmt.Errorf("unmount %q: revoke its leases (the mount is kept; see sys/leases/failing): %w", path, err)
	}
	if err := s.replaceMountsLocked(ctx, c, keep); err != nil {
		return err
	}
	if err := deleteTree(ctx, c.store, enginePrefix+gone.UUID+"/"); err != nil {
		s.log.Warn("unmount: records left behind", "mount", path, "err", err)
	}
	if u := s.state.Load(); u != nil {
		u.republish(c.zone) // the mount's secrets leave the agents
	}
	return nil
}

// replaceMountsLocked persists the zone's new mount table and swaps it in;
// the engines of mounts that are gone are closed. s.mu is held.
func (s *Server) replaceMountsLocked(ctx context.Context, c *core, entries []*mountEntry) error {
	prev := c.mounts.Load()
	mt, err := s.buildMountTable(c.zone, c.store, entries, prev)
	if err != nil {
		return err
	}
	if err := writeMountTable(ctx, c.store, entries); err != nil {
		return err
	}
	c.mounts.Store(mt)
	kept := map[string]bool{}
	for _, e := range mt.entries {
		kept[e.UUID] = true
	}
	for _, e := range prev.entries {
		if !kept[e.UUID] {
			closeEngine(e.handler)
		}
	}
	return nil
}

// closeEngine releases what an engine holds open (a database engine's
// connection pools); engines holding nothing have no Close.
func closeEngine(h logical.Handler) {
	if c, ok := h.(interface{ Close() }); ok {
		c.Close()
	}
}

// deleteTree removes every key under prefix.
func deleteTree(ctx context.Context, b storage.Backend, prefix string) error {
	keys, err := b.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if strings.HasSuffix(k, "/") {
			if err := deleteTree(ctx, b, prefix+k); err != nil {
				return err
			}
			continue
		}
		if err := b.Delete(ctx, prefix+k); err != nil {
			return err
		}
	}
	return nil
}

// serveUIMounts answers sys/internal/ui/mounts[/:path], which the vault CLI
// uses to find a path's mount and its KV version.
func serveUIMounts(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	p := strings.TrimPrefix(strings.TrimPrefix(req.Path, "internal/ui/mounts"), "/")
	if p == "" {
		secret := map[string]any{}
		for _, m := range c.mounts.Load().entries {
			secret[m.Path] = mountOutput(m)
		}
		writeResponse(w, &logical.Response{Data: map[string]any{"secret": secret, "auth": map[string]any{}}}, "system")
		return
	}
	m := c.mounts.Load().match(p)
	if m == nil {
		s.writeError(w, r, logical.InvalidRequest("preflight capability check returned 403, please ensure client's policies grant access to path %q", p))
		return
	}
	out := mountOutput(m)
	out["path"] = m.Path
	writeResponse(w, &logical.Response{Data: out}, "system")
}

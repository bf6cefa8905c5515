package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/policy"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/zone"
)

// serveZones answers sys/zones (LIST) and sys/zones/:name[/rotate|/key-status|/root-token].
// It exists only in the root zone and needs sudo there.
func serveZones(s *Server, _ *core, w http.ResponseWriter, r *http.Request, req *request) {
	u := s.state.Load()
	if u == nil {
		s.writeError(w, r, logical.ErrSealed)
		return
	}
	ctx := r.Context()
	rest := strings.TrimPrefix(strings.TrimPrefix(req.Path, "zones"), "/")
	name, action, _ := strings.Cut(rest, "/")
	var (
		resp *logical.Response
		err  error
	)
	switch {
	case name == "" && req.Operation == logical.ListOperation:
		resp, err = listZones(ctx, u)
	case name == "":
		err = fmt.Errorf("%w: sys/zones takes LIST", logical.ErrUnsupportedOperation)
	case action == "":
		resp, err = s.zoneCRUD(ctx, u, name, req)
	case action == "rotate" && isWrite(req.Operation):
		resp, err = rotateZone(ctx, u, name)
	case action == "attestation":
		if name == "-" {
			name = "" // the root zone
		}
		resp, err = s.zoneAttestation(ctx, u, name, req)
	case action == "key-status" && req.Operation == logical.ReadOperation:
		resp, err = zoneKeyStatus(ctx, u, name)
	case action == "root-token" && isWrite(req.Operation):
		resp, err = s.zoneRootToken(ctx, u, name)
	case action == "blast-radius" && req.Operation == logical.ReadOperation:
		if name == "-" {
			name = "" // the root zone
		}
		resp, err = s.blastRadius(ctx, u, name)
	default:
		err = fmt.Errorf("%w: %s on sys/zones/%s", logical.ErrUnsupportedOperation, req.Operation, rest)
	}
	if err != nil {
		s.writeError(w, r, zoneError(err))
		return
	}
	writeResponse(w, resp, "system")
}

func isWrite(op logical.Operation) bool {
	return op == logical.CreateOperation || op == logical.UpdateOperation
}

// zoneError maps the zone package's errors to the API's.
func zoneError(err error) error {
	switch {
	case errors.Is(err, zone.ErrNotFound):
		return fmt.Errorf("%w: %v", logical.ErrNotFound, err)
	case errors.Is(err, zone.ErrInvalidName), errors.Is(err, zone.ErrInvalidZone), errors.Is(err, zone.ErrExists),
		errors.Is(err, zone.ErrNotEmpty), errors.Is(err, zone.ErrRootZone):
		return logical.InvalidRequest("%v", err)
	}
	return err
}

func listZones(ctx context.Context, u *unsealed) (*logical.Response, error) {
	names, err := u.zones.List(ctx)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, logical.ErrNotFound
	}
	keys := make([]any, len(names))
	for i, n := range names {
		keys[i] = n + "/"
	}
	return &logical.Response{Data: map[string]any{"keys": keys}}, nil
}

func zoneOutput(z zone.Zone) map[string]any {
	labels := z.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return map[string]any{
		"name": z.Name, "description": z.Description, "labels": labels, "parent": z.Parent,
		"created_time": z.Created.UTC().Format(time.RFC3339Nano),
	}
}

// zoneCRUD reads, creates or deletes one zone.
func (s *Server) zoneCRUD(ctx context.Context, u *unsealed, name string, req *request) (*logical.Response, error) {
	switch req.Operation {
	case logical.ReadOperation:
		z, err := u.zones.Get(ctx, name)
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: zoneOutput(z)}, nil
	case logical.CreateOperation, logical.UpdateOperation:
		if err := logical.CheckFields(req.Data, "description", "labels", "parent"); err != nil {
			return nil, err
		}
		desc, _, err := logical.String(req.Data, "description")
		if err != nil {
			return nil, err
		}
		labels, _, err := logical.StringMap(req.Data, "labels")
		if err != nil {
			return nil, err
		}
		parent, _, err := logical.String(req.Data, "parent")
		if err != nil {
			return nil, err
		}
		z, err := u.zones.Create(ctx, zone.Zone{Name: name, Description: desc, Labels: labels, Parent: parent})
		if err != nil {
			return nil, err
		}
		store, err := u.zones.Backend(name)
		if err != nil {
			return nil, err
		}
		if err := bootstrapZone(ctx, store); err != nil {
			return nil, fmt.Errorf("zone %q: %w", name, err)
		}
		s.log.Info("zone created", "zone", name)
		return &logical.Response{Data: zoneOutput(z)}, nil
	case logical.DeleteOperation:
		// A zone holding secrets or tokens is refused; an empty one loses
		// its default policy, mount table and salts with it.
		store, err := u.zones.Backend(name)
		if err != nil {
			return nil, err
		}
		empty, err := zoneIsEmpty(ctx, store)
		if err != nil {
			return nil, err
		}
		if !empty {
			return nil, fmt.Errorf("zone %q: %w: it holds secrets or tokens", name, zone.ErrNotEmpty)
		}
		if err := deleteTree(ctx, store, ""); err != nil {
			return nil, fmt.Errorf("zone %q: delete its records: %w", name, err)
		}
		err = u.zones.Delete(ctx, name, func(ctx context.Context, name string) (bool, error) {
			return zoneIsEmpty(ctx, store)
		})
		if err != nil {
			return nil, err
		}
		u.mu.Lock()
		if c, ok := u.named.LoadAndDelete(name); ok {
			c.(*core).stop()
		}
		u.mu.Unlock()
		s.log.Info("zone deleted", "zone", name)
		return nil, nil
	}
	return nil, fmt.Errorf("%w: %s on sys/zones/%s", logical.ErrUnsupportedOperation, req.Operation, name)
}

// zoneIsEmpty reports whether a zone holds no secrets and no tokens: its
// policies and mount table alone do not keep it alive.
func zoneIsEmpty(ctx context.Context, store storage.Backend) (bool, error) {
	for _, prefix := range []string{enginePrefix, tokenPrefix + "id/"} {
		keys, err := store.List(ctx, prefix)
		if err != nil {
			return false, err
		}
		for _, k := range keys {
			if prefix == enginePrefix {
				// Each mount's directory: empty unless it holds records.
				sub, err := store.List(ctx, prefix+k)
				if err != nil {
					return false, err
				}
				if len(sub) > 0 {
					return false, nil
				}
				continue
			}
			return false, nil
		}
	}
	return true, nil
}

// rotateZone adds a data key version to the zone and starts the background
// rewrap of its records.
func rotateZone(ctx context.Context, u *unsealed, name string) (*logical.Response, error) {
	v, err := u.zones.Rotate(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := u.zones.StartRewrap(u.bg, name); err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{"active_version": int64(v)}}, nil
}

func zoneKeyStatus(ctx context.Context, u *unsealed, name string) (*logical.Response, error) {
	ks, err := u.zones.KeyStatus(ctx, name)
	if err != nil {
		return nil, err
	}
	versions := make([]any, len(ks.Versions))
	for i, v := range ks.Versions {
		versions[i] = v
	}
	return &logical.Response{Data: map[string]any{
		"zone": ks.Zone, "kek_version": int64(ks.KEKVersion), "active_version": int64(ks.ActiveVersion),
		"versions": versions, "records": int64(ks.Records), "remaining": int64(ks.Remaining),
		"malformed": int64(ks.Malformed), "rewrap": ks.Rewrap,
	}}, nil
}

// zoneRootToken creates a root token of the zone: it acts only inside that
// zone, which is how a zone gets its first administrator.
func (s *Server) zoneRootToken(ctx context.Context, u *unsealed, name string) (*logical.Response, error) {
	c, err := s.zoneCore(ctx, u, name)
	if err != nil {
		return nil, err
	}
	id, err := c.tokens.CreateRoot(ctx)
	if err != nil {
		return nil, err
	}
	e, err := c.tokens.Lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	s.log.Info("zone root token created", "zone", name, "accessor", e.Accessor())
	return &logical.Response{Auth: &logical.Auth{
		ClientToken: id, Accessor: e.Accessor(), Policies: e.Policies(), TokenPolicies: e.Policies(),
		Metadata: map[string]string{"zone": name}, TokenType: "service", Orphan: true,
	}}, nil
}

// blastRadius answers sys/zones/:name/blast-radius ("" names the root zone
// in sys/zones/-/blast-radius): what a stolen credential of the zone could
// reach. Zones share no keys, tokens, policies or mounts, so a zone's reach
// ends at its own records; a cross-zone grant cannot be written, and the
// list of them is empty by construction (it is reported so that a future
// explicit grant mechanism shows up here). Findings flag the policies that
// widen the reach inside the zone.
func (s *Server) blastRadius(ctx context.Context, u *unsealed, name string) (*logical.Response, error) {
	c, err := s.zoneCore(ctx, u, name)
	if err != nil {
		return nil, err
	}
	var (
		mounts   = []any{}
		secrets  int64
		findings = []any{}
	)
	for _, m := range c.mounts.Load().entries {
		n, err := countSecrets(ctx, m.handler, "")
		if err != nil {
			return nil, fmt.Errorf("count the secrets of %s: %w", m.Path, err)
		}
		secrets += n
		mounts = append(mounts, map[string]any{"path": m.Path, "type": m.Type, "secrets": n})
	}
	names, err := c.policies.List(ctx)
	if err != nil {
		return nil, err
	}
	policies := []any{}
	for _, pn := range names {
		if pn == "root" {
			continue
		}
		p, err := c.policies.Get(ctx, pn)
		if err != nil {
			return nil, err
		}
		var broad []string
		for _, rule := range p.Paths {
			caps := rule.Capabilities
			if caps == policy.CapDeny {
				continue
			}
			switch {
			case rule.Path == "*" || rule.Path == "+/*":
				findings = append(findings, fmt.Sprintf("policy %q grants %s on every path of the zone (%q, line %d)", pn, caps, rule.Path, rule.Line))
				broad = append(broad, rule.Path)
			case caps.Has(policy.CapSudo):
				findings = append(findings, fmt.Sprintf("policy %q grants sudo on %q (line %d)", pn, rule.Path, rule.Line))
				broad = append(broad, rule.Path)
			case strings.HasPrefix(rule.Path, "auth/token/create") && (caps.Has(policy.CapUpdate) || caps.Has(policy.CapCreate)):
				findings = append(findings, fmt.Sprintf("policy %q lets its holders create tokens (%q, line %d)", pn, rule.Path, rule.Line))
				broad = append(broad, rule.Path)
			case strings.HasSuffix(rule.Path, "*") && strings.Count(rule.Path, "/") <= 1:
				broad = append(broad, rule.Path)
			}
		}
		policies = append(policies, map[string]any{"name": pn, "rules": int64(len(p.Paths)), "broad_paths": broad})
	}
	tokens, rootTokens, err := c.tokens.Summary(ctx)
	if err != nil {
		return nil, err
	}
	if rootTokens > 0 {
		findings = append(findings, fmt.Sprintf("%d root token(s) of this zone exist: each reaches everything in the zone; revoke them once the zone has its own admin policy", rootTokens))
	}
	display := name
	if display == "" {
		display = "root"
	}
	return &logical.Response{Data: map[string]any{
		"zone": display, "mounts": mounts, "secrets": secrets, "tokens": int64(tokens), "root_tokens": int64(rootTokens),
		"agents": int64(0), "policies": policies, "cross_zone_grants": []any{}, "findings": findings,
	}}, nil
}

// countSecrets counts the keys of a KV v2 mount under prefix by listing its
// metadata, as a client would.
func countSecrets(ctx context.Context, h logical.Handler, prefix string) (int64, error) {
	resp, err := h.HandleRequest(ctx, &logical.Request{Operation: logical.ListOperation, Path: "metadata/" + prefix, Data: map[string]any{}})
	if errors.Is(err, logical.ErrNotFound) {
		return 0, nil
	}
	if err != nil || resp == nil {
		return 0, err
	}
	keys, _ := resp.Data["keys"].([]string)
	if keys == nil {
		if anyKeys, ok := resp.Data["keys"].([]any); ok {
			for _, k := range anyKeys {
				if s, ok := k.(string); ok {
					keys = append(keys, s)
				}
			}
		}
	}
	var n int64
	for _, k := range keys {
		if strings.HasSuffix(k, "/") {
			sub, err := countSecrets(ctx, h, prefix+k)
			if err != nil {
				return 0, err
			}
			n += sub
			continue
		}
		n++
	}
	return n, nil
}

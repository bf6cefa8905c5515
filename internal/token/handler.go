package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

var _ logical.Handler = (*Store)(nil)

type callerKey struct{}

// WithCaller returns ctx carrying the caller's token entry, as the HTTP layer
// obtained it from Lookup and Use. HandleRequest then uses it instead of
// looking Request.ClientToken up again, which also lets the last use of a
// use-limited token complete its own request. The entry must be the one of
// Request.ClientToken.
func WithCaller(ctx context.Context, e *Entry) context.Context {
	return context.WithValue(ctx, callerKey{}, e)
}

// CallerFrom returns the caller's token entry WithCaller put in ctx.
func CallerFrom(ctx context.Context) (*Entry, bool) {
	e, ok := ctx.Value(callerKey{}).(*Entry)
	return e, ok && e != nil
}

// caller returns the entry of the token making req.
func (s *Store) caller(ctx context.Context, req *logical.Request) (*Entry, error) {
	if e, ok := CallerFrom(ctx); ok {
		return e, nil
	}
	e, err := s.Lookup(ctx, req.ClientToken)
	if errors.Is(err, ErrNotFound) {
		return nil, logical.ErrPermissionDenied
	}
	return e, err
}

// HandleRequest serves auth/token/*: Request.Path is relative to
// "auth/token/" ("create", "lookup-self", ...).
func (s *Store) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	write := req.Operation == logical.UpdateOperation || req.Operation == logical.CreateOperation
	read := write || req.Operation == logical.ReadOperation
	path := strings.TrimSuffix(req.Path, "/")
	var ok bool
	var resp *logical.Response
	var err error
	switch path {
	case "create", "create-orphan":
		ok = write
		if ok {
			resp, err = s.handleCreate(ctx, req, path == "create-orphan")
		}
	case "lookup":
		ok = read
		if ok {
			resp, err = s.handleLookup(ctx, req)
		}
	case "lookup-self":
		ok = read
		if ok {
			resp, err = s.handleLookupSelf(ctx, req)
		}
	case "lookup-accessor":
		ok = read
		if ok {
			resp, err = s.handleLookupAccessor(ctx, req)
		}
	case "renew", "renew-self", "renew-accessor":
		ok = write
		if ok {
			resp, err = s.handleRenew(ctx, req, path)
		}
	case "revoke", "revoke-self", "revoke-accessor", "revoke-orphan":
		ok = write
		if ok {
			resp, err = s.handleRevoke(ctx, req, path)
		}
	default:
		if strings.HasPrefix(path, "create/") || strings.HasPrefix(path, "roles") {
			return nil, logical.InvalidRequest("token roles are not supported")
		}
		return nil, fmt.Errorf("%w: auth/token/%s", logical.ErrUnsupportedPath, clip(path))
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s on auth/token/%s", logical.ErrUnsupportedOperation, req.Operation, path)
	}
	return resp, err
}

func (s *Store) handleCreate(ctx context.Context, req *logical.Request, orphan bool) (*logical.Response, error) {
	cr, err := parseCreateRequest(req.Data)
	if err != nil {
		return nil, err
	}
	caller, err := s.caller(ctx, req)
	if err != nil {
		return nil, err
	}
	sudo := req.Sudo || caller.IsRoot()
	switch {
	case cr.ID != "" && !sudo:
		return nil, logical.InvalidRequest("root or sudo privileges required to specify token id")
	case cr.NoParent && !orphan && !sudo:
		return nil, logical.InvalidRequest("root or sudo privileges required to create orphan token")
	case cr.Period > 0 && !sudo:
		return nil, logical.InvalidRequest("root or sudo privileges required to create periodic token")
	case caller.NumUses() > 0 || caller.Exhausted():
		return nil, logical.InvalidRequest("restricted use token cannot generate child tokens")
	}
	policies := cr.Policies
	if len(policies) == 0 {
		// Inherit the caller's policies.
		for _, p := range caller.rec.Policies {
			if p != defaultPolicy || !cr.NoDefaultPolicy {
				policies = append(policies, p)
			}
		}
	} else {
		for _, p := range policies {
			p = strings.TrimSpace(p)
			if p == rootPolicy && !caller.IsRoot() {
				return nil, logical.InvalidRequest("root tokens may not be created without parent token being root")
			}
			// "default" may always be attached, as in Vault.
			if !sudo && p != defaultPolicy && !caller.HasPolicy(p) {
				return nil, logical.InvalidRequest("child policies must be subset of parent")
			}
		}
	}
	if len(normalisePolicies(policies, !cr.NoDefaultPolicy)) == 0 {
		return nil, logical.InvalidRequest("token must have at least one policy")
	}
	opts := CreateOptions{
		ID:              cr.ID,
		Policies:        policies,
		NoDefaultPolicy: cr.NoDefaultPolicy,
		Meta:            cr.Meta,
		DisplayName:     cr.DisplayName,
		TTL:             cr.TTL,
		ExplicitMaxTTL:  cr.ExplicitMaxTTL,
		Period:          cr.Period,
		NumUses:         cr.NumUses,
		NotRenewable:    !cr.Renewable,
	}
	if !orphan && !cr.NoParent {
		opts.Parent = caller
	}
	c, err := s.Create(ctx, opts)
	if errors.Is(err, ErrDuplicateID) {
		return nil, logical.InvalidRequest("cannot create a token with a duplicate ID")
	}
	if err != nil {
		return nil, err
	}
	return authResponse(c.ID, c.Entry, c.Entry.rec.TTL, c.Warnings), nil
}

// authResponse is the Auth block of create and renew responses.
func authResponse(id string, e *Entry, ttl time.Duration, warnings []string) *logical.Response {
	pols := e.Policies()
	return &logical.Response{
		Auth: &logical.Auth{
			ClientToken:   id,
			Accessor:      e.rec.Accessor,
			Policies:      pols,
			TokenPolicies: pols,
			Metadata:      e.Meta(),
			LeaseDuration: int(ttl / time.Second),
			Renewable:     e.rec.Renewable,
			EntityID:      "",
			TokenType:     serviceType,
			Orphan:        e.Orphan(),
			NumUses:       int(e.rec.NumUses),
		},
		Warnings: warnings,
	}
}

// lookupData is the Data of lookup responses, with Vault's field names and
// types. id is "" for lookup-accessor.
func lookupData(e *Entry, id string, now time.Time) map[string]any {
	var expire any
	if !e.rec.ExpireTime.IsZero() {
		expire = e.rec.ExpireTime.UTC().Format(time.RFC3339Nano)
	}
	d := map[string]any{
		"id":               id,
		"accessor":         e.rec.Accessor,
		"policies":         e.Policies(),
		"path":             e.rec.Path,
		"meta":             e.Meta(),
		"display_name":     e.rec.DisplayName,
		"num_uses":         e.rec.NumUses,
		"orphan":           e.Orphan(),
		"creation_time":    e.rec.CreationTime.Unix(),
		"creation_ttl":     int64(e.rec.TTL / time.Second),
		"expire_time":      expire,
		"ttl":              int64(e.TTL(now) / time.Second),
		"explicit_max_ttl": int64(e.rec.ExplicitMaxTTL / time.Second),
		"issue_time":       e.rec.CreationTime.UTC().Format(time.RFC3339Nano),
		"renewable":        e.rec.Renewable,
		"entity_id":        "",
		"type":             serviceType,
	}
	if e.rec.Period > 0 {
		d["period"] = int64(e.rec.Period / time.Second)
	}
	if !e.rec.LastRenewal.IsZero() {
		d["last_renewal_time"] = e.rec.LastRenewal.Unix()
		d["last_renewal"] = e.rec.LastRenewal.UTC().Format(time.RFC3339Nano)
	}
	return d
}

// badToken is Vault's answer to a lookup of an unknown token.
func badToken() error { return fmt.Errorf("%w: bad token", logical.ErrPermissionDenied) }

// invalidAccessor is Vault's answer for an unknown accessor.
func invalidAccessor() error { return logical.InvalidRequest("invalid accessor") }

func (s *Store) handleLookup(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if err := logical.CheckFields(req.Data, "token"); err != nil {
		return nil, err
	}
	id, _, err := logical.String(req.Data, "token")
	if err != nil {
		return nil, err
	}
	if id == "" {
		return s.handleLookupSelf(ctx, req)
	}
	e, err := s.Lookup(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, badToken()
	}
	if err != nil {
		return nil, err
	}
	resp := &logical.Response{Data: lookupData(e, id, s.now())}
	if req.Operation == logical.ReadOperation {
		resp.Warnings = []string{"Supplying a token to look up in the URL is deprecated: it may be logged. Use a POST body."}
	}
	return resp, nil
}

func (s *Store) handleLookupSelf(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	// Vault's lookup-self declares a "token" field and ignores it.
	if err := logical.CheckFields(req.Data, "token"); err != nil {
		return nil, err
	}
	if _, _, err := logical.String(req.Data, "token"); err != nil {
		return nil, err
	}
	e, err := s.caller(ctx, req)
	if errors.Is(err, logical.ErrPermissionDenied) {
		return nil, badToken()
	}
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: lookupData(e, req.ClientToken, s.now())}, nil
}

func (s *Store) handleLookupAccessor(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	acc, err := accessorField(req.Data)
	if err != nil {
		return nil, err
	}
	e, err := s.byAccessor(ctx, acc)
	if errors.Is(err, ErrNotFound) {
		return nil, invalidAccessor()
	}
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: lookupData(e, "", s.now())}, nil
}

// accessorField reads the required "accessor" field; extra names the other
// fields the path takes (and reads itself).
func accessorField(data map[string]any, extra ...string) (string, error) {
	return requiredField(data, "accessor", extra)
}

// tokenField reads the required "token" field.
func tokenField(data map[string]any, extra ...string) (string, error) {
	return requiredField(data, "token", extra)
}

// requiredField reads the non-empty string field name, refusing any field
// that is neither name nor one of extra.
func requiredField(data map[string]any, name string, extra []string) (string, error) {
	if err := logical.CheckFields(data, append([]string{name}, extra...)...); err != nil {
		return "", err
	}
	v, _, err := logical.String(data, name)
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", logical.InvalidRequest("field %q: missing", name)
	}
	return v, nil
}

func (s *Store) handleRenew(ctx context.Context, req *logical.Request, path string) (*logical.Response, error) {
	var hash, id string
	var err error
	switch path {
	case "renew":
		if id, err = tokenField(req.Data, "increment"); err != nil {
			return nil, err
		}
		e, err := s.Lookup(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil, logical.InvalidRequest("token not found")
		}
		if err != nil {
			return nil, err
		}
		hash = e.hash
	case "renew-self":
		// Vault's renew-self declares a "token" field and ignores it.
		if err := logical.CheckFields(req.Data, "increment", "token"); err != nil {
			return nil, err
		}
		if _, _, err := logical.String(req.Data, "token"); err != nil {
			return nil, err
		}
		e, err := s.caller(ctx, req)
		if err != nil {
			return nil, err
		}
		hash, id = e.hash, req.ClientToken
	case "renew-accessor":
		acc, err := accessorField(req.Data, "increment")
		if err != nil {
			return nil, err
		}
		e, err := s.byAccessor(ctx, acc)
		if errors.Is(err, ErrNotFound) {
			return nil, invalidAccessor()
		}
		if err != nil {
			return nil, err
		}
		hash = e.hash // the id is not known: client_token stays empty, as in Vault
	}
	inc, _, err := logical.Duration(req.Data, "increment")
	if err != nil {
		return nil, err
	}
	e, ttl, warnings, err := s.renew(ctx, hash, inc)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, logical.InvalidRequest("token not found")
	case errors.Is(err, ErrNotRenewable):
		return nil, logical.InvalidRequest("lease is not renewable")
	case err != nil:
		return nil, err
	}
	return authResponse(id, e, ttl, warnings), nil
}

func (s *Store) handleRevoke(ctx context.Context, req *logical.Request, path string) (*logical.Response, error) {
	switch path {
	case "revoke":
		id, err := tokenField(req.Data)
		if err != nil {
			return nil, err
		}
		return nil, s.Revoke(ctx, id)
	case "revoke-self":
		if err := logical.CheckFields(req.Data, "token"); err != nil {
			return nil, err
		}
		e, err := s.caller(ctx, req)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		_, err = s.revokeTreeLocked(ctx, e.hash)
		return nil, err
	case "revoke-accessor":
		acc, err := accessorField(req.Data)
		if err != nil {
			return nil, err
		}
		// Idempotent since Vault 1.10: an unknown accessor is not an error.
		if err := s.RevokeAccessor(ctx, acc); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		return nil, nil
	default: // revoke-orphan
		id, err := tokenField(req.Data)
		if err != nil {
			return nil, err
		}
		caller, err := s.caller(ctx, req)
		if err != nil {
			return nil, err
		}
		if !req.Sudo && !caller.IsRoot() {
			return nil, logical.InvalidRequest("root or sudo privileges required to revoke and orphan")
		}
		return nil, s.RevokeOrphan(ctx, id)
	}
}

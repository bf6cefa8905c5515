package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/engine/database"
	"github.com/edgevault/edgevault/internal/engine/pki"
	"github.com/edgevault/edgevault/internal/lease"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/token"
)

// Leases (the leases issue), per zone, Vault's API:
//
//	PUT  sys/leases/lookup {lease_id}       LIST sys/leases/lookup/:prefix (sudo)
//	PUT  sys/leases/renew {lease_id, increment}   (also sys/leases/renew/:lease_id)
//	PUT  sys/leases/revoke {lease_id}       (also sys/leases/revoke/:lease_id)
//	PUT  sys/leases/revoke-prefix/:prefix   (sudo)
//	PUT  sys/leases/revoke-force/:prefix    (sudo)
//	PUT  sys/leases/tidy
//	LIST sys/leases/failing                 (edgevault: leases whose revocation is being retried)

// leasePrefix is where a zone's leases are stored.
const leasePrefix = "sys/expire/"

// newLeaseManager starts the lease manager of zone c: it expires c's leases
// on time, calling the engine mounted at each lease's path.
func (s *Server) newLeaseManager(bg context.Context, c *core) (*lease.Manager, error) {
	m, err := lease.New(lease.Config{
		Store:    storage.NewView(c.store, leasePrefix),
		Zone:     c.zone,
		Logger:   s.log.With("zone", zoneLabel(c.zone)),
		Revokers: c.leaseRevoker,
	})
	if err != nil {
		return nil, err
	}
	if err := m.Start(bg); err != nil {
		return nil, err
	}
	return m, nil
}

// expireTokenLeases is the token store's BeforeRevoke hook: the leases of
// the tokens being revoked become due now and the lease manager revokes
// them (as Vault does, asynchronously, with retries).
func (c *core) expireTokenLeases(ctx context.Context, accessors []string) error {
	for _, acc := range accessors {
		if _, err := c.leases.ExpireByToken(ctx, acc); err != nil {
			return err
		}
	}
	return nil
}

// leaseRevoker finds the engine responsible for a lease path.
func (c *core) leaseRevoker(path string) lease.Revoker {
	mt := c.mounts.Load()
	if mt == nil {
		return nil
	}
	m := mt.match(path)
	if m == nil {
		return nil
	}
	switch h := m.handler.(type) {
	case *database.Backend:
		return databaseRevoker{h}
	case *pki.Backend:
		return lease.RevokerFunc(func(ctx context.Context, l lease.Lease) error {
			var d pki.LeaseData
			if err := json.Unmarshal(l.Data, &d); err != nil {
				return fmt.Errorf("pki lease data: %w", err)
			}
			return h.RevokeLease(ctx, d)
		})
	}
	return nil
}

// databaseRevoker revokes and renews database users.
type databaseRevoker struct{ b *database.Backend }

func (r databaseRevoker) Revoke(ctx context.Context, l lease.Lease) error {
	return r.b.Revoke(ctx, l.Data)
}

func (r databaseRevoker) Renew(ctx context.Context, l lease.Lease, newExpire time.Time) error {
	return r.b.Renew(ctx, l.Data, newExpire)
}

// leaseRecorder registers the leases a zone's engines issue.
type leaseRecorder struct {
	s    *Server
	zone string
}

// RecordLease registers l with the zone's lease manager.
func (r leaseRecorder) RecordLease(ctx context.Context, l database.Lease) error {
	u := r.s.state.Load()
	if u == nil {
		return logical.ErrSealed
	}
	c, err := r.s.zoneCore(ctx, u, r.zone)
	if err != nil {
		return err
	}
	_, err = c.registerLease(ctx, lease.Lease{ID: l.ID, Zone: r.zone, Path: l.Path, IssueTime: l.IssueTime,
		ExpireTime: l.IssueTime.Add(l.TTL), TTL: l.TTL, MaxTTL: l.MaxTTL, Renewable: l.Renewable, Data: l.Data,
		TokenAccessor: callerAccessor(ctx)})
	return err
}

// registerLease registers l for the calling token. A token revoked while
// the request ran (or exhausted by it: a num_uses token is deleted at its
// last use, before the engine answers) could not expire a lease that did not
// exist yet, so once l is durable the token is looked up again and, if gone,
// its leases are made due now — as Vault revokes a use-limited token's
// leases with it.
func (c *core) registerLease(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	l, err := c.leases.Register(ctx, l)
	if err != nil || l.TokenAccessor == "" {
		return l, err
	}
	if _, err := c.tokens.LookupAccessor(ctx, l.TokenAccessor); errors.Is(err, token.ErrNotFound) {
		if _, err := c.leases.ExpireByToken(ctx, l.TokenAccessor); err != nil {
			return l, fmt.Errorf("expire the leases of a revoked token: %w", err)
		}
	}
	return l, nil
}

// leaseResponse registers the lease of an engine response that asks for one
// without registering it itself (a PKI role with generate_lease: Vault's
// non-renewable certificate leases) and sets its lease ID. The response is
// returned only once its lease is durable.
func (c *core) leaseResponse(ctx context.Context, rt *route, req *logical.Request, resp *logical.Response) error {
	if resp == nil || resp.LeaseID != "" || resp.LeaseDuration <= 0 || rt.mountType != "pki" {
		return nil
	}
	data, err := pki.LeaseDataFor(resp)
	if err != nil {
		return err
	}
	ttl := time.Duration(resp.LeaseDuration) * time.Second
	now := time.Now()
	l, err := c.registerLease(ctx, lease.Lease{Zone: c.zone, Path: rt.mountPoint + req.Path, IssueTime: now,
		ExpireTime: now.Add(ttl), TTL: ttl, MaxTTL: ttl, Data: data, TokenAccessor: callerAccessor(ctx)})
	if err != nil && l.ID == "" {
		// Not leased, not returned: the certificate must not stay valid.
		if pb, ok := rt.handler.(*pki.Backend); ok {
			if rerr := pb.Revoke(context.WithoutCancel(ctx), resp.Data["serial_number"].(string)); rerr != nil {
				err = errors.Join(err, fmt.Errorf("and revoking the unreturned certificate: %w", rerr))
			}
		}
	}
	if err != nil {
		return fmt.Errorf("register the certificate's lease: %w", err)
	}
	resp.LeaseID = l.ID
	return nil
}

// callerAccessor is the accessor of the token making the request in ctx
// ("" for none): the lease it obtains is revoked with the token.
func callerAccessor(ctx context.Context) string {
	if e, ok := token.CallerFrom(ctx); ok {
		return e.Accessor()
	}
	return ""
}

// leaseHandler answers sys/leases/*.
type leaseHandler struct{ m *lease.Manager }

// leaseSudo are the sys/leases paths that need sudo (prefixes).
var leaseSudo = []string{"leases/revoke-prefix/", "leases/revoke-force/", "leases/lookup/"}

// HandleRequest implements logical.Handler.
func (h leaseHandler) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	rel := strings.TrimPrefix(req.Path, "leases/")
	write := req.Operation == logical.UpdateOperation || req.Operation == logical.CreateOperation
	id := func() (string, error) {
		v, _, err := logical.String(req.Data, "lease_id")
		if err == nil && v == "" {
			err = logical.InvalidRequest("lease_id is required")
		}
		return v, err
	}
	var err error
	switch {
	case rel == "lookup" && write:
		var lid string
		if lid, err = id(); err != nil {
			return nil, err
		}
		l, err := h.m.Lookup(ctx, lid)
		if err != nil {
			return nil, leaseError(err)
		}
		return &logical.Response{Data: leaseData(l)}, nil
	case (rel == "lookup" || strings.HasPrefix(rel, "lookup/")) && req.Operation == logical.ListOperation:
		keys, err := h.m.List(ctx, strings.TrimPrefix(strings.TrimPrefix(rel, "lookup"), "/"))
		if err != nil {
			return nil, leaseError(err)
		}
		if len(keys) == 0 {
			return nil, logical.ErrNotFound
		}
		return &logical.Response{Data: map[string]any{"keys": keys}}, nil
	case (rel == "renew" || strings.HasPrefix(rel, "renew/")) && write:
		lid := strings.TrimPrefix(strings.TrimPrefix(rel, "renew"), "/")
		if lid == "" {
			if lid, err = id(); err != nil {
				return nil, err
			}
		}
		inc, _, err := logical.Duration(req.Data, "increment")
		if err != nil {
			return nil, err
		}
		l, err := h.m.Renew(ctx, lid, inc)
		if err != nil {
			return nil, leaseError(err)
		}
		// The duration granted, counted from the renewal (not from now, a
		// moment later: Vault answers the increment it gave).
		granted := l.ExpireTime.Sub(l.LastRenewal).Round(time.Second)
		resp := &logical.Response{LeaseID: l.ID, Renewable: l.Renewable, LeaseDuration: int(granted / time.Second)}
		want := inc
		if want == 0 {
			want = l.TTL
		}
		if granted < want.Round(time.Second) {
			resp.Warnings = []string{fmt.Sprintf("TTL of %q exceeded the lease's max_ttl; it was capped to %s", want.String(), granted)}
		}
		return resp, nil
	case (rel == "revoke" || strings.HasPrefix(rel, "revoke/")) && write:
		lid := strings.TrimPrefix(strings.TrimPrefix(rel, "revoke"), "/")
		if lid == "" {
			if lid, err = id(); err != nil {
				return nil, err
			}
		}
		err := h.m.Revoke(ctx, lid)
		if errors.Is(err, lease.ErrNotFound) {
			err = nil // as in Vault, revoking a lease that is gone succeeds
		}
		return nil, leaseError(err)
	case strings.HasPrefix(rel, "revoke-prefix/") && write:
		_, err := h.m.RevokePrefix(ctx, strings.TrimPrefix(rel, "revoke-prefix/"))
		return nil, leaseError(err)
	case strings.HasPrefix(rel, "revoke-force/") && write:
		_, err := h.m.RevokeForce(ctx, strings.TrimPrefix(rel, "revoke-force/"))
		return nil, leaseError(err)
	case rel == "failing" && (req.Operation == logical.ListOperation || req.Operation == logical.ReadOperation):
		failing, err := h.m.Failing(ctx)
		if err != nil {
			return nil, leaseError(err)
		}
		keys := make([]string, len(failing))
		info := make(map[string]any, len(failing))
		for i, l := range failing {
			keys[i] = l.ID
			d := leaseData(l)
			d["next_attempt"] = l.NextAttempt.UTC().Format(time.RFC3339Nano)
			info[l.ID] = d
		}
		return &logical.Response{Data: map[string]any{"keys": keys, "key_info": info}}, nil
	case rel == "tidy" && write:
		rep, err := h.m.Tidy(ctx)
		if err != nil {
			return nil, leaseError(err)
		}
		raw, _ := json.Marshal(rep)
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return &logical.Response{Data: out}, nil
	}
	return nil, fmt.Errorf("%w: %s on sys/%s", logical.ErrUnsupportedOperation, req.Operation, req.Path)
}

// leaseData is a lease as sys/leases/lookup shows it (Vault's fields).
func leaseData(l lease.Lease) map[string]any {
	out := map[string]any{
		"id": l.ID, "issue_time": l.IssueTime.UTC().Format(time.RFC3339Nano), "expire_time": l.ExpireTime.UTC().Format(time.RFC3339Nano),
		"last_renewal": nil, "renewable": l.Renewable, "ttl": int(max(0, time.Until(l.ExpireTime).Seconds())),
	}
	if !l.LastRenewal.IsZero() {
		out["last_renewal"] = l.LastRenewal.UTC().Format(time.RFC3339Nano)
	}
	if l.Failing() {
		out["revoke_attempts"], out["last_error"] = l.RevokeAttempts, l.LastError
	}
	return out
}

// leaseError maps the lease manager's errors onto API errors.
func leaseError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, lease.ErrNotFound):
		return fmt.Errorf("%w: %v", logical.ErrNotFound, err)
	case errors.Is(err, lease.ErrInvalid), errors.Is(err, lease.ErrNotRenewable), errors.Is(err, lease.ErrExpired):
		return logical.InvalidRequest("%v", err)
	case errors.Is(err, lease.ErrRevokeFailed):
		// The engine's error names what failed (never a credential); the
		// operator needs it, and needs to know nothing was forgotten.
		return operatorError{fmt.Errorf("%w; the lease is kept and its revocation retried (LIST sys/leases/failing)", err)}
	}
	return err
}

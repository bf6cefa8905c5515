package database

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

// role is a stored role.
type role struct {
	DBName               string   `json:"db_name"`
	CreationStatements   []string `json:"creation_statements"`
	RevocationStatements []string `json:"revocation_statements,omitempty"`
	RenewStatements      []string `json:"renew_statements,omitempty"`
	DefaultTTL           int64    `json:"default_ttl"` // seconds; 0 = mount default
	MaxTTL               int64    `json:"max_ttl"`     // seconds; 0 = mount max
}

var roleFields = []string{"name", "db_name", "creation_statements", "revocation_statements", "renew_statements",
	"rollback_statements", "default_ttl", "max_ttl", "credential_type", "credential_config"}

func (b *Backend) loadRole(ctx context.Context, name string) (*role, error) {
	var r role
	ok, err := b.getJSON(ctx, rolePrefix+name, &r)
	if err != nil || !ok {
		return nil, err
	}
	return &r, nil
}

// ttls returns the role's effective lease TTL and maximum TTL.
func (b *Backend) ttls(r *role) (ttl, maxTTL time.Duration) {
	maxTTL = b.opts.MaxTTL
	if r.MaxTTL > 0 {
		maxTTL = min(maxTTL, time.Duration(r.MaxTTL)*time.Second)
	}
	ttl = b.opts.DefaultTTL
	if r.DefaultTTL > 0 {
		ttl = time.Duration(r.DefaultTTL) * time.Second
	}
	return min(ttl, maxTTL), maxTTL
}

func (b *Backend) handleRole(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	switch req.Operation {
	case logical.ReadOperation:
		r, err := b.loadRole(ctx, name)
		if err != nil {
			return nil, err
		}
		if r == nil {
			return nil, fmt.Errorf("%w: no role %q", logical.ErrNotFound, name)
		}
		return &logical.Response{Data: roleData(r)}, nil
	case logical.DeleteOperation:
		if err := b.store.Delete(ctx, rolePrefix+name); err != nil {
			return nil, fmt.Errorf("database: delete role %q: %w", name, err)
		}
		return nil, nil
	case logical.CreateOperation, logical.UpdateOperation:
		b.roleMu.Lock()
		defer b.roleMu.Unlock()
		r, err := b.loadRole(ctx, name)
		if err != nil {
			return nil, err
		}
		if r == nil {
			r = &role{}
		}
		if err := b.parseRole(r, req.Data); err != nil {
			return nil, err
		}
		return nil, b.putJSON(ctx, rolePrefix+name, r)
	}
	return nil, unsupported(req)
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// roleData is the read response, in Vault's shape.
func roleData(r *role) map[string]any {
	return map[string]any{
		"db_name":               r.DBName,
		"creation_statements":   orEmpty(r.CreationStatements),
		"revocation_statements": orEmpty(r.RevocationStatements),
		"renew_statements":      orEmpty(r.RenewStatements),
		"rollback_statements":   []string{},
		"default_ttl":           r.DefaultTTL,
		"max_ttl":               r.MaxTTL,
		"credential_type":       "password",
		"credential_config":     map[string]any{},
	}
}

// parseRole applies data onto r and validates the result.
func (b *Backend) parseRole(r *role, data map[string]any) error {
	if err := logical.CheckFields(data, roleFields...); err != nil {
		return err
	}
	if s, ok, err := logical.String(data, "db_name"); err != nil {
		return err
	} else if ok {
		r.DBName = s
	}
	if r.DBName == "" {
		return logical.InvalidRequest("field \"db_name\": missing")
	}
	if err := validName(r.DBName); err != nil {
		return logical.InvalidRequest("field \"db_name\": %q is not a valid config name", r.DBName)
	}
	for _, f := range []struct {
		name string
		dst  *[]string
	}{{"creation_statements", &r.CreationStatements}, {"revocation_statements", &r.RevocationStatements},
		{"renew_statements", &r.RenewStatements}} {
		v, ok, err := statements(data, f.name)
		if err != nil {
			return err
		}
		if ok {
			*f.dst = v
		}
	}
	if v, _, err := statements(data, "rollback_statements"); err != nil {
		return err
	} else if len(v) > 0 {
		return logical.InvalidRequest("field \"rollback_statements\": not supported (creation_statements run in one transaction)")
	}
	if s, _, err := logical.String(data, "credential_type"); err != nil {
		return err
	} else if s != "" && s != "password" {
		return logical.InvalidRequest("field \"credential_type\": %q is not supported (only \"password\")", s)
	}
	if m, _, err := logical.Object(data, "credential_config"); err != nil {
		return err
	} else if len(m) > 0 {
		return logical.InvalidRequest("field \"credential_config\": not supported")
	}
	if len(r.CreationStatements) == 0 {
		return logical.InvalidRequest("field \"creation_statements\": missing")
	}
	usesName := false
	for _, s := range r.CreationStatements {
		usesName = usesName || strings.Contains(s, "{{name}}") || strings.Contains(s, "{{username}}")
	}
	if !usesName {
		return logical.InvalidRequest("field \"creation_statements\": no statement uses {{name}}")
	}
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"default_ttl", &r.DefaultTTL}, {"max_ttl", &r.MaxTTL}} {
		d, ok, err := logical.Duration(data, f.name)
		if err != nil {
			return err
		}
		if ok {
			*f.dst = int64(d / time.Second)
		}
	}
	mountMax := int64(b.opts.MaxTTL / time.Second)
	if r.MaxTTL > mountMax {
		return logical.InvalidRequest("field \"max_ttl\": %ds is above the mount's maximum TTL %ds", r.MaxTTL, mountMax)
	}
	if r.MaxTTL > 0 && r.DefaultTTL > r.MaxTTL {
		return logical.InvalidRequest("field \"default_ttl\": %ds is above max_ttl %ds", r.DefaultTTL, r.MaxTTL)
	}
	if r.DefaultTTL > mountMax {
		return logical.InvalidRequest("field \"default_ttl\": %ds is above the mount's maximum TTL %ds", r.DefaultTTL, mountMax)
	}
	return nil
}

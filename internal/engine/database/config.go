package database

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edgevault/edgevault/internal/logical"
)

// dbConfig is a stored connection.
type dbConfig struct {
	PluginName             string   `json:"plugin_name"`
	ConnectionURL          string   `json:"connection_url"`
	Username               string   `json:"username,omitempty"`
	Password               string   `json:"password,omitempty"`
	AllowedRoles           []string `json:"allowed_roles"`
	VerifyConnection       bool     `json:"verify_connection"`
	RootRotationStatements []string `json:"root_rotation_statements,omitempty"`
	MaxOpenConnections     int      `json:"max_open_connections"`
	MaxIdleConnections     int      `json:"max_idle_connections"`
	MaxConnectionLifetime  int64    `json:"max_connection_lifetime"` // seconds
}

// configFields are the fields config/:name accepts.
var configFields = []string{"name", "plugin_name", "plugin_version", "connection_url", "username", "password",
	"allowed_roles", "verify_connection", "root_rotation_statements", "max_open_connections",
	"max_idle_connections", "max_connection_lifetime", "password_policy", "username_template", "disable_escaping"}

// allows reports whether role may use the config.
func (c *dbConfig) allows(role string) bool {
	for _, r := range c.AllowedRoles {
		if r == "*" || r == role {
			return true
		}
	}
	return false
}

// passwordPlaceholder stands for the password while the connection string is
// parsed; the real password is set on the parsed configuration afterwards.
const passwordPlaceholder = "edgevault-password-placeholder-7f3c"

// isURL reports whether s is in URI form rather than keyword/value form.
func isURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// pctEncode escapes every byte outside RFC 3986's unreserved set.
func pctEncode(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}

// dsnQuote quotes a keyword/value connection-string value.
func dsnQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// poolConfig parses the connection string with the root username filled in
// and the password set after parsing. Errors never contain the string.
func (c *dbConfig) poolConfig(connectTimeout time.Duration) (*pgxpool.Config, error) {
	s := c.ConnectionURL
	hasPW := strings.Contains(s, "{{password}}")
	if isURL(s) {
		s = strings.ReplaceAll(s, "{{username}}", pctEncode(c.Username))
		s = strings.ReplaceAll(s, "{{password}}", passwordPlaceholder)
	} else {
		s = strings.ReplaceAll(s, "{{username}}", dsnQuote(c.Username))
		s = strings.ReplaceAll(s, "{{password}}", dsnQuote(passwordPlaceholder))
	}
	pc, err := pgxpool.ParseConfig(s)
	if err != nil {
		return nil, logical.InvalidRequest("field \"connection_url\": not a PostgreSQL URL (postgres://…) or keyword/value connection string")
	}
	if hasPW {
		if pc.ConnConfig.Password != passwordPlaceholder {
			return nil, logical.InvalidRequest("field \"connection_url\": {{password}} must stand for the password of the connection")
		}
		pc.ConnConfig.Password = c.Password // Fallbacks share it.
	}
	for k, v := range pc.ConnConfig.RuntimeParams {
		if strings.Contains(v, passwordPlaceholder) {
			return nil, logical.InvalidRequest("field \"connection_url\": {{password}} used in parameter %q", k)
		}
	}
	if pc.ConnConfig.ConnectTimeout == 0 || pc.ConnConfig.ConnectTimeout > connectTimeout {
		pc.ConnConfig.ConnectTimeout = connectTimeout
	}
	if c.MaxOpenConnections > 0 {
		pc.MaxConns = int32(c.MaxOpenConnections)
	}
	if c.MaxConnectionLifetime > 0 {
		pc.MaxConnLifetime = time.Duration(c.MaxConnectionLifetime) * time.Second
	}
	if c.MaxIdleConnections < 0 {
		pc.MaxConnIdleTime = time.Second
	}
	return pc, nil
}

// redactedURL is connection_url as shown on read: a literal password in a
// URL is replaced by "*****" (placeholders are kept).
func redactedURL(s string) string {
	if isURL(s) {
		if u, err := url.Parse(s); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok && p != "{{password}}" {
				u.User = url.UserPassword(u.User.Username(), "*****")
				return u.String()
			}
		}
		return s
	}
	i := strings.Index(s, "password=")
	if i < 0 {
		return s
	}
	rest := s[i+len("password="):]
	if strings.HasPrefix(rest, "{{password}}") {
		return s
	}
	end := strings.IndexAny(rest, " \t\n")
	if strings.HasPrefix(rest, "'") {
		end = -1 // quoted values may hold spaces: drop the rest
	}
	if end < 0 {
		return s[:i] + "password=*****"
	}
	return s[:i] + "password=*****" + rest[end:]
}

// scrub removes each non-empty secret from s.
func scrub(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// isConnErr reports whether err is a failure to reach or talk to
// PostgreSQL rather than a statement the server rejected: every error that
// is not a server error (dial failures, a connection closed under us,
// timeouts, failed logins), and the server errors of classes 08 (connection exception) and
// 57P (shutdown, cannot connect now).
func isConnErr(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P")
	}
	return true
}

// connErr turns a connection failure into an ErrConnect whose text is
// scrubbed of secrets; the original error is not wrapped (its text may hold
// them).
func connErr(err error, secrets ...string) error {
	return fmt.Errorf("%w: %s", ErrConnect, scrub(err.Error(), secrets...))
}

// sqlErr classifies err from running a statement: ErrConnect when the server
// could not be reached, else ErrStatement with the server's message.
func sqlErr(err error, secrets ...string) error {
	if isConnErr(err) {
		return connErr(err, secrets...)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s (SQLSTATE %s)", ErrStatement, scrub(pe.Message, secrets...), pe.Code)
	}
	return fmt.Errorf("%w: %s", ErrStatement, scrub(err.Error(), secrets...))
}

// existingConfig is loadConfig for a config that must exist (404 if not).
func (b *Backend) existingConfig(ctx context.Context, name string) (*dbConfig, error) {
	c, err := b.loadConfig(ctx, name)
	if err == nil && c == nil {
		err = fmt.Errorf("%w: no config %q", logical.ErrNotFound, name)
	}
	return c, err
}

// loadConfig reads config name (nil, nil if there is none).
func (b *Backend) loadConfig(ctx context.Context, name string) (*dbConfig, error) {
	var c dbConfig
	ok, err := b.getJSON(ctx, configPrefix+name, &c)
	if err != nil || !ok {
		return nil, err
	}
	return &c, nil
}

func (b *Backend) handleConfig(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	switch req.Operation {
	case logical.ReadOperation:
		b.cfgMu.RLock()
		defer b.cfgMu.RUnlock()
		c, err := b.existingConfig(ctx, name)
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: configData(c)}, nil
	case logical.DeleteOperation:
		b.cfgMu.Lock()
		defer b.cfgMu.Unlock()
		if err := b.store.Delete(ctx, configPrefix+name); err != nil {
			return nil, fmt.Errorf("database: delete config %q: %w", name, err)
		}
		b.dropPool(name)
		return nil, nil
	case logical.CreateOperation, logical.UpdateOperation:
		return nil, b.writeConfig(ctx, name, req.Data)
	}
	return nil, unsupported(req)
}

// configData is the read response, in Vault's shape; the password is never
// returned.
func configData(c *dbConfig) map[string]any {
	allowed := c.AllowedRoles
	if allowed == nil {
		allowed = []string{}
	}
	rot := c.RootRotationStatements
	if rot == nil {
		rot = []string{}
	}
	return map[string]any{
		"plugin_name":    c.PluginName,
		"plugin_version": "",
		"connection_details": map[string]any{
			"connection_url":          redactedURL(c.ConnectionURL),
			"username":                c.Username,
			"max_open_connections":    c.MaxOpenConnections,
			"max_idle_connections":    c.MaxIdleConnections,
			"max_connection_lifetime": fmt.Sprintf("%ds", c.MaxConnectionLifetime),
		},
		"allowed_roles":                      allowed,
		"root_credentials_rotate_statements": rot,
		"password_policy":                    "",
		"verify_connection":                  c.VerifyConnection,
	}
}

// parseConfig applies the fields of data onto c (an existing config, or a
// fresh one with defaults).
func parseConfig(c *dbConfig, data map[string]any) error {
	if err := logical.CheckFields(data, configFields...); err != nil {
		return err
	}
	if s, ok, err := logical.String(data, "plugin_name"); err != nil {
		return err
	} else if ok {
		c.PluginName = s
	}
	if c.PluginName == "" {
		return logical.InvalidRequest("field \"plugin_name\": missing")
	}
	if c.PluginName != PluginName {
		return logical.InvalidRequest("field \"plugin_name\": %q is not supported (only %q)", c.PluginName, PluginName)
	}
	for _, f := range []string{"plugin_version", "password_policy", "username_template"} {
		if s, _, err := logical.String(data, f); err != nil {
			return err
		} else if s != "" {
			return logical.InvalidRequest("field %q: not supported", f)
		}
	}
	if v, _, err := logical.Bool(data, "disable_escaping"); err != nil {
		return err
	} else if v {
		return logical.InvalidRequest("field \"disable_escaping\": not supported")
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"connection_url", &c.ConnectionURL}, {"username", &c.Username}, {"password", &c.Password}} {
		if s, ok, err := logical.String(data, f.name); err != nil {
			return err
		} else if ok {
			*f.dst = s
		}
	}
	if c.ConnectionURL == "" {
		return logical.InvalidRequest("field \"connection_url\": missing")
	}
	if strings.Contains(c.ConnectionURL, "{{username}}") && c.Username == "" {
		return logical.InvalidRequest("field \"username\": missing, and connection_url uses {{username}}")
	}
	if strings.Contains(c.ConnectionURL, "{{password}}") && c.Password == "" {
		return logical.InvalidRequest("field \"password\": missing, and connection_url uses {{password}}")
	}
	if v, ok, err := logical.Strings(data, "allowed_roles"); err != nil {
		return err
	} else if ok {
		c.AllowedRoles = v
	}
	if v, ok, err := logical.Bool(data, "verify_connection"); err != nil {
		return err
	} else if ok {
		c.VerifyConnection = v
	}
	if v, ok, err := statements(data, "root_rotation_statements"); err != nil {
		return err
	} else if ok {
		c.RootRotationStatements = v
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{"max_open_connections", &c.MaxOpenConnections}, {"max_idle_connections", &c.MaxIdleConnections}} {
		n, ok, err := logical.Int(data, f.name)
		if err != nil {
			return err
		}
		if ok {
			if n > 1000 || (f.name == "max_open_connections" && n < 1) || n < -1 {
				return logical.InvalidRequest("field %q: %d is out of range", f.name, n)
			}
			*f.dst = int(n)
		}
	}
	if d, ok, err := logical.Duration(data, "max_connection_lifetime"); err != nil {
		return err
	} else if ok {
		c.MaxConnectionLifetime = int64(d / time.Second)
	}
	_, err := c.poolConfig(time.Second) // validates connection_url
	return err
}

// statements reads a list of SQL statements (a JSON list or one string).
func statements(data map[string]any, name string) ([]string, bool, error) {
	v, ok := data[name]
	if !ok || v == nil {
		return nil, false, nil
	}
	switch t := v.(type) {
	case string:
		if strings.TrimSpace(t) == "" {
			return []string{}, true, nil
		}
		return []string{t}, true, nil
	case []string:
		list := make([]any, len(t))
		for i := range t {
			list[i] = t[i]
		}
		v = list
	}
	list, isList := v.([]any)
	if !isList {
		return nil, true, logical.InvalidRequest("field %q: expected a list of SQL statements, got %s", name, logical.TypeName(v))
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		s, ok := item.(string)
		if !ok {
			return nil, true, logical.InvalidRequest("field %q: item %d: expected a string, got %s", name, i, logical.TypeName(item))
		}
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out, true, nil
}

func (b *Backend) writeConfig(ctx context.Context, name string, data map[string]any) error {
	b.cfgMu.Lock()
	defer b.cfgMu.Unlock()
	c, err := b.loadConfig(ctx, name)
	if err != nil {
		return err
	}
	if c == nil {
		c = &dbConfig{VerifyConnection: true, MaxOpenConnections: 4}
	}
	if err := parseConfig(c, data); err != nil {
		return err
	}
	if c.VerifyConnection {
		pc, err := c.poolConfig(b.opts.ConnectTimeout)
		if err != nil {
			return err
		}
		conn, err := pgx.ConnectConfig(ctx, pc.ConnConfig)
		if err != nil {
			return fmt.Errorf("%w: config %q: verify_connection: %w", logical.ErrInvalidRequest, name, connErr(err, c.Password))
		}
		_ = conn.Close(ctx)
	}
	if err := b.putJSON(ctx, configPrefix+name, c); err != nil {
		return err
	}
	b.dropPool(name)
	return nil
}

// reset closes the pool of config name; the next use reopens it.
func (b *Backend) reset(ctx context.Context, name string) error {
	if err := validName(name); err != nil {
		return err
	}
	b.cfgMu.Lock()
	defer b.cfgMu.Unlock()
	if _, err := b.existingConfig(ctx, name); err != nil {
		return err
	}
	b.dropPool(name)
	return nil
}

// rotateRoot sets a new random password for the root user. The ALTER runs
// in a transaction that commits only after the new password is durable in
// storage; if the commit fails the old config is written back. A crash
// between the storage write and the commit leaves the new password stored
// and the old one in force (then set the password again by hand).
func (b *Backend) rotateRoot(ctx context.Context, name string) error {
	if err := validName(name); err != nil {
		return err
	}
	b.cfgMu.Lock()
	defer b.cfgMu.Unlock()
	c, err := b.existingConfig(ctx, name)
	if err != nil {
		return err
	}
	if c.Username == "" || c.Password == "" || !strings.Contains(c.ConnectionURL, "{{password}}") {
		return logical.InvalidRequest("config %q: rotate-root needs username, password and a connection_url with {{password}}", name)
	}
	newPW, err := generatePassword()
	if err != nil {
		return err
	}
	stmts := c.RootRotationStatements
	if len(stmts) == 0 {
		stmts = []string{`ALTER ROLE {{username}} WITH PASSWORD '{{password}}'`}
	}
	vals := map[string]string{
		"{{name}}": c.Username, "{{username}}": pgx.Identifier{c.Username}.Sanitize(), "{{password}}": newPW,
	}
	if len(c.RootRotationStatements) > 0 {
		vals["{{username}}"] = c.Username // as Vault: custom statements quote it themselves
	}
	p, err := b.pool(name, c)
	if err != nil {
		return err
	}
	old := *c
	tx, err := p.Begin(ctx)
	if err != nil {
		return fmt.Errorf("config %q: rotate-root: %w", name, sqlErr(err, c.Password, newPW))
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	for i, s := range stmts {
		if _, err := tx.Exec(ctx, substitute(s, vals)); err != nil {
			return fmt.Errorf("config %q: rotate-root: statement %d: %w", name, i, sqlErr(err, c.Password, newPW))
		}
	}
	c.Password = newPW
	if err := b.putJSON(ctx, configPrefix+name, c); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		if perr := b.putJSON(context.WithoutCancel(ctx), configPrefix+name, &old); perr != nil {
			b.log.Error("database: rotate-root: commit failed and the old config could not be restored", "config", name)
		}
		return fmt.Errorf("config %q: rotate-root: commit: %w", name, sqlErr(err, old.Password, newPW))
	}
	b.dropPool(name)
	b.log.Info("database: root credentials rotated", "config", name)
	return nil
}

// substitute replaces each placeholder in s.
func substitute(s string, vals map[string]string) string {
	pairs := make([]string, 0, 2*len(vals))
	for k, v := range vals {
		pairs = append(pairs, k, v)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

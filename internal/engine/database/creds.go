package database

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edgevault/edgevault/internal/logical"
)

// expirationFormat renders {{expiration}} as Vault does.
const expirationFormat = "2006-01-02 15:04:05-0700"

const (
	lowerDigits = "abcdefghijklmnopqrstuvwxyz0123456789"
	alnum       = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// randomString returns n characters drawn uniformly from alphabet.
func randomString(n int, alphabet string) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	limit := byte(256 - 256%len(alphabet))
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("database: random: %w", err)
		}
		for _, c := range buf {
			if c < limit && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}

// generatePassword returns 24 alphanumerics with at least one lower-case
// letter, one upper-case letter and one digit.
func generatePassword() (string, error) {
	for {
		p, err := randomString(24, alnum)
		if err != nil {
			return "", err
		}
		if strings.ContainsAny(p, "abcdefghijklmnopqrstuvwxyz") && strings.ContainsAny(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") &&
			strings.ContainsAny(p, "0123456789") {
			return p, nil
		}
	}
}

// generateUsername returns v-<role, 8 bytes>-<20 random>-<unix>, ≤ 63 bytes
// (PostgreSQL's identifier limit).
func generateUsername(roleName string, now time.Time) (string, error) {
	r, err := randomString(20, lowerDigits)
	if err != nil {
		return "", err
	}
	if len(roleName) > 8 {
		roleName = roleName[:8]
	}
	u := "v-" + roleName + "-" + r + "-" + strconv.FormatInt(now.Unix(), 10)
	if len(u) > 63 {
		u = u[:63]
	}
	return u, nil
}

// DecodeLeaseData parses Lease.Data.
func DecodeLeaseData(data []byte) (*LeaseData, error) {
	var ld LeaseData
	if err := json.Unmarshal(data, &ld); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadLeaseData, err)
	}
	if ld.DBName == "" || ld.Username == "" {
		return nil, fmt.Errorf("%w: db_name and username are required", ErrBadLeaseData)
	}
	if validName(ld.DBName) != nil {
		return nil, fmt.Errorf("%w: field \"db_name\": invalid name", ErrBadLeaseData)
	}
	return &ld, nil
}

func (b *Backend) handleCreds(ctx context.Context, req *logical.Request, roleName string) (*logical.Response, error) {
	if err := validName(roleName); err != nil {
		return nil, err
	}
	r, err := b.loadRole(ctx, roleName)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, logical.InvalidRequest("unknown role: %s", roleName)
	}
	b.cfgMu.RLock()
	defer b.cfgMu.RUnlock()
	c, err := b.loadConfig(ctx, r.DBName)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, logical.InvalidRequest("role %q: field \"db_name\": no database config %q", roleName, r.DBName)
	}
	if !c.allows(roleName) {
		return nil, logical.InvalidRequest("role %q is not in allowed_roles of config %q", roleName, r.DBName)
	}
	ttl, maxTTL := b.ttls(r)
	now := b.clock()
	username, err := generateUsername(roleName, now)
	if err != nil {
		return nil, err
	}
	password, err := generatePassword()
	if err != nil {
		return nil, err
	}
	suffix, err := randomString(24, alnum)
	if err != nil {
		return nil, err
	}
	expires := now.Add(ttl)
	p, err := b.pool(r.DBName, c)
	if err != nil {
		return nil, err
	}
	vals := map[string]string{"{{name}}": username, "{{username}}": username, "{{password}}": password,
		"{{expiration}}": expires.UTC().Format(expirationFormat)}
	if err := runTx(ctx, p, r.CreationStatements, vals); err != nil {
		return nil, fmt.Errorf("config %q: role %q: creation_statements: %w", r.DBName, roleName, scrubErr(err, password, c.Password))
	}
	ld := LeaseData{DBName: r.DBName, Role: roleName, Username: username,
		RevocationStatements: r.RevocationStatements, RenewStatements: r.RenewStatements}
	raw, err := json.Marshal(ld)
	if err != nil {
		return nil, fmt.Errorf("database: encode lease data: %w", err)
	}
	lease := Lease{ID: req.MountPoint + "creds/" + roleName + "/" + suffix, Path: "creds/" + roleName,
		IssueTime: now, TTL: ttl, MaxTTL: maxTTL, Renewable: true, Data: raw}
	if b.leases != nil {
		if err := b.leases.RecordLease(ctx, lease); err != nil {
			if rerr := b.revoke(context.WithoutCancel(ctx), p, &ld, r.RevocationStatements); rerr != nil {
				b.log.Error("database: lease not recorded and the user could not be dropped; it expires by VALID UNTIL",
					"config", r.DBName, "role", roleName, "username", username, "err", rerr)
			}
			return nil, fmt.Errorf("database: record lease: %w", err)
		}
	}
	return &logical.Response{
		Data:          map[string]any{"username": username, "password": password},
		LeaseID:       lease.ID,
		LeaseDuration: int(ttl / time.Second),
		Renewable:     true,
	}, nil
}

// scrubErr re-scrubs an error built by sqlErr (already safe) with extra
// secrets, keeping its sentinel.
func scrubErr(err error, secrets ...string) error {
	msg := scrub(err.Error(), secrets...)
	switch {
	case errors.Is(err, ErrConnect):
		return fmt.Errorf("%w: %s", ErrConnect, strings.TrimPrefix(msg, ErrConnect.Error()+": "))
	case errors.Is(err, ErrStatement):
		return fmt.Errorf("%w: %s", ErrStatement, strings.TrimPrefix(msg, ErrStatement.Error()+": "))
	}
	return errors.New(msg)
}

// txBeginner is what runTx needs of a pool.
type txBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// runTx runs stmts with vals substituted in one transaction. Each statement
// may hold several SQL commands (simple protocol).
func runTx(ctx context.Context, p txBeginner, stmts []string, vals map[string]string) error {
	secrets := []string{vals["{{password}}"]}
	tx, err := p.Begin(ctx)
	if err != nil {
		return sqlErr(err, secrets...)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	for i, s := range stmts {
		if _, err := tx.Exec(ctx, substitute(s, vals)); err != nil {
			return fmt.Errorf("statement %d: %w", i, sqlErr(err, secrets...))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return sqlErr(err, secrets...)
	}
	return nil
}

// Revoke drops the user of a lease (Lease.Data). It runs the role's current
// revocation_statements, or those saved in the lease when the role is gone,
// or the default (reassign and drop owned objects, DROP ROLE, then terminate
// the user's sessions). A user that no longer exists is not an error.
// Errors match ErrConnect (retry later), ErrStatement, ErrNoConfig or
// ErrBadLeaseData, and name the config.
func (b *Backend) Revoke(ctx context.Context, leaseData []byte) error {
	ld, err := DecodeLeaseData(leaseData)
	if err != nil {
		return err
	}
	stmts := ld.RevocationStatements
	if ld.Role != "" && validName(ld.Role) == nil {
		if r, err := b.loadRole(ctx, ld.Role); err != nil {
			return err
		} else if r != nil && r.DBName == ld.DBName {
			stmts = r.RevocationStatements
		}
	}
	b.cfgMu.RLock()
	defer b.cfgMu.RUnlock()
	c, err := b.loadConfig(ctx, ld.DBName)
	if err != nil {
		return err
	}
	if c == nil {
		return fmt.Errorf("config %q: %w", ld.DBName, ErrNoConfig)
	}
	p, err := b.pool(ld.DBName, c)
	if err != nil {
		return err
	}
	if err := b.revoke(ctx, p, ld, stmts); err != nil {
		return fmt.Errorf("config %q: revoke user %q: %w", ld.DBName, ld.Username, scrubErr(err, c.Password))
	}
	return nil
}

func (b *Backend) revoke(ctx context.Context, p *pgxpool.Pool, ld *LeaseData, stmts []string) error {
	var oid uint32
	err := p.QueryRow(ctx, "SELECT oid FROM pg_roles WHERE rolname = $1", ld.Username).Scan(&oid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // already gone
	}
	if err != nil {
		return sqlErr(err)
	}
	if len(stmts) > 0 {
		return runTx(ctx, p, stmts, map[string]string{"{{name}}": ld.Username, "{{username}}": ld.Username})
	}
	ident := pgx.Identifier{ld.Username}.Sanitize()
	if err := runTx(ctx, p, []string{
		"REASSIGN OWNED BY " + ident + " TO CURRENT_USER",
		"DROP OWNED BY " + ident,
		"DROP ROLE IF EXISTS " + ident,
	}, nil); err != nil {
		return err
	}
	// A dropped role's open sessions live on until they end: end them.
	if _, err := p.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usesysid = $1", oid); err != nil {
		b.log.Warn("database: could not terminate sessions of a revoked user", "config", ld.DBName,
			"username", ld.Username, "err", sqlErr(err))
	}
	return nil
}

// Renew moves the user's VALID UNTIL to newExpiry, running the role's
// renew_statements (with {{name}} and {{expiration}}) or ALTER ROLE … VALID
// UNTIL. The lease manager enforces the lease's MaxTTL. A user that no
// longer exists gives ErrNoUser.
func (b *Backend) Renew(ctx context.Context, leaseData []byte, newExpiry time.Time) error {
	ld, err := DecodeLeaseData(leaseData)
	if err != nil {
		return err
	}
	if !newExpiry.After(b.clock()) {
		return logical.InvalidRequest("renew: new expiry %s is not in the future", newExpiry.UTC().Format(time.RFC3339))
	}
	stmts := ld.RenewStatements
	if ld.Role != "" && validName(ld.Role) == nil {
		if r, err := b.loadRole(ctx, ld.Role); err != nil {
			return err
		} else if r != nil && r.DBName == ld.DBName {
			stmts = r.RenewStatements
		}
	}
	b.cfgMu.RLock()
	defer b.cfgMu.RUnlock()
	c, err := b.loadConfig(ctx, ld.DBName)
	if err != nil {
		return err
	}
	if c == nil {
		return fmt.Errorf("config %q: %w", ld.DBName, ErrNoConfig)
	}
	p, err := b.pool(ld.DBName, c)
	if err != nil {
		return err
	}
	var one int
	err = p.QueryRow(ctx, "SELECT 1 FROM pg_roles WHERE rolname = $1", ld.Username).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("config %q: renew user %q: %w", ld.DBName, ld.Username, ErrNoUser)
	}
	if err != nil {
		return fmt.Errorf("config %q: renew user %q: %w", ld.DBName, ld.Username, sqlErr(err, c.Password))
	}
	exp := newExpiry.UTC().Format(expirationFormat)
	if len(stmts) == 0 {
		stmts = []string{"ALTER ROLE " + pgx.Identifier{ld.Username}.Sanitize() + " VALID UNTIL '{{expiration}}'"}
	}
	if err := runTx(ctx, p, stmts, map[string]string{"{{name}}": ld.Username, "{{username}}": ld.Username, "{{expiration}}": exp}); err != nil {
		return fmt.Errorf("config %q: renew user %q: %w", ld.DBName, ld.Username, scrubErr(err, c.Password))
	}
	return nil
}

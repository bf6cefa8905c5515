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
	"github.com/jackc/pgx/v5/pgconn"
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
	path := req.MountPoint + "creds/" + roleName
	lease := Lease{ID: path + "/" + suffix, Path: path,
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

// safeError is an error whose text has been scrubbed of secrets; it
// matches its sentinel kind with errors.Is.
type safeError struct {
	msg  string
	kind error
}

func (e *safeError) Error() string { return e.msg }
func (e *safeError) Unwrap() error { return e.kind }

// scrubErr re-scrubs an error (built by sqlErr, already safe of the
// secrets it knew) with more secrets, keeping its sentinel.
func scrubErr(err error, secrets ...string) error {
	kind := ErrStatement
	if errors.Is(err, ErrConnect) {
		kind = ErrConnect
	}
	return &safeError{msg: scrub(err.Error(), secrets...), kind: kind}
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
	stmts, err := b.roleStatements(ctx, ld, ld.RevocationStatements, func(r *role) []string { return r.RevocationStatements })
	if err != nil {
		return err
	}
	b.cfgMu.RLock()
	defer b.cfgMu.RUnlock()
	c, p, err := b.leaseConn(ctx, ld.DBName)
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
	if err := defaultRevoke(ctx, p, ld.Username, oid); err != nil {
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
	stmts, err := b.roleStatements(ctx, ld, ld.RenewStatements, func(r *role) []string { return r.RenewStatements })
	if err != nil {
		return err
	}
	b.cfgMu.RLock()
	defer b.cfgMu.RUnlock()
	c, p, err := b.leaseConn(ctx, ld.DBName)
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

// defaultRevoke drops user (whose oid is given) in one transaction: first
// REASSIGN OWNED to the root user and DROP OWNED (which also revokes every
// privilege granted to the user in this database); when the root user is
// not allowed to (a CREATEROLE root that is not a member of the user's
// role), it instead revokes the user's privileges on the tables,
// sequences, functions and schemas of this database and on the database
// itself; then DROP ROLE.
func defaultRevoke(ctx context.Context, p txBeginner, user string, oid uint32) error {
	ident := pgx.Identifier{user}.Sanitize()
	tx, err := p.Begin(ctx)
	if err != nil {
		return sqlErr(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	exec := func(step, sql string, args ...any) error {
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return fmt.Errorf("%s: %w", step, sqlErr(err))
		}
		return nil
	}
	if err := exec("savepoint", "SAVEPOINT edgevault_owned"); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "REASSIGN OWNED BY "+ident+" TO CURRENT_USER; DROP OWNED BY "+ident)
	var pe *pgconn.PgError
	switch {
	case err == nil:
	case errors.As(err, &pe) && pe.Code == "42501": // insufficient_privilege
		if err := exec("rollback to savepoint", "ROLLBACK TO SAVEPOINT edgevault_owned"); err != nil {
			return err
		}
		if err := revokePrivileges(ctx, tx, ident, oid); err != nil {
			return err
		}
	default:
		return fmt.Errorf("drop owned: %w", sqlErr(err))
	}
	if err := exec("drop role", "DROP ROLE IF EXISTS "+ident); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", sqlErr(err))
	}
	return nil
}

// revokePrivileges revokes what user (oid) was granted in the current
// database, schema by schema, and on the database.
func revokePrivileges(ctx context.Context, tx pgx.Tx, ident string, oid uint32) error {
	rows, err := tx.Query(ctx, `
SELECT DISTINCT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a WHERE a.grantee = $1
UNION SELECT DISTINCT n.nspname FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace, aclexplode(f.proacl) a WHERE a.grantee = $1
UNION SELECT n.nspname FROM pg_namespace n, aclexplode(n.nspacl) a WHERE a.grantee = $1`, oid)
	if err != nil {
		return fmt.Errorf("list grants: %w", sqlErr(err))
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list grants: %w", sqlErr(err))
	}
	var sb strings.Builder
	for _, s := range schemas {
		sch := pgx.Identifier{s}.Sanitize()
		fmt.Fprintf(&sb, "REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA %[1]s FROM %[2]s;"+
			"REVOKE ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA %[1]s FROM %[2]s;"+
			"REVOKE ALL PRIVILEGES ON ALL FUNCTIONS IN SCHEMA %[1]s FROM %[2]s;"+
			"REVOKE ALL PRIVILEGES ON SCHEMA %[1]s FROM %[2]s;", sch, ident)
	}
	var db string
	if err := tx.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return fmt.Errorf("current database: %w", sqlErr(err))
	}
	fmt.Fprintf(&sb, "REVOKE ALL PRIVILEGES ON DATABASE %s FROM %s", pgx.Identifier{db}.Sanitize(), ident)
	if _, err := tx.Exec(ctx, sb.String()); err != nil {
		return fmt.Errorf("revoke privileges: %w", sqlErr(err))
	}
	return nil
}

// roleStatements returns the statements of the lease's role as it is now
// (pick), or saved (those recorded with the lease) when the role is gone or
// now names another database.
func (b *Backend) roleStatements(ctx context.Context, ld *LeaseData, saved []string, pick func(*role) []string) ([]string, error) {
	if ld.Role == "" || validName(ld.Role) != nil {
		return saved, nil
	}
	r, err := b.loadRole(ctx, ld.Role)
	if err != nil {
		return nil, err
	}
	if r != nil && r.DBName == ld.DBName {
		return pick(r), nil
	}
	return saved, nil
}

// leaseConn returns the config named by a lease and its pool. b.cfgMu must
// be held (read) while they are used.
func (b *Backend) leaseConn(ctx context.Context, name string) (*dbConfig, *pgxpool.Pool, error) {
	c, err := b.loadConfig(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	if c == nil {
		return nil, nil, fmt.Errorf("config %q: %w", name, ErrNoConfig)
	}
	p, err := b.pool(name, c)
	if err != nil {
		return nil, nil, err
	}
	return c, p, nil
}

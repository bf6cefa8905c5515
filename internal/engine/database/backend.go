package database

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
)

// Errors of the engine, besides the logical ones. Match with errors.Is.
var (
	// ErrConnect means PostgreSQL could not be reached or refused the root
	// credentials; the operation may succeed when retried.
	ErrConnect = errors.New("cannot connect to PostgreSQL")
	// ErrStatement means PostgreSQL rejected a statement (creation,
	// revocation, renewal or rotation).
	ErrStatement = errors.New("PostgreSQL statement failed")
	// ErrNoConfig means the config a role or lease names does not exist.
	ErrNoConfig = errors.New("no such database config")
	// ErrNoUser means Renew found no such user in PostgreSQL.
	ErrNoUser = errors.New("database user does not exist")
	// ErrBadLeaseData means lease data given to Revoke or Renew does not decode.
	ErrBadLeaseData = errors.New("malformed database lease data")
)

// Defaults of Options.
const (
	DefaultTTL    = time.Hour
	DefaultMaxTTL = 24 * time.Hour
)

// PluginName is the only plugin_name accepted.
const PluginName = "postgresql-database-plugin"

// Lease is what the engine hands to the lease manager for each credential.
type Lease struct {
	// ID is the Vault lease ID: <Path>/<random> ("database/creds/ro/Ab3…").
	ID string
	// Path is the request path, mount included ("database/creds/ro"), as
	// internal/lease finds revokers by it.
	Path string
	// IssueTime is when the credential was created.
	IssueTime time.Time
	// TTL is the lease duration; the user's VALID UNTIL is IssueTime+TTL.
	TTL time.Duration
	// MaxTTL caps renewals: the lease must not outlive IssueTime+MaxTTL.
	MaxTTL time.Duration
	// Renewable is always true for database credentials.
	Renewable bool
	// Data is the JSON of a LeaseData, to be passed back to Revoke/Renew.
	Data []byte
}

// LeaseRecorder durably records a lease before its secret is returned.
type LeaseRecorder interface {
	// RecordLease must return nil only once l is durable; on error the
	// engine drops the user and fails the request.
	RecordLease(ctx context.Context, l Lease) error
}

// LeaseData is the engine's part of a lease, stored by the lease manager as
// Lease.Data (JSON) and passed back to Revoke and Renew.
type LeaseData struct {
	DBName               string   `json:"db_name"`
	Role                 string   `json:"role"`
	Username             string   `json:"username"`
	RevocationStatements []string `json:"revocation_statements,omitempty"`
	RenewStatements      []string `json:"renew_statements,omitempty"`
}

// Options configures a Backend. The zero value is usable.
type Options struct {
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Logger receives operational messages, never secrets; nil discards.
	Logger *slog.Logger
	// Leases records each lease before credentials are returned; nil means
	// leases are not recorded (users then end only by VALID UNTIL).
	Leases LeaseRecorder
	// DefaultTTL is the lease TTL of roles without default_ttl (DefaultTTL).
	DefaultTTL time.Duration
	// MaxTTL is the mount's maximum lease TTL (DefaultMaxTTL); roles may not
	// set a larger max_ttl or default_ttl.
	MaxTTL time.Duration
	// ConnectTimeout bounds each connection attempt (10s when zero).
	ConnectTimeout time.Duration
}

// Backend is one database mount. It is safe for concurrent use.
type Backend struct {
	store  storage.Backend
	opts   Options
	clock  func() time.Time
	log    *slog.Logger
	leases LeaseRecorder

	// cfgMu is held for writing while a config changes (write, delete,
	// rotate, reset) and for reading by every operation that uses one, so a
	// pool is never built from a stale config.
	cfgMu sync.RWMutex
	// roleMu serialises role writes (read-modify-write).
	roleMu sync.Mutex
	poolMu sync.Mutex
	pools  map[string]*pgxpool.Pool
}

var _ logical.Handler = (*Backend)(nil)

// New returns the engine for one mount over b, a view confined to the mount
// and encrypted by the barrier. New does no I/O.
func New(b storage.Backend, opts Options) *Backend {
	if opts.DefaultTTL <= 0 {
		opts.DefaultTTL = DefaultTTL
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = DefaultMaxTTL
	}
	if opts.DefaultTTL > opts.MaxTTL {
		opts.DefaultTTL = opts.MaxTTL
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	db := &Backend{store: b, opts: opts, clock: opts.Clock, log: opts.Logger, leases: opts.Leases,
		pools: make(map[string]*pgxpool.Pool)}
	if db.clock == nil {
		db.clock = time.Now
	}
	if db.log == nil {
		db.log = slog.New(slog.DiscardHandler)
	}
	return db
}

// Close closes every connection pool (on unmount or shutdown).
func (b *Backend) Close() {
	b.poolMu.Lock()
	defer b.poolMu.Unlock()
	for name, p := range b.pools {
		p.Close()
		delete(b.pools, name)
	}
}

// HandleRequest serves one request; req.Path is relative to the mount.
func (b *Backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if req == nil {
		return nil, logical.InvalidRequest("missing request")
	}
	head, name, _ := strings.Cut(req.Path, "/")
	switch head {
	case "config":
		if name == "" || req.Operation == logical.ListOperation {
			if req.Operation != logical.ListOperation && req.Operation != logical.ReadOperation {
				return nil, unsupported(req)
			}
			return b.list(ctx, configPrefix)
		}
		return b.handleConfig(ctx, req, name)
	case "roles":
		if name == "" || req.Operation == logical.ListOperation {
			if req.Operation != logical.ListOperation && req.Operation != logical.ReadOperation {
				return nil, unsupported(req)
			}
			return b.list(ctx, rolePrefix)
		}
		return b.handleRole(ctx, req, name)
	case "creds":
		if req.Operation != logical.ReadOperation {
			return nil, unsupported(req)
		}
		return b.handleCreds(ctx, req, name)
	case "rotate-root":
		if req.Operation != logical.UpdateOperation && req.Operation != logical.CreateOperation {
			return nil, unsupported(req)
		}
		return nil, b.rotateRoot(ctx, name)
	case "reset":
		if req.Operation != logical.UpdateOperation && req.Operation != logical.CreateOperation {
			return nil, unsupported(req)
		}
		return nil, b.reset(ctx, name)
	}
	return nil, fmt.Errorf("%w: %q", logical.ErrUnsupportedPath, req.Path)
}

// ExistenceCheck reports whether a write to config/:name or roles/:name
// targets an existing record (policy "update" rather than "create").
// Other paths answer true.
func (b *Backend) ExistenceCheck(ctx context.Context, req *logical.Request) (bool, error) {
	head, name, _ := strings.Cut(req.Path, "/")
	var key string
	switch head {
	case "config":
		key = configPrefix + name
	case "roles":
		key = rolePrefix + name
	default:
		return true, nil
	}
	if validName(name) != nil {
		return false, nil
	}
	_, err := b.store.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func unsupported(req *logical.Request) error {
	return fmt.Errorf("%w: %s on %q", logical.ErrUnsupportedOperation, req.Operation, req.Path)
}

// Storage prefixes, relative to the mount view.
const (
	configPrefix = "config/"
	rolePrefix   = "role/"
)

// nameRE is Vault's GenericNameRegex: word characters, with '.' and '-'
// inside.
var nameRE = regexp.MustCompile(`^\w(?:[\w.-]*\w)?$`)

const maxNameLen = 128

func validName(name string) error {
	if name == "" {
		return logical.InvalidRequest("field \"name\": missing")
	}
	if len(name) > maxNameLen || !nameRE.MatchString(name) {
		return logical.InvalidRequest("field \"name\": %q is not a valid name (letters, digits, '_', and '.' or '-' inside; at most %d bytes)", name, maxNameLen)
	}
	return nil
}

func (b *Backend) list(ctx context.Context, prefix string) (*logical.Response, error) {
	keys, err := b.store.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("database: list %s: %w", strings.TrimSuffix(prefix, "/"), err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: nothing under %q", logical.ErrNotFound, prefix)
	}
	return &logical.Response{Data: map[string]any{"keys": keys}}, nil
}

func (b *Backend) getJSON(ctx context.Context, key string, v any) (bool, error) {
	raw, err := b.store.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("database: read %s: %w", key, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("database: decode %s: %w", key, err)
	}
	return true, nil
}

func (b *Backend) putJSON(ctx context.Context, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("database: encode %s: %w", key, err)
	}
	if err := b.store.Put(ctx, key, raw); err != nil {
		return fmt.Errorf("database: write %s: %w", key, err)
	}
	return nil
}

// dropPool closes and forgets the pool of config name.
func (b *Backend) dropPool(name string) {
	b.poolMu.Lock()
	p := b.pools[name]
	delete(b.pools, name)
	b.poolMu.Unlock()
	if p != nil {
		p.Close()
	}
}

// pool returns the pool of config name, opening it from cfg. The caller
// holds cfgMu (read or write).
func (b *Backend) pool(name string, cfg *dbConfig) (*pgxpool.Pool, error) {
	b.poolMu.Lock()
	defer b.poolMu.Unlock()
	if p := b.pools[name]; p != nil {
		return p, nil
	}
	pc, err := cfg.poolConfig(b.opts.ConnectTimeout)
	if err != nil {
		return nil, fmt.Errorf("config %q: %w", name, err)
	}
	p, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("config %q: %w", name, connErr(err, cfg.Password))
	}
	b.pools[name] = p
	return p, nil
}

// Package token is edgevault's token store: Vault-compatible service tokens,
// their parent/child trees, accessors, renewal, use limits and revocation, and
// the auth/token/* API on top of them.
//
// # Tokens are never stored in clear
//
// A token id ("evs." followed by 32 random base62 characters) is shown to its
// holder once, at creation, and never written anywhere. The store keeps each
// token under the hex HMAC-SHA256 of its id, keyed with a random salt that is
// itself stored (encrypted by the barrier) under the store's view and created
// on first use. Accessors are indexed the same way, under a second key derived
// from the salt, so neither credential appears in a storage key; entries are
// encrypted values behind the barrier.
//
// Storage layout, relative to the view the store is given:
//
//	salt                         random 32 bytes, the HMAC key material
//	id/<hash>                    JSON entry of one token
//	accessor/<accessor-hash>     the token's hash
//	parent/<hash>/<child-hash>   empty: children index of a token
//
// # Trees and revocation
//
// A token created by another is its child; revoking a token revokes its whole
// subtree. The subtree is collected breadth first from the children index and
// deleted deepest level first, in transactions of at most revokeBatch tokens
// (a small tree goes in one atomic transaction). After a crash part-way the
// tokens that remain still form a tree under the token being revoked, which
// itself is deleted last and stays valid, so repeating the revocation finishes
// it. A token is also valid only while all its ancestors exist and are
// unexpired, so a child created concurrently with its parent's revocation
// (and any other dangling token) is refused on lookup, and Tidy deletes it.
//
// # Lookup cost
//
// Lookup runs on every request. It costs one HMAC and, on a hit, map reads in
// a bounded in-memory cache of hash → entry (one per ancestor, usually the
// root token): no storage read, no decryption. Renewal, use and revocation
// invalidate the cache; see cache for why a concurrent reader cannot
// re-insert a stale entry.
package token

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
)

// Errors returned by the Store. Match them with errors.Is.
var (
	// ErrNotFound means the token (or accessor) is unknown, revoked, expired,
	// or descends from a token that is. The HTTP layer answers 403
	// "permission denied" as Vault does.
	ErrNotFound = errors.New("token not found")
	// ErrDuplicateID is returned when a token is created with an explicit id
	// that already exists.
	ErrDuplicateID = errors.New("a token with this id already exists")
	// ErrNotRenewable is returned when renewing a token created non-renewable
	// or one that never expires.
	ErrNotRenewable = errors.New("token is not renewable")
)

const (
	// Prefix starts every generated token id.
	Prefix = "evs."

	tokenRandLen    = 32
	accessorRandLen = 24
	// maxIDLen bounds token ids accepted anywhere.
	maxIDLen = 512
	// revokeBatch is the number of tokens deleted per transaction.
	revokeBatch = 128
	// maxDepth bounds the ancestor walk, against corrupted (cyclic) storage.
	maxDepth = 1 << 20

	rootPolicy    = "root"
	defaultPolicy = "default"
	serviceType   = "service"
	createPath    = "auth/token/create"
	rootPath      = "auth/token/root"

	keySalt     = "salt"
	keyID       = "id/"
	keyAccessor = "accessor/"
	keyParent   = "parent/"
)

// Options configure a Store. The zero value is usable: every field has a
// default, applied by NewStore.
type Options struct {
	// Clock returns the current time. Default time.Now.
	Clock func() time.Time
	// Logger receives operational messages; never a token or accessor's
	// secret. Nil discards.
	Logger *slog.Logger
	// Random is the source of token ids, accessors and the salt. Nil means
	// crypto/rand.
	Random io.Reader
	// DefaultTTL is given to non-root tokens created without a TTL. Default
	// 768h (Vault's system default); capped at MaxTTL.
	DefaultTTL time.Duration
	// MaxTTL caps every TTL and explicit max TTL, and the total life of a
	// non-periodic token through renewals. Default 768h.
	MaxTTL time.Duration
	// TidyInterval is how often Run calls Tidy. Default 5m.
	TidyInterval time.Duration
	// CacheSize bounds the lookup cache, in entries. Default 10000; a
	// negative value disables the cache.
	CacheSize int
	// BeforeRevoke, if set, is called with the accessors of tokens about to
	// be deleted (revoked, or removed by Tidy once expired), before the
	// deletion is written; an error stops the revocation, so nothing a
	// token owns can outlive it unnoticed. The lease manager uses it to
	// expire the tokens' leases. It must be quick: the store's mutex is held.
	BeforeRevoke func(ctx context.Context, accessors []string) error
}

// Default values of Options.
const (
	DefaultTTL          = 768 * time.Hour
	DefaultMaxTTL       = 768 * time.Hour
	DefaultTidyInterval = 5 * time.Minute
	DefaultCacheSize    = 10000
)

// Store is the token store. It is safe for concurrent use.
//
// Creation and lookup run concurrently; changes to existing tokens (use,
// renewal, revocation) are serialised by one mutex, so a renewal can never
// resurrect a token being revoked.
type Store struct {
	b            storage.Backend
	now          func() time.Time
	log          *slog.Logger
	rand         io.Reader
	defaultTTL   time.Duration
	maxTTL       time.Duration
	tidyInterval time.Duration
	beforeRevoke func(ctx context.Context, accessors []string) error

	keys   atomic.Pointer[hashKeys]
	saltMu sync.Mutex

	mu    sync.Mutex // serialises changes to existing tokens
	cache *cache
}

// NewStore returns a store keeping its tokens in b, which should be a
// barrier-encrypted view reserved for the store.
func NewStore(b storage.Backend, opts Options) *Store {
	s := &Store{
		b:            b,
		now:          opts.Clock,
		log:          opts.Logger,
		rand:         opts.Random,
		defaultTTL:   opts.DefaultTTL,
		maxTTL:       opts.MaxTTL,
		tidyInterval: opts.TidyInterval,
		beforeRevoke: opts.BeforeRevoke,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.maxTTL <= 0 {
		s.maxTTL = DefaultMaxTTL
	}
	if s.defaultTTL <= 0 {
		s.defaultTTL = DefaultTTL
	}
	s.defaultTTL = min(s.defaultTTL, s.maxTTL)
	if s.tidyInterval <= 0 {
		s.tidyInterval = DefaultTidyInterval
	}
	size := opts.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	s.cache = newCache(size)
	return s
}

// hashKeys hold the two HMAC keys derived from the stored salt, with pools
// of keyed HMAC states so the per-request hash does not re-derive the pads.
type hashKeys struct {
	token    sync.Pool
	accessor sync.Pool
}

func newHashKeys(salt []byte) *hashKeys {
	tk := []byte(mac(salt, "token"))
	ak := []byte(mac(salt, "accessor"))
	return &hashKeys{
		token:    sync.Pool{New: func() any { return hmac.New(sha256.New, tk) }},
		accessor: sync.Pool{New: func() any { return hmac.New(sha256.New, ak) }},
	}
}

func (k *hashKeys) tokenHash(id string) string { return pooledMAC(&k.token, id) }

func (k *hashKeys) accessorHash(acc string) string { return pooledMAC(&k.accessor, acc) }

func pooledMAC(p *sync.Pool, msg string) string {
	m := p.Get().(hash.Hash)
	m.Reset()
	io.WriteString(m, msg)
	var sum [sha256.Size]byte
	out := hex.EncodeToString(m.Sum(sum[:0]))
	p.Put(m)
	return out
}

func mac(key []byte, msg string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// errNoSalt means no token was ever created: every lookup fails.
var errNoSalt = errors.New("token store salt not created yet")

// hashKeys returns the HMAC keys, loading the salt or, when create is set,
// creating it on first use.
func (s *Store) hashKeys(ctx context.Context, create bool) (*hashKeys, error) {
	if k := s.keys.Load(); k != nil {
		return k, nil
	}
	s.saltMu.Lock()
	defer s.saltMu.Unlock()
	if k := s.keys.Load(); k != nil {
		return k, nil
	}
	salt, err := s.b.Get(ctx, keySalt)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		if !create {
			return nil, errNoSalt
		}
		salt = make([]byte, 32)
		if _, err := io.ReadFull(s.rand, salt); err != nil {
			return nil, fmt.Errorf("token store: generate salt: %w", err)
		}
		if err := s.b.Put(ctx, keySalt, salt); err != nil {
			return nil, fmt.Errorf("token store: store salt: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("token store: read salt: %w", err)
	case len(salt) < 16:
		return nil, fmt.Errorf("token store: stored salt is %d bytes, want 32", len(salt))
	}
	k := newHashKeys(salt)
	s.keys.Store(k)
	return k, nil
}

// Lookup returns the entry of token id, or ErrNotFound when the token is
// unknown, expired, or descends from a revoked or expired token. Expired
// tokens found here are revoked (with their subtree). This is the per-request
// hot path: on a cache hit it reads no storage.
func (s *Store) Lookup(ctx context.Context, id string) (*Entry, error) {
	if id == "" || len(id) > maxIDLen {
		return nil, ErrNotFound
	}
	k, err := s.hashKeys(ctx, false)
	if errors.Is(err, errNoSalt) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return s.valid(ctx, k.tokenHash(id))
}

// valid returns the entry at hash if it and all its ancestors exist and are
// unexpired; an expired one is revoked on the way.
func (s *Store) valid(ctx context.Context, hash string) (*Entry, error) {
	now := s.now()
	e, err := s.get(ctx, hash)
	if err != nil {
		return nil, err
	}
	if e.expiredAt(now) {
		s.revokeExpired(ctx, e)
		return nil, ErrNotFound
	}
	p := e.rec.Parent
	for depth := 0; p != ""; depth++ {
		if depth >= maxDepth {
			return nil, fmt.Errorf("token store: token %s: ancestor chain longer than %d", e.rec.Accessor, maxDepth)
		}
		pe, err := s.get(ctx, p)
		if err != nil {
			// ErrNotFound: a dangling child of a revoked token. Tidy deletes it.
			return nil, err
		}
		if pe.expiredAt(now) {
			s.revokeExpired(ctx, pe)
			return nil, ErrNotFound
		}
		p = pe.rec.Parent
	}
	return e, nil
}

// revokeExpired revokes e's tree after a lookup found it expired. A failure
// is logged: the token is refused either way, and Tidy retries.
func (s *Store) revokeExpired(ctx context.Context, e *Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.read(ctx, e.hash)
	if errors.Is(err, ErrNotFound) || (err == nil && !cur.expiredAt(s.now())) {
		return
	}
	if err == nil {
		_, err = s.revokeTreeLocked(ctx, e.hash)
	}
	if err != nil {
		s.log.Warn("revoke expired token", "accessor", e.rec.Accessor, "err", err)
	}
}

// get returns the entry at hash from the cache or storage.
func (s *Store) get(ctx context.Context, hash string) (*Entry, error) {
	if e, ok := s.cache.get(hash); ok {
		return e, nil
	}
	epoch := s.cache.snapshot()
	e, err := s.read(ctx, hash)
	if err != nil {
		return nil, err
	}
	s.cache.add(e, epoch)
	return e, nil
}

// read returns the entry at hash from storage, bypassing the cache.
func (s *Store) read(ctx context.Context, hash string) (*Entry, error) {
	raw, err := s.b.Get(ctx, keyID+hash)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("token store: read entry: %w", err)
	}
	return decodeEntry(hash, raw)
}

// byAccessor returns the valid entry whose accessor is acc.
// LookupAccessor returns the live token whose accessor is acc, or
// ErrNotFound.
func (s *Store) LookupAccessor(ctx context.Context, acc string) (*Entry, error) {
	return s.byAccessor(ctx, acc)
}

func (s *Store) byAccessor(ctx context.Context, acc string) (*Entry, error) {
	if acc == "" || len(acc) > maxIDLen {
		return nil, ErrNotFound
	}
	k, err := s.hashKeys(ctx, false)
	if errors.Is(err, errNoSalt) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	raw, err := s.b.Get(ctx, keyAccessor+k.accessorHash(acc))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("token store: read accessor index: %w", err)
	}
	return s.valid(ctx, string(raw))
}

// CreateOptions describe a token to create. Callers (the auth/token API,
// login methods) decide who may ask for what; Create applies the TTL rules.
type CreateOptions struct {
	// ID is the token id to use; empty generates "evs.<random>".
	ID string
	// Parent makes the token its child; nil creates an orphan.
	Parent *Entry
	// Policies are normalised (lower-cased, sorted, de-duplicated); "default"
	// is added unless NoDefaultPolicy, and a list holding "root" becomes
	// just ["root"].
	Policies        []string
	NoDefaultPolicy bool
	Meta            map[string]string
	// DisplayName is stored as given (the API passes "token-<name>").
	DisplayName string
	// TTL is the token's life; 0 gives the store's DefaultTTL, except for
	// root tokens which then never expire. Capped at MaxTTL.
	TTL time.Duration
	// ExplicitMaxTTL is a hard cap on the token's life, through renewals.
	ExplicitMaxTTL time.Duration
	// Period makes a periodic token: each renewal resets its TTL to Period,
	// with no total cap other than ExplicitMaxTTL.
	Period time.Duration
	// NumUses limits the number of requests; 0 is unlimited.
	NumUses int64
	// NotRenewable creates a token that cannot be renewed.
	NotRenewable bool
	// Path is the creating auth path; default "auth/token/create".
	Path string
}

// Created is the result of Create: the token id, shown once, its entry, and
// warnings for the API response (TTLs that were capped).
type Created struct {
	ID       string
	Entry    *Entry
	Warnings []string
}

// Create creates and durably stores a service token.
func (s *Store) Create(ctx context.Context, o CreateOptions) (*Created, error) {
	if o.ID != "" && (len(o.ID) > maxIDLen || strings.ContainsRune(o.ID, 0)) {
		return nil, fmt.Errorf("token store: create: id must be 1 to %d bytes without NUL", maxIDLen)
	}
	if o.NumUses < 0 || o.TTL < 0 || o.ExplicitMaxTTL < 0 || o.Period < 0 {
		return nil, errors.New("token store: create: negative num_uses, ttl, explicit_max_ttl or period")
	}
	policies := normalisePolicies(o.Policies, !o.NoDefaultPolicy)
	if len(policies) == 0 {
		return nil, errors.New("token store: create: token must have at least one policy")
	}
	k, err := s.hashKeys(ctx, true)
	if err != nil {
		return nil, err
	}
	id := o.ID
	if id == "" {
		if id, err = randomString(s.rand, tokenRandLen); err != nil {
			return nil, fmt.Errorf("token store: generate token: %w", err)
		}
		id = Prefix + id
	}
	accessor, err := randomString(s.rand, accessorRandLen)
	if err != nil {
		return nil, fmt.Errorf("token store: generate accessor: %w", err)
	}

	now := s.now()
	e := &Entry{hash: k.tokenHash(id), rec: record{
		Accessor:     accessor,
		Policies:     policies,
		DisplayName:  o.DisplayName,
		CreationTime: now,
		NumUses:      o.NumUses,
		Renewable:    !o.NotRenewable,
		Path:         o.Path,
		Type:         serviceType,
	}}
	if len(o.Meta) > 0 {
		e.rec.Meta = make(map[string]string, len(o.Meta))
		for mk, mv := range o.Meta {
			e.rec.Meta[mk] = mv
		}
	}
	if e.rec.Path == "" {
		e.rec.Path = createPath
	}
	if o.Parent != nil {
		e.rec.Parent = o.Parent.hash
	}
	warnings := s.lifetime(e, o)
	if e.rec.TTL > 0 {
		e.rec.ExpireTime = now.Add(e.rec.TTL)
	} else if e.rec.Period == 0 {
		// Never expires (root): renewing it makes no sense, as in Vault.
		e.rec.Renewable = false
	}

	val, err := e.encode()
	if err != nil {
		return nil, err
	}
	ops := []storage.Op{
		{Kind: storage.OpPut, Key: keyID + e.hash, Value: val},
		{Kind: storage.OpPut, Key: keyAccessor + k.accessorHash(accessor), Value: []byte(e.hash)},
	}
	if e.rec.Parent != "" {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: childKey(e.rec.Parent, e.hash), Value: []byte{}})
	}
	if o.ID != "" {
		// A chosen id may collide; check under the mutex so two creations
		// with the same id cannot both succeed.
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, err := s.read(ctx, e.hash); err == nil {
			return nil, ErrDuplicateID
		} else if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	epoch := s.cache.snapshot()
	if err := s.b.Txn(ctx, ops); err != nil {
		return nil, fmt.Errorf("token store: create: %w", err)
	}
	s.cache.add(e, epoch)
	return &Created{ID: id, Entry: e, Warnings: warnings}, nil
}

// lifetime sets e's TTL, explicit max TTL and period from o, as Vault does,
// and returns warnings for capped values.
func (s *Store) lifetime(e *Entry, o CreateOptions) []string {
	var warnings []string
	explicit := o.ExplicitMaxTTL
	if explicit > s.maxTTL && o.Period == 0 {
		warnings = append(warnings, fmt.Sprintf("explicit max TTL of %d seconds is greater than the system maximum; capped to %d seconds",
			int64(explicit.Seconds()), int64(s.maxTTL.Seconds())))
		explicit = s.maxTTL
	}
	ttl := o.TTL
	switch {
	case o.Period > 0:
		ttl = o.Period
	default:
		if ttl == 0 && !slices.Contains(e.rec.Policies, rootPolicy) {
			ttl = s.defaultTTL
		}
		if ttl > s.maxTTL {
			warnings = append(warnings, fmt.Sprintf("TTL of %d seconds is greater than the system maximum; capped to %d seconds",
				int64(ttl.Seconds()), int64(s.maxTTL.Seconds())))
			ttl = s.maxTTL
		}
	}
	if explicit > 0 && (ttl == 0 || ttl > explicit) {
		ttl = explicit
	}
	e.rec.TTL = ttl
	e.rec.ExplicitMaxTTL = explicit
	e.rec.Period = o.Period
	return warnings
}

// normalisePolicies lower-cases, trims, sorts and de-duplicates names, adds
// "default" when asked, and reduces any list holding "root" to ["root"].
func normalisePolicies(in []string, addDefault bool) []string {
	out := make([]string, 0, len(in)+1)
	for _, p := range in {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == rootPolicy {
			return []string{rootPolicy}
		}
		if p != "" {
			out = append(out, p)
		}
	}
	if addDefault {
		out = append(out, defaultPolicy)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// CreateRoot creates a root token (policy "root", orphan, never expires) for
// init and the dev server, and returns its id.
func (s *Store) CreateRoot(ctx context.Context) (string, error) {
	return s.CreateRootWithID(ctx, "")
}

// CreateRootWithID creates a root token with a chosen id, as the dev server's
// -dev-root-token-id does. Any non-empty id is accepted ("root" included); an
// empty one is generated. It returns ErrDuplicateID if the id exists.
func (s *Store) CreateRootWithID(ctx context.Context, id string) (string, error) {
	c, err := s.Create(ctx, CreateOptions{
		ID:              id,
		Policies:        []string{rootPolicy},
		NoDefaultPolicy: true,
		DisplayName:     "root",
		Path:            rootPath,
	})
	if err != nil {
		return "", fmt.Errorf("create root token: %w", err)
	}
	return c.ID, nil
}

// Use records one use of e and returns the entry as updated. For a token
// without a use limit it writes nothing and returns e. A limited token's
// count is decremented durably; the use that reaches zero revokes the token
// and returns an entry whose Exhausted reports true, so the request it
// authorised can still complete (pass that entry on with WithCaller).
func (s *Store) Use(ctx context.Context, e *Entry) (*Entry, error) {
	if e == nil {
		return nil, ErrNotFound
	}
	if e.rec.NumUses == 0 {
		if e.exhausted {
			return nil, ErrNotFound
		}
		return e, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.read(ctx, e.hash)
	if err != nil {
		return nil, err
	}
	if cur.rec.NumUses == 0 {
		return cur, nil
	}
	next := cur.clone()
	next.rec.NumUses--
	if next.rec.NumUses == 0 {
		if _, err := s.revokeTreeLocked(ctx, e.hash); err != nil {
			return nil, fmt.Errorf("token store: revoke exhausted token: %w", err)
		}
		next.exhausted = true
		return next, nil
	}
	if err := s.putLocked(ctx, next); err != nil {
		return nil, fmt.Errorf("token store: use: %w", err)
	}
	return next, nil
}

// UseToken is Use for callers that need only the error.
func (s *Store) UseToken(ctx context.Context, e *Entry) error {
	_, err := s.Use(ctx, e)
	return err
}

// putLocked stores an updated existing entry and refreshes the cache.
// Callers hold s.mu.
func (s *Store) putLocked(ctx context.Context, e *Entry) error {
	val, err := e.encode()
	if err != nil {
		return err
	}
	if err := s.b.Put(ctx, keyID+e.hash, val); err != nil {
		return err
	}
	s.cache.invalidate(e.hash)
	s.cache.add(e, s.cache.snapshot())
	return nil
}

// renew extends the token at hash by increment (0: by its creation TTL) and
// returns the updated entry, the granted TTL and warnings. Rules as Vault's:
// a periodic token gets its period; others get the increment, capped by the
// system max TTL and by what is left of creation + (explicit max TTL or
// system max TTL).
func (s *Store) renew(ctx context.Context, hash string, increment time.Duration) (*Entry, time.Duration, []string, error) {
	if _, err := s.valid(ctx, hash); err != nil {
		return nil, 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.read(ctx, hash)
	if err != nil {
		return nil, 0, nil, err
	}
	now := s.now()
	if cur.expiredAt(now) {
		return nil, 0, nil, ErrNotFound
	}
	if !cur.rec.Renewable || (cur.rec.ExpireTime.IsZero() && cur.rec.Period == 0) {
		return nil, 0, nil, ErrNotRenewable
	}
	var warnings []string
	ttl := increment
	limit := s.maxTTL
	if cur.rec.Period > 0 {
		ttl = cur.rec.Period
		limit = 0
	} else {
		if ttl <= 0 {
			ttl = cur.rec.TTL
		}
		if ttl <= 0 {
			ttl = s.defaultTTL
		}
		ttl = min(ttl, s.maxTTL)
	}
	if cur.rec.ExplicitMaxTTL > 0 {
		limit = cur.rec.ExplicitMaxTTL
	}
	if limit > 0 {
		left := cur.rec.CreationTime.Add(limit).Sub(now)
		if left <= 0 {
			return nil, 0, nil, ErrNotFound
		}
		if ttl > left {
			warnings = append(warnings, fmt.Sprintf("TTL of %d seconds exceeded the effective max TTL; capped to %d seconds",
				int64(ttl.Seconds()), int64(left.Seconds())))
			ttl = left
		}
	}
	next := cur.clone()
	next.rec.ExpireTime = now.Add(ttl)
	next.rec.LastRenewal = now
	if err := s.putLocked(ctx, next); err != nil {
		return nil, 0, nil, fmt.Errorf("token store: renew: %w", err)
	}
	return next, ttl, warnings, nil
}

func childKey(parent, child string) string { return keyParent + parent + "/" + child }

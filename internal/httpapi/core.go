package httpapi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/attest/tpm"
	"github.com/edgevault/edgevault/internal/audit"
	"github.com/edgevault/edgevault/internal/engine/pki"
	"github.com/edgevault/edgevault/internal/lease"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/policy"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/syncproto"
	"github.com/edgevault/edgevault/internal/token"
	"github.com/edgevault/edgevault/internal/zone"
)

// Where each subsystem keeps its records inside the barrier.
const (
	tokenPrefix     = "sys/token/"
	policyPrefix    = "sys/policy/"
	mountsKey       = "sys/mounts"
	enginePrefix    = "logical/"
	zoneRootKey     = "sys/zone-root-key"      // in the barrier
	zoneRootKeyNext = "sys/zone-root-key-next" // in the barrier, during a rotation
	zonePrefix      = "zone/"                  // in physical storage
)

// unsealed is everything that exists only while the barrier is unsealed.
type unsealed struct {
	audit   *audit.Broker     // every zone's requests are audited through it
	attest  *attest.Service   // agent enrollment and the agent registry, every zone
	tpm     *tpm.Attestor     // TPM 2.0 attestation, every zone with a policy
	feed    *syncproto.Feed   // cacheable changes, per zone, for the agents
	sync    *syncproto.Server // the agents' sync streams
	events  *events           // event intake, rules and the revocation log (events.go)
	changes chan kvChange     // committed KV changes waiting to be published
	// feedStarted holds the zones whose feed numbering was set (startFeed).
	feedStarted sync.Map
	// overflow holds zones to republish whole: a change could not be queued
	// or published.
	overflow sync.Map
	root     *core       // the root zone (operators), on the barrier
	zones    *zone.Store // the named zones' keys and records
	bg       context.Context
	stop     context.CancelFunc

	mu    sync.Mutex // serialises loading and dropping named zones
	named sync.Map   // zone name → *core, the named zones loaded so far; read without mu
}

// core is one zone's state: its token store, policies and mounts, over the
// storage that holds the zone's records.
type core struct {
	zone     string          // "" for the root zone
	store    storage.Backend // the barrier for the root zone, the zone's backend otherwise
	tokens   *token.Store
	policies *policy.Store
	mounts   atomic.Pointer[mountTable]
	audit    *audit.Broker
	salt     *audit.Salt    // the zone's audit HMAC key
	leases   *lease.Manager // the zone's leases, expired on time
	// unmounting holds the UUIDs of mounts being removed: no new request
	// reaches them while their leases are revoked.
	unmounting sync.Map
	stop       context.CancelFunc // ends the zone's background work and closes its engines
}

// bootstrap runs once, inside init, while the barrier is briefly unsealed:
// it writes the root zone's default policy and mount table and creates the
// root token.
func (s *Server) bootstrap(ctx context.Context, rootTokenID string) (string, error) {
	if err := bootstrapZone(ctx, s.barrier); err != nil {
		return "", err
	}
	tokens := token.NewStore(storage.NewView(s.barrier, tokenPrefix), token.Options{Logger: s.log})
	if rootTokenID != "" {
		if _, err := tokens.CreateRootWithID(ctx, rootTokenID); err != nil {
			return "", fmt.Errorf("create root token: %w", err)
		}
		return rootTokenID, nil
	}
	id, err := tokens.CreateRoot(ctx)
	if err != nil {
		return "", fmt.Errorf("create root token: %w", err)
	}
	return id, nil
}

// bootstrapZone writes a new zone's default policy and mount table.
func bootstrapZone(ctx context.Context, store storage.Backend) error {
	if err := policy.NewStore(storage.NewView(store, policyPrefix)).EnsureDefault(ctx); err != nil {
		return fmt.Errorf("write default policy: %w", err)
	}
	return writeMountTable(ctx, store, defaultMounts())
}

// newCore loads one zone's state from store and starts its token tidying.
func (s *Server) newCore(ctx, bg context.Context, name string, store storage.Backend, broker *audit.Broker) (*core, error) {
	entries, err := readMountTable(ctx, store)
	if err != nil {
		return nil, err
	}
	salt, err := zoneSalt(ctx, store)
	if err != nil {
		return nil, err
	}
	mt, err := s.buildMountTable(name, store, entries, nil)
	if err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(bg)
	c := &core{
		zone:     name,
		store:    store,
		policies: policy.NewStore(storage.NewView(store, policyPrefix)),
		audit:    broker,
		salt:     salt,
	}
	// Revoking a token expires its leases first (the lease manager exists
	// before the first request can revoke anything).
	c.tokens = token.NewStore(storage.NewView(store, tokenPrefix), token.Options{Logger: s.log.With("zone", name),
		TidyInterval: s.cfg.TokenTidyInterval, BeforeRevoke: c.expireTokenLeases})
	c.mounts.Store(mt)
	c.stop = func() {
		cancel()
		if c.leases != nil {
			c.leases.Stop() // no revocation still running once the engines close
		}
		for _, e := range c.mounts.Load().entries {
			closeEngine(e.handler)
		}
	}
	stop := c.stop
	c.policies.OnChange(func() {
		if u := s.state.Load(); u != nil {
			u.republish(name) // what the zone's agents may cache may have changed
		}
	})
	if c.leases, err = s.newLeaseManager(bg, c); err != nil {
		stop()
		return nil, err
	}
	go c.tokens.Run(bg)
	return c, nil
}

// loadCoreLocked builds the unsealed state from storage. s.mu is held.
func (s *Server) loadCoreLocked(ctx context.Context) error {
	s.dropCoreLocked()
	broker, err := s.openAudit(ctx)
	if err != nil {
		return err
	}
	bg, cancel := context.WithCancel(context.Background())
	stop := func() {
		cancel()
		if lg := broker.Log(); lg != nil {
			if _, err := lg.Integrate(); err == nil {
				var none logState
				s.saveLogState(context.Background(), broker, &none)
			}
		}
		if err := broker.Close(); err != nil {
			s.log.Error("close audit devices", "err", err)
		}
	}
	go s.watchLogState(bg, broker)
	root, err := s.newCore(ctx, bg, "", s.barrier, broker)
	if err != nil {
		stop()
		return err
	}
	zones, err := s.openZones(ctx)
	if err != nil {
		stop()
		return err
	}
	for _, name := range zones.PendingRewraps() {
		if err := zones.StartRewrap(bg, name); err != nil {
			s.log.Warn("resume rewrap", "zone", name, "err", err)
		}
	}
	u := &unsealed{audit: broker, root: root, zones: zones, bg: bg, stop: stop}
	if u.attest, err = attest.New(attest.Config{TrustDomain: s.cfg.TrustDomain, Logger: s.log, Stores: s.zoneStores(u)}); err != nil {
		stop()
		return err
	}
	if u.tpm, err = tpm.New(tpm.Config{Policies: s.tpmPolicy(u), Stores: s.zoneStores(u)}); err != nil {
		stop()
		return err
	}
	u.feed = syncproto.NewFeed(0)
	u.changes = make(chan kvChange, 4096)
	if u.events, err = s.newEvents(ctx); err != nil {
		stop()
		return err
	}
	u.sync = &syncproto.Server{Feed: u.feed, Authorize: s.authorizeUnsealedAgent(u), Snapshot: s.zoneSnapshot(u), OnAck: s.onAck(u), Logger: s.log}
	go s.publish(u)
	go s.tidyChallenges(u)
	s.state.Store(u)
	go s.resumeRevocations(u)
	s.log.Info("unsealed", "mounts", len(root.mounts.Load().entries))
	return nil
}

// openZones opens the zone store. Zone key-encryption keys are wrapped by
// the zone root key, which lives in the barrier (so under the seal's root
// key); zone records live outside the barrier, encrypted once, by their
// zone's data keys. A root-key rotation interrupted by a crash left the new
// key under zoneRootKeyNext: whichever key opens the store wins.
func (s *Server) openZones(ctx context.Context) (*zone.Store, error) {
	key, err := s.barrier.Get(ctx, zoneRootKey)
	if errors.Is(err, storage.ErrNotFound) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("zone root key: %w", err)
		}
		err = s.barrier.Put(ctx, zoneRootKey, key)
	}
	if err != nil {
		return nil, fmt.Errorf("zone root key: %w", err)
	}
	zones, err := s.openZonesWith(ctx, key)
	if err == nil {
		_ = s.barrier.Delete(ctx, zoneRootKeyNext) // a rotation that never reached the KEKs
		return zones, nil
	}
	next, nerr := s.barrier.Get(ctx, zoneRootKeyNext)
	if nerr != nil {
		return nil, err
	}
	if zones, nerr = s.openZonesWith(ctx, next); nerr != nil {
		return nil, err
	}
	// The KEKs were rewrapped under the next key: finish the rotation.
	if err := s.barrier.Txn(ctx, []storage.Op{{Kind: storage.OpPut, Key: zoneRootKey, Value: next}, {Kind: storage.OpDelete, Key: zoneRootKeyNext}}); err != nil {
		return nil, fmt.Errorf("finish zone root key rotation: %w", err)
	}
	return zones, nil
}

func (s *Server) openZonesWith(ctx context.Context, key []byte) (*zone.Store, error) {
	root, err := zone.NewAESRoot(key)
	if err != nil {
		return nil, err
	}
	return zone.Open(ctx, zone.Config{Storage: storage.NewView(s.cfg.Physical, zonePrefix), Root: root, Logger: s.log})
}

// rotateZoneRoot replaces the zone root key and rewraps every zone's KEK
// under the new one; no record is rewritten. The new key is stored first
// under zoneRootKeyNext, so a crash at any point leaves a key that opens the
// store (see openZones).
func (s *Server) rotateZoneRoot(ctx context.Context, u *unsealed) error {
	oldKey, err := s.barrier.Get(ctx, zoneRootKey)
	if err != nil {
		return fmt.Errorf("zone root key: %w", err)
	}
	newKey := make([]byte, 32)
	if _, err := rand.Read(newKey); err != nil {
		return err
	}
	oldRoot, err := zone.NewAESRoot(oldKey)
	if err != nil {
		return err
	}
	newRoot, err := zone.NewAESRoot(newKey)
	if err != nil {
		return err
	}
	if err := s.barrier.Put(ctx, zoneRootKeyNext, newKey); err != nil {
		return fmt.Errorf("store the next zone root key: %w", err)
	}
	if err := u.zones.RewrapKEKs(ctx, oldRoot, newRoot); err != nil {
		_ = s.barrier.Delete(ctx, zoneRootKeyNext)
		return fmt.Errorf("rewrap zone keys: %w", err)
	}
	return s.barrier.Txn(ctx, []storage.Op{{Kind: storage.OpPut, Key: zoneRootKey, Value: newKey}, {Kind: storage.OpDelete, Key: zoneRootKeyNext}})
}

// zoneCore returns the state of zone name ("" is the root zone), loading it
// on first use. An unknown zone is a 404 naming it.
func (s *Server) zoneCore(ctx context.Context, u *unsealed, name string) (*core, error) {
	if name == "" {
		return u.root, nil
	}
	if c, ok := u.named.Load(name); ok {
		return c.(*core), nil // the per-request path: no lock
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if c, ok := u.named.Load(name); ok {
		return c.(*core), nil
	}
	if _, err := u.zones.Get(ctx, name); err != nil {
		if errors.Is(err, zone.ErrNotFound) || errors.Is(err, zone.ErrInvalidName) {
			return nil, fmt.Errorf("%w: zone %q does not exist", logical.ErrNotFound, name)
		}
		return nil, err
	}
	store, err := u.zones.Backend(name)
	if err != nil {
		return nil, err
	}
	c, err := s.newCore(ctx, u.bg, name, store, u.audit)
	if err != nil {
		return nil, err
	}
	u.named.Store(name, c)
	return c, nil
}

// dropCoreLocked forgets the unsealed state. s.mu is held.
func (s *Server) dropCoreLocked() {
	if u := s.state.Swap(nil); u != nil {
		u.sync.Shutdown()
		u.root.stop()
		u.named.Range(func(_, c any) bool { c.(*core).stop(); return true })
		u.stop()
	}
}

// route is where a request goes once authorised.
type route struct {
	mountPoint string
	mountType  string
	handler    logical.Handler
	// serve, when set, answers the request itself (sys endpoints whose
	// responses are not plain logical responses).
	serve func(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request)
	// sudoPaths lists relative paths that need sudo on top of the capability.
	sudoPaths []string
	// public, when set, reports the relative paths read without a token
	// (Vault's unauthenticated paths: a pki mount's CA and CRL).
	public func(rel string) bool
}

func (rt *route) sudo(rel string) bool {
	for _, p := range rt.sudoPaths {
		if rel == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(rel, p)) { // "x/" covers x/*
			return true
		}
	}
	return false
}

// route finds the handler for path (relative to /v1/) and the path relative
// to its mount.
func (c *core) route(path string) (*route, string, error) {
	switch {
	case strings.HasPrefix(path, "sys/"):
		rel := path[len("sys/"):]
		return c.sysRoute(rel), rel, nil
	case path == "sys":
		return nil, "", fmt.Errorf("%w: %s", logical.ErrUnsupportedPath, path)
	case strings.HasPrefix(path, "auth/attest/"):
		return &route{mountPoint: "auth/attest/", mountType: "attest", serve: serveAttest, sudoPaths: []string{"join-token"}},
			path[len("auth/attest/"):], nil
	case strings.HasPrefix(path, "auth/token/"):
		return &route{mountPoint: "auth/token/", mountType: "token", handler: c.tokens, sudoPaths: []string{"revoke-orphan"}},
			path[len("auth/token/"):], nil
	}
	m := c.mounts.Load().match(path)
	if m == nil {
		return nil, "", fmt.Errorf("%w: no handler for route %q; route entry not found", logical.ErrUnsupportedPath, path)
	}
	if _, ok := c.unmounting.Load(m.UUID); ok {
		return nil, "", fmt.Errorf("%w: the mount at %q is being removed", logical.ErrUnsupportedPath, m.Path)
	}
	rt := &route{mountPoint: m.Path, mountType: m.Type, handler: m.handler}
	if m.Type == "pki" {
		rt.public = pki.Unauthenticated
	}
	return rt, path[len(m.Path):], nil
}

package zone

import (
	"context"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
)

// Storage layout, relative to Config.Storage.
const (
	metaPrefix = "zones/meta/"   // + name: Zone as JSON (not for the root zone)
	keysPrefix = "zones/keys/"   // + id: keyDoc as JSON
	jobPrefix  = "zones/rewrap/" // + id: rewrap checkpoint as JSON
	dataPrefix = "zones/data/"   // + id + "/" + path: record envelopes
	// rootID stands for the root zone "" in storage keys; '_' is not
	// allowed in zone names, so it cannot collide.
	rootID = "_root"
)

func zoneID(name string) string {
	if name == "" {
		return rootID
	}
	return name
}

// Zone is a trust zone's record. The root zone "" always exists.
type Zone struct {
	// Name is a DNS-label-like name (see ValidateName); "" is the root zone.
	Name string `json:"name"`
	// Description is free text for operators, at most MaxDescriptionLen bytes.
	Description string `json:"description,omitempty"`
	// Labels are operator metadata such as region or site (ValidateLabels).
	Labels map[string]string `json:"labels,omitempty"`
	// Parent is the parent zone's name; "" means the root zone. It must exist
	// at creation and cannot change, so the parent graph has no cycles.
	Parent string `json:"parent,omitempty"`
	// Created is set by Create.
	Created time.Time `json:"created"`
}

// Config configures a Store.
type Config struct {
	// Storage holds zone records, key documents, rewrap checkpoints and the
	// zones' encrypted records. The server passes a barrier view; tests pass
	// an inmem or bolt backend. Required.
	Storage storage.Backend
	// Root wraps the zone KEKs (see NewAESRoot). Required.
	Root RootWrapper
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives rewrap progress and failures (never keys or values);
	// nil discards.
	Logger *slog.Logger
}

// EmptyFunc reports whether a zone holds nothing the server still manages
// (mounts, tokens, policies, agents). Delete calls it before deleting.
type EmptyFunc func(ctx context.Context, zone string) (bool, error)

// Store manages zones and their key hierarchies. It is safe for concurrent
// use. Zone views (Backend) read keys through atomic snapshots and take no
// Store-wide lock.
type Store struct {
	st  storage.Backend
	now func() time.Time
	log *slog.Logger

	admin sync.Mutex   // serialises Create, Delete and RewrapKEKs
	mu    sync.RWMutex // guards root and zones
	root  RootWrapper
	zones map[string]*zoneState

	workers sync.WaitGroup // background rewraps (StartRewrap)
}

// zoneState is one loaded zone.
type zoneState struct {
	name    string
	id      string
	keys    atomic.Pointer[keySet] // hot path
	deleted atomic.Bool
	stripes [stripeCount]sync.Mutex // serialise writers and rewrap per record
	seed    maphash.Seed            // spreads keys over stripes

	mu  sync.Mutex // guards doc and kek; serialises key changes
	doc keyDoc
	kek cipher.AEAD

	rewrapMu sync.Mutex // one rewrap at a time per zone
	progress atomic.Pointer[RewrapProgress]
}

// Open loads every zone's keys from cfg.Storage, unwrapping the KEKs with
// cfg.Root, and creates the root zone's keys on first use.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Storage == nil {
		return nil, errors.New("zone: open: Config.Storage is required")
	}
	if cfg.Root == nil {
		return nil, errors.New("zone: open: Config.Root is required")
	}
	s := &Store{st: cfg.Storage, root: cfg.Root, now: cfg.Now, log: cfg.Logger, zones: map[string]*zoneState{}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	ids, err := s.st.List(ctx, keysPrefix)
	if err != nil {
		return nil, fmt.Errorf("zone: open: listing zones: %w", err)
	}
	for _, id := range ids {
		if strings.HasSuffix(id, "/") {
			continue
		}
		zs, err := s.loadZone(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("zone: open: %w", err)
		}
		s.zones[zs.name] = zs
	}
	if _, ok := s.zones[""]; !ok {
		zs, op, err := s.newZoneState("")
		if err != nil {
			return nil, fmt.Errorf("zone: open: root zone: %w", err)
		}
		if err := s.st.Put(ctx, op.Key, op.Value); err != nil {
			return nil, fmt.Errorf("zone: open: storing root zone keys: %w", err)
		}
		s.zones[""] = zs
	}
	return s, nil
}

func (s *Store) loadZone(ctx context.Context, id string) (*zoneState, error) {
	b, err := s.st.Get(ctx, keysPrefix+id)
	if err != nil {
		return nil, fmt.Errorf("zone %q: reading keys: %w", id, err)
	}
	doc, err := parseKeyDoc(b)
	if err != nil {
		return nil, fmt.Errorf("zone %q: %w", id, err)
	}
	if zoneID(doc.Zone) != id {
		return nil, fmt.Errorf("zone %q: %w: document names zone %q", id, ErrCorruptKeys, doc.Zone)
	}
	kek, err := doc.unwrapKEK(s.root)
	if err != nil {
		return nil, fmt.Errorf("zone %q: %w", doc.Zone, err)
	}
	ks, err := doc.keySet(kek)
	if err != nil {
		return nil, fmt.Errorf("zone %q: %w", doc.Zone, err)
	}
	zs := &zoneState{name: doc.Zone, id: id, doc: doc, kek: kek, seed: maphash.MakeSeed()}
	zs.keys.Store(ks)
	return zs, nil
}

// newZoneState creates fresh keys for zone and returns the op storing them.
func (s *Store) newZoneState(name string) (*zoneState, storage.Op, error) {
	doc, kek, err := newKeyDoc(name, s.root, s.now())
	if err != nil {
		return nil, storage.Op{}, err
	}
	ks, err := doc.keySet(kek)
	if err != nil {
		return nil, storage.Op{}, err
	}
	b, err := doc.marshal()
	if err != nil {
		return nil, storage.Op{}, err
	}
	zs := &zoneState{name: name, id: zoneID(name), doc: doc, kek: kek, seed: maphash.MakeSeed()}
	zs.keys.Store(ks)
	return zs, storage.Op{Kind: storage.OpPut, Key: keysPrefix + zs.id, Value: b}, nil
}

// zone returns the loaded zone or ErrNotFound.
func (s *Store) zone(name string) (*zoneState, error) {
	s.mu.RLock()
	zs, ok := s.zones[name]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return zs, nil
}

// Create validates z, then stores it with a new KEK and data key. The
// parent must exist. Created is set from the clock; the stored zone is
// returned. On error nothing is stored.
func (s *Store) Create(ctx context.Context, z Zone) (Zone, error) {
	if err := ValidateName(z.Name); err != nil {
		return Zone{}, fmt.Errorf("zone: create: %w", err)
	}
	if err := validateText(z.Description, MaxDescriptionLen); err != nil {
		return Zone{}, fmt.Errorf("zone %q: create: %w: description %s", z.Name, ErrInvalidZone, err)
	}
	if err := ValidateLabels(z.Labels); err != nil {
		return Zone{}, fmt.Errorf("zone %q: create: %w", z.Name, err)
	}
	if z.Parent == z.Name {
		return Zone{}, fmt.Errorf("zone %q: create: %w: parent must not be the zone itself", z.Name, ErrInvalidZone)
	}
	s.admin.Lock()
	defer s.admin.Unlock()
	if _, err := s.zone(z.Parent); err != nil {
		return Zone{}, fmt.Errorf("zone %q: create: %w: parent: %w", z.Name, ErrInvalidZone, err)
	}
	if _, err := s.zone(z.Name); err == nil {
		return Zone{}, fmt.Errorf("zone %q: create: %w", z.Name, ErrExists)
	}
	z.Created = s.now().UTC()
	z.Labels = copyLabels(z.Labels)
	meta, err := json.Marshal(z)
	if err != nil {
		return Zone{}, fmt.Errorf("zone %q: create: %w", z.Name, err)
	}
	zs, keyOp, err := s.newZoneState(z.Name)
	if err != nil {
		return Zone{}, fmt.Errorf("zone %q: create: %w", z.Name, err)
	}
	ops := []storage.Op{{Kind: storage.OpPut, Key: metaPrefix + z.Name, Value: meta}, keyOp}
	if err := s.st.Txn(ctx, ops); err != nil {
		return Zone{}, fmt.Errorf("zone %q: create: %w", z.Name, err)
	}
	s.mu.Lock()
	s.zones[z.Name] = zs
	s.mu.Unlock()
	return z, nil
}

func copyLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// Get returns the zone named name. The root zone "" is synthesised.
// Unknown zones return an error wrapping ErrNotFound and naming the zone.
func (s *Store) Get(ctx context.Context, name string) (Zone, error) {
	if name == "" {
		return Zone{Name: "", Description: "root zone"}, nil
	}
	if _, err := s.zone(name); err != nil {
		return Zone{}, fmt.Errorf("zone: get: %w", err)
	}
	b, err := s.st.Get(ctx, metaPrefix+name)
	if errors.Is(err, storage.ErrNotFound) {
		return Zone{}, fmt.Errorf("zone: get: %w: %q", ErrNotFound, name)
	}
	if err != nil {
		return Zone{}, fmt.Errorf("zone %q: get: %w", name, err)
	}
	var z Zone
	if err := json.Unmarshal(b, &z); err != nil {
		return Zone{}, fmt.Errorf("zone %q: get: decoding record: %w", name, err)
	}
	return z, nil
}

// List returns the names of every zone except the root, sorted.
func (s *Store) List(ctx context.Context) ([]string, error) {
	names, err := s.st.List(ctx, metaPrefix)
	if err != nil {
		return nil, fmt.Errorf("zone: list: %w", err)
	}
	return slices.DeleteFunc(names, func(n string) bool { return strings.HasSuffix(n, "/") }), nil
}

// Delete removes an empty zone and its keys. A zone is empty when it holds
// no records, no child zone names it as parent, and empty (when not nil)
// reports true. Otherwise it returns an error wrapping ErrNotEmpty and
// changes nothing. The root zone cannot be deleted (ErrRootZone).
func (s *Store) Delete(ctx context.Context, name string, empty EmptyFunc) error {
	if name == "" {
		return fmt.Errorf("zone: delete: %w", ErrRootZone)
	}
	s.admin.Lock()
	defer s.admin.Unlock()
	zs, err := s.zone(name)
	if err != nil {
		return fmt.Errorf("zone: delete: %w", err)
	}
	children, err := s.children(ctx, name)
	if err != nil {
		return fmt.Errorf("zone %q: delete: %w", name, err)
	}
	if len(children) > 0 {
		return fmt.Errorf("zone %q: delete: %w: child zones %s", name, ErrNotEmpty, strings.Join(children, ", "))
	}
	if empty != nil {
		ok, err := empty(ctx, name)
		if err != nil {
			return fmt.Errorf("zone %q: delete: checking emptiness: %w", name, err)
		}
		if !ok {
			return fmt.Errorf("zone %q: delete: %w", name, ErrNotEmpty)
		}
	}
	// Hold every stripe from the record check to the delete, so no write
	// lands in the zone in between (writers re-check deleted under their
	// stripe).
	for i := range zs.stripes {
		zs.stripes[i].Lock()
		defer zs.stripes[i].Unlock()
	}
	recs, err := s.st.List(ctx, dataPrefix+zs.id+"/")
	if err != nil {
		return fmt.Errorf("zone %q: delete: %w", name, err)
	}
	if len(recs) > 0 {
		return fmt.Errorf("zone %q: delete: %w: it holds stored records", name, ErrNotEmpty)
	}
	ops := []storage.Op{
		{Kind: storage.OpDelete, Key: metaPrefix + name},
		{Kind: storage.OpDelete, Key: keysPrefix + zs.id},
		{Kind: storage.OpDelete, Key: jobPrefix + zs.id},
	}
	if err := s.st.Txn(ctx, ops); err != nil {
		return fmt.Errorf("zone %q: delete: %w", name, err)
	}
	zs.deleted.Store(true)
	s.mu.Lock()
	delete(s.zones, name)
	s.mu.Unlock()
	return nil
}

// children returns the zones whose parent is name.
func (s *Store) children(ctx context.Context, name string) ([]string, error) {
	names, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		z, err := s.Get(ctx, n)
		if err != nil {
			return nil, err
		}
		if z.Parent == name {
			out = append(out, n)
		}
	}
	return out, nil
}

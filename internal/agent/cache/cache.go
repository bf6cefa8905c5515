package cache

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/edgevault/edgevault/internal/zone"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// KeySize is the size of the cache key: AES-256.
const KeySize = 32

// Limits on what the cache stores.
const (
	// MaxPathLen bounds a secret path, in bytes.
	MaxPathLen = 4096
	// MaxValueLen bounds the data and the metadata JSON of one version.
	MaxValueLen = 32 << 20
	maxVersion  = math.MaxInt32
)

// KeyProtector protects the cache key at rest. The cache generates a random
// KeySize-byte key when it creates a file, stores Wrap's output in the file,
// and calls Unwrap with it on every Open. Implementations: keyfile (a local
// key file, for development) and, later, a TPM-sealed key.
//
// Unwrap must fail — never return a different key — for a blob that Wrap of
// this protector did not produce. Both may be called from any goroutine but
// are called only from Open.
type KeyProtector interface {
	// Wrap returns an opaque blob from which Unwrap recovers key.
	Wrap(key []byte) ([]byte, error)
	// Unwrap returns the key wrapped in blob.
	Unwrap(blob []byte) ([]byte, error)
}

// Options configure Open. The zero value is usable for the root zone.
type Options struct {
	// Zone is the trust zone the cache belongs to ("" is the root zone). It
	// is bound into every record and checked at Open.
	Zone string
	// Clock returns the current time for staleness (Get, Metadata) and for
	// the synced_at of applied records. Nil means time.Now.
	Clock func() time.Time
	// Logger receives drops of tampered records and open/reset events; it
	// never receives secret values. Nil means discard.
	Logger *slog.Logger
	// LockTimeout is how long Open waits for another process holding the
	// file. Zero means 1s.
	LockTimeout time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LockTimeout < 0 {
		return o, fmt.Errorf("cache: options: LockTimeout is negative (%v)", o.LockTimeout)
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
	if o.Zone != "" {
		if err := zone.ValidateName(o.Zone); err != nil {
			return o, fmt.Errorf("cache: options: Zone: %w", err)
		}
	}
	return o, nil
}

// Cache is the agent's persistent cache of KV v2 secret versions: a bbolt
// file of encrypted records mirrored by an in-memory index of the decrypted
// entries. Create it with Open. It is safe for concurrent use: reads (Get,
// Metadata, Stats, Watermark) take a shared lock for a map lookup and never
// touch the disk; writes (Apply, Reset, MarkSynced) are serialised and hold
// the exclusive lock only to publish a committed batch.
type Cache struct {
	file  string
	zone  string
	clock func() time.Time
	log   *slog.Logger
	db    *bbolt.DB
	aead  cipher.AEAD

	wmu   sync.Mutex // serialises writers and Close
	terms *termer    // under wmu
	state stateRec   // as last committed; under wmu
	// mapped is the part of the file's mapping that may hold resident
	// pages (the last high-water mark seen); under wmu.
	mapped int64

	// testHookOp, set by tests only, runs after each op of an Apply inside
	// its transaction; an error aborts the batch (fault injection).
	testHookOp func(i int) error

	mu        sync.RWMutex // guards the index below
	closed    bool
	paths     map[string]*pathEntry // immutable values, replaced on change
	tampered  map[string]struct{}
	syncedAt  int64
	watermark uint64
	entries   int
	bytes     int64
	dropped   uint64
}

// pathEntry is the in-memory state of one path. It is never modified once
// published in Cache.paths; writers replace it.
type pathEntry struct {
	rec      pathRec
	versions []verEntry // ascending by version
}

type verEntry struct {
	version uint64
	versionRec
}

func (p *pathEntry) find(v uint64) (int, bool) {
	return slices.BinarySearchFunc(p.versions, v, func(e verEntry, v uint64) int {
		switch {
		case e.version < v:
			return -1
		case e.version > v:
			return 1
		}
		return 0
	})
}

func (p *pathEntry) size() (entries int, n int64) {
	if p == nil {
		return 0, 0
	}
	for i := range p.versions {
		n += int64(len(p.versions[i].data) + len(p.versions[i].meta))
	}
	return len(p.versions), n
}

// Entry is one cached version as Get returns it. Data and Metadata are
// shared with the cache and must not be modified.
type Entry struct {
	// Path and Version name the entry (Version is the resolved version
	// when Get was asked for the current one).
	Path    string
	Version int
	// Data is the secret's "data" object, Metadata the version's metadata
	// object (created_time, deletion_time, destroyed, custom_metadata,
	// version), both exactly as the server sent them.
	Data     json.RawMessage
	Metadata json.RawMessage
	// Destroyed and DeletionTime repeat the metadata fields the local API
	// needs to answer as Vault does (a deleted or destroyed version is a
	// 404 carrying its metadata). DeletionTime is zero if never deleted and
	// may be in the future (delete_version_after).
	Destroyed    bool
	DeletionTime time.Time
	// MaxStale is how long past SyncedAt the entry may be served.
	MaxStale time.Duration
	// SyncedAt is the last time the entry was known to be current: the
	// later of its last write and the last MarkSynced.
	SyncedAt time.Time
	// Age is Clock() - SyncedAt (never negative), at most MaxStale.
	Age time.Duration
}

// VersionInfo describes one cached version in PathInfo.
type VersionInfo struct {
	Version      int
	Metadata     json.RawMessage // shared; must not be modified
	Destroyed    bool
	DeletionTime time.Time
}

// PathInfo is what Metadata returns for a path.
type PathInfo struct {
	Path           string
	CurrentVersion int
	// Versions lists the cached versions in ascending order; the current
	// one may be missing if the server deleted its record.
	Versions []VersionInfo
	MaxStale time.Duration
	SyncedAt time.Time
	Age      time.Duration
}

// Stats describes the cache's contents.
type Stats struct {
	// Paths and Entries count cached paths and versions.
	Paths, Entries int
	// Bytes is the size of the cached data and metadata JSON.
	Bytes int64
	// Dropped counts records that failed authentication at Open and were
	// deleted.
	Dropped uint64
	// Watermark is the last applied event sequence; 0 means the cache
	// needs a full sync.
	Watermark uint64
	// SyncedAt is the last MarkSynced time (zero if none since the last
	// full sync or integrity loss).
	SyncedAt time.Time
}

// Open opens or creates the cache file at path (mode 0600), unwraps its key
// with kp (or creates and wraps a new one), and loads every record into
// memory, authenticating each. A record that fails is deleted, counted in
// Stats.Dropped and logged (its key, never its value); reads of its path
// then return ErrTampered.
//
// If any record failed, or the set of records is not the one last written
// (records added, removed or replaced by older copies on disk, detected by
// the encrypted set digest), the remaining individually-authentic entries
// are kept but no longer trusted beyond their own synced_at, and the
// watermark is reset to 0 so the agent performs a full resync.
//
// Errors: ErrCorrupt (remove the file and re-sync), ErrKeyMismatch,
// ErrZoneMismatch, or the file is locked by another process.
func Open(path string, kp KeyProtector, opts Options) (*Cache, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errors.New("cache: open: path is empty")
	}
	if kp == nil {
		return nil, errors.New("cache: open: KeyProtector is nil")
	}
	db, err := openBolt(path, opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	c := &Cache{
		file:     path,
		zone:     opts.Zone,
		clock:    opts.Clock,
		log:      opts.Logger.With("cache", path),
		db:       db,
		paths:    map[string]*pathEntry{},
		tampered: map[string]struct{}{},
	}
	start := time.Now()
	if err := c.load(kp); err != nil {
		_ = db.Close()
		return nil, err
	}
	// Loading touched every page of the memory-mapped file; unmap them so
	// the agent's resident set holds the index, not a second copy of the
	// file. Writes later touch only the pages they change.
	if err := db.Close(); err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	}
	if c.db, err = openBolt(path, opts.LockTimeout); err != nil {
		return nil, err
	}
	c.log.Info("agent cache opened", "paths", len(c.paths), "entries", c.entries,
		"dropped", c.dropped, "watermark", c.watermark, "took", time.Since(start))
	return c, nil
}

func corrupt(file string, err error) error {
	return fmt.Errorf("%w: %s: %v; remove the file and restart the agent, which re-syncs from scratch", ErrCorrupt, file, err)
}

// openBolt opens the bbolt file, turning bbolt's errors and panics on a
// damaged file into ErrCorrupt. bbolt can panic inside Open (reading a
// damaged freelist) after it has opened and locked the file; the OpenFile
// hook keeps the file so it can be closed, releasing the lock. The memory
// mapping of such a file stays until the process exits.
func openBolt(path string, timeout time.Duration) (db *bbolt.DB, err error) {
	var f *os.File
	defer func() {
		if r := recover(); r != nil {
			if f != nil {
				releaseFile(f)
			}
			db, err = nil, corrupt(path, fmt.Errorf("bbolt: %v", r))
		}
	}()
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:      timeout,
		FreelistType: bbolt.FreelistMapType,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			var err error
			f, err = os.OpenFile(name, flag, perm)
			return f, err
		},
	})
	if err == nil {
		return db, nil
	}
	var pe *fs.PathError
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("cache: open %s: file is locked by another process: %w", path, err)
	case errors.As(err, &pe):
		return nil, fmt.Errorf("cache: open %s: %w", path, pe.Err)
	}
	return nil, corrupt(path, err)
}

// drop is a record found invalid at Open.
type drop struct {
	bucket, key []byte
	term        [32]byte
}

// load reads and authenticates the whole file in one write transaction,
// deleting what fails. A panic of bbolt on a damaged page becomes ErrCorrupt.
func (c *Cache) load(kp KeyProtector) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = corrupt(c.file, fmt.Errorf("bbolt: %v", r))
		}
	}()
	err = c.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			for _, b := range [][]byte{bucketState, bucketPaths, bucketVersions} {
				if bytes.Equal(name, b) {
					return nil
				}
			}
			return fmt.Errorf("cache: open %s: unexpected bucket %q: not an agent cache file", c.file, name)
		}); err != nil {
			return err
		}
		sb, err := tx.CreateBucketIfNotExists(bucketState)
		if err != nil {
			return err
		}
		pb, err := tx.CreateBucketIfNotExists(bucketPaths)
		if err != nil {
			return err
		}
		vb, err := tx.CreateBucketIfNotExists(bucketVersions)
		if err != nil {
			return err
		}
		if z := sb.Get(keyZone); z != nil && string(z) != c.zone {
			return fmt.Errorf("%w: %s belongs to zone %q, not %q", ErrZoneMismatch, c.file, z, c.zone)
		}
		if err := sb.Put(keyZone, []byte(c.zone)); err != nil {
			return err
		}
		fresh, err := c.initKeys(sb, kp)
		if err != nil {
			return err
		}
		return c.loadRecords(sb, pb, vb, fresh)
	})
	if err != nil && !errors.Is(err, ErrKeyMismatch) && !errors.Is(err, ErrZoneMismatch) && !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("cache: open %s: %w", c.file, err)
	}
	return err
}

// initKeys unwraps the stored cache key, or creates one for a new file, and
// derives the record and digest keys from it.
func (c *Cache) initKeys(sb *bbolt.Bucket, kp KeyProtector) (fresh bool, err error) {
	var key []byte
	if blob := sb.Get(keyWrapped); blob != nil {
		if key, err = kp.Unwrap(bytes.Clone(blob)); err != nil {
			return false, fmt.Errorf("%w stored in %s (%w): the file was made under another key or its key record was altered; remove it to re-sync from scratch", ErrKeyMismatch, c.file, err)
		}
		if len(key) != KeySize {
			clear(key)
			return false, fmt.Errorf("%w stored in %s: unwrapped key is %d bytes, want %d", ErrKeyMismatch, c.file, len(key), KeySize)
		}
	} else {
		fresh = true
		key = make([]byte, KeySize)
		_, _ = rand.Read(key)
		blob, err := kp.Wrap(key)
		if err != nil {
			clear(key)
			return false, fmt.Errorf("wrapping a new cache key: %w", err)
		}
		if err := sb.Put(keyWrapped, blob); err != nil {
			clear(key)
			return false, err
		}
	}
	defer clear(key)
	encKey, err := hkdf.Key(sha256.New, key, nil, "edgevault agent cache: records", KeySize)
	if err != nil {
		return false, err
	}
	defer clear(encKey)
	macKey, err := hkdf.Key(sha256.New, key, nil, "edgevault agent cache: set digest", KeySize)
	if err != nil {
		return false, err
	}
	defer clear(macKey)
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return false, err
	}
	if c.aead, err = cipher.NewGCM(block); err != nil {
		return false, err
	}
	c.terms = newTermer(macKey)
	return fresh, nil
}

// loadRecords authenticates the state and every record, builds the index,
// deletes what failed and rewrites the state record.
func (c *Cache) loadRecords(sb, pb, vb *bbolt.Bucket, fresh bool) error {
	trusted := true
	var st stateRec
	var ad []byte
	if env := sb.Get(keyState); env != nil {
		ad = appendAD(ad[:0], kindState, c.zone, "", 0)
		pt, err := open(c.aead, ad, env)
		if err == nil {
			st, err = decodeState(pt)
		}
		if err != nil {
			c.log.Error("agent cache: state record failed authentication; watermark reset for a full resync", "error", err)
			trusted = false
			c.dropped++
		}
	} else if !fresh {
		c.log.Error("agent cache: state record missing; watermark reset for a full resync")
		trusted = false
	}

	var disk setDigest
	var drops []drop
	dropRec := func(bucket, k []byte, t [32]byte, path string, err error) {
		drops = append(drops, drop{bucket: bucket, key: bytes.Clone(k), term: t})
		if path != "" {
			c.tampered[path] = struct{}{}
		}
		c.log.Warn("agent cache: dropping record that failed authentication",
			"bucket", string(bucket), "key", fmt.Sprintf("%q", k), "error", err)
	}

	err := pb.ForEach(func(k, v []byte) error {
		t := c.terms.term(bucketPaths, k, v)
		disk.add(t)
		path := string(k)
		if err := checkPath(path); err != nil {
			dropRec(bucketPaths, k, t, "", fmt.Errorf("%w: %v", errMalformed, err))
			return nil
		}
		ad = appendAD(ad[:0], kindPath, c.zone, path, 0)
		pt, err := open(c.aead, ad, v)
		var rec pathRec
		if err == nil {
			rec, err = decodePath(pt)
		}
		if err != nil {
			dropRec(bucketPaths, k, t, path, err)
			return nil
		}
		c.paths[path] = &pathEntry{rec: rec}
		return nil
	})
	if err != nil {
		return err
	}
	err = vb.ForEach(func(k, v []byte) error {
		t := c.terms.term(bucketVersions, k, v)
		disk.add(t)
		path, version, err := parseVersionKey(k)
		if err != nil {
			dropRec(bucketVersions, k, t, "", err)
			return nil
		}
		ad = appendAD(ad[:0], kindVersion, c.zone, path, version)
		pt, err := open(c.aead, ad, v)
		var rec versionRec
		if err == nil {
			rec, err = decodeVersion(pt)
		}
		if err != nil {
			dropRec(bucketVersions, k, t, path, err)
			return nil
		}
		pe := c.paths[path]
		if pe == nil {
			if _, ok := c.tampered[path]; !ok {
				dropRec(bucketVersions, k, t, path, errors.New("version without a path record"))
			} else {
				drops = append(drops, drop{bucket: bucketVersions, key: bytes.Clone(k), term: t})
			}
			return nil
		}
		// Keys are sorted by path then big-endian version: appends stay ascending.
		pe.versions = append(pe.versions, verEntry{version: version, versionRec: rec.inMemory()})
		return nil
	})
	if err != nil {
		return err
	}

	if disk != st.digest || len(drops) > 0 {
		if trusted {
			c.log.Error("agent cache: records were added, removed or replaced on disk; keeping the authentic entries only within their own max_stale and resetting the watermark for a full resync",
				"dropped", len(drops))
		}
		trusted = false
	}
	for _, d := range drops {
		b := pb
		if bytes.Equal(d.bucket, bucketVersions) {
			b = vb
		}
		if err := b.Delete(d.key); err != nil {
			return err
		}
		disk.sub(d.term)
		c.dropped++
	}
	if !trusted {
		st.watermark, st.syncedAt = 0, 0
	}
	st.digest = disk
	if err := sb.Put(keyState, seal(c.aead, appendAD(ad[:0], kindState, c.zone, "", 0), st.encode())); err != nil {
		return err
	}
	c.state = st
	c.watermark, c.syncedAt = st.watermark, st.syncedAt
	for _, pe := range c.paths {
		n, b := pe.size()
		c.entries += n
		c.bytes += b
	}
	return nil
}

// checkPath validates a secret path: 1 to MaxPathLen bytes of UTF-8 without NUL.
func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("path is empty")
	case len(p) > MaxPathLen:
		return fmt.Errorf("path is %d bytes, at most %d allowed", len(p), MaxPathLen)
	case !utf8.ValidString(p):
		return errors.New("path is not valid UTF-8")
	case bytes.IndexByte([]byte(p), 0) >= 0:
		return errors.New("path contains a NUL byte")
	}
	return nil
}

// age returns how long past its last sync an entry is, and whether that is
// within max_stale.
func (c *Cache) age(rec *pathRec, cacheSynced int64) (synced int64, age time.Duration, ok bool) {
	synced = max(rec.syncedAt, cacheSynced)
	age = time.Duration(c.clock().UnixNano() - synced)
	if age < 0 {
		age = 0
	}
	return synced, age, age <= time.Duration(rec.maxStale)
}

func unixTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Get returns a cached version of path; version 0 means the current one.
// It reads memory only, but for versions kept on disk (Op.OnDisk). Errors: ErrNotCached, ErrTooStale (the entry exists
// but Clock() is more than its max_stale past SyncedAt), ErrTampered,
// ErrClosed. Deleted and destroyed versions are returned (see Entry).
func (c *Cache) Get(path string, version int) (Entry, error) {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return Entry{}, ErrClosed
	}
	pe := c.paths[path]
	cacheSynced := c.syncedAt
	c.mu.RUnlock()

	if pe == nil || version < 0 || version > maxVersion {
		return Entry{}, c.missing(path, version)
	}
	v := uint64(version)
	if v == 0 {
		v = pe.rec.current
	}
	i, ok := pe.find(v)
	if !ok {
		return Entry{}, c.missing(path, int(v))
	}
	synced, age, fresh := c.age(&pe.rec, cacheSynced)
	if !fresh {
		return Entry{}, fmt.Errorf("cache: %q version %d: synced %v ago, max_stale %v: %w",
			path, v, age.Round(time.Second), time.Duration(pe.rec.maxStale), ErrTooStale)
	}
	ve := &pe.versions[i]
	data, meta := ve.data, ve.meta
	if ve.onDisk {
		var err error
		if data, meta, err = c.readOnDisk(path, v); err != nil {
			return Entry{}, err
		}
	}
	return Entry{
		Path:         path,
		Version:      int(v),
		Data:         data,
		Metadata:     meta,
		Destroyed:    ve.destroyed,
		DeletionTime: unixTime(ve.deletion),
		MaxStale:     time.Duration(pe.rec.maxStale),
		SyncedAt:     time.Unix(0, synced),
		Age:          age,
	}, nil
}

// readOnDisk reads back a version kept out of the memory index. A record
// that no longer authenticates is ErrTampered (and stays unserved).
func (c *Cache) readOnDisk(path string, v uint64) (data, meta []byte, err error) {
	c.wmu.Lock() // Release may swap the file handle
	defer c.wmu.Unlock()
	if c.isClosed() {
		return nil, nil, ErrClosed
	}
	err = c.db.View(func(tx *bbolt.Tx) error {
		vb := tx.Bucket(bucketVersions)
		if vb == nil {
			return fmt.Errorf("cache: %q version %d: %w", path, v, ErrNotCached)
		}
		env := vb.Get(versionKey(path, v))
		if env == nil {
			return fmt.Errorf("cache: %q version %d: %w", path, v, ErrNotCached)
		}
		pt, err := open(c.aead, appendAD(nil, kindVersion, c.zone, path, v), env)
		if err != nil {
			return fmt.Errorf("cache: %q version %d: %w", path, v, ErrTampered)
		}
		rec, err := decodeVersion(pt) // pt is a fresh buffer: the result outlives the transaction
		if err != nil {
			return fmt.Errorf("cache: %q version %d: %w: %v", path, v, ErrTampered, err)
		}
		data, meta = rec.data, rec.meta
		return nil
	})
	return data, meta, err
}

// missing returns ErrTampered for a path whose records were dropped at Open
// (and not written since), ErrNotCached otherwise.
func (c *Cache) missing(path string, version int) error {
	c.mu.RLock()
	_, tampered := c.tampered[path]
	c.mu.RUnlock()
	if tampered {
		return fmt.Errorf("cache: %q version %d: %w", path, version, ErrTampered)
	}
	return fmt.Errorf("cache: %q version %d: %w", path, version, ErrNotCached)
}

// Metadata returns what the cache holds about path. Errors: ErrNotCached,
// ErrTooStale, ErrTampered, ErrClosed.
func (c *Cache) Metadata(path string) (PathInfo, error) {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return PathInfo{}, ErrClosed
	}
	pe := c.paths[path]
	cacheSynced := c.syncedAt
	c.mu.RUnlock()
	if pe == nil {
		return PathInfo{}, c.missing(path, 0)
	}
	synced, age, fresh := c.age(&pe.rec, cacheSynced)
	if !fresh {
		return PathInfo{}, fmt.Errorf("cache: %q: synced %v ago, max_stale %v: %w",
			path, age.Round(time.Second), time.Duration(pe.rec.maxStale), ErrTooStale)
	}
	info := PathInfo{
		Path:           path,
		CurrentVersion: int(pe.rec.current),
		Versions:       make([]VersionInfo, len(pe.versions)),
		MaxStale:       time.Duration(pe.rec.maxStale),
		SyncedAt:       time.Unix(0, synced),
		Age:            age,
	}
	for i := range pe.versions {
		ve := &pe.versions[i]
		info.Versions[i] = VersionInfo{Version: int(ve.version), Metadata: ve.meta,
			Destroyed: ve.destroyed, DeletionTime: unixTime(ve.deletion)}
	}
	return info, nil
}

// Watermark returns the sequence number of the last applied batch (0 for a
// cache that needs a full sync). The agent resumes its stream from it.
func (c *Cache) Watermark() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.watermark
}

// Stats returns counters describing the cache.
func (c *Cache) Stats() Stats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return Stats{
		Paths:     len(c.paths),
		Entries:   c.entries,
		Bytes:     c.bytes,
		Dropped:   c.dropped,
		Watermark: c.watermark,
		SyncedAt:  unixTime(c.syncedAt),
	}
}

// Release gives back the memory the file's mapping holds: the pages writes
// read through it. On Linux every write already drops them when it commits
// (madvise), and Release does so again; elsewhere it closes and reopens the
// bbolt file between writes. Reads never touch the file and go on.
func (c *Cache) Release() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() {
		return ErrClosed
	}
	// The file's high-water mark now: a commit may have grown it past the
	// size its transaction saw, and reads since may have touched the pages.
	var size int64
	_ = c.db.View(func(tx *bbolt.Tx) error { size = tx.Size(); return nil })
	if dropMappedPages(c.db, max(c.mapped, size)) {
		c.mapped = size
		return nil
	}
	if err := c.db.Close(); err != nil {
		return fmt.Errorf("cache: release %s: %w", c.file, err)
	}
	db, err := openBolt(c.file, time.Second)
	if err != nil {
		return err
	}
	c.db, c.mapped = db, 0
	return nil
}

// Close waits for a write in progress, releases the memory index and closes
// the file. Every method called afterwards returns ErrClosed, except Stats
// and Watermark, which keep answering (with Paths 0). Calling Close again
// returns nil.
func (c *Cache) Close() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.paths, c.tampered = nil, nil
	c.mu.Unlock()
	if err := c.db.Close(); err != nil {
		return fmt.Errorf("cache: close %s: %w", c.file, err)
	}
	return nil
}

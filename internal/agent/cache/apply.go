package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// OpKind says what an Op does.
type OpKind uint8

// Op kinds. The zero value is invalid.
const (
	// OpUpsert stores version Version of Path with Data and Metadata, sets
	// the path's max_stale to MaxStale and its synced_at to now. The
	// current version becomes max(current, Version).
	OpUpsert OpKind = iota + 1
	// OpDelete removes Path and all its versions.
	OpDelete
	// OpDeleteVersion removes version Version of Path; the current-version
	// pointer is unchanged.
	OpDeleteVersion
	// OpSetMaxStale sets the max_stale of a cached Path to MaxStale (and
	// its synced_at to now); it does nothing for a path not cached.
	OpSetMaxStale
	// OpPurgePrefix removes every path starting with Path ("" removes
	// everything): what a revocation does.
	OpPurgePrefix
)

// String returns the kind's name.
func (k OpKind) String() string {
	switch k {
	case OpUpsert:
		return "upsert"
	case OpDelete:
		return "delete"
	case OpDeleteVersion:
		return "delete-version"
	case OpSetMaxStale:
		return "set-max-stale"
	case OpPurgePrefix:
		return "purge-prefix"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op is one change applied by Apply. Fields not used by Kind must be zero
// values or are ignored.
type Op struct {
	Kind OpKind
	// Path is the secret path (OpPurgePrefix: the prefix).
	Path string
	// Version, 1 or more, for OpUpsert and OpDeleteVersion.
	Version int
	// Data is the version's "data" JSON (any JSON value; null for a
	// destroyed version) and Metadata its metadata JSON object
	// (created_time, deletion_time, destroyed, custom_metadata, version),
	// for OpUpsert.
	Data     json.RawMessage
	Metadata json.RawMessage
	// MaxStale, positive, for OpUpsert and OpSetMaxStale.
	MaxStale time.Duration
	// OnDisk, for OpUpsert, keeps the version out of the memory index: Get
	// reads it back from the file (a few µs instead of a memory read). For
	// what is read rarely, such as metadata, to keep the agent small.
	OnDisk bool
}

// versionMetadata is the part of Op.Metadata the cache checks and indexes.
type versionMetadata struct {
	CreatedTime    string            `json:"created_time"`
	DeletionTime   string            `json:"deletion_time"`
	Destroyed      bool              `json:"destroyed"`
	CustomMetadata map[string]string `json:"custom_metadata"`
	Version        *int              `json:"version"`
}

// check validates op and, for an upsert, returns the record to store.
func (op *Op) check() (versionRec, error) {
	if op.Kind == OpPurgePrefix {
		if strings.IndexByte(op.Path, 0) >= 0 || len(op.Path) > MaxPathLen {
			return versionRec{}, errors.New("bad prefix")
		}
		return versionRec{}, nil
	}
	if op.Kind < OpUpsert || op.Kind > OpPurgePrefix {
		return versionRec{}, fmt.Errorf("unknown kind %d", op.Kind)
	}
	if err := checkPath(op.Path); err != nil {
		return versionRec{}, err
	}
	if (op.Kind == OpUpsert || op.Kind == OpDeleteVersion) && (op.Version < 1 || op.Version > maxVersion) {
		return versionRec{}, fmt.Errorf("version %d out of range 1..%d", op.Version, maxVersion)
	}
	if (op.Kind == OpUpsert || op.Kind == OpSetMaxStale) && op.MaxStale <= 0 {
		return versionRec{}, fmt.Errorf("max_stale must be positive, got %v", op.MaxStale)
	}
	if op.Kind != OpUpsert {
		return versionRec{}, nil
	}
	if len(op.Data) > MaxValueLen || len(op.Metadata) > MaxValueLen {
		return versionRec{}, fmt.Errorf("data or metadata larger than %d bytes", MaxValueLen)
	}
	if !json.Valid(op.Data) {
		return versionRec{}, errors.New("data is not valid JSON")
	}
	var m versionMetadata
	dec := json.NewDecoder(bytes.NewReader(op.Metadata))
	if t := bytes.TrimLeft(op.Metadata, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return versionRec{}, errors.New("metadata is not a JSON object")
	}
	if err := dec.Decode(&m); err != nil {
		return versionRec{}, fmt.Errorf("metadata: %w", err)
	}
	if dec.More() {
		return versionRec{}, errors.New("metadata: trailing data")
	}
	if m.Version != nil && *m.Version != op.Version {
		return versionRec{}, fmt.Errorf("metadata.version is %d, op version is %d", *m.Version, op.Version)
	}
	rec := versionRec{destroyed: m.Destroyed}
	if m.DeletionTime != "" {
		t, err := time.Parse(time.RFC3339Nano, m.DeletionTime)
		if err != nil {
			return versionRec{}, fmt.Errorf("metadata.deletion_time: %w", err)
		}
		rec.deletion = t.UnixNano()
		if rec.deletion == 0 {
			rec.deletion = 1 // the epoch itself still means "deleted"
		}
	}
	if m.CreatedTime != "" {
		if _, err := time.Parse(time.RFC3339Nano, m.CreatedTime); err != nil {
			return versionRec{}, fmt.Errorf("metadata.created_time: %w", err)
		}
	}
	rec.data, rec.meta = op.Data, op.Metadata
	return rec, nil
}

// batch is one Apply or Reset in progress: the bbolt transaction and the
// in-memory changes to publish once it has committed.
type batch struct {
	c        *Cache
	paths    *bbolt.Bucket
	versions *bbolt.Bucket
	digest   setDigest
	now      int64
	ad       []byte
	changed  map[string]*pathEntry // nil value: path deleted
}

// lookup returns the path's state as this batch sees it.
func (b *batch) lookup(path string) *pathEntry {
	if pe, ok := b.changed[path]; ok {
		return pe
	}
	return b.c.paths[path]
}

func (b *batch) put(bk *bbolt.Bucket, name, key, val []byte) error {
	if old := bk.Get(key); old != nil {
		b.digest.sub(b.c.terms.term(name, key, old))
	}
	b.digest.add(b.c.terms.term(name, key, val))
	return bk.Put(key, val)
}

func (b *batch) del(bk *bbolt.Bucket, name, key []byte) error {
	old := bk.Get(key)
	if old == nil {
		return nil
	}
	b.digest.sub(b.c.terms.term(name, key, old))
	return bk.Delete(key)
}

func (b *batch) putPath(path string, rec *pathRec) error {
	b.ad = appendAD(b.ad[:0], kindPath, b.c.zone, path, 0)
	return b.put(b.paths, bucketPaths, []byte(path), seal(b.c.aead, b.ad, rec.encode()))
}

func (b *batch) upsert(op *Op, rec versionRec) error {
	v := uint64(op.Version)
	ne := &pathEntry{}
	if pe := b.lookup(op.Path); pe != nil {
		ne.rec = pe.rec
		ne.versions = slices.Clone(pe.versions)
	}
	ne.rec.current = max(ne.rec.current, v)
	ne.rec.maxStale = int64(op.MaxStale)
	ne.rec.syncedAt = b.now

	// The in-memory entry aliases one fresh plaintext buffer, never the caller's slices.
	rec.onDisk = op.OnDisk
	pt := rec.encode()
	rec, err := decodeVersion(pt)
	if err != nil {
		return err // not reachable: encode and decode are inverses
	}
	b.ad = appendAD(b.ad[:0], kindVersion, b.c.zone, op.Path, v)
	if err := b.put(b.versions, bucketVersions, versionKey(op.Path, v), seal(b.c.aead, b.ad, pt)); err != nil {
		return err
	}
	rec = rec.inMemory()
	if i, ok := ne.find(v); ok {
		ne.versions[i].versionRec = rec
	} else {
		ne.versions = slices.Insert(ne.versions, i, verEntry{version: v, versionRec: rec})
	}
	b.changed[op.Path] = ne
	return b.putPath(op.Path, &ne.rec)
}

func (b *batch) deletePath(path string) error {
	pe := b.lookup(path)
	if pe == nil {
		return nil
	}
	for _, ve := range pe.versions {
		if err := b.del(b.versions, bucketVersions, versionKey(path, ve.version)); err != nil {
			return err
		}
	}
	b.changed[path] = nil
	return b.del(b.paths, bucketPaths, []byte(path))
}

func (b *batch) deleteVersion(path string, v uint64) error {
	pe := b.lookup(path)
	if pe == nil {
		return nil
	}
	i, ok := pe.find(v)
	if !ok {
		return nil
	}
	b.changed[path] = &pathEntry{rec: pe.rec, versions: slices.Delete(slices.Clone(pe.versions), i, i+1)}
	return b.del(b.versions, bucketVersions, versionKey(path, v))
}

func (b *batch) setMaxStale(path string, d time.Duration) error {
	pe := b.lookup(path)
	if pe == nil {
		return nil
	}
	ne := &pathEntry{rec: pe.rec, versions: pe.versions}
	ne.rec.maxStale = int64(d)
	ne.rec.syncedAt = b.now
	b.changed[path] = ne
	return b.putPath(path, &ne.rec)
}

func (b *batch) purge(prefix string) error {
	var victims []string
	for p := range b.c.paths {
		if _, ok := b.changed[p]; !ok && strings.HasPrefix(p, prefix) {
			victims = append(victims, p)
		}
	}
	for p, pe := range b.changed {
		if pe != nil && strings.HasPrefix(p, prefix) {
			victims = append(victims, p)
		}
	}
	for _, p := range victims {
		if err := b.deletePath(p); err != nil {
			return err
		}
	}
	return nil
}

// Apply applies ops, in order, as one atomic and durable batch, and sets
// the watermark to seq in the same bbolt transaction: after a crash either
// all of the batch and its watermark are on disk, or none. Readers see the
// batch all at once, after it is durable.
//
// seq must be above the watermark; otherwise Apply changes nothing and
// returns ErrAlreadyApplied (a replay after a reconnect: ack and go on).
// Sequence gaps are allowed (events the cache does not store). A malformed
// op refuses the whole batch with ErrInvalidOp naming its index. An empty
// ops list only advances the watermark.
func (c *Cache) Apply(seq uint64, ops []Op) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() {
		return ErrClosed
	}
	if seq <= c.state.watermark {
		return fmt.Errorf("cache: apply seq %d: watermark is %d: %w", seq, c.state.watermark, ErrAlreadyApplied)
	}
	recs := make([]versionRec, len(ops))
	for i := range ops {
		rec, err := ops[i].check()
		if err != nil {
			return fmt.Errorf("cache: apply seq %d: op %d (%v %q): %w: %v", seq, i, ops[i].Kind, ops[i].Path, ErrInvalidOp, err)
		}
		recs[i] = rec
	}
	st := c.state
	st.watermark = seq
	b, err := c.update(&st, func(b *batch) error {
		for i := range ops {
			op := &ops[i]
			var err error
			switch op.Kind {
			case OpUpsert:
				err = b.upsert(op, recs[i])
			case OpDelete:
				err = b.deletePath(op.Path)
			case OpDeleteVersion:
				err = b.deleteVersion(op.Path, uint64(op.Version))
			case OpSetMaxStale:
				err = b.setMaxStale(op.Path, op.MaxStale)
			case OpPurgePrefix:
				err = b.purge(op.Path)
			}
			if err == nil && c.testHookOp != nil {
				err = c.testHookOp(i)
			}
			if err != nil {
				return fmt.Errorf("op %d (%v %q): %w", i, op.Kind, op.Path, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache: apply seq %d: %w", seq, err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for p, pe := range b.changed {
		n, sz := c.paths[p].size()
		c.entries -= n
		c.bytes -= sz
		if pe == nil {
			delete(c.paths, p)
		} else {
			c.paths[p] = pe
			n, sz = pe.size()
			c.entries += n
			c.bytes += sz
		}
		delete(c.tampered, p)
	}
	for _, op := range ops {
		if op.Kind == OpPurgePrefix {
			for p := range c.tampered {
				if strings.HasPrefix(p, op.Path) {
					delete(c.tampered, p)
				}
			}
		}
	}
	c.watermark = seq
	return nil
}

// fillPercent is how full bbolt fills the pages it splits (default 0.5).
// Cache records are large (about 1.2 KiB for a 1 KiB secret) and mostly
// replaced in place, so denser pages mean fewer pages to read at Open.
const fillPercent = 0.9

// update runs fn in a bbolt write transaction, then writes st (with the
// batch's digest) in the same transaction, and commits. On success it
// records st as the committed state; the caller publishes b.changed.
// Called with wmu held.
func (c *Cache) update(st *stateRec, fn func(*batch) error) (_ *batch, err error) {
	defer func() {
		if r := recover(); r != nil { // bbolt panics on a damaged page
			err = corrupt(c.file, fmt.Errorf("bbolt: %v", r))
		}
	}()
	b := &batch{c: c, digest: c.state.digest, now: c.clock().UnixNano(), changed: map[string]*pathEntry{}}
	var size int64
	err = c.db.Update(func(tx *bbolt.Tx) error {
		defer func() { size = tx.Size() }()
		b.paths, b.versions = tx.Bucket(bucketPaths), tx.Bucket(bucketVersions)
		sb := tx.Bucket(bucketState)
		if b.paths == nil || b.versions == nil || sb == nil {
			return fmt.Errorf("%s: buckets missing", c.file)
		}
		b.paths.FillPercent, b.versions.FillPercent = fillPercent, fillPercent
		if err := fn(b); err != nil {
			return err
		}
		st.digest = b.digest
		b.ad = appendAD(b.ad[:0], kindState, c.zone, "", 0)
		return sb.Put(keyState, seal(c.aead, b.ad, st.encode()))
	})
	c.unmap(size)
	if err != nil {
		return nil, err
	}
	c.state = *st
	return b, nil
}

// unmap drops the pages of the file's mapping that a transaction touched
// (it read its B+tree path and old values through the mapping) from the
// resident set, so a long sync does not leave a second copy of the file
// resident next to the index. size is the transaction's high-water mark.
// Called with wmu held; a no-op where the platform cannot do it (Release
// then reopens the file).
func (c *Cache) unmap(size int64) {
	if size == 0 {
		return // the transaction did not start (the file is not open)
	}
	c.mapped = max(c.mapped, size)
	if !dropMappedPages(c.db, c.mapped) {
		return
	}
	c.mapped = size
}

// MarkSynced records, durably, that the cache was known to be current with
// the server at t (the agent calls it on a heartbeat once caught up). Every
// entry's age is then measured from t or its own last write, whichever is
// later. A t not after the last mark changes nothing, and neither does a
// mark while the watermark is 0: until a sync has applied something since
// Open distrusted the cache or Reset emptied it, nothing may be refreshed. Each call commits (two
// fsyncs): call it at heartbeat rate, not per request.
func (c *Cache) MarkSynced(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() {
		return ErrClosed
	}
	n := t.UnixNano()
	if n <= c.state.syncedAt || c.state.watermark == 0 {
		return nil
	}
	st := c.state
	st.syncedAt = n
	if _, err := c.update(&st, func(*batch) error { return nil }); err != nil {
		return fmt.Errorf("cache: mark synced: %w", err)
	}
	c.mu.Lock()
	c.syncedAt = n
	c.mu.Unlock()
	return nil
}

// Reset drops every entry and sets the watermark and synced time to 0, in
// one transaction, for a full resync. The cache key is kept.
func (c *Cache) Reset() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() {
		return ErrClosed
	}
	var size int64
	err := c.db.Update(func(tx *bbolt.Tx) error {
		defer func() { size = tx.Size() }()
		for _, name := range [][]byte{bucketPaths, bucketVersions} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		st := stateRec{}
		return tx.Bucket(bucketState).Put(keyState,
			seal(c.aead, appendAD(nil, kindState, c.zone, "", 0), st.encode()))
	})
	c.unmap(size) // deleting the buckets read every page of them
	if err != nil {
		return fmt.Errorf("cache: reset: %w", err)
	}
	c.state = stateRec{}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log.Info("agent cache reset for a full resync", "paths", len(c.paths), "entries", c.entries)
	c.paths, c.tampered = map[string]*pathEntry{}, map[string]struct{}{}
	c.entries, c.bytes, c.watermark, c.syncedAt = 0, 0, 0, 0
	return nil
}

func (c *Cache) isClosed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.closed
}

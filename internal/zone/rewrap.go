package zone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
)

// rewrapBatch is how many records the rewrap worker re-encrypts per
// storage transaction; the checkpoint is written in the same transaction.
const rewrapBatch = 64

// RewrapProgress describes a zone's background rewrap.
type RewrapProgress struct {
	// Running is true while a Rewrap call is working on the zone.
	Running bool `json:"running"`
	// Target is the data key version records are being moved to.
	Target uint32 `json:"target,omitempty"`
	// Rewrapped counts records re-encrypted for Target so far, across
	// restarts (it is part of the checkpoint, written atomically with
	// each batch).
	Rewrapped uint64 `json:"rewrapped"`
	// Started is when the rewrap towards Target began.
	Started time.Time `json:"started,omitzero"`
}

// VersionStatus is one data key version and how many records use it.
type VersionStatus struct {
	Version uint32    `json:"version"`
	Created time.Time `json:"created,omitzero"` // zero for a version the zone no longer holds
	Records uint64    `json:"records"`
}

// KeyStatus is a zone's key state, as sys/zones/:name/key-status shows it.
type KeyStatus struct {
	Zone          string          `json:"zone"`
	KEKVersion    uint32          `json:"kek_version"`
	ActiveVersion uint32          `json:"active_version"`
	Versions      []VersionStatus `json:"versions"`
	// Records is the number of records in the zone; Remaining those not
	// under ActiveVersion (what a rewrap still has to do); Malformed those
	// whose envelope cannot be parsed.
	Records   uint64         `json:"records"`
	Remaining uint64         `json:"remaining"`
	Malformed uint64         `json:"malformed"`
	Rewrap    RewrapProgress `json:"rewrap"`
}

// checkpoint is the persisted rewrap progress of one zone: every record at
// or before After (in key order) is under Target, unless written later
// with a newer version.
type checkpoint struct {
	Target    uint32    `json:"target"`
	After     string    `json:"after"`
	Rewrapped uint64    `json:"rewrapped"`
	Started   time.Time `json:"started"`
}

// Rotate adds a data key version to the zone and makes it active: new
// writes use it from now on. Older records keep their version until Rewrap
// moves them; call Rewrap (typically in a goroutine) after Rotate.
func (s *Store) Rotate(ctx context.Context, name string) (uint32, error) {
	zs, err := s.zone(name)
	if err != nil {
		return 0, fmt.Errorf("zone: rotate: %w", err)
	}
	zs.mu.Lock()
	defer zs.mu.Unlock()
	doc, err := zs.doc.addDataKey(zs.kek, s.now())
	if err != nil {
		return 0, fmt.Errorf("zone %q: rotate: %w", name, err)
	}
	if err := s.publish(ctx, zs, doc); err != nil {
		return 0, fmt.Errorf("zone %q: rotate: %w", name, err)
	}
	return doc.Active, nil
}

// RotateKEK replaces the zone's KEK with a new version and rewraps the data
// keys under it, in one write. Records are untouched.
func (s *Store) RotateKEK(ctx context.Context, name string) (uint32, error) {
	zs, err := s.zone(name)
	if err != nil {
		return 0, fmt.Errorf("zone: rotate KEK: %w", err)
	}
	zs.mu.Lock()
	defer zs.mu.Unlock()
	s.mu.RLock()
	root := s.root
	s.mu.RUnlock()
	v := zs.doc.KEKVersion + 1
	kek := newKey()
	defer clear(kek)
	wrapped, err := root.Wrap(kek, keyAAD(aadKEK, zs.name, v))
	if err != nil {
		return 0, fmt.Errorf("zone %q: rotate KEK: %w", name, err)
	}
	newKEK, err := newAEAD(kek)
	if err != nil {
		return 0, fmt.Errorf("zone %q: rotate KEK: %w", name, err)
	}
	doc, err := zs.doc.rewrapDataKeys(zs.kek, newKEK, v, wrapped)
	if err != nil {
		return 0, fmt.Errorf("zone %q: rotate KEK: %w", name, err)
	}
	b, err := doc.marshal()
	if err != nil {
		return 0, fmt.Errorf("zone %q: rotate KEK: %w", name, err)
	}
	if err := s.st.Put(ctx, keysPrefix+zs.id, b); err != nil {
		return 0, fmt.Errorf("zone %q: rotate KEK: %w", name, err)
	}
	zs.doc, zs.kek = doc, newKEK
	return v, nil
}

// publish stores doc and makes its keys the zone's snapshot. zs.mu is held.
func (s *Store) publish(ctx context.Context, zs *zoneState, doc keyDoc) error {
	ks, err := doc.keySet(zs.kek)
	if err != nil {
		return err
	}
	b, err := doc.marshal()
	if err != nil {
		return err
	}
	if err := s.st.Put(ctx, keysPrefix+zs.id, b); err != nil {
		return fmt.Errorf("storing keys: %w", err)
	}
	zs.doc = doc
	zs.keys.Store(ks)
	return nil
}

// StartRewrap runs Rewrap for the zone in a new goroutine, until it is done
// or ctx is canceled; a failure is logged (the checkpoint keeps the
// progress, and the server retries with another StartRewrap). WaitRewraps
// waits for every rewrap started this way.
func (s *Store) StartRewrap(ctx context.Context, name string) error {
	if _, err := s.zone(name); err != nil {
		return fmt.Errorf("zone: start rewrap: %w", err)
	}
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		if err := s.Rewrap(ctx, name); err != nil {
			s.log.Error("zone rewrap stopped", "zone", name, "err", err)
		}
	}()
	return nil
}

// WaitRewraps waits until every rewrap started by StartRewrap has returned.
// Cancel their context first to stop them early.
func (s *Store) WaitRewraps() { s.workers.Wait() }

// PendingRewraps returns the zones that still hold more than one data key
// version, sorted: the server runs Rewrap for each at start, which resumes
// an interrupted rewrap from its checkpoint.
func (s *Store) PendingRewraps() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for name, zs := range s.zones {
		if len(zs.keys.Load().keys) > 1 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Rewrap re-encrypts every record of the zone that is not under the active
// data key version, online, then destroys each version no record uses.
//
// Each record is rewrapped while holding its key's lock stripe, the lock
// writers take: the record is re-read, re-encrypted and written back, so a
// concurrent write is never replaced by stale data and a concurrent delete
// is never undone. Readers are not blocked. Records are rewritten
// rewrapBatch at a time, each batch in one transaction with the progress
// checkpoint; after a crash, calling Rewrap again resumes from
// the checkpoint. Every record is decryptable at every moment: a version is
// destroyed only after a full count finds no record under it, with writers
// quiesced so none can still write it.
//
// Rewrap returns when the zone holds only its active version, or on error
// (including ctx's). A record that does not decrypt stops the rewrap with an
// error wrapping ErrDecrypt (or ErrMalformed, ErrUnknownVersion); its
// version is kept. Only one Rewrap runs per zone; others wait.
func (s *Store) Rewrap(ctx context.Context, name string) error {
	zs, err := s.zone(name)
	if err != nil {
		return fmt.Errorf("zone: rewrap: %w", err)
	}
	zs.rewrapMu.Lock()
	defer zs.rewrapMu.Unlock()
	defer func() {
		if p := zs.progress.Load(); p != nil {
			q := *p
			q.Running = false
			zs.progress.Store(&q)
		}
	}()
	raw := storage.NewView(s.st, dataPrefix+zs.id+"/")
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("zone %q: rewrap: %w", name, err)
		}
		ks := zs.keys.Load()
		if len(ks.keys) == 1 {
			if err := s.st.Delete(ctx, jobPrefix+zs.id); err != nil {
				return fmt.Errorf("zone %q: rewrap: clearing checkpoint: %w", name, err)
			}
			return nil
		}
		cp, err := s.loadCheckpoint(ctx, zs)
		if err != nil {
			return fmt.Errorf("zone %q: rewrap: %w", name, err)
		}
		if cp.Target != ks.active {
			cp = checkpoint{Target: ks.active, Started: s.now().UTC()}
		}
		if err := s.rewrapPass(ctx, zs, raw, &cp); err != nil {
			return fmt.Errorf("zone %q: rewrap: %w", name, err)
		}
		remaining, err := s.destroyUnused(ctx, zs, raw)
		if err != nil {
			return fmt.Errorf("zone %q: rewrap: %w", name, err)
		}
		if remaining > 0 {
			// Records written with an older version while the pass ran
			// (or a newer rotation): go round again from the start.
			cp.After = ""
			if err := s.saveCheckpoint(ctx, zs, cp); err != nil {
				return fmt.Errorf("zone %q: rewrap: %w", name, err)
			}
		}
		s.log.Info("zone rewrap pass done", "zone", name, "target", cp.Target, "rewrapped", cp.Rewrapped, "remaining", remaining)
	}
}

// rewrapPass walks the records after cp.After and rewraps the stale ones,
// rewrapBatch records per transaction.
func (s *Store) rewrapPass(ctx context.Context, zs *zoneState, raw *storage.View, cp *checkpoint) error {
	zs.progress.Store(&RewrapProgress{Running: true, Target: cp.Target, Rewrapped: cp.Rewrapped, Started: cp.Started})
	batch := make([]string, 0, rewrapBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.rewrapBatch(ctx, zs, raw, batch, cp)
		batch = batch[:0]
		return err
	}
	err := walk(ctx, raw, cp.After, func(key string, _ []byte) error {
		batch = append(batch, key)
		if len(batch) == rewrapBatch {
			return flush()
		}
		return nil
	}, false)
	if err != nil {
		return err
	}
	return flush()
}

// rewrapBatch moves a batch of records to the active version. It holds the
// lock stripes of every key in the batch, the locks writers take, while it
// re-reads, re-encrypts and writes them back, together with the advanced
// checkpoint, in one transaction: a concurrent write is never replaced by
// stale data, a concurrent delete never undone, and the checkpoint is
// exact even after a crash.
func (s *Store) rewrapBatch(ctx context.Context, zs *zoneState, raw *storage.View, batch []string, cp *checkpoint) error {
	idx := make([]int, 0, len(batch))
	for _, k := range batch {
		idx = append(idx, zs.stripeIndex(k))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		zs.stripes[i].Lock()
	}
	defer func() {
		for _, i := range idx {
			zs.stripes[i].Unlock()
		}
	}()
	ks := zs.keys.Load()
	active := ks.keys[ks.active]
	ops := make([]storage.Op, 0, len(batch)+1)
	for _, key := range batch {
		env, err := raw.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("record %q: %w", key, err)
		}
		pt, v, err := ks.openRecord(zs.name, key, env)
		if err != nil {
			return fmt.Errorf("record %q: %w", key, err)
		}
		if v != ks.active {
			ops = append(ops, storage.Op{Kind: storage.OpPut, Key: raw.Prefix() + key,
				Value: sealRecord(active.aead, ks.active, zs.name, key, pt)})
		}
		clear(pt)
	}
	next := *cp
	next.After = batch[len(batch)-1]
	next.Rewrapped += uint64(len(ops))
	b, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("encoding checkpoint: %w", err)
	}
	ops = append(ops, storage.Op{Kind: storage.OpPut, Key: jobPrefix + zs.id, Value: b})
	if err := s.st.Txn(ctx, ops); err != nil {
		return fmt.Errorf("rewrapping %d records: %w", len(ops)-1, err)
	}
	*cp = next
	zs.progress.Store(&RewrapProgress{Running: true, Target: cp.Target, Rewrapped: cp.Rewrapped, Started: cp.Started})
	return nil
}

// destroyUnused counts records per version and destroys every version
// other than the active one that no record uses. It returns how many
// records are still not under the active version.
//
// zs.mu is held throughout, so no Rotate publishes a new snapshot; cycling
// every lock stripe first waits out writers that loaded an older snapshot
// (writers load it under their stripe). After that, records under a
// non-active version can only disappear, so a zero count stays zero.
func (s *Store) destroyUnused(ctx context.Context, zs *zoneState, raw *storage.View) (uint64, error) {
	zs.mu.Lock()
	defer zs.mu.Unlock()
	for i := range zs.stripes {
		zs.stripes[i].Lock()
		zs.stripes[i].Unlock() //nolint:staticcheck // an empty critical section is the point
	}
	counts, _, err := countVersions(ctx, raw)
	if err != nil {
		return 0, err
	}
	ks := zs.keys.Load()
	drop := map[uint32]bool{}
	var remaining uint64
	for v := range ks.keys {
		if v == ks.active {
			continue
		}
		if counts[v] == 0 {
			drop[v] = true
		}
		remaining += counts[v]
	}
	if len(drop) > 0 {
		if err := s.publish(ctx, zs, zs.doc.withoutVersions(drop)); err != nil {
			return 0, fmt.Errorf("destroying versions: %w", err)
		}
		for v := range drop {
			s.log.Info("zone data key version destroyed", "zone", zs.name, "version", v)
		}
	}
	return remaining, nil
}

func (s *Store) loadCheckpoint(ctx context.Context, zs *zoneState) (checkpoint, error) {
	var cp checkpoint
	b, err := s.st.Get(ctx, jobPrefix+zs.id)
	if errors.Is(err, storage.ErrNotFound) {
		return cp, nil
	}
	if err != nil {
		return cp, fmt.Errorf("reading checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		// A corrupt checkpoint only costs a restart from the beginning.
		s.log.Warn("zone rewrap checkpoint unreadable, starting over", "zone", zs.name)
		return checkpoint{}, nil
	}
	return cp, nil
}

func (s *Store) saveCheckpoint(ctx context.Context, zs *zoneState, cp checkpoint) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("encoding checkpoint: %w", err)
	}
	if err := s.st.Put(ctx, jobPrefix+zs.id, b); err != nil {
		return fmt.Errorf("storing checkpoint: %w", err)
	}
	return nil
}

// countVersions counts records per envelope version, and malformed ones.
func countVersions(ctx context.Context, raw *storage.View) (map[uint32]uint64, uint64, error) {
	counts := map[uint32]uint64{}
	var malformed uint64
	err := walk(ctx, raw, "", func(_ string, env []byte) error {
		v, err := ParseEnvelope(env)
		if err != nil {
			malformed++
			return nil
		}
		counts[v]++
		return nil
	}, true)
	return counts, malformed, err
}

// walk calls fn for every key in raw greater than after, in key order.
// With values, fn also gets the stored value (missing keys, deleted during
// the walk, are skipped). Subtrees entirely at or before after are skipped
// without listing them.
func walk(ctx context.Context, raw *storage.View, after string, fn func(key string, value []byte) error, values bool) error {
	var rec func(prefix string) error
	rec = func(prefix string) error {
		names, err := raw.List(ctx, prefix)
		if err != nil {
			return fmt.Errorf("listing records: %w", err)
		}
		for _, n := range names {
			if err := ctx.Err(); err != nil {
				return err
			}
			full := prefix + n
			if strings.HasSuffix(n, "/") {
				if after >= full && !strings.HasPrefix(after, full) {
					continue // the whole subtree sorts before after
				}
				if err := rec(full); err != nil {
					return err
				}
				continue
			}
			if full <= after {
				continue
			}
			var v []byte
			if values {
				v, err = raw.Get(ctx, full)
				if errors.Is(err, storage.ErrNotFound) {
					continue
				}
				if err != nil {
					return fmt.Errorf("reading record: %w", err)
				}
			}
			if err := fn(full, v); err != nil {
				return err
			}
		}
		return nil
	}
	return rec("")
}

// KeyStatus reports the zone's key versions, how many records use each
// (by a full scan of the envelopes' headers, no decryption), and the
// rewrap progress.
func (s *Store) KeyStatus(ctx context.Context, name string) (KeyStatus, error) {
	zs, err := s.zone(name)
	if err != nil {
		return KeyStatus{}, fmt.Errorf("zone: key status: %w", err)
	}
	raw := storage.NewView(s.st, dataPrefix+zs.id+"/")
	counts, malformed, err := countVersions(ctx, raw)
	if err != nil {
		return KeyStatus{}, fmt.Errorf("zone %q: key status: %w", name, err)
	}
	// Keys loaded after the count, so versions added during it are known.
	ks := zs.keys.Load()
	zs.mu.Lock()
	kekVersion := zs.doc.KEKVersion
	zs.mu.Unlock()
	st := KeyStatus{Zone: name, KEKVersion: kekVersion, ActiveVersion: ks.active, Malformed: malformed}
	for _, v := range ks.versions() {
		st.Versions = append(st.Versions, VersionStatus{Version: v, Created: ks.keys[v].created, Records: counts[v]})
	}
	for v, n := range counts {
		if _, ok := ks.keys[v]; !ok {
			st.Versions = append(st.Versions, VersionStatus{Version: v, Records: n})
		}
		st.Records += n
		if v != ks.active {
			st.Remaining += n
		}
	}
	st.Records += malformed
	slices.SortFunc(st.Versions, func(a, b VersionStatus) int { return int(int64(a.Version) - int64(b.Version)) })
	if p := zs.progress.Load(); p != nil {
		st.Rewrap = *p
	} else if cp, err := s.loadCheckpoint(ctx, zs); err == nil && cp.Target != 0 {
		st.Rewrap = RewrapProgress{Target: cp.Target, Rewrapped: cp.Rewrapped, Started: cp.Started}
	}
	return st, nil
}

// RewrapKEKs re-encrypts every zone's KEK from oldRoot to newRoot, in one
// transaction, and makes newRoot the Store's root. Data keys and records
// are not touched: rotating the root key costs one small write per zone.
// oldRoot must unwrap every stored KEK; on any error nothing changes.
func (s *Store) RewrapKEKs(ctx context.Context, oldRoot, newRoot RootWrapper) error {
	if oldRoot == nil || newRoot == nil {
		return errors.New("zone: rewrap KEKs: old and new root are required")
	}
	s.admin.Lock()
	defer s.admin.Unlock()
	s.mu.RLock()
	zones := make([]*zoneState, 0, len(s.zones))
	for _, zs := range s.zones {
		zones = append(zones, zs)
	}
	s.mu.RUnlock()
	slices.SortFunc(zones, func(a, b *zoneState) int { return strings.Compare(a.name, b.name) })
	for _, zs := range zones {
		zs.mu.Lock()
		defer zs.mu.Unlock()
	}
	ops := make([]storage.Op, 0, len(zones))
	docs := make([]keyDoc, len(zones))
	for i, zs := range zones {
		d := zs.doc.clone()
		aad := keyAAD(aadKEK, zs.name, d.KEKVersion)
		kek, err := oldRoot.Unwrap(d.WrappedKEK, aad)
		if err != nil {
			return fmt.Errorf("zone %q: rewrap KEK with old root: %w", zs.name, err)
		}
		d.WrappedKEK, err = newRoot.Wrap(kek, aad)
		clear(kek)
		if err != nil {
			return fmt.Errorf("zone %q: rewrap KEK with new root: %w", zs.name, err)
		}
		b, err := d.marshal()
		if err != nil {
			return fmt.Errorf("zone %q: rewrap KEK: %w", zs.name, err)
		}
		docs[i] = d
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: keysPrefix + zs.id, Value: b})
	}
	if err := s.st.Txn(ctx, ops); err != nil {
		return fmt.Errorf("zone: rewrap KEKs: %w", err)
	}
	for i, zs := range zones {
		zs.doc = docs[i]
	}
	s.mu.Lock()
	s.root = newRoot
	s.mu.Unlock()
	return nil
}

package tlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// DefaultCheckpointInterval is used when Options.CheckpointInterval is 0.
const DefaultCheckpointInterval = time.Second

// Options configures a Log. Dir, Origin and Signer are required.
type Options struct {
	// Dir holds the log (see the package doc for its layout); created if missing.
	Dir string
	// Origin is the checkpoint's first line, e.g. "edgevault.example/audit".
	// It must match the origin of an existing checkpoint in Dir.
	Origin string
	// Signer signs checkpoints (an Ed25519 note signer). It must be the key
	// that signed the existing checkpoint in Dir; Open checks this by signing
	// the checkpoint text again, so the signer must be deterministic, as
	// Ed25519 is.
	Signer note.Signer
	// CheckpointInterval is how often appended entries are integrated and a
	// new checkpoint is signed; 0 means DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// Logger receives integration failures; nil discards.
	Logger *slog.Logger
}

// Entry is one log entry: Leaf is published (at most MaxLeafSize bytes) and
// committed to by the Merkle tree; Private (at most MaxPrivateSize bytes)
// stays in the private journal.
type Entry struct {
	Leaf, Private []byte
}

// Log is an open transparency log. All methods are safe for concurrent use.
type Log struct {
	dir      string
	origin   string
	signer   note.Signer
	interval time.Duration
	logger   *slog.Logger
	lock     *os.File

	// mu guards the sequencing state below.
	mu      sync.Mutex
	journal *os.File
	index   *os.File
	jOff    int64    // journal length
	offsets []int64  // offsets[k] = journal offset of entry k*indexEvery
	size    uint64   // entries sequenced
	pending [][]byte // leaves of entries [integrated, size)
	wbuf    []byte
	broken  error // set when a failed append could not be undone
	closed  bool

	// integMu serializes integration and guards b and dirs.
	integMu sync.Mutex
	b       *builder
	dirs    map[string]bool // directories known to exist
	stale   []tileID        // tiles completed by the previous integration

	pub   atomic.Pointer[published]
	tiles tileCache // authenticated upper-level tiles, for proofs
	stop  chan struct{}
	done  chan struct{}
}

// published is the state of the latest checkpoint: what proofs are served from.
type published struct {
	cp        Checkpoint
	edge      [][]byte    // the builder's incomplete hash tiles at cp.Size
	edgeNodes []tileNodes // their stored hashes
	// edgeChecked[L]: the partial tile file of level L was found equal to
	// edge[L] by a proof since this checkpoint was published.
	edgeChecked []atomic.Bool
}

func newPublished(cp Checkpoint, b *builder) *published {
	p := &published{cp: cp, edge: b.edge()}
	p.edgeChecked = make([]atomic.Bool, len(p.edge))
	for _, e := range p.edge {
		p.edgeNodes = append(p.edgeNodes, newTileNodes(e))
	}
	return p
}

// Open opens the log in opts.Dir, creating it if needed, recovers it after a
// crash (see the package doc), integrates entries the journal holds beyond
// the checkpoint, and starts the background integrator. A fresh log gets a
// checkpoint of size 0.
func Open(opts Options) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("tlog: Options.Dir is required")
	}
	if why := validOrigin(opts.Origin); why != "" {
		return nil, fmt.Errorf("tlog: Options.Origin %q: %s", opts.Origin, why)
	}
	if opts.Signer == nil {
		return nil, errors.New("tlog: Options.Signer is required")
	}
	if opts.CheckpointInterval < 0 {
		return nil, fmt.Errorf("tlog: Options.CheckpointInterval %v is negative", opts.CheckpointInterval)
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, privateDir), 0o700); err != nil {
		return nil, fmt.Errorf("tlog: create dir: %w", err)
	}
	l := &Log{
		dir:      opts.Dir,
		origin:   opts.Origin,
		signer:   opts.Signer,
		interval: opts.CheckpointInterval,
		logger:   opts.Logger,
		b:        &builder{},
		dirs:     map[string]bool{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if err := l.open(); err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("tlog: open %s: %w", opts.Dir, err)
	}
	go l.run()
	return l, nil
}

func (l *Log) open() error {
	var err error
	if l.lock, err = os.OpenFile(filepath.Join(l.dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return err
	}
	if err := syscall.Flock(int(l.lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("lock: another process has the log open: %w", err)
	}
	if l.journal, err = os.OpenFile(filepath.Join(l.dir, journalName), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return err
	}
	if l.index, err = os.OpenFile(filepath.Join(l.dir, indexName), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return err
	}
	if err := l.recoverJournal(); err != nil {
		return err
	}

	// The checkpoint: verify it is ours, then reload the right edge it covers.
	var cp Checkpoint
	signed, err := os.ReadFile(filepath.Join(l.dir, checkpointName))
	switch {
	case errors.Is(err, os.ErrNotExist):
		cp = Checkpoint{Origin: l.origin, Hash: edgeRoot(0, nil)}
		signed = nil
	case err != nil:
		return err
	default:
		if cp, err = ParseCheckpoint(signed, signerVerifier{l.signer}); err != nil {
			return fmt.Errorf("existing checkpoint was not signed by Options.Signer: %w", err)
		}
		if cp.Origin != l.origin {
			return fmt.Errorf("checkpoint origin %q differs from Options.Origin %q", cp.Origin, l.origin)
		}
	}
	if cp.Size > l.size {
		return fmt.Errorf("checkpoint covers %d entries but the journal holds only %d intact ones: %w", cp.Size, l.size, ErrCorrupt)
	}
	if err := l.cutJournal(); err != nil {
		return err
	}
	if err := l.loadEdge(cp); err != nil {
		return err
	}
	if signed != nil {
		l.pub.Store(newPublished(cp, l.b))
	}
	// Everything in the journal beyond the checkpoint is to be integrated.
	var pending [][]byte
	err = l.scan(cp.Size, l.size, func(_ uint64, leaf, _ []byte) error {
		pending = append(pending, append([]byte(nil), leaf...))
		return nil
	})
	if err != nil {
		return err
	}
	l.pending = pending
	if _, err := l.integrateLocked(); err != nil {
		return err
	}
	return nil
}

// recoverJournal finds the end of the journal's intact records (a torn
// tail is logged) and rebuilds the sparse index from its last trustworthy
// entry, in memory.
func (l *Log) recoverJournal() error {
	raw, err := io.ReadAll(io.NewSectionReader(l.index, 0, 1<<62))
	if err != nil {
		return fmt.Errorf("%s: %w", indexName, err)
	}
	offsets := make([]int64, 0, len(raw)/8+1)
	for i := 0; i+8 <= len(raw); i += 8 {
		offsets = append(offsets, int64(binary.BigEndian.Uint64(raw[i:])))
	}
	// Trust index entries only while they point at the record they claim.
	for len(offsets) > 0 {
		k := len(offsets) - 1
		jr := newJournalReader(l.journal, offsets[k], uint64(k)*indexEvery)
		if _, _, _, err := jr.read(true); err == nil {
			break
		}
		offsets = offsets[:k]
	}
	start, first := int64(0), uint64(0)
	if k := len(offsets); k > 0 {
		start, first = offsets[k-1], uint64(k-1)*indexEvery
		offsets = offsets[:k-1]
	}
	jr := newJournalReader(l.journal, start, first)
	for {
		off, idx := jr.off, jr.next
		_, _, _, err := jr.read(true)
		if err == errJournalEnd {
			break
		}
		if err != nil {
			l.logger.Warn("tlog: journal ends with a torn or corrupt record", "dir", l.dir, "entries", idx, "why", err.Error())
			break
		}
		if idx%indexEvery == 0 {
			offsets = append(offsets, off)
		}
	}
	l.size, l.jOff, l.offsets = jr.next, jr.off, offsets
	return nil
}

// cutJournal makes the files match what recoverJournal found: the torn
// tail is cut and the index rewritten. It runs only once the checkpoint is
// known to be covered, so a damaged journal is never cut below it.
func (l *Log) cutJournal() error {
	offsets := l.offsets
	if err := l.journal.Truncate(l.jOff); err != nil {
		return fmt.Errorf("%s: cut torn tail at %d: %w", journalName, l.jOff, err)
	}
	buf := make([]byte, 0, 8*len(offsets))
	for _, o := range offsets {
		buf = binary.BigEndian.AppendUint64(buf, uint64(o))
	}
	if err := l.index.Truncate(0); err != nil {
		return fmt.Errorf("%s: %w", indexName, err)
	}
	if _, err := l.index.WriteAt(buf, 0); err != nil {
		return fmt.Errorf("%s: %w", indexName, err)
	}
	return nil
}

// loadEdge rebuilds the builder for cp from the partial tiles and the
// journal and checks it against cp's root hash.
func (l *Log) loadEdge(cp Checkpoint) error {
	b := &builder{size: cp.Size}
	for level := 0; cp.Size>>(tileHeight*level) > 0; level++ {
		count := cp.Size >> (tileHeight * level)
		w := int(count % tileWidth)
		var data []byte
		if w > 0 {
			t := tileID{level, count / tileWidth, w}
			d, err := os.ReadFile(filepath.Join(l.dir, t.path()))
			if errors.Is(err, os.ErrNotExist) { // the full tile serves too
				full := tileID{level, t.n, tileWidth}
				d, err = os.ReadFile(filepath.Join(l.dir, full.path()))
			}
			if err != nil {
				return fmt.Errorf("right edge of checkpoint %d: %s: %w (%w)", cp.Size, t.path(), err, ErrCorrupt)
			}
			if len(d) < w*hashSize {
				return fmt.Errorf("right edge of checkpoint %d: %s is short: %w", cp.Size, t.path(), ErrCorrupt)
			}
			data = d[:w*hashSize]
		}
		b.levels = append(b.levels, append(make([]byte, 0, tileWidth*hashSize), data...))
	}
	if root := b.root(); root != cp.Hash {
		return fmt.Errorf("right-edge tiles give root %v, checkpoint %d says %v: %w", root, cp.Size, cp.Hash, ErrCorrupt)
	}
	// The entries of the incomplete bundle come from the journal and must
	// match the level-0 hashes just authenticated.
	start := cp.Size &^ (tileWidth - 1)
	err := l.scan(start, cp.Size, func(i uint64, leaf, _ []byte) error {
		if h := leafHash(leaf); string(h[:]) != string(b.levels[0][(i-start)*hashSize:][:hashSize]) {
			return fmt.Errorf("entry %d: journal leaf does not match tile 0 of checkpoint %d: %w", i, cp.Size, ErrCorrupt)
		}
		b.bundle = append(b.bundle, byte(len(leaf)>>8), byte(len(leaf)))
		b.bundle = append(b.bundle, leaf...)
		return nil
	})
	if err != nil {
		return err
	}
	l.b = b
	return nil
}

// Append sequences entries, in order, and returns the index of the first.
// It is all-or-nothing: on error nothing of the batch is kept and the error
// says why (ErrOutOfRange for an oversized entry, ENOSPC...). When it returns
// nil the entries are in the journal (written, not fsynced) and survive a
// crash of the process; they are fsynced before any checkpoint covering them
// is published.
func (l *Log) Append(entries []Entry) (first uint64, err error) {
	total, leaves := 0, 0
	for i, e := range entries {
		if len(e.Leaf) > MaxLeafSize {
			return 0, fmt.Errorf("tlog: append: entry %d of batch: leaf of %d bytes exceeds %d: %w", i, len(e.Leaf), MaxLeafSize, ErrOutOfRange)
		}
		if len(e.Private) > MaxPrivateSize {
			return 0, fmt.Errorf("tlog: append: entry %d of batch: private part of %d bytes exceeds %d: %w", i, len(e.Private), MaxPrivateSize, ErrOutOfRange)
		}
		total += recordSize(e.Leaf, e.Private)
		leaves += len(e.Leaf)
	}
	// Copy the leaves for the integrator before taking the lock.
	arena := make([]byte, 0, leaves)
	copies := make([][]byte, len(entries))
	for i, e := range entries {
		arena = append(arena, e.Leaf...)
		copies[i] = arena[len(arena)-len(e.Leaf) : len(arena) : len(arena)]
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return 0, ErrClosed
	case l.broken != nil:
		return 0, fmt.Errorf("tlog: append: log unusable after an earlier failure: %w", l.broken)
	}
	first = l.size
	buf := l.wbuf[:0]
	if cap(buf) < total {
		buf = make([]byte, 0, total)
	}
	var idxBuf []byte
	off := l.jOff
	for i, e := range entries {
		index := first + uint64(i)
		if index%indexEvery == 0 {
			idxBuf = binary.BigEndian.AppendUint64(idxBuf, uint64(off))
		}
		n := len(buf)
		buf = appendRecord(buf, index, e.Leaf, e.Private)
		off += int64(len(buf) - n)
	}
	if cap(buf) <= 1<<20 {
		l.wbuf = buf
	}
	if _, err := l.journal.WriteAt(buf, l.jOff); err != nil {
		l.undo()
		return 0, fmt.Errorf("tlog: append %d entries at %d: write %s: %w", len(entries), first, journalName, err)
	}
	if len(idxBuf) > 0 {
		if _, err := l.index.WriteAt(idxBuf, int64(len(l.offsets))*8); err != nil {
			l.undo()
			return 0, fmt.Errorf("tlog: append %d entries at %d: write %s: %w", len(entries), first, indexName, err)
		}
		for i := 0; i < len(idxBuf); i += 8 {
			l.offsets = append(l.offsets, int64(binary.BigEndian.Uint64(idxBuf[i:])))
		}
	}
	l.jOff = off
	l.size += uint64(len(entries))
	l.pending = append(l.pending, copies...)
	return first, nil
}

// undo truncates the journal and index back to the last good append. If
// that fails the log refuses further appends. Called with mu held.
func (l *Log) undo() {
	if err := l.journal.Truncate(l.jOff); err != nil {
		l.broken = fmt.Errorf("truncate %s back to %d: %w", journalName, l.jOff, err)
		return
	}
	if err := l.index.Truncate(int64(len(l.offsets)) * 8); err != nil {
		l.broken = fmt.Errorf("truncate %s: %w", indexName, err)
	}
}

// Size returns the number of entries sequenced so far (integrated or not).
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Checkpoint returns the latest published checkpoint.
func (l *Log) Checkpoint() (Checkpoint, error) {
	if err := l.checkOpen(); err != nil {
		return Checkpoint{}, err
	}
	p := l.pub.Load()
	if p == nil {
		return Checkpoint{}, fmt.Errorf("tlog: checkpoint: %w", ErrNotFound)
	}
	return p.cp, nil
}

func (l *Log) checkOpen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return nil
}

// Integrate integrates everything appended so far and publishes a
// checkpoint covering it, now. It returns that checkpoint.
func (l *Log) Integrate() (Checkpoint, error) {
	if err := l.checkOpen(); err != nil {
		return Checkpoint{}, err
	}
	l.integMu.Lock()
	defer l.integMu.Unlock()
	return l.integrateLocked()
}

// integrateLocked is the integration step; integMu must be held (or the
// Log not yet shared). Order: fsync the journal, write and fsync the tiles,
// then sign and atomically replace the checkpoint.
func (l *Log) integrateLocked() (Checkpoint, error) {
	l.mu.Lock()
	pending := l.pending
	l.pending = nil
	l.mu.Unlock()
	if prev := l.pub.Load(); prev != nil && len(pending) == 0 {
		return prev.cp, nil
	}
	restore := func() {
		l.mu.Lock()
		l.pending = append(pending, l.pending...)
		l.mu.Unlock()
	}
	if len(pending) > 0 {
		if err := l.journal.Sync(); err != nil {
			restore()
			return Checkpoint{}, fmt.Errorf("tlog: integrate: fsync %s: %w", journalName, err)
		}
		if err := l.index.Sync(); err != nil {
			restore()
			return Checkpoint{}, fmt.Errorf("tlog: integrate: fsync %s: %w", indexName, err)
		}
	}
	nb := l.b.clone()
	w := &tileWriter{root: l.dir, known: l.dirs}
	for _, leaf := range pending {
		if err := nb.add(leaf, w.write); err != nil {
			w.abandon()
			restore()
			return Checkpoint{}, fmt.Errorf("tlog: integrate: %w", err)
		}
	}
	if err := nb.partials(w.write); err != nil {
		w.abandon()
		restore()
		return Checkpoint{}, fmt.Errorf("tlog: integrate: %w", err)
	}
	if err := w.sync(); err != nil {
		restore()
		return Checkpoint{}, fmt.Errorf("tlog: integrate: %w", err)
	}
	cp, err := signCheckpoint(l.origin, nb.size, nb.root(), l.signer)
	if err != nil {
		restore()
		return Checkpoint{}, fmt.Errorf("tlog: integrate: %w", err)
	}
	if err := writeAtomic(l.dir, checkpointName, cp.Signed); err != nil {
		restore()
		return Checkpoint{}, fmt.Errorf("tlog: integrate: %w", err)
	}
	l.b = nb
	l.pub.Store(newPublished(cp, nb))
	// Partial tiles of tiles completed one checkpoint ago are no longer
	// referenced by the latest two checkpoints; a client holding an older
	// one falls back to the full tile.
	for _, t := range l.stale {
		pdir := t.path() + ".p"
		if err := os.RemoveAll(filepath.Join(l.dir, filepath.FromSlash(pdir))); err != nil {
			l.logger.Warn("tlog: removing stale partial tiles", "dir", pdir, "err", err.Error())
		}
		delete(l.dirs, pdir)
	}
	l.stale = w.full
	return cp, nil
}

// run integrates every interval until Close.
func (l *Log) run() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.integMu.Lock()
		_, err := l.integrateLocked()
		l.integMu.Unlock()
		if err != nil {
			l.logger.LogAttrs(context.Background(), slog.LevelError, "tlog: integration failed; will retry",
				slog.String("dir", l.dir), slog.String("err", err.Error()))
		}
	}
}

// Close integrates what is pending, publishes a final checkpoint and closes
// the log. Later calls return ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	l.integMu.Lock()
	_, err := l.integrateLocked()
	l.integMu.Unlock()
	if cerr := l.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

func (l *Log) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{l.journal, l.index, l.lock} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

// scan calls fn for the journal entries [start, end), which must be below
// l.size; leaf and private are only valid during the call.
func (l *Log) scan(start, end uint64, fn func(i uint64, leaf, private []byte) error) error {
	if start >= end {
		return nil
	}
	l.mu.Lock()
	offsets := l.offsets
	l.mu.Unlock()
	k := start / indexEvery
	if k >= uint64(len(offsets)) {
		return fmt.Errorf("entry %d: not in %s: %w", start, indexName, ErrCorrupt)
	}
	jr := newJournalReader(l.journal, offsets[k], k*indexEvery)
	for jr.next < end {
		i, leaf, priv, err := jr.read(true)
		if err != nil {
			if err == errJournalEnd {
				err = errors.New("unexpected end of journal")
			}
			return fmt.Errorf("entry %d: %v: %w", jr.next, err, ErrCorrupt)
		}
		if i < start {
			continue
		}
		if err := fn(i, leaf, priv); err != nil {
			return err
		}
	}
	return nil
}

// Leaves returns the public leaf data of entries [start, end); end must not
// exceed the latest checkpoint's size.
func (l *Log) Leaves(start, end uint64) ([][]byte, error) {
	cp, err := l.Checkpoint()
	if err != nil {
		return nil, err
	}
	if start > end || end > cp.Size {
		return nil, fmt.Errorf("tlog: leaves [%d, %d) of checkpoint size %d: %w", start, end, cp.Size, ErrOutOfRange)
	}
	out := make([][]byte, 0, end-start)
	err = l.scan(start, end, func(_ uint64, leaf, _ []byte) error {
		out = append(out, append([]byte(nil), leaf...))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tlog: leaves [%d, %d): %w", start, end, err)
	}
	return out, nil
}

// Private returns the private bytes of entry index (any sequenced entry).
func (l *Log) Private(index uint64) ([]byte, error) {
	if err := l.checkOpen(); err != nil {
		return nil, err
	}
	if size := l.Size(); index >= size {
		return nil, fmt.Errorf("tlog: private bytes of entry %d of %d: %w", index, size, ErrOutOfRange)
	}
	var out []byte
	err := l.scan(index, index+1, func(_ uint64, _, private []byte) error {
		out = append([]byte{}, private...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tlog: private bytes: %w", err)
	}
	return out, nil
}

// ReadTile returns what a static server would serve for path: "checkpoint"
// or a tile path such as "tile/0/x001/234" or "tile/entries/005.p/7".
// It returns ErrNotFound for a path that is absent or not a tile path.
func (l *Log) ReadTile(path string) ([]byte, error) {
	if err := l.checkOpen(); err != nil {
		return nil, err
	}
	if path != checkpointName {
		if _, err := parseTilePath(path); err != nil {
			return nil, err
		}
	}
	data, err := os.ReadFile(filepath.Join(l.dir, filepath.FromSlash(path)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("tlog: %s: %w", path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("tlog: %s: %w", path, err)
	}
	return data, nil
}

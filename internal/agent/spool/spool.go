package spool

import (
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options fields left at zero.
const (
	DefaultSegmentSize  = 16 << 20
	DefaultMaxBytes     = 1 << 30
	DefaultSyncInterval = time.Second
)

// Options configure a Spool. The zero value is valid: every zero field takes
// its default.
type Options struct {
	// SegmentSize is the size past which the spool starts a new segment
	// file. Default 16 MiB. A segment holds at least one record, so a single
	// record larger than SegmentSize still fits.
	SegmentSize int64

	// MaxBytes bounds the on-disk size (frames included) of the records not
	// yet committed; an Append that would go past it fails with ErrFull.
	// Default 1 GiB.
	MaxBytes int64

	// SyncInterval is how often the spool fsyncs the current segment when
	// records were appended since the last fsync. A power loss may lose the
	// records of the last SyncInterval. Default one second; a negative value
	// disables the timer, so the spool fsyncs only in Next, Sync and Close
	// (for tests).
	SyncInterval time.Duration

	// Logger receives recovery notices (torn tails truncated, unsynced
	// records dropped after a power loss) and background fsync failures.
	// Nil discards them.
	Logger *slog.Logger
}

// withDefaults returns o with defaults filled in, or an error naming the
// first invalid field.
func (o Options) withDefaults() (Options, error) {
	if o.SegmentSize < 0 {
		return o, fmt.Errorf("spool: options: SegmentSize %d is negative", o.SegmentSize)
	}
	if o.MaxBytes < 0 {
		return o, fmt.Errorf("spool: options: MaxBytes %d is negative", o.MaxBytes)
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Record is one spooled record: its sequence number and the bytes given to
// Append.
type Record struct {
	Seq  uint64
	Data []byte
}

// Stats is a snapshot of the spool's counters.
type Stats struct {
	Pending      int64  // records appended and not yet committed
	PendingBytes int64  // on-disk bytes (frames included) of those records
	LastSeq      uint64 // sequence number of the last appended record; 0 if none ever
	Committed    uint64 // last committed sequence number; 0 if none
}

// segment describes one segment file: the sequence number of its first
// record and its size in bytes.
type segment struct {
	first uint64
	size  int64
}

// Spool is a durable, ordered queue of audit records; see the package
// documentation for its guarantees. Append, Stats, Wait and Sync may be
// called from any number of goroutines. Next and Commit are meant for a
// single forwarder; they are serialized against each other and are safe to
// call concurrently with Append.
type Spool struct {
	dir    string
	opts   Options
	log    *slog.Logger
	tab    *crc32.Table
	notify chan struct{} // buffered(1); closed by Close
	stop   chan struct{} // closed by Close to stop the sync timer
	done   chan struct{} // closed when the sync timer goroutine has exited

	// Counters read by Stats without locks.
	lastSeq      atomic.Uint64
	committed    atomic.Uint64
	pendingBytes atomic.Int64
	isClosed     atomic.Bool

	syncMu  sync.Mutex // serializes Sync calls; guards mark and markPos
	mark    *os.File   // the durable mark file (see mark.go)
	markPos position   // what mark holds

	mu         sync.Mutex // guards the append side below
	active     *os.File   // the last segment, open for appending
	activeSize int64      // bytes written to active
	segs       []segment  // live segments in order; the last is active (its size is activeSize)
	nextSeq    uint64     // sequence number of the next record
	buf        []byte     // frame encoding buffer
	dirty      bool       // active has writes not yet fsynced
	sealed     []*os.File // segments sealed by a roll, not yet fsynced and closed, in order
	dirDirty   bool       // a segment was created since the last directory fsync
	closed     bool
	failed     error // set when a write or fsync failed; wraps ErrFailed

	rmu sync.Mutex // guards rd; serializes Next and Commit
	rd  reader
}

// Open opens the spool in dir, creating dir (mode 0700) if needed, and
// recovers its state: it reads the cursor, deletes fully committed segments,
// verifies and fsyncs every segment holding uncommitted records, and
// truncates a torn tail of the last segment or, after a power loss, the
// records that were never fsynced (see Recovery in the package
// documentation). It fails with ErrCorrupt if records are damaged anywhere
// else.
func Open(dir string, opts Options) (*Spool, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create directory: %w", err)
	}
	s := &Spool{
		dir:    dir,
		opts:   opts,
		log:    opts.Logger,
		tab:    crc32.MakeTable(crc32.Castagnoli),
		notify: make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	s.rd.files = make(map[uint64]*os.File)
	if err := s.recover(); err != nil {
		s.rd.closeFiles()
		if s.active != nil {
			s.active.Close()
		}
		if s.mark != nil {
			s.mark.Close()
		}
		return nil, err
	}
	if opts.SyncInterval > 0 {
		go s.syncLoop(opts.SyncInterval)
	} else {
		close(s.done)
	}
	return s, nil
}

// Append writes rec as the next record and returns its sequence number. When
// it returns nil the record is in the page cache: it survives a crash of the
// process, and a power loss once the next fsync has run (at most
// SyncInterval later). It fails with ErrTooLarge past MaxRecordSize, ErrFull
// when the spool holds MaxBytes of uncommitted records, ErrClosed after
// Close, and ErrFailed after an I/O failure that left the spool unusable. A
// failed Append consumes no sequence number. Append does not retain rec.
func (s *Spool) Append(rec []byte) (seq uint64, err error) {
	if len(rec) > MaxRecordSize {
		return 0, fmt.Errorf("spool: append: record of %d bytes, limit %d: %w", len(rec), MaxRecordSize, ErrTooLarge)
	}
	frame := int64(headerSize + len(rec))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	if s.failed != nil {
		return 0, s.failed
	}
	if pending := s.pendingBytes.Load(); pending+frame > s.opts.MaxBytes {
		return 0, fmt.Errorf("spool: append: %d bytes pending + %d > MaxBytes %d: %w", pending, frame, s.opts.MaxBytes, ErrFull)
	}
	if s.activeSize > 0 && s.activeSize+frame > s.opts.SegmentSize {
		if err := s.rollLocked(); err != nil {
			return 0, err
		}
	}
	seq = s.nextSeq
	s.buf = appendFrame(s.buf[:0], s.tab, seq, rec)
	if _, err := s.active.Write(s.buf); err != nil {
		// Undo a partial write so the segment ends on a frame boundary.
		if terr := s.active.Truncate(s.activeSize); terr != nil {
			s.failed = fmt.Errorf("%w: segment %s: write: %v; truncate: %v", ErrFailed, s.active.Name(), err, terr)
			return 0, s.failed
		}
		return 0, fmt.Errorf("spool: append seq %d to %s: %w", seq, s.active.Name(), err)
	}
	s.nextSeq++
	s.activeSize += frame
	s.dirty = true
	s.pendingBytes.Add(frame)
	s.lastSeq.Store(seq)
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return seq, nil
}

// rollLocked seals the current segment and starts a new one named after
// the next sequence number. s.mu must be held. It does no fsync: the sealed
// segment and the directory entry of the new one are made durable by the
// next Sync, sealed segments first and in order, so that appenders never
// wait for a disk flush.
func (s *Spool) rollLocked() error {
	path := filepath.Join(s.dir, segmentName(s.nextSeq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: create segment: %w", err)
	}
	s.sealed = append(s.sealed, s.active)
	s.dirDirty = true
	s.segs[len(s.segs)-1].size = s.activeSize
	s.segs = append(s.segs, segment{first: s.nextSeq})
	s.active = f
	s.activeSize = 0
	return nil
}

// createSegment creates the empty segment file for first, makes its
// directory entry durable, and returns it open for appending.
func (s *Spool) createSegment(first uint64) (*os.File, error) {
	path := filepath.Join(s.dir, segmentName(first))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: create segment: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("spool: create segment %s: %w", path, err)
	}
	return f, nil
}

// Wait returns a channel that receives a value after records are appended,
// so a forwarder that found nothing to read can sleep until there is. The
// channel holds at most one pending signal: a forwarder should call Next
// until it returns nil before waiting again. Close closes the channel.
func (s *Spool) Wait() <-chan struct{} {
	return s.notify
}

// Stats returns the spool's counters. It takes no locks.
func (s *Spool) Stats() Stats {
	committed := s.committed.Load()
	last := s.lastSeq.Load()
	return Stats{
		Pending:      int64(last - committed),
		PendingBytes: s.pendingBytes.Load(),
		LastSeq:      last,
		Committed:    committed,
	}
}

// Sync fsyncs the records appended so far: first the segments sealed since
// the last Sync, in order, then the directory, then the current segment.
// Appends proceed while it runs. If an fsync fails the spool is marked
// failed (see ErrFailed): after a failed fsync Linux may have dropped the
// dirty pages, so records already acknowledged might not survive a power
// loss and new ones cannot be trusted either.
func (s *Spool) Sync() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.failed != nil {
		s.mu.Unlock()
		return s.failed
	}
	sealed, dirDirty, dirty, f := s.sealed, s.dirDirty, s.dirty, s.active
	s.sealed, s.dirDirty, s.dirty = nil, false, false
	end := position{seg: s.segs[len(s.segs)-1].first, off: s.activeSize}
	s.mu.Unlock()

	err := s.flush(sealed, dirDirty, dirty, f)
	if err == nil && end != s.markPos {
		err = s.writeMark(end)
	}
	if err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.failed == nil {
			s.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		}
		return s.failed
	}
	return nil
}

// flush fsyncs and closes the sealed segments, then fsyncs the directory if
// dirDirty and the active segment if dirty.
func (s *Spool) flush(sealed []*os.File, dirDirty, dirty bool, active *os.File) error {
	var err error
	for _, sf := range sealed {
		if err == nil {
			if err = sf.Sync(); err != nil {
				err = fmt.Errorf("fsync segment %s: %w", sf.Name(), err)
			}
		}
		sf.Close()
	}
	if err == nil && dirDirty {
		err = syncDir(s.dir)
	}
	if err == nil && dirty {
		if err = active.Sync(); err != nil {
			err = fmt.Errorf("fsync segment %s: %w", active.Name(), err)
		}
	}
	return err
}

// syncLoop fsyncs every interval until Close.
func (s *Spool) syncLoop(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.Sync(); err != nil && !errors.Is(err, ErrClosed) {
				s.log.Error("spool: periodic fsync failed; appends refused until reopen", "dir", s.dir, "err", err)
				return
			}
		}
	}
}

// Close fsyncs and closes the spool. Pending records stay on disk for the
// next Open. Close wakes a forwarder blocked on Wait; its next Next returns
// ErrClosed. A second Close returns ErrClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.isClosed.Store(true)
	close(s.notify)
	close(s.stop)
	failed := s.failed
	sealed := s.sealed
	s.sealed = nil
	end := position{seg: s.segs[len(s.segs)-1].first, off: s.activeSize}
	s.mu.Unlock()
	<-s.done

	// No Append can run now and Sync returns ErrClosed. Wait for a Sync in
	// progress, then flush what is left.
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	var errs []error
	if failed == nil {
		err := s.flush(sealed, true, true, s.active)
		if err == nil && end != s.markPos {
			err = s.writeMark(end)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("spool: close: %w", err))
		}
	} else {
		for _, sf := range sealed {
			sf.Close()
		}
	}
	if err := s.active.Close(); err != nil {
		errs = append(errs, fmt.Errorf("spool: close segment: %w", err))
	}
	if err := s.mark.Close(); err != nil {
		errs = append(errs, fmt.Errorf("spool: close durable mark: %w", err))
	}
	s.rmu.Lock()
	s.rd.closeFiles()
	s.rmu.Unlock()
	return errors.Join(errs...)
}

// syncDir fsyncs a directory so that entries created, renamed or removed in
// it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

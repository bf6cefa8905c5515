package audit

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/edgevault/edgevault/internal/audit/leaf"
	"github.com/edgevault/edgevault/internal/audit/tlog"
)

// Device types.
const (
	TypeFile = "file" // Vault's file audit device: option file_path
	TypeLog  = "tlog" // the transparency log: options path (a directory), origin
)

// DeviceConfig is one audit device, as sys/audit lists it.
type DeviceConfig struct {
	// Path names the device, Vault-style with a trailing slash ("file/").
	Path        string
	Type        string
	Description string
	Options     map[string]string
	// FromConfig devices come from the server's configuration file and
	// cannot be disabled through the API.
	FromConfig bool
}

// Options configure a Broker.
type Options struct {
	// RequireAll (the default) fails a request when any device refuses its
	// entry; otherwise one device accepting it is enough.
	RequireAny bool
	// Signer signs the transparency log's checkpoints.
	Signer note.Signer
	// Logger receives device failures; nil discards them.
	Logger *slog.Logger
	// CheckpointInterval is how often the log publishes a checkpoint (0: tlog's default).
	CheckpointInterval time.Duration
	// Reserved are paths no device may write (the storage file).
	Reserved []string
}

// device is an open DeviceConfig.
type device struct {
	cfg  DeviceConfig
	file *fileSink
	log  *tlog.Log
}

// Record is one encoded entry on its way to the devices.
type record struct {
	private []byte // what the log keeps privately: the salt seed, then the line
	line    []byte // the JSON line, '\n' included: private[leaf.SeedSize:]
	leaf    []byte // the log's leaf data
	skip    string // a device that does not get it
	index   uint64 // set once the log sequenced it
}

// MaxLineSize bounds an entry's line; larger request or response data is
// recorded by its size only. It keeps every entry within what the log
// accepts for one entry.
const MaxLineSize = 1 << 20

// maxCut bounds how many lines Reconcile may cut: more than any batch in
// flight at a crash (a batch holds one entry per concurrent request).
const maxCut = 1 << 16

// batch is what one writer takes to the devices at once.
type batch struct {
	recs []*record
	done chan struct{}
	lead chan struct{} // one waiter receives it and writes the batch
	err  error
}

func newBatch() *batch {
	return &batch{done: make(chan struct{}), lead: make(chan struct{}, 1)}
}

// Broker sends audit entries to its devices. Safe for concurrent use.
type Broker struct {
	opts Options
	log  *slog.Logger

	devMu   sync.Mutex // serialises device changes and batch writes
	devices atomic.Pointer[[]*device]

	mu      sync.Mutex // guards open and busy
	open    *batch
	busy    bool
	scratch []byte // the writer's line buffer; used under devMu

	encoders sync.Pool
	closed   atomic.Bool
	batches  atomic.Uint64 // batches written
	entries  atomic.Uint64 // entries written
}

// Stats are the broker's counters.
type Stats struct {
	Batches, Entries uint64 // Entries/Batches is the mean batch size
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	return Stats{Batches: b.batches.Load(), Entries: b.entries.Load()}
}

// NewBroker returns a Broker with no devices (auditing nothing).
func NewBroker(opts Options) *Broker {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Broker{opts: opts, log: log, open: newBatch()}
	b.devices.Store(&[]*device{})
	b.encoders.New = func() any { return &encoder{b: make([]byte, 0, 1024)} }
	return b
}

// Enabled reports whether any device is enabled.
func (b *Broker) Enabled() bool { return len(*b.devices.Load()) > 0 }

// Devices lists the enabled devices, sorted by path.
func (b *Broker) Devices() []DeviceConfig {
	devs := *b.devices.Load()
	out := make([]DeviceConfig, 0, len(devs))
	for _, d := range devs {
		out = append(out, d.cfg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Log returns the transparency log, or nil when no tlog device is enabled.
func (b *Broker) Log() *tlog.Log {
	for _, d := range *b.devices.Load() {
		if d.log != nil {
			return d.log
		}
	}
	return nil
}

// ValidateDevice checks cfg and returns it normalised (path with a trailing
// slash, absolute file paths, known options only).
func ValidateDevice(cfg DeviceConfig) (DeviceConfig, error) {
	p := strings.Trim(cfg.Path, "/")
	if p == "" || strings.ContainsAny(p, " \t\n/") || len(p) > 128 {
		return cfg, fmt.Errorf("%w: path %q: want a non-empty name without slashes or spaces", ErrInvalidDevice, cfg.Path)
	}
	cfg.Path = p + "/"
	opts := map[string]string{}
	for k, v := range cfg.Options {
		opts[k] = v
	}
	allowed := map[string][]string{TypeFile: {"file_path"}, TypeLog: {"path", "origin"}}
	keys, ok := allowed[cfg.Type]
	if !ok {
		return cfg, fmt.Errorf("%w: type %q: supported types are %q and %q", ErrInvalidDevice, cfg.Type, TypeFile, TypeLog)
	}
	for k := range opts {
		if !slices.Contains(keys, k) {
			return cfg, fmt.Errorf("%w: options: %q is not an option of a %s device (options: %s)", ErrInvalidDevice, k, cfg.Type, strings.Join(keys, ", "))
		}
	}
	pathKey := keys[0]
	if opts[pathKey] == "" {
		return cfg, fmt.Errorf("%w: options.%s is required for a %s device", ErrInvalidDevice, pathKey, cfg.Type)
	}
	abs, err := filepath.Abs(opts[pathKey])
	if err != nil {
		return cfg, fmt.Errorf("%w: options.%s: %v", ErrInvalidDevice, pathKey, err)
	}
	opts[pathKey] = abs
	if cfg.Type == TypeLog {
		if o := opts["origin"]; o != "" && (strings.ContainsAny(o, "\n+ \t") || len(o) > 200) {
			return cfg, fmt.Errorf("%w: options.origin %q: want one line without spaces or '+'", ErrInvalidDevice, o)
		}
	}
	cfg.Options = opts
	return cfg, nil
}

// Enable opens and adds a device. A second tlog device, a path in use or a
// file that cannot be opened is refused, and nothing changes.
func (b *Broker) Enable(cfg DeviceConfig) error {
	cfg, err := ValidateDevice(cfg)
	if err != nil {
		return err
	}
	b.devMu.Lock()
	defer b.devMu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	devs := *b.devices.Load()
	for _, d := range devs {
		if d.cfg.Path == cfg.Path {
			return fmt.Errorf("%w: path %q is already in use", ErrInvalidDevice, cfg.Path)
		}
		if cfg.Type == TypeLog && d.log != nil {
			return fmt.Errorf("%w: only one tlog device can be enabled; %q is one", ErrInvalidDevice, d.cfg.Path)
		}
	}
	if err := b.checkPaths(cfg, devs); err != nil {
		return err
	}
	d := &device{cfg: cfg}
	switch cfg.Type {
	case TypeFile:
		if d.file, err = openFileSink(cfg.Options["file_path"]); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalidDevice, cfg.Path, err)
		}
	case TypeLog:
		if b.opts.Signer == nil {
			return fmt.Errorf("%w: %s: no checkpoint signing key", ErrInvalidDevice, cfg.Path)
		}
		origin := cfg.Options["origin"]
		if origin == "" {
			origin = b.opts.Signer.Name()
		}
		if err := os.MkdirAll(cfg.Options["path"], 0o700); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalidDevice, cfg.Path, err)
		}
		d.log, err = tlog.Open(tlog.Options{Dir: cfg.Options["path"], Origin: origin, Signer: b.opts.Signer,
			CheckpointInterval: b.opts.CheckpointInterval, Logger: b.log})
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalidDevice, cfg.Path, err)
		}
	}
	next := append(slices.Clone(devs), d)
	b.devices.Store(&next)
	return nil
}

// checkPaths refuses a device whose files would be another's: a file inside
// a log directory, a reserved path (the storage file), a log directory
// holding a file device's file. Symbolic links are resolved first.
func (b *Broker) checkPaths(cfg DeviceConfig, devs []*device) error {
	mine := resolve(cfg.Options["file_path"] + cfg.Options["path"]) // one of them is set
	for _, r := range b.opts.Reserved {
		if r != "" && (mine == resolve(r) || within(resolve(r), mine)) {
			return fmt.Errorf("%w: %s %q is where the server keeps its storage", ErrInvalidDevice, cfg.Path, mine)
		}
	}
	for _, d := range devs {
		other := resolve(d.cfg.Options["file_path"] + d.cfg.Options["path"])
		switch {
		case mine == other:
			return fmt.Errorf("%w: %s writes %q already", ErrInvalidDevice, d.cfg.Path, other)
		case d.log != nil && within(mine, other), cfg.Type == TypeLog && within(other, mine):
			return fmt.Errorf("%w: %q and the transparency log's directory %q overlap", ErrInvalidDevice, mine, other)
		}
	}
	return nil
}

// resolve returns p with symbolic links in its directory resolved.
func resolve(p string) string {
	dir, err := filepath.EvalSymlinks(filepath.Dir(p))
	if err != nil {
		return filepath.Clean(p)
	}
	if full, err := filepath.EvalSymlinks(p); err == nil {
		return full
	}
	return filepath.Join(dir, filepath.Base(p))
}

// within reports whether p lies inside dir.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..")
}

// Reconcile makes the files agree with the log after a crash; call it once,
// after enabling the devices at start-up, before any entry is written. A
// batch that reached the files but not the log was never answered (every
// device is required), so it is cut from the files. At most maxCut lines
// are ever cut: a longer tail was not a batch in flight and is left alone,
// with a warning. Nothing is done when one device suffices (RequireAny):
// the devices may then differ by design; a server switched from "any" back
// to "all" should be checked with `edgevault audit verify` first.
func (b *Broker) Reconcile() error {
	b.devMu.Lock()
	defer b.devMu.Unlock()
	devs := *b.devices.Load()
	if b.opts.RequireAny {
		return nil
	}
	var lg *tlog.Log
	for _, d := range devs {
		if d.log != nil {
			lg = d.log
		}
	}
	if lg == nil || lg.Size() == 0 {
		return nil
	}
	priv, err := lg.Private(lg.Size() - 1)
	if err != nil {
		return fmt.Errorf("audit: read the log's last entry: %w", err)
	}
	_, line, err := SplitPrivate(priv)
	if err != nil {
		return err
	}
	for _, d := range devs {
		if d.file == nil {
			continue
		}
		found, cut, err := d.file.cutAfter(line, maxCut)
		if err != nil {
			return fmt.Errorf("audit: reconcile %s with the log: %w", d.cfg.Path, err)
		}
		if cut > 0 {
			b.log.Warn("audit file had entries the log never received (a batch cut short by a crash; none was answered): removed them",
				"device", d.cfg.Path, "bytes", cut)
		}
		if !found && d.file.size > 0 {
			b.log.Warn("audit file does not end with the log's last entry, nor one batch after it; nothing was cut; run `edgevault audit verify`",
				"device", d.cfg.Path, "log_size", lg.Size())
		}
	}
	return nil
}

// Disable closes and removes the device at path.
func (b *Broker) Disable(path string) error {
	path = strings.Trim(path, "/") + "/"
	b.devMu.Lock()
	defer b.devMu.Unlock()
	devs := *b.devices.Load()
	for i, d := range devs {
		if d.cfg.Path == path {
			next := slices.Delete(slices.Clone(devs), i, i+1)
			b.devices.Store(&next)
			return d.close()
		}
	}
	return fmt.Errorf("%w: no audit device at %q", ErrInvalidDevice, path)
}

func (d *device) close() error {
	if d.file != nil {
		return d.file.close()
	}
	return d.log.Close()
}

// Reopen reopens every file device at its path (after logrotate; SIGHUP).
func (b *Broker) Reopen() error {
	b.devMu.Lock()
	defer b.devMu.Unlock()
	var errs []error
	for _, d := range *b.devices.Load() {
		if d.file != nil {
			if err := d.file.reopen(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", d.cfg.Path, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Close closes every device; later entries fail with ErrClosed.
func (b *Broker) Close() error {
	b.devMu.Lock()
	defer b.devMu.Unlock()
	b.closed.Store(true)
	var errs []error
	for _, d := range *b.devices.Load() {
		errs = append(errs, d.close())
	}
	b.devices.Store(&[]*device{})
	return errors.Join(errs...)
}

// LogEntry audits one entry, hashing its secrets with salt. It returns once
// every required device holds it (ErrUnavailable otherwise), and the log
// index it got (0 without a log). With no device enabled it does nothing.
func (b *Broker) LogEntry(e *Entry, salt *Salt) (uint64, error) {
	if !b.Enabled() {
		if b.closed.Load() {
			return 0, ErrClosed
		}
		return 0, nil
	}
	enc := b.encoders.Get().(*encoder)
	defer b.encoders.Put(enc)
	enc.salt = salt
	if err := enc.encode(e); err != nil {
		return 0, fmt.Errorf("%w: encode the entry: %v", ErrUnavailable, err)
	}
	if len(enc.b) > MaxLineSize {
		// Data too large for one entry: the entry records its size instead,
		// so the request is still audited (and no batch fails because of it).
		t := *e
		if t.Request != nil && t.Request.Data != nil {
			r := *t.Request
			r.Data = map[string]any{"edgevault_truncated": true, "encoded_bytes": len(enc.b)}
			t.Request = &r
		}
		if t.Response != nil && t.Response.Data != nil {
			r := *t.Response
			r.Data = map[string]any{"edgevault_truncated": true, "encoded_bytes": len(enc.b)}
			t.Response = &r
		}
		if err := enc.encode(&t); err != nil || len(enc.b) > MaxLineSize {
			return 0, fmt.Errorf("%w: an entry of %d bytes is larger than %d even without its data", ErrUnavailable, len(enc.b), MaxLineSize)
		}
	}
	rec := newRecord(enc.b)
	rec.skip = e.SkipDevice
	seed := rec.private[:leaf.SeedSize]
	if _, err := rand.Read(seed); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var err error
	if rec.leaf, err = leaf.AppendCommit(make([]byte, 0, 3+len(enc.fields)*56), enc.leafFields(rec.line), seed); err != nil {
		return 0, fmt.Errorf("%w: commit the entry: %v", ErrUnavailable, err)
	}
	return b.submit(rec)
}

// submit queues rec and returns once its batch was written. The first
// caller to find no writer writes; the others wait, and when a write ends
// one waiter of the next batch is handed the writer's role, so no caller
// writes on others' behalf for long.
func (b *Broker) submit(rec *record) (uint64, error) {
	err := b.submitAll([]*record{rec})
	return rec.index, err
}

// submitAll queues recs together in the open batch and waits until it is
// written: they land in the same write, all or none.
func (b *Broker) submitAll(recs []*record) error {
	b.mu.Lock()
	cur := b.open
	cur.recs = append(cur.recs, recs...)
	if !b.busy {
		b.busy = true
		b.mu.Unlock()
		return b.lead(cur)
	}
	b.mu.Unlock()
	select {
	case <-cur.done:
		return cur.err
	case <-cur.lead:
		return b.lead(cur)
	}
}

// lead writes cur, then hands the writer's role on.
func (b *Broker) lead(cur *batch) error {
	// Let the callers already running queue their entries first: one write
	// for many entries costs about what a write for one does.
	for range 3 {
		b.mu.Lock()
		n := len(cur.recs)
		b.mu.Unlock()
		runtime.Gosched()
		b.mu.Lock()
		grew := len(cur.recs) > n
		b.mu.Unlock()
		if !grew {
			break
		}
	}
	b.mu.Lock()
	if b.open == cur {
		b.open = newBatch()
	}
	recs := cur.recs
	b.mu.Unlock()

	cur.err = b.write(recs)

	b.mu.Lock()
	if next := b.open; len(next.recs) > 0 {
		next.lead <- struct{}{}
	} else {
		b.busy = false
	}
	b.mu.Unlock()
	close(cur.done)
	return cur.err
}

// write takes recs to every device: the files first, then the log. When a
// required device refuses, the files that took the batch are cut back.
func (b *Broker) write(recs []*record) error {
	b.devMu.Lock()
	defer b.devMu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	devs := *b.devices.Load()
	if len(devs) == 0 {
		return nil
	}
	b.batches.Add(1)
	b.entries.Add(uint64(len(recs)))
	// recsFor returns the records device d gets: all, but for the rare
	// entry that skips it.
	recsFor := func(d *device) []*record {
		skips := func(r *record) bool { return r.skip == d.cfg.Path }
		if !slices.ContainsFunc(recs, skips) {
			return recs
		}
		return slices.DeleteFunc(slices.Clone(recs), skips)
	}
	var (
		written []*fileSink
		sizes   []int
		failed  []error
		lg      *device
	)
	for _, d := range devs {
		if d.file == nil {
			lg = d
			continue
		}
		lines := b.scratch[:0]
		for _, r := range recsFor(d) {
			lines = append(lines, r.line...)
		}
		b.scratch = lines
		if len(lines) == 0 {
			continue
		}
		if err := d.file.write(lines); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", d.cfg.Path, err))
			continue
		}
		written, sizes = append(written, d.file), append(sizes, len(lines))
	}
	if lg != nil && (len(failed) == 0 || b.opts.RequireAny) {
		rs := recsFor(lg)
		entries := make([]tlog.Entry, len(rs))
		for i, r := range rs {
			entries[i] = tlog.Entry{Leaf: r.leaf, Private: r.private}
		}
		if len(entries) > 0 {
			first, err := lg.log.Append(entries)
			if err != nil {
				failed = append(failed, fmt.Errorf("%s: %w", lg.cfg.Path, err))
			} else {
				for i, r := range rs {
					r.index = first + uint64(i)
				}
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	err := errors.Join(failed...)
	accepted := len(devs) - len(failed)
	if b.opts.RequireAny && accepted > 0 {
		b.log.Error("audit device refused entries; others accepted them", "err", err)
		return nil
	}
	for i, f := range written {
		if uerr := f.undo(sizes[i]); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}
	b.log.Error("audit devices refused a batch; its requests fail", "entries", len(recs), "err", err)
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// newRecord holds line after room for its seed, in the one buffer the log
// keeps privately (seed, then line): no second copy for the log.
func newRecord(line []byte) *record {
	p := make([]byte, leaf.SeedSize+len(line))
	copy(p[leaf.SeedSize:], line)
	return &record{private: p, line: p[leaf.SeedSize:]}
}

// SplitPrivate splits what the log keeps privately for an entry into its
// salt seed and its line.
func SplitPrivate(p []byte) (seed, line []byte, err error) {
	if len(p) < leaf.SeedSize+2 {
		return nil, nil, fmt.Errorf("audit: private entry of %d bytes is too short", len(p))
	}
	return p[:leaf.SeedSize], p[leaf.SeedSize:], nil
}

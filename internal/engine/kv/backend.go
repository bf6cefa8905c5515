package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
)

// DefaultMaxVersions is how many versions of a key are kept when neither the
// key's metadata nor the mount's config sets max_versions (Vault's default).
const DefaultMaxVersions = 10

// lockStripes is the number of per-path write locks.
const lockStripes = 256

// Options configures a Backend. The zero value is ready to use.
type Options struct {
	// Clock returns the current time; nil means time.Now. Tests inject a
	// fake clock to drive delete_version_after and timestamps.
	Clock func() time.Time
	// Logger receives operational messages, never secret values; nil
	// discards them.
	Logger *slog.Logger
	// OnChange, when set, is called after every committed change to a
	// secret (a write, a delete or undelete, a destroy, a metadata change)
	// with the secret's path relative to the mount. The edge agents' sync
	// feed hangs on it. It must not block.
	OnChange func(path string)
}

// Backend is one KV version 2 mount. It is safe for concurrent use.
type Backend struct {
	store    storage.Backend
	onChange func(path string)
	clock    func() time.Time
	log      *slog.Logger
	configMu sync.Mutex
	locks    [lockStripes]sync.RWMutex
}

var _ logical.Handler = (*Backend)(nil)

// New returns the engine for one mount. b must already be confined to the
// mount (a storage.View) and encrypted by the barrier; New does no I/O.
func New(b storage.Backend, opts Options) *Backend {
	kb := &Backend{store: b, clock: opts.Clock, log: opts.Logger, onChange: opts.OnChange}
	if kb.clock == nil {
		kb.clock = time.Now
	}
	if kb.log == nil {
		kb.log = slog.New(slog.DiscardHandler)
	}
	return kb
}

// now returns the current time in Unix nanoseconds.
func (b *Backend) now() int64 { return b.clock().UnixNano() }

// lockFor returns the write lock of the stripe that key hashes to (FNV-1a).
func (b *Backend) lockFor(key string) *sync.RWMutex {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return &b.locks[h%lockStripes]
}

// HandleRequest serves one request; req.Path is relative to the mount
// ("data/app/db", "metadata/", "config").
//
// Read, list and delete requests ignore unknown parameters (query strings
// carry unrelated things); create, update and patch requests refuse unknown
// body fields with an ErrInvalidRequest naming the field.
func (b *Backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if req == nil {
		return nil, logical.InvalidRequest("missing request")
	}
	head, rest, _ := strings.Cut(req.Path, "/")
	switch head {
	case "config":
		if req.Path != "config" {
			break
		}
		return b.handleConfig(ctx, req)
	case "data":
		return b.handleData(ctx, req, rest)
	case "metadata":
		return b.handleMetadata(ctx, req, rest)
	case "delete", "undelete", "destroy":
		return b.handleVersions(ctx, req, head, rest)
	case "subkeys":
		return b.handleSubkeys(ctx, req, rest)
	}
	return nil, fmt.Errorf("%w: %q", logical.ErrUnsupportedPath, req.Path)
}

// ExistenceCheck reports whether a create/update request targets something
// that already exists, so the HTTP layer can ask the policy for "create" or
// "update" as Vault does. Only data/:path and metadata/:path have an
// existence check (the key's metadata exists); for every other path it
// answers true, i.e. the request is an update. An invalid path answers
// false with no error: HandleRequest reports the problem.
func (b *Backend) ExistenceCheck(ctx context.Context, req *logical.Request) (bool, error) {
	head, key, _ := strings.Cut(req.Path, "/")
	if head != "data" && head != "metadata" {
		return true, nil
	}
	if validateKey(key) != nil {
		return false, nil
	}
	m, err := b.loadMeta(ctx, key)
	if err != nil {
		return false, err
	}
	return m != nil, nil
}

func unsupported(req *logical.Request) error {
	return fmt.Errorf("%w: %s on %q", logical.ErrUnsupportedOperation, req.Operation, req.Path)
}

// Storage keys, relative to the mount view.
const (
	configKey     = "config"
	metaPrefix    = "m/"
	versionPrefix = "v/"
)

func metaKey(key string) string { return metaPrefix + key }

// versionKey names the record of version n of key. The version number is
// the last segment and never contains "/", so distinct (key, n) pairs never
// share a storage key.
func versionKey(key string, n uint64) string {
	return versionPrefix + key + "/" + strconv.FormatUint(n, 10)
}

// loadMeta returns the metadata of key, or nil when the key does not exist.
func (b *Backend) loadMeta(ctx context.Context, key string) (*keyMeta, error) {
	raw, err := b.store.Get(ctx, metaKey(key))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kv: read metadata: %w", err)
	}
	m, err := decodeMeta(raw)
	if err != nil {
		b.log.Error("kv: undecodable metadata record", "err", err)
		return nil, fmt.Errorf("kv: read metadata: %w", err)
	}
	return m, nil
}

// loadVersionData returns the JSON data of a non-current version.
func (b *Backend) loadVersionData(ctx context.Context, key string, n uint64) ([]byte, error) {
	raw, err := b.store.Get(ctx, versionKey(key, n))
	if err != nil {
		return nil, fmt.Errorf("kv: read version %d: %w", n, err)
	}
	data, err := decodeVersion(raw)
	if err != nil {
		b.log.Error("kv: undecodable version record", "version", n, "err", err)
		return nil, fmt.Errorf("kv: read version %d: %w", n, err)
	}
	return data, nil
}

// commit applies ops as one transaction; key, when not "", names the
// secret they change, for OnChange.
func (b *Backend) commit(ctx context.Context, key string, ops []storage.Op) error {
	if err := b.store.Txn(ctx, ops); err != nil {
		return fmt.Errorf("kv: write: %w", err)
	}
	if key != "" && b.onChange != nil {
		b.onChange(key)
	}
	return nil
}

// putMetaOp is the op storing m under key.
func putMetaOp(key string, m *keyMeta) storage.Op {
	return storage.Op{Kind: storage.OpPut, Key: metaKey(key), Value: m.encode()}
}

// formatTime renders a stored time as Vault does: RFC 3339 with
// nanoseconds in UTC, or "" when unset.
func formatTime(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

// customOut returns custom metadata for a response: a copy, or nil (JSON
// null) when there is none, as Vault answers.
func customOut(c map[string]string) any {
	if len(c) == 0 {
		return nil
	}
	out := make(map[string]string, len(c))
	for k, v := range c {
		out[k] = v
	}
	return out
}

// versionInfo is the per-version metadata object of data responses.
func versionInfo(v *versionMeta, custom map[string]string) map[string]any {
	return map[string]any{
		"created_time":    formatTime(v.created),
		"custom_metadata": customOut(custom),
		"deletion_time":   formatTime(v.deletion),
		"destroyed":       v.destroyed,
		"version":         int64(v.num),
	}
}

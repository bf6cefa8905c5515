// Package bolt is a durable storage.Backend in a single bbolt file.
//
// All keys live in one bucket of one file. Reads (Get, List) run in their own
// bbolt read transactions, concurrently with each other and with the writer.
//
// Writes use group commit. bbolt allows one write transaction at a time and
// each commit costs an fsync, so one commit per Put would cap durable writes
// at one per fsync. Instead every write request (a Put, Delete or Txn call) is
// validated, then queued for a single committer goroutine. Whenever the
// previous commit finishes, the committer takes everything queued (up to
// Options.MaxBatch requests), applies the requests in order in ONE bbolt
// write transaction, commits it with one fsync, and only then acknowledges
// each caller. There is no timer: a lone writer is committed at once, and
// under load the batch grows by itself to whatever arrived during the
// previous fsync.
//
// Guarantees (those of storage.Backend):
//   - A write returns nil only after the transaction holding it has been
//     committed and fsynced. NoSync is never set.
//   - Each request is atomic: its ops are applied in one transaction, and
//     ops of different requests never interleave.
//   - One bad request cannot fail the others: ops are validated before they
//     are queued, and if a shared transaction still fails (disk full, I/O
//     error) it is rolled back as a whole and each of its requests is retried
//     in a transaction of its own, so only the requests that fail alone get
//     an error.
//   - A request whose context ends while it waits in the queue is dropped,
//     never applied, and returns the context's error. Once the committer has
//     taken a request into a transaction, the caller waits for and gets that
//     transaction's result, whatever its context does.
//   - A process killed at any moment leaves a file that opens cleanly, with
//     every acknowledged write in it: bbolt writes data pages, fsyncs, then
//     flips one of two checksummed meta pages and fsyncs again.
//
// The file is opened with bbolt's hashmap freelist and NoFreelistSync, as
// etcd does: the freelist is not written on each commit but rebuilt by
// scanning the file at open. Data and meta pages are still fsynced on every
// commit, so durability is unchanged; only Open of a large file is slower.
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/edgevault/edgevault/internal/storage"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrInvalidOp is returned by Txn for an op whose Kind is neither OpPut nor
// OpDelete, or whose value is larger than bbolt accepts (bbolt.MaxValueSize).
// The whole Txn is refused and nothing is applied.
var ErrInvalidOp = errors.New("bolt: invalid op")

// bucketName is the one bucket holding every key.
var bucketName = []byte("edgevault")

// Backend is a storage.Backend on a bbolt file. Create it with Open; it is
// safe for concurrent use.
type Backend struct {
	db        *bbolt.DB
	path      string
	opts      Options
	c         *committer
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var (
	_ storage.Backend = (*Backend)(nil)
	_ storage.Closer  = (*Backend)(nil)
)

// Stats counts the work the committer has done since Open.
type Stats struct {
	// Commits is the number of bbolt write transactions committed, each
	// costing one fsync.
	Commits uint64
	// Requests is the number of write requests (Put, Delete and non-empty
	// Txn calls) acknowledged as durable. Requests/Commits is the average
	// group size.
	Requests uint64
}

// Open opens or creates the bbolt file at path (mode 0600) and starts its
// committer. Another process holding the file makes Open fail after
// opts.LockTimeout. Call Close when done.
func Open(path string, opts Options) (*Backend, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errors.New("bolt: open: path is empty")
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)

	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:        opts.LockTimeout,
		FreelistType:   bbolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("bolt: open %s: file is locked by another process: %w", path, err)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in the message
		}
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	})
	if err == nil && created {
		// bbolt fsyncs the new file but not the directory entry naming it.
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	b := &Backend{db: db, path: path, opts: opts, c: newCommitter(db, opts)}
	go b.c.run()
	opts.Logger.Info("bolt storage opened", "path", path, "created", created, "max_batch", opts.MaxBatch)
	return b, nil
}

// syncDir fsyncs a directory so a file just created in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}

// Path returns the file the backend was opened on.
func (b *Backend) Path() string { return b.path }

// Stats returns the committer's counters.
func (b *Backend) Stats() Stats {
	return Stats{Commits: b.c.commits.Load(), Requests: b.c.requests.Load()}
}

// Close stops accepting writes, waits until every write already queued has
// been committed (or has failed) and acknowledged, then closes the file.
// Every method called after Close returns storage.ErrClosed. Calling Close
// again returns the first call's result.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		b.c.stop()
		if err := b.db.Close(); err != nil {
			b.closeErr = fmt.Errorf("bolt: close %s: %w", b.path, err)
		}
		b.opts.Logger.Info("bolt storage closed", "path", b.path,
			"commits", b.c.commits.Load(), "requests", b.c.requests.Load())
	})
	return b.closeErr
}

// usable returns ErrClosed after Close and the context's error once it is done.
func (b *Backend) usable(ctx context.Context, method string) error {
	if b.closed.Load() {
		return storage.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: %s: %w", method, err)
	}
	return nil
}

// readErr maps an error from a read transaction.
func readErr(method string, err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return storage.ErrClosed
	}
	return fmt.Errorf("bolt: %s: %w", method, err)
}

// Get returns a copy of the value stored at key, or storage.ErrNotFound.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("bolt: get: %w", err)
	}
	if err := b.usable(ctx, "get"); err != nil {
		return nil, err
	}
	var out []byte
	found := false
	err := b.db.View(func(tx *bbolt.Tx) error {
		k := []byte(key)
		got, v := tx.Bucket(bucketName).Cursor().Seek(k)
		if !bytes.Equal(got, k) {
			return nil
		}
		found = true
		out = make([]byte, len(v)) // v is bbolt's mmap; valid only inside the tx
		copy(out, v)
		return nil
	})
	if err != nil {
		return nil, readErr("get", err)
	}
	if !found {
		return nil, storage.ErrNotFound
	}
	return out, nil
}

// List returns the names directly under prefix, sorted, one level deep:
// "a/b" and "a/c/d" under "a/" list as "b" and "c/". A prefix nothing is
// stored under lists as an empty, non-nil slice.
//
// It walks the keys with a cursor from Seek(prefix) and, on reaching a
// sub-directory, seeks past all of it, so a listing costs one seek per name
// returned rather than one step per key below prefix.
func (b *Backend) List(ctx context.Context, prefix string) ([]string, error) {
	if err := b.usable(ctx, "list"); err != nil {
		return nil, err
	}
	names := make([]string, 0)
	err := b.db.View(func(tx *bbolt.Tx) error {
		p := []byte(prefix)
		c := tx.Bucket(bucketName).Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); {
			rest := k[len(p):]
			i := bytes.IndexByte(rest, '/')
			if i < 0 {
				names = append(names, string(rest))
				k, _ = c.Next()
				continue
			}
			names = append(names, string(rest[:i+1]))
			// Every key under prefix+rest[:i]+"/" sorts before
			// prefix+rest[:i]+"0", since '0' is the byte after '/'.
			skip := make([]byte, 0, len(p)+i+1)
			skip = append(append(skip, k[:len(p)+i]...), '/'+1)
			k, _ = c.Seek(skip)
		}
		return nil
	})
	if err != nil {
		return nil, readErr("list", err)
	}
	return names, nil
}

// Put stores value at key and returns once it is durable.
func (b *Backend) Put(ctx context.Context, key string, value []byte) error {
	return b.write(ctx, "put", []storage.Op{{Kind: storage.OpPut, Key: key, Value: value}})
}

// Delete removes key and returns once that is durable. Deleting a missing
// key returns nil.
func (b *Backend) Delete(ctx context.Context, key string) error {
	return b.write(ctx, "delete", []storage.Op{{Kind: storage.OpDelete, Key: key}})
}

// Txn applies ops in order, atomically, and returns once they are durable.
// An invalid op anywhere (storage.ErrInvalidKey, ErrInvalidOp) refuses the
// whole Txn before anything is queued. An empty Txn returns nil at once.
func (b *Backend) Txn(ctx context.Context, ops []storage.Op) error {
	return b.write(ctx, "txn", ops)
}

// write validates ops, queues them as one request and waits for its commit.
//
// The ops (and the caller's value slices) are not copied: the caller is
// blocked until the committer is done with them, and bbolt copies values
// into its pages at commit.
func (b *Backend) write(ctx context.Context, method string, ops []storage.Op) error {
	if err := validateOps(ops); err != nil {
		return fmt.Errorf("bolt: %s: %w", method, err)
	}
	if err := b.usable(ctx, method); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	req := newRequest(ops)
	if err := b.c.enqueue(req); err != nil {
		return err
	}
	select {
	case err := <-req.done:
		return wrapWriteErr(method, err)
	case <-ctx.Done():
		if req.abandon() {
			return fmt.Errorf("bolt: %s: not applied: %w", method, ctx.Err())
		}
		// Already in a transaction: its outcome is the answer.
		return wrapWriteErr(method, <-req.done)
	}
}

func wrapWriteErr(method string, err error) error {
	if err == nil || errors.Is(err, storage.ErrClosed) {
		return err
	}
	return fmt.Errorf("bolt: %s: %w", method, err)
}

// checkKey wraps storage.ErrInvalidKey with what is wrong with key, without
// repeating the key itself (it may name a secret's path).
func checkKey(key string) error {
	if storage.ValidateKey(key) == nil {
		return nil
	}
	switch {
	case key == "":
		return fmt.Errorf("key is empty: %w", storage.ErrInvalidKey)
	case len(key) > storage.MaxKeyLen:
		return fmt.Errorf("key is %d bytes, over the %d-byte limit: %w", len(key), storage.MaxKeyLen, storage.ErrInvalidKey)
	default:
		return fmt.Errorf("key contains a NUL byte: %w", storage.ErrInvalidKey)
	}
}

// validateOps checks every op so that a request, once queued, can only fail
// for reasons outside it (I/O), never because of its own content.
func validateOps(ops []storage.Op) error {
	for i, op := range ops {
		if err := checkKey(op.Key); err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
		switch op.Kind {
		case storage.OpPut:
			if int64(len(op.Value)) > bbolt.MaxValueSize {
				return fmt.Errorf("op %d: value is %d bytes, over the %d-byte limit: %w",
					i, len(op.Value), int64(bbolt.MaxValueSize), ErrInvalidOp)
			}
		case storage.OpDelete:
		default:
			return fmt.Errorf("op %d: unknown kind %d: %w", i, op.Kind, ErrInvalidOp)
		}
	}
	return nil
}

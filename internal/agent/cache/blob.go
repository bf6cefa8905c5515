package cache

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/bbolt"
)

// Blobs are small records the agent keeps next to the KV cache, sealed
// with the same key but outside the KV index and its set digest: the lease
// cache's credentials, for instance. They live in a bucket nested in the
// state bucket ("state"/"blobs"), keyed kind 0x00 key, each an envelope of
// kindBlob whose associated data binds the zone, the kind and the key, so a
// blob moved to another key or kind, or edited, fails to open. Blobs are
// read from the file (never kept in memory by the cache) and survive Reset:
// they do not come from the sync stream.
//
// What blobs do not get: the set digest. A blob deleted, or replaced by an
// older authentic copy of the same key, is not detected; whoever stores
// blobs must bound what an old copy can do (lease entries carry their own
// expiry, sealed inside them).

var bucketBlobs = []byte("blobs")

// kindBlob is the record kind of blobs in the associated data.
const kindBlob byte = 'b'

// Limits on blobs.
const (
	// MaxBlobKindLen bounds a blob's kind, in bytes.
	MaxBlobKindLen = 64
	// MaxBlobLen bounds a blob's value.
	MaxBlobLen = 1 << 20
)

// ErrInvalidBlob is returned by PutBlob, GetBlob and DeleteBlob for a kind
// or key that is empty, too long or holds a NUL byte, or a value longer
// than MaxBlobLen. Nothing is changed.
var ErrInvalidBlob = errors.New("cache: invalid blob")

// checkBlob validates a blob's kind and key.
func checkBlob(kind, key string) error {
	switch {
	case kind == "" || len(kind) > MaxBlobKindLen || strings.IndexByte(kind, 0) >= 0:
		return fmt.Errorf("%w: kind %q: 1 to %d bytes without NUL", ErrInvalidBlob, kind, MaxBlobKindLen)
	case key == "" || len(key) > MaxPathLen || strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("%w: kind %q: key of %d bytes: 1 to %d bytes without NUL", ErrInvalidBlob, kind, len(key), MaxPathLen)
	}
	return nil
}

// blobKey is the bbolt key (and the associated data's path) of a blob.
func blobKey(kind, key string) []byte {
	b := make([]byte, 0, len(kind)+1+len(key))
	b = append(b, kind...)
	b = append(b, 0)
	return append(b, key...)
}

// PutBlob stores value under (kind, key), sealed, replacing any previous
// value, and commits it durably before returning.
func (c *Cache) PutBlob(kind, key string, value []byte) error {
	if err := checkBlob(kind, key); err != nil {
		return err
	}
	if len(value) > MaxBlobLen {
		return fmt.Errorf("%w: kind %q: value of %d bytes, at most %d", ErrInvalidBlob, kind, len(value), MaxBlobLen)
	}
	k := blobKey(kind, key)
	env := seal(c.aead, appendAD(nil, kindBlob, c.zone, string(k), 0), value)
	return c.blobUpdate("put blob", kind, func(b *bbolt.Bucket) error { return b.Put(k, env) })
}

// DeleteBlob removes (kind, key); removing a missing blob is not an error.
func (c *Cache) DeleteBlob(kind, key string) error {
	if err := checkBlob(kind, key); err != nil {
		return err
	}
	k := blobKey(kind, key)
	return c.blobUpdate("delete blob", kind, func(b *bbolt.Bucket) error { return b.Delete(k) })
}

// GetBlob returns the value of (kind, key). Errors: ErrNotCached,
// ErrTampered (the record failed authentication; it is left for Blobs to
// drop), ErrInvalidBlob, ErrClosed.
func (c *Cache) GetBlob(kind, key string) ([]byte, error) {
	if err := checkBlob(kind, key); err != nil {
		return nil, err
	}
	c.wmu.Lock() // Release may swap c.db
	defer c.wmu.Unlock()
	if c.isClosed() {
		return nil, ErrClosed
	}
	k := blobKey(kind, key)
	var out []byte
	err := c.db.View(func(tx *bbolt.Tx) error {
		b := blobBucket(tx)
		if b == nil {
			return ErrNotCached
		}
		env := b.Get(k)
		if env == nil {
			return ErrNotCached
		}
		var err error
		out, err = open(c.aead, appendAD(nil, kindBlob, c.zone, string(k), 0), env)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cache: get blob %q: %w", kind, err)
	}
	return out, nil
}

// Blobs calls fn with every blob of kind that authenticates, in key order,
// and deletes (durably, logging their keys) those that do not. An error
// from fn stops the walk and is returned; nothing is deleted then. The
// value passed to fn is fn's to keep. It returns how many were dropped.
func (c *Cache) Blobs(kind string, fn func(key string, value []byte) error) (dropped int, err error) {
	if err := checkBlob(kind, "-"); err != nil {
		return 0, err
	}
	prefix := blobKey(kind, "")
	var bad [][]byte
	err = c.blobUpdate("read blobs", kind, func(b *bbolt.Bucket) error {
		cur := b.Cursor()
		for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
			pt, err := open(c.aead, appendAD(nil, kindBlob, c.zone, string(k), 0), v)
			if err != nil {
				bad = append(bad, bytes.Clone(k))
				c.log.Warn("agent cache: dropping blob that failed authentication", "kind", kind, "key", fmt.Sprintf("%q", k[len(prefix):]), "error", err)
				continue
			}
			if err := fn(string(k[len(prefix):]), pt); err != nil {
				return err
			}
		}
		for _, k := range bad {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(bad), nil
}

// Closed reports whether Close has been called.
func (c *Cache) Closed() bool { return c.isClosed() }

// blobBucket returns the blob bucket of tx, nil if it does not exist yet.
func blobBucket(tx *bbolt.Tx) *bbolt.Bucket {
	sb := tx.Bucket(bucketState)
	if sb == nil {
		return nil
	}
	return sb.Bucket(bucketBlobs)
}

// blobUpdate runs fn on the blob bucket (created if needed) in one
// committed write transaction, serialised with the cache's other writers.
func (c *Cache) blobUpdate(what, kind string, fn func(*bbolt.Bucket) error) (err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() {
		return ErrClosed
	}
	defer func() {
		if r := recover(); r != nil { // bbolt panics on a damaged page
			err = corrupt(c.file, fmt.Errorf("bbolt: %v", r))
		}
	}()
	var size int64
	err = c.db.Update(func(tx *bbolt.Tx) error {
		defer func() { size = tx.Size() }()
		sb := tx.Bucket(bucketState)
		if sb == nil {
			return fmt.Errorf("%s: state bucket missing", c.file)
		}
		b, err := sb.CreateBucketIfNotExists(bucketBlobs)
		if err != nil {
			return err
		}
		return fn(b)
	})
	c.unmap(size)
	if err != nil {
		return fmt.Errorf("cache: %s %q: %w", what, kind, err)
	}
	return nil
}

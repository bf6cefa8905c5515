package tlog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/tlog"
)

// InclusionProof returns the RFC 6962 / RFC 9162 inclusion proof of entry
// index in the tree of the given size, which must not exceed the latest
// checkpoint's size. Check it with tlog.CheckRecord against the root of that
// size. Every tile it reads is authenticated up to the checkpoint's root; a
// missing or altered tile is ErrCorrupt naming the tile.
func (l *Log) InclusionProof(index, size uint64) (tlog.RecordProof, error) {
	p, err := l.snapshot()
	if err != nil {
		return nil, err
	}
	if size > p.cp.Size || index >= size {
		return nil, fmt.Errorf("tlog: inclusion proof of entry %d in tree %d (checkpoint size %d): %w", index, size, p.cp.Size, ErrOutOfRange)
	}
	proof, err := tlog.ProveRecord(int64(size), int64(index), &tileReader{dir: l.dir, pub: p})
	if err != nil {
		return nil, fmt.Errorf("tlog: inclusion proof of entry %d in tree %d: %w", index, size, err)
	}
	return proof, nil
}

// ConsistencyProof returns the RFC 6962 / RFC 9162 proof that the tree of
// oldSize is a prefix of the tree of newSize (newSize at most the latest
// checkpoint's size). The proof between equal sizes, or from size 0, is empty.
func (l *Log) ConsistencyProof(oldSize, newSize uint64) (tlog.TreeProof, error) {
	p, err := l.snapshot()
	if err != nil {
		return nil, err
	}
	if oldSize > newSize || newSize > p.cp.Size {
		return nil, fmt.Errorf("tlog: consistency proof %d → %d (checkpoint size %d): %w", oldSize, newSize, p.cp.Size, ErrOutOfRange)
	}
	if oldSize == 0 || oldSize == newSize {
		return tlog.TreeProof{}, nil
	}
	proof, err := tlog.ProveTree(int64(newSize), int64(oldSize), &tileReader{dir: l.dir, pub: p})
	if err != nil {
		return nil, fmt.Errorf("tlog: consistency proof %d → %d: %w", oldSize, newSize, err)
	}
	return proof, nil
}

// TreeHash returns the root hash of the tree of the given size (at most the
// latest checkpoint's size), computed from authenticated tiles.
func (l *Log) TreeHash(size uint64) (tlog.Hash, error) {
	p, err := l.snapshot()
	if err != nil {
		return tlog.Hash{}, err
	}
	if size > p.cp.Size {
		return tlog.Hash{}, fmt.Errorf("tlog: tree hash of size %d (checkpoint size %d): %w", size, p.cp.Size, ErrOutOfRange)
	}
	if size == p.cp.Size {
		return p.cp.Hash, nil
	}
	if size == 0 {
		return edgeRoot(0, nil), nil
	}
	h, err := tlog.TreeHash(int64(size), &tileReader{dir: l.dir, pub: p})
	if err != nil {
		return tlog.Hash{}, fmt.Errorf("tlog: tree hash of size %d: %w", size, err)
	}
	return h, nil
}

func (l *Log) snapshot() (*published, error) {
	if err := l.checkOpen(); err != nil {
		return nil, err
	}
	p := l.pub.Load()
	if p == nil {
		return nil, fmt.Errorf("tlog: no checkpoint yet: %w", ErrNotFound)
	}
	return p, nil
}

// tileReader is a tlog.HashReader over the tiles of one published
// checkpoint. A partial tile must equal the right edge the checkpoint was
// signed over; a full tile must hash to its entry in its parent tile, which
// is authenticated the same way, so every hash returned is bound to the
// checkpoint's root. Tiles are read once per proof.
type tileReader struct {
	dir   string
	pub   *published
	tiles map[tileID][]byte
}

// ReadHashes implements tlog.HashReader.
func (r *tileReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	size := r.pub.cp.Size
	out := make([]tlog.Hash, len(indexes))
	for i, index := range indexes {
		t := tlog.TileForIndex(tileHeight, index)
		w := tileWidthAt(size, t.L, uint64(t.N))
		if w < t.W {
			return nil, fmt.Errorf("hash %d is not in the tree of size %d: %w", index, size, ErrOutOfRange)
		}
		data, err := r.tile(tileID{t.L, uint64(t.N), w})
		if err != nil {
			return nil, err
		}
		t.W = w
		if out[i], err = tlog.HashFromTile(t, data, index); err != nil {
			return nil, fmt.Errorf("%s: %v: %w", tileID{t.L, uint64(t.N), w}.path(), err, ErrCorrupt)
		}
	}
	return out, nil
}

// tile reads and authenticates one hash tile.
func (r *tileReader) tile(t tileID) ([]byte, error) {
	if d, ok := r.tiles[t]; ok {
		return d, nil
	}
	p := t.path()
	data, err := os.ReadFile(filepath.Join(r.dir, filepath.FromSlash(p)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is missing: %w", p, ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(data) != t.width*hashSize {
		return nil, fmt.Errorf("%s has %d bytes, want %d: %w", p, len(data), t.width*hashSize, ErrCorrupt)
	}
	if t.width < tileWidth {
		if t.level >= len(r.pub.edge) || !bytes.Equal(data, r.pub.edge[t.level]) {
			return nil, fmt.Errorf("%s differs from the right edge of checkpoint %d: %w", p, r.pub.cp.Size, ErrCorrupt)
		}
	} else {
		parent := tileID{t.level + 1, t.n / tileWidth, tileWidthAt(r.pub.cp.Size, t.level+1, t.n/tileWidth)}
		pdata, err := r.tile(parent)
		if err != nil {
			return nil, err
		}
		pos := int(t.n%tileWidth) * hashSize
		if h := subtreeRoot(data); !bytes.Equal(h[:], pdata[pos:pos+hashSize]) {
			return nil, fmt.Errorf("%s does not hash to its entry in %s: %w", p, parent.path(), ErrCorrupt)
		}
	}
	if r.tiles == nil {
		r.tiles = map[tileID][]byte{}
	}
	r.tiles[t] = data
	return data, nil
}

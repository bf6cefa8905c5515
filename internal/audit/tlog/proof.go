package tlog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

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
	proof, err := tlog.ProveRecord(int64(size), int64(index), &tileReader{dir: l.dir, pub: p, cache: &l.tiles})
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
	proof, err := tlog.ProveTree(int64(newSize), int64(oldSize), &tileReader{dir: l.dir, pub: p, cache: &l.tiles})
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
	h, err := tlog.TreeHash(int64(size), &tileReader{dir: l.dir, pub: p, cache: &l.tiles})
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

// tileNodes holds every stored hash a tile yields: nodes[r][i] is the root
// of the i-th run of 2^r consecutive hashes of the tile (nodes[0] is the
// tile itself); for a full tile nodes[tileHeight][0] is its subtree root.
type tileNodes [][]tlog.Hash

func newTileNodes(data []byte) tileNodes {
	cur := make([]tlog.Hash, len(data)/hashSize)
	for i := range cur {
		cur[i] = tlog.Hash(data[i*hashSize : (i+1)*hashSize])
	}
	nodes := tileNodes{cur}
	for len(cur) >= 2 {
		next := make([]tlog.Hash, len(cur)/2)
		for i := range next {
			next[i] = tlog.NodeHash(cur[2*i], cur[2*i+1])
		}
		nodes = append(nodes, next)
		cur = next
	}
	return nodes
}

// maxCachedTiles bounds the cache of authenticated upper-level tiles.
const maxCachedTiles = 4096

// tileCache keeps authenticated full tiles of level ≥ 1. A full tile never
// changes once authenticated against a checkpoint, so its hashes stay valid
// for every later checkpoint; level-0 tiles are not cached, so every proof
// re-reads and re-authenticates its own.
type tileCache struct {
	mu sync.Mutex
	m  map[tileID]tileNodes
}

func (c *tileCache) get(t tileID) (tileNodes, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.m[t]
	return n, ok
}

func (c *tileCache) put(t tileID, n tileNodes) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedTiles {
		c.m = map[tileID]tileNodes{}
	}
	c.m[t] = n
}

// tileReader is a tlog.HashReader over the tiles of one published
// checkpoint. A partial tile must equal the right edge the checkpoint was
// signed over (its file is compared once per checkpoint, then the
// authenticated copy in memory is used); a full tile must hash to its entry in its parent tile, which
// is authenticated the same way, so every hash returned is bound to the
// checkpoint's root.
type tileReader struct {
	dir   string
	pub   *published
	cache *tileCache
	tiles map[tileID]tileNodes
}

// ReadHashes implements tlog.HashReader.
func (r *tileReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	size := r.pub.cp.Size
	out := make([]tlog.Hash, len(indexes))
	for i, index := range indexes {
		level, n := tlog.SplitStoredHashIndex(index)
		L, sub := level/tileHeight, level%tileHeight
		tn := uint64(n) << sub >> tileHeight
		local := uint64(n) - tn<<(tileHeight-sub)
		w := tileWidthAt(size, L, tn)
		if local >= uint64(w>>sub) {
			return nil, fmt.Errorf("hash %d is not in the tree of size %d: %w", index, size, ErrOutOfRange)
		}
		nodes, err := r.tile(tileID{L, tn, w})
		if err != nil {
			return nil, err
		}
		out[i] = nodes[sub][local]
	}
	return out, nil
}

// tile reads and authenticates one hash tile.
func (r *tileReader) tile(t tileID) (tileNodes, error) {
	if nodes, ok := r.tiles[t]; ok {
		return nodes, nil
	}
	if t.level > 0 && t.width == tileWidth {
		if nodes, ok := r.cache.get(t); ok {
			return nodes, nil
		}
	}
	partial := t.width < tileWidth
	if partial && t.level < len(r.pub.edge) && r.pub.edgeChecked[t.level].Load() {
		return r.pub.edgeNodes[t.level], nil
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
	var nodes tileNodes
	if t.width < tileWidth {
		if t.level >= len(r.pub.edge) || !bytes.Equal(data, r.pub.edge[t.level]) {
			return nil, fmt.Errorf("%s differs from the right edge of checkpoint %d: %w", p, r.pub.cp.Size, ErrCorrupt)
		}
		nodes = r.pub.edgeNodes[t.level]
		r.pub.edgeChecked[t.level].Store(true)
	} else {
		nodes = newTileNodes(data)
		parent := tileID{t.level + 1, t.n / tileWidth, tileWidthAt(r.pub.cp.Size, t.level+1, t.n/tileWidth)}
		pnodes, err := r.tile(parent)
		if err != nil {
			return nil, err
		}
		if nodes[tileHeight][0] != pnodes[0][t.n%tileWidth] {
			return nil, fmt.Errorf("%s does not hash to its entry in %s: %w", p, parent.path(), ErrCorrupt)
		}
		if t.level > 0 {
			r.cache.put(t, nodes)
		}
	}
	if r.tiles == nil {
		r.tiles = map[tileID]tileNodes{}
	}
	r.tiles[t] = nodes
	return nodes, nil
}

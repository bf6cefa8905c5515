package tlog

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

const (
	tileHeight = 8
	tileWidth  = 1 << tileHeight // hashes (or entries) in a full tile
	hashSize   = tlog.HashSize
	// entriesLevel stands for the entry bundles in tile coordinates.
	entriesLevel = -1
	maxLevel     = 63
)

// tileID names a tile: level (entriesLevel for entry bundles), number and
// width (tileWidth for a full tile).
type tileID struct {
	level int
	n     uint64
	width int
}

// path returns the tile's path relative to Dir, in tlog-tiles form.
func (t tileID) path() string {
	var b strings.Builder
	b.WriteString("tile/")
	if t.level == entriesLevel {
		b.WriteString("entries")
	} else {
		b.WriteString(strconv.Itoa(t.level))
	}
	b.WriteByte('/')
	b.WriteString(encodeTileIndex(t.n))
	if t.width < tileWidth {
		b.WriteString(".p/")
		b.WriteString(strconv.Itoa(t.width))
	}
	return b.String()
}

// encodeTileIndex writes n in groups of three digits, all but the last
// prefixed with "x": 1234067 → "x001/x234/067".
func encodeTileIndex(n uint64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	return s
}

// parseTilePath parses a tlog-tiles path ("tile/0/x001/234",
// "tile/entries/005.p/7"). Only the canonical spelling is accepted, so a
// parsed path can be joined to Dir safely.
func parseTilePath(p string) (tileID, error) {
	bad := func(why string) (tileID, error) {
		return tileID{}, fmt.Errorf("tile path %q: %s: %w", p, why, ErrNotFound)
	}
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return bad("does not start with tile/")
	}
	lv, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no tile number")
	}
	var t tileID
	if lv == "entries" {
		t.level = entriesLevel
	} else {
		l, err := strconv.Atoi(lv)
		if err != nil || l < 0 || l > maxLevel || strconv.Itoa(l) != lv {
			return bad("bad level")
		}
		t.level = l
	}
	t.width = tileWidth
	if num, w, ok := strings.Cut(rest, ".p/"); ok {
		wi, err := strconv.Atoi(w)
		if err != nil || wi < 1 || wi >= tileWidth || strconv.Itoa(wi) != w {
			return bad("bad partial width")
		}
		t.width = wi
		rest = num
	}
	parts := strings.Split(rest, "/")
	if len(parts) > 7 { // 7 groups of 3 digits hold any uint64 below 10^21
		return bad("tile number too long")
	}
	var n uint64
	for i, part := range parts {
		digits := part
		if i < len(parts)-1 {
			var ok bool
			if digits, ok = strings.CutPrefix(part, "x"); !ok {
				return bad("bad tile number")
			}
		}
		if len(digits) != 3 || digits[0] < '0' || digits[0] > '9' || digits[1] < '0' || digits[1] > '9' || digits[2] < '0' || digits[2] > '9' {
			return bad("bad tile number")
		}
		d := uint64(digits[0]-'0')*100 + uint64(digits[1]-'0')*10 + uint64(digits[2]-'0')
		if n > (1<<64-1-d)/1000 {
			return bad("tile number overflows")
		}
		n = n*1000 + d
	}
	t.n = n
	if encodeTileIndex(n) != rest {
		return bad("non-canonical tile number")
	}
	return t, nil
}

// subtreeRoot returns the Merkle root of a power-of-two run of hashes
// (concatenated in data).
func subtreeRoot(data []byte) tlog.Hash {
	n := len(data) / hashSize
	var buf [tileWidth]tlog.Hash
	hs := buf[:0]
	if n > tileWidth {
		hs = make([]tlog.Hash, 0, n)
	}
	for i := 0; i < n; i++ {
		hs = append(hs, tlog.Hash(data[i*hashSize:(i+1)*hashSize]))
	}
	for len(hs) > 1 {
		for i := 0; i < len(hs)/2; i++ {
			hs[i] = tlog.NodeHash(hs[2*i], hs[2*i+1])
		}
		hs = hs[:len(hs)/2]
	}
	return hs[0]
}

// builder holds the right edge of the tree: for each tile level the hashes
// of its incomplete tile, and the leaves of the incomplete entry bundle.
// Feeding it leaves emits every tile that becomes full; partials lists the
// partial tiles of the current size. The same code builds the log and
// re-derives it in VerifyDir.
type builder struct {
	size   uint64
	levels [][]byte // levels[L]: concatenated hashes of the incomplete tile at level L
	bundle []byte   // encoded leaves of the incomplete entry bundle
}

// emitFunc receives a tile and its contents; data is only valid during the call.
type emitFunc func(t tileID, data []byte) error

func (b *builder) clone() *builder {
	c := &builder{size: b.size, bundle: append([]byte(nil), b.bundle...)}
	c.levels = make([][]byte, len(b.levels))
	for i, l := range b.levels {
		c.levels[i] = append(make([]byte, 0, tileWidth*hashSize), l...)
	}
	return c
}

// add appends one leaf, emitting the tiles it completes.
func (b *builder) add(leaf []byte, emit emitFunc) error {
	return b.addHashed(leaf, tlog.RecordHash(leaf), emit)
}

func (b *builder) addHashed(leaf []byte, h tlog.Hash, emit emitFunc) error {
	b.bundle = append(b.bundle, byte(len(leaf)>>8), byte(len(leaf)))
	b.bundle = append(b.bundle, leaf...)
	b.size++
	if b.size%tileWidth == 0 {
		if err := emit(tileID{entriesLevel, b.size/tileWidth - 1, tileWidth}, b.bundle); err != nil {
			return err
		}
		b.bundle = b.bundle[:0]
	}
	for level := 0; ; level++ {
		if level == len(b.levels) {
			b.levels = append(b.levels, make([]byte, 0, tileWidth*hashSize))
		}
		b.levels[level] = append(b.levels[level], h[:]...)
		if len(b.levels[level]) < tileWidth*hashSize {
			return nil
		}
		count := b.size >> (tileHeight * level) // hashes stored at this level
		if err := emit(tileID{level, count/tileWidth - 1, tileWidth}, b.levels[level]); err != nil {
			return err
		}
		h = subtreeRoot(b.levels[level])
		b.levels[level] = b.levels[level][:0]
	}
}

// partials calls emit for every partial tile of the current size.
func (b *builder) partials(emit emitFunc) error {
	if w := int(b.size % tileWidth); w > 0 {
		if err := emit(tileID{entriesLevel, b.size / tileWidth, w}, b.bundle); err != nil {
			return err
		}
	}
	for level, l := range b.levels {
		if w := len(l) / hashSize; w > 0 {
			count := b.size >> (tileHeight * level)
			if err := emit(tileID{level, count / tileWidth, w}, l); err != nil {
				return err
			}
		}
	}
	return nil
}

// edge returns a copy of the incomplete hash tiles, level by level.
func (b *builder) edge() [][]byte {
	e := make([][]byte, len(b.levels))
	for i, l := range b.levels {
		e[i] = append([]byte(nil), l...)
	}
	return e
}

// edgeRoot computes the RFC 6962 root of a tree from its right edge: the
// incomplete tile at each level splits into perfect subtrees by the bits of
// its width; folding those subtrees from the right gives the root.
func edgeRoot(size uint64, levels [][]byte) tlog.Hash {
	if size == 0 {
		return sha256.Sum256(nil)
	}
	var nodes []tlog.Hash
	for level := len(levels) - 1; level >= 0; level-- {
		l := levels[level]
		w := len(l) / hashSize
		off := 0
		for r := tileHeight - 1; r >= 0; r-- {
			if w&(1<<r) != 0 {
				nodes = append(nodes, subtreeRoot(l[off*hashSize:(off+1<<r)*hashSize]))
				off += 1 << r
			}
		}
	}
	root := nodes[len(nodes)-1]
	for i := len(nodes) - 2; i >= 0; i-- {
		root = tlog.NodeHash(nodes[i], root)
	}
	return root
}

func (b *builder) root() tlog.Hash { return edgeRoot(b.size, b.levels) }

// tileWidthAt returns the width of tile n at a level for a tree of size:
// tileWidth when the tile is full, 0 when it does not exist.
func tileWidthAt(size uint64, level int, n uint64) int {
	var count uint64
	if level == entriesLevel {
		count = size
	} else {
		count = size >> (tileHeight * level)
	}
	switch {
	case n < count/tileWidth:
		return tileWidth
	case n == count/tileWidth:
		return int(count % tileWidth)
	}
	return 0
}

package tlog

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"golang.org/x/mod/sumdb/tlog"
)

// leafHash is the RFC 6962 leaf hash SHA-256(0x00 || leaf).
func leafHash(leaf []byte) tlog.Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(leaf)
	var out tlog.Hash
	h.Sum(out[:0])
	return out
}

// syncfsThreshold: above this many files in one integration, one syncfs(2)
// of the file system is cheaper than an fsync per file.
const syncfsThreshold = 32

// tileWriter writes tiles under root and makes them durable in sync.
type tileWriter struct {
	root  string
	known map[string]bool // directories known to exist (shared across integrations)
	files []*os.File
	dirty map[string]bool // directories whose entries changed
	full  []tileID        // full tiles written
}

// write writes one tile (creating or overwriting the file) without syncing.
func (w *tileWriter) write(t tileID, data []byte) error {
	rel := t.path()
	if err := w.mkdirs(path.Dir(rel)); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(w.root, filepath.FromSlash(rel)), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	w.files = append(w.files, f)
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	w.markDirty(path.Dir(rel))
	if t.width == tileWidth {
		w.full = append(w.full, t)
	}
	return nil
}

func (w *tileWriter) markDirty(dir string) {
	if w.dirty == nil {
		w.dirty = map[string]bool{}
	}
	w.dirty[dir] = true
}

// mkdirs creates dir (relative, slash-separated) and its parents, marking
// the parents of new directories dirty.
func (w *tileWriter) mkdirs(dir string) error {
	if dir == "." || w.known[dir] {
		return nil
	}
	if err := w.mkdirs(path.Dir(dir)); err != nil {
		return err
	}
	err := os.Mkdir(filepath.Join(w.root, filepath.FromSlash(dir)), 0o755)
	if err != nil && !os.IsExist(err) {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	if err == nil {
		w.markDirty(path.Dir(dir))
	}
	w.known[dir] = true
	return nil
}

// sync makes every written tile and directory entry durable and closes the files.
func (w *tileWriter) sync() error {
	defer w.abandon()
	if len(w.files) > syncfsThreshold {
		if err := unix.Syncfs(int(w.files[0].Fd())); err != nil {
			return fmt.Errorf("syncfs: %w", err)
		}
		return nil
	}
	for _, f := range w.files {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", f.Name(), err)
		}
	}
	for d := range w.dirty {
		if err := syncDir(filepath.Join(w.root, filepath.FromSlash(d))); err != nil {
			return err
		}
	}
	return nil
}

// abandon closes the files without syncing.
func (w *tileWriter) abandon() {
	for _, f := range w.files {
		f.Close()
	}
	w.files = nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// writeAtomic replaces dir/name with data: temporary file, fsync, rename,
// directory fsync.
func writeAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("rename %s: %w", name, err)
	}
	return syncDir(dir)
}

package tlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Report is the result of VerifyDir.
type Report struct {
	Size           uint64    // size in the checkpoint
	Root           tlog.Hash // root hash in the checkpoint
	JournalEntries uint64    // intact entries in the journal
	JournalTail    string    // why the journal walk stopped early ("" at a clean end)
	Problems       []Problem // everything found wrong; empty when the log is sound
}

// OK reports whether VerifyDir found no problem.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Problem is one inconsistency found by VerifyDir.
type Problem struct {
	What  string // "checkpoint", "journal", "tile", "entry", "root"
	Where string // the file, tile path or entry index at fault
	Why   string
}

// String formats the problem as "where: why".
func (p Problem) String() string { return p.Where + ": " + p.Why }

// maxEntryProblems bounds the differing entries listed for one bundle.
const maxEntryProblems = 8

// VerifyDir re-reads everything in dir without a running Log: the
// checkpoint's signature (with v), the journal's checksums and sequence,
// every hash tile and entry bundle against what the journal's leaves
// produce, the partial tiles of the checkpoint's size, the root against the
// checkpoint, and the journal index. Problems are collected in the report;
// the error is only for being unable to read dir at all.
func VerifyDir(dir string, v note.Verifier) (*Report, error) {
	rep := &Report{}
	add := func(what, where, why string, args ...any) {
		rep.Problems = append(rep.Problems, Problem{What: what, Where: where, Why: fmt.Sprintf(why, args...)})
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("tlog: verify %s: %w", dir, err)
	}

	// Checkpoint: signature first; if it fails, still check the rest against
	// the unverified text so the report is complete.
	signed, err := os.ReadFile(filepath.Join(dir, checkpointName))
	var cp Checkpoint
	switch {
	case errors.Is(err, os.ErrNotExist):
		add("checkpoint", checkpointName, "is missing")
	case err != nil:
		return nil, fmt.Errorf("tlog: verify %s: %w", dir, err)
	default:
		cp, err = ParseCheckpoint(signed, v)
		if err != nil {
			add("checkpoint", checkpointName, "%s", strings.TrimPrefix(err.Error(), "checkpoint: "))
			if text, _, ok := bytes.Cut(signed, []byte("\n\n")); ok {
				if o, s, h, perr := parseCheckpointText(string(text) + "\n"); perr == nil {
					cp = Checkpoint{Origin: o, Size: s, Hash: h}
				}
			}
		}
	}
	rep.Size, rep.Root = cp.Size, cp.Hash

	// Walk the journal once, rebuilding every tile of the checkpoint's tree
	// and comparing with the files.
	b := &builder{}
	emit := func(t tileID, data []byte) error {
		checkTile(dir, t, data, add)
		return nil
	}
	var offsets []int64
	off := int64(0)
	n, tail, err := ReadJournal(dir, func(i uint64, leaf, private []byte) error {
		if i%indexEvery == 0 {
			offsets = append(offsets, off)
		}
		off += int64(recordSize(leaf, private))
		if i < cp.Size {
			return b.add(leaf, emit)
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("tlog: verify %s: %w", dir, err)
	}
	if errors.Is(err, ErrNotFound) {
		add("journal", journalName, "is missing")
	}
	rep.JournalEntries, rep.JournalTail = n, tail
	if n < cp.Size {
		why := "ends"
		if tail != "" {
			why = tail
		}
		add("journal", journalName, "holds %d intact entries but the checkpoint covers %d (%s)", n, cp.Size, why)
		return rep, nil
	}
	if err := b.partials(emit); err != nil {
		return nil, err
	}
	if root := b.root(); root != cp.Hash && signed != nil {
		add("root", checkpointName, "root of the journal's first %d leaves is %v, checkpoint says %v", cp.Size, root, cp.Hash)
	}

	// The sparse index may lag (it is rebuilt on Open) but must not lie.
	raw, err := os.ReadFile(filepath.Join(dir, indexName))
	if err == nil {
		for k := 0; k+8 <= len(raw) && k/8 < len(offsets); k += 8 {
			if got := int64(binary.BigEndian.Uint64(raw[k:])); got != offsets[k/8] {
				add("journal", indexName, "entry %d: offset %d, journal has it at %d", k/8*indexEvery, got, offsets[k/8])
				break
			}
		}
	}
	return rep, nil
}

// checkTile compares the tile file for t with the expected contents.
func checkTile(dir string, t tileID, want []byte, add func(what, where, why string, args ...any)) {
	p := t.path()
	got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
	fromFull := false
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && t.width < tileWidth {
			// A partial may be gone once the full tile exists.
			full := tileID{t.level, t.n, tileWidth}
			if fg, ferr := os.ReadFile(filepath.Join(dir, filepath.FromSlash(full.path()))); ferr == nil && len(fg) >= len(want) {
				got, err, fromFull = fg[:len(want)], nil, true
				if t.level == entriesLevel {
					got = fg // compared entry by entry below
				}
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				add("tile", p, "is missing")
			} else {
				add("tile", p, "unreadable: %v", err)
			}
			return
		}
	}
	if t.level != entriesLevel {
		if !bytes.Equal(got, want) {
			add("tile", p, "differs from the hashes recomputed from the journal")
		}
		return
	}
	// Entry bundle: say which entries differ.
	first := t.n * tileWidth
	gl, gerr := splitBundle(got)
	wl, _ := splitBundle(want)
	if gerr != nil {
		add("tile", p, "malformed entry bundle: %v", gerr)
		return
	}
	if len(gl) < len(wl) {
		add("tile", p, "holds %d entries, want %d", len(gl), len(wl))
		return
	}
	reported := 0
	for i := range wl {
		if !bytes.Equal(gl[i], wl[i]) {
			if reported++; reported > maxEntryProblems {
				add("entry", p, "more entries differ")
				return
			}
			add("entry", fmt.Sprintf("entry %d", first+uint64(i)), "leaf in %s differs from the journal", p)
		}
	}
	if len(gl) > len(wl) && !fromFull {
		add("tile", p, "holds %d entries, want %d", len(gl), len(wl))
	}
}

// splitBundle splits an entry bundle into its leaves.
func splitBundle(data []byte) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, fmt.Errorf("truncated length after %d entries", len(out))
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, fmt.Errorf("entry %d: length %d exceeds the bundle", len(out), n)
		}
		out = append(out, data[2:2+n])
		data = data[2+n:]
	}
	return out, nil
}

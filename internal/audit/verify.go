package audit

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/edgevault/edgevault/internal/audit/leaf"
	"github.com/edgevault/edgevault/internal/audit/tlog"
)

// Problem kinds a verification reports.
const (
	ProblemLog       = "log"       // the transparency log itself is damaged (tile, journal, checkpoint)
	ProblemMissing   = "missing"   // an entry of the log is not in the files
	ProblemExtra     = "extra"     // a line of the files is not in the log
	ProblemAltered   = "altered"   // a line differs from the log's entry at its place
	ProblemReordered = "reordered" // a line is in the log, but out of order
	ProblemTruncated = "truncated" // the last line has no newline: the file was cut
)

// Problem is one disagreement found by Verify.
type Problem struct {
	Kind   string `json:"kind"`
	Index  int64  `json:"index"`          // log index, -1 when none
	Line   int    `json:"line,omitempty"` // 1-based line number in the files, 0 when none
	Detail string `json:"detail"`
}

// Report is the outcome of Verify.
type Report struct {
	LogSize    uint64    `json:"log_size"`    // entries in the log's journal
	Checkpoint uint64    `json:"checkpoint"`  // entries covered by the signed checkpoint
	Lines      int       `json:"file_lines"`  // lines read from the files
	First      int64     `json:"first_index"` // log index of the files' first line, -1 when none matched
	Problems   []Problem `json:"problems"`
}

// OK reports whether nothing was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify re-reads the whole transparency log in logDir (checkpoint
// signature, tiles, journal, every leaf recomputed from its entry) and the
// file device's files, in order (rotated files first), and reports every
// entry that is missing from the files, extra, reordered or altered. The
// files must hold every entry from log index from on (0: the whole log;
// older files rotated away: the index their successor starts at). A
// negative from accepts files that start anywhere (their first recognised
// line), which cannot notice lines lost at the head.
func Verify(logDir string, v note.Verifier, files []string, from int64) (*Report, error) {
	rep := &Report{First: -1}
	if from >= 0 {
		rep.First = from
	}
	dirRep, err := tlog.VerifyDir(logDir, v)
	if err != nil {
		return nil, err
	}
	rep.Checkpoint = dirRep.Size
	for _, p := range dirRep.Problems {
		rep.Problems = append(rep.Problems, Problem{Kind: ProblemLog, Index: -1, Detail: p.String()})
	}
	// The log's entries: line hash → first index, and each index's line
	// hash. Identical lines (rare: an agent's batch logged twice) chain
	// from one index to the next in sameLine.
	byHash := map[[32]byte]int64{}
	sameLine := map[int64]int64{}
	var hashes [][32]byte
	_, tail, err := tlog.ReadJournal(logDir, func(index uint64, lf, private []byte) error {
		seed, line, err := SplitPrivate(private)
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{Kind: ProblemLog, Index: int64(index), Detail: err.Error()})
			hashes = append(hashes, [32]byte{})
			return nil
		}
		line = bytes.TrimSuffix(line, []byte{'\n'})
		if fields, ferr := leaf.Fields(line); ferr != nil {
			rep.Problems = append(rep.Problems, Problem{Kind: ProblemLog, Index: int64(index), Detail: "journal entry: " + ferr.Error()})
		} else if want, cerr := leaf.Commit(fields, seed); cerr != nil || !bytes.Equal(want, lf) {
			rep.Problems = append(rep.Problems, Problem{Kind: ProblemLog, Index: int64(index), Detail: "the journal's entry does not match its leaf: the journal was edited"})
		}
		h := sha256.Sum256(line)
		if first, ok := byHash[h]; ok {
			for {
				n, ok := sameLine[first]
				if !ok {
					break
				}
				first = n
			}
			sameLine[first] = int64(index)
		} else {
			byHash[h] = int64(index)
		}
		hashes = append(hashes, h)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the log's journal: %w", err)
	}
	if tail != "" {
		rep.Problems = append(rep.Problems, Problem{Kind: ProblemLog, Index: int64(len(hashes)), Detail: "journal: " + tail})
	}
	rep.LogSize = uint64(len(hashes))

	var (
		next    int64 = from // the log index the next line should have; -1: not known yet
		pending []int        // line numbers not found in the log, since the last match
		seen    = map[int64]bool{}
		lineNo  int
	)
	// settle accounts for the log entries [next, upto) that no line matched:
	// as many as there are unmatched lines are "altered", the rest missing.
	settle := func(upto int64) {
		if next < 0 {
			for _, ln := range pending {
				rep.Problems = append(rep.Problems, Problem{Kind: ProblemExtra, Index: -1, Line: ln, Detail: "line is not an entry of the log"})
			}
			pending = pending[:0]
			return
		}
		for i := next; i < upto; i++ {
			if len(pending) > 0 {
				rep.Problems = append(rep.Problems, Problem{Kind: ProblemAltered, Index: i, Line: pending[0], Detail: fmt.Sprintf("line %d differs from log entry %d", pending[0], i)})
				pending = pending[1:]
				continue
			}
			rep.Problems = append(rep.Problems, Problem{Kind: ProblemMissing, Index: i, Detail: fmt.Sprintf("log entry %d is not in the files", i)})
		}
		for _, ln := range pending {
			rep.Problems = append(rep.Problems, Problem{Kind: ProblemExtra, Index: -1, Line: ln, Detail: "line is not an entry of the log"})
		}
		pending = pending[:0]
	}
	for _, path := range files {
		err := ReadLines(path, func(line []byte, complete bool) error {
			lineNo++
			if !complete {
				rep.Problems = append(rep.Problems, Problem{Kind: ProblemTruncated, Index: -1, Line: lineNo, Detail: fmt.Sprintf("%s: the last line has no newline: the file was cut", path)})
			}
			idx, ok := byHash[sha256.Sum256(line)]
			for ok && seen[idx] {
				n, more := sameLine[idx]
				if !more {
					break
				}
				idx = n
			}
			switch {
			case !ok:
				pending = append(pending, lineNo)
			case seen[idx]:
				rep.Problems = append(rep.Problems, Problem{Kind: ProblemExtra, Index: idx, Line: lineNo, Detail: fmt.Sprintf("line repeats log entry %d", idx)})
			case next >= 0 && idx < next:
				rep.Problems = append(rep.Problems, Problem{Kind: ProblemReordered, Index: idx, Line: lineNo, Detail: fmt.Sprintf("log entry %d appears after later entries", idx)})
				seen[idx] = true
			default:
				if next < 0 {
					rep.First = idx - int64(len(pending))
					if rep.First < 0 {
						rep.First = 0
					}
					next = rep.First
				}
				settle(idx)
				seen[idx] = true
				next = idx + 1
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
	rep.Lines = lineNo
	if len(files) == 0 {
		return rep, nil // the log alone
	}
	if next >= 0 {
		settle(int64(len(hashes)))
	} else {
		settle(0)
	}
	// Entries reported missing that a reordered line holds are not missing.
	out := rep.Problems[:0]
	for _, p := range rep.Problems {
		if p.Kind == ProblemMissing && seen[p.Index] {
			continue
		}
		out = append(out, p)
	}
	rep.Problems = out
	return rep, nil
}

package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// fileSink appends entry lines to a file, Vault's file audit device. A
// batch is written with one write(2); a batch that fails (a full disk) is
// cut off again, so the file only ever holds whole lines. Reopen starts a new
// file at the same path after logrotate moved the old one away.
type fileSink struct {
	path string
	mu   sync.Mutex // guards f and size
	f    *os.File
	size int64 // where the next batch starts
}

func openFileSink(path string) (*fileSink, error) {
	s := &fileSink{path: path}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit file: %w", err)
	}
	size := st.Size()
	if size > 0 {
		// A line cut by a crash must not swallow the next entry: end it.
		// (Reconcile cuts it away when the log never had it.) A file this
		// process did not write is never truncated.
		var last [1]byte
		if _, err := f.ReadAt(last[:], size-1); err != nil {
			f.Close()
			return fmt.Errorf("audit file %s: %w", s.path, err)
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				f.Close()
				return fmt.Errorf("audit file %s: end the cut last line: %w", s.path, err)
			}
			size++
		}
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f, s.size = f, size
	return nil
}

// write appends lines as one write. On error the file is cut back to where
// the batch started.
func (s *fileSink) write(lines []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return ErrClosed
	}
	// Where the batch starts, as the file says: another writer (a careless
	// logrotate copytruncate) may have changed it.
	if st, err := s.f.Stat(); err == nil {
		s.size = st.Size()
	}
	n, err := s.f.Write(lines)
	if err != nil {
		if n > 0 {
			if terr := s.f.Truncate(s.size); terr != nil {
				return fmt.Errorf("audit file %s: %w (and cutting the partial batch failed: %v)", s.path, err, terr)
			}
		}
		return fmt.Errorf("audit file %s: %w", s.path, err)
	}
	s.size += int64(n)
	return nil
}

// undo removes the last batch of n bytes (another required sink refused it).
func (s *fileSink) undo(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return ErrClosed
	}
	if err := s.f.Truncate(s.size - int64(n)); err != nil {
		return fmt.Errorf("audit file %s: remove a refused batch: %w", s.path, err)
	}
	s.size -= int64(n)
	return nil
}

// cutAfter truncates the file after the last line equal to line, which must
// lie within the file's last max lines; it reports whether it found it and
// how many bytes it cut.
func (s *fileSink) cutAfter(line []byte, max int) (bool, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := os.Open(s.path)
	if err != nil {
		return false, 0, err
	}
	defer r.Close()
	ends, err := lineEnds(io.NewSectionReader(r, 0, s.size), s.size, max)
	if err != nil {
		return false, 0, err
	}
	buf := make([]byte, len(line))
	for i := len(ends) - 1; i >= 0; i-- {
		end := ends[i]
		start := end - int64(len(line))
		if start < 0 {
			continue
		}
		if start > 0 {
			var prev [1]byte
			if _, err := r.ReadAt(prev[:], start-1); err != nil || prev[0] != '\n' {
				continue
			}
		}
		if _, err := r.ReadAt(buf, start); err != nil {
			return false, 0, err
		}
		if bytes.Equal(buf, line) {
			cut := s.size - end
			if cut > 0 {
				if err := s.f.Truncate(end); err != nil {
					return false, 0, err
				}
				s.size = end
			}
			return true, cut, nil
		}
	}
	return false, 0, nil
}

// lineEnds returns the offsets just past each of the last max lines of r.
func lineEnds(r io.ReaderAt, size int64, max int) ([]int64, error) {
	var ends []int64
	var buf [64 << 10]byte
	end := size
	for end > 0 && len(ends) < max {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		if _, err := r.ReadAt(buf[:n], end-n); err != nil {
			return nil, err
		}
		for i := n - 1; i >= 0 && len(ends) < max; i-- {
			if buf[i] == '\n' {
				ends = append(ends, end-n+i+1)
			}
		}
		end -= n
	}
	// Oldest first.
	for i, j := 0, len(ends)-1; i < j; i, j = i+1, j-1 {
		ends[i], ends[j] = ends[j], ends[i]
	}
	return ends, nil
}

func (s *fileSink) reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open()
}

func (s *fileSink) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// ReadLines calls fn for each line of the file at path, without its newline.
// A last line without a newline is passed with complete=false.
func ReadLines(path string, fn func(line []byte, complete bool) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			complete := line[len(line)-1] == '\n'
			if complete {
				line = line[:len(line)-1]
			}
			if ferr := fn(line, complete); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

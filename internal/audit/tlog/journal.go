package tlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

const (
	privateDir  = "private"
	journalName = privateDir + "/journal"
	indexName   = privateDir + "/journal.idx"

	// MaxLeafSize is the largest public leaf, fixed by the 2-byte length
	// prefix of entry bundles.
	MaxLeafSize = 1<<16 - 1
	// MaxPrivateSize is the largest private part of one entry.
	MaxPrivateSize = 16 << 20

	recHeader  = 4 + 8 + 2 // body length, index, leaf length
	recTrailer = 4         // CRC-32C
	minBody    = 8 + 2
	maxBody    = minBody + MaxLeafSize + MaxPrivateSize
	indexEvery = 256 // journal.idx holds the offset of every 256th record
)

// castagnoli is a read-only table; building it is deterministic and it is
// never modified, so sharing it is not mutable state.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordSize returns the encoded size of an entry's journal record.
func recordSize(leaf, private []byte) int {
	return recHeader + len(leaf) + len(private) + recTrailer
}

// appendRecord encodes one journal record onto buf.
func appendRecord(buf []byte, index uint64, leaf, private []byte) []byte {
	start := len(buf)
	body := minBody + len(leaf) + len(private)
	buf = binary.BigEndian.AppendUint32(buf, uint32(body))
	buf = binary.BigEndian.AppendUint64(buf, index)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(leaf)))
	buf = append(buf, leaf...)
	buf = append(buf, private...)
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
}

// journalReader reads records sequentially from an offset.
type journalReader struct {
	r    *bufio.Reader
	off  int64 // offset of the next record
	next uint64
	buf  []byte
}

func newJournalReader(f io.ReaderAt, off int64, first uint64) *journalReader {
	return &journalReader{
		r:    bufio.NewReaderSize(io.NewSectionReader(f, off, 1<<62), 256<<10),
		off:  off,
		next: first,
	}
}

// errJournalEnd reports a clean end of the journal.
var errJournalEnd = errors.New("end of journal")

// read returns the next record. leaf and private alias an internal buffer
// valid until the next call. It returns errJournalEnd at a clean end, and an
// error describing the fault (a torn or corrupt record) otherwise; the
// reader's offset then points at the bad record.
func (j *journalReader) read(verify bool) (index uint64, leaf, private []byte, err error) {
	var hdr [4]byte
	n, err := io.ReadFull(j.r, hdr[:])
	if err == io.EOF {
		return 0, nil, nil, errJournalEnd
	}
	if err != nil {
		return 0, nil, nil, fmt.Errorf("journal offset %d: short record header (%d bytes)", j.off, n)
	}
	body := int(binary.BigEndian.Uint32(hdr[:]))
	if body < minBody || body > maxBody {
		return 0, nil, nil, fmt.Errorf("journal offset %d: record length %d out of range", j.off, body)
	}
	need := 4 + body + recTrailer
	if cap(j.buf) < need {
		j.buf = make([]byte, need, need+need/4)
	}
	rec := j.buf[:need]
	copy(rec, hdr[:])
	if n, err := io.ReadFull(j.r, rec[4:]); err != nil {
		return 0, nil, nil, fmt.Errorf("journal offset %d: short record (%d of %d bytes)", j.off, 4+n, need)
	}
	if verify {
		want := binary.BigEndian.Uint32(rec[need-4:])
		if crc32.Checksum(rec[:need-4], castagnoli) != want {
			return 0, nil, nil, fmt.Errorf("journal offset %d: record checksum mismatch", j.off)
		}
	}
	index = binary.BigEndian.Uint64(rec[4:])
	if index != j.next {
		return 0, nil, nil, fmt.Errorf("journal offset %d: record index %d, want %d", j.off, index, j.next)
	}
	ll := int(binary.BigEndian.Uint16(rec[12:]))
	if minBody+ll > body {
		return 0, nil, nil, fmt.Errorf("journal offset %d: leaf length %d exceeds record", j.off, ll)
	}
	leaf = rec[recHeader : recHeader+ll]
	private = rec[recHeader+ll : need-4]
	j.off += int64(need)
	j.next++
	return index, leaf, private, nil
}

// ReadJournal calls fn for every intact record of the journal in dir, in
// order, with the entry's index, public leaf and private bytes (valid only
// during the call). It stops at the end of the journal or at the first
// record that is short or fails its checksum — after a crash a torn tail
// looks exactly like that — and returns how many entries it read and, in
// tail, a description of the bad record ("" at a clean end). Callers compare
// n with the checkpoint size: n below it means the journal lost published
// entries. An error from fn stops the walk and is returned.
func ReadJournal(dir string, fn func(index uint64, leaf, private []byte) error) (n uint64, tail string, err error) {
	f, err := os.Open(filepath.Join(dir, journalName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, "", fmt.Errorf("journal: %w", ErrNotFound)
		}
		return 0, "", fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	jr := newJournalReader(f, 0, 0)
	for {
		idx, leaf, priv, err := jr.read(true)
		if err == errJournalEnd {
			return jr.next, "", nil
		}
		if err != nil {
			return jr.next, err.Error(), nil
		}
		if err := fn(idx, leaf, priv); err != nil {
			return jr.next, "", err
		}
	}
}

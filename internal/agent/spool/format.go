package spool

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// MaxRecordSize is the largest record Append accepts, in bytes. An audit
// record is a few hundred bytes; anything near this limit is a bug upstream.
const MaxRecordSize = 64 << 10

// headerSize is the size of a frame header: length, crc, seq.
const headerSize = 16

// segmentSuffix ends every segment file name.
const segmentSuffix = ".spool"

// segmentName returns the file name of the segment whose first record is first.
func segmentName(first uint64) string {
	return fmt.Sprintf("%020d%s", first, segmentSuffix)
}

// parseSegmentName returns the first sequence number encoded in a segment
// file name, and false if name is not a segment name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	first, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || first == 0 {
		return 0, false
	}
	return first, true
}

// frameChecksum is the CRC-32C of seq || payload, where b holds the
// big-endian seq followed by the payload.
func frameChecksum(tab *crc32.Table, seqAndPayload []byte) uint32 {
	return crc32.Checksum(seqAndPayload, tab)
}

// appendFrame appends the frame of one record to dst.
func appendFrame(dst []byte, tab *crc32.Table, seq uint64, payload []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, 0) // checksum, filled below
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = append(dst, payload...)
	binary.BigEndian.PutUint32(dst[start+4:], frameChecksum(tab, dst[start+8:]))
	return dst
}

// frameProblem says why bytes do not hold a valid frame.
type frameProblem int

const (
	frameOK       frameProblem = iota
	frameShort                 // fewer bytes than the header or the length needs
	frameTooLong               // length field above MaxRecordSize
	frameBadCRC                // checksum mismatch
	frameWrongSeq              // valid checksum, unexpected sequence number
)

// String describes the problem for error messages.
func (p frameProblem) String() string {
	switch p {
	case frameOK:
		return "ok"
	case frameShort:
		return "record cut short"
	case frameTooLong:
		return "record length above limit"
	case frameBadCRC:
		return "checksum mismatch"
	case frameWrongSeq:
		return "unexpected sequence number"
	}
	return "unknown problem"
}

// torn reports whether the problem is one a torn (partial) write can cause.
// A frame whose checksum is valid but whose sequence number is wrong was
// written whole, so it is never torn.
func (p frameProblem) torn() bool {
	return p == frameShort || p == frameTooLong || p == frameBadCRC
}

// decodeFrame decodes the frame at the start of b. It checks the length and
// the checksum and, when want is not zero, that the sequence number is want.
// It returns the sequence number, the payload (aliasing b) and the frame size.
func decodeFrame(b []byte, tab *crc32.Table, want uint64) (seq uint64, payload []byte, size int, problem frameProblem) {
	if len(b) < headerSize {
		return 0, nil, 0, frameShort
	}
	n := binary.BigEndian.Uint32(b)
	if n > MaxRecordSize {
		return 0, nil, 0, frameTooLong
	}
	size = headerSize + int(n)
	if len(b) < size {
		return 0, nil, 0, frameShort
	}
	if binary.BigEndian.Uint32(b[4:]) != frameChecksum(tab, b[8:size]) {
		return 0, nil, 0, frameBadCRC
	}
	seq = binary.BigEndian.Uint64(b[8:])
	if want != 0 && seq != want {
		return seq, nil, 0, frameWrongSeq
	}
	return seq, b[headerSize:size:size], size, frameOK
}

// scanResult is what scanSegment learned about one segment's bytes.
type scanResult struct {
	records int          // valid records, from the start
	last    uint64       // sequence number of the last valid record; first-1 if none
	end     int64        // offset just past the last valid record
	wantOff int64        // offset of the record numbered want; -1 if not seen
	problem frameProblem // why the scan stopped before the end of data; frameOK if it did not
}

// scanSegment walks the records of a segment whose first record is numbered
// first and stops at the first frame that is invalid or out of sequence. It
// also notes the offset of the record numbered want.
func scanSegment(data []byte, tab *crc32.Table, first, want uint64) scanResult {
	r := scanResult{last: first - 1, wantOff: -1}
	off := 0
	for off < len(data) {
		next := r.last + 1
		_, _, size, problem := decodeFrame(data[off:], tab, next)
		if problem != frameOK {
			r.problem = problem
			break
		}
		if next == want {
			r.wantOff = int64(off)
		}
		r.records++
		r.last = next
		off += size
	}
	r.end = int64(off)
	return r
}

// validFrameAfter reports whether rest, the bytes after a bad frame, holds a
// valid frame at any offset past the first byte whose sequence number is at
// least next and plausible for its position. A torn write leaves no such
// frame behind it; damage in the middle of a segment does.
func validFrameAfter(rest []byte, tab *crc32.Table, next uint64) bool {
	// Each record takes at least headerSize bytes, so a record found at
	// offset i cannot be numbered past next + i/headerSize.
	for i := 1; i+headerSize <= len(rest); i++ {
		seq := binary.BigEndian.Uint64(rest[i+8:])
		if seq < next || seq-next > uint64(i/headerSize) {
			continue
		}
		if _, _, _, problem := decodeFrame(rest[i:], tab, 0); problem == frameOK {
			return true
		}
	}
	return false
}

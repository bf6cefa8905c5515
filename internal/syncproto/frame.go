package syncproto

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Frame limits.
const (
	// DefaultMaxFrame is the default limit on a frame's payload, in bytes.
	// It bounds what one event (one secret) may weigh and what a broken or
	// hostile peer can make the reader allocate.
	DefaultMaxFrame = 4 << 20
	// headerLen is the length prefix: a big-endian uint32.
	headerLen = 4
)

// AppendFrame appends to dst one frame holding payload: its length as a
// big-endian uint32, then the payload.
func AppendFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// EncodeEvent returns ev as a complete frame (prefix included). The server
// encodes each event once, when it is published, and copies the bytes to
// every subscribed agent.
func EncodeEvent(ev Event) ([]byte, error) {
	p, err := json.Marshal(&ev)
	if err != nil {
		return nil, fmt.Errorf("encode event seq %d: %w", ev.Seq, err)
	}
	return AppendFrame(make([]byte, 0, headerLen+len(p)), p), nil
}

// DecodeEvent parses one frame payload as an Event and validates it.
// Errors wrap ErrMalformed.
func DecodeEvent(payload []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		if errors.Is(err, ErrMalformed) {
			return Event{}, err
		}
		return Event{}, fmt.Errorf("%w: event: %v", ErrMalformed, err)
	}
	if err := ev.check(); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// ack is the only message an agent sends: the highest sequence number it
// has durably applied. Sent after each Apply and, repeated, as its
// heartbeat.
type ack struct {
	Seq uint64 `json:"ack"`
}

func appendAck(dst []byte, seq uint64) []byte {
	p, _ := json.Marshal(ack{Seq: seq}) // cannot fail
	return AppendFrame(dst, p)
}

func decodeAck(payload []byte) (uint64, error) {
	var a ack
	if err := json.Unmarshal(payload, &a); err != nil {
		return 0, fmt.Errorf("%w: ack: %v", ErrMalformed, err)
	}
	return a.Seq, nil
}

// Reader reads frames from a stream. Not safe for concurrent use.
type Reader struct {
	br  *bufio.Reader
	max int
	buf []byte
	n   int64 // frames read, for error messages
}

// NewReader returns a Reader of r that refuses frames larger than max bytes
// (DefaultMaxFrame if max <= 0).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	return &Reader{br: bufio.NewReaderSize(r, 32<<10), max: max}
}

// Next returns the next frame's payload, valid until the following call.
// At a clean end of stream (between frames) it returns io.EOF; a stream
// that ends inside a frame gives ErrTruncated, a length over the limit
// ErrFrameTooLarge, an empty frame ErrMalformed. Other read errors are
// returned wrapped.
func (r *Reader) Next() ([]byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
		switch {
		case err == io.EOF:
			return nil, io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, fmt.Errorf("%w: frame %d: stream ended in the length prefix", ErrTruncated, r.n)
		}
		return nil, fmt.Errorf("frame %d: read length: %w", r.n, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(r.max) {
		return nil, fmt.Errorf("%w: frame %d: %d bytes, limit %d", ErrFrameTooLarge, r.n, n, r.max)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: frame %d: empty", ErrMalformed, r.n)
	}
	if cap(r.buf) < int(n) {
		// Grow with what arrives, not with what the prefix claims, so a
		// hostile prefix cannot make us allocate max bytes up front.
		r.buf = make([]byte, 0, min(int(n), 64<<10))
	}
	r.buf = r.buf[:0]
	for len(r.buf) < int(n) {
		if len(r.buf) == cap(r.buf) {
			r.buf = append(r.buf, 0)[:len(r.buf)]
		}
		chunk := r.buf[len(r.buf):min(cap(r.buf), int(n))]
		k, err := io.ReadFull(r.br, chunk)
		r.buf = r.buf[:len(r.buf)+k]
		if err != nil {
			if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("%w: frame %d: stream ended after %d of %d payload bytes", ErrTruncated, r.n, len(r.buf), n)
			}
			return nil, fmt.Errorf("frame %d: read payload: %w", r.n, err)
		}
	}
	r.n++
	return r.buf, nil
}

// ReadEvent reads and decodes the next frame as an Event.
func (r *Reader) ReadEvent() (Event, error) {
	p, err := r.Next()
	if err != nil {
		return Event{}, err
	}
	ev, err := DecodeEvent(p)
	if err != nil {
		return Event{}, fmt.Errorf("frame %d: %w", r.n-1, err)
	}
	return ev, nil
}

// Buffered reports how many bytes can be read without blocking; the client
// uses it to gather the events that arrived together into one Apply.
func (r *Reader) Buffered() int { return r.br.Buffered() }

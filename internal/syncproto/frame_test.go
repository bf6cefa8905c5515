package syncproto

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

func sampleFrames(t testing.TB) [][]byte {
	t.Helper()
	evs := []Event{
		{Seq: 1, Kind: Upsert, Zone: "factory", Path: "kv/data/db", Version: 3, Data: []byte(`{"data":{"password":"s3cret"},"metadata":{"version":3}}`), Metadata: []byte(`{"created_time":"2026-11-26T00:00:00Z"}`), MaxStale: time.Hour, Time: time.Unix(1_800_000_000, 5).UTC()},
		{Seq: 2, Kind: Delete, Zone: "factory", Path: "kv/data/db"},
		{Seq: 3, Kind: DeleteVersion, Zone: "factory", Path: "kv/data/db", Version: 2},
		{Seq: 4, Kind: Lease, Zone: "factory", Path: "db/creds/ro", Metadata: []byte(`{"lease_id":"db/creds/ro/abc","ttl":3600}`), MaxStale: time.Minute},
		{Seq: 5, Kind: Revoke, Zone: "factory", Path: "db/", Metadata: []byte(`{"reason":"node compromised"}`)},
		{Seq: 6, Kind: Reattest, Zone: "factory", Metadata: []byte(`{"nonce":"AAECAw=="}`)},
		{Seq: 4, Kind: Resync, Zone: "factory"},
		{Seq: 6, Kind: Heartbeat, Zone: "factory"},
	}
	var out [][]byte
	for _, ev := range evs {
		f, err := EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

func TestFrameRoundTrip(t *testing.T) {
	frames := sampleFrames(t)
	stream := bytes.Join(frames, nil)
	rd := NewReader(bytes.NewReader(stream), 0)
	for i := range frames {
		ev, err := rd.ReadEvent()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		again, err := EncodeEvent(ev)
		if err != nil || !bytes.Equal(again, frames[i]) {
			t.Fatalf("frame %d does not round-trip:\n%s\n%s", i, frames[i][4:], again[4:])
		}
	}
	if _, err := rd.ReadEvent(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestReaderErrors(t *testing.T) {
	good := sampleFrames(t)[0]
	tests := []struct {
		name   string
		stream []byte
		max    int
		want   error
	}{
		{"prefix cut", good[:3], 0, ErrTruncated},
		{"payload cut", good[:len(good)-1], 0, ErrTruncated},
		{"over the limit", good, len(good) - 5, ErrFrameTooLarge},
		{"huge prefix", []byte{0xff, 0xff, 0xff, 0xff}, 0, ErrFrameTooLarge},
		{"empty frame", []byte{0, 0, 0, 0}, 0, ErrMalformed},
		{"not json", AppendFrame(nil, []byte("GET / HTTP/1.1")), 0, ErrMalformed},
		{"no kind", AppendFrame(nil, []byte(`{"seq":1,"path":"a"}`)), 0, ErrMalformed},
		{"negative max_stale", AppendFrame(nil, []byte(`{"seq":1,"kind":"upsert","path":"a","max_stale":-1}`)), 0, ErrMalformed},
		{"upsert without path", AppendFrame(nil, []byte(`{"seq":1,"kind":"upsert"}`)), 0, ErrMalformed},
		{"kind as number", AppendFrame(nil, []byte(`{"seq":1,"kind":1,"path":"a"}`)), 0, ErrMalformed},
	}
	for _, tt := range tests {
		_, err := NewReader(bytes.NewReader(tt.stream), tt.max).ReadEvent()
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

// FuzzReader feeds arbitrary streams to the frame reader and event decoder:
// no panic, every error one of the documented ones, and every event that
// decodes re-encodes to a frame that decodes to the same event.
func FuzzReader(f *testing.F) {
	frames := sampleFrames(f)
	for _, fr := range frames {
		f.Add(fr)
	}
	f.Add(bytes.Join(frames, nil))
	f.Add(frames[0][:len(frames[0])/2])
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, '{'})
	f.Add(AppendFrame(nil, []byte(`{"seq":1,"kind":"upsert","path":"a","data":{"x":1},"max_stale":5}`)))
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := NewReader(bytes.NewReader(b), 1<<16)
		for {
			ev, err := rd.ReadEvent()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("undocumented error %v", err)
				}
				return
			}
			frame, err := EncodeEvent(ev)
			if err != nil {
				t.Fatalf("decoded event does not encode: %v", err)
			}
			back, err := NewReader(bytes.NewReader(frame), 0).ReadEvent()
			if err != nil {
				t.Fatalf("re-encoded event does not decode: %v", err)
			}
			again, _ := EncodeEvent(back)
			if !bytes.Equal(frame, again) {
				t.Fatalf("not stable:\n%s\n%s", frame, again)
			}
		}
	})
}

package syncproto

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"
)

// benchLink is a server and one connected client over loopback TLS whose
// Apply reports each event's publish→apply latency.
type benchLink struct {
	feed    *Feed
	mu      sync.Mutex
	lat     []time.Duration
	applied uint64
	done    chan struct{}
	want    uint64
}

func newBenchLink(b *testing.B) *benchLink {
	pki := newPKI(b)
	l := &benchLink{feed: NewFeed(0)}
	ts := startServer(b, pki, Handler(l.feed, SPIFFEAuthorizer(testTrustDomain)))
	connected := make(chan struct{})
	var once sync.Once
	c := &Client{
		URL:       ts.url(),
		TLSConfig: pki.agentTLS(b, testTrustDomain, "z", "bench"),
		From:      func() uint64 { l.mu.Lock(); defer l.mu.Unlock(); return l.applied },
		Apply: func(evs []Event) (uint64, error) {
			now := time.Now()
			l.mu.Lock()
			defer l.mu.Unlock()
			for _, ev := range evs {
				l.lat = append(l.lat, now.Sub(ev.Time))
			}
			l.applied = evs[len(evs)-1].Seq
			if l.done != nil && l.applied >= l.want {
				close(l.done)
				l.done = nil
			}
			return l.applied, nil
		},
		OnState: func(s State, err error) {
			if s == StateConnected {
				once.Do(func() { close(connected) })
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go c.Run(ctx)
	<-connected
	return l
}

// expect arms the link to signal when seq has been applied.
func (l *benchLink) expect(seq uint64) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan struct{})
	if l.applied >= seq {
		close(ch)
		return ch
	}
	l.done, l.want = ch, seq
	return ch
}

// BenchmarkLatency publishes 1,000 events one at a time, 1 ms apart (an
// online agent at a steady write rate), and reports publish→applied p50
// and p99.
func BenchmarkLatency(b *testing.B) {
	l := newBenchLink(b)
	ev := upsert("kv/data/app/db", 1)
	for b.Loop() {
		l.mu.Lock()
		l.lat = l.lat[:0]
		l.mu.Unlock()
		var last uint64
		for range 1000 {
			var err error
			if last, err = l.feed.Publish("z", ev); err != nil {
				b.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		<-l.expect(last)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.lat)
	b.ReportMetric(float64(l.lat[len(l.lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(l.lat[len(l.lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkThroughput publishes as fast as it can, in batches of 100, and
// reports events applied per second at the client.
func BenchmarkThroughput(b *testing.B) {
	l := newBenchLink(b)
	batch := make([]Event, 100)
	for i := range batch {
		batch[i] = upsert("kv/data/app/db", i+1)
	}
	const n = 100_000
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		var last uint64
		for range n / len(batch) {
			var err error
			if last, err = l.feed.Publish("z", batch...); err != nil {
				b.Fatal(err)
			}
		}
		<-l.expect(last)
		total += time.Since(start)
	}
	b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "events/s")
}

// The framing choice: JSON versus a hand-rolled binary layout of the same
// event (prototype below, used only here). Encoding happens once per event
// at Publish; decoding once per event per agent.
var benchEvent = Event{Seq: 123456, Kind: Upsert, Zone: "factory-7", Path: "kv/data/line3/plc", Version: 4,
	Data:     json.RawMessage(`{"data":{"username":"plc","password":"c0rrect-h0rse-battery"},"metadata":{"version":4}}`),
	MaxStale: time.Hour, Time: time.Unix(1_800_000_000, 0).UTC()}

func BenchmarkEncodeJSON(b *testing.B) {
	for b.Loop() {
		if _, err := EncodeEvent(benchEvent); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeJSON(b *testing.B) {
	f, _ := EncodeEvent(benchEvent)
	for b.Loop() {
		if _, err := DecodeEvent(f[headerLen:]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(f)), "frame-bytes")
}

func binEncode(dst []byte, ev *Event) []byte {
	dst = binary.BigEndian.AppendUint64(dst, ev.Seq)
	dst = append(dst, byte(ev.Kind))
	dst = binary.AppendUvarint(dst, uint64(ev.Version))
	dst = binary.BigEndian.AppendUint64(dst, uint64(ev.MaxStale))
	dst = binary.BigEndian.AppendUint64(dst, uint64(ev.Time.UnixNano()))
	for _, s := range [][]byte{[]byte(ev.Zone), []byte(ev.Path), ev.Data, ev.Metadata} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

func binDecode(p []byte) (Event, bool) {
	var ev Event
	if len(p) < 25 {
		return ev, false
	}
	ev.Seq, ev.Kind = binary.BigEndian.Uint64(p), Kind(p[8])
	v, n := binary.Uvarint(p[9:])
	if n <= 0 {
		return ev, false
	}
	p = p[9+n:]
	if len(p) < 16 {
		return ev, false
	}
	ev.Version, ev.MaxStale = int(v), time.Duration(binary.BigEndian.Uint64(p))
	ev.Time = time.Unix(0, int64(binary.BigEndian.Uint64(p[8:])))
	p = p[16:]
	var fields [4][]byte
	for i := range fields {
		l, n := binary.Uvarint(p)
		if n <= 0 || uint64(len(p)-n) < l {
			return ev, false
		}
		fields[i], p = p[n:n+int(l)], p[n+int(l):]
	}
	ev.Zone, ev.Path = string(fields[0]), string(fields[1])
	ev.Data, ev.Metadata = slices.Clone(fields[2]), slices.Clone(fields[3])
	return ev, ev.Kind.valid()
}

func BenchmarkEncodeBinary(b *testing.B) {
	var buf []byte
	for b.Loop() {
		buf = binEncode(buf[:0], &benchEvent)
	}
}

func BenchmarkDecodeBinary(b *testing.B) {
	p := binEncode(nil, &benchEvent)
	for b.Loop() {
		if _, ok := binDecode(p); !ok {
			b.Fatal("decode")
		}
	}
	b.ReportMetric(float64(len(p)+headerLen), "frame-bytes")
}

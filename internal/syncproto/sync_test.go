package syncproto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPublishReceiveAck(t *testing.T) {
	pki := newPKI(t)
	feed := NewFeed(0)
	var mu sync.Mutex
	onAck := map[string]uint64{}
	srv := Handler(feed, SPIFFEAuthorizer(testTrustDomain))
	srv.OnAck = func(agent, z string, seq uint64) {
		mu.Lock()
		defer mu.Unlock()
		onAck[agent+"@"+z] = seq
	}
	ts := startServer(t, pki, srv)
	rec := newRecorder()
	run(t, rec.client(ts.url(), pki.agentTLS(t, testTrustDomain, "factory", "a1")))
	rec.waitFor(t, 5*time.Second, "connected", func() bool { return rec.lastState() == StateConnected })

	for i := range 100 {
		evs := []Event{upsert(fmt.Sprintf("kv/data/app%d", i), 1)}
		if i%10 == 0 {
			evs = append(evs, Event{Kind: DeleteVersion, Path: "kv/data/old", Version: i + 1}, Event{Kind: Lease, Path: "db/creds/ro", MaxStale: time.Minute})
		}
		if _, err := feed.Publish("factory", evs...); err != nil {
			t.Fatal(err)
		}
	}
	head := feed.Head("factory")
	if head != 120 {
		t.Fatalf("head %d, want 120", head)
	}
	rec.waitFor(t, 5*time.Second, "all events", func() bool { return rec.ack == head })
	rec.mu.Lock()
	checkApplied(t, rec.applied)
	if len(rec.applied) != 120 {
		t.Fatalf("applied %d events, want 120", len(rec.applied))
	}
	for i, ev := range rec.applied {
		if ev.Seq != uint64(i+1) || ev.Zone != "factory" || ev.Time.IsZero() {
			t.Fatalf("applied[%d] = seq %d zone %q time %v", i, ev.Seq, ev.Zone, ev.Time)
		}
	}
	if string(rec.applied[0].Data) != `{"password":"s3cret"}` || rec.applied[0].MaxStale != time.Hour {
		t.Fatalf("event 1 lost fields: %+v", rec.applied[0])
	}
	if len(rec.early) != 0 {
		t.Fatalf("ApplyRevocations called %d times with an empty catch-up", len(rec.early))
	}
	rec.mu.Unlock()

	// The server learns the ack through the upstream half of the stream.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := srv.Acks()
		mu.Lock()
		got := onAck["a1@factory"]
		mu.Unlock()
		if len(st) == 1 && st[0].Acked == head && st[0].Connected && st[0].Zone == "factory" && got == head {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server acks %+v, OnAck %d; want %d", st, got, head)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestResumeAfterDisconnect(t *testing.T) {
	pki := newPKI(t)
	feed := NewFeed(0)
	srv := Handler(feed, SPIFFEAuthorizer(testTrustDomain))
	ts := startServer(t, pki, srv)
	rec := newRecorder()
	run(t, rec.client(ts.url(), pki.agentTLS(t, testTrustDomain, "shop", "till-1")))

	for i := range 50 {
		if _, err := feed.Publish("shop", upsert(fmt.Sprintf("kv/data/s%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitFor(t, 5*time.Second, "first 50", func() bool { return rec.ack == 50 })

	ts.kill() // mid-stream: listener and connections gone
	rec.waitFor(t, 5*time.Second, "degraded", func() bool { return rec.lastState() == StateDegraded })

	// While the agent is away: new secrets, then revocations of some of them.
	if _, err := feed.Publish("shop",
		upsert("kv/data/new", 1),
		upsert("kv/data/s3", 2),
		Event{Kind: Revoke, Path: "kv/data/s1"},
		upsert("kv/data/later", 1),
		Event{Kind: Delete, Path: "kv/data/new"},
	); err != nil {
		t.Fatal(err)
	}
	ts.start()
	rec.waitFor(t, 10*time.Second, "resumed", func() bool { return rec.ack == 55 && rec.lastState() == StateConnected })

	rec.mu.Lock()
	defer rec.mu.Unlock()
	checkApplied(t, rec.applied)
	if len(rec.applied) != 55 {
		t.Fatalf("applied %d events, want 55 (no duplicates, no gaps)", len(rec.applied))
	}
	// The catch-up's revocations reached the agent before the catch-up did.
	if len(rec.early) != 1 {
		t.Fatalf("ApplyRevocations called %d times, want 1", len(rec.early))
	}
	var kinds []string
	for _, ev := range rec.early[0] {
		kinds = append(kinds, fmt.Sprintf("%d:%s", ev.Seq, ev.Kind))
	}
	if got := strings.Join(kinds, ","); got != "53:revoke,55:delete" {
		t.Fatalf("early revocations %s", got)
	}
	// And the whole catch-up came in one Apply, in order.
	if last := rec.calls[len(rec.calls)-1]; last != 50 {
		t.Fatalf("catch-up applied from index %d, want one Apply from 50", last)
	}
	states := make([]string, len(rec.states))
	for i, s := range rec.states {
		states[i] = s.s.String()
	}
	if got := strings.Join(states, ","); !strings.HasPrefix(got, "connected,degraded") || !strings.HasSuffix(got, "connected") {
		t.Fatalf("states %s", got)
	}
}

func TestBacklogOverflowResync(t *testing.T) {
	pki := newPKI(t)
	feed := NewFeed(10)
	for i := range 30 {
		if _, err := feed.Publish("z", upsert(fmt.Sprintf("p%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("backlog only", func(t *testing.T) {
		ts := startServer(t, pki, Handler(feed, SPIFFEAuthorizer(testTrustDomain)))
		rec := newRecorder()
		rec.ack = 5 // older than the backlog (21..30)
		run(t, rec.client(ts.url(), pki.agentTLS(t, testTrustDomain, "z", "a")))
		rec.waitFor(t, 5*time.Second, "caught up", func() bool { return rec.ack == 30 && rec.lastState() == StateConnected })
		rec.mu.Lock()
		defer rec.mu.Unlock()
		checkApplied(t, rec.applied)
		if len(rec.applied) != 11 || rec.applied[0].Kind != Resync || rec.applied[0].Seq != 20 || rec.applied[1].Seq != 21 {
			t.Fatalf("applied %d events starting %+v, want Resync(20) then 21..30", len(rec.applied), rec.applied[0])
		}
		if len(rec.early) != 1 || len(rec.early[0]) != 1 || rec.early[0][0].Kind != Resync {
			t.Fatalf("early %+v, want the Resync alone", rec.early)
		}
	})
	t.Run("snapshot", func(t *testing.T) {
		srv := Handler(feed, SPIFFEAuthorizer(testTrustDomain))
		srv.Snapshot = func(ctx context.Context, z string) (uint64, []Event, error) {
			return 25, []Event{upsert("a", 3), upsert("b", 1)}, nil
		}
		ts := startServer(t, pki, srv)
		rec := newRecorder()
		rec.ack = 1000 // newer than the server's history (a restarted server)
		run(t, rec.client(ts.url(), pki.agentTLS(t, testTrustDomain, "z", "b")))
		rec.waitFor(t, 5*time.Second, "caught up", func() bool { return rec.ack == 30 && rec.lastState() == StateConnected })
		rec.mu.Lock()
		defer rec.mu.Unlock()
		checkApplied(t, rec.applied)
		var got []string
		for _, ev := range rec.applied {
			got = append(got, fmt.Sprintf("%d:%s:%s", ev.Seq, ev.Kind, ev.Path))
		}
		want := "25:resync:,25:upsert:a,25:upsert:b,26:upsert:p25,27:upsert:p26,28:upsert:p27,29:upsert:p28,30:upsert:p29"
		if strings.Join(got, ",") != want {
			t.Fatalf("applied %s\nwant    %s", strings.Join(got, ","), want)
		}
	})
}

// frameServer is a handler that writes raw bytes as a sync response, to
// feed the client broken streams.
// A stream that should look cut ends right after the bytes (a clean
// end of the HTTP/2 stream, in the middle of a frame); others stay open.
func frameServer(body func(w io.Writer), end bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ContentType)
		w.WriteHeader(http.StatusOK)
		body(w)
		http.NewResponseController(w).Flush()
		if !end {
			<-r.Context().Done()
		}
	})
}

func TestClientDropsBrokenStreams(t *testing.T) {
	pki := newPKI(t)
	hb, _ := EncodeEvent(Event{Seq: 0, Kind: Heartbeat})
	ev1, _ := EncodeEvent(Event{Seq: 1, Kind: Upsert, Path: "p", Zone: "z"})
	tests := []struct {
		name string
		body func(w io.Writer)
		want error
	}{
		{"truncated payload", func(w io.Writer) { w.Write(hb); w.Write(ev1[:len(ev1)-3]) }, ErrTruncated},
		{"truncated prefix", func(w io.Writer) { w.Write(hb); w.Write(ev1[:2]) }, ErrTruncated},
		{"oversized frame", func(w io.Writer) { w.Write(hb); w.Write([]byte{0x7f, 0, 0, 0, '{'}) }, ErrFrameTooLarge},
		{"garbage", func(w io.Writer) { w.Write(hb); w.Write(AppendFrame(nil, []byte("<html>"))) }, ErrMalformed},
		{"unknown kind", func(w io.Writer) { w.Write(hb); w.Write(AppendFrame(nil, []byte(`{"seq":1,"kind":"explode"}`))) }, ErrMalformed},
		{"seq backwards", func(w io.Writer) { w.Write(hb); w.Write(ev1); w.Write(ev1) }, ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, pki, frameServer(tt.body, errors.Is(tt.want, ErrTruncated)))
			rec := newRecorder()
			c := rec.client(ts.url(), pki.agentTLS(t, testTrustDomain, "z", "a"))
			c.MaxFrame = 1 << 20
			run(t, c)
			rec.waitFor(t, 5*time.Second, "degraded with "+tt.want.Error(), func() bool {
				for _, s := range rec.states {
					if s.s == StateDegraded && errors.Is(s.err, tt.want) {
						return true
					}
				}
				return false
			})
		})
	}
}

// freezer makes a server stop answering (as a SIGSTOPped server would)
// without closing anything: while frozen, every response write blocks.
type freezer struct {
	mu     sync.Mutex
	frozen chan struct{} // nil while running
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen == nil {
		f.frozen = make(chan struct{})
	}
}

func (f *freezer) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen != nil {
		close(f.frozen)
		f.frozen = nil
	}
}

func (f *freezer) wait() {
	f.mu.Lock()
	c := f.frozen
	f.mu.Unlock()
	if c != nil {
		<-c
	}
}

type gate struct {
	http.ResponseWriter
	f *freezer
}

func (g gate) Write(p []byte) (int, error) {
	g.f.wait()
	return g.ResponseWriter.Write(p)
}

func (g gate) Unwrap() http.ResponseWriter { return g.ResponseWriter }

func TestHeartbeatTimeout(t *testing.T) {
	pki := newPKI(t)
	feed := NewFeed(0)
	srv := Handler(feed, SPIFFEAuthorizer(testTrustDomain))
	srv.Heartbeat = 20 * time.Millisecond
	fr := &freezer{}
	ts := startServer(t, pki, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.ServeHTTP(gate{w, fr}, r)
	}))
	t.Cleanup(fr.thaw) // runs before the server is killed
	rec := newRecorder()
	c := rec.client(ts.url(), pki.agentTLS(t, testTrustDomain, "z", "a"))
	const timeout = 300 * time.Millisecond
	c.Timeout = timeout
	run(t, c)
	rec.waitFor(t, 5*time.Second, "connected", func() bool { return rec.lastState() == StateConnected })
	time.Sleep(3 * timeout) // heartbeats alone keep an idle stream up
	rec.mu.Lock()
	if n := len(rec.states); n != 1 {
		t.Fatalf("idle stream changed state: %+v", rec.states)
	}
	rec.mu.Unlock()

	fr.freeze()
	frozenAt := time.Now()
	rec.waitFor(t, 5*time.Second, "degraded", func() bool { return rec.lastState() == StateDegraded })
	rec.mu.Lock()
	last := rec.states[len(rec.states)-1]
	rec.mu.Unlock()
	if !errors.Is(last.err, ErrPeerTimeout) {
		t.Fatalf("degraded because %v, want ErrPeerTimeout", last.err)
	}
	if took := last.at.Sub(frozenAt); took > timeout+timeout/2 {
		t.Fatalf("hung server noticed after %v, timeout %v", took, timeout)
	} else {
		t.Logf("hung server noticed after %v (timeout %v)", took, timeout)
	}

	// While frozen, the agent keeps trying (each attempt hangs and times
	// out), and closes what it abandons: no connection piles up.
	time.Sleep(4 * timeout)
	if n := ts.openConns(); n > 2 {
		t.Fatalf("server holds %d connections from one agent", n)
	}

	// Thawed, the agent comes back (its reconnections were hanging too).
	fr.thaw()
	if _, err := feed.Publish("z", upsert("p", 1)); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 5*time.Second, "reconnected", func() bool { return rec.lastState() == StateConnected && rec.ack == 1 })
}

// TestServerDropsSilentAgent: an agent that stops sending acks and
// heartbeats is dropped by the server, and marked disconnected.
func TestServerDropsSilentAgent(t *testing.T) {
	pki := newPKI(t)
	feed := NewFeed(0)
	srv := Handler(feed, SPIFFEAuthorizer(testTrustDomain))
	srv.Heartbeat = 20 * time.Millisecond
	srv.Timeout = 200 * time.Millisecond
	ts := startServer(t, pki, srv)

	protos := new(http.Protocols)
	protos.SetHTTP2(true)
	tr := &http.Transport{TLSClientConfig: pki.agentTLS(t, testTrustDomain, "z", "mute"), Protocols: protos}
	defer tr.CloseIdleConnections()
	pr, pw := io.Pipe() // never written: a hung agent
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPost, ts.url(), pr)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	_, err = io.Copy(io.Discard, resp.Body) // ends when the server drops us
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("server kept a silent agent for %v (err %v)", took, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		st := srv.Acks()
		if len(st) == 1 && !st[0].Connected && st[0].AgentID == "mute" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Acks() = %+v, want mute disconnected", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServerRefuses(t *testing.T) {
	pki := newPKI(t)
	feed := NewFeed(0)
	ts := startServer(t, pki, Handler(feed, SPIFFEAuthorizer(testTrustDomain)))

	// An agent of another trust domain: 403, reported as ErrRejected.
	rec := newRecorder()
	run(t, rec.client(ts.url(), pki.agentTLS(t, "other.test", "z", "a")))
	rec.waitFor(t, 5*time.Second, "rejected", func() bool {
		return len(rec.states) > 0 && errors.Is(rec.states[0].err, ErrRejected) && strings.Contains(rec.states[0].err.Error(), "403")
	})

	// HTTP/1.1 cannot carry the full-duplex stream: 505.
	tr := &http.Transport{TLSClientConfig: pki.agentTLS(t, testTrustDomain, "z", "a")}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(must(http.NewRequest(http.MethodPost, ts.url(), bytes.NewReader(nil))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.StatusCode != http.StatusHTTPVersionNotSupported {
		t.Fatalf("HTTP/%d request got %s, want 505", resp.ProtoMajor, resp.Status)
	}

	// A bad from.
	h2 := new(http.Protocols)
	h2.SetHTTP2(true)
	tr2 := &http.Transport{TLSClientConfig: pki.agentTLS(t, testTrustDomain, "z", "a"), Protocols: h2}
	defer tr2.CloseIdleConnections()
	resp, err = tr2.RoundTrip(must(http.NewRequest(http.MethodPost, ts.url()+"?from=-1", bytes.NewReader(nil))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("from=-1 got %s, want 400", resp.Status)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestConcurrentPublishers(t *testing.T) {
	pki := newPKI(t)
	feed := NewFeed(0)
	ts := startServer(t, pki, Handler(feed, SPIFFEAuthorizer(testTrustDomain)))
	rec := newRecorder()
	run(t, rec.client(ts.url(), pki.agentTLS(t, testTrustDomain, "z", "a")))
	rec.waitFor(t, 5*time.Second, "connected", func() bool { return rec.lastState() == StateConnected })

	const writers, each = 4, 250
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := feed.Publish("z", upsert(fmt.Sprintf("w%d", w), i+1)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rec.waitFor(t, 10*time.Second, "all events", func() bool { return rec.ack == writers*each })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	checkApplied(t, rec.applied)
	if len(rec.applied) != writers*each {
		t.Fatalf("applied %d, want %d", len(rec.applied), writers*each)
	}
	next := map[string]int{}
	for i, ev := range rec.applied {
		if ev.Seq != uint64(i+1) {
			t.Fatalf("applied[%d].Seq = %d", i, ev.Seq)
		}
		next[ev.Path]++
		if ev.Version != next[ev.Path] {
			t.Fatalf("writer %s: version %d arrived as its #%d", ev.Path, ev.Version, next[ev.Path])
		}
	}
}

func TestServerShutdown(t *testing.T) {
	pki := newPKI(t)
	srv := Handler(NewFeed(0), SPIFFEAuthorizer(testTrustDomain))
	ts := startServer(t, pki, srv)
	rec := newRecorder()
	run(t, rec.client(ts.url(), pki.agentTLS(t, testTrustDomain, "z", "a")))
	rec.waitFor(t, 5*time.Second, "connected", func() bool { return rec.lastState() == StateConnected })

	srv.Shutdown()
	ts.mu.Lock()
	hs := ts.srv
	ts.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		t.Fatalf("http.Server.Shutdown with a sync stream open: %v", err)
	}
	rec.waitFor(t, 5*time.Second, "degraded", func() bool { return rec.lastState() == StateDegraded })
}

// TestApplyFailureResumes: an Apply that fails drops the stream; the client
// resumes from the durable ack and nothing is lost or applied twice.
func TestApplyFailureResumes(t *testing.T) {
	pki := newPKI(t)
	feed := NewFeed(0)
	ts := startServer(t, pki, Handler(feed, SPIFFEAuthorizer(testTrustDomain)))
	rec := newRecorder()
	c := rec.client(ts.url(), pki.agentTLS(t, testTrustDomain, "z", "a"))
	apply := c.Apply
	failures := 0
	c.Apply = func(evs []Event) (uint64, error) {
		for _, ev := range evs {
			if ev.Path == "poison" && failures < 2 {
				failures++
				return 0, errors.New("disk full")
			}
		}
		return apply(evs)
	}
	run(t, c)
	rec.waitFor(t, 5*time.Second, "connected", func() bool { return rec.lastState() == StateConnected })
	if _, err := feed.Publish("z", upsert("a", 1), upsert("poison", 1), upsert("b", 1)); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 5*time.Second, "all applied", func() bool { return rec.ack == 3 && rec.lastState() == StateConnected })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	checkApplied(t, rec.applied)
	if len(rec.applied) != 3 || failures != 2 {
		t.Fatalf("applied %d events after %d failures, want 3 after 2", len(rec.applied), failures)
	}
	n := 0
	for _, s := range rec.states {
		if s.s == StateDegraded && errors.Is(s.err, ErrApply) {
			n++
		}
	}
	// The second failure (in the catch-up) is not a state change.
	if n != 1 || len(rec.states) != 3 || rec.lastState() != StateConnected {
		t.Fatalf("%d degraded reports with ErrApply, want 1; states %+v", n, rec.states)
	}
}

// TestServerRefusesAckNeverSent: an agent cannot claim to have applied
// events it was never sent; the server drops the stream and keeps the last
// honest ack.
func TestServerRefusesAckNeverSent(t *testing.T) {
	pki := newPKI(t)
	feed := NewFeed(0)
	if _, err := feed.Publish("z", upsert("a", 1), upsert("b", 1)); err != nil {
		t.Fatal(err)
	}
	srv := Handler(feed, SPIFFEAuthorizer(testTrustDomain))
	ts := startServer(t, pki, srv)
	protos := new(http.Protocols)
	protos.SetHTTP2(true)
	tr := &http.Transport{TLSClientConfig: pki.agentTLS(t, testTrustDomain, "z", "liar"), Protocols: protos}
	defer tr.CloseIdleConnections()
	pr, pw := io.Pipe()
	defer pw.Close()
	resp, err := tr.RoundTrip(must(http.NewRequest(http.MethodPost, ts.url()+"?from=0", pr)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := NewReader(resp.Body, 0)
	for { // read the catch-up up to its heartbeat
		ev, err := rd.ReadEvent()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == Heartbeat {
			break
		}
	}
	go func() {
		pw.Write(appendAck(nil, 2)) // honest
		pw.Write(appendAck(nil, 3)) // never sent
	}()
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); done <- err }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("server kept a stream that acked an event never sent")
	}
	st := srv.Acks()
	if len(st) != 1 || st[0].Acked != 2 {
		t.Fatalf("Acks() = %+v, want liar at 2", st)
	}
}

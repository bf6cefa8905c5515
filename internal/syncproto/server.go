package syncproto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Path is the sync endpoint, relative to the server's address.
const Path = "/v1/sys/agents/sync"

// ContentType is the media type of both directions of a sync stream.
const ContentType = "application/x-edgevault-sync"

// Timing defaults, shared by both ends.
const (
	// DefaultHeartbeat is how often each end sends a heartbeat when idle.
	DefaultHeartbeat = time.Second
	// DefaultTimeout is how long an end waits without hearing anything
	// before it declares the peer hung and drops the stream.
	DefaultTimeout = 5 * time.Second
)

// writeBatch is how many backlog events the server reads and writes per
// flush.
const writeBatch = 256

// AuthorizeFunc identifies the agent behind a sync request, typically from
// its verified client certificate (r.TLS.VerifiedChains), and names the one
// zone it may follow. An error wrapping ErrAgentRefused or ErrUnauthorized
// refuses the agent itself: the request is answered 403, and the agent
// stops serving its cache (see ErrRefused). Any other error (a storage or
// audit failure, a sealed server) is the server's trouble, not the agent's:
// it is answered 503 and the agent keeps serving within its staleness
// bounds while it retries. The error's text is logged, not sent.
type AuthorizeFunc func(r *http.Request) (agentID, zone string, err error)

// ErrAgentRefused is wrapped by an AuthorizeFunc's error when the agent
// itself is refused (revoked, quarantined, unknown, its certificate
// invalid, expired or superseded, its re-attestation overdue, its zone
// sealed): the server answers 403. Wrap only decisions about the agent with
// it, never a failure to reach one, or a storage blip takes every agent's
// cache down with it.
var ErrAgentRefused = errors.New("syncproto: agent refused")

// SnapshotFunc returns the current state of a zone as Upsert (and Lease)
// events, and the sequence number that state is as of: every event after it
// is still to be published to the Feed, or already is. The server calls it
// for an agent that needs a Resync.
type SnapshotFunc func(ctx context.Context, zone string) (seq uint64, events []Event, err error)

// AgentStatus is what the server knows about one agent's stream.
type AgentStatus struct {
	AgentID string
	Zone    string
	// Acked is the last sequence number the agent said it durably applied.
	Acked uint64
	// Connected is set while the agent has a stream open.
	Connected bool
	// LastSeen is when the agent last sent anything (ack or heartbeat).
	LastSeen time.Time

	streams int // open streams; an agent may briefly have two while it reconnects
}

// Server serves the sync endpoint: POST Path?from=<ack>, over HTTP/2 only.
// The response body streams events; the request body streams the agent's
// acks. Fields must not change once it serves. It is an http.Handler; mount
// it on the API's mux, behind a TLS listener that requests and verifies
// client certificates and offers "h2".
type Server struct {
	// Feed supplies the events. Required.
	Feed *Feed
	// Authorize identifies the agent and its zone. Required.
	Authorize AuthorizeFunc
	// Snapshot, if set, serves Resyncs with the zone's full state; without
	// it a Resync is followed only by what the backlog still holds.
	Snapshot SnapshotFunc
	// OnAck, if set, is called (from the stream's goroutine) with every ack.
	OnAck func(agentID, zone string, seq uint64)
	// Heartbeat is how often a heartbeat event is sent (DefaultHeartbeat).
	Heartbeat time.Duration
	// Timeout drops a stream whose agent sent nothing for this long, or whose
	// writes block for this long (DefaultTimeout).
	Timeout time.Duration
	// Logger receives stream errors; nil discards them.
	Logger *slog.Logger

	mu       sync.Mutex
	agents   map[string]*AgentStatus
	cancels  map[string]map[uint64]context.CancelFunc // open streams by zone+agent
	nextID   uint64
	shutdown chan struct{} // closed by Shutdown; made lazily
}

// Disconnect ends every open stream of one agent (quarantined, revoked or
// deleted); it must also be refused by Authorize from then on, or it
// reconnects. It returns how many streams it ended.
func (s *Server) Disconnect(zone, agentID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, cancel := range s.cancels[zone+"\x00"+agentID] {
		cancel()
		n++
	}
	return n
}

// register records an open stream's cancel function; the returned func
// forgets it.
func (s *Server) register(zone, agentID string, cancel context.CancelFunc) func() {
	key := zone + "\x00" + agentID
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancels == nil {
		s.cancels = map[string]map[uint64]context.CancelFunc{}
	}
	if s.cancels[key] == nil {
		s.cancels[key] = map[uint64]context.CancelFunc{}
	}
	id := s.nextID
	s.nextID++
	s.cancels[key][id] = cancel
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.cancels[key], id)
		if len(s.cancels[key]) == 0 {
			delete(s.cancels, key)
		}
	}
}

// Handler returns a Server with default timings.
func Handler(feed *Feed, authz AuthorizeFunc) *Server {
	return &Server{Feed: feed, Authorize: authz}
}

// Acks returns the status of every agent that has opened a stream since the
// server started, in no particular order.
func (s *Server) Acks() []AgentStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]AgentStatus, 0, len(s.agents))
	for _, a := range s.agents {
		out = append(out, *a)
	}
	return out
}

// Shutdown ends every open stream and refuses new ones with 503, so an
// http.Server's graceful Shutdown (which waits for handlers) can finish;
// agents reconnect to another server or later. Call it before
// http.Server.Shutdown.
func (s *Server) Shutdown() {
	c := s.done()
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-c:
	default:
		close(c)
	}
}

func (s *Server) done() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown == nil {
		s.shutdown = make(chan struct{})
	}
	return s.shutdown
}

func (s *Server) track(agentID, zone string, f func(a *AgentStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agents == nil {
		s.agents = make(map[string]*AgentStatus)
	}
	a := s.agents[agentID]
	if a == nil {
		a = &AgentStatus{AgentID: agentID}
		s.agents[agentID] = a
	}
	a.Zone = zone
	f(a)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// ServeHTTP serves one agent's stream until the agent leaves, times out,
// breaks the protocol, or the request's context ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "sync: use POST", http.StatusMethodNotAllowed)
		return
	}
	if r.ProtoMajor != 2 {
		http.Error(w, "sync: the sync stream needs HTTP/2 end to end", http.StatusHTTPVersionNotSupported)
		return
	}
	shutdown := s.done()
	select {
	case <-shutdown:
		http.Error(w, "sync: server shutting down", http.StatusServiceUnavailable)
		return
	default:
	}
	agentID, zone, err := s.Authorize(r)
	if err != nil {
		if errors.Is(err, ErrAgentRefused) || errors.Is(err, ErrUnauthorized) {
			s.logger().Warn("sync: agent refused", "remote", r.RemoteAddr, "err", err)
			http.Error(w, "sync: permission denied", http.StatusForbidden)
			return
		}
		s.logger().Error("sync: cannot authorize an agent", "remote", r.RemoteAddr, "err", err)
		http.Error(w, "sync: server cannot authorize agents now; retry later", http.StatusServiceUnavailable)
		return
	}
	var from uint64
	if v := r.URL.Query().Get("from"); v != "" {
		if from, err = strconv.ParseUint(v, 10, 64); err != nil {
			http.Error(w, "sync: from must be a sequence number", http.StatusBadRequest)
			return
		}
	}
	log := s.logger().With("agent", agentID, "zone", zone)
	ctx, cancel := context.WithCancel(r.Context())
	forget := s.register(zone, agentID, cancel)
	err = s.stream(w, r.WithContext(ctx), agentID, zone, from, shutdown)
	forget()
	cancel()
	s.track(agentID, zone, func(a *AgentStatus) { a.streams--; a.Connected = a.streams > 0 })
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		log.Debug("sync: stream ended")
	default:
		log.Info("sync: stream dropped", "err", err)
	}
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request, agentID, zone string, from uint64, shutdown <-chan struct{}) error {
	hb := orDefault(s.Heartbeat, DefaultHeartbeat)
	timeout := orDefault(s.Timeout, DefaultTimeout)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	// The stream outlives any http.Server ReadTimeout or WriteTimeout meant
	// for ordinary requests; its own heartbeats and timeout replace them.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return fmt.Errorf("flush headers: %w", err)
	}

	var lastRecv atomic.Int64
	lastRecv.Store(time.Now().UnixNano())
	var sent atomic.Uint64 // highest seq the agent may ack
	sent.Store(from)
	s.track(agentID, zone, func(a *AgentStatus) { a.streams++; a.Connected = true; a.LastSeen = time.Now() })

	ackErr := make(chan error, 1)
	go func() {
		rd := NewReader(r.Body, 1024)
		for {
			p, err := rd.Next()
			if err == nil {
				var seq uint64
				seq, err = decodeAck(p)
				if err == nil && seq > sent.Load() {
					err = fmt.Errorf("%w: ack %d for an event never sent (last %d)", ErrProtocol, seq, sent.Load())
				}
				if err == nil {
					now := time.Now()
					lastRecv.Store(now.UnixNano())
					s.track(agentID, zone, func(a *AgentStatus) { a.Acked = seq; a.LastSeen = now })
					if s.OnAck != nil {
						s.OnAck(agentID, zone, seq)
					}
					continue
				}
			}
			ackErr <- fmt.Errorf("read acks: %w", err)
			return
		}
	}()

	var buf []byte
	var ents []entry
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_ = rc.SetWriteDeadline(time.Now().Add(timeout)) // unsupported: rely on the ack timeout
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("write events: %w", err)
		}
		if err := rc.Flush(); err != nil {
			return fmt.Errorf("flush events: %w", err)
		}
		// An HTTP/2 write deadline resets the stream when it expires, even
		// with no write pending: clear it while idle.
		_ = rc.SetWriteDeadline(time.Time{})
		buf = buf[:0]
		return nil
	}
	heartbeat := func(head uint64) error {
		frame, err := EncodeEvent(Event{Seq: head, Kind: Heartbeat, Zone: zone, Time: time.Now()})
		if err != nil {
			return err
		}
		buf = append(buf, frame...)
		return nil
	}

	cursor := from
	caughtUp := false
	snapshotted := false
	tick := time.NewTicker(hb)
	defer tick.Stop()
	for {
		var b Batch
		ents, b = s.Feed.read(zone, cursor, writeBatch, ents[:0])
		if b.Resync {
			if s.Snapshot != nil && !snapshotted {
				seq, evs, err := s.Snapshot(ctx, zone)
				if err != nil {
					return fmt.Errorf("snapshot: %w", err)
				}
				snapshotted = true // a second Resync right away would loop
				if err := s.appendEvent(&buf, Event{Seq: seq, Kind: Resync, Zone: zone}); err != nil {
					return err
				}
				for i, ev := range evs {
					ev.Seq, ev.Zone = seq, zone
					if err := ev.check(); err != nil {
						return fmt.Errorf("snapshot event %d: %w", i, err)
					}
					if err := s.appendEvent(&buf, ev); err != nil {
						return fmt.Errorf("snapshot event %d: %w", i, err)
					}
				}
				cursor = seq
				sent.Store(max(sent.Load(), seq))
				if err := flush(); err != nil {
					return err
				}
				continue
			}
			if s.Snapshot != nil {
				// Fell behind the backlog after this stream's snapshot: a
				// Resync without one would empty the agent's cache. End the
				// stream; the agent reconnects and gets a fresh snapshot.
				return fmt.Errorf("agent fell %d events behind the backlog after its snapshot; it reconnects for a new one", b.Head-cursor)
			}
			if err := s.appendEvent(&buf, Event{Seq: b.From, Kind: Resync, Zone: zone}); err != nil {
				return err
			}
			cursor = b.From
		}
		for _, e := range ents {
			buf = append(buf, e.frame...)
			cursor = e.seq
		}
		sent.Store(max(sent.Load(), cursor))
		if len(ents) == writeBatch {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		if !caughtUp {
			caughtUp = true
			if err := heartbeat(b.Head); err != nil {
				return err
			}
		}
		if err := flush(); err != nil {
			return err
		}
		select {
		case <-b.Wait:
		case <-tick.C:
			if idle := time.Since(time.Unix(0, lastRecv.Load())); idle > timeout {
				return fmt.Errorf("%w: nothing from the agent for %v", ErrPeerTimeout, idle.Round(time.Millisecond))
			}
			if err := heartbeat(s.Feed.Head(zone)); err != nil {
				return err
			}
		case err := <-ackErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-shutdown:
			return nil
		}
	}
}

func (s *Server) appendEvent(buf *[]byte, ev Event) error {
	frame, err := EncodeEvent(ev)
	if err != nil {
		return err
	}
	if len(frame)-headerLen > s.Feed.maxFrame {
		return fmt.Errorf("event seq %d path %q: %w", ev.Seq, ev.Path, ErrFrameTooLarge)
	}
	*buf = append(*buf, frame...)
	return nil
}

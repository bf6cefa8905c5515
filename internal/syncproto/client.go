package syncproto

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// State is the client's view of its link to the server.
type State int

// Client states, reported through Client.OnState on every change.
const (
	// StateDegraded: no stream, or a stream that stopped delivering
	// (hung server, partition, protocol or apply error). The agent serves
	// from its cache within each entry's max_stale.
	StateDegraded State = iota + 1
	// StateConnected: a stream is open and its catch-up (revocations first)
	// has been applied; the agent is as fresh as the server's feed.
	StateConnected
)

// String returns "degraded" or "connected".
func (s State) String() string {
	switch s {
	case StateDegraded:
		return "degraded"
	case StateConnected:
		return "connected"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// maxCatchup bounds the events a client holds while it waits for the end of
// a catch-up (a backlog, or a snapshot), so a broken server cannot make it
// grow without end.
const maxCatchup = 1 << 20

// Client is the agent's end of the sync stream. Set its fields, then call
// Run once. Callbacks are called from Run's goroutine, one at a time.
type Client struct {
	// URL is the sync endpoint, https://<server>/v1/sys/agents/sync.
	URL string
	// TLSConfig carries the agent's client certificate and the server's CA.
	TLSConfig *tls.Config
	// From returns the highest sequence number durably applied (0 for a new
	// agent); it is read at each (re)connection. Required.
	From func() uint64
	// Apply applies events, in sequence order, durably, and returns the
	// highest sequence number now durably applied, which is acked to the
	// server (and must be what From returns afterwards). Events of one call
	// should be made durable together. Apply is given Resync events (purge
	// the zone first) and every kind but Heartbeat. An error drops the
	// stream; it is resumed from From(). Required.
	Apply func([]Event) (ackSeq uint64, err error)
	// ApplyRevocations, if set, is called after each (re)connection, once
	// the catch-up has arrived and before Apply sees it, with the catch-up's
	// events whose Kind.Revokes() (Resync, Revoke, Delete, DeleteVersion), in
	// order, so access is taken away before anything else changes. Apply is
	// then given the whole catch-up, these included, in order; applying them
	// twice must be harmless (removals are). It must not advance the
	// durable ack.
	ApplyRevocations func([]Event) error
	// OnState, if set, is told of every state change, and of the server
	// refusing the agent (ErrRefused) even while already degraded; err
	// says why the client is degraded.
	OnState func(s State, err error)
	// Heartbeat is how often the client re-sends its ack when idle
	// (DefaultHeartbeat).
	Heartbeat time.Duration
	// Timeout is how long the client waits without any frame (events or the
	// server's heartbeats) before it drops the stream and reports degraded
	// (DefaultTimeout). Also bounds dialing and waiting for the response.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnections
	// (100ms and 30s); the wait doubles after each failure, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// MaxFrame is the largest frame payload accepted (DefaultMaxFrame).
	MaxFrame int
	// MaxBatch bounds the events given to one Apply after the catch-up
	// (1024).
	MaxBatch int
	// Logger receives connection errors; nil discards them.
	Logger *slog.Logger

	state    State
	rejected bool // the last state change was the server refusing the agent
}

// Run follows the stream until ctx ends, reconnecting with capped,
// jittered exponential backoff and resuming from From(). It returns
// ctx's error, or at once an error naming a missing required field.
func (c *Client) Run(ctx context.Context) error {
	switch {
	case c.URL == "":
		return errors.New("syncproto: Client.URL is required")
	case c.From == nil:
		return errors.New("syncproto: Client.From is required")
	case c.Apply == nil:
		return errors.New("syncproto: Client.Apply is required")
	}
	if _, err := url.Parse(c.URL); err != nil {
		return fmt.Errorf("syncproto: Client.URL: %w", err)
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	minB, maxB := orDefault(c.MinBackoff, 100*time.Millisecond), orDefault(c.MaxBackoff, 30*time.Second)
	backoff := minB
	for {
		connected, err := c.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Info("sync: stream lost", "err", err)
		c.setState(StateDegraded, err)
		if connected {
			backoff = minB
		}
		wait := backoff/2 + rand.N(backoff/2+1) // jitter: [backoff/2, backoff]
		backoff = min(2*backoff, maxB)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *Client) setState(s State, err error) {
	rejected := errors.Is(err, ErrRefused)
	if s == c.state && rejected == c.rejected {
		return // a refusal is reported even while already degraded
	}
	c.state, c.rejected = s, rejected
	if c.OnState != nil {
		c.OnState(s, err)
	}
}

// session runs one stream. It reports whether the stream got as far as
// being connected (catch-up applied), and why it ended.
func (c *Client) session(parent context.Context) (connected bool, err error) {
	timeout := orDefault(c.Timeout, DefaultTimeout)
	hb := orDefault(c.Heartbeat, DefaultHeartbeat)
	maxBatch := c.MaxBatch
	if maxBatch <= 0 {
		maxBatch = 1024
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	// A fresh transport per stream: a hung server's connection must not be
	// reused for the next attempt.
	// Its connections are closed when the stream ends, even a busy one: a
	// stopped server's kernel keeps TCP alive, and the connection with it.
	var connMu sync.Mutex
	var conns []net.Conn
	dialer := &net.Dialer{Timeout: timeout}
	protos := new(http.Protocols)
	protos.SetHTTP2(true)
	tr := &http.Transport{
		TLSClientConfig: c.TLSConfig.Clone(),
		Protocols:       protos,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				connMu.Lock()
				conns = append(conns, conn)
				connMu.Unlock()
			}
			return conn, err
		},
		TLSHandshakeTimeout: timeout,
	}
	defer func() {
		tr.CloseIdleConnections()
		connMu.Lock()
		defer connMu.Unlock()
		for _, conn := range conns {
			_ = conn.Close()
		}
	}()

	from := c.From()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"?from="+strconv.FormatUint(from, 10), pr)
	if err != nil {
		return false, fmt.Errorf("sync request: %w", err)
	}
	req.Header.Set("Content-Type", ContentType)
	stop := time.AfterFunc(timeout, cancel) // bounds waiting for the response headers
	resp, err := tr.RoundTrip(req)
	headersInTime := stop.Stop()
	if err != nil {
		if !headersInTime && parent.Err() == nil {
			err = fmt.Errorf("%w: no response within %v: %v", ErrPeerTimeout, timeout, err)
		}
		return false, fmt.Errorf("sync request: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return false, fmt.Errorf("%w: %w: %s: %q", ErrRejected, ErrRefused, resp.Status, msg)
		}
		return false, fmt.Errorf("%w: %s: %q", ErrRejected, resp.Status, msg)
	}
	if resp.ProtoMajor != 2 || resp.Header.Get("Content-Type") != ContentType {
		return false, fmt.Errorf("%w: response is %s %q, want HTTP/2 %s", ErrProtocol, resp.Proto, resp.Header.Get("Content-Type"), ContentType)
	}

	// Acks and heartbeats go up the request body.
	acks := make(chan uint64, 1)
	go func() {
		t := time.NewTicker(hb)
		defer t.Stop()
		last := from
		var buf []byte
		for {
			buf = appendAck(buf[:0], last)
			if _, err := pw.Write(buf); err != nil {
				return
			}
			select {
			case last = <-acks:
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	sendAck := func(seq uint64) {
		select {
		case <-acks: // replace an ack not yet sent
		default:
		}
		acks <- seq
	}

	// Events come down the response body.
	var lastRecv atomic.Int64
	lastRecv.Store(time.Now().UnixNano())
	batches := make(chan []Event)
	readErr := make(chan error, 1)
	go func() {
		rd := NewReader(resp.Body, c.MaxFrame)
		var batch []Event
		for {
			ev, err := rd.ReadEvent()
			if err != nil {
				if err == io.EOF {
					err = fmt.Errorf("%w: server ended the stream", ErrProtocol)
				}
				readErr <- err
				return
			}
			lastRecv.Store(time.Now().UnixNano())
			batch = append(batch, ev)
			if rd.Buffered() > 0 && len(batch) < maxBatch {
				continue
			}
			select {
			case batches <- batch:
				batch = nil
			case <-ctx.Done():
				return
			}
		}
	}()

	cursor, snapshot := from, false
	var catchup []Event // nil once caught up
	caughtUp := false
	tick := time.NewTicker(max(timeout/10, time.Millisecond))
	defer tick.Stop()
	busyUntil := time.Now() // time spent in Apply does not count as silence

	apply := func(evs []Event) error {
		if len(evs) == 0 {
			return nil
		}
		ack, err := c.Apply(evs)
		busyUntil = time.Now()
		if err != nil {
			return fmt.Errorf("%w: events %d..%d: %w", ErrApply, evs[0].Seq, evs[len(evs)-1].Seq, err)
		}
		sendAck(ack)
		return nil
	}
	for {
		select {
		case batch := <-batches:
			var fresh []Event
			for _, ev := range batch {
				if ev.Kind == Heartbeat {
					if !caughtUp {
						caughtUp = true
						if err := c.deliverCatchup(catchup, apply); err != nil {
							return connected, err
						}
						catchup = nil
						connected = true
						c.setState(StateConnected, nil)
					}
					continue
				}
				switch {
				case ev.Kind == Resync:
					cursor, snapshot = ev.Seq, true
				case ev.Seq > cursor:
					cursor, snapshot = ev.Seq, false
				case snapshot && ev.Seq == cursor:
				default:
					return connected, fmt.Errorf("%w: event seq %d (%s) after seq %d", ErrProtocol, ev.Seq, ev.Kind, cursor)
				}
				if !caughtUp {
					if len(catchup) >= maxCatchup {
						return connected, fmt.Errorf("%w: catch-up longer than %d events", ErrProtocol, maxCatchup)
					}
					catchup = append(catchup, ev)
				} else {
					fresh = append(fresh, ev)
				}
			}
			if err := apply(fresh); err != nil {
				return connected, err
			}
		case err := <-readErr:
			return connected, fmt.Errorf("read events: %w", err)
		case now := <-tick.C:
			last := time.Unix(0, lastRecv.Load())
			if busyUntil.After(last) {
				last = busyUntil
			}
			if idle := now.Sub(last); idle > timeout {
				return connected, fmt.Errorf("%w: nothing from the server for %v", ErrPeerTimeout, idle.Round(time.Millisecond))
			}
		case <-ctx.Done():
			return connected, ctx.Err()
		}
	}
}

// deliverCatchup hands a catch-up to the agent: its revocations first, then
// all of it in order.
func (c *Client) deliverCatchup(evs []Event, apply func([]Event) error) error {
	if c.ApplyRevocations != nil {
		var rev []Event
		for _, ev := range evs {
			if ev.Kind.Revokes() {
				rev = append(rev, ev)
			}
		}
		if len(rev) > 0 {
			if err := c.ApplyRevocations(rev); err != nil {
				return fmt.Errorf("%w: revocations: %w", ErrApply, err)
			}
		}
	}
	return apply(evs)
}

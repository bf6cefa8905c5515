// Package syncproto is the stream that keeps an edge agent's cache in step
// with its zone on the server: the wire types, the server's Feed and
// Handler, and the agent's Client.
//
// # The idea
//
// Every change an agent may cache (a secret written or deleted, a lease
// updated, a revocation, a request to re-attest) is an Event, numbered in
// its zone by Feed.Publish: 1, 2, 3, ... An agent applies events durably,
// in order, and acks the highest number it has applied. Because the ack is
// durable on the agent, a reconnect is a resume: the agent asks for what
// follows its ack, and the server replays it from an in-memory backlog (a
// ring per zone). When the backlog no longer holds the gap, or the agent's
// ack is newer than the server's history (a server that lost it), the
// server sends a Resync: the agent purges the zone and rebuilds it from a
// snapshot (Server.Snapshot) and the events after it. The Feed is a replay
// buffer, not the source of truth.
//
// # Trust boundary
//
// The agent holds secrets its zone allows it to cache and nothing else:
// the server decides the zone from the agent's verified client certificate
// (Server.Authorize; SPIFFEAuthorizer reads spiffe://<td>/zone/<z>/agent/<id>),
// never from anything the agent sends. The only thing an agent sends is
// its ack, and the server refuses an ack for an event it never sent. Both
// ends treat the other's bytes as hostile: frames are bounded, decoding
// never panics, and any malformed frame, unknown event kind or backwards
// sequence number drops the stream (the agent resumes from its ack) rather
// than being skipped: a skipped event could be a revocation.
//
// # Revocations first
//
// Kinds that take access away (Kind.Revokes: Resync, Revoke, Delete,
// DeleteVersion) are distinguishable on the wire. After every (re)connect
// the server sends the catch-up, then a Heartbeat that marks its end; the
// client hands the catch-up's revocations to ApplyRevocations first, then
// the whole catch-up, in order, to Apply. Applying a removal early is
// always safe (it only removes; re-applying it in order is harmless), and
// only then does the client report StateConnected. No event is ever
// applied out of order otherwise, so the ack stays simple.
//
// # Transport
//
// One long-lived request per agent, opened by the agent (so it works from
// behind NAT):
//
//	POST /v1/sys/agents/sync?from=<ack>   (HTTP/2 over mutual TLS)
//	response body: frames, server → agent: events and heartbeats
//	request body:  frames, agent → server: {"ack":N}, repeated as heartbeat
//
// HTTP/2 streaming rather than WebSocket or gRPC: it needs no dependency
// beyond net/http, runs on the API's own listener, port, TLS configuration
// and client-certificate verification, passes through proxies and load
// balancers that speak HTTP/2, and gives full duplex on one stream with
// flow control. WebSocket would add a library and an upgrade that HTTP/2
// proxies handle unevenly; gRPC would add protobuf, a code generator and a
// second server stack for one stream. HTTP/1.1 is refused (505): the
// stream is full duplex and mTLS must reach the server, so it is HTTP/2 end
// to end.
//
// Heartbeats flow both ways (DefaultHeartbeat, 1 s). Each end drops a
// stream from which nothing has arrived for Timeout (DefaultTimeout, 5 s):
// the client reports StateDegraded and reconnects with capped, jittered
// exponential backoff; the server marks the agent disconnected. A hung
// server (SIGSTOPped, partitioned) is thus noticed within Timeout. The
// server also bounds each write by Timeout and clears the http.Server's
// read and write deadlines, which are meant for ordinary requests.
//
// # Framing
//
//	[4 bytes: payload length, big-endian uint32][payload: one JSON object]
//
// A payload is at most DefaultMaxFrame (4 MiB) unless configured, and never
// empty; a stream that ends inside a frame is ErrTruncated. Payloads are
// JSON (Event's field tags; Kind as its name; MaxStale in nanoseconds):
// measured on this machine class (BenchmarkEncodeJSON and friends; the
// machine was shared and loaded) JSON costs about 3 µs to encode and 5-6 µs
// to decode a typical 243-byte upsert frame, against 0.05 µs and 0.3 µs for
// a hand-rolled binary layout of the same event (147 bytes, so JSON is 65%
// larger). We keep JSON anyway: the server encodes
// each event once, at Publish, and copies the same bytes to every agent, so
// its cost does not grow with the number of agents and stays a few percent
// of one core at the server's durable write rate (bounded by fsync); the
// agent decodes only its own zone's events, far below its budget; Data and
// Metadata are JSON already and are embedded as they are; and a JSON
// stream can be read in a packet capture, extended with fields old agents
// ignore, and fuzzed against the standard decoder. Unknown kinds, unlike
// unknown fields, are refused.
package syncproto

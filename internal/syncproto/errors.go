package syncproto

import "errors"

// Errors returned by this package, grouped by phase. Match them with
// errors.Is; they are returned wrapped with the field, frame or sequence
// number at fault.
var (
	// ErrFrameTooLarge is returned when a frame's length prefix exceeds the
	// reader's limit, or when Publish is given an event whose encoding would.
	// The stream is dropped: a peer that sends one is broken or hostile.
	ErrFrameTooLarge = errors.New("syncproto: frame too large")
	// ErrTruncated is returned when a stream ends inside a frame (in its
	// length prefix or its payload). The stream is dropped; the agent
	// reconnects and resumes from its durable ack.
	ErrTruncated = errors.New("syncproto: truncated frame")
	// ErrMalformed is returned for a frame whose payload is not a valid
	// message: not JSON, an unknown kind, a missing or impossible field.
	ErrMalformed = errors.New("syncproto: malformed frame")
	// ErrProtocol is returned when well-formed messages break the protocol:
	// sequence numbers that go backwards, an ack for an event never sent,
	// a response that is not an HTTP/2 event stream.
	ErrProtocol = errors.New("syncproto: protocol violation")

	// ErrInvalidEvent is returned by Publish for an event it cannot accept
	// (a Heartbeat, a Resync, an unknown kind, a missing path); the wrapped
	// message names the index and the field.
	ErrInvalidEvent = errors.New("syncproto: invalid event")

	// ErrUnauthorized is returned by SPIFFEAuthorizer when a request carries
	// no verified agent identity for the server's trust domain.
	ErrUnauthorized = errors.New("syncproto: no verified agent identity")

	// ErrPeerTimeout is returned when nothing (no event, no heartbeat, no
	// ack) arrived from the peer within the configured timeout: the peer is
	// hung, stopped or partitioned. The agent reports StateDegraded.
	ErrPeerTimeout = errors.New("syncproto: peer timed out")
	// ErrRejected is returned by the client when the server refused the sync
	// request (non-200 status); the wrapped message has the status.
	ErrRejected = errors.New("syncproto: sync request rejected")
	// ErrRefused is wrapped with ErrRejected when the server answered 401 or
	// 403: it knows the agent and refuses it (quarantined, revoked, its
	// zone sealed), unlike a server that is sealed or failing (5xx).
	ErrRefused = errors.New("syncproto: the server refuses this agent")
	// ErrApply is returned when the client's Apply or ApplyRevocations
	// callback failed; the stream is dropped and resumed from From().
	ErrApply = errors.New("syncproto: apply failed")
)

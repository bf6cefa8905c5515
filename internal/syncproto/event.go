package syncproto

import (
	"encoding/json"
	"fmt"
	"time"
)

// Kind says what an Event asks the agent to do.
type Kind uint8

// Event kinds. The zero Kind is invalid, so a missing "kind" field is an
// error rather than a silent upsert.
const (
	// Upsert stores Data (and Metadata) as version Version of the secret at
	// Path, replacing what the agent holds there. MaxStale bounds how long
	// the agent may serve it while disconnected.
	Upsert Kind = iota + 1
	// Delete removes every version of the secret at Path.
	Delete
	// DeleteVersion removes version Version of the secret at Path.
	DeleteVersion
	// Lease updates the lease of the secret at Path: Metadata carries the
	// lease (id, ttl, renewable), MaxStale its new staleness bound.
	Lease
	// Revoke is a security revocation: the agent must purge every cached
	// secret and lease whose path starts with Path ("" purges the zone),
	// and stop serving them at once. Metadata may carry the reason.
	Revoke
	// Reattest asks the agent to prove its identity again (a new quote);
	// Metadata may carry a nonce.
	Reattest
	// Resync says the server cannot replay the agent's gap (its ack is older
	// than the backlog, or newer than the server's history): the agent must
	// purge everything it holds for the zone, because revocations may have
	// been missed. The events that follow with the same Seq (a snapshot of
	// the zone, if the server has one) and after it rebuild the cache. Not
	// stored in a Feed; the server generates it.
	Resync
	// Heartbeat carries no change. Seq is the zone's newest sequence number
	// (the agent's lag is Seq minus its ack). The first heartbeat on a
	// stream marks the end of the catch-up. Never passed to Apply.
	Heartbeat
)

// name returns the kind's wire name, "" for an invalid kind.
func (k Kind) name() string {
	switch k {
	case Upsert:
		return "upsert"
	case Delete:
		return "delete"
	case DeleteVersion:
		return "delete-version"
	case Lease:
		return "lease"
	case Revoke:
		return "revoke"
	case Reattest:
		return "reattest"
	case Resync:
		return "resync"
	case Heartbeat:
		return "heartbeat"
	}
	return ""
}

// String returns the kind's wire name ("upsert", "delete-version", ...).
func (k Kind) String() string {
	if k.valid() {
		return k.name()
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k >= Upsert && k <= Heartbeat }

// Revokes reports whether applying an event of this kind takes access
// away (Delete, DeleteVersion, Revoke, Resync). After a reconnect the
// client hands these to ApplyRevocations before anything else; applying
// them early is always safe, because they only remove.
func (k Kind) Revokes() bool {
	switch k {
	case Delete, DeleteVersion, Revoke, Resync:
		return true
	}
	return false
}

// MarshalText encodes the kind as its wire name.
func (k Kind) MarshalText() ([]byte, error) {
	if !k.valid() {
		return nil, fmt.Errorf("%w: kind %d", ErrMalformed, uint8(k))
	}
	return []byte(k.name()), nil
}

// UnmarshalText decodes a wire name. An unknown name is an error, not an
// event to skip: an agent that ignored a kind it does not know might miss a
// revocation, so it drops the stream instead (and stays degraded until
// upgraded).
func (k *Kind) UnmarshalText(b []byte) error {
	for c := Upsert; c <= Heartbeat; c++ {
		if c.name() == string(b) {
			*k = c
			return nil
		}
	}
	return fmt.Errorf("%w: unknown kind %q", ErrMalformed, b)
}

// Event is one change in a zone, as the server streams it to the zone's
// agents. Seq orders a zone's events: Feed.Publish assigns 1, 2, 3, ... and
// an agent acks the highest Seq it has durably applied.
type Event struct {
	// Seq is the event's position in its zone (see Kind for Resync and
	// Heartbeat).
	Seq uint64 `json:"seq"`
	// Kind says what to do.
	Kind Kind `json:"kind"`
	// Zone is the trust zone; Publish sets it.
	Zone string `json:"zone"`
	// Path is the secret's logical path in the zone (a prefix for Revoke).
	Path string `json:"path,omitempty"`
	// Version is the secret version for Upsert and DeleteVersion.
	Version int `json:"version,omitempty"`
	// Data is the secret as the server's read API would return it; only the
	// encrypted cache keeps it at rest.
	Data json.RawMessage `json:"data,omitempty"`
	// Metadata is kind-specific (KV metadata, lease, revocation reason).
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// MaxStale bounds how long a disconnected agent may serve the secret
	// after it last heard from the server; 0 means never while disconnected.
	// On the wire: nanoseconds.
	MaxStale time.Duration `json:"max_stale,omitempty"`
	// Time is when the server published the event (set by Publish).
	Time time.Time `json:"time,omitzero"`
}

// check validates an event received from the wire.
func (e *Event) check() error {
	if !e.Kind.valid() {
		return fmt.Errorf("%w: seq %d: missing or unknown kind", ErrMalformed, e.Seq)
	}
	if e.MaxStale < 0 {
		return fmt.Errorf("%w: seq %d: negative max_stale", ErrMalformed, e.Seq)
	}
	if e.Version < 0 {
		return fmt.Errorf("%w: seq %d: negative version", ErrMalformed, e.Seq)
	}
	switch e.Kind {
	case Upsert, Delete, DeleteVersion, Lease:
		if e.Path == "" {
			return fmt.Errorf("%w: seq %d: %s without path", ErrMalformed, e.Seq, e.Kind)
		}
	}
	if e.Kind == DeleteVersion && e.Version == 0 {
		return fmt.Errorf("%w: seq %d: delete-version without version", ErrMalformed, e.Seq)
	}
	return nil
}

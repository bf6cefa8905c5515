package revoke

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Errors returned while reading events. Match them with errors.Is.
var (
	// ErrMalformed is returned by the parsers when a payload is not valid
	// JSON of the expected shape or misses a required field. The wrapping
	// error names the field at fault. An endpoint maps it to 400.
	ErrMalformed = errors.New("revoke: malformed event")
	// ErrUnsupportedMediaType is returned by ParseCloudEvent for a content
	// type other than structured-mode JSON. An endpoint maps it to 415.
	ErrUnsupportedMediaType = errors.New("revoke: unsupported media type")
	// ErrTooManyEvents is returned by ParseAlertmanager for a payload of
	// more than MaxAlerts alerts. An endpoint maps it to 413; the wrapping
	// error names the "alerts" field.
	ErrTooManyEvents = errors.New("revoke: too many events in one request")
)

// MaxBodyBytes is the largest payload the parsers accept. Endpoints should
// cap the request body at this size before reading it.
const MaxBodyBytes = 1 << 20

// MaxAlerts is the most alerts one Alertmanager payload may carry. The rate
// limiter charges a request at most its source's Burst (so that a group
// larger than the burst can get through an idle bucket); capping the alerts
// per request bounds what one request can bring in for that price.
// Alertmanager's webhook_config max_alerts should be set at or below it.
const MaxAlerts = 1000

// Kind says which wire format an event arrived in.
type Kind string

// The event kinds, one per intake endpoint.
const (
	KindAlertmanager Kind = "alertmanager"
	KindCloudEvents  Kind = "cloudevents"
	KindGeneric      Kind = "generic"
)

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool {
	return k == KindAlertmanager || k == KindCloudEvents || k == KindGeneric
}

// Status is the state an event reports: a problem starting or ending.
type Status string

// The two statuses. Rules run their Actions for firing events and their
// OnResolved actions for resolved ones.
const (
	StatusFiring   Status = "firing"
	StatusResolved Status = "resolved"
)

// Valid reports whether s is firing or resolved.
func (s Status) Valid() bool { return s == StatusFiring || s == StatusResolved }

// Event is one alert or notification, whatever format it came in. Parsers
// fill everything but Source and ReceivedAt, which Intake.Admit sets.
// Labels, Annotations and Data are never nil after parsing.
type Event struct {
	// Source is the name of the configured source that sent the event.
	Source string `json:"source"`
	// Kind is the wire format it arrived in.
	Kind Kind `json:"kind"`
	// ID identifies the event for deduplication: the Alertmanager alert
	// fingerprint, the CloudEvents id, or the generic id.
	ID string `json:"id"`
	// Status is firing or resolved.
	Status Status `json:"status"`
	// Labels identify what the event is about (the alert's labels; for a
	// CloudEvent its type, source, subject and extension attributes).
	Labels map[string]string `json:"labels"`
	// Annotations are descriptive text (summary, description, runbook).
	Annotations map[string]string `json:"annotations"`
	// Data is any further payload: the CloudEvent data, the generic data,
	// or the Alertmanager group fields (receiver, groupKey, ...).
	Data map[string]any `json:"data"`
	// StartsAt is when the problem started (zero if not known).
	StartsAt time.Time `json:"starts_at,omitzero"`
	// EndsAt is when it ended (zero if not known or still firing).
	EndsAt time.Time `json:"ends_at,omitzero"`
	// ReceivedAt is when edgevault accepted the event.
	ReceivedAt time.Time `json:"received_at,omitzero"`
}

// DedupeKey is the identity under which an event is processed at most once:
// a hash of source, kind, ID, status and StartsAt. StartsAt is included so
// an alert that resolves and later fires again (same fingerprint, new
// start) is a new event, while Alertmanager's re-sends of a still-firing
// alert (same start) are duplicates. For CloudEvents, whose ids are unique
// only per CloudEvents source, the "source" label is included too.
func (e Event) DedupeKey() string {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(e.Source)
	field(string(e.Kind))
	field(e.ID)
	field(string(e.Status))
	if !e.StartsAt.IsZero() {
		field(e.StartsAt.UTC().Format(time.RFC3339Nano))
	} else {
		field("")
	}
	if e.Kind == KindCloudEvents {
		field(e.Labels["source"])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Parse reads a payload of the given kind. contentType is only consulted
// for CloudEvents.
func Parse(kind Kind, body []byte, contentType string) ([]Event, error) {
	switch kind {
	case KindAlertmanager:
		return ParseAlertmanager(body)
	case KindCloudEvents:
		ev, err := ParseCloudEvent(body, contentType)
		if err != nil {
			return nil, err
		}
		return []Event{ev}, nil
	case KindGeneric:
		ev, err := ParseGeneric(body)
		if err != nil {
			return nil, err
		}
		return []Event{ev}, nil
	}
	return nil, fmt.Errorf("%w: unknown kind %q", ErrMalformed, kind)
}

// malformed returns an ErrMalformed naming field.
func malformed(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, field, fmt.Sprintf(format, args...))
}

// checkSize rejects empty and oversized bodies.
func checkSize(body []byte) error {
	if len(body) == 0 {
		return malformed("body", "empty")
	}
	if len(body) > MaxBodyBytes {
		return malformed("body", "%d bytes, more than %d", len(body), MaxBodyBytes)
	}
	return nil
}

// parseTime reads an RFC 3339 timestamp; "" and Go's zero time
// ("0001-01-01T00:00:00Z", which Alertmanager sends for unknown end times)
// give the zero Time.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, malformed(field, "not an RFC 3339 time: %q", s)
	}
	if t.Year() <= 1 {
		return time.Time{}, nil
	}
	return t, nil
}

// nonNil returns m, or an empty map if m is nil.
func nonNil[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

package revoke

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// genericEvent is the body of POST /v1/sys/events/generic:
//
//	{
//	  "id":          "deploy-4711",              // required, the dedupe key
//	  "status":      "firing",                   // optional: firing (default) or resolved
//	  "labels":      {"agent_id": "a1", ...},    // optional, string values
//	  "annotations": {"summary": "...", ...},    // optional, string values
//	  "data":        {...},                      // optional, any JSON object
//	  "starts_at":   "2026-11-26T06:00:00Z",     // optional, RFC 3339
//	  "ends_at":     "2026-11-26T06:05:00Z"      // optional, RFC 3339
//	}
//
// Unknown members are rejected, so a typo does not silently drop a field.
type genericEvent struct {
	ID          string            `json:"id"`
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Data        map[string]any    `json:"data"`
	StartsAt    string            `json:"starts_at"`
	EndsAt      string            `json:"ends_at"`
}

// ParseGeneric reads edgevault's own event shape, for senders that are
// neither Alertmanager nor CloudEvents:
//
//	{"id": "deploy-4711", "status": "firing",
//	 "labels": {"agent_id": "a1"}, "annotations": {"summary": "..."},
//	 "data": {...}, "starts_at": "2026-11-26T06:00:00Z", "ends_at": "..."}
//
// id is required; status defaults to firing; labels and annotations take
// string values; data is any JSON object; times are RFC 3339. Unknown
// members are an error.
func ParseGeneric(body []byte) (Event, error) {
	if err := checkSize(body); err != nil {
		return Event{}, fmt.Errorf("generic: %w", err)
	}
	var g genericEvent
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&g); err != nil {
		return Event{}, fmt.Errorf("generic: %w", jsonError(err))
	}
	if _, err := d.Token(); err != io.EOF {
		return Event{}, fmt.Errorf("generic: %w", malformed("body", "data after the JSON object"))
	}
	if g.ID == "" {
		return Event{}, fmt.Errorf("generic: %w", malformed("id", "missing"))
	}
	if g.Status == "" {
		g.Status = string(StatusFiring)
	}
	if !Status(g.Status).Valid() {
		return Event{}, fmt.Errorf("generic: %w", malformed("status", "want firing or resolved, got %q", g.Status))
	}
	start, err := parseTime("starts_at", g.StartsAt)
	if err != nil {
		return Event{}, fmt.Errorf("generic: %w", err)
	}
	end, err := parseTime("ends_at", g.EndsAt)
	if err != nil {
		return Event{}, fmt.Errorf("generic: %w", err)
	}
	return Event{
		Kind:        KindGeneric,
		ID:          g.ID,
		Status:      Status(g.Status),
		Labels:      nonNil(g.Labels),
		Annotations: nonNil(g.Annotations),
		Data:        nonNil(g.Data),
		StartsAt:    start,
		EndsAt:      end,
	}, nil
}

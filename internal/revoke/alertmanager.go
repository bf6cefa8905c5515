package revoke

import (
	"encoding/json"
	"errors"
	"fmt"
)

// amPayload is the Alertmanager webhook body, version 4, as documented for
// webhook_config in the Alertmanager configuration reference. Unknown
// fields (Grafana adds some) are ignored.
type amPayload struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []amAlert         `json:"alerts"`
}

type amAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     string            `json:"startsAt"`
	EndsAt       string            `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// ParseAlertmanager reads an Alertmanager webhook payload (version "4") and
// returns one Event per alert, in payload order. Each event's Labels and
// Annotations are the alert's own (which include the common ones); Data
// holds the group fields: receiver, groupKey, groupLabels, externalURL,
// truncatedAlerts and the alert's generatorURL. The alert fingerprint is
// the event ID and is required. A payload of more than MaxAlerts alerts is
// ErrTooManyEvents.
func ParseAlertmanager(body []byte) ([]Event, error) {
	if err := checkSize(body); err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	var p amPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("alertmanager: %w", jsonError(err))
	}
	if p.Version != "4" {
		return nil, fmt.Errorf("alertmanager: %w", malformed("version", "want \"4\", got %q", p.Version))
	}
	if !Status(p.Status).Valid() {
		return nil, fmt.Errorf("alertmanager: %w", malformed("status", "want firing or resolved, got %q", p.Status))
	}
	if len(p.Alerts) == 0 {
		return nil, fmt.Errorf("alertmanager: %w", malformed("alerts", "empty"))
	}
	if len(p.Alerts) > MaxAlerts {
		return nil, fmt.Errorf("alertmanager: %w: alerts: %d alerts, more than %d per request (set max_alerts in the webhook_config)",
			ErrTooManyEvents, len(p.Alerts), MaxAlerts)
	}
	if p.TruncatedAlerts < 0 {
		return nil, fmt.Errorf("alertmanager: %w", malformed("truncatedAlerts", "negative"))
	}
	groupLabels := make(map[string]any, len(p.GroupLabels))
	for k, v := range p.GroupLabels {
		groupLabels[k] = v
	}
	out := make([]Event, 0, len(p.Alerts))
	for i, a := range p.Alerts {
		field := func(name string) string { return fmt.Sprintf("alerts[%d].%s", i, name) }
		if !Status(a.Status).Valid() {
			return nil, fmt.Errorf("alertmanager: %w", malformed(field("status"), "want firing or resolved, got %q", a.Status))
		}
		if a.Fingerprint == "" {
			return nil, fmt.Errorf("alertmanager: %w", malformed(field("fingerprint"), "missing"))
		}
		if len(a.Labels) == 0 {
			return nil, fmt.Errorf("alertmanager: %w", malformed(field("labels"), "empty"))
		}
		start, err := parseTime(field("startsAt"), a.StartsAt)
		if err != nil {
			return nil, fmt.Errorf("alertmanager: %w", err)
		}
		end, err := parseTime(field("endsAt"), a.EndsAt)
		if err != nil {
			return nil, fmt.Errorf("alertmanager: %w", err)
		}
		out = append(out, Event{
			Kind:        KindAlertmanager,
			ID:          a.Fingerprint,
			Status:      Status(a.Status),
			Labels:      a.Labels,
			Annotations: nonNil(a.Annotations),
			Data: map[string]any{
				"receiver":        p.Receiver,
				"groupKey":        p.GroupKey,
				"groupLabels":     groupLabels,
				"externalURL":     p.ExternalURL,
				"truncatedAlerts": float64(p.TruncatedAlerts),
				"generatorURL":    a.GeneratorURL,
			},
			StartsAt: start,
			EndsAt:   end,
		})
	}
	return out, nil
}

// jsonError turns a decoding error into an ErrMalformed naming the field or
// byte offset at fault.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		name := te.Field
		if name == "" {
			name = "body"
		}
		return malformed(name, "want %s, got JSON %s", te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return malformed("body", "invalid JSON at byte %d", se.Offset)
	}
	return malformed("body", "invalid JSON: %v", err)
}

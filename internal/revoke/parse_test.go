package revoke

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseAlertmanagerFixture(t *testing.T) {
	evs, err := ParseAlertmanager(readFile(t, "alertmanager.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	wantIDs := []string{"6f0d8a3c1b2e4f57", "a91c27e04d5b6f13", "0c4e9b7d2a1f3856"}
	wantStatus := []Status{StatusFiring, StatusFiring, StatusResolved}
	wantAgent := []string{"agent-0042", "agent-0043", "agent-0017"}
	for i, ev := range evs {
		if ev.Kind != KindAlertmanager || ev.ID != wantIDs[i] || ev.Status != wantStatus[i] || ev.Labels["agent_id"] != wantAgent[i] {
			t.Errorf("event %d: kind %s id %s status %s agent %s", i, ev.Kind, ev.ID, ev.Status, ev.Labels["agent_id"])
		}
		if ev.Labels["zone"] != "edge-eu" || ev.Data["receiver"] != "edgevault-revoke" ||
			ev.Data["groupKey"] != `{}:{alertname="AgentTamperDetected"}` ||
			ev.Data["externalURL"] != "http://alertmanager.example.internal:9093" {
			t.Errorf("event %d: labels %v data %v", i, ev.Labels, ev.Data)
		}
		if !strings.Contains(ev.Data["generatorURL"].(string), "g0.expr=edge_tpm_pcr_changed") {
			t.Errorf("event %d: generatorURL %v", i, ev.Data["generatorURL"])
		}
	}
	if want := time.Date(2026, 11, 26, 5, 58, 12, 431e6, time.UTC); !evs[0].StartsAt.Equal(want) {
		t.Errorf("startsAt %v, want %v", evs[0].StartsAt, want)
	}
	if !evs[0].EndsAt.IsZero() {
		t.Errorf("endsAt of a firing alert %v, want zero (0001-01-01 in the payload)", evs[0].EndsAt)
	}
	if want := time.Date(2026, 11, 26, 5, 40, 0, 0, time.UTC); !evs[2].EndsAt.Equal(want) {
		t.Errorf("endsAt %v, want %v", evs[2].EndsAt, want)
	}
	if evs[0].Annotations["summary"] != "Secure boot state changed on edge-eu-7" {
		t.Errorf("annotations %v", evs[0].Annotations)
	}
	// Distinct alerts have distinct dedupe keys; the resolved one differs
	// from a firing one with the same fingerprint.
	res := evs[0]
	res.Status = StatusResolved
	keys := map[string]bool{evs[0].DedupeKey(): true, evs[1].DedupeKey(): true, evs[2].DedupeKey(): true, res.DedupeKey(): true}
	if len(keys) != 4 {
		t.Errorf("dedupe keys collide: %v", keys)
	}
}

// mutateJSON decodes the fixture, applies f, and re-encodes it.
func mutateJSON(t *testing.T, name string, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readFile(t, name), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseAlertmanagerMalformed(t *testing.T) {
	alert0 := func(m map[string]any) map[string]any { return m["alerts"].([]any)[0].(map[string]any) }
	tests := []struct {
		name  string
		body  []byte
		field string
	}{
		{"empty", nil, "body"},
		{"not json", []byte("{"), "body"},
		{"array", []byte("[]"), "body"},
		{"version", mutateJSON(t, "alertmanager.json", func(m map[string]any) { m["version"] = "3" }), "version"},
		{"status", mutateJSON(t, "alertmanager.json", func(m map[string]any) { m["status"] = "ok" }), "status"},
		{"no alerts", mutateJSON(t, "alertmanager.json", func(m map[string]any) { m["alerts"] = []any{} }), "alerts"},
		{"alert status", mutateJSON(t, "alertmanager.json", func(m map[string]any) { alert0(m)["status"] = "" }), "alerts[0].status"},
		{"fingerprint", mutateJSON(t, "alertmanager.json", func(m map[string]any) { delete(alert0(m), "fingerprint") }), "alerts[0].fingerprint"},
		{"labels", mutateJSON(t, "alertmanager.json", func(m map[string]any) { alert0(m)["labels"] = map[string]any{} }), "alerts[0].labels"},
		{"label type", mutateJSON(t, "alertmanager.json", func(m map[string]any) { alert0(m)["labels"] = map[string]any{"a": 1} }), "alerts.labels"},
		{"startsAt", mutateJSON(t, "alertmanager.json", func(m map[string]any) { alert0(m)["startsAt"] = "yesterday" }), "alerts[0].startsAt"},
		{"truncated", mutateJSON(t, "alertmanager.json", func(m map[string]any) { m["truncatedAlerts"] = -1 }), "truncatedAlerts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAlertmanager(tt.body)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want ErrMalformed naming %q", err, tt.field)
			}
		})
	}
}

func TestParseCloudEvent(t *testing.T) {
	ev, err := ParseCloudEvent(readFile(t, "cloudevent.json"), "application/cloudevents+json; charset=utf-8")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != KindCloudEvents || ev.ID != "b7e0c9a2-5f1d-4c37-9a0e-3d2f1e6b8c41" || ev.Status != StatusFiring {
		t.Fatalf("event %+v", ev)
	}
	wantLabels := map[string]string{"type": "com.example.edr.compromise", "source": "https://edr.example.internal/sensors/eu",
		"subject": "agent-0042", "severity": "critical", "zone": "edge-eu"}
	for k, v := range wantLabels {
		if ev.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, ev.Labels[k], v)
		}
	}
	if len(ev.Labels) != len(wantLabels) {
		t.Errorf("labels %v", ev.Labels)
	}
	if ev.Data["agent_id"] != "agent-0042" || ev.Data["score"] != 97.0 || ev.Data["process"].(map[string]any)["pid"] != 4242.0 {
		t.Errorf("data %v", ev.Data)
	}
	if !ev.StartsAt.Equal(time.Date(2026, 11, 26, 6, 1, 2, 0, time.UTC)) {
		t.Errorf("time %v", ev.StartsAt)
	}
	// Same id from another CloudEvents source is another event.
	other := ev
	other.Labels = map[string]string{"source": "elsewhere"}
	if other.DedupeKey() == ev.DedupeKey() {
		t.Error("dedupe key ignores the CloudEvents source")
	}

	resolved := mutateJSON(t, "cloudevent.json", func(m map[string]any) { m["status"] = "resolved"; m["data"] = "text" })
	ev, err = ParseCloudEvent(resolved, CloudEventsMediaType)
	if err != nil || ev.Status != StatusResolved || ev.Data["value"] != "text" {
		t.Fatalf("resolved: %+v, %v", ev, err)
	}

	// Names over 20 characters are SHOULD NOT in the spec: accepted. A null
	// extension is an absent one.
	long := mutateJSON(t, "cloudevent.json", func(m map[string]any) { m["averyveryverylongextensionname"] = "v"; m["nothing"] = nil })
	ev, err = ParseCloudEvent(long, CloudEventsMediaType)
	if err != nil || ev.Labels["averyveryverylongextensionname"] != "v" {
		t.Fatalf("long extension name: %v %v", ev.Labels, err)
	}
	if _, ok := ev.Labels["nothing"]; ok {
		t.Fatalf("null extension became a label: %v", ev.Labels)
	}

	if _, err := ParseCloudEvent(readFile(t, "cloudevent.json"), "application/json"); !errors.Is(err, ErrUnsupportedMediaType) {
		t.Errorf("binary-mode content type: %v", err)
	}
	tests := []struct {
		name  string
		f     func(m map[string]any)
		field string
	}{
		{"specversion", func(m map[string]any) { m["specversion"] = "0.3" }, "specversion"},
		{"no id", func(m map[string]any) { delete(m, "id") }, "id: missing"},
		{"empty source", func(m map[string]any) { m["source"] = "" }, "source: empty"},
		{"type not string", func(m map[string]any) { m["type"] = 3 }, "type: not a string"},
		{"bad time", func(m map[string]any) { m["time"] = "now" }, "time"},
		{"bad extension name", func(m map[string]any) { m["Bad-Name"] = "x" }, "Bad-Name"},
		{"long bad extension name", func(m map[string]any) { m["averyveryverylongname_x"] = "x" }, "averyveryverylongname_x"},
		{"extension object", func(m map[string]any) { m["ext"] = map[string]any{} }, "ext"},
		{"extension float", func(m map[string]any) { m["ext"] = 1.5 }, "ext"},
		{"data and base64", func(m map[string]any) { m["data_base64"] = "AA==" }, "data_base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCloudEvent(mutateJSON(t, "cloudevent.json", tt.f), CloudEventsMediaType)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want ErrMalformed naming %q", err, tt.field)
			}
		})
	}
}

func TestParseGeneric(t *testing.T) {
	ev, err := ParseGeneric(readFile(t, "generic.json"))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != KindGeneric || ev.ID != "leak-2026-11-26-001" || ev.Status != StatusFiring ||
		ev.Labels["accessor"] != "hmac-accessor-9f1c" || ev.Data["repo"] != "example/public" ||
		ev.Annotations["summary"] == "" || ev.StartsAt.IsZero() {
		t.Fatalf("event %+v", ev)
	}
	ev, err = ParseGeneric([]byte(`{"id":"x"}`))
	if err != nil || ev.Status != StatusFiring || ev.Labels == nil || ev.Data == nil || ev.Annotations == nil {
		t.Fatalf("minimal: %+v, %v", ev, err)
	}
	tests := []struct{ body, field string }{
		{`{}`, "id"},
		{`{"id":"x","status":"open"}`, "status"},
		{`{"id":"x","labels":{"a":true}}`, "labels"},
		{`{"id":"x","lables":{}}`, "lables"},
		{`{"id":"x","ends_at":"soon"}`, "ends_at"},
		{`{"id":"x"} {"id":"y"}`, "after the JSON object"},
		{`{"id":"x"}]`, "after the JSON object"},
	}
	for _, tt := range tests {
		_, err := ParseGeneric([]byte(tt.body))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: err = %v, want ErrMalformed naming %q", tt.body, err, tt.field)
		}
	}
}

// An Alertmanager payload of more than MaxAlerts alerts is refused, naming
// the field; MaxAlerts alerts are accepted.
func TestParseAlertmanagerTooManyAlerts(t *testing.T) {
	alert := `{"status":"firing","labels":{"alertname":"x"},"startsAt":"2026-11-26T05:58:12Z","fingerprint":"f%d"}`
	payload := func(n int) []byte {
		var b strings.Builder
		b.WriteString(`{"version":"4","status":"firing","alerts":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strings.Replace(alert, "%d", strconv.Itoa(i), 1))
		}
		b.WriteString(`]}`)
		return []byte(b.String())
	}
	if evs, err := ParseAlertmanager(payload(MaxAlerts)); err != nil || len(evs) != MaxAlerts {
		t.Fatalf("%d alerts: %d events, %v", MaxAlerts, len(evs), err)
	}
	_, err := ParseAlertmanager(payload(MaxAlerts + 1))
	if !errors.Is(err, ErrTooManyEvents) || !strings.Contains(err.Error(), "alerts") {
		t.Fatalf("%d alerts: %v, want ErrTooManyEvents naming alerts", MaxAlerts+1, err)
	}
}

func TestParseTooLarge(t *testing.T) {
	big := []byte(`{"id":"x","annotations":{"a":"` + strings.Repeat("x", MaxBodyBytes) + `"}}`)
	if _, err := ParseGeneric(big); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized body: %v", err)
	}
}

// checkEvents asserts what every successfully parsed event satisfies.
func checkEvents(t *testing.T, evs []Event, kind Kind) {
	t.Helper()
	for i, ev := range evs {
		if ev.Kind != kind || ev.ID == "" || !ev.Status.Valid() || ev.Labels == nil || ev.Annotations == nil || ev.Data == nil {
			t.Fatalf("event %d violates invariants: %+v", i, ev)
		}
		_ = ev.DedupeKey()
	}
}

func FuzzParseAlertmanager(f *testing.F) {
	f.Add(readFile(f, "alertmanager.json"))
	f.Add([]byte(`{"version":"4","status":"resolved","alerts":[{"status":"resolved","labels":{"a":"b"},"fingerprint":"f","startsAt":"0001-01-01T00:00:00Z"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := ParseAlertmanager(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if len(evs) == 0 {
			t.Fatal("no events and no error")
		}
		checkEvents(t, evs, KindAlertmanager)
	})
}

func FuzzParseCloudEvent(f *testing.F) {
	f.Add(readFile(f, "cloudevent.json"), CloudEventsMediaType)
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"AA==","status":"resolved","n":3}`), "application/cloudevents+json; charset=utf-8")
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		ev, err := ParseCloudEvent(body, ct)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedMediaType) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		checkEvents(t, []Event{ev}, KindCloudEvents)
		if ev.Labels["type"] == "" || ev.Labels["source"] == "" {
			t.Fatalf("missing type/source: %+v", ev)
		}
	})
}

func FuzzParseGeneric(f *testing.F) {
	f.Add(readFile(f, "generic.json"))
	f.Add([]byte(`{"id":"x","status":"resolved","data":{"a":[1,{"b":null}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseGeneric(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		checkEvents(t, []Event{ev}, KindGeneric)
	})
}

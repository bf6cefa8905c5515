package revoke

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"strconv"
	"strings"
)

// CloudEventsMediaType is the content type of a CloudEvent in structured
// JSON mode, the only mode ParseCloudEvent reads.
const CloudEventsMediaType = "application/cloudevents+json"

// ceMember reports whether name is a CloudEvents 1.0 member that is not an
// extension attribute, and whether it is required.
func ceMember(name string) (known, required bool) {
	switch name {
	case "specversion", "id", "source", "type":
		return true, true
	case "datacontenttype", "dataschema", "subject", "time", "data", "data_base64":
		return true, false
	}
	return false, false
}

// ParseCloudEvent reads one CloudEvent 1.0 in structured JSON mode.
// contentType must be application/cloudevents+json (parameters such as
// charset are allowed); anything else, including binary mode and batches,
// is ErrUnsupportedMediaType.
//
// The event maps to an Event as follows: ID is the CloudEvents id; Labels
// hold "type", "source" (the CloudEvents source URI, not the edgevault
// source), "subject" if present, and every extension attribute as a
// string (an extension whose value is JSON null is treated as absent);
// Status is the "status" extension if it is firing or resolved,
// otherwise firing; StartsAt is "time". Data is the data member when it is
// a JSON object; any other JSON data is Data["value"], and data_base64 is
// kept, not decoded, as Data["data_base64"]. Annotations is empty.
func ParseCloudEvent(body []byte, contentType string) (Event, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != CloudEventsMediaType {
		return Event{}, fmt.Errorf("cloudevents: content type %q: %w (want %s)", contentType, ErrUnsupportedMediaType, CloudEventsMediaType)
	}
	if err := checkSize(body); err != nil {
		return Event{}, fmt.Errorf("cloudevents: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return Event{}, fmt.Errorf("cloudevents: %w", jsonError(err))
	}
	str := func(name string) (string, error) {
		v, ok := raw[name]
		if !ok || bytes.Equal(v, []byte("null")) {
			if _, req := ceMember(name); req {
				return "", malformed(name, "missing")
			}
			return "", nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", malformed(name, "not a string")
		}
		if _, req := ceMember(name); req && s == "" {
			return "", malformed(name, "empty")
		}
		return s, nil
	}
	attrs := map[string]string{}
	for _, name := range []string{"specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time"} {
		s, err := str(name)
		if err != nil {
			return Event{}, fmt.Errorf("cloudevents: %w", err)
		}
		attrs[name] = s
	}
	if attrs["specversion"] != "1.0" {
		return Event{}, fmt.Errorf("cloudevents: %w", malformed("specversion", "want \"1.0\", got %q", attrs["specversion"]))
	}
	start, err := parseTime("time", attrs["time"])
	if err != nil {
		return Event{}, fmt.Errorf("cloudevents: %w", err)
	}
	ev := Event{
		Kind:        KindCloudEvents,
		ID:          attrs["id"],
		Status:      StatusFiring,
		Labels:      map[string]string{"type": attrs["type"], "source": attrs["source"]},
		Annotations: map[string]string{},
		Data:        map[string]any{},
		StartsAt:    start,
	}
	if attrs["subject"] != "" {
		ev.Labels["subject"] = attrs["subject"]
	}
	for name, v := range raw {
		if known, _ := ceMember(name); known {
			continue
		}
		if !validExtensionName(name) {
			return Event{}, fmt.Errorf("cloudevents: %w", malformed(name, "extension attribute names are lowercase letters or digits"))
		}
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			continue // a null attribute is an absent one
		}
		s, err := extensionValue(v)
		if err != nil {
			return Event{}, fmt.Errorf("cloudevents: %w", malformed(name, "%v", err))
		}
		ev.Labels[name] = s
	}
	if s := ev.Labels["status"]; Status(s).Valid() {
		ev.Status = Status(s)
	}
	data, hasData := raw["data"]
	b64, hasB64 := raw["data_base64"]
	switch {
	case hasData && hasB64:
		return Event{}, fmt.Errorf("cloudevents: %w", malformed("data_base64", "present together with data"))
	case hasB64:
		var s string
		if err := json.Unmarshal(b64, &s); err != nil {
			return Event{}, fmt.Errorf("cloudevents: %w", malformed("data_base64", "not a string"))
		}
		ev.Data["data_base64"] = s
	case hasData:
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return Event{}, fmt.Errorf("cloudevents: %w", malformed("data", "%v", err))
		}
		switch v := v.(type) {
		case map[string]any:
			ev.Data = v
		case nil:
		default:
			ev.Data["value"] = v
		}
	}
	return ev, nil
}

// validExtensionName reports whether name follows the CloudEvents attribute
// naming rule: lowercase ASCII letters and digits. The specification says
// names SHOULD NOT exceed 20 characters, so longer ones are accepted.
func validExtensionName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// extensionValue renders an extension attribute (string, integer or
// boolean in JSON) as a string.
func extensionValue(v json.RawMessage) (string, error) {
	var x any
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	if err := d.Decode(&x); err != nil {
		return "", err
	}
	switch x := x.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case json.Number:
		if strings.ContainsAny(x.String(), ".eE") {
			return "", fmt.Errorf("number %s is not an integer", x)
		}
		return x.String(), nil
	}
	return "", fmt.Errorf("want string, integer or boolean")
}

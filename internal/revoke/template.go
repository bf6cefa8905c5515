package revoke

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// template is a parameter value: literal text and references to event
// fields, alternating. A segment with a nil ref is literal.
type template []segment

type segment struct {
	lit string
	ref []string // e.g. ["labels", "agent_id"], ["id"], ["data", "a", "b"]
}

// parseTemplate parses "text {{ref}} text". Refs are id, source, kind,
// status, labels.<name>, annotations.<name>, data.<key>[.<key>...].
// "{{" without a matching "}}" is an error; there is no escape for a
// literal "{{".
func parseTemplate(s string) (template, error) {
	var t template
	for s != "" {
		i := strings.Index(s, "{{")
		if i < 0 {
			t = append(t, segment{lit: s})
			break
		}
		if i > 0 {
			t = append(t, segment{lit: s[:i]})
		}
		rest := s[i+2:]
		j := strings.Index(rest, "}}")
		if j < 0 {
			return nil, fmt.Errorf("unterminated {{ at byte %d", i)
		}
		ref, err := parseRef(strings.TrimSpace(rest[:j]))
		if err != nil {
			return nil, err
		}
		t = append(t, segment{ref: ref})
		s = rest[j+2:]
	}
	if len(t) == 0 {
		t = append(t, segment{lit: ""})
	}
	return t, nil
}

// parseRef checks one reference.
func parseRef(s string) ([]string, error) {
	parts := strings.Split(s, ".")
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("reference {{%s}}: empty name", s)
		}
		if strings.ContainsAny(p, "{} \t") {
			return nil, fmt.Errorf("reference {{%s}}: bad character", s)
		}
	}
	switch parts[0] {
	case "id", "source", "kind", "status":
		if len(parts) != 1 {
			return nil, fmt.Errorf("reference {{%s}}: %s has no fields", s, parts[0])
		}
	case "labels", "annotations":
		if len(parts) != 2 {
			return nil, fmt.Errorf("reference {{%s}}: want %s.<name>", s, parts[0])
		}
	case "data":
		if len(parts) < 2 {
			return nil, fmt.Errorf("reference {{%s}}: want data.<key>", s)
		}
	default:
		return nil, fmt.Errorf("reference {{%s}}: unknown field %q; want id, source, kind, status, labels.<name>, annotations.<name> or data.<key>", s, parts[0])
	}
	return parts, nil
}

// static reports whether t has no references.
func (t template) static() bool {
	for _, s := range t {
		if s.ref != nil {
			return false
		}
	}
	return true
}

// lit returns the text of a static template.
func (t template) lit() string {
	var b strings.Builder
	for _, s := range t {
		b.WriteString(s.lit)
	}
	return b.String()
}

// resolve fills t from ev. Every reference must resolve to a non-empty
// string, number or boolean: a missing label is an error, never an empty
// string, so "{{labels.agent_id}}" cannot widen a revocation to everything.
// With escape set (url parameters) substituted values are query-escaped.
func (t template) resolve(ev *Event, escape bool) (string, error) {
	if len(t) == 1 && t[0].ref == nil {
		return t[0].lit, nil
	}
	var b strings.Builder
	for _, s := range t {
		if s.ref == nil {
			b.WriteString(s.lit)
			continue
		}
		v, err := lookup(ev, s.ref)
		if err != nil {
			return "", err
		}
		if v == "" {
			return "", fmt.Errorf("{{%s}} is empty", strings.Join(s.ref, "."))
		}
		if escape {
			v = url.QueryEscape(v)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// lookup finds one reference in ev.
func lookup(ev *Event, ref []string) (string, error) {
	name := strings.Join(ref, ".")
	switch ref[0] {
	case "id":
		return ev.ID, nil
	case "source":
		return ev.Source, nil
	case "kind":
		return string(ev.Kind), nil
	case "status":
		return string(ev.Status), nil
	case "labels", "annotations":
		m := ev.Labels
		if ref[0] == "annotations" {
			m = ev.Annotations
		}
		v, ok := m[ref[1]]
		if !ok {
			return "", fmt.Errorf("{{%s}}: no such %s", name, ref[0][:len(ref[0])-1])
		}
		return v, nil
	}
	var cur any = ev.Data
	for _, k := range ref[1:] {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", fmt.Errorf("{{%s}}: %q is not inside an object", name, k)
		}
		if cur, ok = m[k]; !ok {
			return "", fmt.Errorf("{{%s}}: no such data key %q", name, k)
		}
	}
	switch v := cur.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("{{%s}}: not a string, number or boolean", name)
}

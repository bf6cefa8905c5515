package revoke

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// Errors about rules. Match them with errors.Is.
var (
	// ErrInvalidRule is returned when a rule is written (Store.PutRule,
	// Compiler.Compile) with a bad name, a CEL expression that does not
	// parse or type-check to bool, an unknown action type, a missing or
	// unknown parameter, or a bad template. The wrapping error carries the
	// CEL message or names the field. An endpoint maps it to 400.
	ErrInvalidRule = errors.New("revoke: invalid rule")
	// ErrEval is wrapped by a RuleError when a rule's expression fails at
	// run time (a missing map key, a type mismatch on dyn data, the cost
	// limit) or a template cannot be resolved against the event.
	ErrEval = errors.New("revoke: rule evaluation failed")
)

// Limits on rules.
const (
	// MaxExpressionLen is the longest CEL expression accepted, in bytes.
	MaxExpressionLen = 4096
	// MaxActions is the most actions a rule may have in Actions, and
	// again in OnResolved.
	MaxActions = 16
)

// ActionType names what an action does. The executor (in httpapi) carries
// it out; this package only plans it.
type ActionType string

// The action types and their parameters (required, then optional). Every
// type also takes an optional "reason" recorded with the action.
const (
	// QuarantineAgent stops serving an agent's cache until released: zone, agent_id.
	QuarantineAgent ActionType = "quarantine_agent"
	// RevokeAgent revokes an agent's certificate and everything it holds: zone, agent_id.
	RevokeAgent ActionType = "revoke_agent"
	// RevokePrefix revokes the leases under a path in a zone: zone, prefix.
	RevokePrefix ActionType = "revoke_prefix"
	// RevokeTokenAccessor revokes the token with an accessor: accessor; optional zone.
	RevokeTokenAccessor ActionType = "revoke_token_accessor"
	// RotateZoneKey adds a new key version to a zone's keyring: zone.
	RotateZoneKey ActionType = "rotate_zone_key"
	// SealZone seals a zone: zone.
	SealZone ActionType = "seal_zone"
	// Notify posts the event and rule to a webhook: url (http or https); optional message.
	Notify ActionType = "notify"

	// The recovery actions undo a quarantine or a seal. They are accepted
	// in Actions and OnResolved alike but meant for OnResolved: the alert
	// that isolated something resolves and the same rule lets it back in.
	// They push nothing to agents.

	// ReleaseAgent sets a quarantined agent active again: zone, agent_id.
	// A revoked agent is never released; a pending re-attestation deadline
	// is not cleared (a TPM agent must still re-attest).
	ReleaseAgent ActionType = "release_agent"
	// UnsealZone lifts a seal set by SealZone: zone.
	UnsealZone ActionType = "unseal_zone"
)

// Recovery reports whether t undoes an isolation (ReleaseAgent,
// UnsealZone): an action meant for a rule's OnResolved.
func (t ActionType) Recovery() bool {
	return t == ReleaseAgent || t == UnsealZone
}

// actionParams returns the required and optional parameters of t, and
// whether t is known.
func actionParams(t ActionType) (required, optional []string, ok bool) {
	switch t {
	case QuarantineAgent, RevokeAgent, ReleaseAgent:
		return []string{"zone", "agent_id"}, []string{"reason"}, true
	case RevokePrefix:
		return []string{"zone", "prefix"}, []string{"reason"}, true
	case RevokeTokenAccessor:
		return []string{"accessor"}, []string{"zone", "reason"}, true
	case RotateZoneKey, SealZone, UnsealZone:
		return []string{"zone"}, []string{"reason"}, true
	case Notify:
		return []string{"url"}, []string{"message", "reason"}, true
	}
	return nil, nil, false
}

// ActionTypes lists every action type, sorted.
func ActionTypes() []ActionType {
	return []ActionType{Notify, QuarantineAgent, ReleaseAgent, RevokeAgent, RevokePrefix, RevokeTokenAccessor,
		RotateZoneKey, SealZone, UnsealZone}
}

// Action is one thing a rule does when it matches. Params values are
// templates: literal text with "{{ref}}" placeholders, where ref is id,
// source, kind, status, labels.<name>, annotations.<name> or
// data.<key>[.<key>...]. For example {"zone": "edge-eu",
// "agent_id": "{{labels.agent_id}}"}.
type Action struct {
	// Type is what to do.
	Type ActionType `json:"type"`
	// Params are the action's parameters, as templates.
	Params map[string]string `json:"params"`
}

// Rule says which events trigger which actions.
//
// Expression is CEL, type-checked to bool, over one variable, event, with
// fields labels and annotations (map(string, string)), status, source,
// kind and id (string), data (map(string, dyn)) and starts_at (timestamp):
//
//	event.status == "firing" && event.labels.severity == "critical" &&
//	    "agent_id" in event.labels
//
// When it is true for a firing event, Actions are planned; for a resolved
// event, OnResolved (the recovery) is. Indexing a missing label is a
// run-time error, reported as a RuleError for this rule alone; guard with
// `"k" in event.labels` or use event.labels.?k.orValue("").
type Rule struct {
	// Name identifies the rule, as in sys/events/rules/:name.
	Name string `json:"name"`
	// Description is free text for operators.
	Description string `json:"description,omitempty"`
	// Expression selects events (CEL, bool).
	Expression string `json:"expression"`
	// Actions run when a firing event matches.
	Actions []Action `json:"actions,omitempty"`
	// OnResolved runs when a resolved event matches.
	OnResolved []Action `json:"on_resolved,omitempty"`
}

// invalid returns an ErrInvalidRule for rule name, naming field.
func invalid(name, field, format string, args ...any) error {
	return fmt.Errorf("%w: rule %q: %s: %s", ErrInvalidRule, name, field, fmt.Sprintf(format, args...))
}

// compiledAction is an Action with its templates parsed.
type compiledAction struct {
	typ    ActionType
	params map[string]template
}

// compileActions checks and parses a list of actions; field names it
// ("actions" or "on_resolved") in errors.
func compileActions(rule, field string, acts []Action) ([]compiledAction, error) {
	if len(acts) > MaxActions {
		return nil, invalid(rule, field, "%d actions, at most %d", len(acts), MaxActions)
	}
	out := make([]compiledAction, 0, len(acts))
	for i, a := range acts {
		f := fmt.Sprintf("%s[%d]", field, i)
		req, opt, ok := actionParams(a.Type)
		if !ok {
			return nil, invalid(rule, f+".type", "unknown action %q; want one of %v", a.Type, ActionTypes())
		}
		ca := compiledAction{typ: a.Type, params: make(map[string]template, len(a.Params))}
		for _, p := range req {
			if _, ok := a.Params[p]; !ok {
				return nil, invalid(rule, f+".params", "%s needs %q", a.Type, p)
			}
		}
		names := make([]string, 0, len(a.Params))
		for p := range a.Params {
			names = append(names, p)
		}
		sort.Strings(names)
		for _, p := range names {
			if !slices.Contains(req, p) && !slices.Contains(opt, p) {
				return nil, invalid(rule, f+".params", "%s takes no parameter %q (required %v, optional %v)", a.Type, p, req, opt)
			}
			t, err := parseTemplate(a.Params[p])
			if err != nil {
				return nil, invalid(rule, f+".params."+p, "%v", err)
			}
			if t.static() {
				if err := checkParam(p, t.lit()); err != nil {
					return nil, invalid(rule, f+".params."+p, "%v", err)
				}
			}
			ca.params[p] = t
		}
		out = append(out, ca)
	}
	return out, nil
}

// checkParam validates a fully resolved parameter value. Values naming a
// single object (zone, agent_id, accessor) must be one path segment; a
// prefix must be a relative path without ".." segments; a url must be an
// absolute http or https URL.
func checkParam(name, v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("empty")
	}
	text := name == "message" || name == "reason"
	for _, r := range v {
		if (r < ' ' || r == 0x7f) && !(text && (r == '\n' || r == '\t')) {
			return fmt.Errorf("contains a control character")
		}
	}
	switch name {
	case "zone", "agent_id", "accessor":
		if strings.ContainsAny(v, "/ \t") || v == "." || v == ".." {
			return fmt.Errorf("%q is not a single name", v)
		}
	case "prefix":
		if strings.HasPrefix(v, "/") {
			return fmt.Errorf("%q must be relative (no leading /)", v)
		}
		if slices.Contains(strings.Split(v, "/"), "..") {
			return fmt.Errorf("%q has a .. segment", v)
		}
	case "url":
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The value is not echoed: webhook URLs carry secrets.
			return fmt.Errorf("not an absolute http(s) URL")
		}
	}
	return nil
}

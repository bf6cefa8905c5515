package revoke

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// recoveryRule quarantines and seals on firing and undoes both on resolved.
func recoveryRule() Rule {
	return Rule{
		Name:       "tamper-recover",
		Expression: `event.labels.alertname == "AgentTamperDetected"`,
		Actions: []Action{
			{Type: QuarantineAgent, Params: map[string]string{"zone": "{{labels.zone}}", "agent_id": "{{labels.agent_id}}"}},
			{Type: SealZone, Params: map[string]string{"zone": "{{labels.zone}}"}},
		},
		OnResolved: []Action{
			{Type: ReleaseAgent, Params: map[string]string{"zone": "{{labels.zone}}", "agent_id": "{{labels.agent_id}}", "reason": "{{annotations.summary}}"}},
			{Type: UnsealZone, Params: map[string]string{"zone": "{{labels.zone}}"}},
		},
	}
}

func TestRecoveryActionTypes(t *testing.T) {
	types := ActionTypes()
	if !slices.IsSorted(types) {
		t.Fatalf("ActionTypes() not sorted: %v", types)
	}
	for _, want := range []ActionType{ReleaseAgent, UnsealZone} {
		if !slices.Contains(types, want) {
			t.Errorf("ActionTypes() lacks %q", want)
		}
	}
	for _, typ := range types {
		if got, want := typ.Recovery(), typ == ReleaseAgent || typ == UnsealZone; got != want {
			t.Errorf("%s.Recovery() = %v, want %v", typ, got, want)
		}
	}
}

func TestRecoveryActionParams(t *testing.T) {
	c, err := NewCompiler(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compile(recoveryRule()); err != nil {
		t.Fatalf("valid recovery rule rejected: %v", err)
	}
	// Accepted in actions too (documented as meant for on_resolved).
	r := recoveryRule()
	r.Actions, r.OnResolved = r.OnResolved, nil
	if _, err := c.Compile(r); err != nil {
		t.Fatalf("recovery actions in actions rejected: %v", err)
	}
	onResolved := func(typ ActionType, p map[string]string) Rule {
		r := recoveryRule()
		r.OnResolved = []Action{{Type: typ, Params: p}}
		return r
	}
	tests := []struct {
		name string
		rule Rule
		want string
	}{
		{"release without agent_id", onResolved(ReleaseAgent, map[string]string{"zone": "z"}), `on_resolved[0].params: release_agent needs "agent_id"`},
		{"release without zone", onResolved(ReleaseAgent, map[string]string{"agent_id": "a"}), `release_agent needs "zone"`},
		{"release with prefix", onResolved(ReleaseAgent, map[string]string{"zone": "z", "agent_id": "a", "prefix": "p/"}), `no parameter "prefix"`},
		{"release static agent path", onResolved(ReleaseAgent, map[string]string{"zone": "z", "agent_id": "a/b"}), "on_resolved[0].params.agent_id: \"a/b\" is not a single name"},
		{"release static agent dotdot", onResolved(ReleaseAgent, map[string]string{"zone": "z", "agent_id": ".."}), "not a single name"},
		{"unseal without zone", onResolved(UnsealZone, map[string]string{}), `unseal_zone needs "zone"`},
		{"unseal with agent_id", onResolved(UnsealZone, map[string]string{"zone": "z", "agent_id": "a"}), `no parameter "agent_id"`},
		{"unseal static bad zone", onResolved(UnsealZone, map[string]string{"zone": "edge eu"}), "not a single name"},
		{"unseal empty zone", onResolved(UnsealZone, map[string]string{"zone": " "}), "empty"},
		{"unseal bad template", onResolved(UnsealZone, map[string]string{"zone": "{{labels.zone"}), "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Compile(tt.rule)
			if !errors.Is(err, ErrInvalidRule) {
				t.Fatalf("err = %v, want ErrInvalidRule", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// A resolved event plans the recovery with templates filled; a label value
// that is not a single name fails the rule instead of reaching the executor.
func TestRecoveryPlanned(t *testing.T) {
	c, err := NewCompiler(0)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := c.Compile(recoveryRule())
	if err != nil {
		t.Fatal(err)
	}
	ev := Event{Source: "am", Kind: KindAlertmanager, ID: "fp1", Status: StatusResolved,
		Labels:      map[string]string{"alertname": "AgentTamperDetected", "zone": "edge-eu", "agent_id": "agent-0042"},
		Annotations: map[string]string{"summary": "secure boot restored"}, Data: map[string]any{}}
	got, err := cr.Plan(t.Context(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Type != ReleaseAgent || got[1].Type != UnsealZone || !got[0].Recovery || !got[1].Recovery {
		t.Fatalf("planned %+v", got)
	}
	if p := got[0].Params; p["zone"] != "edge-eu" || p["agent_id"] != "agent-0042" || p["reason"] != "secure boot restored" {
		t.Fatalf("release params %v", p)
	}
	if p := got[1].Params; len(p) != 1 || p["zone"] != "edge-eu" {
		t.Fatalf("unseal params %v", p)
	}

	// Firing plans the isolation, not the recovery.
	ev.Status = StatusFiring
	if got, err := cr.Plan(t.Context(), ev); err != nil || len(got) != 2 || got[0].Type != QuarantineAgent || got[0].Recovery {
		t.Fatalf("firing planned %+v, %v", got, err)
	}

	for _, bad := range []struct{ label, value, field string }{
		{"agent_id", "../agent-0001", "on_resolved[0].params.agent_id"},
		{"zone", "edge-eu/x", "on_resolved[0].params.zone"},
	} {
		ev := ev
		ev.Status = StatusResolved
		ev.Labels = map[string]string{"alertname": "AgentTamperDetected", "zone": "edge-eu", "agent_id": "agent-0042"}
		ev.Labels[bad.label] = bad.value
		_, err := cr.Plan(t.Context(), ev)
		if !errors.Is(err, ErrEval) || !strings.Contains(err.Error(), bad.field) {
			t.Fatalf("%s=%q: err = %v, want ErrEval naming %s", bad.label, bad.value, err, bad.field)
		}
	}
}

package revoke

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/bolt"
)

func tamperRule() Rule {
	return Rule{
		Name:       "tamper",
		Expression: `event.labels.alertname == "AgentTamperDetected" && event.labels.severity == "critical"`,
		Actions: []Action{
			{Type: QuarantineAgent, Params: map[string]string{"zone": "{{labels.zone}}", "agent_id": "{{labels.agent_id}}", "reason": "{{annotations.summary}}"}},
			{Type: RevokePrefix, Params: map[string]string{"zone": "{{labels.zone}}", "prefix": "pki/issue/agents/{{labels.agent_id}}/"}},
		},
		OnResolved: []Action{
			{Type: Notify, Params: map[string]string{"url": "https://hooks.example.internal/edge?agent={{labels.agent_id}}", "message": "{{labels.agent_id}} recovered"}},
		},
	}
}

func TestCompileRejects(t *testing.T) {
	c, err := NewCompiler(0)
	if err != nil {
		t.Fatal(err)
	}
	ok := tamperRule()
	if _, err := c.Compile(ok); err != nil {
		t.Fatalf("valid rule rejected: %v", err)
	}
	with := func(f func(r *Rule)) Rule {
		r := tamperRule()
		r.Actions = append([]Action(nil), r.Actions...)
		f(&r)
		return r
	}
	act := func(typ ActionType, p map[string]string) func(r *Rule) {
		return func(r *Rule) { r.Actions = []Action{{Type: typ, Params: p}} }
	}
	tests := []struct {
		name string
		rule Rule
		want string // substring of the error
	}{
		{"bad name", with(func(r *Rule) { r.Name = "a/b" }), "name"},
		{"empty expression", with(func(r *Rule) { r.Expression = "" }), "expression: empty"},
		{"syntax", with(func(r *Rule) { r.Expression = `event.labels.x ==` }), "Syntax error"},
		{"not bool", with(func(r *Rule) { r.Expression = `event.labels.zone` }), "want bool"},
		{"int vs string", with(func(r *Rule) { r.Expression = `event.status == 1` }), "no matching overload"},
		{"unknown field", with(func(r *Rule) { r.Expression = `event.severity == "critical"` }), "undefined field 'severity'"},
		{"unknown variable", with(func(r *Rule) { r.Expression = `alert.status == "firing"` }), "undeclared reference"},
		{"label not string", with(func(r *Rule) { r.Expression = `event.labels.count > 3` }), "no matching overload"},
		{"no actions", with(func(r *Rule) { r.Actions, r.OnResolved = nil, nil }), "no actions"},
		{"unknown action", with(act("delete_everything", map[string]string{})), "unknown action"},
		{"missing param", with(act(RevokeAgent, map[string]string{"zone": "z"})), `needs "agent_id"`},
		{"unknown param", with(act(SealZone, map[string]string{"zone": "z", "force": "yes"})), `no parameter "force"`},
		{"unterminated template", with(act(SealZone, map[string]string{"zone": "{{labels.zone"})), "unterminated"},
		{"unknown ref", with(act(SealZone, map[string]string{"zone": "{{event.zone}}"})), "unknown field"},
		{"label without name", with(act(SealZone, map[string]string{"zone": "{{labels}}"})), "labels.<name>"},
		{"static bad zone", with(act(SealZone, map[string]string{"zone": "a/b"})), "single name"},
		{"static prefix dotdot", with(act(RevokePrefix, map[string]string{"zone": "z", "prefix": "a/../b"})), ".. segment"},
		{"static bad url", with(act(Notify, map[string]string{"url": "file:///etc/passwd"})), "http(s) URL"},
		{"empty static", with(act(RevokeTokenAccessor, map[string]string{"accessor": ""})), "empty"},
		{"too long", with(func(r *Rule) { r.Expression = strings.Repeat("true && ", 600) + "true" }), "at most"},
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

func TestEvaluateFixture(t *testing.T) {
	b, _ := openBolt(t)
	s := newTestStore(t, b)
	if err := s.PutRule(t.Context(), tamperRule()); err != nil {
		t.Fatal(err)
	}
	evs, err := ParseAlertmanager(readFile(t, "alertmanager.json"))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(s)

	// First alert: firing → quarantine + revoke prefix, templates filled.
	evs[0].Source = "am"
	got, rerrs := e.Evaluate(t.Context(), evs[0])
	if len(rerrs) != 0 {
		t.Fatalf("rule errors: %v", rerrs)
	}
	want := []Planned{
		{Rule: "tamper", Source: "am", EventID: "6f0d8a3c1b2e4f57", Type: QuarantineAgent, Params: map[string]string{
			"zone": "edge-eu", "agent_id": "agent-0042", "reason": "Secure boot state changed on edge-eu-7"}},
		{Rule: "tamper", Source: "am", EventID: "6f0d8a3c1b2e4f57", Type: RevokePrefix, Params: map[string]string{
			"zone": "edge-eu", "prefix": "pki/issue/agents/agent-0042/"}},
	}
	for i := range got {
		got[i].Event = Event{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("planned\n%+v\nwant\n%+v", got, want)
	}

	// Third alert: resolved → recovery, url values escaped.
	got, rerrs = e.Evaluate(t.Context(), evs[2])
	if len(rerrs) != 0 || len(got) != 1 {
		t.Fatalf("resolved: planned %+v, errors %v", got, rerrs)
	}
	if !got[0].Recovery || got[0].Type != Notify ||
		got[0].Params["url"] != "https://hooks.example.internal/edge?agent=agent-0017" ||
		got[0].Params["message"] != "agent-0017 recovered" {
		t.Fatalf("resolved: %+v", got[0])
	}

	// Not matching: nothing.
	other := evs[0]
	other.Labels = map[string]string{"alertname": "DiskFull", "severity": "critical"}
	if got, rerrs := e.Evaluate(t.Context(), other); len(got) != 0 || len(rerrs) != 0 {
		t.Fatalf("non-matching event planned %+v, errors %v", got, rerrs)
	}
}

func TestRuntimeErrorIsolated(t *testing.T) {
	b, _ := openBolt(t)
	s := newTestStore(t, b)
	ctx := t.Context()
	rules := []Rule{
		// Indexes a label the event lacks: CEL run-time error.
		{Name: "a-missing-label", Expression: `event.labels.team == "red"`,
			Actions: []Action{{Type: SealZone, Params: map[string]string{"zone": "z1"}}}},
		// Matches, but its template needs a label the event lacks.
		{Name: "b-missing-template", Expression: `event.status == "firing"`,
			Actions: []Action{{Type: RevokeAgent, Params: map[string]string{"zone": "z1", "agent_id": "{{labels.agent_id}}"}}}},
		// Matches, but the label value would escape the prefix.
		{Name: "c-dotdot", Expression: `has(event.labels.path)`,
			Actions: []Action{{Type: RevokePrefix, Params: map[string]string{"zone": "z1", "prefix": "kv/{{labels.path}}"}}}},
		// Dyn data of the wrong type: run-time error.
		{Name: "d-dyn-type", Expression: `event.data.score > 5`,
			Actions: []Action{{Type: SealZone, Params: map[string]string{"zone": "z2"}}}},
		// Healthy, guarded with the optional syntax.
		{Name: "e-ok", Expression: `event.labels.?team.orValue("") != "red" && event.data.score == "high"`,
			Actions: []Action{{Type: RevokeTokenAccessor, Params: map[string]string{"accessor": "{{data.accessor}}", "zone": "{{labels.zone}}"}}}},
	}
	for _, r := range rules {
		if err := s.PutRule(ctx, r); err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
	}
	ev := Event{Source: "gen", Kind: KindGeneric, ID: "x1", Status: StatusFiring,
		Labels: map[string]string{"zone": "edge-eu", "path": "../../sys"}, Annotations: map[string]string{},
		Data: map[string]any{"score": "high", "accessor": "acc-1"}}
	got, rerrs := NewEngine(s).Evaluate(ctx, ev)
	if len(got) != 1 || got[0].Rule != "e-ok" || got[0].Params["accessor"] != "acc-1" || got[0].Params["zone"] != "edge-eu" {
		t.Fatalf("planned %+v, want only e-ok", got)
	}
	var failed []string
	for _, re := range rerrs {
		if !errors.Is(re, ErrEval) {
			t.Errorf("%s: %v does not wrap ErrEval", re.Rule, re.Err)
		}
		failed = append(failed, re.Rule)
	}
	if want := []string{"a-missing-label", "b-missing-template", "c-dotdot", "d-dyn-type"}; !reflect.DeepEqual(failed, want) {
		t.Fatalf("failed rules %v, want %v (errors %v)", failed, want, rerrs)
	}
}

func TestTemplates(t *testing.T) {
	ev := &Event{Source: "s1", Kind: KindCloudEvents, ID: "id-1", Status: StatusFiring,
		Labels: map[string]string{"agent_id": "a 1&b", "empty": ""}, Annotations: map[string]string{"summary": "sum"},
		Data: map[string]any{"n": 42.0, "ok": true, "obj": map[string]any{"deep": "v"}, "list": []any{"x"}}}
	tests := []struct {
		in, want string
		escape   bool
		err      string
	}{
		{in: "plain", want: "plain"},
		{in: "{{id}}/{{source}}/{{kind}}/{{status}}", want: "id-1/s1/cloudevents/firing"},
		{in: "x-{{ labels.agent_id }}-y", want: "x-a 1&b-y"},
		{in: "{{labels.agent_id}}", escape: true, want: "a+1%26b"},
		{in: "{{annotations.summary}}", want: "sum"},
		{in: "{{data.n}}/{{data.ok}}/{{data.obj.deep}}", want: "42/true/v"},
		{in: "{{labels.nope}}", err: "no such label"},
		{in: "{{labels.empty}}", err: "is empty"},
		{in: "{{data.obj}}", err: "not a string"},
		{in: "{{data.list.x}}", err: "not inside an object"},
		{in: "{{data.missing}}", err: "no such data key"},
	}
	for _, tt := range tests {
		tp, err := parseTemplate(tt.in)
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		got, err := tp.resolve(ev, tt.escape)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: got %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestStoreRulesPersistAndTest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	raw, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := newTestStore(t, storage.NewView(raw, "sys/events/"))
	ctx := t.Context()
	if err := s.PutRule(ctx, tamperRule()); err != nil {
		t.Fatal(err)
	}
	bad := tamperRule()
	bad.Name = "bad"
	bad.Expression = "event.labels"
	if err := s.PutRule(ctx, bad); !errors.Is(err, ErrInvalidRule) {
		t.Fatalf("bad rule: %v", err)
	}
	if _, err := s.Rule(ctx, "bad"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rejected rule was stored: %v", err)
	}
	second := tamperRule()
	second.Name = "second"
	if err := s.PutRule(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRule(ctx, "tamper"); err != nil {
		t.Fatal(err)
	}
	// A fresh store over the reopened file sees the same rules.
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := newTestStore(t, reopenBolt(t, path))
	names, err := s2.ListRules(ctx)
	if err != nil || !reflect.DeepEqual(names, []string{"second"}) {
		t.Fatalf("rules after reload: %v, %v", names, err)
	}
	got, err := s2.Rule(ctx, "second")
	if err != nil || !reflect.DeepEqual(got, second) {
		t.Fatalf("rule round trip: %+v, %v", got, err)
	}
	evs, err := ParseAlertmanager(readFile(t, "alertmanager.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewEngine(s2).Test(ctx, "second", evs[1])
	if err != nil || len(p) != 2 || p[0].Params["agent_id"] != "agent-0043" {
		t.Fatalf("dry run: %+v, %v", p, err)
	}
	if _, err := NewEngine(s2).Test(ctx, "tamper", evs[1]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted rule: %v", err)
	}
}

func TestStoreConcurrent(t *testing.T) {
	b, _ := openBolt(t)
	s := newTestStore(t, b)
	e := NewEngine(s)
	ctx := t.Context()
	evs, err := ParseAlertmanager(readFile(t, "alertmanager.json"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range 20 {
				r := tamperRule()
				r.Name = "r" + string(rune('a'+i)) + string(rune('a'+j))
				if err := s.PutRule(ctx, r); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 50 {
				if _, rerrs := e.Evaluate(ctx, evs[0]); len(rerrs) != 0 {
					t.Error(rerrs)
					return
				}
			}
		}()
	}
	wg.Wait()
	p, _ := e.Evaluate(ctx, evs[0])
	if len(p) != 4*20*2 {
		t.Fatalf("planned %d actions, want %d", len(p), 4*20*2)
	}
}

func TestEvaluateCloudEventData(t *testing.T) {
	b, _ := openBolt(t)
	s := newTestStore(t, b)
	ctx := t.Context()
	r := Rule{Name: "edr",
		Expression: `event.kind == "cloudevents" && event.labels.type.startsWith("com.example.edr.") &&
			event.data.score > 90 && event.data.process.name == "dropper" &&
			event.starts_at > timestamp("2026-01-01T00:00:00Z")`,
		Actions: []Action{{Type: RevokeAgent, Params: map[string]string{"zone": "{{labels.zone}}", "agent_id": "{{data.agent_id}}", "reason": "EDR {{data.verdict}} ({{data.score}}) from {{source}}"}}}}
	if err := s.PutRule(ctx, r); err != nil {
		t.Fatal(err)
	}
	ev, err := ParseCloudEvent(readFile(t, "cloudevent.json"), CloudEventsMediaType)
	if err != nil {
		t.Fatal(err)
	}
	ev.Source = "edr"
	got, rerrs := NewEngine(s).Evaluate(ctx, ev)
	if len(rerrs) != 0 || len(got) != 1 {
		t.Fatalf("planned %+v, errors %v", got, rerrs)
	}
	want := map[string]string{"zone": "edge-eu", "agent_id": "agent-0042", "reason": "EDR malicious (97) from edr"}
	if !reflect.DeepEqual(got[0].Params, want) || got[0].Type != RevokeAgent || got[0].Recovery {
		t.Fatalf("planned %+v", got[0])
	}
	// A lower score does not match.
	ev.Data["score"] = 50.0
	if got, rerrs := NewEngine(s).Evaluate(ctx, ev); len(got) != 0 || len(rerrs) != 0 {
		t.Fatalf("score 50: planned %+v, errors %v", got, rerrs)
	}
}

package revoke

import (
	"fmt"
	"testing"
)

// BenchmarkEvaluate100Rules evaluates one Alertmanager alert against 100
// rules, of which 10 match and plan two templated actions each.
func BenchmarkEvaluate100Rules(b *testing.B) {
	be, _ := openBolt(b)
	s := newTestStore(b, be)
	ctx := b.Context()
	for i := range 100 {
		name := "AgentTamperDetected"
		if i%10 != 0 {
			name = fmt.Sprintf("Other%d", i)
		}
		r := tamperRule()
		r.Name = fmt.Sprintf("rule-%03d", i)
		r.Expression = fmt.Sprintf(`event.labels.alertname == %q && event.labels.?severity.orValue("") in ["critical", "page"] && event.status == "firing"`, name)
		if err := s.PutRule(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	evs, err := ParseAlertmanager(readFile(b, "alertmanager.json"))
	if err != nil {
		b.Fatal(err)
	}
	ev := evs[0]
	e := NewEngine(s)
	if p, rerrs := e.Evaluate(ctx, ev); len(p) != 20 || len(rerrs) != 0 {
		b.Fatalf("planned %d, errors %v", len(p), rerrs)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(ctx, ev)
	}
}

// BenchmarkParseAlertmanager parses the three-alert fixture.
func BenchmarkParseAlertmanager(b *testing.B) {
	body := readFile(b, "alertmanager.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseAlertmanager(body); err != nil {
			b.Fatal(err)
		}
	}
}

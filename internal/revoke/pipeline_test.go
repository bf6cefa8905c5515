package revoke

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

// recordingExecutor stands in for httpapi's executor, which needs the
// whole server; it records actions and fails on demand.
type recordingExecutor struct {
	done []Planned
	fail map[ActionType]bool
}

var _ Executor = (*recordingExecutor)(nil)

func (x *recordingExecutor) Execute(_ context.Context, p Planned) error {
	if x.fail[p.Type] {
		return errors.New("agent service unavailable")
	}
	x.done = append(x.done, p)
	return nil
}

// TestPipeline runs an Alertmanager delivery through every step the
// endpoint will: source lookup, authentication, parsing, admission,
// evaluation, execution, commit — including a failed execution that the
// sender's retry completes.
func TestPipeline(t *testing.T) {
	b, _ := openBolt(t)
	ctx := t.Context()
	clk := newClock()
	s := newTestStore(t, b)
	if err := s.PutSource(ctx, bearerSource()); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRule(ctx, tamperRule()); err != nil {
		t.Fatal(err)
	}
	in := NewIntake(NewDeduper(b, 0, 0, clk.now), NewLimiter(), clk.now)
	eng := NewEngine(s)
	x := &recordingExecutor{fail: map[ActionType]bool{RevokePrefix: true}}
	body := readFile(t, "alertmanager.json")
	h := http.Header{}
	h.Set("Authorization", "Bearer "+string(testSecret))

	deliver := func() (processed int) {
		src, err := s.Source(ctx, "am")
		if err != nil {
			t.Fatal(err)
		}
		if err := Authenticate(src, h, body, clk.now()); err != nil {
			t.Fatal(err)
		}
		evs, err := ParseAlertmanager(body)
		if err != nil {
			t.Fatal(err)
		}
		adm, _, err := in.Admit(ctx, src, evs)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range adm {
			planned, rerrs := eng.Evaluate(ctx, a.Event)
			if len(rerrs) != 0 {
				t.Fatal(rerrs)
			}
			if err := Execute(ctx, x, planned); err != nil {
				a.Release()
				continue
			}
			if err := a.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			processed++
		}
		return processed
	}
	// First delivery: the two firing alerts fail at revoke_prefix (after
	// quarantine succeeded); the resolved one notifies and commits.
	if n := deliver(); n != 1 {
		t.Fatalf("first delivery processed %d, want 1", n)
	}
	// The executor recovers; Alertmanager retries; the two are processed.
	x.fail = nil
	clk.advance(10 * time.Second)
	if n := deliver(); n != 2 {
		t.Fatalf("retry processed %d, want 2", n)
	}
	// A third delivery is all duplicates.
	if n := deliver(); n != 0 {
		t.Fatalf("duplicate delivery processed %d", n)
	}
	var kinds []ActionType
	for _, p := range x.done {
		kinds = append(kinds, p.Type)
	}
	// quarantine×2 (failed round), notify, then quarantine+revoke_prefix ×2.
	want := []ActionType{QuarantineAgent, QuarantineAgent, Notify, QuarantineAgent, RevokePrefix, QuarantineAgent, RevokePrefix}
	if len(kinds) != len(want) {
		t.Fatalf("executed %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("executed %v, want %v", kinds, want)
		}
	}
}

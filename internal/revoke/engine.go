package revoke

import (
	"context"
	"fmt"
)

// Engine evaluates events against the rules of a Store. Safe for
// concurrent use.
type Engine struct {
	store *Store
}

// NewEngine returns an Engine over s's rules.
func NewEngine(s *Store) *Engine { return &Engine{store: s} }

// Evaluate runs every rule, in name order, on ev and returns the actions
// of the matching ones with parameters resolved, in rule then action
// order. It changes nothing, so it is also the dry run. A rule that fails
// (CEL run-time error, unresolvable template) is reported in the second
// result and the other rules still run. If the rules cannot be loaded at
// all, the second result holds one RuleError with Rule "".
func (e *Engine) Evaluate(ctx context.Context, ev Event) ([]Planned, []RuleError) {
	rules, err := e.store.Rules(ctx)
	if err != nil {
		return nil, []RuleError{{EventID: ev.ID, Err: err}}
	}
	act, err := activation(&ev)
	if err != nil {
		return nil, []RuleError{{EventID: ev.ID, Err: fmt.Errorf("%w: %v", ErrEval, err)}}
	}
	var planned []Planned
	var errs []RuleError
	for _, cr := range rules {
		p, err := cr.plan(ctx, &ev, act)
		if err != nil {
			errs = append(errs, RuleError{Rule: cr.rule.Name, EventID: ev.ID, Err: err})
			continue
		}
		planned = append(planned, p...)
	}
	return planned, errs
}

// Test is the dry run of one stored rule (sys/events/rules/:name/test):
// the actions it would plan for ev, or the error it would report.
// ErrNotFound if there is no such rule.
func (e *Engine) Test(ctx context.Context, name string, ev Event) ([]Planned, error) {
	cr, err := e.store.CompiledRule(ctx, name)
	if err != nil {
		return nil, err
	}
	return cr.Plan(ctx, ev)
}

// Execute runs planned actions in order with x and returns the first
// error, naming the action; actions after a failure are not run, so the
// caller should Release the event's claim and let the sender retry.
func Execute(ctx context.Context, x Executor, planned []Planned) error {
	for i, p := range planned {
		if err := x.Execute(ctx, p); err != nil {
			return fmt.Errorf("revoke: rule %q action %d (%s): %w", p.Rule, i, p.Type, err)
		}
	}
	return nil
}

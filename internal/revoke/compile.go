package revoke

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
)

// DefaultCostLimit bounds the CEL run-time cost of one rule evaluation
// (roughly, the number of operations). An expression that exceeds it
// fails with ErrEval for that event.
const DefaultCostLimit = 100000

// celEvent is what CEL expressions see as `event`.
type celEvent struct {
	Labels      map[string]string `cel:"labels"`
	Annotations map[string]string `cel:"annotations"`
	Status      string            `cel:"status"`
	Source      string            `cel:"source"`
	Kind        string            `cel:"kind"`
	ID          string            `cel:"id"`
	Data        map[string]any    `cel:"data"`
	StartsAt    time.Time         `cel:"starts_at"`
}

// celType is celEvent's name inside CEL.
const celType = "revoke.celEvent"

// Compiler turns Rules into CompiledRules: it holds the CEL environment,
// which is costly to build, so make one and share it. Safe for concurrent
// use.
type Compiler struct {
	env       *cel.Env
	costLimit uint64
}

// NewCompiler builds the CEL environment: the variable event (see Rule),
// the standard library, optional types (event.labels.?name) and the
// strings extension. costLimit 0 means DefaultCostLimit.
func NewCompiler(costLimit uint64) (*Compiler, error) {
	if costLimit == 0 {
		costLimit = DefaultCostLimit
	}
	env, err := cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[celEvent](), ext.ParseStructTags(true)),
		cel.Variable("event", cel.ObjectType(celType)),
		cel.OptionalTypes(),
		ext.Strings(),
		cel.CrossTypeNumericComparisons(true),
	)
	if err != nil {
		return nil, fmt.Errorf("revoke: CEL environment: %w", err)
	}
	return &Compiler{env: env, costLimit: costLimit}, nil
}

// CompiledRule is a Rule checked and ready to evaluate. Safe for
// concurrent use.
type CompiledRule struct {
	rule       Rule
	prg        cel.Program
	actions    []compiledAction
	onResolved []compiledAction
}

// Compile checks r completely — name, expression (parsed and type-checked
// to bool), action types, required and unknown parameters, templates, and
// the static parameter values — and returns it compiled, or an
// ErrInvalidRule naming what is wrong (with the CEL error text).
func (c *Compiler) Compile(r Rule) (*CompiledRule, error) {
	if !validName(r.Name) {
		return nil, invalid(r.Name, "name", "must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit")
	}
	if r.Expression == "" {
		return nil, invalid(r.Name, "expression", "empty")
	}
	if len(r.Expression) > MaxExpressionLen {
		return nil, invalid(r.Name, "expression", "%d bytes, at most %d", len(r.Expression), MaxExpressionLen)
	}
	if len(r.Actions)+len(r.OnResolved) == 0 {
		return nil, invalid(r.Name, "actions", "no actions and no on_resolved actions")
	}
	ast, iss := c.env.Compile(r.Expression)
	if iss != nil && iss.Err() != nil {
		return nil, invalid(r.Name, "expression", "%v", iss.Err())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, invalid(r.Name, "expression", "has type %s, want bool", ast.OutputType())
	}
	prg, err := c.env.Program(ast,
		cel.CostLimit(c.costLimit),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, invalid(r.Name, "expression", "%v", err)
	}
	acts, err := compileActions(r.Name, "actions", r.Actions)
	if err != nil {
		return nil, err
	}
	rec, err := compileActions(r.Name, "on_resolved", r.OnResolved)
	if err != nil {
		return nil, err
	}
	return &CompiledRule{rule: r, prg: prg, actions: acts, onResolved: rec}, nil
}

// Rule returns the rule as written.
func (cr *CompiledRule) Rule() Rule { return cr.rule }

// Planned is one action a rule would take for an event, with its
// parameters resolved: what a dry run shows and what an Executor runs.
type Planned struct {
	// Rule is the name of the rule that matched.
	Rule string `json:"rule"`
	// Source and EventID identify the event.
	Source  string `json:"source"`
	EventID string `json:"event_id"`
	// Recovery is true for an OnResolved action.
	Recovery bool `json:"recovery"`
	// Type is the action.
	Type ActionType `json:"type"`
	// Params are the resolved parameters.
	Params map[string]string `json:"params"`
	// Event is the event that triggered the action, for executors that
	// forward it (notify).
	Event Event `json:"-"`
}

// Executor carries out planned actions; httpapi implements it over the
// agent, lease, token and zone packages. Execute must be idempotent: an
// event whose processing failed part-way is retried, and actions already
// done run again.
//
// An Executor may also implement Previewer, to show a dry run the exact
// objects (leases, tokens) an action would revoke.
type Executor interface {
	// Execute performs p, returning nil only once it is done.
	Execute(ctx context.Context, p Planned) error
}

// Previewer is the optional dry-run capability of an Executor.
type Previewer interface {
	// Preview lists what Execute(p) would affect, without changing anything.
	Preview(ctx context.Context, p Planned) ([]string, error)
}

// RuleError reports one rule that could not be evaluated for an event; the
// other rules were evaluated regardless. Err wraps ErrEval (or a storage
// error when rules could not be loaded, with Rule "").
type RuleError struct {
	// Rule is the rule's name.
	Rule string `json:"rule"`
	// EventID identifies the event.
	EventID string `json:"event_id"`
	// Err is the cause.
	Err error `json:"-"`
}

// Error describes the failure.
func (e RuleError) Error() string {
	return fmt.Sprintf("rule %q, event %q: %v", e.Rule, e.EventID, e.Err)
}

// Unwrap returns Err.
func (e RuleError) Unwrap() error { return e.Err }

// activation wraps an event for CEL evaluation.
func activation(ev *Event) (cel.Activation, error) {
	return cel.NewActivation(map[string]any{"event": &celEvent{
		Labels:      ev.Labels,
		Annotations: ev.Annotations,
		Status:      string(ev.Status),
		Source:      ev.Source,
		Kind:        string(ev.Kind),
		ID:          ev.ID,
		Data:        ev.Data,
		StartsAt:    ev.StartsAt,
	}})
}

// Match evaluates the rule's expression on ev.
func (cr *CompiledRule) Match(ctx context.Context, ev Event) (bool, error) {
	act, err := activation(&ev)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrEval, err)
	}
	return cr.match(ctx, act)
}

func (cr *CompiledRule) match(ctx context.Context, act cel.Activation) (bool, error) {
	// The cost limit bounds each evaluation; ctx is checked between rules
	// rather than inside one, which would cost a goroutine-free but
	// allocating cancel context per evaluation (a quarter of the time).
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("%w: %v", ErrEval, err)
	}
	out, _, err := cr.prg.Eval(act)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrEval, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%w: result is %s, not bool", ErrEval, out.Type())
	}
	return b, nil
}

// Plan evaluates the rule on ev and, if it matches, returns its actions
// (Actions for a firing event, OnResolved for a resolved one) with
// parameters resolved. A rule either plans all its actions or none: any
// template that cannot be resolved fails the whole rule with ErrEval.
func (cr *CompiledRule) Plan(ctx context.Context, ev Event) ([]Planned, error) {
	act, err := activation(&ev)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEval, err)
	}
	return cr.plan(ctx, &ev, act)
}

func (cr *CompiledRule) plan(ctx context.Context, ev *Event, act cel.Activation) ([]Planned, error) {
	acts := cr.actions
	recovery := ev.Status == StatusResolved
	if recovery {
		acts = cr.onResolved
	}
	if len(acts) == 0 {
		return nil, nil
	}
	ok, err := cr.match(ctx, act)
	if err != nil || !ok {
		return nil, err
	}
	out := make([]Planned, 0, len(acts))
	for i, a := range acts {
		p := Planned{Rule: cr.rule.Name, Source: ev.Source, EventID: ev.ID, Recovery: recovery,
			Type: a.typ, Params: make(map[string]string, len(a.params)), Event: *ev}
		for name, t := range a.params {
			v, err := t.resolve(ev, name == "url")
			if err == nil {
				err = checkParam(name, v)
			}
			if err != nil {
				field := "actions"
				if recovery {
					field = "on_resolved"
				}
				return nil, fmt.Errorf("%w: %s[%d].params.%s: %v", ErrEval, field, i, name, err)
			}
			p.Params[name] = v
		}
		out = append(out, p)
	}
	return out, nil
}

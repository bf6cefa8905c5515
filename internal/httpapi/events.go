package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/revoke"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/syncproto"
)

// Event-driven revocation (issue 8), root zone only:
//
//	LIST/GET/PUT/DELETE sys/events/sources/:name   senders (PUT/DELETE: sudo); a secret is never returned
//	LIST/GET/PUT/DELETE sys/events/rules/:name     rules (PUT/DELETE: sudo), CEL checked when written
//	POST sys/events/rules/:name/test {event}       dry run: the actions and their concrete targets
//	POST sys/events/{alertmanager,cloudevents,generic}?source=<name>
//	                                               intake: no Vault token, the source's bearer token or HMAC
//	LIST sys/events/revocations, GET sys/events/revocations/:id   the revocation log and per-agent status
//	PUT  sys/zones/:zone/unseal-events             lift a seal_zone (sudo)
//	GET  sys/metrics?format=prometheus             the server's metrics (time to isolate)
//
// The intake answers 401 (audited) to an unknown source or a missing or bad
// credential, 400 to a malformed payload, 413 to an Alertmanager payload of
// more than revoke.MaxAlerts alerts, Retry-After to a source over its rate
// (503 on the Alertmanager endpoint, as Alertmanager retries only 5xx; 429
// on the others), 503 with Retry-After when an event of the request is
// being processed by another request (that one may still fail), 200
// {"duplicates": n} when every event was already processed, and 202 with
// the revocation IDs it created otherwise. An event whose action failed
// transiently (storage, cancellation) is released, so the sender's retry
// processes it again, and the answer is 500; a permanent failure (unknown
// agent or zone, invalid parameter) is listed in action_errors and the
// event recorded as processed, as a retry would fail the same way and
// re-run the actions that worked.

// Where the events subsystem keeps its records in the root barrier.
const (
	eventsPrefix       = "sys/events/"        // revoke.Store: sources/, rules/, dedupe/
	eventsSealedPrefix = "sys/events-sealed/" // <zone>: the revocation that sealed it
)

// maxListedRevocations bounds LIST sys/events/revocations.
const maxListedRevocations = 100

// events is the events subsystem while unsealed.
type events struct {
	store   *revoke.Store
	engine  *revoke.Engine
	intake  *revoke.Intake
	limiter *revoke.Limiter
	log     *revocationLog
	track   *revocationTracker
	notify  *http.Client
	// sealed holds the zones sealed by an event: zone → revocation ID.
	sealed sync.Map
}

// newEvents opens the events subsystem over the root barrier and loads the
// zones sealed by events. Revocations still waiting for acks are followed
// again by resumeRevocations, once the state is served.
func (s *Server) newEvents(ctx context.Context) (*events, error) {
	comp, err := revoke.NewCompiler(0)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	view := storage.NewView(s.barrier, eventsPrefix)
	e := &events{
		store:   revoke.NewStore(view, comp),
		limiter: revoke.NewLimiter(),
		log:     newRevocationLog(s.barrier),
		notify:  &http.Client{Timeout: 5 * time.Second},
	}
	e.engine = revoke.NewEngine(e.store)
	e.intake = revoke.NewIntake(revoke.NewDeduper(view, 0, 0, nil), e.limiter, nil)
	e.track = newRevocationTracker(func(p *pendingRevocation) { s.revocationApplied(e, p) },
		func(p *pendingRevocation, now time.Time) { s.revocationTimedOut(e, p, now) })
	zones, err := s.barrier.List(ctx, eventsSealedPrefix)
	if err != nil {
		return nil, fmt.Errorf("events: sealed zones: %w", err)
	}
	for _, z := range zones {
		id, err := s.barrier.Get(ctx, eventsSealedPrefix+z)
		if err != nil {
			return nil, fmt.Errorf("events: sealed zone %q: %w", z, err)
		}
		e.sealed.Store(z, string(id))
	}
	return e, nil
}

// revocationApplied records a revocation every target acked: the log entry
// gets the acks, the histogram the time to isolate.
func (s *Server) revocationApplied(e *events, p *pendingRevocation) {
	last := p.rv.ExecutedAt
	for _, at := range p.applied {
		if at.After(last) {
			last = at
		}
	}
	s.metrics.isolate.WithLabelValues(p.rv.Source, p.rv.Rule, "applied").Observe(last.Sub(p.rv.ReceivedAt).Seconds())
	rv := p.rv
	rv.Applied, rv.CompletedAt = p.applied, time.Now().UTC()
	if err := e.log.put(context.Background(), &rv); err != nil {
		s.log.Warn("events: record a completed revocation", "id", rv.ID, "err", err)
	}
}

// revocationTimedOut records a revocation some target did not ack within
// revocationTimeout: the log entry gets the acks so far and timed_out_at,
// the histogram an observation with outcome timed_out.
func (s *Server) revocationTimedOut(e *events, p *pendingRevocation, now time.Time) {
	s.metrics.isolate.WithLabelValues(p.rv.Source, p.rv.Rule, "timed_out").Observe(now.Sub(p.rv.ReceivedAt).Seconds())
	rv := p.rv
	rv.Applied, rv.TimedOutAt = p.applied, now.UTC()
	rv.Notes = append(rv.Notes, fmt.Sprintf("%d of %d target(s) had not acked after %s: no longer followed (an agent that reconnects is resynced before it serves)",
		len(rv.Targets)-len(p.applied), len(rv.Targets), revocationTimeout))
	if err := e.log.put(context.Background(), &rv); err != nil {
		s.log.Warn("events: record a timed-out revocation", "id", rv.ID, "err", err)
	}
}

// interruptedNote explains an entry a restart cut short. It holds because
// the intake commits an event's dedupe record only after every action of
// the event ran, and the claim of an in-flight event lives in memory only.
const interruptedNote = "interrupted: the server stopped before this action ran to the end; " +
	"the event was not acknowledged to its sender, whose retry runs it again as a new revocation"

// resumeRevocations follows again the revocations of the log that some
// target had not acked when the server stopped. An agent whose recorded ack
// already covers one counts as applied (at its last_seen); a target now
// refused (quarantined, revoked, past a re-attestation deadline) is moved to
// the refused list; the others complete it when they ack after reconnecting
// (a restarted server renumbers its feeds above any earlier sequence, so a
// reconnecting agent is resynced: it purges its cache, which applies every
// revocation it missed). An entry a restart cut short is marked
// interrupted; finished entries past revocationRetention are pruned. It then
// gives up on revocations followed for longer than revocationTimeout, every
// minute, and prunes the log again every revocationPruneInterval, until the
// server seals.
func (s *Server) resumeRevocations(u *unsealed) {
	pruned := time.Now()
	s.pruneRevocations(u, pruned)
	s.resumeLog(u)
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-u.bg.Done():
			return
		case now := <-tick.C:
			s.revocationTick(u, now, &pruned)
		}
	}
}

// revocationTick is resumeRevocations' minute: it gives up on revocations
// past the timeout, and prunes the log if the last pruning (*pruned) is
// revocationPruneInterval old.
func (s *Server) revocationTick(u *unsealed, now time.Time, pruned *time.Time) {
	u.events.track.expire(now, revocationTimeout)
	if now.Sub(*pruned) >= revocationPruneInterval {
		s.pruneRevocations(u, now)
		*pruned = now
	}
}

// revocationPruneInterval is how often a server that stays unsealed prunes
// the revocation log (it also does at every unseal).
const revocationPruneInterval = 24 * time.Hour

// pruneRevocations deletes the finished log entries received more than
// revocationRetention before now (see revocationLog.prune).
func (s *Server) pruneRevocations(u *unsealed, now time.Time) {
	if n, err := u.events.log.prune(u.bg, now.Add(-revocationRetention)); err != nil {
		s.log.Warn("events: prune the revocation log", "err", err)
	} else if n > 0 {
		s.log.Info("events: pruned the revocation log", "entries", n, "retention", revocationRetention)
	}
}

// resumeLog is the resumption part of resumeRevocations.
func (s *Server) resumeLog(u *unsealed) {
	e := u.events
	zones, err := e.log.store.List(u.bg, revocationPrefix)
	if err != nil {
		s.log.Warn("events: resume revocations", "err", err)
		return
	}
	for _, z := range zones {
		z = strings.TrimSuffix(z, "/")
		keys, err := e.log.store.List(u.bg, revocationPrefix+z+"/")
		if err != nil {
			s.log.Warn("events: resume revocations", "zone", z, "err", err)
			continue
		}
		for _, k := range keys {
			seq, err := strconv.ParseUint(k, 10, 64)
			if err != nil || e.log.mine(z, seq) {
				continue // not an entry, or this process's own
			}
			rv, err := e.log.get(u.bg, z+"."+strconv.FormatUint(seq, 10))
			if err != nil || rv.finished() {
				continue
			}
			if rv.ExecutedAt.IsZero() {
				rv.InterruptedAt = time.Now().UTC()
				rv.Notes = append(rv.Notes, interruptedNote)
				if err := e.log.put(u.bg, &rv); err != nil {
					s.log.Warn("events: mark an interrupted revocation", "id", rv.ID, "err", err)
				}
				continue
			}
			zone := zoneName(z)
			applied := map[string]time.Time{}
			targets := rv.Targets[:0:0]
			moved := false
			for _, id := range rv.Targets {
				a, err := u.attest.Agents().Get(u.bg, zone, id)
				switch {
				case err == nil && a.AckedSeq >= rv.FeedSeq:
					applied[id] = a.LastSeen
				case err == nil && refusedAgent(a, time.Now()) != "":
					rv.Refused, moved = append(rv.Refused, id), true
					continue
				}
				targets = append(targets, id)
			}
			rv.Targets = targets
			if moved {
				if err := e.log.put(u.bg, &rv); err != nil {
					s.log.Warn("events: record refused targets", "id", rv.ID, "err", err)
				}
			}
			if len(rv.Targets) == 0 {
				continue // nothing to wait for: done, as revocationDone says
			}
			e.track.add(zone, rv, applied)
		}
	}
}

// zoneName turns a zone label back into the internal name ("root" → "").
func zoneName(label string) string {
	if label == "root" {
		return ""
	}
	return label
}

// onAck is the sync server's ack hook: the registry's watermark, then the
// revocations waiting for this agent.
func (s *Server) onAck(u *unsealed) func(agentID, zone string, seq uint64) {
	registry := s.agentAcked(u)
	return func(agentID, zone string, seq uint64) {
		if u.events != nil {
			u.events.track.acked(agentID, zone, seq, time.Now().UTC())
		}
		registry(agentID, zone, seq)
	}
}

// authorizeUnsealedAgent refuses the sync stream of an agent whose zone an
// event sealed, after the usual checks (and their audit entry).
func (s *Server) authorizeUnsealedAgent(u *unsealed) syncproto.AuthorizeFunc {
	authz := s.authorizeAgent(u)
	return func(r *http.Request) (string, string, error) {
		id, zone, err := authz(r)
		if err == nil && u.events != nil {
			if rid, sealed := u.events.sealed.Load(zone); sealed {
				return "", "", fmt.Errorf("%w: zone %q is sealed by revocation %s", syncproto.ErrAgentRefused, zoneLabel(zone), rid)
			}
		}
		return id, zone, err
	}
}

// zoneSealedByEvent returns the error a request to a zone sealed by an
// event is answered with (503), or nil.
func (u *unsealed) zoneSealedByEvent(zone string) error {
	if u.events == nil || zone == "" {
		return nil
	}
	rid, ok := u.events.sealed.Load(zone)
	if !ok {
		return nil
	}
	return fmt.Errorf("zone %s is sealed by revocation %s; an operator must unseal it with PUT sys/zones/%s/unseal-events", zone, rid, zone)
}

// writeZoneSealed answers a request to a zone sealed by an event.
func writeZoneSealed(w http.ResponseWriter, err error) {
	errorf(w, http.StatusServiceUnavailable, err.Error())
}

// serveEvents answers sys/events/* for token holders.
func serveEvents(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	u := s.state.Load()
	if u == nil || u.events == nil {
		s.writeError(w, r, logical.ErrSealed)
		return
	}
	e := u.events
	kind, name, _ := strings.Cut(strings.TrimPrefix(req.Path, "events/"), "/")
	name = strings.TrimSuffix(name, "/")
	// Writing a source or a rule decides what the server revokes on whose
	// word: sudo, as for sys/audit. So does a dry run, which lists lease IDs
	// and agents of any zone (as LIST sys/leases/lookup, which needs sudo).
	// So does reading a rule: its notify actions hold their webhook URLs as
	// written, credentials in them included. Listing names, reading a
	// source (its secret is never shown) and the log do not.
	sudo := (kind == "sources" || kind == "rules") && (isWrite(req.Operation) || req.Operation == logical.DeleteOperation) ||
		kind == "rules" && name != "" && req.Operation == logical.ReadOperation
	if sudo && !req.Sudo {
		s.writeError(w, r, logical.ErrPermissionDenied)
		return
	}
	var (
		resp *logical.Response
		err  error
	)
	switch kind {
	case "sources":
		resp, err = s.eventSources(r.Context(), e, req, name)
	case "rules":
		resp, err = s.eventRules(r.Context(), u, req, name)
	case "revocations":
		resp, err = s.eventRevocations(r.Context(), u, req, name)
	default:
		err = fmt.Errorf("%w: sys/%s", logical.ErrUnsupportedPath, req.Path)
	}
	if err != nil {
		s.writeError(w, r, eventsError(err))
		return
	}
	writeResponse(w, resp, "system")
}

// eventsError maps the revoke package's errors onto API errors.
func eventsError(err error) error {
	switch {
	case errors.Is(err, revoke.ErrNotFound):
		return fmt.Errorf("%w: %s", logical.ErrNotFound, strings.TrimPrefix(err.Error(), "revoke: "))
	case errors.Is(err, revoke.ErrInvalidRule), errors.Is(err, revoke.ErrInvalidSource), errors.Is(err, revoke.ErrMalformed):
		return logical.InvalidRequest("%s", strings.TrimPrefix(err.Error(), "revoke: "))
	}
	return err
}

// sourceInput is the body of PUT sys/events/sources/:name.
type sourceInput struct {
	Kinds     []revoke.Kind    `json:"kinds"`
	Auth      revoke.Auth      `json:"auth"`
	RateLimit revoke.RateLimit `json:"rate_limit"`
	// Secret is the bearer token or HMAC key; optional on update (the
	// stored one is kept).
	Secret string `json:"secret"`
}

func (s *Server) eventSources(ctx context.Context, e *events, req *request, name string) (*logical.Response, error) {
	switch {
	case name == "" && (req.Operation == logical.ListOperation || req.Operation == logical.ReadOperation):
		names, err := e.store.ListSources(ctx)
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: map[string]any{"keys": nonNil(names)}}, nil
	case name == "":
	case req.Operation == logical.ReadOperation:
		src, err := e.store.Source(ctx, name)
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: jsonData(src)}, nil
	case req.Operation == logical.DeleteOperation:
		if err := e.store.DeleteSource(ctx, name); err != nil {
			return nil, err
		}
		e.limiter.Forget(name)
		return nil, nil
	case isWrite(req.Operation):
		var in sourceInput
		if err := remarshal(req.Data, &in); err != nil {
			return nil, err
		}
		src := revoke.Source{Name: name, Kinds: in.Kinds, Auth: in.Auth, RateLimit: in.RateLimit}
		if in.Secret != "" {
			src = src.WithSecret([]byte(in.Secret))
		} else if old, err := e.store.Source(ctx, name); err == nil {
			src = src.KeepSecret(old)
		} else if !errors.Is(err, revoke.ErrNotFound) {
			return nil, err
		}
		if err := e.store.PutSource(ctx, src); err != nil {
			return nil, err
		}
		stored, err := e.store.Source(ctx, name)
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: jsonData(stored)}, nil
	}
	return nil, fmt.Errorf("%w: sys/%s takes LIST, or GET, PUT and DELETE on a source", logical.ErrUnsupportedOperation, req.Path)
}

// ruleInput is the body of PUT sys/events/rules/:name.
type ruleInput struct {
	Description string          `json:"description"`
	Expression  string          `json:"expression"`
	Actions     []revoke.Action `json:"actions"`
	OnResolved  []revoke.Action `json:"on_resolved"`
}

func (s *Server) eventRules(ctx context.Context, u *unsealed, req *request, name string) (*logical.Response, error) {
	e := u.events
	name, test := strings.CutSuffix(name, "/test")
	switch {
	case name == "" && (req.Operation == logical.ListOperation || req.Operation == logical.ReadOperation):
		names, err := e.store.ListRules(ctx)
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: map[string]any{"keys": nonNil(names)}}, nil
	case name == "":
	case test && isWrite(req.Operation):
		return s.testRule(ctx, u, name, req.Data)
	case test:
	case req.Operation == logical.ReadOperation:
		rule, err := e.store.Rule(ctx, name)
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: jsonData(rule)}, nil
	case req.Operation == logical.DeleteOperation:
		return nil, e.store.DeleteRule(ctx, name)
	case isWrite(req.Operation):
		var in ruleInput
		if err := remarshal(req.Data, &in); err != nil {
			return nil, err
		}
		rule := revoke.Rule{Name: name, Description: in.Description, Expression: in.Expression, Actions: in.Actions, OnResolved: in.OnResolved}
		if err := e.store.PutRule(ctx, rule); err != nil {
			return nil, err
		}
		return &logical.Response{Data: jsonData(rule)}, nil
	}
	return nil, fmt.Errorf("%w: sys/%s takes LIST, GET, PUT and DELETE on a rule, POST on :name/test", logical.ErrUnsupportedOperation, req.Path)
}

// testEvent is the sample event of sys/events/rules/:name/test.
type testEvent struct {
	ID          string            `json:"id"`
	Source      string            `json:"source"`
	Kind        revoke.Kind       `json:"kind"`
	Status      revoke.Status     `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Data        map[string]any    `json:"data"`
	StartsAt    time.Time         `json:"starts_at"`
}

// testRule is the dry run: what the rule would plan for the event, and the
// objects each action would reach now. Nothing is changed.
func (s *Server) testRule(ctx context.Context, u *unsealed, name string, data map[string]any) (*logical.Response, error) {
	var body struct {
		Event testEvent `json:"event"`
	}
	if err := remarshal(data, &body); err != nil {
		return nil, err
	}
	in := body.Event
	ev := revoke.Event{ID: cmp.Or(in.ID, "test"), Source: cmp.Or(in.Source, "test"), Kind: cmp.Or(in.Kind, revoke.KindGeneric),
		Status: cmp.Or(in.Status, revoke.StatusFiring), Labels: in.Labels, Annotations: in.Annotations, Data: in.Data,
		StartsAt: in.StartsAt, ReceivedAt: time.Now().UTC()}
	if !ev.Status.Valid() {
		return nil, logical.InvalidRequest("field \"event.status\": want firing or resolved, got %q", ev.Status)
	}
	if !ev.Kind.Valid() {
		return nil, logical.InvalidRequest("field \"event.kind\": want alertmanager, cloudevents or generic, got %q", ev.Kind)
	}
	if ev.Labels == nil {
		ev.Labels = map[string]string{}
	}
	if ev.Annotations == nil {
		ev.Annotations = map[string]string{}
	}
	if ev.Data == nil {
		ev.Data = map[string]any{}
	}
	planned, err := u.events.engine.Test(ctx, name, ev)
	if errors.Is(err, revoke.ErrNotFound) {
		return nil, err
	}
	out := map[string]any{"rule": name, "dry_run": true, "matched": len(planned) > 0, "actions": []any{}}
	if err != nil {
		out["error"] = strings.TrimPrefix(err.Error(), "revoke: ")
		return &logical.Response{Data: out}, nil
	}
	x := &executor{s: s, u: u}
	actions := make([]any, 0, len(planned))
	for _, p := range planned {
		a := map[string]any{"type": p.Type, "params": redactParams(p.Params), "recovery": p.Recovery}
		if t, err := x.preview(ctx, p); err != nil {
			a["error"] = err.Error()
		} else {
			a["targets"] = t
		}
		actions = append(actions, a)
	}
	out["actions"] = actions
	return &logical.Response{Data: out}, nil
}

func (s *Server) eventRevocations(ctx context.Context, u *unsealed, req *request, id string) (*logical.Response, error) {
	e := u.events
	switch {
	case id == "" && (req.Operation == logical.ListOperation || req.Operation == logical.ReadOperation):
		limit := maxListedRevocations
		if v, ok := req.Data["limit"].(string); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxListedRevocations {
				return nil, logical.InvalidRequest("query parameter \"limit\": want 1 to %d, got %q", maxListedRevocations, v)
			}
			limit = n
		}
		rvs, err := e.log.recent(ctx, limit)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(rvs))
		info := map[string]any{}
		for _, rv := range rvs {
			keys = append(keys, rv.ID)
			info[rv.ID] = map[string]any{"zone": rv.Zone, "action": rv.Action, "rule": rv.Rule, "source": rv.Source,
				"event_id": rv.EventID, "received_at": rv.ReceivedAt, "error": rv.Error, "complete": revocationDone(rv),
				"timed_out": !rv.TimedOutAt.IsZero(), "interrupted": !rv.InterruptedAt.IsZero()}
		}
		return &logical.Response{Data: map[string]any{"keys": keys, "key_info": info}}, nil
	case id != "" && req.Operation == logical.ReadOperation:
		rv, err := e.log.get(ctx, id)
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: s.revocationStatus(ctx, u, rv)}, nil
	}
	return nil, fmt.Errorf("%w: sys/%s takes LIST, or GET on a revocation", logical.ErrUnsupportedOperation, req.Path)
}

// revocationDone reports whether rv ran and every target acked it (or it
// had none to wait for).
func revocationDone(rv revocation) bool {
	return !rv.ExecutedAt.IsZero() && (len(rv.Targets) == 0 || rv.FeedSeq == 0 || !rv.CompletedAt.IsZero())
}

// revocationStatus is a log entry with the state of each target agent:
// applied (and when), pending (connected, not acked yet) or offline.
func (s *Server) revocationStatus(ctx context.Context, u *unsealed, rv revocation) map[string]any {
	applied := rv.Applied
	if live, ok := u.events.track.status(rv.ID); ok {
		applied = live
	}
	zone := zoneName(rv.Zone)
	connected := map[string]bool{}
	for _, a := range u.sync.Acks() {
		if a.Zone == zone && a.Connected {
			connected[a.AgentID] = true
		}
	}
	agents := map[string]any{}
	counts := map[string]int{}
	for _, id := range rv.Targets {
		st := map[string]any{}
		// Past the timeout the server no longer follows acks: an agent that
		// acked later shows in the registry's watermark (as resumeLog
		// reasons), the time being its last_seen when the status is read.
		var late *attest.Agent
		if _, ok := applied[id]; !ok && !rv.TimedOutAt.IsZero() {
			if a, err := u.attest.Agents().Get(ctx, zone, id); err == nil && a.AckedSeq >= rv.FeedSeq {
				late = &a
			}
		}
		switch at, ok := applied[id]; {
		case ok:
			st["status"], st["applied_at"] = "applied", at.UTC().Format(time.RFC3339Nano)
		case late != nil:
			st["status"], st["applied_at"] = "applied", late.LastSeen.UTC().Format(time.RFC3339Nano)
			st["note"] = fmt.Sprintf("applied after the timeout (%s): applied_at is the agent's last_seen, its ack no longer being followed", revocationTimeout)
		case connected[id]:
			st["status"] = "pending"
		default:
			st["status"] = "offline"
			st["note"] = "will apply on reconnect before serving"
			if a, err := u.attest.Agents().Get(ctx, zone, id); err == nil && a.Status != attest.StatusActive {
				st["note"] = fmt.Sprintf("agent is %s: it is refused on reconnect (its cache is purged if it ever connects again)", a.Status)
			}
		}
		counts[st["status"].(string)]++
		agents[id] = st
	}
	for _, id := range rv.Refused {
		st := map[string]any{"status": "refused", "note": "refused — will not apply until released (it is resynced before serving when it reconnects)"}
		if a, err := u.attest.Agents().Get(ctx, zone, id); err == nil {
			if why := refusedAgent(a, time.Now()); why != "" {
				st["note"] = fmt.Sprintf("refused (%s) — will not apply until released (it is resynced before serving when it reconnects)", why)
			}
		}
		agents[id] = st
	}
	out := jsonData(rv)
	out["agents"] = agents
	out["summary"] = map[string]int{"targets": len(rv.Targets), "applied": counts["applied"], "pending": counts["pending"],
		"offline": counts["offline"], "refused": len(rv.Refused)}
	out["complete"] = len(rv.Targets) == counts["applied"] && !rv.ExecutedAt.IsZero()
	switch {
	case !rv.InterruptedAt.IsZero():
		out["state"] = "interrupted"
	case !rv.TimedOutAt.IsZero():
		out["state"] = "timed_out"
	case out["complete"] == true:
		out["state"] = "complete"
	default:
		out["state"] = "in_progress"
	}
	return out
}

// serveZoneUnsealEvents answers PUT sys/zones/:zone/unseal-events: the
// zone sealed by a seal_zone action serves again.
func serveZoneUnsealEvents(s *Server, _ *core, w http.ResponseWriter, r *http.Request, req *request) {
	u := s.state.Load()
	if u == nil || u.events == nil {
		s.writeError(w, r, logical.ErrSealed)
		return
	}
	if !isWrite(req.Operation) {
		s.writeError(w, r, fmt.Errorf("%w: sys/%s takes PUT", logical.ErrUnsupportedOperation, req.Path))
		return
	}
	zone := strings.TrimSuffix(strings.TrimPrefix(req.Path, "zones/"), "/unseal-events")
	rid, ok := u.events.sealed.Load(zone)
	if !ok {
		s.writeError(w, r, logical.InvalidRequest("zone %q is not sealed by an event", zone))
		return
	}
	if err := s.barrier.Delete(r.Context(), eventsSealedPrefix+zone); err != nil {
		s.writeError(w, r, err)
		return
	}
	u.events.sealed.Delete(zone)
	s.log.Info("events: zone unsealed by an operator", "zone", zone, "revocation", rid)
	writeResponse(w, &logical.Response{Data: map[string]any{"zone": zone, "sealed": false, "sealed_by": rid}}, "system")
}

// serveMetrics answers GET sys/metrics?format=prometheus.
func serveMetrics(s *Server, _ *core, w http.ResponseWriter, r *http.Request, req *request) {
	if req.Operation != logical.ReadOperation {
		s.writeError(w, r, fmt.Errorf("%w: sys/metrics takes GET", logical.ErrUnsupportedOperation))
		return
	}
	if f := r.URL.Query().Get("format"); f != "prometheus" {
		s.writeError(w, r, logical.InvalidRequest("query parameter \"format\": only \"prometheus\" is supported, got %q", f))
		return
	}
	promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// jsonData turns v into response data through its JSON form.
func jsonData(v any) map[string]any {
	raw, _ := json.Marshal(v)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// intakeKinds are the intake endpoints.
var intakeKinds = map[string]revoke.Kind{
	"sys/events/alertmanager": revoke.KindAlertmanager,
	"sys/events/cloudevents":  revoke.KindCloudEvents,
	"sys/events/generic":      revoke.KindGeneric,
}

// serveEventIntake answers POST sys/events/{alertmanager,cloudevents,generic}.
// The sender's credential is the source's bearer token or HMAC signature
// over the raw body, never a Vault token. Refusals are audited by
// serveAudited (a request entry with the error); an accepted delivery's
// request entry is written before any action runs.
func (s *Server) serveEventIntake(c *core, w http.ResponseWriter, r *http.Request, kind revoke.Kind, t *trail) {
	u := s.state.Load()
	if u == nil || u.events == nil {
		s.writeError(w, r, logical.ErrSealed)
		return
	}
	if c.zone != "" {
		s.writeError(w, r, fmt.Errorf("%w: sys/events/%s exists only in the root zone", logical.ErrUnsupportedPath, kind))
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		errorf(w, http.StatusMethodNotAllowed, fmt.Sprintf("sys/events/%s takes POST", kind))
		return
	}
	e := u.events
	name := r.URL.Query().Get("source")
	if t != nil {
		t.entry.Request.MountPoint, t.entry.Request.MountType = "sys/", "system"
		t.entry.Request.Operation = string(logical.UpdateOperation)
		t.entry.Request.Data = map[string]any{"source": name, "kind": string(kind)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, revoke.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			errorf(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("event payload larger than %d bytes", revoke.MaxBodyBytes))
			return
		}
		s.writeError(w, r, logical.InvalidRequest("reading request body: %v", err))
		return
	}
	now := time.Now()
	refuse := func(why string) {
		s.metrics.events.WithLabelValues("", "unauthenticated").Inc()
		errorf(w, http.StatusUnauthorized, "event sender not authenticated: "+why)
	}
	if name == "" {
		refuse("the \"source\" query parameter is required")
		return
	}
	src, err := e.store.Source(r.Context(), name)
	if errors.Is(err, revoke.ErrNotFound) {
		refuse(fmt.Sprintf("unknown source %q", name))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := revoke.Authenticate(src, r.Header, body, now); err != nil {
		refuse(strings.TrimPrefix(strings.TrimPrefix(err.Error(), revoke.ErrUnauthenticated.Error()), ": "))
		return
	}
	if !src.Allows(kind) {
		errorf(w, http.StatusForbidden, fmt.Sprintf("source %q may not post %s events (its kinds: %v)", name, kind, src.Kinds))
		return
	}
	evs, err := revoke.Parse(kind, body, r.Header.Get("Content-Type"))
	if err != nil {
		s.metrics.events.WithLabelValues(name, "malformed").Inc()
		switch {
		case errors.Is(err, revoke.ErrUnsupportedMediaType):
			errorf(w, http.StatusUnsupportedMediaType, strings.TrimPrefix(err.Error(), "revoke: "))
			return
		case errors.Is(err, revoke.ErrTooManyEvents):
			errorf(w, http.StatusRequestEntityTooLarge, strings.TrimPrefix(err.Error(), "revoke: "))
			return
		}
		s.writeError(w, r, eventsError(err))
		return
	}
	admitted, dups, err := e.intake.Admit(r.Context(), src, evs)
	var limited *revoke.RateLimitedError
	if errors.As(err, &limited) {
		s.metrics.events.WithLabelValues(name, "rate_limited").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(limited.RetryAfterSeconds()))
		errorf(w, rateLimitedStatus(kind), limited.Error())
		return
	}
	if errors.Is(err, revoke.ErrInFlight) {
		// Not a duplicate yet: the other attempt may fail and release it.
		s.metrics.events.WithLabelValues(name, "in_flight").Inc()
		w.Header().Set("Retry-After", "1")
		errorf(w, http.StatusServiceUnavailable, strings.TrimPrefix(err.Error(), "revoke: ")+"; retry")
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if t != nil {
		t.entry.Request.Data = map[string]any{"source": name, "kind": string(kind), "events": len(evs), "duplicates": dups}
		if err := c.logRequest(t); err != nil {
			for _, a := range admitted {
				a.Release()
			}
			s.auditFailed(w, r, err)
			return
		}
	}
	s.metrics.events.WithLabelValues(name, "duplicate").Add(float64(dups))
	ctx := context.WithoutCancel(r.Context()) // revocations run to the end once started
	x := &executor{s: s, u: u}
	ids := []string{}
	var ruleErrors, actionErrors []string
	failed, permanent := 0, 0
	for _, a := range admitted {
		planned, rerrs := e.engine.Evaluate(ctx, a.Event)
		for _, re := range rerrs {
			ruleErrors = append(ruleErrors, strings.TrimPrefix(re.Error(), "revoke: "))
		}
		// Agent-visible revocations go out first; webhooks last.
		slices.SortStableFunc(planned, func(p, q revoke.Planned) int {
			return cmp.Compare(boolInt(p.Type == revoke.Notify), boolInt(q.Type == revoke.Notify))
		})
		retry := false
		for _, p := range planned {
			rv, err := x.run(ctx, p, a.Event)
			if rv.ID != "" {
				ids = append(ids, rv.ID)
			}
			if err != nil {
				actionErrors = append(actionErrors, fmt.Sprintf("%s (rule %q, event %q): %v", p.Type, p.Rule, p.EventID, err))
				// A webhook that fails, or an action that would fail
				// again, is recorded; it does not make the sender retry
				// (and re-run the actions that worked).
				switch {
				case p.Type == revoke.Notify:
				case permanentActionError(err):
					permanent++
				default:
					retry = true
				}
			}
		}
		if retry {
			a.Release()
			failed++
			s.metrics.events.WithLabelValues(name, "failed").Inc()
			continue
		}
		if err := a.Commit(ctx); err != nil {
			s.log.Warn("events: record a processed event", "source", name, "event", a.Event.ID, "err", err)
		}
		s.metrics.events.WithLabelValues(name, "processed").Inc()
	}
	data := map[string]any{"accepted": len(admitted), "duplicates": dups, "revocations": ids,
		"rule_errors": nonNil(ruleErrors), "action_errors": nonNil(actionErrors)}
	resp := &logical.Response{Data: data, StatusCode: http.StatusAccepted}
	switch {
	case failed > 0:
		resp.StatusCode = http.StatusInternalServerError
		resp.Warnings = []string{fmt.Sprintf("%d event(s) were not fully processed and will be processed again when the sender retries", failed)}
	case len(admitted) == 0:
		resp.StatusCode = http.StatusOK
	case permanent > 0:
		resp.Warnings = []string{fmt.Sprintf("%d action(s) failed permanently (see action_errors); the events are recorded as processed and will not be retried", permanent)}
	}
	if t != nil {
		t.resp = resp
	}
	writeResponse(w, resp, "system")
}

// rateLimitedStatus is the status a source over its rate is answered on
// the kind's endpoint: 503 for Alertmanager, which retries a delivery only
// on 5xx (a 429 would defer it to the group's next group_interval, and an
// alert resolving meanwhile would never deliver its firing), 429 otherwise.
func rateLimitedStatus(kind revoke.Kind) int {
	if kind == revoke.KindAlertmanager {
		return http.StatusServiceUnavailable
	}
	return http.StatusTooManyRequests
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

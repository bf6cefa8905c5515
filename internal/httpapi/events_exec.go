package httpapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/engine/pki"
	"github.com/edgevault/edgevault/internal/lease"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/revoke"
	"github.com/edgevault/edgevault/internal/syncproto"
	"github.com/edgevault/edgevault/internal/token"
	"github.com/edgevault/edgevault/internal/zone"
)

// disconnectGrace is how long a quarantined or revoked agent's stream (or
// a sealed zone's streams) stay open after the revocation is published, so
// the agent receives it and purges its cache, unless it acks sooner.
const disconnectGrace = 2 * time.Second

// maxPreviewLeases bounds the lease IDs a dry run lists.
const maxPreviewLeases = 1000

// executor carries out planned actions (revoke.Executor) against this
// server's registry, leases, tokens, zones and sync feeds; each action
// becomes an entry of the revocation log.
type executor struct {
	s *Server
	u *unsealed
}

var (
	_ revoke.Executor  = (*executor)(nil)
	_ revoke.Previewer = (*executor)(nil)
)

// Execute implements revoke.Executor.
func (x *executor) Execute(ctx context.Context, p revoke.Planned) error {
	_, err := x.run(ctx, p, p.Event)
	return err
}

// Preview implements revoke.Previewer: the objects the action would reach.
func (x *executor) Preview(ctx context.Context, p revoke.Planned) ([]string, error) {
	t, err := x.preview(ctx, p)
	if err != nil {
		return nil, err
	}
	var out []string
	for k, v := range t {
		out = append(out, fmt.Sprintf("%s=%v", k, v))
	}
	slices.Sort(out)
	return out, nil
}

// actionZone is the zone an action names ("" for the root zone); notify
// and a revoke_token_accessor without zone act from the root zone.
func actionZone(p revoke.Planned) string {
	return zoneName(p.Params["zone"])
}

// publishes reports whether an action puts a Revoke event on its zone's
// feed (so its targets' acks are followed).
func publishes(t revoke.ActionType) bool {
	switch t {
	case revoke.RevokePrefix, revoke.QuarantineAgent, revoke.RevokeAgent, revoke.SealZone:
		return true
	}
	return false
}

// permanentError marks an action failure that a retry of the event would
// meet again (a refusal by this code, not by a dependency).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// permanentActionError reports whether err, an action's failure, would
// happen again on a retry: the agent, zone, token or lease named does not
// exist, or a parameter is invalid. Storage failures, cancellations and
// anything unknown are transient: the event is released and retried.
func permanentActionError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe permanentError
	return errors.As(err, &pe) ||
		errors.Is(err, attest.ErrAgentUnknown) || errors.Is(err, logical.ErrNotFound) ||
		errors.Is(err, zone.ErrNotFound) || errors.Is(err, zone.ErrInvalidName) ||
		errors.Is(err, token.ErrNotFound) || errors.Is(err, lease.ErrInvalid) ||
		errors.Is(err, logical.ErrInvalidRequest)
}

// run executes p for ev and records it in the revocation log: the entry is
// written before the action runs and again with its outcome. The entry is
// returned even when the action failed (its Error says why). The notify
// url is recorded redacted (see redactURL); only the outbound call uses it.
func (x *executor) run(ctx context.Context, p revoke.Planned, ev revoke.Event) (revocation, error) {
	e := x.u.events
	received := ev.ReceivedAt
	if received.IsZero() {
		received = time.Now()
	}
	zone := actionZone(p)
	rv := revocation{Zone: zoneLabel(zone), Rule: p.Rule, Source: p.Source, EventID: p.EventID, Action: p.Type,
		Recovery: p.Recovery, Params: redactParams(p.Params), ReceivedAt: received.UTC(), Targets: []string{}}
	if err := e.log.append(ctx, &rv); err != nil {
		return revocation{}, err
	}
	// Followed before anything is published: an ack racing the bookkeeping
	// below is remembered by the tracker, not lost.
	var pend *pendingRevocation
	if publishes(p.Type) {
		pend = e.track.open(zone, rv.ID)
	}
	var (
		wait []string // agents to disconnect once they acked, or after the grace
		err  error
	)
	switch p.Type {
	case revoke.RevokePrefix:
		err = x.revokePrefix(ctx, zone, p.Params["prefix"], &rv)
	case revoke.QuarantineAgent:
		wait, err = x.quarantine(ctx, zone, p.Params["agent_id"], &rv)
	case revoke.RevokeAgent:
		wait, err = x.revokeAgent(ctx, zone, p.Params["agent_id"], &rv)
	case revoke.RevokeTokenAccessor:
		err = x.revokeAccessor(ctx, zone, p.Params["accessor"])
	case revoke.RotateZoneKey:
		err = x.rotateZoneKey(ctx, zone, &rv)
	case revoke.SealZone:
		wait, err = x.sealZone(ctx, zone, &rv)
	case revoke.Notify:
		err = x.notify(ctx, p, ev, &rv)
	case revoke.ReleaseAgent:
		err = x.releaseAgent(ctx, zone, p.Params["agent_id"], p.Params["reason"], &rv)
	case revoke.UnsealZone:
		err = x.unsealZone(ctx, zone, &rv)
	default:
		err = permanentError{fmt.Errorf("unknown action %q", p.Type)}
	}
	rv.ExecutedAt = time.Now().UTC()
	if err != nil {
		rv.Error = err.Error()
		switch {
		case p.Type == revoke.Notify:
			rv.Notes = append(rv.Notes, "a failed webhook does not make the sender retry the event")
		case permanentActionError(err):
			rv.Notes = append(rv.Notes, "permanent error: the event is recorded as processed, as a retry would fail the same way")
		default:
			rv.Notes = append(rv.Notes, "transient error: the event was not acknowledged to its sender, whose retry runs it again")
		}
	}
	if perr := e.log.put(ctx, &rv); perr != nil && err == nil {
		err = perr
	}
	switch {
	case pend != nil && rv.FeedSeq != 0 && len(rv.Targets) > 0:
		e.track.arm(pend, rv, x.alreadyAcked(zone, rv), time.Now())
	case pend != nil:
		e.track.cancel(pend)
		pend = nil
	}
	if pend == nil && err == nil {
		x.s.metrics.isolate.WithLabelValues(rv.Source, rv.Rule, "applied").Observe(rv.ExecutedAt.Sub(rv.ReceivedAt).Seconds())
	}
	if len(wait) > 0 {
		x.disconnectLater(zone, wait, pend)
	}
	return rv, err
}

// alreadyAcked returns the targets whose stream acked rv.FeedSeq according
// to the sync server's table, merged into what the tracker saw since the
// revocation was opened.
func (x *executor) alreadyAcked(zone string, rv revocation) map[string]time.Time {
	out := map[string]time.Time{}
	targets := map[string]bool{}
	for _, id := range rv.Targets {
		targets[id] = true
	}
	for _, a := range x.u.sync.Acks() {
		if a.Zone == zone && targets[a.AgentID] && a.Acked >= rv.FeedSeq {
			out[a.AgentID] = a.LastSeen.UTC()
		}
	}
	return out
}

// disconnectLater closes the agents' streams once the revocation is
// applied (every target acked) or after disconnectGrace.
func (x *executor) disconnectLater(zone string, agents []string, p *pendingRevocation) {
	u := x.u
	go func() {
		timer := time.NewTimer(disconnectGrace)
		defer timer.Stop()
		var done <-chan struct{}
		if p != nil {
			done = p.done
		}
		select {
		case <-done:
		case <-timer.C:
		case <-u.bg.Done():
			return
		}
		for _, id := range agents {
			u.sync.Disconnect(zone, id)
		}
	}()
}

// publish puts a Revoke event on the zone's feed and returns its number.
func (x *executor) publish(zone, path string, rv *revocation, meta map[string]string) error {
	m := map[string]string{"revocation_id": rv.ID, "action": string(rv.Action)}
	for k, v := range meta {
		m[k] = v
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	x.s.startFeed(x.u, zone)
	seq, err := x.u.feed.Publish(zone, syncproto.Event{Kind: syncproto.Revoke, Path: path, Metadata: raw})
	if err != nil {
		return fmt.Errorf("publish on zone %q's sync feed: %w", zoneLabel(zone), err)
	}
	rv.FeedSeq = seq
	return nil
}

// refusedAgent reports why agent a would not apply a revocation now ("" if
// it would): quarantined or revoked agents, and agents past a
// re-attestation deadline, are refused the sync stream until released.
func refusedAgent(a attest.Agent, now time.Time) string {
	switch {
	case a.Status != attest.StatusActive:
		return string(a.Status)
	case !a.ReattestBy.IsZero() && now.After(a.ReattestBy):
		return "past its re-attestation deadline"
	}
	return ""
}

// zoneAgents lists the zone's agents that must apply a zone-wide
// revocation, and those that are refused (see refusedAgent), which it
// is not waited for.
func (x *executor) zoneAgents(ctx context.Context, zone string) (targets, refused []string, err error) {
	agents, err := x.u.attest.Agents().List(ctx, zone)
	if err != nil {
		return nil, nil, fmt.Errorf("zone %q: list agents: %w", zoneLabel(zone), err)
	}
	targets = []string{}
	now := time.Now()
	for _, a := range agents {
		if refusedAgent(a, now) != "" {
			refused = append(refused, a.ID)
		} else {
			targets = append(targets, a.ID)
		}
	}
	return targets, refused, nil
}

// agentTarget sets rv's target to the agent a alone, or records it as
// refused; it returns whether the agent must ack.
func agentTarget(a attest.Agent, rv *revocation) bool {
	if refusedAgent(a, time.Now()) != "" {
		rv.Refused = []string{a.ID}
		return false
	}
	rv.Targets = []string{a.ID}
	return true
}

func (x *executor) zoneCore(ctx context.Context, zone string) (*core, error) {
	return x.s.zoneCore(ctx, x.u, zone)
}

// revokePrefix revokes the zone's leases under prefix, then tells every
// agent of the zone to purge what it cached under it.
func (x *executor) revokePrefix(ctx context.Context, zone, prefix string, rv *revocation) error {
	c, err := x.zoneCore(ctx, zone)
	if err != nil {
		return err
	}
	// The agents purge first (the time to isolate is theirs); the server's
	// leases are revoked meanwhile. Acks that beat the bookkeeping below
	// are picked up by alreadyAcked.
	if err := x.publish(zone, prefix, rv, map[string]string{"lease_prefix": prefix}); err != nil {
		return err
	}
	n, lerr := c.leases.RevokePrefix(ctx, prefix)
	rv.Notes = append(rv.Notes, fmt.Sprintf("%d lease(s) revoked under %q", n, prefix))
	if rv.Targets, rv.Refused, err = x.zoneAgents(ctx, zone); err != nil {
		return errors.Join(lerr, err)
	}
	if lerr != nil {
		return fmt.Errorf("revoke leases under %q: %w", prefix, lerr)
	}
	return nil
}

// quarantine tells the agent to purge its cache, then takes its access
// away until it proves itself again. A TPM agent must re-attest: from now on
// it is refused everything but a renewal carrying a fresh quote, which
// restores it (a quote the zone's policy refuses quarantines it for good).
// A join-token agent has nothing to re-attest with: it is quarantined until
// an operator releases it.
func (x *executor) quarantine(ctx context.Context, zone, id string, rv *revocation) ([]string, error) {
	reg := x.u.attest.Agents()
	a, err := reg.Get(ctx, zone, id)
	if err != nil {
		return nil, fmt.Errorf("zone %q agent %q: %w", zoneLabel(zone), id, err)
	}
	agentTarget(a, rv)
	if err := x.publish(zone, "", rv, map[string]string{"agent_id": id}); err != nil {
		return nil, err
	}
	_, err = x.u.attest.RequestReattest(ctx, zone, id, time.Now())
	switch {
	case err == nil:
		rv.Notes = append(rv.Notes, "re-attestation required now: refused everything but a renewal with a fresh TPM quote")
		return []string{id}, nil
	case !errors.Is(err, attest.ErrAttestation):
		return []string{id}, fmt.Errorf("request re-attestation of agent %q: %w", id, err)
	}
	reason := fmt.Sprintf("revocation %s: rule %q, event %q", rv.ID, rv.Rule, rv.EventID)
	if _, err := reg.SetStatus(ctx, zone, id, attest.StatusQuarantined, reason, time.Now()); err != nil {
		return []string{id}, fmt.Errorf("quarantine agent %q: %w", id, err)
	}
	rv.Notes = append(rv.Notes, "quarantined until released (DELETE sys/agents/"+id+
		"/quarantine, or a release_agent action such as a rule's on_resolved): a join-token agent has no TPM to re-attest with")
	return []string{id}, nil
}

// revokeAgent wipes the agent's cache (a targeted purge, published first),
// revokes it in the registry (its certificate is refused from then on) and
// revokes the PKI sub-CAs issued to it on every pki mount of its zone.
// Leases are not tied to agents (they belong to tokens): they are not
// revoked here; use revoke_prefix or revoke_token_accessor for them.
func (x *executor) revokeAgent(ctx context.Context, zone, id string, rv *revocation) ([]string, error) {
	reg := x.u.attest.Agents()
	a, err := reg.Get(ctx, zone, id)
	if err != nil {
		return nil, fmt.Errorf("zone %q agent %q: %w", zoneLabel(zone), id, err)
	}
	agentTarget(a, rv)
	if err := x.publish(zone, "", rv, map[string]string{"agent_id": id, "wipe": "true"}); err != nil {
		return nil, err
	}
	reason := fmt.Sprintf("revocation %s: rule %q, event %q", rv.ID, rv.Rule, rv.EventID)
	if _, err := reg.SetStatus(ctx, zone, id, attest.StatusRevoked, reason, time.Now()); err != nil {
		return []string{id}, fmt.Errorf("revoke agent %q: %w", id, err)
	}
	serials, err := x.agentSubCAs(ctx, zone, id, true)
	for _, s := range serials {
		rv.Notes = append(rv.Notes, "sub-CA revoked: "+s)
	}
	rv.Notes = append(rv.Notes, "leases are not tied to agents: none revoked by this action")
	return []string{id}, err
}

// agentSubCAs finds (and, with revoke, revokes) the CA certificates issued
// to agent id on the zone's pki mounts: those whose subject CN is the id.
// It returns "mount:serial" for each.
func (x *executor) agentSubCAs(ctx context.Context, zone, id string, revokeThem bool) ([]string, error) {
	c, err := x.zoneCore(ctx, zone)
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	for _, m := range c.mounts.Load().entries {
		b, ok := m.handler.(*pki.Backend)
		if !ok {
			continue
		}
		resp, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.ListOperation, Path: "certs", MountPoint: m.Path})
		if err != nil || resp == nil {
			continue // no certificates issued yet
		}
		keys, _ := resp.Data["keys"].([]string)
		for _, serial := range keys {
			cr, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "cert/" + serial, MountPoint: m.Path})
			if err != nil || cr == nil {
				continue
			}
			text, _ := cr.Data["certificate"].(string)
			blk, _ := pem.Decode([]byte(text))
			if blk == nil {
				continue
			}
			cert, err := x509.ParseCertificate(blk.Bytes)
			if err != nil || !cert.IsCA || cert.Subject.CommonName != id {
				continue
			}
			if revokeThem {
				if err := b.Revoke(ctx, serial); err != nil {
					errs = append(errs, fmt.Errorf("revoke sub-CA %s on %s: %w", serial, m.Path, err))
					continue
				}
			}
			out = append(out, m.Path+serial)
		}
	}
	return out, errors.Join(errs...)
}

// revokeAccessor revokes the token with the accessor (and its children);
// its leases follow through the token store's BeforeRevoke hook.
func (x *executor) revokeAccessor(ctx context.Context, zone, acc string) error {
	c, err := x.zoneCore(ctx, zone)
	if err != nil {
		return err
	}
	if err := c.tokens.RevokeAccessor(ctx, acc); err != nil {
		return fmt.Errorf("revoke the token with accessor %q in zone %q: %w", acc, zoneLabel(zone), err)
	}
	return nil
}

// rotateZoneKey adds a data key version to a named zone and rewraps its
// records in the background.
func (x *executor) rotateZoneKey(ctx context.Context, zone string, rv *revocation) error {
	if zone == "" {
		return permanentError{errors.New("rotate_zone_key applies to named zones; the root zone's key rotates with PUT sys/rotate")}
	}
	v, err := x.u.zones.Rotate(ctx, zone)
	if err != nil {
		return fmt.Errorf("rotate zone %q: %w", zone, err)
	}
	rv.Notes = append(rv.Notes, fmt.Sprintf("zone key version %d active", v))
	if err := x.u.zones.StartRewrap(x.u.bg, zone); err != nil {
		rv.Notes = append(rv.Notes, "rewrap not started: "+err.Error())
	}
	return nil
}

// sealZone seals the zone and purges every agent's cache of it: its
// requests are answered 503 and its agents' streams refused until an
// operator unseals it (PUT sys/zones/:zone/unseal-events). The seal is
// durable (in the root barrier).
func (x *executor) sealZone(ctx context.Context, zone string, rv *revocation) ([]string, error) {
	if zone == "" {
		return nil, permanentError{errors.New("seal_zone applies to named zones; seal the whole server with PUT sys/seal")}
	}
	if _, err := x.zoneCore(ctx, zone); err != nil {
		return nil, err
	}
	// Sealed first (nothing new is served or published to the agents from
	// now on), then the purge goes out on the streams still open, which
	// close once their agent acked it or after the grace.
	if err := x.s.barrier.Put(ctx, eventsSealedPrefix+zone, []byte(rv.ID)); err != nil {
		return nil, fmt.Errorf("record the seal of zone %q: %w", zone, err)
	}
	x.u.events.sealed.Store(zone, rv.ID)
	if err := x.publish(zone, "", rv, nil); err != nil {
		return nil, err
	}
	targets, refused, err := x.zoneAgents(ctx, zone)
	if err != nil {
		return nil, err
	}
	rv.Targets, rv.Refused = targets, refused
	return targets, nil
}

// releaseAgent is the recovery of quarantine_agent: a quarantined agent is
// set active again, as DELETE sys/agents/:id/quarantine does, with a reason
// naming the revocation, rule and event (and the action's reason, if any).
// The check and the change are one registry update, so an agent revoked or
// quarantined anew meanwhile is judged by its current status. A revoked
// agent is never released (a permanent error); an active one is left as it
// is, noted in the entry. A pending re-attestation deadline is kept: a TPM
// agent isolated by quarantine_agent stays active but must still re-attest
// with a fresh quote — a resolved alert does not vouch for its state.
// Nothing is published: the agent's client reconnects by itself and is
// resynced before it serves.
func (x *executor) releaseAgent(ctx context.Context, zone, id, why string, rv *revocation) error {
	reason := fmt.Sprintf("released by revocation %s: rule %q, event %q", rv.ID, rv.Rule, rv.EventID)
	if why != "" {
		reason += ": " + why
	}
	active := errors.New("agent already active")
	a, err := x.u.attest.Agents().Update(ctx, zone, id, func(a *attest.Agent) error {
		switch a.Status {
		case attest.StatusQuarantined:
			a.Status, a.StatusReason, a.StatusChangedAt = attest.StatusActive, reason, time.Now().UTC().Round(0)
			return nil
		case attest.StatusRevoked:
			return permanentError{fmt.Errorf("%w: a revoked agent is never released (revoked: %s); delete it and enroll it again",
				attest.ErrAgentRevoked, a.StatusReason)}
		}
		return active
	})
	switch {
	case errors.Is(err, active):
		rv.Notes = append(rv.Notes, "agent already active: nothing to release")
		if cur, gerr := x.u.attest.Agents().Get(ctx, zone, id); gerr == nil {
			a = cur
		}
	case err != nil:
		return fmt.Errorf("zone %q: release agent %q: %w", zoneLabel(zone), id, err)
	default:
		rv.Notes = append(rv.Notes, "agent released: active again; its stream is accepted when it reconnects (resynced before it serves)")
		x.s.log.Info("events: agent released by a recovery action", "zone", zoneLabel(zone), "agent", id, "revocation", rv.ID)
	}
	if !a.ReattestBy.IsZero() {
		rv.Notes = append(rv.Notes, "re-attestation deadline "+a.ReattestBy.UTC().Format(time.RFC3339)+
			" kept: the agent must still renew with a fresh TPM quote")
	}
	return nil
}

// unsealZone is the recovery of seal_zone: the zone's seal is lifted, as
// PUT sys/zones/:zone/unseal-events does, and the zone serves again; its
// agents' streams are accepted when they reconnect. A zone not sealed by an
// event is left as it is, noted in the entry (an unknown zone is a
// permanent error). If another seal_zone seals the zone again while the
// seal is being lifted, the new seal stays.
func (x *executor) unsealZone(ctx context.Context, zone string, rv *revocation) error {
	if zone == "" {
		return permanentError{errors.New("unseal_zone applies to named zones; the root zone is never sealed by an event")}
	}
	e := x.u.events
	rid, ok := e.sealed.Load(zone)
	if !ok {
		if _, err := x.zoneCore(ctx, zone); err != nil {
			return err
		}
		rv.Notes = append(rv.Notes, "zone not sealed by an event: nothing to unseal")
		return nil
	}
	// Only the alert that set the seal lifts it: another alert resolving
	// (two overlapping incidents) leaves it to the last sealer's recovery or
	// to an operator.
	if sealer, err := e.log.get(ctx, rid.(string)); err == nil && (sealer.EventID != rv.EventID || sealer.Source != rv.Source) {
		rv.Notes = append(rv.Notes, fmt.Sprintf("zone sealed by revocation %s for event %q of source %q, not by this event: the seal stays "+
			"(it lifts when that event resolves, or PUT sys/zones/%s/unseal-events)", rid, sealer.EventID, sealer.Source, zone))
		return nil
	}
	if err := x.s.barrier.Delete(ctx, eventsSealedPrefix+zone); err != nil {
		return fmt.Errorf("lift the seal of zone %q: %w", zone, err)
	}
	if !e.sealed.CompareAndDelete(zone, rid) {
		// Sealed again (by a newer revocation) between the load and the
		// delete: that seal stays, durably.
		if cur, ok := e.sealed.Load(zone); ok {
			if err := x.s.barrier.Put(ctx, eventsSealedPrefix+zone, []byte(cur.(string))); err != nil {
				return fmt.Errorf("keep the seal of zone %q by revocation %s: %w", zone, cur, err)
			}
			rv.Notes = append(rv.Notes, fmt.Sprintf("zone sealed again by revocation %s meanwhile: that seal stays", cur))
			return nil
		}
	}
	by := fmt.Sprintf("seal lifted (set by revocation %s", rid)
	if sealer, err := e.log.get(ctx, rid.(string)); err == nil {
		by += fmt.Sprintf(": rule %q, event %q", sealer.Rule, sealer.EventID)
	}
	rv.Notes = append(rv.Notes, by+"); its agents' streams are accepted again when they reconnect")
	x.s.log.Info("events: zone unsealed by a recovery action", "zone", zone, "sealed_by", rid, "revocation", rv.ID)
	return nil
}

// notifyBody is what notify posts: the revocation and the event's
// identifying fields, no secret.
type notifyBody struct {
	Revocation revocation        `json:"revocation"`
	Message    string            `json:"message,omitempty"`
	Event      map[string]any    `json:"event"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// notify posts the revocation to the webhook (5 s timeout).
func (x *executor) notify(ctx context.Context, p revoke.Planned, ev revoke.Event, rv *revocation) error {
	body := notifyBody{Revocation: *rv, Message: p.Params["message"],
		Event:  map[string]any{"id": ev.ID, "source": ev.Source, "kind": ev.Kind, "status": ev.Status, "annotations": ev.Annotations},
		Labels: ev.Labels}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.Params["url"], bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := x.u.events.notify.Do(req)
	if err != nil {
		return fmt.Errorf("notify %s: %w", redactURL(p.Params["url"]), errors.Unwrap(err))
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("notify %s: status %d", redactURL(p.Params["url"]), resp.StatusCode)
	}
	return nil
}

// redactURL keeps only a URL's scheme and host: its user info, query and
// path may all hold credentials (Slack and Discord webhook URLs carry
// their secret in the path). Only the outbound call uses the full URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(redacted URL)"
	}
	out := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		out += "/(redacted)"
	}
	return out
}

// redactParams returns params with the url redacted (see redactURL), for
// the log, the status, the dry run and the server's own logs.
func redactParams(params map[string]string) map[string]string {
	if _, ok := params["url"]; !ok {
		return params
	}
	out := make(map[string]string, len(params))
	for k, v := range params {
		out[k] = v
	}
	out["url"] = redactURL(params["url"])
	return out
}

// preview is the dry run of p: the objects it would reach, now.
func (x *executor) preview(ctx context.Context, p revoke.Planned) (map[string]any, error) {
	zone := actionZone(p)
	out := map[string]any{}
	if p.Type == revoke.Notify {
		out["url"] = redactURL(p.Params["url"])
		return out, nil
	}
	out["zone"] = zoneLabel(zone)
	c, err := x.zoneCore(ctx, zone)
	if err != nil {
		out["zone_exists"] = false
		return out, nil
	}
	out["zone_exists"] = true
	if rid, ok := x.u.events.sealed.Load(zone); ok {
		out["zone_sealed_by"] = rid
	}
	connected := map[string]bool{}
	for _, a := range x.u.sync.Acks() {
		if a.Zone == zone && a.Connected {
			connected[a.AgentID] = true
		}
	}
	agentState := func(ids []string) map[string]any {
		m := map[string]any{}
		for _, id := range ids {
			st := "offline"
			if connected[id] {
				st = "connected"
			}
			m[id] = st
		}
		return m
	}
	switch p.Type {
	case revoke.RevokePrefix, revoke.SealZone:
		if p.Type == revoke.RevokePrefix {
			leases, truncated, err := walkLeases(ctx, c, p.Params["prefix"])
			if err != nil {
				return nil, err
			}
			out["leases"], out["leases_truncated"] = leases, truncated
		}
		ids, refused, err := x.zoneAgents(ctx, zone)
		if err != nil {
			return nil, err
		}
		out["agents"] = agentState(ids)
		if len(refused) > 0 {
			out["refused_agents"] = refused
		}
	case revoke.QuarantineAgent, revoke.RevokeAgent, revoke.ReleaseAgent:
		id := p.Params["agent_id"]
		a, err := x.u.attest.Agents().Get(ctx, zone, id)
		if err != nil {
			out["agent"] = map[string]any{"id": id, "exists": false}
			return out, nil
		}
		st := map[string]any{"id": id, "exists": true, "status": string(a.Status), "connected": connected[id],
			"attestation_method": a.Method}
		if p.Type == revoke.ReleaseAgent {
			st["would"] = releasePreview(a.Status)
			if !a.ReattestBy.IsZero() {
				st["reattest_by"] = a.ReattestBy.UTC().Format(time.RFC3339) + " (kept: the agent must still re-attest)"
			}
		}
		if p.Type == revoke.RevokeAgent {
			subs, err := x.agentSubCAs(ctx, zone, id, false)
			if err != nil {
				return nil, err
			}
			st["sub_cas"] = nonNil(subs)
			st["leases"] = "not tied to agents: none revoked"
		}
		out["agent"] = st
	case revoke.RevokeTokenAccessor:
		_, err := c.tokens.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "lookup-accessor",
			Data: map[string]any{"accessor": p.Params["accessor"]}})
		out["accessor"], out["accessor_exists"] = p.Params["accessor"], err == nil
	case revoke.UnsealZone:
		rid, sealed := x.u.events.sealed.Load(zone)
		out["zone_sealed"] = sealed
		var sealer revocation
		if sealed {
			sealer, _ = x.u.events.log.get(ctx, rid.(string))
		}
		switch {
		case sealed && sealer.ID != "" && (sealer.EventID != p.EventID || sealer.Source != p.Source):
			out["would"] = fmt.Sprintf("nothing: the seal was set by revocation %s for event %q of source %q, not by this event", rid, sealer.EventID, sealer.Source)
		case sealed:
			out["would"] = fmt.Sprintf("lift the seal set by revocation %s", rid)
		case zone == "":
			out["would"] = "fail: the root zone is never sealed by an event"
		default:
			out["would"] = "nothing: the zone is not sealed by an event"
		}
	case revoke.RotateZoneKey:
		if zone != "" {
			if ks, err := x.u.zones.KeyStatus(ctx, zone); err == nil {
				out["key_status"] = jsonData(ks)
			}
		}
	}
	return out, nil
}

// releasePreview says what release_agent would do to an agent in status st.
func releasePreview(st attest.Status) string {
	switch st {
	case attest.StatusQuarantined:
		return "release: quarantined → active"
	case attest.StatusRevoked:
		return "fail: a revoked agent is never released"
	}
	return "nothing: the agent is already active"
}

// walkLeases lists the lease IDs under prefix (at most maxPreviewLeases).
func walkLeases(ctx context.Context, c *core, prefix string) ([]string, bool, error) {
	var out []string
	var walk func(p string) error
	walk = func(p string) error {
		names, err := c.leases.List(ctx, p)
		if err != nil {
			return err
		}
		for _, n := range names {
			if len(out) >= maxPreviewLeases {
				return nil
			}
			full := strings.TrimSuffix(p, "/") + "/" + n
			if p == "" {
				full = n
			}
			if strings.HasSuffix(n, "/") {
				if err := walk(full); err != nil {
					return err
				}
				continue
			}
			out = append(out, full)
		}
		return nil
	}
	if err := walk(strings.TrimSuffix(prefix, "/")); err != nil {
		return nil, false, leaseError(err)
	}
	return nonNil(out), len(out) >= maxPreviewLeases, nil
}

// Package revoke turns operational events into revocations: an alert that
// an edge node was tampered with, a CloudEvent from an EDR saying a host is
// compromised, a leak scanner's finding. It owns the pure part — reading
// events, authenticating and rate-limiting their senders, deduplicating
// them, and deciding with rules what to revoke — and leaves carrying the
// actions out to an Executor supplied by httpapi.
//
// # Pipeline
//
// An intake endpoint (POST /v1/sys/events/{alertmanager,cloudevents,generic})
// does, in order:
//
//  1. Source lookup: the request names its source (we suggest a "source"
//     query parameter, which Alertmanager's webhook url can carry) and
//     Store.Source loads it. Unknown source → 401.
//  2. Authentication: Authenticate(src, header, rawBody, now) checks a
//     bearer token or an HMAC-SHA256 signature over the raw body (with an
//     optional timestamp header against replay), in constant time. Failure
//     → ErrUnauthenticated → 401, and audited. Source.Allows(kind) says
//     whether the source may use this endpoint.
//  3. Parsing: ParseAlertmanager, ParseCloudEvent or ParseGeneric give
//     Events. Bad payload → ErrMalformed (400) naming the field; a
//     CloudEvent in another content type → ErrUnsupportedMediaType (415).
//  4. Admission: Intake.Admit claims each event with the Deduper (an event
//     already processed is skipped: Alertmanager HA pairs and retries send
//     the same alert twice; an event in flight in another request is
//     ErrInFlight → 503 with Retry-After, as that request may still fail)
//     and charges the new ones to the source's token bucket. Over the limit
//     → *RateLimitedError → Retry-After with 503 for Alertmanager (it
//     retries only 5xx) or 429 for the others, every claim released.
//     Nothing is dropped: the sender retries, the events are still new
//     then, and a flood is slowed to the configured rate rather than
//     thinned out. One Alertmanager payload holds at most MaxAlerts alerts
//     (ErrTooManyEvents → 413).
//  5. Rules: Engine.Evaluate(ctx, ev) runs every rule and returns the
//     Planned actions of those that match, with parameters resolved, plus a
//     RuleError for each rule that failed at run time (the others still
//     run). Planning changes nothing, so it is also the dry run
//     (sys/events/rules/:name/test uses Engine.Test).
//  6. Execution: the endpoint runs the plan with its Executor (see Execute),
//     then Admitted.Commit records the event as processed. On a transient
//     failure (storage, context) Admitted.Release lets the sender's retry
//     process it again, so executors must be idempotent; a permanent one
//     (unknown agent or zone) is committed too, as a retry would fail the
//     same way and re-run the actions that worked.
//
// # Events
//
// Every format becomes an Event: Source, Kind, ID (the dedupe key: alert
// fingerprint, CloudEvents id, generic id), Status (firing or resolved),
// Labels, Annotations, Data, StartsAt, EndsAt, ReceivedAt. An Alertmanager
// payload holds a group of alerts and yields one Event per alert. An event
// is processed once per Event.DedupeKey — source, kind, ID, status and
// StartsAt — so a resolved alert is a new event, and so is the same alert
// firing again later, while re-sends of one firing are not.
//
// # Rules
//
// A Rule is a CEL expression over `event` (labels, annotations, status,
// source, kind, id, data, starts_at), type-checked to bool when written, and
// actions: quarantine_agent, revoke_agent, revoke_prefix,
// revoke_token_accessor, rotate_zone_key, seal_zone, notify, and the two
// recovery actions release_agent (a quarantined agent becomes active) and
// unseal_zone (a seal_zone seal is lifted), meant for OnResolved. Action
// parameters are templates ("{{labels.agent_id}}") checked when written and
// resolved per event; a reference that is missing or empty fails the rule
// for that event instead of producing an empty value, so a template can
// never widen a revocation ("revoke everything under secret/agents/").
// Firing events plan Actions; resolved ones plan OnResolved, the recovery:
// typically release_agent or unseal_zone undoing what the firing did, so an
// alert that resolves lets its agent or zone back in without an operator.
// A recovery never lifts more than isolation: a revoked agent stays
// revoked, and a TPM agent still has to re-attest.
//
// # Storage and trust
//
// Store keeps sources (with their secrets) and rules under one
// storage.Backend, meant to be an encrypted system view; reading a source
// back never shows its secret, only HasSecret and a SecretID fingerprint.
// The Deduper's records live in a backend too, with a TTL and a maximum
// count per source. Rate-limit buckets are in memory, per process.
//
// Senders are trusted only to report; what they can cause is bounded by
// the rules an operator wrote. Label values are attacker-influenced (an
// alert's labels come from scraped metrics), which is why resolved
// parameters are checked again: a zone, agent id or accessor must be a
// single name, a prefix a relative path without "..", a url http(s).
package revoke

package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/audit"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/policy"
	"github.com/edgevault/edgevault/internal/syncproto"
)

// The agents' sync stream (syncproto.Path): an enrolled agent opens it with
// its zone certificate and follows its zone's feed of cacheable secrets.
//
// What a zone's agents may cache is what the zone's policies mark with a
// cache block (policy.ACL.CacheMaxStale): every committed change to a KV
// secret is looked up again by one publisher goroutine, in order, and
// published as an Upsert (the secret's current version, as the read API
// returns it, with its metadata) or a Delete.

// maxCachedSecret bounds a secret agents cache (data and metadata, as
// JSON): larger ones stay on the server, well within a sync frame.
const maxCachedSecret = 1 << 20

// kvChange is one committed change to a KV secret, for the publisher.
type kvChange struct {
	zone, mount, key string
}

// kvChanged queues a change for the publisher (kv.Options.OnChange). It is
// called with the secret's write lock held, so it only queues.
func (u *unsealed) kvChanged(zone, mount, key string) {
	select {
	case u.changes <- kvChange{zone, mount, key}:
	default:
		// The publisher is behind: never block a write for it. The zone is
		// republished whole once the queue drains.
		u.overflow.Store(zone, true)
	}
}

// publish turns queued changes into feed events until ctx ends; zones
// marked for a whole republication are done once the queue is empty.
func (s *Server) publish(u *unsealed) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-u.bg.Done():
			return
		case ch := <-u.changes:
			if err := s.publishChange(u.bg, u, ch); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Warn("sync: publish a change; the zone is republished whole", "zone", ch.zone, "mount", ch.mount, "err", err)
				u.overflow.Store(ch.zone, true)
			}
			if len(u.changes) > 0 {
				continue
			}
		case <-tick.C:
		}
		u.overflow.Range(func(zone, _ any) bool {
			u.overflow.Delete(zone)
			c, err := s.zoneCore(u.bg, u, zone.(string))
			if err == nil {
				err = s.republishZone(u.bg, u, c)
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				s.log.Error("sync: republish a zone", "zone", zone, "err", err)
				u.overflow.Store(zone, true) // try again
			}
			return true
		})
	}
}

func (s *Server) publishChange(ctx context.Context, u *unsealed, ch kvChange) error {
	c, err := s.zoneCore(ctx, u, ch.zone)
	if err != nil {
		return err
	}
	if ch.mount == "" {
		return s.republishZone(ctx, u, c)
	}
	ev, cacheable, err := c.secretEvent(ctx, ch.mount, ch.key)
	if err != nil || !cacheable {
		return err
	}
	s.startFeed(u, ch.zone)
	_, err = u.feed.Publish(ch.zone, ev)
	return err
}

// republish queues a republication of the whole zone, after what agents
// may cache changed (a policy written or deleted, a mount disabled).
func (u *unsealed) republish(zone string) { u.kvChanged(zone, "", "") }

// republishZone publishes, as one batch, a revocation of everything the
// zone's agents cache, then every secret they may cache now: what lost its
// cache coverage, or its mount, is gone from the agents.
func (s *Server) republishZone(ctx context.Context, u *unsealed, c *core) error {
	s.startFeed(u, c.zone)
	_, events, err := s.zoneSnapshot(u)(ctx, c.zone)
	if err != nil {
		return err
	}
	_, err = u.feed.Publish(c.zone, append([]syncproto.Event{{Kind: syncproto.Revoke, Path: ""}}, events...)...)
	return err
}

// startFeed numbers a zone's feed, before this process publishes or
// streams anything of it, from the current time in nanoseconds: above any
// sequence a previous run can have reached (it would have needed an event
// per nanosecond), so every agent coming back after a restart is behind the
// new backlog and gets a full resync (a snapshot) — never a silent gap,
// whatever acks the registry did or did not record.
func (s *Server) startFeed(u *unsealed, zone string) {
	once, _ := u.feedStarted.LoadOrStore(zone, new(sync.Once))
	once.(*sync.Once).Do(func() {
		if err := u.feed.SetHead(zone, uint64(time.Now().UnixNano())); err != nil {
			s.log.Error("sync: number the zone's feed", "zone", zone, "err", err)
		}
	})
}

// cacheACL is the zone's policies merged: what agents of the zone may cache.
func (c *core) cacheACL(ctx context.Context) (interface {
	CacheMaxStale(string) (time.Duration, bool)
}, error) {
	names, err := c.policies.List(ctx)
	if err != nil {
		return nil, err
	}
	// "root" grants everything and marks nothing cacheable: leave it out.
	names = slices.DeleteFunc(names, func(n string) bool { return n == policy.RootName })
	return c.policies.ACL(ctx, names)
}

// secretEvent reads a KV v2 secret's current state as an agent will serve
// it. cacheable is false when no policy of the zone lets agents cache it.
func (c *core) secretEvent(ctx context.Context, mount, key string) (syncproto.Event, bool, error) {
	acl, err := c.cacheACL(ctx)
	if err != nil {
		return syncproto.Event{}, false, err
	}
	maxStale, ok := acl.CacheMaxStale(mount + "data/" + key)
	if !ok {
		return syncproto.Event{}, false, nil
	}
	m := c.mounts.Load().exact(mount)
	if m == nil {
		return syncproto.Event{}, false, fmt.Errorf("mount %q is gone", mount)
	}
	path := mount + key
	read := func(p string) (*logical.Response, error) {
		return m.handler.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: p, MountPoint: mount})
	}
	meta, err := read("metadata/" + key)
	if errors.Is(err, logical.ErrNotFound) || (err == nil && meta == nil) {
		return syncproto.Event{Kind: syncproto.Delete, Path: path}, true, nil
	}
	if err != nil {
		return syncproto.Event{}, false, err
	}
	data, err := read("data/" + key)
	if errors.Is(err, logical.ErrNotFound) || (err == nil && (data == nil || data.StatusCode == http.StatusNotFound)) {
		// Deleted or destroyed current version: agents drop it.
		return syncproto.Event{Kind: syncproto.Delete, Path: path}, true, nil
	}
	if err != nil {
		return syncproto.Event{}, false, err
	}
	rawData, err := json.Marshal(data.Data)
	if err != nil {
		return syncproto.Event{}, false, err
	}
	rawMeta, err := json.Marshal(meta.Data)
	if err != nil {
		return syncproto.Event{}, false, err
	}
	if len(rawData)+len(rawMeta) > maxCachedSecret {
		// Too large for one sync frame: agents drop it and ask the server.
		return syncproto.Event{Kind: syncproto.Delete, Path: path}, true, nil
	}
	version := 0
	if cv, ok := meta.Data["current_version"]; ok {
		fmt.Sscan(fmt.Sprint(cv), &version)
	}
	return syncproto.Event{Kind: syncproto.Upsert, Path: path, Version: version, Data: rawData, Metadata: rawMeta, MaxStale: maxStale}, true, nil
}

// zoneSnapshot is the zone's whole cacheable state, for an agent that
// needs a full resync.
func (s *Server) zoneSnapshot(u *unsealed) syncproto.SnapshotFunc {
	return func(ctx context.Context, zone string) (uint64, []syncproto.Event, error) {
		s.startFeed(u, zone)
		seq := u.feed.Head(zone) // every later change is published after this
		c, err := s.zoneCore(ctx, u, zone)
		if err != nil {
			return 0, nil, err
		}
		var events []syncproto.Event
		for _, m := range c.mounts.Load().entries {
			if m.Type != "kv" {
				continue
			}
			keys, err := listAll(ctx, m.handler, m.Path, "")
			if err != nil {
				return 0, nil, err
			}
			for _, k := range keys {
				ev, ok, err := c.secretEvent(ctx, m.Path, k)
				if err != nil {
					return 0, nil, err
				}
				if ok && ev.Kind == syncproto.Upsert {
					events = append(events, ev)
				}
			}
		}
		return seq, events, nil
	}
}

// listAll lists every key under prefix of a KV v2 mount, recursively.
func listAll(ctx context.Context, h logical.Handler, mount, prefix string) ([]string, error) {
	resp, err := h.HandleRequest(ctx, &logical.Request{Operation: logical.ListOperation, Path: "metadata/" + prefix, MountPoint: mount})
	if errors.Is(err, logical.ErrNotFound) || resp == nil {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	raw, _ := resp.Data["keys"].([]string)
	var out []string
	for _, k := range raw {
		if strings.HasSuffix(k, "/") {
			sub, err := listAll(ctx, h, mount, prefix+k)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		out = append(out, prefix+k)
	}
	return out, nil
}

// authorizeAgent identifies the agent behind a sync stream from its client
// certificate, checked against its zone's CA and the registry, and audits
// the stream's opening (or its refusal) in the agent's zone.
func (s *Server) authorizeAgent(u *unsealed) syncproto.AuthorizeFunc {
	return func(r *http.Request) (string, string, error) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return "", "", fmt.Errorf("%w: a client certificate is required", syncproto.ErrAgentRefused)
		}
		a, err := u.attest.Authorize(r.Context(), r.TLS.PeerCertificates, time.Now())
		if err != nil {
			// Audit the refusal in the zone the certificate names, if any.
			if uris := r.TLS.PeerCertificates[0].URIs; len(uris) == 1 {
				if n, perr := attest.ParseAgentName(uris[0]); perr == nil {
					a.Zone = n.Zone
				}
			}
		}
		entry := &audit.Entry{Time: time.Now(), Type: audit.TypeRequest, Request: &audit.Request{
			ID: newRequestID(), Operation: "update", Path: strings.TrimPrefix(syncproto.Path, "/v1/"), Namespace: a.Zone,
			MountType: "system", MountPoint: "sys/", RemoteAddress: r.RemoteAddr,
		}}
		if err == nil {
			entry.Auth = &audit.Auth{DisplayName: "agent-" + a.ID, Metadata: map[string]string{"agent_id": a.ID, "attestation": string(a.Strength)}}
		} else {
			entry.Error = strings.TrimPrefix(err.Error(), "attest: ")
		}
		c, cerr := s.zoneCore(r.Context(), u, a.Zone)
		switch {
		case cerr != nil && err == nil:
			// No stream opens unaudited: a zone that cannot be loaded now
			// is the server's trouble (503), not the agent's.
			return "", "", fmt.Errorf("audit: load zone %q: %w", zoneLabel(a.Zone), cerr)
		case cerr != nil:
			c = u.root // a refusal naming a zone that is not there is audited in the root zone
		}
		if _, aerr := u.audit.LogEntry(entry, c.salt); aerr != nil {
			return "", "", fmt.Errorf("audit: %w", aerr)
		}
		if err != nil {
			return "", "", agentRefusal(err)
		}
		s.startFeed(u, a.Zone)
		return a.ID, a.Zone, nil
	}
}

// agentRefusal marks err with syncproto.ErrAgentRefused when it refuses the
// agent itself (revoked, quarantined, unknown, its certificate invalid,
// expired, superseded or of another zone, its re-attestation overdue), so
// the sync server answers 403 and the agent stops serving its cache. Any
// other error (a storage read error, a corrupt record, a zone CA that cannot
// be loaded, a certificate not yet valid, which is clock skew more often
// than not) is the server's trouble: it stays as it is and is answered 503,
// and the agent keeps serving within its staleness bounds and retries.
func agentRefusal(err error) error {
	refusesAgent := [...]error{
		attest.ErrAgentRevoked, attest.ErrAgentQuarantined, attest.ErrAgentUnknown, attest.ErrCertSuperseded,
		attest.ErrCertInvalid, attest.ErrCertExpired, attest.ErrCertZone, attest.ErrAttestation,
	}
	for _, r := range refusesAgent {
		if errors.Is(err, r) {
			return fmt.Errorf("%w: %w", syncproto.ErrAgentRefused, err)
		}
	}
	return err
}

// agentAcked records an agent's ack (its cache watermark) in the registry.
func (s *Server) agentAcked(u *unsealed) func(agentID, zone string, seq uint64) {
	type seen struct {
		seq uint64
		at  time.Time
	}
	var last sync.Map // zone+agent → seen
	return func(agentID, zone string, seq uint64) {
		// Heartbeats re-send the same ack every second: write the registry
		// only when it moved, or every 30 s for last_seen.
		key, now := zone+"\x00"+agentID, time.Now()
		if v, ok := last.Load(key); ok && v.(seen).seq == seq && now.Sub(v.(seen).at) < 30*time.Second {
			return
		}
		last.Store(key, seen{seq, now})
		if _, err := u.attest.Agents().Ack(u.bg, zone, agentID, seq, now); err != nil {
			s.log.Warn("sync: record an ack", "agent", agentID, "zone", zone, "err", err)
		}
	}
}

// SyncEvents returns the events a zone's feed still holds, oldest first:
// what an agent joining now would be sent after its snapshot. For
// diagnostics and tests.
func (s *Server) SyncEvents(zone string) []syncproto.Event {
	u := s.state.Load()
	if u == nil {
		return nil
	}
	b, err := u.feed.Subscribe(zone, 0, 1<<20)
	if err != nil {
		return nil
	}
	return b.Events
}

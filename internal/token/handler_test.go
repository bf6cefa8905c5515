package token

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/edgevault/edgevault/internal/logical"
)

// envelope renders a response as Vault's JSON envelope, so the real client's
// parser can check the shapes.
func envelope(t *testing.T, resp *logical.Response) *api.Secret {
	t.Helper()
	env := map[string]any{
		"request_id": "x", "lease_id": "", "renewable": false, "lease_duration": 0,
		"data": resp.Data, "wrap_info": nil, "warnings": resp.Warnings, "auth": resp.Auth,
	}
	raw, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	s, err := api.ParseSecret(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCreateAndLookup(t *testing.T) {
	h := newHarness(t)
	auth := h.create(h.root, map[string]any{
		"policies":     []any{"Web", "stage", "web"},
		"meta":         map[string]any{"user": "armon"},
		"ttl":          "1h",
		"display_name": "my app!",
		// What vault/api always sends:
		"num_uses": json.Number("0"), "type": "", "entity_alias": "",
	})
	if !strings.HasPrefix(auth.ClientToken, Prefix) || len(auth.ClientToken) < len(Prefix)+24 {
		t.Fatalf("token %q: want %s + 24 or more characters", auth.ClientToken, Prefix)
	}
	wantPols := []string{"default", "stage", "web"}
	if !slices.Equal(auth.Policies, wantPols) || !slices.Equal(auth.TokenPolicies, wantPols) {
		t.Errorf("policies %v / %v, want %v", auth.Policies, auth.TokenPolicies, wantPols)
	}
	if auth.LeaseDuration != 3600 || !auth.Renewable || auth.Orphan || auth.TokenType != "service" || auth.Accessor == "" {
		t.Errorf("auth %+v", auth)
	}

	sec := envelope(t, &logical.Response{Auth: auth})
	if id, _ := sec.TokenID(); id != auth.ClientToken {
		t.Errorf("client sees token id %q", id)
	}

	for _, c := range []struct {
		name, token, path string
		op                logical.Operation
		data              map[string]any
		wantID            string
	}{
		{"lookup", h.root, "lookup", logical.UpdateOperation, map[string]any{"token": auth.ClientToken}, auth.ClientToken},
		{"lookup GET", h.root, "lookup", logical.ReadOperation, map[string]any{"token": auth.ClientToken}, auth.ClientToken},
		{"lookup-self", auth.ClientToken, "lookup-self", logical.ReadOperation, nil, auth.ClientToken},
		{"lookup without token is self", auth.ClientToken, "lookup", logical.UpdateOperation, map[string]any{}, auth.ClientToken},
		{"lookup-accessor", h.root, "lookup-accessor", logical.UpdateOperation, map[string]any{"accessor": auth.Accessor}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := h.do(c.token, c.op, c.path, c.data)
			if err != nil {
				t.Fatal(err)
			}
			d := resp.Data
			if d["id"] != c.wantID {
				t.Errorf("id = %v, want %q", d["id"], c.wantID)
			}
			if d["accessor"] != auth.Accessor || d["display_name"] != "token-my-app" || d["path"] != "auth/token/create" ||
				d["orphan"] != false || d["type"] != "service" || d["entity_id"] != "" || d["renewable"] != true {
				t.Errorf("data %v", d)
			}
			if d["creation_ttl"] != int64(3600) || d["ttl"] != int64(3600) || d["explicit_max_ttl"] != int64(0) || d["num_uses"] != int64(0) {
				t.Errorf("ttls %v", d)
			}
			if d["creation_time"] != h.clock.Now().Unix() || d["expire_time"] != "2025-01-02T04:04:05Z" || d["issue_time"] != "2025-01-02T03:04:05Z" {
				t.Errorf("times %v %v %v", d["creation_time"], d["expire_time"], d["issue_time"])
			}
			if m, _ := d["meta"].(map[string]string); m["user"] != "armon" {
				t.Errorf("meta %v", d["meta"])
			}
			sec := envelope(t, resp)
			ttl, err := sec.TokenTTL()
			if err != nil || ttl != time.Hour {
				t.Errorf("client TokenTTL = %v, %v", ttl, err)
			}
			pols, err := sec.TokenPolicies()
			if err != nil || !slices.Equal(pols, wantPols) {
				t.Errorf("client TokenPolicies = %v, %v", pols, err)
			}
		})
	}
}

func TestRootLookup(t *testing.T) {
	h := newHarness(t)
	resp, err := h.do(h.root, logical.ReadOperation, "lookup-self", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := resp.Data
	if d["expire_time"] != nil || d["ttl"] != int64(0) || d["renewable"] != false || d["orphan"] != true ||
		d["path"] != "auth/token/root" || d["display_name"] != "root" || !slices.Equal(d["policies"].([]string), []string{"root"}) {
		t.Errorf("root lookup %v", d)
	}
	// Root never expires.
	h.clock.Advance(10000 * time.Hour)
	if !h.alive(h.root) {
		t.Error("root token expired")
	}
	if _, err := h.do(h.root, logical.UpdateOperation, "renew-self", nil); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Errorf("renewing a non-expiring root token: %v", err)
	}
}

func TestCreateRootWithID(t *testing.T) {
	h := newHarness(t)
	id, err := h.s.CreateRootWithID(context.Background(), "root")
	if err != nil || id != "root" {
		t.Fatalf("CreateRootWithID = %q, %v", id, err)
	}
	e, err := h.s.Lookup(context.Background(), "root")
	if err != nil || !e.IsRoot() {
		t.Fatalf("lookup root: %v", err)
	}
	if _, err := h.s.CreateRootWithID(context.Background(), "root"); !errors.Is(err, ErrDuplicateID) {
		t.Errorf("duplicate id: %v", err)
	}
}

func TestCreatePolicyRules(t *testing.T) {
	cases := []struct {
		name      string
		caller    []string // nil: root
		sudo      bool
		data      map[string]any
		want      []string
		wantErr   string
		wantOrphn bool
	}{
		{name: "root inherits root", data: map[string]any{}, want: []string{"root"}},
		{name: "root may pick any", data: map[string]any{"policies": "a,b"}, want: []string{"a", "b", "default"}},
		{name: "no default", data: map[string]any{"policies": []any{"a"}, "no_default_policy": true}, want: []string{"a"}},
		{name: "root with others is root", data: map[string]any{"policies": []any{"a", "root"}}, want: []string{"root"}},
		{name: "inherit", caller: []string{"a", "b"}, data: map[string]any{}, want: []string{"a", "b", "default"}},
		{name: "inherit no default", caller: []string{"a"}, data: map[string]any{"no_default_policy": true}, want: []string{"a"}},
		{name: "subset", caller: []string{"a", "b"}, data: map[string]any{"policies": []any{"b"}}, want: []string{"b", "default"}},
		{name: "default always allowed", caller: []string{"a"}, data: map[string]any{"policies": []any{"a", "default"}, "no_default_policy": true}, want: []string{"a", "default"}},
		{name: "not subset", caller: []string{"a"}, data: map[string]any{"policies": []any{"a", "c"}}, wantErr: "subset"},
		{name: "sudo escapes subset", caller: []string{"a"}, sudo: true, data: map[string]any{"policies": []any{"c"}}, want: []string{"c", "default"}},
		{name: "non-root cannot mint root", caller: []string{"a"}, sudo: true, data: map[string]any{"policies": []any{"root"}}, wantErr: "root tokens"},
		{name: "id needs sudo", caller: []string{"a"}, data: map[string]any{"id": "custom"}, wantErr: "token id"},
		{name: "no_parent needs sudo", caller: []string{"a"}, data: map[string]any{"no_parent": true}, wantErr: "orphan"},
		{name: "no_parent with sudo", caller: []string{"a"}, sudo: true, data: map[string]any{"no_parent": true}, want: []string{"a", "default"}, wantOrphn: true},
		{name: "period needs sudo", caller: []string{"a"}, data: map[string]any{"period": "1h"}, wantErr: "periodic"},
		{name: "no policy at all", caller: []string{"default"}, data: map[string]any{"no_default_policy": true}, wantErr: "at least one policy"},
		{name: "id with dot", data: map[string]any{"id": "evs.abc"}, wantErr: `"id"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			caller := h.root
			if c.caller != nil {
				caller = h.create(h.root, map[string]any{"policies": c.caller, "no_default_policy": true}).ClientToken
			}
			before := snapshot(t, h.b)
			resp, err := h.s.HandleRequest(context.Background(), &logical.Request{
				Operation: logical.UpdateOperation, Path: "create", Data: c.data, ClientToken: caller, Sudo: c.sudo,
			})
			if c.wantErr != "" {
				if !errors.Is(err, logical.ErrInvalidRequest) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want 400 containing %q", err, c.wantErr)
				}
				if !sameStorage(before, snapshot(t, h.b)) {
					t.Error("failed create changed storage")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(resp.Auth.Policies, c.want) || resp.Auth.Orphan != c.wantOrphn {
				t.Errorf("policies %v orphan %v, want %v %v", resp.Auth.Policies, resp.Auth.Orphan, c.want, c.wantOrphn)
			}
		})
	}
}

func TestCreateOrphanEndpoint(t *testing.T) {
	h := newHarness(t)
	user := h.create(h.root, map[string]any{"policies": []any{"a"}}).ClientToken
	resp, err := h.do(user, logical.UpdateOperation, "create-orphan", map[string]any{"policies": []any{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Auth.Orphan {
		t.Error("create-orphan made a child")
	}
	if _, err := h.do(user, logical.UpdateOperation, "create-orphan", map[string]any{"policies": []any{"b"}}); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Errorf("create-orphan must still check the policy subset: %v", err)
	}
	// Revoking the creator leaves the orphan.
	if _, err := h.do(h.root, logical.UpdateOperation, "revoke", map[string]any{"token": user}); err != nil {
		t.Fatal(err)
	}
	if !h.alive(resp.Auth.ClientToken) {
		t.Error("orphan revoked with its creator")
	}
}

func TestCreateTTLRules(t *testing.T) {
	cases := []struct {
		name         string
		data         map[string]any
		wantTTL      time.Duration
		wantExplicit time.Duration
		wantRenew    bool
		warn         bool
	}{
		{"root child never expires", map[string]any{}, 0, 0, false, false},
		{"default ttl", map[string]any{"policies": "a"}, 768 * time.Hour, 0, true, false},
		{"ttl seconds", map[string]any{"policies": "a", "ttl": json.Number("90")}, 90 * time.Second, 0, true, false},
		{"lease alias", map[string]any{"policies": "a", "lease": "2m"}, 2 * time.Minute, 0, true, false},
		{"ttl capped at max", map[string]any{"policies": "a", "ttl": "10000h"}, 768 * time.Hour, 0, true, true},
		{"explicit caps ttl", map[string]any{"policies": "a", "ttl": "2h", "explicit_max_ttl": "1h"}, time.Hour, time.Hour, true, false},
		{"explicit caps default", map[string]any{"policies": "a", "explicit_max_ttl": "1h"}, time.Hour, time.Hour, true, false},
		{"explicit capped at max", map[string]any{"policies": "a", "explicit_max_ttl": "1000h"}, 768 * time.Hour, 768 * time.Hour, true, true},
		{"root with ttl", map[string]any{"ttl": "1h"}, time.Hour, 0, true, false},
		{"periodic", map[string]any{"policies": "a", "period": "30m", "ttl": "5h"}, 30 * time.Minute, 0, true, false},
		{"non renewable", map[string]any{"policies": "a", "renewable": false, "ttl": "1h"}, time.Hour, 0, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			resp, err := h.do(h.root, logical.UpdateOperation, "create", c.data)
			if err != nil {
				t.Fatal(err)
			}
			e, err := h.s.Lookup(context.Background(), resp.Auth.ClientToken)
			if err != nil {
				t.Fatal(err)
			}
			if e.TTL(h.clock.Now()) != c.wantTTL || resp.Auth.LeaseDuration != int(c.wantTTL/time.Second) ||
				e.ExplicitMaxTTL() != c.wantExplicit || e.Renewable() != c.wantRenew || resp.Auth.Renewable != c.wantRenew {
				t.Errorf("ttl %v explicit %v renewable %v lease %d", e.TTL(h.clock.Now()), e.ExplicitMaxTTL(), e.Renewable(), resp.Auth.LeaseDuration)
			}
			if (len(resp.Warnings) > 0) != c.warn {
				t.Errorf("warnings %v", resp.Warnings)
			}
		})
	}
}

func TestRenew(t *testing.T) {
	cases := []struct {
		name      string
		create    map[string]any
		advance   time.Duration
		increment any
		wantTTL   time.Duration
		wantErr   string
	}{
		{name: "by creation ttl", create: map[string]any{"ttl": "1h"}, advance: 30 * time.Minute, wantTTL: time.Hour},
		{name: "by increment", create: map[string]any{"ttl": "1h"}, increment: json.Number("7200"), wantTTL: 2 * time.Hour},
		{name: "capped by explicit max", create: map[string]any{"ttl": "1h", "explicit_max_ttl": "90m"}, advance: 40 * time.Minute, increment: "1h", wantTTL: 50 * time.Minute},
		{name: "capped by system max life", create: map[string]any{"ttl": "700h"}, advance: 600 * time.Hour, increment: "700h", wantTTL: 168 * time.Hour},
		{name: "periodic gets its period", create: map[string]any{"period": "20m"}, advance: 10 * time.Minute, increment: "5h", wantTTL: 20 * time.Minute},
		{name: "periodic escapes system max", create: map[string]any{"period": "1h"}, advance: 0, wantTTL: time.Hour},
		{name: "not renewable", create: map[string]any{"ttl": "1h", "renewable": false}, wantErr: "not renewable"},
		{name: "expired", create: map[string]any{"ttl": "1h"}, advance: 2 * time.Hour, wantErr: "not found"},
		{name: "bad increment", create: map[string]any{"ttl": "1h"}, increment: "soon", wantErr: `"increment"`},
	}
	for _, c := range cases {
		for _, path := range []string{"renew", "renew-self", "renew-accessor"} {
			t.Run(c.name+"/"+path, func(t *testing.T) {
				h := newHarness(t)
				data := map[string]any{"policies": "a"}
				for k, v := range c.create {
					data[k] = v
				}
				auth := h.create(h.root, data)
				h.clock.Advance(c.advance)
				body := map[string]any{}
				if c.increment != nil {
					body["increment"] = c.increment
				}
				caller := h.root
				switch path {
				case "renew":
					body["token"] = auth.ClientToken
				case "renew-self":
					caller = auth.ClientToken
				case "renew-accessor":
					body["accessor"] = auth.Accessor
				}
				wantErr := c.wantErr
				if path == "renew-self" && wantErr == "not found" {
					// An expired caller is refused before anything else.
					wantErr = "permission denied"
				}
				if path == "renew-accessor" && wantErr == "not found" {
					wantErr = "invalid accessor"
				}
				before := snapshot(t, h.b)
				resp, err := h.do(caller, logical.UpdateOperation, path, body)
				if wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), wantErr) {
						t.Fatalf("err = %v, want %q", err, wantErr)
					}
					if !sameStorage(before, snapshot(t, h.b)) && c.advance == 0 {
						t.Error("failed renew changed storage")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := time.Duration(resp.Auth.LeaseDuration) * time.Second; got != c.wantTTL {
					t.Errorf("lease_duration %v, want %v", got, c.wantTTL)
				}
				wantID := auth.ClientToken
				if path == "renew-accessor" {
					wantID = ""
				}
				if resp.Auth.ClientToken != wantID || resp.Auth.Accessor != auth.Accessor {
					t.Errorf("auth %+v", resp.Auth)
				}
				// The new expiry is what lookups now see (the cache was refreshed).
				e, err := h.s.Lookup(context.Background(), auth.ClientToken)
				if err != nil {
					t.Fatal(err)
				}
				if e.TTL(h.clock.Now()) != c.wantTTL {
					t.Errorf("stored ttl %v, want %v", e.TTL(h.clock.Now()), c.wantTTL)
				}
				h.clock.Advance(c.wantTTL - time.Second)
				if !h.alive(auth.ClientToken) {
					t.Error("expired before its renewed TTL")
				}
				h.clock.Advance(time.Second)
				if h.alive(auth.ClientToken) {
					t.Error("alive after its renewed TTL")
				}
			})
		}
	}
}

func TestRevokeTree(t *testing.T) {
	h := newHarness(t)
	a := h.create(h.root, map[string]any{"policies": "a"})
	b := h.create(a.ClientToken, map[string]any{})
	c := h.create(b.ClientToken, map[string]any{})
	d := h.create(a.ClientToken, map[string]any{})
	other := h.create(h.root, map[string]any{"policies": "a"})

	if _, err := h.do(h.root, logical.UpdateOperation, "revoke", map[string]any{"token": a.ClientToken}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []*logical.Auth{a, b, c, d} {
		if h.alive(tok.ClientToken) {
			t.Errorf("token %s survived its ancestor's revocation", tok.Accessor)
		}
	}
	if !h.alive(other.ClientToken) || !h.alive(h.root) {
		t.Error("revocation went beyond the tree")
	}
	// Only the salt, the root and other remain.
	if n := len(dump(t, h.b)); n != 1+2+2+1 {
		t.Errorf("%d keys left: %v", n, dump(t, h.b))
	}
	// Revoking an unknown token is a no-op.
	if resp, err := h.do(h.root, logical.UpdateOperation, "revoke", map[string]any{"token": a.ClientToken}); err != nil || resp != nil {
		t.Errorf("revoke unknown: %v %v", resp, err)
	}
}

func TestRevokeSelfAndAccessor(t *testing.T) {
	h := newHarness(t)
	a := h.create(h.root, map[string]any{"policies": "a"})
	child := h.create(a.ClientToken, map[string]any{})
	if _, err := h.do(a.ClientToken, logical.UpdateOperation, "revoke-self", nil); err != nil {
		t.Fatal(err)
	}
	if h.alive(a.ClientToken) || h.alive(child.ClientToken) {
		t.Error("revoke-self left the tree")
	}
	b := h.create(h.root, map[string]any{"policies": "a"})
	bc := h.create(b.ClientToken, map[string]any{})
	if _, err := h.do(h.root, logical.UpdateOperation, "revoke-accessor", map[string]any{"accessor": b.Accessor}); err != nil {
		t.Fatal(err)
	}
	if h.alive(b.ClientToken) || h.alive(bc.ClientToken) {
		t.Error("revoke-accessor left the tree")
	}
	if _, err := h.do(h.root, logical.UpdateOperation, "lookup-accessor", map[string]any{"accessor": b.Accessor}); !errors.Is(err, logical.ErrInvalidRequest) ||
		!strings.Contains(err.Error(), "invalid accessor") {
		t.Errorf("lookup-accessor of a revoked accessor: %v", err)
	}
	// revoke-accessor is idempotent, as in Vault since 1.10.
	if resp, err := h.do(h.root, logical.UpdateOperation, "revoke-accessor", map[string]any{"accessor": b.Accessor}); err != nil || resp != nil {
		t.Errorf("revoke-accessor of a revoked accessor: %v %v", resp, err)
	}
}

func TestRevokeOrphan(t *testing.T) {
	h := newHarness(t)
	a := h.create(h.root, map[string]any{"policies": "a"})
	b := h.create(a.ClientToken, map[string]any{})
	c := h.create(b.ClientToken, map[string]any{})
	d := h.create(a.ClientToken, map[string]any{})

	// Needs sudo or root.
	if _, err := h.do(b.ClientToken, logical.UpdateOperation, "revoke-orphan", map[string]any{"token": a.ClientToken}); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Fatalf("revoke-orphan without sudo: %v", err)
	}
	if !h.alive(a.ClientToken) {
		t.Fatal("refused revoke-orphan revoked")
	}
	resp, err := h.s.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.UpdateOperation, Path: "revoke-orphan", ClientToken: b.ClientToken, Sudo: true,
		Data: map[string]any{"token": a.ClientToken},
	})
	if err != nil || resp != nil {
		t.Fatalf("revoke-orphan: %v %v", resp, err)
	}
	if h.alive(a.ClientToken) {
		t.Error("token survived revoke-orphan")
	}
	for _, tok := range []*logical.Auth{b, c, d} {
		if !h.alive(tok.ClientToken) {
			t.Errorf("descendant %s revoked by revoke-orphan", tok.Accessor)
		}
	}
	for tok, orphan := range map[string]bool{b.ClientToken: true, d.ClientToken: true, c.ClientToken: false} {
		resp, err := h.do(h.root, logical.UpdateOperation, "lookup", map[string]any{"token": tok})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Data["orphan"] != orphan {
			t.Errorf("orphan = %v, want %v", resp.Data["orphan"], orphan)
		}
	}
	// c is still b's child.
	if err := h.s.Revoke(context.Background(), b.ClientToken); err != nil {
		t.Fatal(err)
	}
	if h.alive(c.ClientToken) || !h.alive(d.ClientToken) {
		t.Error("tree after orphaning is wrong")
	}
}

func TestNumUses(t *testing.T) {
	h := newHarness(t)
	auth := h.create(h.root, map[string]any{"policies": "a", "num_uses": 2})
	if auth.NumUses != 2 {
		t.Fatalf("num_uses %d", auth.NumUses)
	}
	ctx := context.Background()
	e, err := h.s.Lookup(ctx, auth.ClientToken)
	if err != nil {
		t.Fatal(err)
	}
	// A use-limited token cannot create children.
	if _, err := h.do(auth.ClientToken, logical.UpdateOperation, "create", nil); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Errorf("use-limited token created a child: %v", err)
	}
	e1, err := h.s.Use(ctx, e)
	if err != nil || e1.NumUses() != 1 || e1.Exhausted() {
		t.Fatalf("first use: %v %v", e1, err)
	}
	// Durable: a fresh store over the same backend sees 1 left.
	fresh := NewStore(h.b, Options{Clock: h.clock.Now})
	if fe, err := fresh.Lookup(ctx, auth.ClientToken); err != nil || fe.NumUses() != 1 {
		t.Fatalf("fresh store: %v %v", fe, err)
	}
	// The last use authorises its own request (lookup-self through WithCaller)...
	e2, err := h.s.Use(ctx, e1)
	if err != nil || !e2.Exhausted() || e2.NumUses() != 0 {
		t.Fatalf("last use: %+v %v", e2, err)
	}
	resp, err := h.s.HandleRequest(WithCaller(ctx, e2), &logical.Request{
		Operation: logical.ReadOperation, Path: "lookup-self", ClientToken: auth.ClientToken,
	})
	if err != nil || resp.Data["num_uses"] != int64(0) {
		t.Fatalf("lookup-self on the last use: %v %v", resp, err)
	}
	// ...and then the token is gone.
	if h.alive(auth.ClientToken) {
		t.Error("token alive after its last use")
	}
	if _, err := h.s.Use(ctx, e2); !errors.Is(err, ErrNotFound) {
		t.Errorf("use after exhaustion: %v", err)
	}
	// Unlimited tokens are not written on use.
	u, _ := h.s.Lookup(ctx, h.root)
	before := snapshot(t, h.b)
	if err := h.s.UseToken(ctx, u); err != nil {
		t.Fatal(err)
	}
	if !sameStorage(before, snapshot(t, h.b)) {
		t.Error("use of an unlimited token wrote")
	}
}

func TestExpiryAndTidy(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	short := h.create(h.root, map[string]any{"policies": "a", "ttl": "1h"})
	child := h.create(short.ClientToken, map[string]any{"ttl": "5h"})
	long := h.create(h.root, map[string]any{"policies": "a", "ttl": "3h"})
	// Warm the cache: expiry must not depend on it.
	for _, a := range []*logical.Auth{short, child, long} {
		if !h.alive(a.ClientToken) {
			t.Fatal("not alive")
		}
	}
	h.clock.Advance(time.Hour)
	// The child has TTL left but dies with its parent.
	if h.alive(child.ClientToken) {
		t.Error("child of an expired parent is alive")
	}
	if !h.alive(long.ClientToken) {
		t.Error("long token expired early")
	}
	n, err := h.s.Tidy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Lookup of the child already revoked the expired parent's tree.
	if n != 0 {
		t.Errorf("tidy removed %d, want 0 (already revoked on lookup)", n)
	}
	h.clock.Advance(2 * time.Hour)
	n, err = h.s.Tidy(ctx)
	if err != nil || n != 1 {
		t.Errorf("tidy = %d, %v; want 1", n, err)
	}
	if keys := dump(t, h.b); len(keys) != 3 {
		t.Errorf("after tidy: %d keys, want salt + root", len(keys))
	}
}

func TestTidyRemovesExpiredTreesWithoutLookup(t *testing.T) {
	h := newHarness(t)
	p := h.create(h.root, map[string]any{"policies": "a", "ttl": "1h"})
	for range 3 {
		h.create(p.ClientToken, map[string]any{"ttl": "10h"})
	}
	h.clock.Advance(90 * time.Minute)
	n, err := h.s.Tidy(context.Background())
	if err != nil || n != 4 {
		t.Fatalf("tidy = %d, %v; want 4", n, err)
	}
}

func TestDanglingChildAfterCrash(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	p := h.create(h.root, map[string]any{"policies": "a"})
	c := h.create(p.ClientToken, map[string]any{})
	gc := h.create(c.ClientToken, map[string]any{})
	pe, _ := h.s.Lookup(ctx, p.ClientToken)
	// Simulate a crash that deleted the parent's entry but nothing else, and
	// a restart (new store, cold cache).
	if err := h.b.Delete(ctx, keyID+pe.Hash()); err != nil {
		t.Fatal(err)
	}
	s := NewStore(h.b, Options{Clock: h.clock.Now})
	h.s = s
	for _, a := range []*logical.Auth{c, gc} {
		if _, err := s.Lookup(ctx, a.ClientToken); !errors.Is(err, ErrNotFound) {
			t.Errorf("dangling token looked up: %v", err)
		}
	}
	n, err := s.Tidy(ctx)
	if err != nil || n != 2 {
		t.Errorf("tidy = %d, %v; want 2", n, err)
	}
	// checkInvariants (cleanup) verifies the parent's stale indexes are gone.
}

func TestDeepTreeRevocation(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	const depth = 1000
	first := h.create(h.root, map[string]any{"policies": "a"})
	parent, err := h.s.Lookup(ctx, first.ClientToken)
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for range depth {
		c, err := h.s.Create(ctx, CreateOptions{Parent: parent, Policies: []string{"a"}})
		if err != nil {
			t.Fatal(err)
		}
		parent, last = c.Entry, c.ID
	}
	if !h.alive(last) {
		t.Fatal("deepest token not alive")
	}
	if err := h.s.Revoke(ctx, first.ClientToken); err != nil {
		t.Fatal(err)
	}
	if h.alive(last) {
		t.Error("deepest token survived")
	}
	if n := len(dump(t, h.b)); n != 3 {
		t.Errorf("%d keys left, want salt + root", n)
	}
}

func TestNoTokenInStorage(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ids := []string{h.root}
	a := h.create(h.root, map[string]any{"policies": "a", "meta": map[string]any{"k": "v"}})
	ids = append(ids, a.ClientToken, h.create(a.ClientToken, map[string]any{}).ClientToken)
	ids = append(ids, h.create(h.root, map[string]any{"id": "customtokenvalue"}).ClientToken)
	if _, err := h.s.CreateRootWithID(ctx, "devroottokenvalue"); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, "devroottokenvalue")
	all := dump(t, h.b)
	for _, id := range ids {
		needles := []string{id, strings.TrimPrefix(id, Prefix)}
		for k, v := range all {
			for _, n := range needles {
				if strings.Contains(k, n) || bytes.Contains(v, []byte(n)) {
					t.Errorf("token found in clear in storage at %q", k)
				}
			}
		}
	}
	// Nor do accessors appear in keys.
	if strings.Contains(strings.Join(keysOf(all), "\n"), a.Accessor) {
		t.Error("accessor in a storage key")
	}
}

func keysOf(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestBadRequests(t *testing.T) {
	h := newHarness(t)
	user := h.create(h.root, map[string]any{"policies": "a"}).ClientToken
	cases := []struct {
		name    string
		token   string
		op      logical.Operation
		path    string
		data    map[string]any
		wantErr error
		wantMsg string
	}{
		{"unknown field", h.root, logical.UpdateOperation, "create", map[string]any{"polices": "a"}, logical.ErrInvalidRequest, `"polices"`},
		{"batch type", h.root, logical.UpdateOperation, "create", map[string]any{"type": "batch"}, logical.ErrInvalidRequest, `"type"`},
		{"entity alias", h.root, logical.UpdateOperation, "create", map[string]any{"entity_alias": "x"}, logical.ErrInvalidRequest, `"entity_alias"`},
		{"ttl type", h.root, logical.UpdateOperation, "create", map[string]any{"ttl": true}, logical.ErrInvalidRequest, `"ttl"`},
		{"negative ttl", h.root, logical.UpdateOperation, "create", map[string]any{"ttl": "-1h"}, logical.ErrInvalidRequest, `"ttl"`},
		{"policies type", h.root, logical.UpdateOperation, "create", map[string]any{"policies": []any{1}}, logical.ErrInvalidRequest, `"policies"`},
		{"meta type", h.root, logical.UpdateOperation, "create", map[string]any{"meta": map[string]any{"a": 1}}, logical.ErrInvalidRequest, `"meta"`},
		{"negative uses", h.root, logical.UpdateOperation, "create", map[string]any{"num_uses": -1}, logical.ErrInvalidRequest, `"num_uses"`},
		{"renewable type", h.root, logical.UpdateOperation, "create", map[string]any{"renewable": "maybe"}, logical.ErrInvalidRequest, `"renewable"`},
		{"role", h.root, logical.UpdateOperation, "create/myrole", nil, logical.ErrInvalidRequest, "roles"},
		{"no caller", "", logical.UpdateOperation, "create", nil, logical.ErrPermissionDenied, ""},
		{"bad caller", "evs.nope", logical.UpdateOperation, "create", nil, logical.ErrPermissionDenied, ""},
		{"lookup unknown", h.root, logical.UpdateOperation, "lookup", map[string]any{"token": "evs.nope"}, logical.ErrPermissionDenied, "bad token"},
		{"lookup-self unknown", "evs.nope", logical.ReadOperation, "lookup-self", nil, logical.ErrPermissionDenied, "bad token"},
		{"lookup extra field", h.root, logical.UpdateOperation, "lookup", map[string]any{"token": user, "x": 1}, logical.ErrInvalidRequest, `"x"`},
		{"lookup-accessor missing", h.root, logical.UpdateOperation, "lookup-accessor", map[string]any{}, logical.ErrInvalidRequest, `"accessor"`},
		{"renew missing token", h.root, logical.UpdateOperation, "renew", map[string]any{}, logical.ErrInvalidRequest, `"token"`},
		{"renew unknown", h.root, logical.UpdateOperation, "renew", map[string]any{"token": "evs.nope"}, logical.ErrInvalidRequest, "not found"},
		{"revoke missing token", h.root, logical.UpdateOperation, "revoke", nil, logical.ErrInvalidRequest, `"token"`},
		{"revoke token type", h.root, logical.UpdateOperation, "revoke", map[string]any{"token": []any{}}, logical.ErrInvalidRequest, `"token"`},
		{"delete op", h.root, logical.DeleteOperation, "create", nil, logical.ErrUnsupportedOperation, ""},
		{"list op", h.root, logical.ListOperation, "lookup", nil, logical.ErrUnsupportedOperation, ""},
		{"read revoke", h.root, logical.ReadOperation, "revoke", nil, logical.ErrUnsupportedOperation, ""},
		{"unknown path", h.root, logical.UpdateOperation, "frobnicate", nil, logical.ErrUnsupportedPath, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(t, h.b)
			_, err := h.do(c.token, c.op, c.path, c.data)
			if !errors.Is(err, c.wantErr) || !strings.Contains(fmtErr(err), c.wantMsg) {
				t.Fatalf("err = %v, want %v containing %q", err, c.wantErr, c.wantMsg)
			}
			if !sameStorage(before, snapshot(t, h.b)) {
				t.Error("failed request changed storage")
			}
			for _, tok := range []string{h.root, user} {
				if strings.Contains(fmtErr(err), tok) {
					t.Error("error message contains a token")
				}
			}
		})
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

package jointoken_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/attest/jointoken"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// newStore returns a Store over one in-memory backend per zone, and the
// backends.
func newStore(t *testing.T) (*jointoken.Store, map[string]*inmem.Backend) {
	t.Helper()
	zones := map[string]*inmem.Backend{"": inmem.New(), "east": inmem.New(), "west": inmem.New()}
	s, err := jointoken.New(jointoken.Config{Stores: func(z string) (storage.Backend, error) {
		b, ok := zones[z]
		if !ok {
			return nil, errors.New("no such zone")
		}
		return b, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s, zones
}

func TestTokenShapeAndStorage(t *testing.T) {
	s, zones := newStore(t)
	ctx := t.Context()
	tok, info, err := s.Create(ctx, "east", jointoken.Options{AgentID: "node-1", Labels: map[string]string{"rack": "7"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != "evjt" || parts[1] != "east" || len(parts[2]) != 43 {
		t.Fatalf("token shape %q", tok)
	}
	if z, err := jointoken.Parse(tok); err != nil || z != "east" {
		t.Fatalf("Parse: %q, %v", z, err)
	}
	if info.ID != jointoken.ID(tok) || !info.ExpiresAt.Equal(t0.Add(jointoken.DefaultTTL)) || info.Used() {
		t.Fatalf("info %+v", info)
	}
	// Only the hash is stored.
	names, _ := zones["east"].List(ctx, "attest/tokens/")
	if len(names) != 1 || names[0] != info.ID {
		t.Fatalf("stored keys %q", names)
	}
	raw, _ := zones["east"].Get(ctx, "attest/tokens/"+info.ID)
	if strings.Contains(string(raw), parts[2]) {
		t.Fatal("token secret stored in the record")
	}
	// Two tokens differ.
	tok2, _, _ := s.Create(ctx, "east", jointoken.Options{}, t0)
	if tok2 == tok {
		t.Fatal("two tokens are equal")
	}
	list, err := s.List(ctx, "east")
	if err != nil || len(list) != 2 {
		t.Fatalf("List: %d, %v", len(list), err)
	}
	got, err := s.Redeem(ctx, "east", tok, t0)
	if err != nil || got.AgentID != "node-1" || got.Labels["rack"] != "7" || !got.UsedAt.Equal(t0) {
		t.Fatalf("Redeem: %+v, %v", got, err)
	}
	if g, err := s.Get(ctx, "east", info.ID); err != nil || !g.Used() {
		t.Fatalf("Get after redeem: %+v, %v", g, err)
	}
}

func TestRedeemErrors(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	mk := func(z string, at time.Time) string {
		tok, _, err := s.Create(ctx, z, jointoken.Options{}, at)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	used := mk("east", t0)
	if _, err := s.Redeem(ctx, "east", used, t0); err != nil {
		t.Fatal(err)
	}
	deleted := mk("east", t0)
	if err := s.Delete(ctx, "east", jointoken.ID(deleted)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, zone, token string
		now               time.Time
		want              error
	}{
		{"replay", "east", used, t0, jointoken.ErrTokenUsed},
		{"expired", "east", mk("east", t0), t0.Add(jointoken.DefaultTTL), jointoken.ErrTokenExpired},
		{"other zone", "west", mk("east", t0), t0, jointoken.ErrTokenZone},
		{"root token in east", "east", mk("", t0), t0, jointoken.ErrTokenZone},
		{"deleted", "east", deleted, t0, jointoken.ErrTokenUnknown},
		{"never made", "east", "evjt.east." + strings.Repeat("A", 43), t0, jointoken.ErrTokenUnknown},
		{"future", "east", mk("east", t0.Add(time.Hour)), t0, jointoken.ErrTokenNotYetValid},
		{"garbage", "east", "evjt.east.!!", t0, jointoken.ErrTokenUnknown},
	}
	for _, c := range cases {
		if _, err := s.Redeem(ctx, c.zone, c.token, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestCreateOptions(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	for name, c := range map[string]struct {
		zone string
		opts jointoken.Options
	}{
		"negative TTL":  {"east", jointoken.Options{TTL: -time.Second}},
		"TTL too long":  {"east", jointoken.Options{TTL: 25 * time.Hour}},
		"bad zone":      {"East!", jointoken.Options{}},
		"long agent ID": {"east", jointoken.Options{AgentID: strings.Repeat("a", 200)}},
		"label control": {"east", jointoken.Options{Labels: map[string]string{"k": "v\n"}}},
	} {
		if _, _, err := s.Create(ctx, c.zone, c.opts, t0); !errors.Is(err, jointoken.ErrInvalidOptions) {
			t.Errorf("%s: %v, want ErrInvalidOptions", name, err)
		}
	}
	if _, _, err := s.Create(ctx, "north", jointoken.Options{}, t0); err == nil {
		t.Error("Create in a zone without a store succeeded")
	}
}

func TestConcurrentRedeem(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	for range 20 {
		tok, _, err := s.Create(ctx, "east", jointoken.Options{}, t0)
		if err != nil {
			t.Fatal(err)
		}
		var wins, used atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				_, err := s.Redeem(ctx, "east", tok, t0)
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, jointoken.ErrTokenUsed):
					used.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || used.Load() != 7 {
			t.Fatalf("%d wins, %d ErrTokenUsed; want 1 and 7", wins.Load(), used.Load())
		}
	}
}

func TestTidy(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	old, _, _ := s.Create(ctx, "east", jointoken.Options{}, t0)
	fresh, _, _ := s.Create(ctx, "east", jointoken.Options{}, t0.Add(time.Hour))
	n, err := s.Tidy(ctx, "east", t0.Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("Tidy removed %d, %v; want 1", n, err)
	}
	if _, err := s.Redeem(ctx, "east", old, t0.Add(time.Hour)); !errors.Is(err, jointoken.ErrTokenUnknown) {
		t.Fatalf("tidied token: %v", err)
	}
	if _, err := s.Redeem(ctx, "east", fresh, t0.Add(time.Hour)); err != nil {
		t.Fatalf("fresh token after tidy: %v", err)
	}
}

func TestCorruptRecord(t *testing.T) {
	s, zones := newStore(t)
	ctx := t.Context()
	tok, info, _ := s.Create(ctx, "east", jointoken.Options{}, t0)
	if err := zones["east"].Put(context.Background(), "attest/tokens/"+info.ID, []byte(`{"id":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Redeem(ctx, "east", tok, t0); !errors.Is(err, jointoken.ErrCorrupt) {
		t.Fatalf("corrupt record: %v", err)
	}
}

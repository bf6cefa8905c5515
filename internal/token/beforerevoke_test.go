package token

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/clocktest"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// TestBeforeRevoke checks that the hook sees the accessor of every token a
// revocation deletes (a subtree, an orphan revocation, an expired token
// tidied) and that a failing hook keeps the tokens.
func TestBeforeRevoke(t *testing.T) {
	ctx := context.Background()
	clock := clocktest.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	var seen []string
	var fail error
	s := NewStore(inmem.New(), Options{Clock: clock.Now, BeforeRevoke: func(_ context.Context, acc []string) error {
		if fail != nil {
			return fail
		}
		seen = append(seen, acc...)
		return nil
	}})
	parent, err := s.Create(ctx, CreateOptions{Policies: []string{"p"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	child, err := s.Create(ctx, CreateOptions{Parent: parent.Entry, Policies: []string{"p"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	fail = errors.New("lease storage down")
	if err := s.Revoke(ctx, parent.ID); !errors.Is(err, fail) {
		t.Fatalf("Revoke with a failing hook = %v, want the hook's error", err)
	}
	if _, err := s.Lookup(ctx, child.ID); err != nil {
		t.Fatalf("the child must survive a failed revocation: %v", err)
	}
	if _, err := s.Lookup(ctx, parent.ID); err != nil {
		t.Fatalf("the parent must survive a failed revocation: %v", err)
	}

	fail = nil
	if err := s.Revoke(ctx, parent.ID); err != nil {
		t.Fatal(err)
	}
	want := []string{child.Entry.Accessor(), parent.Entry.Accessor()}
	slices.Sort(want)
	slices.Sort(seen)
	if !slices.Equal(seen, want) {
		t.Fatalf("hook saw %v, want %v", seen, want)
	}

	seen = nil
	orphan, err := s.Create(ctx, CreateOptions{Policies: []string{"p"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeOrphan(ctx, orphan.ID); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []string{orphan.Entry.Accessor()}) {
		t.Fatalf("orphan revocation: hook saw %v", seen)
	}

	seen = nil
	expiring, err := s.Create(ctx, CreateOptions{Policies: []string{"p"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	if _, err := s.Tidy(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(seen, expiring.Entry.Accessor()) {
		t.Fatalf("tidy of an expired token: hook saw %v", seen)
	}
}

package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

func newTestStore(t *testing.T) (*Store, storage.Backend) {
	t.Helper()
	b := inmem.New()
	s := NewStore(storage.NewView(b, "sys/policy/"))
	if err := s.EnsureDefault(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, b
}

func TestStoreCRUD(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	text := `path "secret/*" { capabilities = ["read"] }`
	if err := s.Put(ctx, "Team-A", text); err != nil {
		t.Fatal(err)
	}
	p, err := s.Get(ctx, "team-a")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "team-a" || p.Raw != text || len(p.Paths) != 1 {
		t.Fatalf("Get = %+v", p)
	}
	names, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"default", "team-a", "root"}; !slices.Equal(names, want) {
		t.Fatalf("List = %q, want %q", names, want)
	}
	if err := s.Delete(ctx, "TEAM-A"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "team-a"); !errors.Is(err, logical.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := s.Delete(ctx, "team-a"); err != nil {
		t.Fatalf("deleting a missing policy: %v", err)
	}
}

func TestStoreBadInputStoresNothing(t *testing.T) {
	ctx := context.Background()
	s, b := newTestStore(t)
	good := `path "a" { capabilities = ["read"] }`
	if err := s.Put(ctx, "p", good); err != nil {
		t.Fatal(err)
	}
	before := dump(t, b)
	tests := []struct{ name, text, want string }{
		{"p", `path "a" { capabilities = ["reed"] }`, `invalid capability "reed"`},
		{"p", `path "a" {`, "failed to parse policy"},
		{"p", `path "a/*/b" { capabilities = ["read"] }`, `"*"`},
		{"a/b", good, `"/"`},
		{"", good, "empty"},
		{"x..y", good, `".."`},
	}
	for _, tt := range tests {
		err := s.Put(ctx, tt.name, tt.text)
		if !errors.Is(err, logical.ErrInvalidRequest) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Put(%q, %q) = %v, want an invalid request mentioning %q", tt.name, tt.text, err, tt.want)
		}
	}
	if after := dump(t, b); !slices.Equal(before, after) {
		t.Fatalf("storage changed by failed puts:\n%q\n%q", before, after)
	}
}

func TestStoreProtectsBuiltins(t *testing.T) {
	ctx := context.Background()
	s, b := newTestStore(t)
	before := dump(t, b)
	checks := []struct {
		err  error
		want string
	}{
		{s.Put(ctx, "root", `path "*" { capabilities = ["read"] }`), `cannot update "root" policy`},
		{s.Put(ctx, "ROOT", `path "*" { capabilities = ["read"] }`), `cannot update "root" policy`},
		{s.Delete(ctx, "root"), `cannot delete "root" policy`},
		{s.Delete(ctx, "default"), `cannot delete "default" policy`},
		{s.Delete(ctx, "Default"), `cannot delete "default" policy`},
	}
	for _, c := range checks {
		if !errors.Is(c.err, ErrProtected) || !errors.Is(c.err, logical.ErrInvalidRequest) || c.err.Error() != c.want {
			t.Errorf("got %v, want %q matching ErrProtected and ErrInvalidRequest", c.err, c.want)
		}
	}
	if after := dump(t, b); !slices.Equal(before, after) {
		t.Fatal("storage changed")
	}
	root, err := s.Get(ctx, "root")
	if err != nil || !root.Root() || root.Raw != "" {
		t.Fatalf("Get(root) = %+v, %v", root, err)
	}
	// default may be edited, and EnsureDefault then leaves it alone.
	edited := `path "auth/token/lookup-self" { capabilities = ["read"] }`
	if err := s.Put(ctx, "default", edited); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureDefault(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Get(ctx, "default"); err != nil || p.Raw != edited {
		t.Fatalf("default after EnsureDefault: %v %v", p, err)
	}
}

func TestDefaultPolicy(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	a, err := s.ACL(ctx, []string{"default"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		op    logical.Operation
		path  string
		allow bool
	}{
		{logical.ReadOperation, "auth/token/lookup-self", true},
		{logical.UpdateOperation, "auth/token/renew-self", true},
		{logical.UpdateOperation, "auth/token/revoke-self", true},
		{logical.UpdateOperation, "sys/capabilities-self", true},
		{logical.CreateOperation, "cubbyhole/mine", true},
		{logical.UpdateOperation, "sys/wrapping/unwrap", true},
		{logical.ReadOperation, "secret/data/x", false},
		{logical.UpdateOperation, "auth/token/create", false},
		{logical.ReadOperation, "sys/policies/acl/default", false},
	}
	for _, tt := range tests {
		if got, _ := a.Allowed(tt.op, tt.path); got != tt.allow {
			t.Errorf("default: Allowed(%s, %q) = %v", tt.op, tt.path, got)
		}
	}
}

func TestStoreACLCache(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	if err := s.Put(ctx, "a", `path "secret/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	a1, err := s.ACL(ctx, []string{"a", "default", "missing", "bad/name"})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := a1.Allowed(logical.ReadOperation, "secret/x"); !ok {
		t.Fatal("read not allowed")
	}
	a2, _ := s.ACL(ctx, []string{"MISSING", "bad/name", "DEFAULT", "a", "a"})
	if a1 != a2 {
		t.Fatal("same policy set was not served from the cache")
	}
	if err := s.Put(ctx, "a", `path "secret/*" { capabilities = ["deny"] }`); err != nil {
		t.Fatal(err)
	}
	a3, _ := s.ACL(ctx, []string{"a"})
	if ok, _ := a3.Allowed(logical.ReadOperation, "secret/x"); ok {
		t.Fatal("cache not invalidated by Put")
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	a4, _ := s.ACL(ctx, []string{"a"})
	if got := a4.Capabilities("secret/x"); !slices.Equal(got, []string{"deny"}) {
		t.Fatalf("after Delete: %q", got)
	}
	if root, _ := s.ACL(ctx, []string{"a", "Root"}); !root.IsRoot() {
		t.Fatal("root in the set did not give the root ACL")
	}
	empty, err := s.ACL(ctx, nil)
	if err != nil || empty.IsRoot() || empty.Capabilities("x")[0] != "deny" {
		t.Fatalf("empty set: %v %v", empty, err)
	}
}

// TestStoreConcurrent races ACL lookups against Puts; once the writers are
// done, the cache must serve the last policy written, never a stale one.
func TestStoreConcurrent(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.ACL(ctx, []string{"p", "default"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 200 {
		if err := s.Put(ctx, "p", fmt.Sprintf(`path "secret/%d" { capabilities = ["read"] }`, i)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	a, _ := s.ACL(ctx, []string{"p", "default"})
	if ok, _ := a.Allowed(logical.ReadOperation, "secret/199"); !ok {
		t.Fatal("stale ACL served after the last Put")
	}
	if ok, _ := a.Allowed(logical.ReadOperation, "secret/198"); ok {
		t.Fatal("stale ACL served after the last Put")
	}
}

// failingBackend fails writes, to check a failed Put changes nothing.
type failingBackend struct{ storage.Backend }

var _ storage.Backend = failingBackend{}

func (failingBackend) Put(context.Context, string, []byte) error { return errors.New("disk full") }

func TestStoreBackendFailure(t *testing.T) {
	ctx := context.Background()
	b := inmem.New()
	good := NewStore(b)
	if err := good.Put(ctx, "p", `path "a" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	s := NewStore(failingBackend{b})
	if err := s.Put(ctx, "p", `path "a" { capabilities = ["deny"] }`); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Put on a failing backend: %v", err)
	}
	a, err := s.ACL(ctx, []string{"p"})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := a.Allowed(logical.ReadOperation, "a"); !ok {
		t.Fatal("failed Put changed the policy")
	}
}

func dump(t *testing.T, b storage.Backend) []string {
	t.Helper()
	var out []string
	var walk func(prefix string)
	walk = func(prefix string) {
		keys, err := b.List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if strings.HasSuffix(k, "/") {
				walk(prefix + k)
				continue
			}
			v, err := b.Get(context.Background(), prefix+k)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, prefix+k+"="+string(v))
		}
	}
	walk("")
	return out
}

// OnChange hears of every committed change, and of nothing refused.
func TestStoreOnChange(t *testing.T) {
	s := NewStore(inmem.New())
	n := 0
	s.OnChange(func() { n++ })
	ctx := t.Context()
	if err := s.Put(ctx, "p", `path "a" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "bad", `path "a" { capabilities = ["fly"] }`); err == nil {
		t.Fatal("bad policy stored")
	}
	if err := s.Delete(ctx, "root"); err == nil {
		t.Fatal("root deleted")
	}
	if err := s.Delete(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("OnChange called %d times, want 2", n)
	}
}

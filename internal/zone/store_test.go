package zone

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/storagetest"
)

func TestCreateGetList(t *testing.T) {
	s, st, root := newStore(t)
	ctx := context.Background()
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.now = func() time.Time { return fixed }

	labels := map[string]string{"region": "eu-west", "site": "paris"}
	z, err := s.Create(ctx, Zone{Name: "eu", Description: "Europe", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	labels["region"] = "changed" // the store must have copied the map
	if _, err := s.Create(ctx, Zone{Name: "paris", Parent: "eu"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "eu")
	if err != nil {
		t.Fatal(err)
	}
	if got.Description != "Europe" || got.Labels["region"] != "eu-west" || !got.Created.Equal(fixed) || !z.Created.Equal(fixed) {
		t.Errorf("Get(eu) = %+v", got)
	}
	names, err := s.List(ctx)
	if err != nil || strings.Join(names, ",") != "eu,paris" {
		t.Errorf("List = %v, %v; want eu,paris", names, err)
	}
	if r, err := s.Get(ctx, ""); err != nil || r.Name != "" {
		t.Errorf("Get(root) = %+v, %v", r, err)
	}

	// A new Store over the same storage sees the same zones and keys.
	b := mustBackend(t, s, "paris")
	if err := b.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, st, root)
	if got, err := s2.Get(ctx, "paris"); err != nil || got.Parent != "eu" {
		t.Fatalf("reopened Get(paris) = %+v, %v", got, err)
	}
	if v, err := mustBackend(t, s2, "paris").Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("reopened Get(k) = %q, %v", v, err)
	}
	// The wrong root key cannot open the store.
	if _, err := Open(ctx, Config{Storage: st, Root: newRoot(t)}); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Open with wrong root = %v, want ErrDecrypt", err)
	}
}

func TestCreateErrorsChangeNothing(t *testing.T) {
	s, st, _ := newStore(t)
	ctx := context.Background()
	mustCreate(t, s, "a", "")
	tests := []struct {
		desc string
		z    Zone
		want error
		msg  string
	}{
		{"bad name", Zone{Name: "A"}, ErrInvalidName, `character 1 is 'A'`},
		{"root", Zone{Name: ""}, ErrInvalidName, "must not be empty"},
		{"missing parent", Zone{Name: "b", Parent: "nope"}, ErrNotFound, `"nope"`},
		{"self parent", Zone{Name: "b", Parent: "b"}, ErrInvalidZone, "parent must not be the zone itself"},
		{"duplicate", Zone{Name: "a"}, ErrExists, `zone "a"`},
		{"bad label", Zone{Name: "b", Labels: map[string]string{"": "x"}}, ErrInvalidZone, "labels"},
		{"bad description", Zone{Name: "b", Description: "a\x00b"}, ErrInvalidZone, "description"},
	}
	for _, tt := range tests {
		before := dump(t, st, "")
		_, err := s.Create(ctx, tt.z)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: Create = %v, want %v containing %q", tt.desc, err, tt.want, tt.msg)
		}
		wantSame(t, before, dump(t, st, ""), tt.desc)
	}
	if _, err := s.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("Get(missing) = %v, want ErrNotFound naming it", err)
	}
	if _, err := s.Backend("missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Backend(missing) = %v, want ErrNotFound", err)
	}
}

func TestDelete(t *testing.T) {
	s, st, _ := newStore(t)
	ctx := context.Background()
	mustCreate(t, s, "parent", "")
	mustCreate(t, s, "child", "parent")
	always := func(context.Context, string) (bool, error) { return true, nil }
	never := func(context.Context, string) (bool, error) { return false, nil }
	broken := func(context.Context, string) (bool, error) { return false, errors.New("mount table unreadable") }

	check := func(desc, name string, empty EmptyFunc, want error) {
		t.Helper()
		before := dump(t, st, "")
		err := s.Delete(ctx, name, empty)
		if !errors.Is(err, want) {
			t.Fatalf("%s: Delete(%q) = %v, want %v", desc, name, err, want)
		}
		wantSame(t, before, dump(t, st, ""), desc)
	}
	check("root", "", always, ErrRootZone)
	check("missing", "nope", always, ErrNotFound)
	check("has child", "parent", always, ErrNotEmpty)
	check("caller says not empty", "child", never, ErrNotEmpty)
	if err := s.Delete(ctx, "child", broken); err == nil || !strings.Contains(err.Error(), "mount table unreadable") {
		t.Fatalf("Delete with failing check = %v", err)
	}
	b := mustBackend(t, s, "child")
	if err := b.Put(ctx, "x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	check("has records", "child", always, ErrNotEmpty)
	if err := b.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}

	if err := s.Delete(ctx, "child", always); err != nil {
		t.Fatalf("Delete(child): %v", err)
	}
	if err := s.Delete(ctx, "parent", nil); err != nil {
		t.Fatalf("Delete(parent): %v", err)
	}
	if _, err := b.Get(ctx, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("view of deleted zone: Get = %v, want ErrNotFound", err)
	}
	// Only the root zone's keys remain.
	left := dump(t, st, "")
	if len(left) != 1 || left[keysPrefix+rootID] == "" {
		t.Errorf("after deletes, storage holds %v", keys(left))
	}
	// The name can be reused, with new keys.
	mustCreate(t, s, "child", "")
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestIsolation copies ciphertexts around in raw storage and checks that
// none decrypts anywhere but where it was written.
func TestIsolation(t *testing.T) {
	s, st, _ := newStore(t)
	ctx := context.Background()
	mustCreate(t, s, "a", "")
	mustCreate(t, s, "b", "")
	a, b, root := mustBackend(t, s, "a"), mustBackend(t, s, "b"), mustBackend(t, s, "")
	for _, v := range []*Backend{a, b, root} {
		if err := v.Put(ctx, "kv/data/db", []byte("secret of "+v.zs.name)); err != nil {
			t.Fatal(err)
		}
	}
	rawA := dataPrefix + "a/kv/data/db"
	ctA, err := st.Get(ctx, rawA)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ctA), "secret") {
		t.Fatal("plaintext visible in raw storage")
	}

	tests := []struct {
		desc   string
		rawKey string
		view   *Backend
		key    string
	}{
		{"zone A ciphertext on zone B, same path", dataPrefix + "b/kv/data/db", b, "kv/data/db"},
		{"zone A ciphertext on root zone, same path", dataPrefix + rootID + "/kv/data/db", root, "kv/data/db"},
		{"zone A ciphertext on another path in A", dataPrefix + "a/kv/data/other", a, "kv/data/other"},
		{"zone A ciphertext on a new path in B", dataPrefix + "b/x", b, "x"},
	}
	for _, tt := range tests {
		if err := st.Put(ctx, tt.rawKey, ctA); err != nil {
			t.Fatal(err)
		}
		if v, err := tt.view.Get(ctx, tt.key); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: Get = %q, %v; want ErrDecrypt", tt.desc, v, err)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error leaks plaintext: %v", tt.desc, err)
		}
	}
	// Same key version numbers, different keys: zone B's version 1 cannot
	// open zone A's version-1 record even if the AAD matched, which the
	// copy above already showed; the original still reads fine.
	if v, err := a.Get(ctx, "kv/data/db"); err != nil || string(v) != "secret of a" {
		t.Fatalf("original record: %q, %v", v, err)
	}
	// Tampering with one byte of the ciphertext is detected.
	bad := append([]byte(nil), ctA...)
	bad[len(bad)-1] ^= 1
	if err := st.Put(ctx, rawA, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(ctx, "kv/data/db"); !errors.Is(err, ErrDecrypt) {
		t.Errorf("tampered record: %v, want ErrDecrypt", err)
	}
	// A zone's view cannot name keys of another zone.
	names, err := a.List(ctx, "")
	if err != nil || strings.Join(names, ",") != "kv/" {
		t.Errorf("List in A = %v, %v", names, err)
	}
}

func TestTxnThroughView(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	b := mustBackend(t, s, "")
	if err := b.Put(ctx, "gone", []byte("x")); err != nil {
		t.Fatal(err)
	}
	err := b.Txn(ctx, []storageOp{
		{Kind: opPut, Key: "a", Value: []byte("1")},
		{Kind: opPut, Key: "b/c", Value: []byte("2")},
		{Kind: opDelete, Key: "gone"},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkAll(t, b, map[string]string{"a": "1", "b/c": "2"})
	if err := b.Txn(ctx, []storageOp{{Kind: opPut, Key: "", Value: nil}}); err == nil {
		t.Error("Txn with empty key succeeded")
	}
}

// TestDeleteRacesWriter deletes a zone while a writer keeps putting and
// deleting a record: once Delete succeeds, no record may be left behind.
func TestDeleteRacesWriter(t *testing.T) {
	s, st, _ := newStore(t)
	ctx := context.Background()
	mustCreate(t, s, "z", "")
	b := mustBackend(t, s, "z")
	done := make(chan error, 1)
	go func() {
		for {
			if err := b.Put(ctx, "k", []byte("v")); err != nil {
				done <- err
				return
			}
			if err := b.Delete(ctx, "k"); err != nil {
				done <- err
				return
			}
		}
	}()
	var err error
	for range 100000 {
		if err = s.Delete(ctx, "z", nil); !errors.Is(err, ErrNotEmpty) {
			break
		}
	}
	if err != nil {
		t.Fatalf("Delete never succeeded: %v", err)
	}
	if werr := <-done; !errors.Is(werr, ErrNotFound) {
		t.Fatalf("writer after delete: %v, want ErrNotFound", werr)
	}
	if left := dump(t, st, dataPrefix); len(left) != 0 {
		t.Fatalf("records left after delete: %v", keys(left))
	}
}

func TestRewrapEmptyZone(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	mustCreate(t, s, "z", "")
	for range 3 {
		if _, err := s.Rotate(ctx, "z"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Rewrap(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	st, err := s.KeyStatus(ctx, "z")
	if err != nil || st.ActiveVersion != 4 || len(st.Versions) != 1 || st.Records != 0 {
		t.Fatalf("KeyStatus = %+v, %v", st, err)
	}
}

// TestConformance runs the storage conformance suite against a zone view.
// The view's keys sit under "zones/data/<zone>/" in storage, so the
// physical backend is wrapped to store them unprefixed: the suite's
// longest-key check then tests the view, not the prefix.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		s := openStore(t, &unprefixed{Backend: newMem(), data: dataPrefix + "conformance/"}, newRoot(t))
		mustCreate(t, s, "conformance", "")
		return mustBackend(t, s, "conformance")
	})
}

// unprefixed stores keys under data without that prefix, and every other
// key behind a 0x01 byte, so the two never meet.
type unprefixed struct {
	storage.Backend
	data string
}

var _ storage.Backend = (*unprefixed)(nil)

func (u *unprefixed) key(k string) string {
	if rest, ok := strings.CutPrefix(k, u.data); ok {
		return rest
	}
	return "\x01" + k
}

func (u *unprefixed) Get(ctx context.Context, k string) ([]byte, error) {
	return u.Backend.Get(ctx, u.key(k))
}

func (u *unprefixed) Put(ctx context.Context, k string, v []byte) error {
	return u.Backend.Put(ctx, u.key(k), v)
}

func (u *unprefixed) Delete(ctx context.Context, k string) error {
	return u.Backend.Delete(ctx, u.key(k))
}

func (u *unprefixed) List(ctx context.Context, p string) ([]string, error) {
	names, err := u.Backend.List(ctx, u.key(p))
	if strings.HasPrefix(p, u.data) {
		names = slices.DeleteFunc(names, func(n string) bool { return strings.HasPrefix(n, "\x01") })
	}
	return names, err
}

func (u *unprefixed) Txn(ctx context.Context, ops []storage.Op) error {
	out := make([]storage.Op, len(ops))
	for i, op := range ops {
		out[i] = op
		out[i].Key = u.key(op.Key)
	}
	return u.Backend.Txn(ctx, out)
}

package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

const (
	opRead   = logical.ReadOperation
	opCreate = logical.CreateOperation
	opUpdate = logical.UpdateOperation
	opPatch  = logical.PatchOperation
	opDelete = logical.DeleteOperation
	opList   = logical.ListOperation
)

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func dataOf(t *testing.T, resp *logical.Response) map[string]any {
	t.Helper()
	if resp == nil {
		t.Fatal("nil response")
	}
	switch d := resp.Data["data"].(type) {
	case map[string]any:
		return d
	case json.RawMessage:
		// Reads serve the stored JSON as it is; decode it as a client would.
		m, err := decodeData(d)
		if err != nil {
			t.Fatalf("stored data is not a JSON object: %v", err)
		}
		return m
	}
	return nil
}

func metaOf(t *testing.T, resp *logical.Response) map[string]any {
	t.Helper()
	m, ok := resp.Data["metadata"].(map[string]any)
	if !ok {
		t.Fatalf("no metadata in %v", resp.Data)
	}
	return m
}

func TestResponseShapesMatchVault(t *testing.T) {
	h := newHarness(t)
	created := ts(start)

	w := h.must(opCreate, "data/my-secret", `{"options":{"cas":0},"data":{"foo":"bar","zip":"zap"}}`)
	want := `{"created_time":"` + created + `","custom_metadata":null,"deletion_time":"","destroyed":false,"version":1}`
	if got := toJSON(t, w.Data); got != want {
		t.Errorf("write response\n got %s\nwant %s", got, want)
	}

	r, err := h.read("my-secret", 0)
	if err != nil {
		t.Fatal(err)
	}
	want = `{"data":{"foo":"bar","zip":"zap"},"metadata":{"created_time":"` + created + `","custom_metadata":null,"deletion_time":"","destroyed":false,"version":1}}`
	if got := toJSON(t, r.Data); got != want || r.StatusCode != 0 {
		t.Errorf("read response (status %d)\n got %s\nwant %s", r.StatusCode, got, want)
	}

	h.must(opUpdate, "metadata/my-secret", `{"max_versions":5,"cas_required":false,"delete_version_after":"3h25m19s","custom_metadata":{"owner":"jdoe","mission_critical":"false"}}`)
	md := h.must(opRead, "metadata/my-secret", "")
	want = `{"cas_required":false,"created_time":"` + created + `","current_version":1,` +
		`"custom_metadata":{"mission_critical":"false","owner":"jdoe"},"delete_version_after":"3h25m19s",` +
		`"max_versions":5,"oldest_version":0,"updated_time":"` + created + `",` +
		`"versions":{"1":{"created_time":"` + created + `","deletion_time":"","destroyed":false}}}`
	if got := toJSON(t, md.Data); got != want {
		t.Errorf("metadata response\n got %s\nwant %s", got, want)
	}

	cfg := h.must(opRead, "config", "")
	if got, want := toJSON(t, cfg.Data), `{"cas_required":false,"delete_version_after":"0s","max_versions":0}`; got != want {
		t.Errorf("config: got %s want %s", got, want)
	}

	// The data response carries the key's custom metadata too.
	r, _ = h.read("my-secret", 0)
	if got := toJSON(t, metaOf(t, r)["custom_metadata"]); got != `{"mission_critical":"false","owner":"jdoe"}` {
		t.Errorf("custom_metadata in read: %s", got)
	}
}

func TestLifecycleMaxVersionsPruning(t *testing.T) {
	h := newHarness(t)
	for i := 1; i <= 12; i++ {
		resp := h.must(opUpdate, "data/app/db", fmt.Sprintf(`{"data":{"password":"p%d","n":%d.50}}`, i, i))
		if got := resp.Data["version"]; got != int64(i) {
			t.Fatalf("write %d: version %v", i, got)
		}
		h.clock.Advance(time.Second)
	}
	md := h.must(opRead, "metadata/app/db", "").Data
	if md["current_version"] != int64(12) || md["oldest_version"] != int64(3) {
		t.Errorf("current %v oldest %v, want 12 and 3", md["current_version"], md["oldest_version"])
	}
	versions := md["versions"].(map[string]any)
	var got []string
	for k := range versions {
		got = append(got, k)
	}
	sort.Strings(got)
	if want := []string{"10", "11", "12", "3", "4", "5", "6", "7", "8", "9"}; !reflect.DeepEqual(got, want) {
		t.Errorf("versions %v, want %v", got, want)
	}
	if ct := versions["3"].(map[string]any)["created_time"]; ct != ts(start.Add(2*time.Second)) {
		t.Errorf("v3 created_time %v", ct)
	}
	for _, v := range []int{1, 2, 13} {
		if _, err := h.read("app/db", v); !errors.Is(err, logical.ErrNotFound) {
			t.Errorf("read v%d: err %v, want not found", v, err)
		}
	}
	for v := 3; v <= 12; v++ {
		r, err := h.read("app/db", v)
		if err != nil {
			t.Fatalf("read v%d: %v", v, err)
		}
		d := dataOf(t, r)
		if d["password"] != fmt.Sprintf("p%d", v) || d["n"] != json.Number(fmt.Sprintf("%d.50", v)) {
			t.Errorf("v%d data %v", v, d)
		}
	}
	r, _ := h.read("app/db", 0)
	if dataOf(t, r)["password"] != "p12" {
		t.Errorf("latest: %v", r.Data)
	}
	// Storage: one metadata record and a record for each of v3..v11 (v12
	// lives inline in the metadata); nothing left of v1 and v2.
	snap := h.snapshot()
	var vkeys []string
	for k := range snap {
		if strings.HasPrefix(k, "logical/kv-test/v/") {
			vkeys = append(vkeys, strings.TrimPrefix(k, "logical/kv-test/v/"))
		}
	}
	sort.Strings(vkeys)
	if want := []string{"app/db/10", "app/db/11", "app/db/3", "app/db/4", "app/db/5", "app/db/6", "app/db/7", "app/db/8", "app/db/9"}; !reflect.DeepEqual(vkeys, want) {
		t.Errorf("version records %v, want %v", vkeys, want)
	}
	if len(snap) != len(vkeys)+1 {
		t.Errorf("storage has %d records, want %d", len(snap), len(vkeys)+1)
	}
}

func TestMaxVersionsSettings(t *testing.T) {
	h := newHarness(t)
	h.must(opUpdate, "config", `{"max_versions":3}`)
	for i := 1; i <= 5; i++ {
		h.must(opUpdate, "data/a", `{"data":{"i":"x"}}`)
	}
	md := h.must(opRead, "metadata/a", "").Data
	if md["oldest_version"] != int64(3) || len(md["versions"].(map[string]any)) != 3 {
		t.Errorf("mount max 3: %v", md)
	}
	// The key's own setting wins over the mount's.
	h.must(opUpdate, "metadata/b", `{"max_versions":5}`)
	for i := 1; i <= 7; i++ {
		h.must(opUpdate, "data/b", `{"data":{"i":"x"}}`)
	}
	md = h.must(opRead, "metadata/b", "").Data
	if md["oldest_version"] != int64(3) || len(md["versions"].(map[string]any)) != 5 {
		t.Errorf("key max 5: %v", md)
	}
	// Lowering max_versions prunes several at the next write.
	h.must(opPatch, "metadata/b", `{"max_versions":2}`)
	h.must(opUpdate, "data/b", `{"data":{"i":"y"}}`)
	md = h.must(opRead, "metadata/b", "").Data
	if md["oldest_version"] != int64(7) || len(md["versions"].(map[string]any)) != 2 {
		t.Errorf("after lowering: %v", md)
	}
	for k := range h.snapshot() {
		if strings.HasPrefix(k, "logical/kv-test/v/b/") && k != "logical/kv-test/v/b/7" {
			t.Errorf("stale record %s", k)
		}
	}
	// max_versions 1: the previous version is pruned, never moved.
	h.must(opUpdate, "metadata/c", `{"max_versions":1}`)
	h.must(opUpdate, "data/c", `{"data":{"i":"1"}}`)
	h.must(opUpdate, "data/c", `{"data":{"i":"2"}}`)
	for k := range h.snapshot() {
		if strings.HasPrefix(k, "logical/kv-test/v/c/") {
			t.Errorf("max_versions 1 left record %s", k)
		}
	}
	r, _ := h.read("c", 0)
	if dataOf(t, r)["i"] != "2" {
		t.Errorf("c latest %v", r.Data)
	}
}

func TestCheckAndSet(t *testing.T) {
	h := newHarness(t)
	steps := []struct {
		name    string
		path    string
		body    string
		wantErr error
		wantVer int64
	}{
		{"cas 0 on a new key", "data/k", `{"data":{"v":"1"},"options":{"cas":0}}`, nil, 1},
		{"cas 0 on an existing key", "data/k", `{"data":{"v":"x"},"options":{"cas":0}}`, logical.ErrCASMismatch, 0},
		{"wrong cas", "data/k", `{"data":{"v":"x"},"options":{"cas":5}}`, logical.ErrCASMismatch, 0},
		{"right cas", "data/k", `{"data":{"v":"2"},"options":{"cas":1}}`, nil, 2},
		{"stale cas", "data/k", `{"data":{"v":"x"},"options":{"cas":1}}`, logical.ErrCASMismatch, 0},
		{"cas as a string", "data/k", `{"data":{"v":"3"},"options":{"cas":"2"}}`, nil, 3},
		{"no cas", "data/k", `{"data":{"v":"4"}}`, nil, 4},
		{"api client method option", "data/k", `{"data":{"v":"5"},"options":{"cas":4,"method":"patch"}}`, nil, 5},
		{"empty options", "data/k", `{"data":{"v":"6"},"options":{}}`, nil, 6},
	}
	for _, s := range steps {
		before := h.snapshot()
		resp, err := h.do(opUpdate, s.path, s.body)
		if s.wantErr != nil {
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("%s: err %v, want %v", s.name, err, s.wantErr)
			}
			if err.Error() != "check-and-set parameter did not match the current version" {
				t.Errorf("%s: message %q", s.name, err)
			}
			if !sameSnapshot(before, h.snapshot()) {
				t.Errorf("%s: storage changed", s.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if resp.Data["version"] != s.wantVer {
			t.Errorf("%s: version %v want %d", s.name, resp.Data["version"], s.wantVer)
		}
	}
	r, _ := h.read("k", 0)
	if dataOf(t, r)["v"] != "6" {
		t.Errorf("final data %v", r.Data)
	}
}

func TestCASRequired(t *testing.T) {
	h := newHarness(t)
	h.must(opUpdate, "data/a", `{"data":{"x":"1"}}`)

	// Required by the key's metadata.
	h.must(opUpdate, "metadata/a", `{"cas_required":true}`)
	_, err := h.do(opUpdate, "data/a", `{"data":{"x":"2"}}`)
	if !errors.Is(err, logical.ErrInvalidRequest) || err.Error() != "check-and-set parameter required for this call" {
		t.Fatalf("metadata cas_required: %v", err)
	}
	if _, err := h.do(opPatch, "data/a", `{"data":{"x":"2"}}`); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Fatalf("patch without cas: %v", err)
	}
	h.must(opUpdate, "data/a", `{"data":{"x":"2"},"options":{"cas":1}}`)
	h.must(opUpdate, "data/b", `{"data":{"x":"1"}}`) // other keys are free

	// Required by the mount config.
	h.must(opUpdate, "config", `{"cas_required":true}`)
	if _, err := h.do(opUpdate, "data/b", `{"data":{"x":"2"}}`); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Fatalf("config cas_required: %v", err)
	}
	if _, err := h.do(opUpdate, "data/new", `{"data":{"x":"1"}}`); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Fatalf("config cas_required on a new key: %v", err)
	}
	h.must(opUpdate, "data/new", `{"data":{"x":"1"},"options":{"cas":0}}`)

	// Turning it off on a key while the mount requires it warns.
	resp := h.must(opUpdate, "metadata/b", `{"cas_required":false}`)
	if resp == nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "mandated by backend config") {
		t.Errorf("want a warning, got %+v", resp)
	}
}

func TestPatch(t *testing.T) {
	h := newHarness(t)
	if _, err := h.do(opPatch, "data/p", `{"data":{"a":"1"}}`); !errors.Is(err, logical.ErrNotFound) {
		t.Fatalf("patch of a missing key: %v", err)
	}
	h.must(opUpdate, "data/p", `{"data":{"a":"1","n":10,"big":12345678901234567890,"nested":{"x":"1","y":"2"},"list":[1,2]}}`)
	resp := h.must(opPatch, "data/p", `{"data":{"a":null,"b":"2","nested":{"y":null,"z":{"deep":null,"k":"v"}},"list":[3]},"options":{"cas":1}}`)
	if resp.Data["version"] != int64(2) {
		t.Fatalf("patch version %v", resp.Data["version"])
	}
	r, _ := h.read("p", 0)
	if got, want := toJSON(t, dataOf(t, r)), `{"b":"2","big":12345678901234567890,"list":[3],"n":10,"nested":{"x":"1","z":{"k":"v"}}}`; got != want {
		t.Errorf("patched\n got %s\nwant %s", got, want)
	}
	if _, ok := dataOf(t, r)["n"].(json.Number); !ok {
		t.Errorf("numbers must stay json.Number, got %T", dataOf(t, r)["n"])
	}
	if _, err := h.do(opPatch, "data/p", `{"data":{"a":"1"},"options":{"cas":1}}`); !errors.Is(err, logical.ErrCASMismatch) {
		t.Errorf("patch stale cas: %v", err)
	}
	if _, err := h.do(opPatch, "data/p", `{"data":"x"}`); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Errorf("patch non-object: %v", err)
	}
	if _, err := h.do(opPatch, "data/p", `{}`); !errors.Is(err, logical.ErrInvalidRequest) || err.Error() != "no data provided" {
		t.Errorf("patch without data: %v", err)
	}

	// A deleted current version cannot be patched: 404 with its metadata.
	h.must(opDelete, "data/p", "")
	before := h.snapshot()
	resp, err := h.do(opPatch, "data/p", `{"data":{"a":"1"}}`)
	if err != nil || resp == nil || resp.StatusCode != http.StatusNotFound || resp.Data["version"] != int64(2) {
		t.Fatalf("patch of deleted: %+v %v", resp, err)
	}
	if !sameSnapshot(before, h.snapshot()) {
		t.Error("failed patch changed storage")
	}
	h.must(opUpdate, "destroy/p", `{"versions":[2]}`)
	resp, _ = h.do(opPatch, "data/p", `{"data":{"a":"1"}}`)
	if resp == nil || resp.StatusCode != http.StatusNotFound || resp.Data["destroyed"] != true {
		t.Fatalf("patch of destroyed: %+v", resp)
	}
}

func TestSoftDeleteUndeleteDestroy(t *testing.T) {
	h := newHarness(t)
	for i := 1; i <= 3; i++ {
		h.must(opUpdate, "data/k", fmt.Sprintf(`{"data":{"v":"%d"}}`, i))
	}
	h.clock.Advance(time.Minute)
	deletedAt := ts(h.clock.Now())

	if resp := h.must(opDelete, "data/k", ""); resp != nil {
		t.Errorf("delete answered %+v", resp)
	}
	r, err := h.read("k", 0)
	if err != nil || r.StatusCode != http.StatusNotFound || r.Data["data"] != nil {
		t.Fatalf("read deleted latest: %+v %v", r, err)
	}
	if md := metaOf(t, r); md["deletion_time"] != deletedAt || md["version"] != int64(3) || md["destroyed"] != false {
		t.Errorf("deleted metadata %v", md)
	}
	if want := `{"data":null,"metadata":{"created_time":"` + ts(start) + `","custom_metadata":null,"deletion_time":"` + deletedAt + `","destroyed":false,"version":3}}`; toJSON(t, r.Data) != want {
		t.Errorf("404 body\n got %s\nwant %s", toJSON(t, r.Data), want)
	}
	// Deleting again keeps the first deletion time.
	h.clock.Advance(time.Minute)
	before := h.snapshot()
	h.must(opDelete, "data/k", "")
	if !sameSnapshot(before, h.snapshot()) {
		t.Error("second delete rewrote storage")
	}
	if r, _ := h.read("k", 2); dataOf(t, r)["v"] != "2" {
		t.Errorf("v2 should still read: %v", r.Data)
	}

	h.must(opUpdate, "undelete/k", `{"versions":[3]}`)
	if r, _ := h.read("k", 0); r.StatusCode != 0 || dataOf(t, r)["v"] != "3" || metaOf(t, r)["deletion_time"] != "" {
		t.Errorf("after undelete: %+v", r)
	}

	h.must(opUpdate, "delete/k", `{"versions":[1,2,99]}`)
	for _, v := range []int{1, 2} {
		if r, _ := h.read("k", v); r.StatusCode != http.StatusNotFound {
			t.Errorf("v%d after delete: %+v", v, r)
		}
	}

	h.must(opUpdate, "destroy/k", `{"versions":[2,3]}`)
	for _, v := range []int{2, 3} {
		r, _ := h.read("k", v)
		if r.StatusCode != http.StatusNotFound || metaOf(t, r)["destroyed"] != true {
			t.Errorf("v%d after destroy: %+v", v, r)
		}
	}
	snap := h.snapshot()
	if _, ok := snap["logical/kv-test/v/k/2"]; ok {
		t.Error("destroyed v2 data still stored")
	}
	m, err := decodeMeta([]byte(snap["logical/kv-test/m/k"]))
	if err != nil || m.curData != nil {
		t.Errorf("destroyed current data still inline: %v", err)
	}
	// Destroyed versions cannot be undeleted; deleted ones can.
	h.must(opUpdate, "undelete/k", `{"versions":"1,2"}`)
	if r, _ := h.read("k", 2); r.StatusCode != http.StatusNotFound {
		t.Error("destroyed v2 came back")
	}
	if r, _ := h.read("k", 1); r.StatusCode != 0 || dataOf(t, r)["v"] != "1" {
		t.Errorf("v1 after undelete: %+v", r)
	}
	// A new version after a destroyed current one.
	h.must(opUpdate, "data/k", `{"data":{"v":"4"}}`)
	if r, _ := h.read("k", 0); dataOf(t, r)["v"] != "4" {
		t.Errorf("v4: %v", r.Data)
	}
	if _, ok := h.snapshot()["logical/kv-test/v/k/3"]; ok {
		t.Error("destroyed v3 was resurrected into a record")
	}

	// Operations on missing keys are quiet no-ops.
	before = h.snapshot()
	for _, p := range []string{"delete/none", "undelete/none", "destroy/none"} {
		if resp := h.must(opUpdate, p, `{"versions":[1]}`); resp != nil {
			t.Errorf("%s: %+v", p, resp)
		}
	}
	h.must(opDelete, "data/none", "")
	h.must(opDelete, "metadata/none", "")
	if !sameSnapshot(before, h.snapshot()) {
		t.Error("no-op changed storage")
	}
}

func TestDeleteMetadataRemovesEverything(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 4; i++ {
		h.must(opUpdate, "data/gone", `{"data":{"v":"x"}}`)
	}
	h.must(opUpdate, "destroy/gone", `{"versions":[2]}`)
	h.must(opUpdate, "data/kept", `{"data":{"v":"y"}}`)
	h.must(opDelete, "metadata/gone", "")
	for k := range h.snapshot() {
		if strings.Contains(k, "gone") {
			t.Errorf("left behind: %s", k)
		}
	}
	if _, err := h.read("gone", 0); !errors.Is(err, logical.ErrNotFound) {
		t.Errorf("read after delete: %v", err)
	}
	if _, err := h.do(opRead, "metadata/gone", ""); !errors.Is(err, logical.ErrNotFound) {
		t.Errorf("metadata after delete: %v", err)
	}
	// Writing again starts from version 1.
	if resp := h.must(opUpdate, "data/gone", `{"data":{"v":"z"},"options":{"cas":0}}`); resp.Data["version"] != int64(1) {
		t.Errorf("rewrite version %v", resp.Data["version"])
	}
}

func TestList(t *testing.T) {
	h := newHarness(t)
	if _, err := h.do(opList, "metadata/", ""); !errors.Is(err, logical.ErrNotFound) {
		t.Fatalf("empty mount list: %v", err)
	}
	for _, k := range []string{"a", "a/b", "a/c/d", "z"} {
		h.must(opUpdate, "data/"+k, `{"data":{"v":"x"}}`)
	}
	h.must(opUpdate, "metadata/m-only", `{"max_versions":2}`)
	cases := []struct {
		path string
		want []string
		err  error
	}{
		{"metadata/", []string{"a", "a/", "m-only", "z"}, nil},
		{"metadata", []string{"a", "a/", "m-only", "z"}, nil},
		{"metadata/a/", []string{"b", "c/"}, nil},
		{"metadata/a", []string{"b", "c/"}, nil},
		{"metadata/a/c/", []string{"d"}, nil},
		{"metadata/nope/", nil, logical.ErrNotFound},
		{"metadata/a//", nil, logical.ErrInvalidRequest},
		{"metadata//", nil, logical.ErrInvalidRequest},
		{"metadata/../", nil, logical.ErrInvalidRequest},
	}
	for _, c := range cases {
		resp, err := h.do(opList, c.path, "")
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("LIST %s: err %v want %v", c.path, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("LIST %s: %v", c.path, err)
			continue
		}
		if got := resp.Data["keys"]; !reflect.DeepEqual(got, c.want) {
			t.Errorf("LIST %s: %v want %v", c.path, got, c.want)
		}
	}
}

func TestConfig(t *testing.T) {
	h := newHarness(t)
	h.must(opUpdate, "config", `{"max_versions":5,"cas_required":true,"delete_version_after":"3h25m19s"}`)
	if got, want := toJSON(t, h.must(opRead, "config", "").Data), `{"cas_required":true,"delete_version_after":"3h25m19s","max_versions":5}`; got != want {
		t.Errorf("config %s want %s", got, want)
	}
	// Only the fields given change; seconds are accepted; negative disables.
	h.must(opUpdate, "config", `{"delete_version_after":-1}`)
	if got, want := toJSON(t, h.must(opRead, "config", "").Data), `{"cas_required":true,"delete_version_after":"-1s","max_versions":5}`; got != want {
		t.Errorf("config %s want %s", got, want)
	}
	h.must(opUpdate, "config", `{"delete_version_after":"0s","cas_required":false,"max_versions":0}`)
	if got, want := toJSON(t, h.must(opRead, "config", "").Data), `{"cas_required":false,"delete_version_after":"0s","max_versions":0}`; got != want {
		t.Errorf("config %s want %s", got, want)
	}
	if _, err := h.do(opDelete, "config", ""); !errors.Is(err, logical.ErrUnsupportedOperation) {
		t.Errorf("DELETE config: %v", err)
	}
	if _, err := h.do(opRead, "config/x", ""); !errors.Is(err, logical.ErrUnsupportedPath) {
		t.Errorf("config/x: %v", err)
	}
}

func TestDeleteVersionAfter(t *testing.T) {
	h := newHarness(t)
	h.must(opUpdate, "config", `{"delete_version_after":"1h"}`)
	h.must(opUpdate, "metadata/short", `{"delete_version_after":"30m"}`)
	h.must(opUpdate, "metadata/long", `{"delete_version_after":"2h"}`)

	w := h.must(opUpdate, "data/short", `{"data":{"v":"1"}}`)
	if w.Data["deletion_time"] != ts(start.Add(30*time.Minute)) {
		t.Errorf("short deletion_time %v", w.Data["deletion_time"])
	}
	w = h.must(opUpdate, "data/long", `{"data":{"v":"1"}}`)
	if w.Data["deletion_time"] != ts(start.Add(time.Hour)) {
		t.Errorf("long deletion_time %v (mount's shorter limit wins)", w.Data["deletion_time"])
	}

	h.clock.Advance(29 * time.Minute)
	if r, _ := h.read("short", 0); r.StatusCode != 0 || dataOf(t, r)["v"] != "1" {
		t.Errorf("before deletion time: %+v", r)
	}
	h.clock.Advance(2 * time.Minute)
	r, _ := h.read("short", 0)
	if r.StatusCode != http.StatusNotFound || r.Data["data"] != nil || metaOf(t, r)["deletion_time"] != ts(start.Add(30*time.Minute)) {
		t.Errorf("after deletion time: %+v", r)
	}
	if _, err := h.do(opPatch, "data/short", `{"data":{"v":"2"}}`); err != nil {
		t.Errorf("patch of expired: %v", err)
	}
	// Undelete gives a fresh deletion time.
	h.must(opUpdate, "undelete/short", `{"versions":[1]}`)
	r, _ = h.read("short", 1)
	if r.StatusCode != 0 || metaOf(t, r)["deletion_time"] != ts(h.clock.Now().Add(30*time.Minute)) {
		t.Errorf("after undelete: %+v", r)
	}

	// Disabled on the mount: no deletion times at all.
	h.must(opUpdate, "config", `{"delete_version_after":"-1s"}`)
	w = h.must(opUpdate, "data/short", `{"data":{"v":"3"}}`)
	if w.Data["deletion_time"] != "" {
		t.Errorf("disabled: deletion_time %v", w.Data["deletion_time"])
	}
}

func TestCustomMetadataLimits(t *testing.T) {
	obj := func(n, keyLen, valLen int) string {
		m := map[string]string{}
		for i := 0; i < n; i++ {
			k := fmt.Sprintf("%03d", i) + strings.Repeat("k", keyLen-3)
			m[k] = strings.Repeat("v", valLen)
		}
		b, _ := json.Marshal(map[string]any{"custom_metadata": m})
		return string(b)
	}
	cases := []struct {
		name string
		body string
		ok   bool
		msg  string
	}{
		{"64 keys", obj(64, 10, 10), true, ""},
		{"65 keys", obj(65, 10, 10), false, "at most 64 keys, provided 65"},
		{"key of 128", obj(1, 128, 10), true, ""},
		{"key of 129", obj(1, 129, 10), false, "must be 0 < len(key) <= 128"},
		{"value of 512", obj(1, 10, 512), true, ""},
		{"value of 513", obj(1, 10, 513), false, "must be 0 < len(value) <= 512"},
		{"empty value", `{"custom_metadata":{"a":""}}`, false, "len(value)"},
		{"empty key", `{"custom_metadata":{"":"a"}}`, false, "len(key)"},
		{"unprintable key", `{"custom_metadata":{"a\u0001":"a"}}`, false, "unprintable"},
		{"unprintable value", `{"custom_metadata":{"a":"x\ny"}}`, false, "unprintable"},
		{"boolean value", `{"custom_metadata":{"a":true}}`, false, `key "a": expected a string`},
		{"null value", `{"custom_metadata":{"a":null}}`, false, "got null"},
		{"not an object", `{"custom_metadata":["a"]}`, false, "expected an object"},
		{"number value", `{"custom_metadata":{"a":5}}`, true, ""},
		{"null clears", `{"custom_metadata":null}`, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.must(opUpdate, "data/k", `{"data":{"v":"1"}}`)
			before := h.snapshot()
			_, err := h.do(opUpdate, "metadata/k", c.body)
			if c.ok {
				if err != nil {
					t.Fatalf("want ok, got %v", err)
				}
				return
			}
			if !errors.Is(err, logical.ErrInvalidRequest) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err %v, want one containing %q", err, c.msg)
			}
			if !sameSnapshot(before, h.snapshot()) {
				t.Error("storage changed")
			}
		})
	}

	// PATCH merges custom_metadata key by key; the limits apply to the result.
	h := newHarness(t)
	h.must(opUpdate, "metadata/k", `{"custom_metadata":{"a":"1","b":"2"}}`)
	h.must(opPatch, "metadata/k", `{"custom_metadata":{"a":null,"c":"3"}}`)
	if got := toJSON(t, h.must(opRead, "metadata/k", "").Data["custom_metadata"]); got != `{"b":"2","c":"3"}` {
		t.Errorf("patched custom_metadata %s", got)
	}
	before := h.snapshot()
	if _, err := h.do(opPatch, "metadata/k", obj(63, 10, 10)); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Errorf("patch over the limit: %v", err)
	}
	if !sameSnapshot(before, h.snapshot()) {
		t.Error("failed patch changed storage")
	}
	h.must(opPatch, "metadata/k", `{"custom_metadata":null,"max_versions":4}`)
	md := h.must(opRead, "metadata/k", "").Data
	if md["custom_metadata"] != nil || md["max_versions"] != int64(4) {
		t.Errorf("after clearing patch: %v", md)
	}
	// A PUT replaces the whole map and leaves absent fields alone.
	h.must(opUpdate, "metadata/k", `{"custom_metadata":{"x":"1"}}`)
	h.must(opUpdate, "metadata/k", `{"custom_metadata":{"y":"2"}}`)
	md = h.must(opRead, "metadata/k", "").Data
	if toJSON(t, md["custom_metadata"]) != `{"y":"2"}` || md["max_versions"] != int64(4) {
		t.Errorf("after PUTs: %v", md)
	}
	if _, err := h.do(opPatch, "metadata/missing", `{"max_versions":1}`); !errors.Is(err, logical.ErrNotFound) {
		t.Errorf("patch of missing metadata: %v", err)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	long := strings.Repeat("a/", 600)
	cases := []struct {
		op   logical.Operation
		path string
		body string
		want error
	}{
		{opUpdate, "data/k", `{"data":"str"}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{"data":[1,2]}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{"data":5}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", ``, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{"data":null}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{"data":{},"extra":1}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{"data":{},"options":"x"}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{"data":{},"options":{"cas":"abc"}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{"data":{},"options":{"cas":1.5}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{"data":{},"options":{"cas":-1}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{"data":{},"options":{"cas":true}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{"data":{},"options":{"bogus":1}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{"data":{},"options":{"method":5}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/k", `{"data":{},"options":{"cas":7}}`, logical.ErrCASMismatch},
		{opUpdate, "data/new", `{"data":{},"options":{"cas":1}}`, logical.ErrCASMismatch},
		{opPatch, "data/k", `{"data":[1]}`, logical.ErrInvalidRequest},
		{opPatch, "data/missing", `{"data":{"a":"1"}}`, logical.ErrNotFound},
		{opUpdate, "data/", `{"data":{}}`, logical.ErrInvalidRequest},
		{opUpdate, "data", `{"data":{}}`, logical.ErrInvalidRequest},
		{opUpdate, "data//x", `{"data":{}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/a//x", `{"data":{}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/a/../b", `{"data":{}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/..", `{"data":{}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/./a", `{"data":{}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/a\x00b", `{"data":{}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/x/", `{"data":{}}`, logical.ErrInvalidRequest},
		{opUpdate, "data/" + long, `{"data":{}}`, logical.ErrInvalidRequest},
		{opUpdate, "metadata/k", `{"max_versions":-1}`, logical.ErrInvalidRequest},
		{opUpdate, "metadata/k", `{"max_versions":"abc"}`, logical.ErrInvalidRequest},
		{opUpdate, "metadata/k", `{"max_versions":99999999999}`, logical.ErrInvalidRequest},
		{opUpdate, "metadata/k", `{"cas_required":"maybe"}`, logical.ErrInvalidRequest},
		{opUpdate, "metadata/k", `{"delete_version_after":"forever"}`, logical.ErrInvalidRequest},
		{opUpdate, "metadata/k", `{"delete_version_after":"-5s"}`, logical.ErrInvalidRequest},
		{opUpdate, "metadata/k", `{"custom_metadata":"x"}`, logical.ErrInvalidRequest},
		{opUpdate, "metadata/k", `{"max_versions":3,"bogus":1}`, logical.ErrInvalidRequest},
		{opUpdate, "metadata/k", `{"max_versions":3,"custom_metadata":{"a":""}}`, logical.ErrInvalidRequest},
		{opPatch, "metadata/k", `{"max_versions":[1]}`, logical.ErrInvalidRequest},
		{opPatch, "metadata/k", `{"custom_metadata":{"a":{}}}`, logical.ErrInvalidRequest},
		{opUpdate, "metadata/", `{"max_versions":3}`, logical.ErrInvalidRequest},
		{opUpdate, "delete/k", `{}`, logical.ErrInvalidRequest},
		{opUpdate, "delete/k", `{"versions":[]}`, logical.ErrInvalidRequest},
		{opUpdate, "delete/k", `{"versions":"a,b"}`, logical.ErrInvalidRequest},
		{opUpdate, "delete/k", `{"versions":[0]}`, logical.ErrInvalidRequest},
		{opUpdate, "delete/k", `{"versions":[1,-2]}`, logical.ErrInvalidRequest},
		{opUpdate, "delete/k", `{"versions":{"a":1}}`, logical.ErrInvalidRequest},
		{opUpdate, "delete/k", `{"versions":[1],"x":1}`, logical.ErrInvalidRequest},
		{opUpdate, "undelete/k", `{"versions":[true]}`, logical.ErrInvalidRequest},
		{opUpdate, "destroy/k", `{"versions":null}`, logical.ErrInvalidRequest},
		{opUpdate, "destroy/../k", `{"versions":[1]}`, logical.ErrInvalidRequest},
		{opDelete, "destroy/k", ``, logical.ErrUnsupportedOperation},
		{opUpdate, "config", `{"max_versions":"x"}`, logical.ErrInvalidRequest},
		{opUpdate, "config", `{"bogus":true}`, logical.ErrInvalidRequest},
		{opUpdate, "config", `{"cas_required":[]}`, logical.ErrInvalidRequest},
		{opUpdate, "config", `{"delete_version_after":"-"}`, logical.ErrInvalidRequest},
		{opList, "data/k", ``, logical.ErrUnsupportedOperation},
		{opPatch, "config", `{}`, logical.ErrUnsupportedOperation},
		{opUpdate, "subkeys/k", `{}`, logical.ErrUnsupportedOperation},
		{opUpdate, "nope/k", `{}`, logical.ErrUnsupportedPath},
		{opUpdate, "", `{}`, logical.ErrUnsupportedPath},
		{opRead, "data/k", `{"version":"abc"}`, logical.ErrInvalidRequest},
		{opRead, "data/k", `{"version":-1}`, logical.ErrInvalidRequest},
		{opRead, "subkeys/k", `{"depth":-1}`, logical.ErrInvalidRequest},
	}
	h := newHarness(t)
	h.must(opUpdate, "config", `{"max_versions":4}`)
	h.must(opUpdate, "data/k", `{"data":{"v":"1"}}`)
	h.must(opUpdate, "metadata/k", `{"custom_metadata":{"owner":"me"}}`)
	for _, c := range cases {
		before := h.snapshot()
		resp, err := h.do(c.op, c.path, c.body)
		if !errors.Is(err, c.want) {
			t.Errorf("%s %q %s: err %v (resp %+v), want %v", c.op, c.path, c.body, err, resp, c.want)
		}
		if !sameSnapshot(before, h.snapshot()) {
			t.Errorf("%s %q %s: storage changed", c.op, c.path, c.body)
		}
	}
}

func TestSubkeys(t *testing.T) {
	h := newHarness(t)
	h.must(opUpdate, "data/s", `{"data":{"foo":"abc","bar":{"baz":"def","deep":{"x":1}},"quux":{}}}`)
	resp := h.must(opRead, "subkeys/s", "")
	want := `{"metadata":{"created_time":"` + ts(start) + `","custom_metadata":null,"deletion_time":"","destroyed":false,"version":1},` +
		`"subkeys":{"bar":{"baz":null,"deep":{"x":null}},"foo":null,"quux":null}}`
	if got := toJSON(t, resp.Data); got != want {
		t.Errorf("subkeys\n got %s\nwant %s", got, want)
	}
	resp = h.must(opRead, "subkeys/s", `{"depth":"2"}`)
	if got := toJSON(t, resp.Data["subkeys"]); got != `{"bar":{"baz":null,"deep":null},"foo":null,"quux":null}` {
		t.Errorf("depth 2: %s", got)
	}
	resp = h.must(opRead, "subkeys/s", `{"depth":1,"version":1}`)
	if got := toJSON(t, resp.Data["subkeys"]); got != `{"bar":null,"foo":null,"quux":null}` {
		t.Errorf("depth 1: %s", got)
	}
	h.must(opDelete, "data/s", "")
	if resp := h.must(opRead, "subkeys/s", ""); resp.StatusCode != http.StatusNotFound || resp.Data["subkeys"] != nil {
		t.Errorf("subkeys of deleted: %+v", resp)
	}
	if _, err := h.do(opRead, "subkeys/none", ""); !errors.Is(err, logical.ErrNotFound) {
		t.Errorf("subkeys of missing: %v", err)
	}
}

func TestMetadataOnlyKey(t *testing.T) {
	h := newHarness(t)
	h.must(opUpdate, "metadata/pre", `{"max_versions":3,"custom_metadata":{"team":"a"}}`)
	md := h.must(opRead, "metadata/pre", "").Data
	if md["current_version"] != int64(0) || len(md["versions"].(map[string]any)) != 0 || md["created_time"] != ts(start) {
		t.Errorf("metadata-only %v", md)
	}
	if _, err := h.read("pre", 0); !errors.Is(err, logical.ErrNotFound) {
		t.Errorf("read of metadata-only key: %v", err)
	}
	// cas 0 still means "no version yet".
	w := h.must(opUpdate, "data/pre", `{"data":{"v":"1"},"options":{"cas":0}}`)
	if w.Data["version"] != int64(1) || toJSON(t, w.Data["custom_metadata"]) != `{"team":"a"}` {
		t.Errorf("first write %v", w.Data)
	}
	// A metadata write with no fields changes nothing.
	before := h.snapshot()
	if resp := h.must(opUpdate, "metadata/other", `{}`); resp != nil {
		t.Errorf("empty metadata write: %+v", resp)
	}
	if !sameSnapshot(before, h.snapshot()) {
		t.Error("empty metadata write changed storage")
	}
}

func TestReadParamsFromQueryAndData(t *testing.T) {
	h := newHarness(t)
	h.must(opUpdate, "data/q", `{"data":{"v":"1"}}`)
	h.must(opUpdate, "data/q", `{"data":{"v":"2"}}`)
	// version may arrive in Data (decoded query) as a string.
	r := h.must(opRead, "data/q", `{"version":"1"}`)
	if dataOf(t, r)["v"] != "1" {
		t.Errorf("version from data: %v", r.Data)
	}
	// Unknown read parameters are ignored, as Vault does.
	r = h.must(opRead, "data/q", `{"foo":"bar"}`)
	if dataOf(t, r)["v"] != "2" {
		t.Errorf("latest: %v", r.Data)
	}
	r, _ = h.read("q", 1)
	if dataOf(t, r)["v"] != "1" {
		t.Errorf("version from query: %v", r.Data)
	}
}

func TestNilRequest(t *testing.T) {
	h := newHarness(t)
	if _, err := h.kv.HandleRequest(context.Background(), nil); !errors.Is(err, logical.ErrInvalidRequest) {
		t.Errorf("nil request: %v", err)
	}
}

func TestExistenceCheck(t *testing.T) {
	h := newHarness(t)
	h.must(opUpdate, "data/here", `{"data":{"v":"1"}}`)
	cases := []struct {
		path string
		want bool
	}{
		{"data/here", true}, {"metadata/here", true}, {"data/absent", false},
		{"metadata/absent", false}, {"data/../x", false}, {"config", true}, {"destroy/absent", true},
	}
	for _, c := range cases {
		got, err := h.kv.ExistenceCheck(context.Background(), &logical.Request{Operation: opUpdate, Path: c.path})
		if err != nil || got != c.want {
			t.Errorf("%s: %v %v, want %v", c.path, got, err, c.want)
		}
	}
}

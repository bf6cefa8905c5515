package kv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/logical"
)

var fuzzOps = []logical.Operation{
	logical.ReadOperation, logical.CreateOperation, logical.UpdateOperation,
	logical.PatchOperation, logical.DeleteOperation, logical.ListOperation,
}

// FuzzHandleRequest feeds random operations, paths and JSON bodies to the
// engine: it must never panic, a failed request must leave storage exactly
// as it was, and every metadata record must stay decodable.
func FuzzHandleRequest(f *testing.F) {
	seeds := []struct {
		op   uint8
		path string
		body string
	}{
		{2, "data/app/db", `{"data":{"user":"a","n":1.5,"l":[1,{"x":null}]},"options":{"cas":1}}`},
		{2, "data/app/db", `{"data":{"a":"b"},"options":{"cas":0}}`},
		{3, "data/app/db", `{"data":{"user":null,"new":{"k":"v"}}}`},
		{0, "data/app/db", `{"version":"1"}`},
		{4, "data/app/db", ``},
		{5, "metadata/", ``},
		{5, "metadata/app", ``},
		{2, "metadata/app/db", `{"max_versions":2,"cas_required":true,"delete_version_after":"1h","custom_metadata":{"a":"b"}}`},
		{3, "metadata/app/db", `{"custom_metadata":{"a":null,"c":"d"},"max_versions":null}`},
		{2, "delete/app/db", `{"versions":[1,2]}`},
		{2, "undelete/app/db", `{"versions":"1,2"}`},
		{2, "destroy/app/db", `{"versions":1}`},
		{0, "subkeys/app/db", `{"depth":"1"}`},
		{2, "config", `{"max_versions":1,"delete_version_after":"-1s"}`},
		{0, "config", ``},
		{2, "data/../x", `{"data":{}}`},
		{2, "data/a//b", `{"data":{}}`},
		{2, "data/a\x00", `{"data":{}}`},
		{2, "data/x", `[1,2,3]`},
		{2, "data/x", `"str"`},
		{4, "metadata/app/db", ``},
	}
	for _, s := range seeds {
		f.Add(s.op, s.path, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, op uint8, path string, raw []byte) {
		h := newHarness(t)
		h.must(logical.UpdateOperation, "data/app/db", `{"data":{"user":"a","n":1}}`)
		h.must(logical.UpdateOperation, "data/app/db", `{"data":{"user":"b","nested":{"k":"v"}}}`)
		h.must(logical.UpdateOperation, "data/app/other", `{"data":{"x":"y"}}`)

		var data map[string]any
		if len(raw) > 0 {
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			var v any
			if d.Decode(&v) == nil {
				if m, ok := v.(map[string]any); ok {
					data = m
				} else {
					data = map[string]any{"data": v, "versions": v, "custom_metadata": v}
				}
			}
		}
		req := &logical.Request{Operation: fuzzOps[int(op)%len(fuzzOps)], Path: path, Data: data}
		before := h.snapshot()
		resp, err := h.kv.HandleRequest(context.Background(), req)
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				t.Fatalf("corrupt record after %s %q: %v", req.Operation, path, err)
			}
			if !sameSnapshot(before, h.snapshot()) {
				t.Fatalf("failed %s %q (%v) changed storage", req.Operation, path, err)
			}
			return
		}
		if resp != nil && resp.StatusCode != 0 {
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if !sameSnapshot(before, h.snapshot()) {
				t.Fatalf("404 %s %q changed storage", req.Operation, path)
			}
		}
		for k, v := range h.snapshot() {
			if strings.HasPrefix(k, "logical/kv-test/m/") {
				if _, err := decodeMeta([]byte(v)); err != nil {
					t.Fatalf("record %s: %v", k, err)
				}
			}
		}
	})
}

// FuzzDecodeMeta: the metadata decoder never panics on arbitrary bytes,
// and whatever it accepts re-encodes to something that decodes the same.
func FuzzDecodeMeta(f *testing.F) {
	m := &keyMeta{
		current: 3, oldest: 1, maxVersions: 5, casRequired: true, deleteAfter: 90e9,
		created: 1714564800123456789, updated: 1714564900000000000,
		custom:   map[string]string{"owner": "jdoe", "env": "prod"},
		versions: []versionMeta{{num: 2, created: 1, deletion: 2}, {num: 3, created: 3, destroyed: true}},
		curData:  []byte(`{"a":"b"}`),
	}
	f.Add(m.encode())
	f.Add((&keyMeta{}).encode())
	f.Add([]byte{metaFormat, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := decodeMeta(raw)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := decodeMeta(m.encode())
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("round trip differs:\n%+v\n%+v", m, again)
		}
	})
}

// FuzzMergePatch checks RFC 7396 properties: the result never holds a
// null at the top level, and patching with the result again is a no-op.
func FuzzMergePatch(f *testing.F) {
	f.Add(`{"a":"b","c":{"d":1}}`, `{"a":null,"c":{"e":2},"f":[1]}`)
	f.Add(`{}`, `{"x":{"y":{"z":null}}}`)
	f.Fuzz(func(t *testing.T, target, patch string) {
		var tv, pv map[string]any
		if json.Unmarshal([]byte(target), &tv) != nil || json.Unmarshal([]byte(patch), &pv) != nil || tv == nil || pv == nil {
			return
		}
		out, ok := mergePatch(tv, pv).(map[string]any)
		if !ok {
			t.Fatal("object patch gave a non-object")
		}
		for k, v := range out {
			if v == nil {
				t.Fatalf("null left at %q", k)
			}
		}
		snapshot, _ := json.Marshal(out)
		var copyOut map[string]any
		_ = json.Unmarshal(snapshot, &copyOut)
		again := mergePatch(copyOut, out)
		if b, _ := json.Marshal(again); !bytes.Equal(b, snapshot) {
			t.Fatalf("patch not idempotent: %s vs %s", b, snapshot)
		}
	})
}

// FuzzParseJSONObject: the read-path JSON decoder agrees with encoding/json
// (UseNumber, into an interface) on every input, accepting exactly the
// same objects and producing the same values.
func FuzzParseJSONObject(f *testing.F) {
	for _, s := range []string{
		`{"a":"b","n":1.5e-3,"neg":-0,"big":123456789012345678901234567890}`,
		`{"esc":"\u00e9\n\"x\"\/","utf":"héllo","nested":{"l":[1,[],{},null,true,false]}}`,
		` { "sp" : [ 1 , 2 ] } `, `{}`, `[]`, `{"a":01}`, `{"a":1.}`, `{"a":"\ud800"}`, `{"a" 1}`, `{"a":tru}`,
		`{"a":"` + "\x01" + `"}`, `{"a":1}x`, `{"a":-}`, `{"dup":1,"dup":2}`, "{\"a\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := parseJSONObject(raw)
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var v any
		wantErr := d.Decode(&v)
		if wantErr == nil {
			// encoding/json's Decoder stops after one value; trailing data
			// other than whitespace makes the stored record invalid.
			if len(bytes.TrimLeft(raw[d.InputOffset():], " \t\r\n")) != 0 {
				wantErr = errors.New("trailing data")
			}
		}
		want, isObj := v.(map[string]any)
		if wantErr != nil || !isObj {
			if err == nil {
				t.Fatalf("accepted %q which encoding/json refuses (%v)", raw, wantErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("refused %q: %v", raw, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %#v\nwant %#v", raw, got, want)
		}
	})
}

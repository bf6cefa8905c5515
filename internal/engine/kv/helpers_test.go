package kv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/clocktest"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// fakeClock is a settable clock.
type fakeClock = clocktest.Clock

// start is the fake clock's first reading.
var start = time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)

type harness struct {
	t     testing.TB
	mem   *inmem.Backend
	kv    *Backend
	clock *fakeClock
}

// newHarness mounts a fresh engine over an in-memory store, under a
// prefix as the server does.
func newHarness(t testing.TB) *harness {
	t.Helper()
	mem := inmem.New()
	clock := clocktest.New(start)
	kv := New(storage.NewView(mem, "logical/kv-test/"), Options{Clock: clock.Now})
	return &harness{t: t, mem: mem, kv: kv, clock: clock}
}

// body decodes a JSON request body as httpapi does (UseNumber).
func body(t testing.TB, s string) map[string]any {
	t.Helper()
	if s == "" {
		return nil
	}
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("bad test body %q: %v", s, err)
	}
	return m
}

func (h *harness) do(op logical.Operation, path, jsonBody string) (*logical.Response, error) {
	h.t.Helper()
	return h.kv.HandleRequest(context.Background(), &logical.Request{
		Operation:  op,
		Path:       path,
		MountPoint: "secret/",
		Data:       body(h.t, jsonBody),
	})
}

func (h *harness) must(op logical.Operation, path, jsonBody string) *logical.Response {
	h.t.Helper()
	resp, err := h.do(op, path, jsonBody)
	if err != nil {
		h.t.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

// read GETs data/key, optionally a version.
func (h *harness) read(key string, version int) (*logical.Response, error) {
	h.t.Helper()
	req := &logical.Request{Operation: logical.ReadOperation, Path: "data/" + key}
	if version > 0 {
		req.Query = url.Values{"version": {strconv.Itoa(version)}}
	}
	return h.kv.HandleRequest(context.Background(), req)
}

// toJSON renders v as the HTTP layer would.
func toJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}

// snapshot returns every key and value in the whole backend.
func (h *harness) snapshot() map[string]string {
	h.t.Helper()
	out := map[string]string{}
	var walk func(prefix string)
	walk = func(prefix string) {
		names, err := h.mem.List(context.Background(), prefix)
		if err != nil {
			h.t.Fatalf("list %q: %v", prefix, err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, "/") {
				walk(prefix + n)
				continue
			}
			v, err := h.mem.Get(context.Background(), prefix+n)
			if err != nil {
				h.t.Fatalf("get %q: %v", prefix+n, err)
			}
			out[prefix+n] = string(v)
		}
	}
	walk("")
	return out
}

func sameSnapshot(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// vaultHTTP is a minimal stand-in for httpapi, used only to drive the real
// github.com/hashicorp/vault/api client against the engine: it maps HTTP to
// logical.Request and the result to Vault's JSON envelope.
type vaultHTTP struct {
	mount string // "secret/"
	h     logical.Handler
}

func (s *vaultHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/v1/"+s.mount)
	req := &logical.Request{Path: path, MountPoint: s.mount, Query: r.URL.Query(), ContentType: r.Header.Get("Content-Type")}
	switch r.Method {
	case http.MethodGet:
		req.Operation = logical.ReadOperation
		if r.URL.Query().Get("list") == "true" {
			req.Operation = logical.ListOperation
		}
	case http.MethodPost, http.MethodPut:
		req.Operation = logical.UpdateOperation
	case http.MethodPatch:
		req.Operation = logical.PatchOperation
	case http.MethodDelete:
		req.Operation = logical.DeleteOperation
	case "LIST":
		req.Operation = logical.ListOperation
	}
	if r.Body != nil && (req.Operation == logical.UpdateOperation || req.Operation == logical.PatchOperation) {
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(r.Body)
		if buf.Len() > 0 {
			d := json.NewDecoder(&buf)
			d.UseNumber()
			if err := d.Decode(&req.Data); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]any{"errors": []string{err.Error()}})
				return
			}
		}
	}
	resp, err := s.h.HandleRequest(r.Context(), req)
	if err != nil {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, logical.ErrInvalidRequest), errors.Is(err, logical.ErrCASMismatch):
			status = http.StatusBadRequest
		case errors.Is(err, logical.ErrNotFound), errors.Is(err, logical.ErrUnsupportedPath):
			writeJSON(w, http.StatusNotFound, map[string]any{"errors": []string{}})
			return
		case errors.Is(err, logical.ErrUnsupportedOperation):
			status = http.StatusMethodNotAllowed
		}
		writeJSON(w, status, map[string]any{"errors": []string{err.Error()}})
		return
	}
	if resp == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	status := http.StatusOK
	if resp.StatusCode != 0 {
		status = resp.StatusCode
	}
	writeJSON(w, status, map[string]any{
		"request_id": "test", "lease_id": "", "renewable": false, "lease_duration": 0,
		"data": resp.Data, "wrap_info": nil, "warnings": resp.Warnings, "auth": nil,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

package policy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/edgevault/edgevault/internal/logical"
)

func newTestHandler(t *testing.T) *Handler {
	s, _ := newTestStore(t)
	return NewHandler(s)
}

func call(t *testing.T, h *Handler, op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	t.Helper()
	return h.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data})
}

func TestHandlerShapes(t *testing.T) {
	h := newTestHandler(t)
	text := `path "secret/*" { capabilities = ["read"] }`

	resp, err := call(t, h, logical.UpdateOperation, "policies/acl/Dev", map[string]any{"policy": text})
	if err != nil {
		t.Fatal(err)
	}
	if resp == nil || len(resp.Warnings) != 1 || resp.Warnings[0] != "policy name was converted to dev" {
		t.Fatalf("PUT with capitals: %+v", resp)
	}

	resp, err = call(t, h, logical.ReadOperation, "policies/acl/dev", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Data["name"] != "dev" || resp.Data["policy"] != text || len(resp.Data) != 2 {
		t.Fatalf("GET policies/acl/dev: %#v", resp.Data)
	}

	resp, err = call(t, h, logical.ListOperation, "policies/acl", nil)
	if err != nil {
		t.Fatal(err)
	}
	if keys := resp.Data["keys"].([]string); !slices.Equal(keys, []string{"default", "dev", "root"}) || len(resp.Data) != 1 {
		t.Fatalf("LIST policies/acl: %#v", resp.Data)
	}

	for _, op := range []logical.Operation{logical.ReadOperation, logical.ListOperation} {
		resp, err = call(t, h, op, "policy", map[string]any{"list": "true"})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"default", "dev", "root"}
		if !slices.Equal(resp.Data["keys"].([]string), want) || !slices.Equal(resp.Data["policies"].([]string), want) {
			t.Fatalf("%s policy: %#v", op, resp.Data)
		}
	}

	resp, err = call(t, h, logical.ReadOperation, "policy/dev", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Data["name"] != "dev" || resp.Data["rules"] != text {
		t.Fatalf("GET policy/dev: %#v", resp.Data)
	}

	resp, err = call(t, h, logical.ReadOperation, "policies/acl/root", nil)
	if err != nil || resp.Data["name"] != "root" || resp.Data["policy"] != "" {
		t.Fatalf("GET root: %#v %v", resp, err)
	}

	// Legacy write with "rules", base64 with "policy".
	resp, err = call(t, h, logical.CreateOperation, "policy/legacy", map[string]any{"rules": text})
	if err != nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "deprecated") {
		t.Fatalf("legacy PUT with rules: %+v %v", resp, err)
	}
	enc := base64.StdEncoding.EncodeToString([]byte(text))
	if resp, err = call(t, h, logical.UpdateOperation, "policies/acl/b64", map[string]any{"policy": enc}); err != nil || resp != nil {
		t.Fatalf("base64 PUT: %+v %v", resp, err)
	}
	if resp, _ = call(t, h, logical.ReadOperation, "policies/acl/b64", nil); resp.Data["policy"] != text {
		t.Fatalf("base64 policy stored as %q", resp.Data["policy"])
	}

	if resp, err = call(t, h, logical.DeleteOperation, "policy/legacy", nil); err != nil || resp != nil {
		t.Fatalf("DELETE: %+v %v", resp, err)
	}
	if _, err = call(t, h, logical.ReadOperation, "policy/legacy", nil); !errors.Is(err, logical.ErrNotFound) {
		t.Fatalf("GET deleted: %v", err)
	}
}

func TestHandlerErrors(t *testing.T) {
	h := newTestHandler(t)
	good := `path "a" { capabilities = ["read"] }`
	tests := []struct {
		name string
		op   logical.Operation
		path string
		data map[string]any
		is   error
		want string
	}{
		{"unknown field", logical.UpdateOperation, "policies/acl/x", map[string]any{"policy": good, "rulez": "x"}, logical.ErrInvalidRequest, `"rulez"`},
		{"rules only on legacy path", logical.UpdateOperation, "policies/acl/x", map[string]any{"rules": good}, logical.ErrInvalidRequest, `"rules"`},
		{"missing policy", logical.UpdateOperation, "policies/acl/x", map[string]any{}, logical.ErrInvalidRequest, "'policy' parameter not supplied or empty"},
		{"policy wrong type", logical.UpdateOperation, "policies/acl/x", map[string]any{"policy": []any{"a"}}, logical.ErrInvalidRequest, `"policy"`},
		{"bad HCL", logical.UpdateOperation, "policies/acl/x", map[string]any{"policy": `path "a" { capabilities = ["reed"] }`}, logical.ErrInvalidRequest, `"reed"`},
		{"write root", logical.UpdateOperation, "policies/acl/root", map[string]any{"policy": good}, logical.ErrInvalidRequest, `cannot update "root" policy`},
		{"delete root", logical.DeleteOperation, "policy/root", nil, logical.ErrInvalidRequest, `cannot delete "root" policy`},
		{"delete default", logical.DeleteOperation, "policies/acl/default", nil, logical.ErrInvalidRequest, `cannot delete "default" policy`},
		{"name with slash", logical.ReadOperation, "policies/acl/a/b", nil, logical.ErrInvalidRequest, `"/"`},
		{"traversal", logical.UpdateOperation, "policies/acl/..", map[string]any{"policy": good}, logical.ErrInvalidRequest, `".."`},
		{"empty name", logical.ReadOperation, "policies/acl/", nil, logical.ErrUnsupportedOperation, ""},
		{"missing", logical.ReadOperation, "policies/acl/nope", nil, logical.ErrNotFound, `"nope"`},
		{"patch", logical.PatchOperation, "policies/acl/x", map[string]any{"policy": good}, logical.ErrUnsupportedOperation, ""},
		{"read the list path", logical.ReadOperation, "policies/acl", nil, logical.ErrUnsupportedOperation, ""},
		{"unknown path", logical.ReadOperation, "policies/egp/x", nil, logical.ErrUnsupportedPath, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, h, tt.op, tt.path, tt.data)
			if !errors.Is(err, tt.is) || !strings.Contains(errString(err), tt.want) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tt.is, tt.want)
			}
		})
	}
	resp, _ := call(t, h, logical.ListOperation, "policies/acl", nil)
	if keys := resp.Data["keys"].([]string); !slices.Equal(keys, []string{"default", "root"}) {
		t.Fatalf("failed requests stored something: %q", keys)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestHandlerWithVaultClient drives the handler through a minimal HTTP
// adapter with the real github.com/hashicorp/vault/api client, checking the
// paths, fields and shapes the client relies on.
func TestHandlerWithVaultClient(t *testing.T) {
	h := newTestHandler(t)
	srv := httptest.NewServer(adapter(h))
	defer srv.Close()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = srv.URL
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken("test")
	sys := c.Sys()

	rules := "path \"secret/data/app/*\" {\n  capabilities = [\"read\"]\n}\n"
	if err := sys.PutPolicy("app", rules); err != nil {
		t.Fatal(err)
	}
	got, err := sys.GetPolicy("app")
	if err != nil || got != rules {
		t.Fatalf("GetPolicy = %q, %v", got, err)
	}
	names, err := sys.ListPolicies()
	if err != nil || !slices.Equal(names, []string{"app", "default", "root"}) {
		t.Fatalf("ListPolicies = %q, %v", names, err)
	}
	err = sys.PutPolicy("bad", `path "a" { capabilities = ["reed"] }`)
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest || !strings.Contains(err.Error(), "reed") {
		t.Fatalf("PutPolicy with a bad capability: %v", err)
	}
	if err := sys.DeletePolicy("app"); err != nil {
		t.Fatal(err)
	}
	if got, err := sys.GetPolicy("app"); err != nil || got != "" {
		t.Fatalf("GetPolicy after delete = %q, %v", got, err)
	}
	if err := sys.DeletePolicy("root"); err == nil {
		t.Fatal("deleting root succeeded")
	}
}

// adapter is a test stand-in for httpapi: just enough of Vault's HTTP
// conventions to serve /v1/sys/ from a logical.Handler.
func adapter(h logical.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := &logical.Request{Path: strings.TrimPrefix(r.URL.Path, "/v1/sys/"), Data: map[string]any{}}
		switch {
		case r.Method == "LIST" || (r.Method == http.MethodGet && r.URL.Query().Get("list") == "true"):
			req.Operation = logical.ListOperation
		case r.Method == http.MethodGet:
			req.Operation = logical.ReadOperation
		case r.Method == http.MethodPut || r.Method == http.MethodPost:
			req.Operation = logical.UpdateOperation
			dec := json.NewDecoder(r.Body)
			dec.UseNumber()
			if err := dec.Decode(&req.Data); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		case r.Method == http.MethodDelete:
			req.Operation = logical.DeleteOperation
		}
		resp, err := h.HandleRequest(r.Context(), req)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			status := http.StatusInternalServerError
			switch {
			case errors.Is(err, logical.ErrInvalidRequest):
				status = http.StatusBadRequest
			case errors.Is(err, logical.ErrNotFound), errors.Is(err, logical.ErrUnsupportedPath):
				status = http.StatusNotFound
			case errors.Is(err, logical.ErrUnsupportedOperation):
				status = http.StatusMethodNotAllowed
			}
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{err.Error()}})
			return
		}
		if resp == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"data": resp.Data, "warnings": resp.Warnings})
	})
}

func TestStoreIsAHandler(t *testing.T) {
	s, _ := newTestStore(t)
	resp, err := s.HandleRequest(context.Background(), &logical.Request{Operation: logical.ListOperation, Path: "policies/acl"})
	if err != nil || !slices.Equal(resp.Data["keys"].([]string), []string{"default", "root"}) {
		t.Fatalf("Store.HandleRequest: %+v %v", resp, err)
	}
}

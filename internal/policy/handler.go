package policy

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/edgevault/edgevault/internal/logical"
)

// Handler serves Vault's policy API on a Store. Request paths are relative
// to "sys/":
//
//	policies/acl          LIST                  {keys}
//	policies/acl/<name>   GET                   {name, policy}
//	                      PUT/POST {policy}     204
//	                      DELETE                204
//	policy                GET or LIST           {keys, policies} (legacy)
//	policy/<name>         GET                   {name, rules}    (legacy)
//	                      PUT/POST {policy|rules}
//	                      DELETE
//
// The policy text may be sent raw or base64-encoded, as Vault accepts.
type Handler struct {
	store *Store
}

var _ logical.Handler = (*Handler)(nil)

// NewHandler returns a Handler serving s.
func NewHandler(s *Store) *Handler { return &Handler{store: s} }

// HandleRequest serves one request under sys/.
func (h *Handler) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	path := strings.TrimPrefix(req.Path, "/")
	switch {
	case path == "policies/acl" || path == "policies/acl/":
		if req.Operation != logical.ListOperation {
			return nil, fmt.Errorf("%w: %s on sys/%s", logical.ErrUnsupportedOperation, req.Operation, path)
		}
		return h.list(ctx, false)
	case strings.HasPrefix(path, "policies/acl/"):
		return h.named(ctx, req, strings.TrimPrefix(path, "policies/acl/"), false)
	case path == "policy" || path == "policy/":
		if req.Operation != logical.ListOperation && req.Operation != logical.ReadOperation {
			return nil, fmt.Errorf("%w: %s on sys/%s", logical.ErrUnsupportedOperation, req.Operation, path)
		}
		return h.list(ctx, true)
	case strings.HasPrefix(path, "policy/"):
		return h.named(ctx, req, strings.TrimPrefix(path, "policy/"), true)
	}
	return nil, fmt.Errorf("%w: sys/%s", logical.ErrUnsupportedPath, path)
}

func (h *Handler) list(ctx context.Context, legacy bool) (*logical.Response, error) {
	names, err := h.store.List(ctx)
	if err != nil {
		return nil, err
	}
	data := map[string]any{"keys": names}
	if legacy {
		data["policies"] = names
	}
	return &logical.Response{Data: data}, nil
}

func (h *Handler) named(ctx context.Context, req *logical.Request, name string, legacy bool) (*logical.Response, error) {
	if name == "" {
		return nil, logical.InvalidRequest("policy name must be provided in the URL")
	}
	switch req.Operation {
	case logical.ReadOperation:
		return h.read(ctx, name, legacy)
	case logical.CreateOperation, logical.UpdateOperation:
		return h.write(ctx, req, name, legacy)
	case logical.DeleteOperation:
		return nil, h.store.Delete(ctx, name)
	}
	return nil, fmt.Errorf("%w: %s on a policy", logical.ErrUnsupportedOperation, req.Operation)
}

func (h *Handler) read(ctx context.Context, name string, legacy bool) (*logical.Response, error) {
	p, err := h.store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	field := "policy"
	if legacy {
		field = "rules"
	}
	return &logical.Response{Data: map[string]any{"name": p.Name, field: p.Raw}}, nil
}

func (h *Handler) write(ctx context.Context, req *logical.Request, name string, legacy bool) (*logical.Response, error) {
	allowed := []string{"name", "policy"}
	if legacy {
		allowed = append(allowed, "rules")
	}
	if err := logical.CheckFields(req.Data, allowed...); err != nil {
		return nil, err
	}
	var warnings []string
	text, _, err := logical.String(req.Data, "policy")
	if err != nil {
		return nil, err
	}
	if text == "" && legacy {
		if text, _, err = logical.String(req.Data, "rules"); err != nil {
			return nil, err
		}
		if text != "" {
			warnings = append(warnings, "'rules' is deprecated, please use 'policy' instead")
		}
	}
	if text == "" {
		return nil, logical.InvalidRequest("'policy' parameter not supplied or empty")
	}
	if dec, err := base64.StdEncoding.DecodeString(text); err == nil && utf8.Valid(dec) {
		text = string(dec)
	}
	if lower := strings.ToLower(name); lower != name {
		warnings = append(warnings, fmt.Sprintf("policy name was converted to %s", lower))
	}
	if err := h.store.Put(ctx, name, text); err != nil {
		return nil, err
	}
	if len(warnings) == 0 {
		return nil, nil
	}
	return &logical.Response{Warnings: warnings}, nil
}

var _ logical.Handler = (*Store)(nil)

// HandleRequest serves the policy API directly from the Store, so a Store
// can be routed to as a logical.Handler; it is NewHandler(s).HandleRequest.
func (s *Store) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	return (&Handler{store: s}).HandleRequest(ctx, req)
}

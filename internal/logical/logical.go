// Package logical holds the request and response types that flow between the
// HTTP layer and the backends mounted behind it (secrets engines, the token
// store, sys). It carries no HTTP: httpapi translates HTTP to a Request, and a
// Response or error back to Vault's JSON envelope.
package logical

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// Operation is what a request does, in Vault's vocabulary.
type Operation string

// Operations. An HTTP PUT or POST is Create when nothing exists at the path
// and Update otherwise; backends that do not distinguish treat both alike.
const (
	ReadOperation   Operation = "read"
	CreateOperation Operation = "create"
	UpdateOperation Operation = "update"
	PatchOperation  Operation = "patch"
	DeleteOperation Operation = "delete"
	ListOperation   Operation = "list"
)

// Request is one API call, already authenticated and authorised.
type Request struct {
	Operation Operation
	// Path is relative to the backend's mount point, without a leading slash
	// ("data/app/db" for GET /v1/secret/data/app/db).
	Path string
	// MountPoint is where the backend is mounted, with a trailing slash ("secret/").
	MountPoint string
	// Data is the decoded JSON body (or query parameters for GET/LIST).
	Data map[string]any
	// Query holds the URL query parameters.
	Query url.Values
	// ClientToken is the caller's token as presented; empty for
	// unauthenticated paths. Never log it.
	ClientToken string
	// Sudo is true when the caller's policies grant sudo on this path.
	Sudo bool
	// ContentType is the request's Content-Type (for PATCH: merge-patch).
	ContentType string
}

// Auth describes a token returned by a login or token-create call, in the
// shape of Vault's "auth" response block.
type Auth struct {
	ClientToken   string            `json:"client_token"`   // the new token; shown once
	Accessor      string            `json:"accessor"`       // names the token without granting its use
	Policies      []string          `json:"policies"`       // all policies in force
	TokenPolicies []string          `json:"token_policies"` // the policies attached to the token
	Metadata      map[string]string `json:"metadata"`       // the token's meta
	LeaseDuration int               `json:"lease_duration"` // TTL in seconds; 0 never expires
	Renewable     bool              `json:"renewable"`      // whether renew is allowed
	EntityID      string            `json:"entity_id"`      // always "" (no identity store)
	TokenType     string            `json:"token_type"`     // "service"
	Orphan        bool              `json:"orphan"`         // true when the token has no parent
	NumUses       int               `json:"num_uses"`       // uses left; 0 is unlimited
}

// Response is what a backend returns. A nil *Response means 204 No Content.
type Response struct {
	// Data is the envelope's "data" object.
	Data map[string]any
	// Auth is the envelope's "auth" object, for calls that create a token.
	Auth *Auth
	// Warnings are shown to the client in the envelope's "warnings".
	Warnings []string
	// LeaseDuration and Renewable fill the envelope's lease fields.
	LeaseDuration int
	Renewable     bool
	// LeaseID names the lease of a dynamic secret ("" for none).
	LeaseID string
	// StatusCode overrides the default 200 when non-zero (Vault answers some
	// reads with 404 and a body).
	StatusCode int
	// Raw, when not nil, is sent as the HTTP body instead of the JSON
	// envelope, with ContentType (Vault's pki/ca DER, pki/ca/pem PEM, ...).
	// Data may still describe it for audit and for callers in process.
	Raw         []byte
	ContentType string
}

// Handler serves the requests under one mount point.
type Handler interface {
	HandleRequest(ctx context.Context, req *Request) (*Response, error)
}

// Errors backends return. httpapi maps each to one HTTP status; wrap them
// with a message meant for the user: fmt.Errorf("%w: cas mismatch", ErrInvalidRequest).
// The text of the wrapped error is sent to the client, so it must never
// contain a secret, a token or a key.
var (
	// ErrInvalidRequest is bad input: 400.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrPermissionDenied is a refused authorisation: 403.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrNotFound means nothing exists at the path: 404.
	ErrNotFound = errors.New("not found")
	// ErrUnsupportedOperation is an operation the path does not take: 405.
	ErrUnsupportedOperation = errors.New("unsupported operation")
	// ErrUnsupportedPath is a path the backend does not know: 404.
	ErrUnsupportedPath = errors.New("unsupported path")
	// ErrCASMismatch is a failed check-and-set; Vault answers 400.
	ErrCASMismatch = errors.New("check-and-set parameter did not match the current version")
	// ErrConflict is a request that contradicts what the server holds: 409.
	ErrConflict = errors.New("conflict")
	// ErrSealed is returned while the barrier is sealed: 503.
	ErrSealed = errors.New("Vault is sealed")
)

// InvalidRequest returns an ErrInvalidRequest with a formatted message.
func InvalidRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
}

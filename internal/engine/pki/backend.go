package pki

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
)

// Defaults for roles and CAs; Vault's own defaults are longer, edgevault's
// certificates are short-lived by design.
const (
	// DefaultRoleTTL is a role's ttl when none is set.
	DefaultRoleTTL = time.Hour
	// DefaultRoleMaxTTL is a role's max_ttl when none is set.
	DefaultRoleMaxTTL = 24 * time.Hour
	// DefaultCATTL is the lifetime of a generated root or signed
	// intermediate when the request gives no ttl.
	DefaultCATTL = 365 * 24 * time.Hour
	// DefaultCRLLifetime is how long a CRL is valid (its NextUpdate); a read
	// after that rebuilds it. Vault's crl/config expiry default is 72h.
	DefaultCRLLifetime = 72 * time.Hour
	// DefaultTidySafetyBuffer is how long after expiry tidy keeps a record.
	DefaultTidySafetyBuffer = 72 * time.Hour
	// notBeforeSkew backdates NotBefore for clock skew, as Vault's
	// not_before_duration default does.
	notBeforeSkew = 30 * time.Second
)

// Errors the engine returns besides the logical sentinels.
var (
	// ErrNoCA means the mount has no CA yet: issue, sign and crl need one.
	// It matches logical.ErrInvalidRequest (Vault answers 400).
	ErrNoCA = &apiError{logical.ErrInvalidRequest, "no CA configured at this mount: generate a root or set a signed intermediate first"}
	// ErrCAExists refuses to generate or import a second CA over the
	// mount's one CA; DELETE root first. It matches logical.ErrConflict.
	ErrCAExists = &apiError{logical.ErrConflict, "a CA is already configured at this mount; DELETE root first to replace it"}
	// ErrUnknownSerial means no certificate with that serial is stored.
	// It matches logical.ErrNotFound.
	ErrUnknownSerial = &apiError{logical.ErrNotFound, "no certificate with this serial number"}
)

// apiError is an error whose text is the message sent to the client and
// which matches kind (a logical sentinel) with errors.Is.
type apiError struct {
	kind error
	msg  string
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.kind }

// Options configures a Backend. The zero value is valid.
type Options struct {
	// Clock returns the current time; nil means time.Now. Certificates'
	// validity, revocation times and tidy all read it.
	Clock func() time.Time
	// Logger receives CA changes, revocations and tidy results; never keys.
	// nil discards.
	Logger *slog.Logger
}

// Backend is the PKI engine of one mount. It is safe for concurrent use.
type Backend struct {
	store storage.Backend
	clock func() time.Time
	log   *slog.Logger

	// caMu serialises changes of the CA (root generate, set-signed,
	// DELETE root) so two cannot both pass the "no CA yet" check.
	caMu sync.Mutex
	// ca caches the parsed CA record, keyed by its stored bytes.
	ca atomic.Pointer[caState]

	// crlMu is held shared by revocations and tidy deletions, exclusively
	// by a CRL rebuild, so a rebuild never stores a CRL that misses a
	// revocation committed while it ran.
	crlMu sync.RWMutex
}

// New returns the engine over store, the mount's private, encrypted view.
// The engine owns the keys under it (see the package doc).
func New(store storage.Backend, opts Options) *Backend {
	b := &Backend{store: store, clock: opts.Clock, log: opts.Logger}
	if b.clock == nil {
		b.clock = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return b
}

// HandleRequest serves one request under the mount.
func (b *Backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if req == nil {
		return nil, logical.InvalidRequest("missing request")
	}
	op := req.Operation
	write := op == logical.CreateOperation || op == logical.UpdateOperation
	head, rest, hasRest := strings.Cut(req.Path, "/")
	switch {
	case req.Path == "root/generate/internal" || req.Path == "root/generate/exported":
		if !write {
			return nil, unsupported(req)
		}
		return b.generateRoot(ctx, req, rest == "generate/exported")
	case req.Path == "root":
		if op != logical.DeleteOperation {
			return nil, unsupported(req)
		}
		return nil, b.deleteCA(ctx)
	case req.Path == "root/sign-intermediate":
		if !write {
			return nil, unsupported(req)
		}
		return b.signIntermediate(ctx, req)
	case req.Path == "intermediate/generate/internal" || req.Path == "intermediate/generate/exported":
		if !write {
			return nil, unsupported(req)
		}
		return b.generateIntermediate(ctx, req, rest == "generate/exported")
	case req.Path == "intermediate/set-signed":
		if !write {
			return nil, unsupported(req)
		}
		return b.setSigned(ctx, req)
	case req.Path == "roles" || req.Path == "roles/":
		if op != logical.ListOperation {
			return nil, unsupported(req)
		}
		return b.listRoles(ctx)
	case head == "roles" && hasRest:
		return b.handleRole(ctx, req, rest)
	case head == "issue" && hasRest:
		if !write {
			return nil, unsupported(req)
		}
		return b.issue(ctx, req, rest)
	case head == "sign" && hasRest:
		if !write {
			return nil, unsupported(req)
		}
		return b.sign(ctx, req, rest)
	case req.Path == "revoke":
		if !write {
			return nil, unsupported(req)
		}
		return b.handleRevoke(ctx, req)
	case req.Path == "ca" || req.Path == "ca/pem" || req.Path == "ca_chain" || req.Path == "cert/ca_chain":
		if op != logical.ReadOperation {
			return nil, unsupported(req)
		}
		return b.readCA(ctx, req.Path)
	case req.Path == "crl" || req.Path == "crl/pem" || req.Path == "cert/crl":
		if op != logical.ReadOperation {
			return nil, unsupported(req)
		}
		return b.readCRL(ctx, req.Path)
	case req.Path == "crl/rotate":
		if op != logical.ReadOperation && !write {
			return nil, unsupported(req)
		}
		return b.rotateCRL(ctx)
	case req.Path == "certs" || req.Path == "certs/" || req.Path == "certs/revoked" || req.Path == "certs/revoked/":
		if op != logical.ListOperation {
			return nil, unsupported(req)
		}
		return b.listCerts(ctx, strings.HasPrefix(req.Path, "certs/revoked"))
	case head == "cert" && hasRest:
		if op != logical.ReadOperation {
			return nil, unsupported(req)
		}
		if rest == "ca" {
			return b.readCA(ctx, req.Path)
		}
		return b.readCert(ctx, rest)
	case req.Path == "tidy":
		if !write {
			return nil, unsupported(req)
		}
		return b.handleTidy(ctx, req)
	}
	return nil, fmt.Errorf("%w: %q", logical.ErrUnsupportedPath, req.Path)
}

// unsupported is the error for a known path and an operation it does not take.
func unsupported(req *logical.Request) error {
	return fmt.Errorf("%w: %s on %q", logical.ErrUnsupportedOperation, req.Operation, req.Path)
}

// Revoke revokes the certificate with the given serial (colon or hyphen
// form) for the lease manager: it is idempotent (revoking twice succeeds and
// keeps the first revocation time), and it records the revocation even when
// the certificate was not stored (a no_store role), so the serial still
// reaches the CRL. Errors are storage failures, worth retrying, or a
// malformed serial (matches logical.ErrInvalidRequest), which is not.
func (b *Backend) Revoke(ctx context.Context, serial string) error {
	return b.RevokeLease(ctx, LeaseData{SerialNumber: serial})
}

// LeaseData is what a lease on an issued certificate must keep (as the
// lease's opaque JSON data) for its revocation: the certificate's serial and
// expiry, both taken from the issue/sign response.
type LeaseData struct {
	// SerialNumber is the response's serial_number.
	SerialNumber string `json:"serial_number"`
	// Expiration is the response's expiration (Unix seconds); it lets tidy
	// drop the revocation of an unstored certificate once it has expired.
	// 0 if unknown.
	Expiration int64 `json:"expiration,omitempty"`
}

// LeaseDataFor returns the LeaseData of an issue or sign response, as JSON.
func LeaseDataFor(resp *logical.Response) (json.RawMessage, error) {
	if resp == nil {
		return nil, fmt.Errorf("pki: lease data: nil response")
	}
	serial, _ := resp.Data["serial_number"].(string)
	exp, _ := resp.Data["expiration"].(int64)
	if serial == "" {
		return nil, fmt.Errorf("pki: lease data: response has no serial_number")
	}
	return json.Marshal(LeaseData{SerialNumber: serial, Expiration: exp})
}

// RevokeLease is Revoke with the lease's decoded data, for the lease
// manager's Revoker; the same idempotence and error rules apply.
func (b *Backend) RevokeLease(ctx context.Context, d LeaseData) error {
	s, err := parseSerial("serial_number", d.SerialNumber)
	if err != nil {
		return err
	}
	// A lease that ends with its certificate (the usual case: the lease's
	// ttl is the certificate's) needs no CRL entry: the certificate is no
	// longer valid anyway, and listing every expired one would grow the
	// CRL with the issue rate (Vault refuses these too).
	if d.Expiration != 0 && !time.Unix(d.Expiration, 0).After(b.clock().Add(2*time.Second)) {
		return nil
	}
	_, err = b.revoke(ctx, s, true, d.Expiration)
	return err
}

// isNotFound reports a missing storage key.
func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }

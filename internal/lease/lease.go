package lease

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors returned by the Manager. Match them with errors.Is; the wrapping
// error names the field or lease at fault.
var (
	// ErrInvalid means a request field is malformed or out of range.
	ErrInvalid = errors.New("invalid lease request")
	// ErrNotFound means no lease has the given id.
	ErrNotFound = errors.New("lease not found")
	// ErrNotRenewable means the lease was issued non-renewable.
	ErrNotRenewable = errors.New("lease is not renewable")
	// ErrExpired means the lease is past its expiry (its revocation is
	// pending or failing) and can no longer be renewed.
	ErrExpired = errors.New("lease expired")
	// ErrExists means Register was given an id already in use.
	ErrExists = errors.New("lease id already exists")
	// ErrNoRevoker means no engine claims the lease's path (mount gone).
	ErrNoRevoker = errors.New("no revoker for lease path")
	// ErrRevokeFailed wraps the engine's error when a revocation fails; the
	// lease is kept and retried.
	ErrRevokeFailed = errors.New("lease revocation failed")
	// ErrCorrupt means a stored lease record or index key does not decode.
	ErrCorrupt = errors.New("corrupt lease storage")
	// ErrStarted means Start was called on a Manager already started.
	ErrStarted = errors.New("lease manager already started")
)

// Limits on what Register accepts.
const (
	// MaxIDLen is the longest lease id.
	MaxIDLen = 512
	// MaxDataLen is the largest engine Data blob.
	MaxDataLen = 64 << 10
)

// Lease is one dynamic secret's lifetime. Fields are JSON-encoded in storage.
type Lease struct {
	// ID is "<Path>/<random>" unless the engine chose its own id.
	ID string `json:"id"`
	// Zone names the zone whose storage holds the lease.
	Zone string `json:"zone,omitempty"`
	// Path is the engine path that created the lease, mount included
	// ("database/creds/ro"); revokers are found by it.
	Path string `json:"path"`
	// IssueTime is when the lease was registered.
	IssueTime time.Time `json:"issue_time"`
	// ExpireTime is when the lease ends unless renewed.
	ExpireTime time.Time `json:"expire_time"`
	// LastRenewal is the time of the last successful renewal (zero if none).
	LastRenewal time.Time `json:"last_renewal,omitzero"`
	// TTL is the lease duration asked at issue (the default renewal).
	TTL time.Duration `json:"ttl"`
	// MaxTTL caps the lease: it never outlives IssueTime+MaxTTL.
	MaxTTL time.Duration `json:"max_ttl"`
	// Renewable says whether Renew is allowed.
	Renewable bool `json:"renewable"`
	// TokenAccessor is the accessor of the token that obtained the lease;
	// RevokeByToken revokes by it. Empty for leases owned by no token.
	TokenAccessor string `json:"token_accessor,omitempty"`
	// Data is opaque engine JSON passed back to Revoke and Renew.
	Data json.RawMessage `json:"data,omitempty"`
	// RevokeAttempts counts failed revocations since the lease expired or
	// was revoked; 0 means not failing.
	RevokeAttempts int `json:"revoke_attempts,omitempty"`
	// LastError is the last revocation error (safe text, no secret).
	LastError string `json:"last_error,omitempty"`
	// NextAttempt is when the next revocation retry is due.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

// Failing reports whether the lease's revocation has failed at least once.
func (l *Lease) Failing() bool { return l.RevokeAttempts > 0 }

// Due returns the next time the manager acts on the lease: its next retry
// if failing, else its expiry.
func (l *Lease) Due() time.Time {
	if l.Failing() {
		return l.NextAttempt
	}
	return l.ExpireTime
}

// MaxExpire returns IssueTime+MaxTTL, the time no renewal can pass.
func (l *Lease) MaxExpire() time.Time { return l.IssueTime.Add(l.MaxTTL) }

// Remaining returns the TTL left at now, never negative.
func (l *Lease) Remaining(now time.Time) time.Duration {
	return max(0, l.ExpireTime.Sub(now))
}

// Revoker undoes an engine's secret. Implementations must be idempotent:
// a crash after Revoke and before the lease is deleted calls Revoke again,
// so revoking an already-revoked secret must return nil.
type Revoker interface {
	// Revoke undoes the secret described by l (l.Data). It returns nil only
	// once the secret is unusable.
	Revoke(ctx context.Context, l Lease) error
}

// Renewer is implemented by revokers whose secret must be told about a
// renewal (a PostgreSQL user's VALID UNTIL). It is found by type assertion.
type Renewer interface {
	// Renew extends the secret to newExpire. On error the lease is not
	// renewed.
	Renew(ctx context.Context, l Lease, newExpire time.Time) error
}

// RevokerFunc adapts a function to Revoker.
type RevokerFunc func(ctx context.Context, l Lease) error

// Revoke calls f.
func (f RevokerFunc) Revoke(ctx context.Context, l Lease) error { return f(ctx, l) }

// MountTable returns a Config.Revokers function choosing, for a lease
// path, the revoker registered under the longest mount prefix of it
// ("database/" for "database/creds/ro"). Mount keys should end in "/".
// The map is copied.
func MountTable(mounts map[string]Revoker) func(path string) Revoker {
	cp := make(map[string]Revoker, len(mounts))
	for k, v := range mounts {
		cp[k] = v
	}
	return func(path string) Revoker {
		best, bestLen := Revoker(nil), -1
		for k, v := range cp {
			if strings.HasPrefix(path+"/", k) && len(k) > bestLen {
				best, bestLen = v, len(k)
			}
		}
		return best
	}
}

// Storage key prefixes; see the package doc.
const (
	pfxID   = "id/"
	pfxDue  = "due/"
	pfxTok  = "tok/"
	pfxFail = "fail/"
)

var b64 = base64.RawURLEncoding

func idKey(id string) string   { return pfxID + id }
func failKey(id string) string { return pfxFail + b64.EncodeToString([]byte(id)) }
func tokKey(acc, id string) string {
	return pfxTok + acc + "/" + b64.EncodeToString([]byte(id))
}

// dueName is the due/ key name (without prefix) for a lease id due at t.
// Times before 1970 are clamped to 0 so names stay fixed-width and sortable.
func dueName(t time.Time, id string) string {
	ns := max(t.UnixNano(), 0)
	var buf [16]byte
	s := strconv.AppendUint(buf[:0], uint64(ns), 16)
	return strings.Repeat("0", 16-len(s)) + string(s) + "." + b64.EncodeToString([]byte(id))
}

func dueKey(l *Lease) string { return pfxDue + dueName(l.Due(), l.ID) }

// parseDueName decodes a due/ key name into its time (unix ns) and lease id.
func parseDueName(name string) (int64, string, error) {
	if len(name) < 18 || name[16] != '.' {
		return 0, "", fmt.Errorf("%w: due key %q: want <16 hex>.<base64 id>", ErrCorrupt, name)
	}
	ns, err := strconv.ParseUint(name[:16], 16, 64)
	if err != nil || ns > 1<<63-1 {
		return 0, "", fmt.Errorf("%w: due key %q: bad time", ErrCorrupt, name)
	}
	id, err := b64.DecodeString(name[17:])
	if err != nil || len(id) == 0 || len(id) > MaxIDLen {
		return 0, "", fmt.Errorf("%w: due key %q: bad lease id", ErrCorrupt, name)
	}
	return int64(ns), string(id), nil
}

// decodeLease parses a stored record and checks it is the lease at id.
func decodeLease(id string, raw []byte) (*Lease, error) {
	var l Lease
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("%w: lease %q: %v", ErrCorrupt, id, err)
	}
	if l.ID != id {
		return nil, fmt.Errorf("%w: lease %q: record names id %q", ErrCorrupt, id, l.ID)
	}
	return &l, nil
}

// checkID validates a lease id given by a caller; field names the request
// field for the error ("lease_id", "prefix").
func checkID(field, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: %s: missing", ErrInvalid, field)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%w: %s: longer than %d bytes", ErrInvalid, field, MaxIDLen)
	case strings.ContainsRune(id, 0):
		return fmt.Errorf("%w: %s: contains a NUL byte", ErrInvalid, field)
	case strings.HasPrefix(id, "/") || strings.HasSuffix(id, "/") || strings.Contains(id, "//"):
		return fmt.Errorf("%w: %s: %q has an empty path segment", ErrInvalid, field, id)
	}
	for _, seg := range strings.Split(id, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%w: %s: %q has a %q segment", ErrInvalid, field, id, seg)
		}
	}
	return nil
}

// checkPrefix validates a prefix for List and the Revoke*Prefix calls: ""
// (everything) or a path, with or without a trailing "/".
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return checkID("prefix", strings.TrimSuffix(prefix, "/"))
}

package revoke

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Errors about sources and sender authentication. Match them with errors.Is.
var (
	// ErrUnauthenticated is returned by Authenticate when the request does
	// not carry the source's valid token or signature. The wrapping error
	// says why (for the audit log); the response should say only 401.
	ErrUnauthenticated = errors.New("revoke: sender not authenticated")
	// ErrInvalidSource is returned by Source.Validate and Store.PutSource
	// for a configuration that cannot work; the wrapping error names the
	// field.
	ErrInvalidSource = errors.New("revoke: invalid source")
	// ErrNotFound is returned by the Store for a source or rule that does
	// not exist.
	ErrNotFound = errors.New("revoke: not found")
)

// AuthMethod is how a source proves it sent a request.
type AuthMethod string

const (
	// AuthBearer: the request carries "Authorization: Bearer <secret>".
	// Alertmanager does this with http_config.authorization.credentials.
	AuthBearer AuthMethod = "bearer"
	// AuthHMACSHA256: the request carries Auth.Header: "sha256=<hex>", the
	// HMAC-SHA256 under the secret of the raw body, or, when
	// Auth.TimestampHeader is set, of "<timestamp>.<raw body>".
	AuthHMACSHA256 AuthMethod = "hmac-sha256"
)

// Defaults and limits for sources.
const (
	// DefaultSignatureHeader is Auth.Header when left empty.
	DefaultSignatureHeader = "X-Edgevault-Signature"
	// DefaultMaxSkew applies when Auth.MaxSkewSeconds is zero.
	DefaultMaxSkew = 5 * time.Minute
	// MinSecretLen is the shortest secret a source may have, in bytes.
	MinSecretLen = 16
	// MaxSecretLen is the longest.
	MaxSecretLen = 1024
	// DefaultRatePerSecond and DefaultBurst are RateLimit's zero values.
	DefaultRatePerSecond = 10
	DefaultBurst         = 100
	// MaxBurst bounds RateLimit.Burst.
	MaxBurst = 100000
)

// Auth configures sender authentication for a source.
type Auth struct {
	// Method is bearer or hmac-sha256.
	Method AuthMethod `json:"method"`
	// Header carries the HMAC signature ("sha256=<hex>"). hmac-sha256
	// only; empty means DefaultSignatureHeader.
	Header string `json:"header,omitempty"`
	// TimestampHeader, if set, names a header holding the send time in
	// Unix seconds; the signature then covers "<timestamp>.<body>" and a
	// request further than MaxSkewSeconds from now is refused, so a captured
	// request cannot be replayed later. hmac-sha256 only.
	TimestampHeader string `json:"timestamp_header,omitempty"`
	// MaxSkewSeconds is how far, in seconds, the timestamp may be from
	// now; 0 means DefaultMaxSkew. At most 3600.
	MaxSkewSeconds int `json:"max_skew_seconds,omitempty"`
}

// RateLimit is a token bucket: Burst events at once, refilled at PerSecond.
// The zero value means DefaultRatePerSecond and DefaultBurst.
type RateLimit struct {
	// PerSecond is the sustained number of events per second.
	PerSecond float64 `json:"per_second,omitempty"`
	// Burst is the bucket size: events accepted at once after a quiet time.
	Burst int `json:"burst,omitempty"`
}

// Source is a sender allowed to post events: its name, the endpoints
// (kinds) it may use, how it authenticates and how fast it may send.
//
// The secret is never part of the JSON form: read it back and you get
// HasSecret and SecretID (the first 8 bytes of SHA-256 of the secret, in
// hex), enough to tell which secret is configured, not to recover it.
type Source struct {
	// Name identifies the source, as in sys/events/sources/:name.
	Name string `json:"name"`
	// Kinds lists the endpoints the source may post to.
	Kinds []Kind `json:"kinds"`
	// Auth is how requests are authenticated.
	Auth Auth `json:"auth"`
	// RateLimit bounds how many events per second are accepted.
	RateLimit RateLimit `json:"rate_limit"`
	// HasSecret is set on read when a secret is stored. Ignored on write.
	HasSecret bool `json:"has_secret"`
	// SecretID is set on read: hex of the first 8 bytes of SHA-256 of the
	// secret. Ignored on write.
	SecretID string `json:"secret_id,omitempty"`

	secret []byte
}

// nameRE is what source and rule names look like: they are path segments.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// validName reports whether name can be a source or rule name.
func validName(name string) bool { return nameRE.MatchString(name) }

// WithSecret returns a copy of s holding secret (bearer token or HMAC key).
// The store persists it; it never appears in s's JSON form.
func (s Source) WithSecret(secret []byte) Source {
	s.secret = slices.Clone(secret)
	s.HasSecret = len(secret) > 0
	s.SecretID = secretID(secret)
	return s
}

// KeepSecret returns a copy of s holding from's secret: for an update that
// changes a source's settings but not its secret.
func (s Source) KeepSecret(from Source) Source { return s.WithSecret(from.secret) }

// secretID is the public fingerprint of a secret.
func secretID(secret []byte) string {
	if len(secret) == 0 {
		return ""
	}
	h := sha256.Sum256(secret)
	return hex.EncodeToString(h[:8])
}

// Allows reports whether s may post events of kind k.
func (s Source) Allows(k Kind) bool { return slices.Contains(s.Kinds, k) }

// Validate checks s, including that it holds a secret of acceptable length,
// and returns an ErrInvalidSource naming the first field at fault.
func (s Source) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: source %q: %s: %s", ErrInvalidSource, s.Name, field, fmt.Sprintf(format, args...))
	}
	if !validName(s.Name) {
		return bad("name", "must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit")
	}
	if len(s.Kinds) == 0 {
		return bad("kinds", "empty; want one or more of alertmanager, cloudevents, generic")
	}
	for i, k := range s.Kinds {
		if !k.Valid() {
			return bad(fmt.Sprintf("kinds[%d]", i), "unknown kind %q", k)
		}
	}
	switch s.Auth.Method {
	case AuthBearer:
		if s.Auth.Header != "" || s.Auth.TimestampHeader != "" || s.Auth.MaxSkewSeconds != 0 {
			return bad("auth", "header, timestamp_header and max_skew_seconds apply to hmac-sha256 only")
		}
	case AuthHMACSHA256:
		if h := s.Auth.Header; h != "" && !validHeaderName(h) {
			return bad("auth.header", "%q is not a header name", h)
		}
		if h := s.Auth.TimestampHeader; h != "" && !validHeaderName(h) {
			return bad("auth.timestamp_header", "%q is not a header name", h)
		}
		if s.Auth.MaxSkewSeconds < 0 || s.Auth.MaxSkewSeconds > 3600 {
			return bad("auth.max_skew_seconds", "must be between 0 and 3600, got %d", s.Auth.MaxSkewSeconds)
		}
		if s.Auth.MaxSkewSeconds != 0 && s.Auth.TimestampHeader == "" {
			return bad("auth.max_skew_seconds", "needs timestamp_header")
		}
	default:
		return bad("auth.method", "want bearer or hmac-sha256, got %q", s.Auth.Method)
	}
	if n := len(s.secret); n < MinSecretLen || n > MaxSecretLen {
		return bad("secret", "must be %d to %d bytes, got %d", MinSecretLen, MaxSecretLen, n)
	}
	if s.Auth.Method == AuthBearer && !validToken(s.secret) {
		return bad("secret", "a bearer token must be printable ASCII without spaces")
	}
	rl := s.RateLimit
	if rl.PerSecond < 0 || math.IsNaN(rl.PerSecond) || math.IsInf(rl.PerSecond, 0) {
		return bad("rate_limit.per_second", "must be a positive number, got %v", rl.PerSecond)
	}
	if rl.Burst < 0 || rl.Burst > MaxBurst {
		return bad("rate_limit.burst", "must be between 1 and %d, got %d", MaxBurst, rl.Burst)
	}
	return nil
}

// effective returns rl with defaults applied.
func (rl RateLimit) effective() RateLimit {
	if rl.PerSecond == 0 {
		rl.PerSecond = DefaultRatePerSecond
	}
	if rl.Burst == 0 {
		rl.Burst = DefaultBurst
	}
	return rl
}

func validHeaderName(h string) bool {
	if h == "" || len(h) > 128 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func validToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// Authenticate checks that a request with header h and raw body body was
// sent by src, at time now. It returns nil or an error wrapping
// ErrUnauthenticated that says what was wrong (missing header, bad
// signature, stale timestamp) without echoing any secret. Comparisons take
// time independent of the secret.
func Authenticate(src Source, h http.Header, body []byte, now time.Time) error {
	if len(src.secret) == 0 {
		return fmt.Errorf("%w: source %q has no secret", ErrUnauthenticated, src.Name)
	}
	switch src.Auth.Method {
	case AuthBearer:
		v := h.Get("Authorization")
		scheme, tok, ok := strings.Cut(v, " ")
		if v == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
			return fmt.Errorf("%w: source %q: missing Authorization: Bearer header", ErrUnauthenticated, src.Name)
		}
		// Compare hashes so the comparison time does not depend on the
		// token's length either.
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		want := sha256.Sum256(src.secret)
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return fmt.Errorf("%w: source %q: wrong bearer token", ErrUnauthenticated, src.Name)
		}
		return nil
	case AuthHMACSHA256:
		name := src.Auth.Header
		if name == "" {
			name = DefaultSignatureHeader
		}
		v := h.Get(name)
		if v == "" {
			return fmt.Errorf("%w: source %q: missing %s header", ErrUnauthenticated, src.Name, name)
		}
		hexSig, ok := strings.CutPrefix(v, "sha256=")
		if !ok {
			return fmt.Errorf("%w: source %q: %s header: want sha256=<hex>", ErrUnauthenticated, src.Name, name)
		}
		sig, err := hex.DecodeString(hexSig)
		if err != nil || len(sig) != sha256.Size {
			return fmt.Errorf("%w: source %q: %s header: not 32 bytes of hex", ErrUnauthenticated, src.Name, name)
		}
		mac := hmac.New(sha256.New, src.secret)
		if tsName := src.Auth.TimestampHeader; tsName != "" {
			ts := h.Get(tsName)
			if ts == "" {
				return fmt.Errorf("%w: source %q: missing %s header", ErrUnauthenticated, src.Name, tsName)
			}
			sec, err := strconv.ParseInt(ts, 10, 64)
			if err != nil {
				return fmt.Errorf("%w: source %q: %s header: not Unix seconds", ErrUnauthenticated, src.Name, tsName)
			}
			skew := time.Duration(src.Auth.MaxSkewSeconds) * time.Second
			if skew == 0 {
				skew = DefaultMaxSkew
			}
			if d := now.Sub(time.Unix(sec, 0)); d > skew || d < -skew {
				return fmt.Errorf("%w: source %q: %s header: %s from now, more than %s", ErrUnauthenticated, src.Name, tsName, d.Round(time.Second), skew)
			}
			mac.Write([]byte(ts))
			mac.Write([]byte("."))
		}
		mac.Write(body)
		if !hmac.Equal(mac.Sum(nil), sig) {
			return fmt.Errorf("%w: source %q: bad signature", ErrUnauthenticated, src.Name)
		}
		return nil
	}
	return fmt.Errorf("%w: source %q: unknown auth method %q", ErrUnauthenticated, src.Name, src.Auth.Method)
}

// Sign returns the value of the signature header for body, as a sender
// configured with secret must compute it. ts is the timestamp header value,
// or "" when the source uses none. For tests and for clients.
func Sign(secret []byte, ts string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	if ts != "" {
		mac.Write([]byte(ts))
		mac.Write([]byte("."))
	}
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

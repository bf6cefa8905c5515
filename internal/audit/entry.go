package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"sync"
	"time"

	"github.com/edgevault/edgevault/internal/audit/leaf"
	"github.com/edgevault/edgevault/internal/jsonenc"
)

// Entry types, as Vault writes them in "type".
const (
	TypeRequest  = "request"
	TypeResponse = "response"
)

// Entry is one audited event in Vault's file audit device format. Tokens,
// accessors and every string inside request and response data are written
// as HMACs under the zone's Salt; the rest is written as is.
type Entry struct {
	Time     time.Time
	Type     string // TypeRequest or TypeResponse
	Auth     *Auth  // nil when the caller was not authenticated
	Request  *Request
	Response *Response // response entries only
	Error    string
	// Memo, when set, remembers the HMACs of tokens and accessors, so the
	// request and response entries of one request compute each once.
	Memo *Memo
	// SkipDevice names a device ("file/") that does not get this entry: the
	// device a request disables, so a broken device can always be disabled.
	SkipDevice string
}

// Memo remembers a few HMACs (one request's token and accessor). Not safe
// for concurrent use; the zero Memo is ready.
type Memo struct {
	n    int
	in   [4]string
	hash [4][]byte // the quoted JSON string "hmac-sha256:..."
}

// appendHashString appends the quoted HMAC of v, computing it at most once.
func (m *Memo) appendHashString(b []byte, s *Salt, v string) []byte {
	for i := 0; i < m.n; i++ {
		if m.in[i] == v {
			return append(b, m.hash[i]...)
		}
	}
	start := len(b)
	b = s.appendHashString(b, v)
	if m.n < len(m.in) {
		m.in[m.n], m.hash[m.n] = v, append([]byte(nil), b[start:]...)
		m.n++
	}
	return b
}

// Auth is who made a request, or the token a response created.
type Auth struct {
	ClientToken    string // HMAC'd
	Accessor       string // HMAC'd
	DisplayName    string
	Policies       []string
	TokenPolicies  []string
	Metadata       map[string]string
	EntityID       string
	TokenType      string
	TokenTTL       int64 // seconds
	TokenIssueTime time.Time
}

// Request is what was asked.
type Request struct {
	ID                  string
	Operation           string
	MountPoint          string
	MountType           string
	ClientToken         string // HMAC'd
	ClientTokenAccessor string // HMAC'd
	Namespace           string // the zone; "" is the root zone
	Path                string // relative to /v1/
	Data                any    // strings HMAC'd; nil is omitted
	RemoteAddress       string
	RemotePort          int
}

// Response is what was answered.
type Response struct {
	MountPoint string
	MountType  string
	StatusCode int
	Auth       *Auth // a token the response created
	LeaseID    string
	Data       any // strings HMAC'd; nil is omitted
	Warnings   []string
}

// Salt is a zone's audit salt: the HMAC-SHA256 key that hides secrets and
// tokens in audit entries, so an operator who knows a value can find it
// (sys/audit-hash) but the log does not reveal it.
type Salt struct {
	pool sync.Pool
}

// NewSalt returns the Salt for key (32 random bytes kept in the zone's storage).
func NewSalt(key []byte) *Salt {
	k := append([]byte(nil), key...)
	s := &Salt{}
	s.pool.New = func() any { return hmac.New(sha256.New, k) }
	return s
}

// HashPrefix starts every hashed value, as in Vault.
const HashPrefix = "hmac-sha256:"

// Hash returns "hmac-sha256:<hex>" of v.
func (s *Salt) Hash(v string) string { return string(s.appendHash(nil, v)) }

func (s *Salt) appendHash(b []byte, v string) []byte {
	h := s.pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(v))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	s.pool.Put(h)
	b = append(b, HashPrefix...)
	return hex.AppendEncode(b, sum[:])
}

// appendHashString appends the JSON string of v's hash (hex needs no escaping).
func (s *Salt) appendHashString(b []byte, v string) []byte {
	b = append(b, '"')
	b = s.appendHash(b, v)
	return append(b, '"')
}

// field is one committed field of an encoded line: its name and where its
// value lies in the line.
type field struct {
	name       string
	start, end int
}

// encoder writes an Entry as one compact JSON line and records where each
// field (see package leaf) lies, so the leaf is computed without parsing.
// Members are written in name order at both levels, so the fields come out
// sorted, as the leaf needs them (JSON objects are unordered: readers of
// Vault's format do not mind).
type encoder struct {
	b      []byte
	fields []field
	lf     []leaf.Field
	salt   *Salt
	memo   *Memo
	enc    jsonenc.Strings
	first  bool
}

// key starts member key of the open object; name is the field it commits
// as (its full dotted name), or "" inside a nested value.
func (e *encoder) key(name, key string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.b = append(e.b, '"')
	e.b = append(e.b, key...) // keys are constant identifiers: no escaping needed
	e.b = append(e.b, '"', ':')
	if name != "" {
		e.fields = append(e.fields, field{name: name, start: len(e.b)})
	}
}

func (e *encoder) done(name string) {
	if name != "" {
		e.fields[len(e.fields)-1].end = len(e.b)
	}
}

func (e *encoder) str(name, key, v string) {
	e.key(name, key)
	e.b = jsonenc.AppendString(e.b, v)
	e.done(name)
}

func (e *encoder) hashed(name, key, v string) {
	e.key(name, key)
	switch {
	case v == "":
		e.b = append(e.b, `""`...)
	case e.memo != nil:
		e.b = e.memo.appendHashString(e.b, e.salt, v)
	default:
		e.b = e.salt.appendHashString(e.b, v)
	}
	e.done(name)
}

func (e *encoder) int(name, key string, v int64) {
	e.key(name, key)
	e.b = strconv.AppendInt(e.b, v, 10)
	e.done(name)
}

func (e *encoder) strings(name, key string, v []string) {
	e.key(name, key)
	if v == nil {
		v = []string{}
	}
	e.b = jsonenc.AppendStrings(e.b, v)
	e.done(name)
}

func (e *encoder) value(name, key string, v any) error {
	e.key(name, key)
	var err error
	e.b, err = e.enc.AppendValue(e.b, v)
	e.done(name)
	return err
}

// open starts an object value for key; close ends it.
func (e *encoder) open(key string) {
	e.key("", key)
	e.b = append(e.b, '{')
	e.first = true
}

func (e *encoder) close() {
	e.b = append(e.b, '}')
	e.first = false
}

// Field names, spelled once.
const (
	fAuthAccessor       = "auth.accessor"
	fAuthClientToken    = "auth.client_token"
	fAuthDisplayName    = "auth.display_name"
	fAuthEntityID       = "auth.entity_id"
	fAuthMetadata       = "auth.metadata"
	fAuthPolicies       = "auth.policies"
	fAuthTokenIssueTime = "auth.token_issue_time"
	fAuthTokenPolicies  = "auth.token_policies"
	fAuthTokenTTL       = "auth.token_ttl"
	fAuthTokenType      = "auth.token_type"
)

// authMembers writes a's members; top says whether they are fields (the
// top-level "auth") or inside one (response.auth).
func (e *encoder) authMembers(a *Auth, top bool) {
	n := func(name string) string {
		if top {
			return name
		}
		return ""
	}
	e.hashed(n(fAuthAccessor), "accessor", a.Accessor)
	e.hashed(n(fAuthClientToken), "client_token", a.ClientToken)
	e.str(n(fAuthDisplayName), "display_name", a.DisplayName)
	e.str(n(fAuthEntityID), "entity_id", a.EntityID)
	if len(a.Metadata) > 0 {
		e.key(n(fAuthMetadata), "metadata")
		e.b, _ = jsonenc.AppendValue(e.b, a.Metadata)
		e.done(n(fAuthMetadata))
	}
	e.strings(n(fAuthPolicies), "policies", a.Policies)
	if !a.TokenIssueTime.IsZero() {
		e.str(n(fAuthTokenIssueTime), "token_issue_time", a.TokenIssueTime.UTC().Format(time.RFC3339))
	}
	e.strings(n(fAuthTokenPolicies), "token_policies", a.TokenPolicies)
	e.int(n(fAuthTokenTTL), "token_ttl", a.TokenTTL)
	e.str(n(fAuthTokenType), "token_type", a.TokenType)
}

// encode writes en as one JSON line (ending in '\n') into e.b and records
// its fields, in name order.
func (e *encoder) encode(en *Entry) error {
	e.b = append(e.b[:0], '{')
	e.fields = e.fields[:0]
	e.first = true
	e.memo = en.Memo
	e.enc.Value = e.salt.appendHashString
	if a := en.Auth; a != nil {
		e.open("auth")
		e.authMembers(a, true)
		e.close()
	}
	e.str("error", "error", en.Error)
	if r := en.Request; r != nil {
		e.open("request")
		e.hashed("request.client_token", "client_token", r.ClientToken)
		e.hashed("request.client_token_accessor", "client_token_accessor", r.ClientTokenAccessor)
		if r.Data != nil {
			if err := e.value("request.data", "data", r.Data); err != nil {
				return err
			}
		}
		e.str("request.id", "id", r.ID)
		e.str("request.mount_point", "mount_point", r.MountPoint)
		e.str("request.mount_type", "mount_type", r.MountType)
		e.key("request.namespace", "namespace")
		if r.Namespace == "" {
			e.b = append(e.b, `{"id":"root"}`...)
		} else {
			e.b = append(e.b, `{"id":`...)
			e.b = jsonenc.AppendString(e.b, r.Namespace)
			e.b = append(e.b, `,"path":`...)
			e.b = jsonenc.AppendString(e.b, r.Namespace+"/")
			e.b = append(e.b, '}')
		}
		e.done("request.namespace")
		e.str("request.operation", "operation", r.Operation)
		e.str("request.path", "path", r.Path)
		e.str("request.remote_address", "remote_address", r.RemoteAddress)
		e.int("request.remote_port", "remote_port", int64(r.RemotePort))
		e.close()
	}
	if r := en.Response; r != nil {
		e.open("response")
		if r.Auth != nil {
			e.key("response.auth", "auth")
			e.b = append(e.b, '{')
			e.first = true
			e.authMembers(r.Auth, false)
			e.b = append(e.b, '}')
			e.first = false
			e.done("response.auth")
		}
		if r.Data != nil {
			if err := e.value("response.data", "data", r.Data); err != nil {
				return err
			}
		}
		if r.LeaseID != "" {
			e.str("response.lease_id", "lease_id", r.LeaseID)
		}
		e.str("response.mount_point", "mount_point", r.MountPoint)
		e.str("response.mount_type", "mount_type", r.MountType)
		if r.StatusCode != 0 {
			e.int("response.status_code", "status_code", int64(r.StatusCode))
		}
		if len(r.Warnings) > 0 {
			e.strings("response.warnings", "warnings", r.Warnings)
		}
		e.close()
	}
	e.str("time", "time", en.Time.UTC().Format(time.RFC3339Nano))
	e.str("type", "type", en.Type)
	e.b = append(e.b, '}', '\n')
	return nil
}

// leafFields returns the recorded fields (in name order) as values in line,
// a copy of e.b.
func (e *encoder) leafFields(line []byte) []leaf.Field {
	e.lf = e.lf[:0]
	for _, f := range e.fields {
		e.lf = append(e.lf, leaf.Field{Name: f.name, Value: line[f.start:f.end]})
	}
	return e.lf
}

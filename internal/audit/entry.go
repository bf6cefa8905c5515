package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"slices"
	"strconv"
	"strings"
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
type encoder struct {
	b      []byte
	fields []field
	salt   *Salt
	enc    jsonenc.Strings
	lf     []leaf.Field
	top    string // the open top-level object, "" at top level
	first  bool
}

func (e *encoder) key(name string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.b = jsonenc.AppendString(e.b, name)
	e.b = append(e.b, ':')
	fn := name
	if e.top != "" {
		fn = e.top + "." + name
	}
	e.fields = append(e.fields, field{name: fn, start: len(e.b)})
}

func (e *encoder) done() { e.fields[len(e.fields)-1].end = len(e.b) }

func (e *encoder) str(name, v string) {
	e.key(name)
	e.b = jsonenc.AppendString(e.b, v)
	e.done()
}

func (e *encoder) hashed(name, v string) {
	e.key(name)
	if v == "" {
		e.b = append(e.b, `""`...)
	} else {
		e.b = e.salt.appendHashString(e.b, v)
	}
	e.done()
}

func (e *encoder) int(name string, v int64) {
	e.key(name)
	e.b = strconv.AppendInt(e.b, v, 10)
	e.done()
}

func (e *encoder) strings(name string, v []string) {
	e.key(name)
	if v == nil {
		v = []string{}
	}
	e.b = jsonenc.AppendStrings(e.b, v)
	e.done()
}

func (e *encoder) value(name string, v any) error {
	e.key(name)
	var err error
	e.b, err = e.enc.AppendValue(e.b, v)
	e.done()
	return err
}

// object opens a top-level object member whose members are fields.
func (e *encoder) object(name string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.b = jsonenc.AppendString(e.b, name)
	e.b = append(e.b, ':', '{')
	e.top, e.first = name, true
}

func (e *encoder) closeObject() {
	e.b = append(e.b, '}')
	e.top, e.first = "", false
}

// nested writes an object inside a field (response.auth).
func (e *encoder) auth(name string, a *Auth) {
	e.key(name)
	top, first := e.top, e.first
	e.top, e.first = "", true
	mark := len(e.fields)
	e.b = append(e.b, '{')
	e.authMembers(a)
	e.b = append(e.b, '}')
	e.fields = e.fields[:mark] // members of a nested object are not fields
	e.top, e.first = top, first
	e.done()
}

func (e *encoder) authMembers(a *Auth) {
	e.hashed("client_token", a.ClientToken)
	e.hashed("accessor", a.Accessor)
	e.str("display_name", a.DisplayName)
	e.strings("policies", a.Policies)
	e.strings("token_policies", a.TokenPolicies)
	if len(a.Metadata) > 0 {
		e.key("metadata")
		e.b, _ = jsonenc.AppendValue(e.b, a.Metadata)
		e.done()
	}
	e.str("entity_id", a.EntityID)
	e.str("token_type", a.TokenType)
	e.int("token_ttl", a.TokenTTL)
	if !a.TokenIssueTime.IsZero() {
		e.str("token_issue_time", a.TokenIssueTime.UTC().Format(time.RFC3339))
	}
}

// encode writes en as one JSON line (ending in '\n') into e.b and records its fields.
func (e *encoder) encode(en *Entry) error {
	e.b = append(e.b[:0], '{')
	e.fields = e.fields[:0]
	e.first = true
	e.enc.Value = e.salt.appendHashString
	e.str("time", en.Time.UTC().Format(time.RFC3339Nano))
	e.str("type", en.Type)
	if a := en.Auth; a != nil {
		e.object("auth")
		e.authMembers(a)
		e.closeObject()
	}
	if r := en.Request; r != nil {
		e.object("request")
		e.str("id", r.ID)
		e.str("operation", r.Operation)
		e.str("mount_point", r.MountPoint)
		e.str("mount_type", r.MountType)
		e.hashed("client_token", r.ClientToken)
		e.hashed("client_token_accessor", r.ClientTokenAccessor)
		e.key("namespace")
		if r.Namespace == "" {
			e.b = append(e.b, `{"id":"root"}`...)
		} else {
			e.b = append(e.b, `{"id":`...)
			e.b = jsonenc.AppendString(e.b, r.Namespace)
			e.b = append(e.b, `,"path":`...)
			e.b = jsonenc.AppendString(e.b, r.Namespace+"/")
			e.b = append(e.b, '}')
		}
		e.done()
		e.str("path", r.Path)
		if r.Data != nil {
			if err := e.value("data", r.Data); err != nil {
				return err
			}
		}
		e.str("remote_address", r.RemoteAddress)
		e.int("remote_port", int64(r.RemotePort))
		e.closeObject()
	}
	if r := en.Response; r != nil {
		e.object("response")
		e.str("mount_point", r.MountPoint)
		e.str("mount_type", r.MountType)
		if r.StatusCode != 0 {
			e.int("status_code", int64(r.StatusCode))
		}
		if r.Auth != nil {
			e.auth("auth", r.Auth)
		}
		if r.LeaseID != "" {
			e.str("lease_id", r.LeaseID)
		}
		if r.Data != nil {
			if err := e.value("data", r.Data); err != nil {
				return err
			}
		}
		if len(r.Warnings) > 0 {
			e.strings("warnings", r.Warnings)
		}
		e.closeObject()
	}
	e.str("error", en.Error)
	e.b = append(e.b, '}', '\n')
	return nil
}

// leafFields returns the recorded fields as values in line (a copy of e.b),
// sorted by name.
func (e *encoder) leafFields(line []byte) []leaf.Field {
	e.lf = e.lf[:0]
	for _, f := range e.fields {
		e.lf = append(e.lf, leaf.Field{Name: f.name, Value: line[f.start:f.end]})
	}
	slices.SortFunc(e.lf, func(a, b leaf.Field) int { return strings.Compare(a.Name, b.Name) })
	return e.lf
}

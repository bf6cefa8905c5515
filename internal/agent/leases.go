package agent

// Leased credentials (the agent's lease cache).
//
// A credential-issuing request an application sends through the agent with
// its own token — GET <mount>/creds/<role> (database) or PUT/POST
// <mount>/issue/<role> (pki) — is proxied to the server while online; when
// the answer is a 200 carrying a lease (lease_id and a positive
// lease_duration), the agent keeps it, keyed by sha256 over the token, the
// operation, the path and query, the namespace and the body. An identical
// request is then answered from memory while the lease is valid, with the
// same body but a fresh request_id, lease_duration set to the seconds left
// and a warning saying where it came from. So an application that asks for
// its credential at every start gets the same one back instead of a new
// database user or certificate each time, and gets it while the control
// plane is unreachable, for as long as the credential is valid.
//
// While online one goroutine keeps the cached leases alive, with the
// caller's token (it is stored with the entry; the agent's own identity is
// never used): a renewable lease is renewed (sys/leases/renew, increment =
// the original lease_duration) at about two thirds of its current life; a
// lease that is not renewable, or whose renewal came back shorter than
// asked (its max_ttl is near), is re-issued at 80-90 % of its life by
// replaying the original request, and the new answer replaces the cached
// one. The old lease is left to expire, not revoked: applications may still
// use it. A 4xx answer (token or lease revoked, role deleted) evicts the
// entry; network errors and 5xx are retried with backoff. A lease revoked
// through the agent (sys/leases/revoke) is evicted at once.
//
// Offline, an entry is served only while its expiry — judged on the
// server's clock (agent.serverNow), from the time the request was SENT, so
// never later than the server's own — is in the future; past it the answer
// is 503 naming the path. Entries are sealed into the agent's cache file
// (cache.PutBlob) and read back at the first request after a restart.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/jsonenc"
)

// Lease cache limits and timings.
const (
	// leaseBlobKind is the kind of the lease cache's blobs in the cache file.
	leaseBlobKind = "lease"
	// leaseMaxEntries and leaseMaxBytes bound the lease cache; past them
	// the oldest entries are evicted (and the answer says so).
	leaseMaxEntries, leaseMaxBytes = 1000, 32 << 20
	// leaseMaxRequest bounds the body of a cacheable request: a larger one
	// is proxied and not cached.
	leaseMaxRequest = 64 << 10
	// leaseMaxResponse bounds a cacheable answer (a PKI answer with its
	// chain is a few KiB).
	leaseMaxResponse = 512 << 10
	// leasePoll is the longest the renewal loop sleeps without looking at
	// the clock (a resumed VM, a clock that jumps).
	leasePoll = time.Second
	// leaseRenewAt and leaseReissueAt are the shares of a lease's current
	// life after which it is renewed or re-issued; leaseJitter spreads them.
	leaseRenewAt, leaseReissueAt, leaseJitter = 0.62, 0.80, 0.10
	// leaseMinRetry and leaseMaxRetry bound the wait after a failed
	// renewal or re-issue (network error, 5xx, 429).
	leaseMinRetry, leaseMaxRetry = time.Second, time.Minute
	// leaseCallTimeout bounds one renewal or re-issue.
	leaseCallTimeout = 30 * time.Second
	// leaseOnlineMargin is the least life (share) an entry must have left
	// to be served while online; with less it is fetched again.
	leaseOnlineMargin = 0.05
)

// leaseEntry is one cached answer. Entries are immutable once published in
// leaseCache.entries: updates replace them. The exported fields are what
// is sealed into the cache file.
type leaseEntry struct {
	// The request, replayed to re-issue. Token is the caller's.
	Method    string `json:"method"`
	Path      string `json:"path"` // URL path with its ?query
	Namespace string `json:"namespace,omitempty"`
	Token     string `json:"token"`
	Body      []byte `json:"body,omitempty"`
	// Response is the server's answer, as it sent it.
	Response  json.RawMessage `json:"response"`
	LeaseID   string          `json:"lease_id"`
	Renewable bool            `json:"renewable"`
	// Increment is the original lease_duration (seconds), asked for at
	// each renewal.
	Increment int64 `json:"increment"`
	// Granted is when the current lease term started and Expires when it
	// ends, on the server's clock; Granted is when the request was sent.
	Granted time.Time `json:"granted"`
	Expires time.Time `json:"expires"`
	// Stored is when the entry was first cached (eviction order).
	Stored time.Time `json:"stored"`
	// Reissue: the next action re-issues (the lease is not renewable or
	// reached its max_ttl).
	Reissue bool `json:"reissue,omitempty"`

	key  [32]byte
	size int
	// rest is Response without request_id, lease_duration and warnings
	// (a JSON object), and warnings its warnings: answers are built from
	// them without decoding the response again.
	rest     []byte
	warnings []string
	next     time.Time     // next renewal or re-issue, server clock
	retry    time.Duration // the wait after the next failure
}

// leaseCache holds the leased answers; its zero value is ready and starts
// (loads the cache file, starts the renewal loop) on first use.
type leaseCache struct {
	once    sync.Once
	a       *agent
	hc      *http.Client
	wake    chan struct{}
	mu      sync.Mutex // guards entries and bytes
	entries map[[32]byte]*leaseEntry
	// used is when each entry was last answered from the cache (memory
	// only): an entry nobody asked for during its term is left to expire
	// rather than re-issued, so one request does not mint credentials for
	// as long as its token lives.
	used  map[[32]byte]time.Time
	bytes int
	pmu   sync.Mutex // serialises writes of entries to the cache file
}

// start loads the persisted entries and starts the renewal loop, once.
func (l *leaseCache) start(a *agent) {
	l.once.Do(func() {
		l.a, l.hc = a, a.httpClient(false)
		l.wake = make(chan struct{}, 1)
		l.entries = map[[32]byte]*leaseEntry{}
		l.used = map[[32]byte]time.Time{}
		l.load()
		go l.run()
	})
}

// load reads the entries sealed in the cache file.
func (l *leaseCache) load() {
	var stale [][32]byte
	dropped, err := l.a.cache.Blobs(leaseBlobKind, func(k string, v []byte) error {
		e := new(leaseEntry)
		if err := json.Unmarshal(v, e); err != nil || e.LeaseID == "" || e.Token == "" {
			l.a.log.Warn("lease cache: dropping an unreadable entry", "err", err)
			if raw, herr := hex.DecodeString(k); herr == nil && len(raw) == 32 {
				stale = append(stale, [32]byte(raw))
			}
			return nil
		}
		e.key = leaseKey(e.Token, operation(e.Method), e.Path, e.Namespace, e.Body)
		if hex.EncodeToString(e.key[:]) != k {
			l.a.log.Warn("lease cache: dropping an entry stored under another key", "path", pathOnly(e.Path))
			if raw, herr := hex.DecodeString(k); herr == nil && len(raw) == 32 {
				stale = append(stale, [32]byte(raw))
			}
			return nil
		}
		if err := e.prepare(); err != nil {
			l.a.log.Warn("lease cache: dropping an unreadable entry", "path", pathOnly(e.Path), "err", err)
			stale = append(stale, e.key)
			return nil
		}
		e.size = entrySize(e)
		e.retry = leaseMinRetry
		schedule(e)
		l.entries[e.key] = e
		l.bytes += e.size
		return nil
	})
	if err != nil {
		l.a.log.Warn("lease cache: cannot read the stored entries", "err", err)
	}
	if dropped > 0 {
		l.a.log.Warn("lease cache: stored entries failed authentication and were dropped", "dropped", dropped)
	}
	for _, k := range stale {
		l.persist(k)
	}
	l.mu.Lock()
	evicted := l.makeRoom(0)
	l.mu.Unlock()
	for _, k := range evicted {
		l.persist(k)
	}
	if len(l.entries) > 0 {
		l.a.log.Info("lease cache: entries restored", "entries", len(l.entries))
	}
}

// credentialPath reports whether method and the URL path name a
// credential-issuing endpoint: GET /v1/<mount>/creds/<role> or PUT/POST
// /v1/<mount>/issue/<role>.
func credentialPath(method, p string) bool {
	rest, ok := strings.CutPrefix(p, "/v1/")
	if !ok || strings.HasSuffix(rest, "/") || strings.Contains(rest, "//") {
		return false
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return false
	}
	mountAndKind := rest[:i]
	j := strings.LastIndexByte(mountAndKind, '/')
	if j <= 0 {
		return false
	}
	mount, kind := mountAndKind[:j], mountAndKind[j+1:]
	if mount == "sys" || mount == "auth" || strings.HasPrefix(mount, "sys/") || strings.HasPrefix(mount, "auth/") {
		return false
	}
	switch kind {
	case "creds":
		return method == http.MethodGet
	case "issue":
		return method == http.MethodPut || method == http.MethodPost
	}
	return false
}

// leaseKey is the cache key of a request: sha256 over its length-prefixed
// token, operation, path (with query), namespace and body.
func leaseKey(token, op, path, ns string, body []byte) [32]byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, f := range [][]byte{[]byte("edgevault agent lease cache v1"), []byte(token), []byte(op), []byte(path), []byte(ns), body} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(f)))])
		h.Write(f)
	}
	return [32]byte(h.Sum(nil))
}

// pathOnly is a stored path without its query, for messages and logs.
func pathOnly(p string) string {
	p, _, _ = strings.Cut(p, "?")
	return strings.TrimPrefix(p, "/v1/")
}

func entrySize(e *leaseEntry) int {
	return len(e.Response) + len(e.Body) + len(e.Path) + len(e.Token) + len(e.Namespace) + len(e.LeaseID) + 256
}

// schedule sets e.next: the next renewal (renewable) or re-issue, jittered,
// within the current term.
func schedule(e *leaseEntry) {
	frac := leaseRenewAt
	if e.Reissue || !e.Renewable {
		frac = leaseReissueAt
	}
	frac += rand.Float64() * leaseJitter
	e.next = e.Granted.Add(time.Duration(float64(e.Expires.Sub(e.Granted)) * frac))
}

// serve answers (or proxies and caches) a request of a credential-issuing
// path, or evicts the lease a proxied sys/leases/revoke revoked. It reports
// whether it handled the request; if not, ServeHTTP goes on as without a
// lease cache. tok is the caller's token, never the agent's local token.
func (l *leaseCache) serve(h *localAPI, w http.ResponseWriter, r *http.Request, tok string) bool {
	if tok == "" || r.Header.Get("X-Vault-Wrap-TTL") != "" {
		return false
	}
	revoke := revokePath(r.Method, r.URL.Path)
	if !revoke && !credentialPath(r.Method, r.URL.Path) {
		return false
	}
	l.start(h.a)
	body, ok := peekBody(r)
	if !ok {
		return false
	}
	online := h.a.online.Load()
	if revoke {
		if !online {
			return false
		}
		l.proxyRevoke(h, w, r, body)
		return true
	}
	path := r.URL.Path
	if r.URL.RawQuery != "" {
		path += "?" + r.URL.RawQuery
	}
	ns := strings.Trim(header(r, nsHeader), "/")
	key := leaseKey(tok, operation(r.Method), path, ns, body)
	l.mu.Lock()
	e := l.entries[key]
	l.mu.Unlock()
	now := h.a.serverNow()
	if e != nil {
		left := e.Expires.Sub(now)
		margin := time.Duration(float64(e.Expires.Sub(e.Granted)) * leaseOnlineMargin)
		if left > 0 && (!online || left > margin) {
			l.answer(h, w, r, e, now, online)
			return true
		}
		if !online {
			h.refuse(w, r, false, http.StatusServiceUnavailable, "edgevault agent: the leased credential cached for "+pathOnly(path)+
				" expired at "+e.Expires.UTC().Format(time.RFC3339)+" and the control plane is unreachable; it cannot be served until the agent reaches it")
			return true
		}
	}
	if !online {
		return false
	}
	cw := &captureWriter{w: w, limit: leaseMaxResponse}
	h.proxy.ServeHTTP(cw, r)
	if cw.passthrough {
		return true
	}
	resp := cw.buf.Bytes()
	ne := &leaseEntry{Method: r.Method, Path: path, Namespace: ns, Token: tok, Body: body, Granted: now, Stored: now, key: key}
	if cw.status() == http.StatusOK && w.Header().Get("Content-Encoding") == "" && ne.takeAnswer(resp, now) {
		if evicted := l.put(ne, e); evicted > 0 {
			if out, err := rewrite(resp, nil, -1, "edgevault agent: the agent's lease cache is full ("+strconv.Itoa(leaseMaxEntries)+
				" entries or "+strconv.Itoa(leaseMaxBytes>>20)+" MiB); the oldest "+strconv.Itoa(evicted)+" cached credential(s) were evicted"); err == nil {
				resp = out
				w.Header().Del("Content-Length")
			}
		}
	}
	cw.flush(resp)
	return true
}

// takeAnswer fills e's answer from a server response; false if it carries
// no lease (or is not a JSON object).
func (e *leaseEntry) takeAnswer(resp []byte, granted time.Time) bool {
	var lr struct {
		LeaseID       string          `json:"lease_id"`
		LeaseDuration int64           `json:"lease_duration"`
		Renewable     bool            `json:"renewable"`
		WrapInfo      json.RawMessage `json:"wrap_info"`
	}
	if err := json.Unmarshal(resp, &lr); err != nil || lr.LeaseID == "" || lr.LeaseDuration <= 0 ||
		(len(lr.WrapInfo) > 0 && string(lr.WrapInfo) != "null") {
		return false
	}
	e.Response = bytes.Clone(resp)
	if e.prepare() != nil {
		return false
	}
	e.LeaseID, e.Renewable, e.Increment = lr.LeaseID, lr.Renewable, lr.LeaseDuration
	e.Granted, e.Expires, e.Reissue = granted, granted.Add(time.Duration(lr.LeaseDuration)*time.Second), false
	e.size, e.retry = entrySize(e), leaseMinRetry
	schedule(e)
	return true
}

// prepare splits e.Response into e.rest and e.warnings.
func (e *leaseEntry) prepare() error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(e.Response, &m); err != nil {
		return err
	}
	e.warnings = nil
	if raw := m["warnings"]; len(raw) > 0 {
		_ = json.Unmarshal(raw, &e.warnings) // null or not a list: dropped
	}
	dropFields(m)
	rest, err := json.Marshal(m)
	if err != nil {
		return err
	}
	e.rest = rest
	return nil
}

// dropFields removes the fields an answer from the cache replaces, in any
// case: JSON decoders (Go's among them) match names case-insensitively.
func dropFields(m map[string]json.RawMessage) {
	for k := range m {
		if strings.EqualFold(k, "request_id") || strings.EqualFold(k, "lease_duration") || strings.EqualFold(k, "warnings") {
			delete(m, k)
		}
	}
}

// appendAnswer appends the answer to a request served from e: its
// response with requestID, leaseDuration and warn added to its warnings.
func (e *leaseEntry) appendAnswer(b, requestID []byte, leaseDuration int64, warn string) []byte {
	b = append(b, `{"request_id":`...)
	b = jsonenc.AppendString(b, string(requestID))
	b = append(b, `,"lease_duration":`...)
	b = strconv.AppendInt(b, leaseDuration, 10)
	b = append(b, `,"warnings":[`...)
	for _, w := range e.warnings {
		b = jsonenc.AppendString(b, w)
		b = append(b, ',')
	}
	b = jsonenc.AppendString(b, warn)
	b = append(b, ']')
	if len(e.rest) > 2 { // not {}
		b = append(b, ',')
	}
	return append(b, e.rest[1:]...)
}

// put publishes e (replacing old, if still current), persists it and
// wakes the renewal loop; it returns how many entries were evicted to
// make room.
func (l *leaseCache) put(e, old *leaseEntry) int {
	l.mu.Lock()
	if cur := l.entries[e.key]; cur != nil {
		if cur != old && old != nil {
			l.mu.Unlock()
			return 0 // replaced meanwhile by a fresher answer
		}
		l.bytes -= cur.size
		delete(l.entries, e.key)
		delete(l.used, e.key)
	}
	evicted := l.makeRoom(e.size)
	l.entries[e.key] = e
	l.bytes += e.size
	l.mu.Unlock()
	for _, k := range evicted {
		l.persist(k)
	}
	l.persist(e.key)
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return len(evicted)
}

// makeRoom evicts the oldest entries until one of size more fits. Called
// with mu held.
func (l *leaseCache) makeRoom(size int) [][32]byte {
	var evicted [][32]byte
	for len(l.entries) > 0 && (len(l.entries)+min(size, 1) > leaseMaxEntries || l.bytes+size > leaseMaxBytes) {
		var oldest *leaseEntry
		for _, e := range l.entries {
			if oldest == nil || e.Stored.Before(oldest.Stored) {
				oldest = e
			}
		}
		delete(l.entries, oldest.key)
		delete(l.used, oldest.key)
		l.bytes -= oldest.size
		evicted = append(evicted, oldest.key)
	}
	if len(evicted) > 0 {
		l.a.log.Warn("lease cache full: the oldest cached credentials were evicted; they are fetched from the server again when asked for",
			"evicted", len(evicted), "max_entries", leaseMaxEntries, "max_bytes", leaseMaxBytes)
	}
	return evicted
}

// evict removes e if it is still the current entry of its key.
func (l *leaseCache) evict(e *leaseEntry, why string) {
	l.mu.Lock()
	if l.entries[e.key] != e {
		l.mu.Unlock()
		return
	}
	delete(l.entries, e.key)
	delete(l.used, e.key)
	l.bytes -= e.size
	l.mu.Unlock()
	l.a.log.Info("lease cache: entry evicted", "path", pathOnly(e.Path), "lease_id", e.LeaseID, "why", why)
	l.persist(e.key)
}

// persist writes the current state of key (its entry, or its absence) to
// the cache file. Serialised, and it reads the map under pmu, so the file
// ends with the latest state whatever the order of callers.
func (l *leaseCache) persist(key [32]byte) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	l.mu.Lock()
	e := l.entries[key]
	l.mu.Unlock()
	k := hex.EncodeToString(key[:])
	var err error
	if e == nil {
		err = l.a.cache.DeleteBlob(leaseBlobKind, k)
	} else {
		var raw []byte
		if raw, err = json.Marshal(e); err == nil {
			err = l.a.cache.PutBlob(leaseBlobKind, k, raw)
		}
	}
	if err != nil && !errors.Is(err, cache.ErrClosed) {
		l.a.log.Warn("lease cache: cannot write an entry to the cache file; it is not kept across a restart", "err", err)
	}
}

// answer serves e, audited as a cache read is.
func (l *leaseCache) answer(h *localAPI, w http.ResponseWriter, r *http.Request, e *leaseEntry, now time.Time, online bool) {
	var id [36]byte
	ae := newEntry(r, appendRequestID(id[:0]), online)
	left := max(1, int64(e.Expires.Sub(now)/time.Second)) // 0 would mean "no lease"
	var warn string
	if online {
		warn = "edgevault agent: served from the agent's lease cache (the agent renews or re-issues this lease); lease_duration is the time left"
	} else {
		ae.stale = max(0, int64(now.Sub(e.Granted)/time.Second))
		warn = "edgevault agent: the control plane is unreachable; served from the agent's lease cache, valid for another " +
			strconv.FormatInt(left, 10) + "s (until " + e.Expires.UTC().Format(time.RFC3339) + "); it is not renewed while the agent is offline"
	}
	out := e.appendAnswer(make([]byte, 0, len(e.rest)+len(warn)+160), ae.requestID, left, warn)
	l.mu.Lock()
	l.used[e.key] = now
	l.mu.Unlock()
	ae.status = http.StatusOK
	if !h.audited(w, &ae, false) {
		return
	}
	hdr := w.Header()
	if !online {
		hdr[StaleHeader] = []string{strconv.FormatInt(ae.stale, 10)}
	}
	hdr["Content-Type"] = jsonCT
	hdr["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(out, '\n'))
}

// rewrite returns resp with a new request_id (if not nil), lease_duration
// (if ≥ 0) and warn appended to its warnings. (Answers from the cache are
// built by appendAnswer; rewrite amends a proxied answer.)
func rewrite(resp, requestID []byte, leaseDuration int64, warn string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(resp, &m); err != nil {
		return nil, err
	}
	var warnings []string
	if raw := m["warnings"]; len(raw) > 0 {
		_ = json.Unmarshal(raw, &warnings) // null or not a list: replaced
	}
	rid, ld := m["request_id"], m["lease_duration"]
	dropFields(m)
	m["request_id"], m["lease_duration"] = rid, ld
	if requestID != nil {
		m["request_id"], _ = json.Marshal(string(requestID))
	}
	if leaseDuration >= 0 {
		m["lease_duration"] = strconv.AppendInt(nil, leaseDuration, 10)
	}
	for k, v := range m {
		if v == nil {
			delete(m, k)
		}
	}
	m["warnings"], _ = json.Marshal(append(warnings, warn))
	return json.Marshal(m)
}

// peekBody reads a request's body (up to leaseMaxRequest) and puts it back
// for the proxy; false if it is larger or unreadable (the request is then
// proxied as is, uncached).
func peekBody(r *http.Request) ([]byte, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, leaseMaxRequest+1))
	if err != nil || len(body) > leaseMaxRequest {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		return nil, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, true
}

// revokePath reports whether the request revokes one lease:
// PUT/POST sys/leases/revoke[/:id] or sys/revoke/:id.
func revokePath(method, p string) bool {
	if method != http.MethodPut && method != http.MethodPost {
		return false
	}
	return p == "/v1/sys/leases/revoke" || strings.HasPrefix(p, "/v1/sys/leases/revoke/") || strings.HasPrefix(p, "/v1/sys/revoke/")
}

// proxyRevoke passes a lease revocation to the server and, if it
// succeeds, evicts every entry of that lease.
func (l *leaseCache) proxyRevoke(h *localAPI, w http.ResponseWriter, r *http.Request, body []byte) {
	id := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v1/sys/leases/revoke"), "/")
	if strings.HasPrefix(r.URL.Path, "/v1/sys/revoke/") {
		id = strings.TrimPrefix(r.URL.Path, "/v1/sys/revoke/")
	}
	if id == "" {
		var b struct {
			LeaseID string `json:"lease_id"`
		}
		_ = json.Unmarshal(body, &b)
		id = b.LeaseID
	}
	sw := &statusWriter{ResponseWriter: w}
	h.proxy.ServeHTTP(sw, r)
	if id == "" || sw.code < 200 || sw.code > 299 {
		return
	}
	var gone []*leaseEntry
	l.mu.Lock()
	for _, e := range l.entries {
		if e.LeaseID == id {
			gone = append(gone, e)
		}
	}
	l.mu.Unlock()
	for _, e := range gone {
		l.evict(e, "revoked through the agent")
	}
}

// purge evicts every entry whose request path (without /v1/ and its
// query) or lease ID starts with one of prefixes ("" matches every entry)
// and returns how many it evicted: a revocation pushed by the server
// (revocations.go). The entries' leases are not revoked on the server (the
// revocation did that, or decided not to); they are only no longer served.
func (l *leaseCache) purge(why string, prefixes ...string) int {
	var gone []*leaseEntry
	l.mu.Lock()
	for _, e := range l.entries {
		p := pathOnly(e.Path)
		for _, pre := range prefixes {
			if strings.HasPrefix(p, pre) || strings.HasPrefix(e.LeaseID, pre) {
				gone = append(gone, e)
				break
			}
		}
	}
	l.mu.Unlock()
	for _, e := range gone {
		l.evict(e, why)
	}
	return len(gone)
}

// statusWriter remembers the status written through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 && code >= 200 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// captureWriter buffers a proxied answer (up to limit) so that it can be
// cached and amended before it is sent; past limit it passes the answer
// through. Headers go straight into w's header map, sent at flush.
type captureWriter struct {
	w           http.ResponseWriter
	limit       int
	code        int
	buf         bytes.Buffer
	passthrough bool
}

func (c *captureWriter) Header() http.Header { return c.w.Header() }

func (c *captureWriter) WriteHeader(code int) {
	switch {
	case c.passthrough:
		c.w.WriteHeader(code)
	case code < 200:
		c.w.WriteHeader(code) // informational: passed on at once
	case c.code == 0:
		c.code = code
	}
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.passthrough {
		return c.w.Write(p)
	}
	if c.buf.Len()+len(p) <= c.limit {
		return c.buf.Write(p)
	}
	c.passthrough = true
	c.w.WriteHeader(c.status())
	if _, err := c.w.Write(c.buf.Bytes()); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Flush is a no-op while buffering (ReverseProxy flushes through
// http.ResponseController).
func (c *captureWriter) Flush() {
	if f, ok := c.w.(http.Flusher); ok && c.passthrough {
		f.Flush()
	}
}

func (c *captureWriter) status() int {
	if c.code == 0 {
		return http.StatusOK
	}
	return c.code
}

// flush sends the buffered answer, with body in place of what was buffered.
func (c *captureWriter) flush(body []byte) {
	if c.passthrough {
		return
	}
	if c.w.Header().Get("Content-Length") == "" && c.code != http.StatusNoContent && c.code != http.StatusNotModified {
		c.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	c.w.WriteHeader(c.status())
	_, _ = c.w.Write(body)
}

// run renews and re-issues the cached leases while the agent is online,
// until the agent's cache is closed (the agent stopped).
func (l *leaseCache) run() {
	defer l.hc.CloseIdleConnections()
	for !l.a.cache.Closed() {
		e, wait := l.due()
		if !l.a.online.Load() {
			e, wait = nil, leasePoll
		}
		if e == nil {
			t := time.NewTimer(min(wait, leasePoll))
			select {
			case <-t.C:
			case <-l.wake:
				t.Stop()
			}
			continue
		}
		l.act(e)
	}
}

// due returns the entry whose next action is earliest if it is due, or
// nil and how long until the next one is.
func (l *leaseCache) due() (*leaseEntry, time.Duration) {
	now := l.a.serverNow()
	l.mu.Lock()
	defer l.mu.Unlock()
	var first *leaseEntry
	for _, e := range l.entries {
		if first == nil || e.next.Before(first.next) {
			first = e
		}
	}
	if first == nil {
		return nil, leasePoll
	}
	if wait := first.next.Sub(now); wait > 0 {
		return nil, wait
	}
	return first, 0
}

// act renews or re-issues e and publishes the outcome.
func (l *leaseCache) act(e *leaseEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), leaseCallTimeout)
	defer cancel()
	sent := l.a.serverNow()
	ne := *e
	what := "renew"
	var status int
	var resp []byte
	var err error
	if e.Reissue || !e.Renewable || !sent.Before(e.Expires) {
		l.mu.Lock()
		used := l.used[e.key]
		l.mu.Unlock()
		if used.Before(e.Granted) && e.Granted.After(e.Stored) {
			// Re-issued once already and not asked for since: let it end.
			l.evict(e, "not requested during its last term; left to expire instead of re-issued")
			return
		}
		what = "re-issue"
		status, resp, err = l.call(ctx, e.Method, e.Path, e.Namespace, e.Token, e.Body)
		if err == nil && status == http.StatusOK {
			if ne.takeAnswer(resp, sent) {
				l.put(&ne, e)
				l.a.log.Info("lease cache: credential re-issued", "path", pathOnly(e.Path), "old_lease_id", e.LeaseID, "lease_id", ne.LeaseID)
				return
			}
			l.evict(e, "the re-issued answer carries no lease")
			return
		}
	} else {
		body, _ := json.Marshal(map[string]any{"lease_id": e.LeaseID, "increment": e.Increment})
		status, resp, err = l.call(ctx, http.MethodPut, "/v1/sys/leases/renew", e.Namespace, e.Token, body)
		if err == nil && status == http.StatusOK {
			var rr struct {
				LeaseDuration int64 `json:"lease_duration"`
				Renewable     bool  `json:"renewable"`
			}
			if json.Unmarshal(resp, &rr) == nil && rr.LeaseDuration > 0 {
				ne.Granted, ne.Expires, ne.Renewable = sent, sent.Add(time.Duration(rr.LeaseDuration)*time.Second), rr.Renewable
				// Shorter than asked: the lease's max_ttl is near; renewing
				// again gains nothing, re-issue before it ends.
				// (The server truncates to whole seconds: one less is not short.)
				ne.Reissue = !rr.Renewable || rr.LeaseDuration < e.Increment-1
				ne.retry = leaseMinRetry
				schedule(&ne)
				l.put(&ne, e)
				return
			}
			// Renewed to nothing: re-issue now.
			ne.Reissue, ne.next = true, sent
			l.put(&ne, e)
			return
		}
	}
	if err == nil && status >= 400 && status < 500 && status != http.StatusTooManyRequests {
		l.evict(e, fmt.Sprintf("the server refused the %s (%d %s)", what, status, serverErrors(resp)))
		return
	}
	if err == nil {
		err = fmt.Errorf("status %d %s", status, serverErrors(resp))
	}
	l.a.log.Warn("lease cache: "+what+" failed; retrying", "path", pathOnly(e.Path), "lease_id", e.LeaseID, "in", e.retry,
		"expires", e.Expires.UTC().Format(time.RFC3339), "err", err)
	ne.next = sent.Add(e.retry)
	ne.retry = min(2*e.retry, leaseMaxRetry)
	l.mu.Lock()
	if l.entries[e.key] == e {
		l.entries[e.key] = &ne
	}
	l.mu.Unlock()
}

// call sends one request to the server with the caller's token.
func (l *leaseCache) call(ctx context.Context, method, path, ns, token string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(l.a.cfg.ServerAddr, "/")+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set(tokenHeader, token)
	if ns != "" {
		req.Header.Set(nsHeader, ns)
	}
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, leaseMaxResponse+1))
	if err != nil {
		return 0, nil, err
	}
	if len(raw) > leaseMaxResponse {
		return 0, nil, fmt.Errorf("%s: answer larger than %d bytes", pathOnly(path), leaseMaxResponse)
	}
	return resp.StatusCode, raw, nil
}

// serverErrors is the "errors" of a Vault error body, for logs.
func serverErrors(resp []byte) string {
	var b struct {
		Errors []string `json:"errors"`
	}
	if json.Unmarshal(resp, &b) != nil || len(b.Errors) == 0 {
		return ""
	}
	return clip(strings.Join(b.Errors, "; "))
}

package agent

import (
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/jsonenc"
)

// Header names of the local API.
const (
	// StaleHeader is set on reads served while the agent is not online: the
	// whole seconds since the entry was last known current.
	StaleHeader = "X-Edgevault-Stale"
	tokenHeader = "X-Vault-Token"
	nsHeader    = "X-Vault-Namespace"
)

// Shared header values; net/http only reads them.
var (
	jsonCT  = []string{"application/json"}
	noStore = []string{"no-store"}
)

// localAPI is the agent's http.Handler.
type localAPI struct {
	a     *agent
	token []byte
	proxy *httputil.ReverseProxy
	bufs  sync.Pool // *[]byte response buffers of cache reads
	// leases caches leased credentials (leases.go); ready as zero value.
	leases leaseCache
}

// ServeHTTP routes a local request: the agent's own endpoints and cache
// reads are answered here, everything else is proxied while online.
func (h *localAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == "/v1/sys/health" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		h.health(w)
		return
	}
	if rs := h.a.revoked.Load(); rs != nil {
		h.refuse(w, r, false, http.StatusForbidden, "edgevault agent: this agent was revoked by the control plane (revocation "+
			strconv.Quote(rs.RevocationID)+" at "+rs.AppliedAt.Format(time.RFC3339)+"); it serves nothing")
		return
	}
	if h.a.refused.Load() {
		// Not merely offline: the server knows this agent and refuses it. A
		// revocation it could not deliver (the stream is refused) must not
		// be outrun by the cache.
		h.refuse(w, r, false, http.StatusForbidden, "edgevault agent: the control plane refuses this agent (quarantined, revoked, "+
			"its zone sealed, or asked to re-attest), so it serves nothing until the control plane accepts it again")
		return
	}
	tok := header(r, tokenHeader)
	bearer := false
	if tok == "" {
		if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			tok, bearer = v, true
		}
	}
	local := subtle.ConstantTimeCompare([]byte(tok), h.token) == 1
	online := h.a.online.Load()
	if r.Method == http.MethodGet {
		if p == "/v1/auth/token/lookup-self" {
			switch {
			case local:
				h.lookupSelf(w, r)
			case online:
				h.proxy.ServeHTTP(w, r)
			default:
				h.refuse(w, r, false, http.StatusForbidden, "permission denied: while the control plane is unreachable the agent answers only its local token")
			}
			return
		}
		if mount, kind, key, ok := kvPath(p); ok && (r.URL.RawQuery == "" || r.URL.Query().Get("list") == "") {
			switch {
			case local:
				h.kvRead(w, r, mount, kind, key, online)
			case online:
				h.proxy.ServeHTTP(w, r)
			default:
				h.refuse(w, r, false, http.StatusForbidden, "permission denied: the agent serves its cache only to its local token")
			}
			return
		}
	}
	// Leased credentials (leases.go): served from, or captured into, the
	// lease cache; callers' own tokens only.
	if !local && h.leases.serve(h, w, r, tok) {
		return
	}
	// Offline certificate issuance from the agent's PKI sub-CAs (subca.go):
	// the local token only, while the control plane is unreachable.
	if local && !online && h.a.subCAs.serve(h, w, r) {
		return
	}
	if !online {
		h.refuse(w, r, false, http.StatusServiceUnavailable, ErrControlPlaneUnreachable.Error())
		return
	}
	if local {
		// The local token means nothing to the server: never send it there.
		r.Header.Del(tokenHeader)
		if bearer {
			r.Header.Del("Authorization")
		}
	}
	h.proxy.ServeHTTP(w, r)
}

// kvPath splits /v1/<mount>/<data|metadata>/<key>; mounts served from the
// cache are one path segment.
func kvPath(p string) (mount, kind, key string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v1/")
	if !ok {
		return "", "", "", false
	}
	mount, rest, ok = strings.Cut(rest, "/")
	if !ok || mount == "" || mount == "sys" || mount == "auth" {
		return "", "", "", false
	}
	kind, key, ok = strings.Cut(rest, "/")
	if !ok || key == "" || (kind != "data" && kind != "metadata") || strings.HasSuffix(key, "/") {
		return "", "", "", false
	}
	return mount, kind, key, true
}

// newEntry starts the audit entry of a request the agent answers itself.
func newEntry(r *http.Request, id []byte, online bool) readEntry {
	return readEntry{requestID: id, operation: operation(r.Method), path: strings.TrimPrefix(r.URL.Path, "/v1/"),
		online: online, stale: -1, remote: remoteHost(r.RemoteAddr)}
}

// operation is Vault's name for what a method does.
func operation(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		return "read"
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return "update"
	case http.MethodDelete:
		return "delete"
	case "LIST":
		return "list"
	}
	return strings.ToLower(method)
}

// audited spools e and reports whether the answer may go out: a request
// whose entry the spool cannot take is answered 503 instead.
func (h *localAPI) audited(w http.ResponseWriter, e *readEntry, refusal bool) bool {
	if err := h.a.audit.record(e, refusal); err != nil {
		h.a.log.Error("local API: the audit spool refused an entry; the request is not served", "path", e.path, "err", err)
		writeError(w, http.StatusServiceUnavailable, "edgevault agent: the request cannot be audited (the agent's audit spool refused its entry), so it is not served")
		return false
	}
	return true
}

// refuse answers a request the agent refuses itself, audited.
func (h *localAPI) refuse(w http.ResponseWriter, r *http.Request, online bool, status int, msg string) {
	var id [36]byte
	e := newEntry(r, appendRequestID(id[:0]), online)
	e.status, e.err = status, msg
	if !h.audited(w, &e, true) {
		return
	}
	if msg == "" {
		writeError(w, status)
	} else {
		writeError(w, status, msg)
	}
}

// kvRead answers a KV v2 read from the cache. It reads memory only.
func (h *localAPI) kvRead(w http.ResponseWriter, r *http.Request, mount, kind, key string, online bool) {
	if ns := strings.Trim(header(r, nsHeader), "/"); ns != "" && ns != h.a.cfg.Zone {
		h.refuse(w, r, online, http.StatusBadRequest, "this agent serves zone "+strconv.Quote(h.a.cfg.Zone)+", not "+strconv.Quote(ns))
		return
	}
	path := mount + "/" + key
	version := 0
	if kind == "data" && r.URL.RawQuery != "" {
		if v := r.URL.Query().Get("version"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				h.refuse(w, r, online, http.StatusBadRequest, "version must be a non-negative integer")
				return
			}
			version = n
		}
	}
	if h.a.revoking.covers(path) {
		h.refuse(w, r, online, http.StatusServiceUnavailable, "edgevault agent: a revocation covering "+path+
			" is being applied after the agent reconnected; it is not served")
		return
	}
	lookup := path
	if kind == "metadata" {
		lookup = metaPath(path)
	}
	e, err := h.a.cache.Get(lookup, version)
	if err != nil {
		status, msg := h.cacheError(path, err, online)
		h.refuse(w, r, online, status, msg)
		return
	}
	var id [36]byte
	ae := newEntry(r, appendRequestID(id[:0]), online)
	ae.version = version
	status := http.StatusOK
	if kind == "data" && (e.Destroyed || (!e.DeletionTime.IsZero() && !e.DeletionTime.After(h.a.serverNow()))) {
		status = http.StatusNotFound // Vault answers a deleted version 404, with its metadata
	}
	bp, _ := h.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer h.bufs.Put(bp)
	buf := (*bp)[:0]
	buf = append(buf, `{"request_id":"`...)
	buf = append(buf, ae.requestID...)
	buf = append(buf, `","lease_id":"","renewable":false,"lease_duration":0,"data":`...)
	if kind == "data" {
		buf = append(buf, `{"data":`...)
		if status == http.StatusNotFound {
			buf = append(buf, "null"...)
		} else {
			buf = append(buf, e.Data...)
		}
		buf = append(buf, `,"metadata":`...)
		buf = append(buf, e.Metadata...)
		buf = append(buf, '}')
	} else {
		buf = append(buf, e.Data...)
	}
	buf = append(buf, `,"wrap_info":null,"warnings":`...)
	hdr := w.Header()
	if online {
		buf = append(buf, "null"...)
	} else {
		secs := int64(e.Age / time.Second)
		ae.stale = secs
		hdr[StaleHeader] = []string{strconv.FormatInt(secs, 10)}
		buf = append(buf, '[')
		buf = jsonenc.AppendString(buf, "edgevault agent: the control plane is unreachable; served from the agent's cache, last known current "+
			strconv.FormatInt(secs, 10)+"s ago (max_stale "+e.MaxStale.String()+")")
		buf = append(buf, ']')
	}
	buf = append(buf, `,"auth":null,"mount_type":"kv"}`+"\n"...)
	ae.status = status
	if !h.audited(w, &ae, false) {
		delete(hdr, StaleHeader)
		return
	}
	hdr["Content-Type"] = jsonCT
	hdr["Cache-Control"] = noStore
	w.WriteHeader(status)
	_, _ = w.Write(buf)
	if cap(buf) <= maxPooled {
		*bp = buf
	}
}

// maxPooled bounds the response buffers kept for reuse.
const maxPooled = 64 << 10

// header returns the first value of a canonical header name without
// canonicalising it again (net/http stores keys canonicalised).
func header(r *http.Request, canonical string) string {
	if v := r.Header[canonical]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// cacheError is the answer to a read the cache cannot serve: its status
// and message ("" for a bare 404).
func (h *localAPI) cacheError(path string, err error, online bool) (int, string) {
	switch {
	case errors.Is(err, cache.ErrTooStale):
		return http.StatusServiceUnavailable, "edgevault agent: " + path + " is cached but past its max_stale since it was last known current; " +
			"it cannot be served until the agent reaches the control plane"
	case online && (errors.Is(err, cache.ErrNotCached) || errors.Is(err, cache.ErrTampered)):
		// Online, the cache holds every secret this zone lets agents
		// cache: a miss is a secret that does not exist, or one the agent
		// may not cache (read it from the server with a server token).
		return http.StatusNotFound, ""
	case errors.Is(err, cache.ErrNotCached), errors.Is(err, cache.ErrTampered):
		return http.StatusServiceUnavailable, "edgevault agent: " + path + " is not in the agent's cache and the control plane is unreachable"
	default:
		h.a.log.Warn("local API: cache read", "path", path, "err", err)
		return http.StatusServiceUnavailable, "edgevault agent: the cache is not available"
	}
}

// healthStatus is GET /v1/sys/health.
type healthStatus struct {
	Mode          string `json:"mode"`
	AgentID       string `json:"agent_id"`
	SPIFFEID      string `json:"spiffe_id"`
	Zone          string `json:"zone"`
	Watermark     uint64 `json:"watermark"`
	CertExpiry    string `json:"cert_expiry"`
	CachedEntries int    `json:"cached_entries"`
	Attestation   string `json:"attestation"`
	// EKHash, LastQuote and PCRDigest describe the agent's TPM and its last
	// quote (empty without a TPM).
	EKHash    string `json:"ek_hash,omitempty"`
	LastQuote string `json:"last_quote,omitempty"`
	PCRDigest string `json:"pcr_digest,omitempty"`
	// OfflinePKI maps each offline_pki role to the expiry of the sub-CA the
	// agent holds for it ("" for none yet).
	OfflinePKI map[string]string `json:"offline_pki,omitempty"`
	// AuditPending is how many audit entries wait in the spool for the server.
	AuditPending int64 `json:"audit_pending"`
	// AuditError is the last failure to forward them ("" if none since).
	AuditError string `json:"audit_error,omitempty"`
	// AuditUnrecorded counts refusals answered without an entry because
	// the spool was nearly full.
	AuditUnrecorded int64 `json:"audit_unrecorded_refusals,omitempty"`
	// Revoked is set once the control plane revoked the agent (mode is
	// then "revoked"): it serves nothing.
	Revoked *revokedState `json:"revoked,omitempty"`
}

func (h *localAPI) health(w http.ResponseWriter) {
	a := h.a
	st := a.cache.Stats()
	id := a.id.Load()
	hs := healthStatus{Mode: a.mode(st).String(), Zone: a.cfg.Zone, Watermark: st.Watermark,
		CachedEntries: st.Entries, Attestation: a.attest.strength(), AuditPending: a.audit.spool.Stats().Pending,
		AuditUnrecorded: a.audit.skipped.Load(), OfflinePKI: a.subCAs.status()}
	if e := a.audit.lastErr.Load(); e != nil {
		hs.AuditError = *e
	}
	if a.tpm != nil {
		hs.EKHash = a.tpm.ekHash
		if q := a.tpm.last.Load(); q != nil {
			hs.LastQuote, hs.PCRDigest = q.at.UTC().Format(time.RFC3339), q.pcrDigest
		}
	}
	if id != nil {
		hs.AgentID, hs.SPIFFEID = id.agentID, id.spiffeID
		if exp := id.expiry(); !exp.IsZero() {
			hs.CertExpiry = exp.UTC().Format(time.RFC3339)
		}
	}
	status := http.StatusOK
	if hs.Mode == modeIsolated.String() {
		status = http.StatusServiceUnavailable
	}
	if a.refused.Load() {
		hs.Mode, status = "refused", http.StatusServiceUnavailable // the server refuses this agent
	}
	if rs := a.revoked.Load(); rs != nil {
		hs.Mode, hs.Revoked, status = "revoked", rs, http.StatusServiceUnavailable
	}
	writeJSON(w, status, hs)
}

// lookupSelf answers GET auth/token/lookup-self for the local token.
func (h *localAPI) lookupSelf(w http.ResponseWriter, r *http.Request) {
	a := h.a
	var id [36]byte
	e := newEntry(r, appendRequestID(id[:0]), a.online.Load())
	e.status = http.StatusOK
	if !h.audited(w, &e, false) {
		return
	}
	meta := map[string]string{"zone": a.cfg.Zone}
	if id := a.id.Load(); id != nil && id.agentID != "" {
		meta["agent_id"] = id.agentID
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"request_id": string(e.requestID), "lease_id": "", "renewable": false, "lease_duration": 0,
		"data": map[string]any{
			"accessor": "", "creation_ttl": 0, "display_name": "edgevault-agent-local", "entity_id": "",
			"expire_time": nil, "explicit_max_ttl": 0, "id": string(h.token), "meta": meta, "num_uses": 0,
			"orphan": true, "path": "auth/token/lookup-self", "policies": []string{"edgevault-agent-cache-read"},
			"renewable": false, "ttl": 0, "type": "service",
		},
		"wrap_info": nil, "warnings": nil, "auth": nil, "mount_type": "token",
	})
}

// appendRequestID appends a random UUID-shaped request ID. It identifies
// a response, it is not a secret: math/rand is enough.
func appendRequestID(b []byte) []byte {
	var raw [16]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		raw[i], raw[8+i] = byte(hi>>(8*i)), byte(lo>>(8*i))
	}
	var h [32]byte
	hex.Encode(h[:], raw[:])
	b = append(b, h[0:8]...)
	b = append(b, '-')
	b = append(b, h[8:12]...)
	b = append(b, '-')
	b = append(b, h[12:16]...)
	b = append(b, '-')
	b = append(b, h[16:20]...)
	b = append(b, '-')
	return append(b, h[20:32]...)
}

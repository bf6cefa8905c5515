package agent

// Offline certificate issuance (the agent's PKI sub-CAs).
//
// For each role in Config.OfflinePKI the agent, while online, makes an
// ECDSA P-256 key and has the server certify it as a sub-CA for that role
// (POST sys/agents/pki-sub-ca over mTLS; the role must have
// allow_offline_sub_ca). The sub-CA has path length 0 and name constraints
// that permit the role's names only; it is refreshed, with a new key, at two
// thirds of its life. The key, the certificate and the role's rules are
// sealed into the agent's cache file (cache.PutBlob, under the cache key, so
// under the TPM when there is one), so an agent restarted while the server
// is unreachable still has them.
//
// While the control plane is unreachable — and only then, and only for the
// local token — PUT/POST /v1/<mount>/issue/<role> is answered by the agent:
// the request is checked by the pki package's own issue code against the
// role's rules (pki.LocalIssuer), a key of the role's type is made, and the
// leaf is signed by the sub-CA, valid no longer than the role's max_ttl and
// the sub-CA itself. The answer has Vault's issue shape, with a warning; its
// audit entry (in the spool, forwarded later) carries the serial. A role
// whose sub-CA the agent does not hold (the server refused it, or never
// answered) gets 503. Online, the request goes to the server as any other.
//
// Trade-off (docs/pki.md): a stolen agent can mint certificates for the
// role's names until its sub-CA expires, or is revoked and the CRL is seen.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/engine/pki"
	"github.com/edgevault/edgevault/internal/logical"
)

// Offline sub-CA timings and limits.
const (
	// subCABlobKind is the kind of the sub-CAs' blobs in the cache file.
	subCABlobKind = "pki-sub-ca"
	// subCAPoll is the longest the refresh loop sleeps without looking at
	// the clock.
	subCAPoll = time.Second
	// subCAMinRetry and subCAMaxRetry bound the wait after a failed fetch;
	// a refusal (4xx: the role does not allow it) waits subCAMaxRetry.
	subCAMinRetry, subCAMaxRetry = time.Second, time.Minute
	// subCACallTimeout bounds one fetch.
	subCACallTimeout = 30 * time.Second
	// maxIssueBody bounds the body of a local issue request.
	maxIssueBody = 64 << 10
)

// subCAs are the agent's offline sub-CAs, one slot per configured role.
// A nil *subCAs (no OfflinePKI) serves nothing.
type subCAs struct {
	a     *agent
	slots []*subCASlot
}

// status maps each configured role ("<mount>/<role>") to the expiry of the
// sub-CA the agent holds for it ("" for none), for sys/health.
func (s *subCAs) status() map[string]string {
	if s == nil || len(s.slots) == 0 {
		return nil
	}
	out := make(map[string]string, len(s.slots))
	for _, sl := range s.slots {
		out[sl.mount+"/"+sl.role] = ""
		if h := sl.held.Load(); h != nil {
			out[sl.mount+"/"+sl.role] = h.issuer.CA.NotAfter.UTC().Format(time.RFC3339)
		}
	}
	return out
}

// subCASlot is one configured role and the sub-CA the agent holds for it.
type subCASlot struct {
	mount, role string
	path        string // "/v1/<mount>/issue/<role>"
	held        atomic.Pointer[heldSubCA]
	lastErr     atomic.Pointer[string] // the last fetch failure, "" after a success
	retryAt     time.Time              // run's goroutine only
	retry       time.Duration          // run's goroutine only
}

// heldSubCA is a sub-CA with its key, ready to issue.
type heldSubCA struct {
	issuer    *pki.LocalIssuer
	serial    string
	refreshAt time.Time
}

// newSubCAs returns the sub-CA slots of cfg, nil if there are none, with
// the sub-CAs sealed in the cache loaded (so an agent restarted offline
// issues from its first request). The cache must be open.
func newSubCAs(a *agent) *subCAs {
	if len(a.cfg.OfflinePKI) == 0 {
		return nil
	}
	s := &subCAs{a: a}
	for _, o := range a.cfg.OfflinePKI {
		m := strings.Trim(o.Mount, "/")
		sl := &subCASlot{mount: m, role: o.Role, path: "/v1/" + m + "/issue/" + o.Role}
		s.load(sl)
		s.slots = append(s.slots, sl)
	}
	return s
}

// key is the slot's blob key.
func (sl *subCASlot) key() string { return sl.mount + "/issue/" + sl.role }

// run fetches and refreshes the sub-CAs while the agent is online, until
// ctx ends.
func (s *subCAs) run(ctx context.Context) {
	if s == nil {
		return
	}
	for {
		if s.a.online.Load() && s.a.revoked.Load() == nil {
			if id := s.a.id.Load(); id != nil && id.cert != nil {
				now := time.Now()
				for _, sl := range s.slots {
					if ctx.Err() == nil && sl.due(s.a.serverNow(), now) {
						// A client per fetch (they are rare): it presents
						// the current certificate, whatever renewal did.
						hc := s.a.httpClientAs(id)
						s.refresh(ctx, hc, sl, now)
						hc.CloseIdleConnections()
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(subCAPoll):
		}
	}
}

// due reports whether sl needs a (new) sub-CA and may try now.
func (sl *subCASlot) due(serverNow, now time.Time) bool {
	if now.Before(sl.retryAt) {
		return false
	}
	h := sl.held.Load()
	return h == nil || !serverNow.Before(h.refreshAt)
}

// refresh fetches a new sub-CA for sl, and seals it into the cache.
func (s *subCAs) refresh(ctx context.Context, hc *http.Client, sl *subCASlot, now time.Time) {
	h, blob, err := s.fetch(ctx, hc, sl)
	if err == nil {
		if perr := s.a.cache.PutBlob(subCABlobKind, sl.key(), blob); perr != nil {
			// Still usable from memory; a restarted agent needs the server once.
			s.a.log.Warn("offline PKI: the sub-CA could not be sealed into the cache", "mount", sl.mount, "role", sl.role, "err", perr)
		}
		sl.held.Store(h)
		empty := ""
		sl.lastErr.Store(&empty)
		sl.retry, sl.retryAt = 0, time.Time{}
		s.a.log.Info("offline PKI: sub-CA installed", "mount", sl.mount, "role", sl.role, "serial_number", h.serial,
			"expires", h.issuer.CA.NotAfter.UTC().Format(time.RFC3339), "refresh_at", h.refreshAt.UTC().Format(time.RFC3339))
		return
	}
	msg := err.Error()
	sl.lastErr.Store(&msg)
	if errors.Is(err, errSubCARefused) && strings.Contains(msg, "allow_offline_sub_ca") && sl.held.Load() != nil {
		// The role no longer allows it: stop issuing offline now rather
		// than at the old sub-CA's expiry (which the server may revoke).
		sl.held.Store(nil)
		if derr := s.a.cache.DeleteBlob(subCABlobKind, sl.key()); derr != nil {
			s.a.log.Warn("offline PKI: drop the sealed sub-CA", "mount", sl.mount, "role", sl.role, "err", derr)
		}
		s.a.log.Warn("offline PKI: the role no longer allows an offline sub-CA; the agent's sub-CA is dropped", "mount", sl.mount, "role", sl.role)
	}
	switch {
	case errors.Is(err, errSubCARefused):
		sl.retry = subCAMaxRetry
	case sl.retry == 0:
		sl.retry = subCAMinRetry
	default:
		sl.retry = min(2*sl.retry, subCAMaxRetry)
	}
	sl.retryAt = now.Add(sl.retry)
	s.a.log.Warn("offline PKI: no sub-CA from the server; retrying", "mount", sl.mount, "role", sl.role, "in", sl.retry, "err", err)
}

// errSubCARefused: the server answered the sub-CA request with a 4xx.
var errSubCARefused = errors.New("the server refused the sub-CA")

// subCABlob is what the cache keeps of a sub-CA: the key and the server's
// answer (its data), as received.
type subCABlob struct {
	Key    []byte          `json:"key"` // PKCS#8 DER
	Answer json.RawMessage `json:"answer"`
}

// fetch asks the server for a sub-CA for a new key and returns it with its
// blob.
func (s *subCAs) fetch(ctx context.Context, hc *http.Client, sl *subCASlot) (*heldSubCA, []byte, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	body, err := json.Marshal(map[string]string{"mount": sl.mount, "role": sl.role,
		"public_key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, subCACallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(s.a.cfg.ServerAddr, "/")+"/v1/sys/agents/pki-sub-ca", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(nsHeader, s.a.cfg.Zone)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("read the answer: %w", err)
	}
	var env struct {
		Data   json.RawMessage `json:"data"`
		Errors []string        `json:"errors"`
	}
	_ = json.Unmarshal(raw, &env)
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		return nil, nil, fmt.Errorf("%w: %s: %s", errSubCARefused, resp.Status, strings.Join(env.Errors, "; "))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("server: %s: %s", resp.Status, strings.Join(env.Errors, "; "))
	}
	h, err := parseSubCA(env.Data, key, sl.role)
	if err != nil {
		return nil, nil, fmt.Errorf("the server's sub-CA: %w", err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	blob, err := json.Marshal(subCABlob{Key: k, Answer: env.Data})
	if err != nil {
		return nil, nil, err
	}
	h.issuer.Clock = s.a.serverNow
	return h, blob, nil
}

// subCAAnswer is the data of the server's sys/agents/pki-sub-ca answer.
type subCAAnswer struct {
	Certificate  string          `json:"certificate"`
	CAChain      []string        `json:"ca_chain"`
	SerialNumber string          `json:"serial_number"`
	Constraints  pki.Constraints `json:"constraints"`
}

// parseSubCA checks a sub-CA answer for key and role: a CA certificate for
// key, signed by the first certificate of its chain, and the rules of role.
func parseSubCA(data []byte, key *ecdsa.PrivateKey, role string) (*heldSubCA, error) {
	var ans subCAAnswer
	if err := json.Unmarshal(data, &ans); err != nil {
		return nil, err
	}
	blk, _ := pem.Decode([]byte(ans.Certificate))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("certificate: want a PEM CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	switch {
	case !cert.IsCA || !cert.BasicConstraintsValid:
		return nil, errors.New("certificate: not a CA certificate")
	case !key.PublicKey.Equal(cert.PublicKey):
		return nil, errors.New("certificate: not for the agent's key")
	case len(cert.PermittedDNSDomains) == 0:
		return nil, errors.New("certificate: no name constraints")
	case ans.Constraints.Role() != role:
		return nil, fmt.Errorf("constraints: for role %q, not %q", ans.Constraints.Role(), role)
	case len(ans.CAChain) == 0 || len(ans.CAChain) > 16:
		return nil, fmt.Errorf("ca_chain: %d certificates, want 1 to 16", len(ans.CAChain))
	case !cert.NotAfter.After(cert.NotBefore):
		return nil, errors.New("certificate: empty validity period")
	}
	pblk, _ := pem.Decode([]byte(ans.CAChain[0]))
	if pblk == nil || pblk.Type != "CERTIFICATE" {
		return nil, errors.New("ca_chain[0]: want a PEM CERTIFICATE")
	}
	parent, err := x509.ParseCertificate(pblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca_chain[0]: %w", err)
	}
	if err := cert.CheckSignatureFrom(parent); err != nil {
		return nil, fmt.Errorf("certificate: not signed by ca_chain[0]: %w", err)
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	chain := append([]string{strings.TrimSuffix(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})), "\n")}, ans.CAChain...)
	return &heldSubCA{
		issuer:    &pki.LocalIssuer{Constraints: ans.Constraints, CA: cert, Key: key, Chain: chain},
		serial:    ans.SerialNumber,
		refreshAt: cert.NotBefore.Add(life * 2 / 3),
	}, nil
}

// load installs sl's sealed sub-CA, if the cache holds a valid one.
func (s *subCAs) load(sl *subCASlot) {
	raw, err := s.a.cache.GetBlob(subCABlobKind, sl.key())
	if errors.Is(err, cache.ErrNotCached) {
		return
	}
	if err != nil {
		s.a.log.Warn("offline PKI: the sealed sub-CA cannot be read; the agent needs the server once", "mount", sl.mount, "role", sl.role, "err", err)
		return
	}
	h, err := decodeSubCABlob(raw, sl.role)
	if err == nil && !s.a.serverNow().Before(h.issuer.CA.NotAfter) {
		err = errors.New("expired")
	}
	if err != nil {
		s.a.log.Info("offline PKI: the sealed sub-CA is not usable; dropping it", "mount", sl.mount, "role", sl.role, "err", err)
		_ = s.a.cache.DeleteBlob(subCABlobKind, sl.key())
		return
	}
	h.issuer.Clock = s.a.serverNow
	sl.held.Store(h)
	s.a.log.Info("offline PKI: sealed sub-CA loaded", "mount", sl.mount, "role", sl.role, "serial_number", h.serial,
		"expires", h.issuer.CA.NotAfter.UTC().Format(time.RFC3339))
}

// decodeSubCABlob reads a sealed sub-CA.
func decodeSubCABlob(raw []byte, role string) (*heldSubCA, error) {
	var b subCABlob
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Key)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key: %T, want ECDSA", k)
	}
	return parseSubCA(b.Answer, key, role)
}

// serve answers r if it is an offline issue for a configured role and
// reports whether it did. The caller has checked the local token and that
// the agent is offline.
func (s *subCAs) serve(h *localAPI, w http.ResponseWriter, r *http.Request) bool {
	if s == nil || (r.Method != http.MethodPut && r.Method != http.MethodPost) {
		return false
	}
	var sl *subCASlot
	for _, c := range s.slots {
		if r.URL.Path == c.path {
			sl = c
			break
		}
	}
	if sl == nil {
		return false
	}
	if ns := strings.Trim(header(r, nsHeader), "/"); ns != "" && ns != s.a.cfg.Zone {
		h.refuse(w, r, false, http.StatusBadRequest, "this agent serves zone "+strconv.Quote(s.a.cfg.Zone)+", not "+strconv.Quote(ns))
		return true
	}
	held := sl.held.Load()
	if held == nil || !s.a.serverNow().Before(held.issuer.CA.NotAfter) {
		msg := "edgevault agent: the control plane is unreachable and the agent holds no offline sub-CA for " +
			sl.mount + "/issue/" + sl.role
		if held != nil {
			msg = "edgevault agent: the control plane is unreachable and the agent's offline sub-CA for " +
				sl.mount + "/issue/" + sl.role + " expired at " + held.issuer.CA.NotAfter.UTC().Format(time.RFC3339)
		}
		if e := sl.lastErr.Load(); e != nil && *e != "" {
			msg += " (last attempt: " + *e + ")"
		}
		h.refuse(w, r, false, http.StatusServiceUnavailable, msg)
		return true
	}
	data, err := readIssueBody(w, r)
	if err != nil {
		h.refuse(w, r, false, http.StatusBadRequest, err.Error())
		return true
	}
	resp, err := held.issuer.Issue(data)
	switch {
	case errors.Is(err, pki.ErrSubCAExpired):
		h.refuse(w, r, false, http.StatusServiceUnavailable, "edgevault agent: the control plane is unreachable and the agent's offline sub-CA for "+
			sl.mount+"/issue/"+sl.role+" is not valid now")
		return true
	case errors.Is(err, logical.ErrInvalidRequest):
		h.refuse(w, r, false, http.StatusBadRequest, strings.TrimPrefix(err.Error(), logical.ErrInvalidRequest.Error()+": "))
		return true
	case err != nil:
		s.a.log.Error("offline PKI: issue", "mount", sl.mount, "role", sl.role, "err", err)
		h.refuse(w, r, false, http.StatusInternalServerError, "internal error")
		return true
	}
	var id [36]byte
	e := newEntry(r, appendRequestID(id[:0]), false)
	e.status = http.StatusOK
	e.serial, _ = resp.Data["serial_number"].(string)
	warnings := append(resp.Warnings, "edgevault agent: the control plane is unreachable; issued offline by the agent's sub-CA "+
		held.serial+" (valid until "+held.issuer.CA.NotAfter.UTC().Format(time.RFC3339)+"); verifiers should check the CRL once the agent is back online")
	body, err := json.Marshal(map[string]any{
		"request_id": string(e.requestID), "lease_id": "", "renewable": false, "lease_duration": 0,
		"data": resp.Data, "wrap_info": nil, "warnings": warnings, "auth": nil, "mount_type": "pki",
	})
	if err != nil {
		h.refuse(w, r, false, http.StatusInternalServerError, "internal error")
		return true
	}
	if !h.audited(w, &e, false) {
		return true
	}
	hdr := w.Header()
	hdr["Content-Type"] = jsonCT
	hdr["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
	s.a.log.Info("offline PKI: certificate issued offline", "mount", sl.mount, "role", sl.role, "serial_number", e.serial,
		"sub_ca", held.serial)
	return true
}

// readIssueBody decodes a local issue request's JSON object, numbers kept
// as the server keeps them; an empty body (or null) is no fields.
func readIssueBody(w http.ResponseWriter, r *http.Request) (map[string]any, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxIssueBody))
	if err != nil {
		return nil, fmt.Errorf("request body: %v", err)
	}
	return decodeIssueBody(raw)
}

// decodeIssueBody parses one JSON object.
func decodeIssueBody(raw []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return map[string]any{}, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("failed to parse JSON input: %v", err)
	}
	if d.More() {
		return nil, errors.New("failed to parse JSON input: unexpected data after the JSON object")
	}
	if v == nil {
		return map[string]any{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("failed to parse JSON input: the body must be a JSON object")
	}
	return m, nil
}

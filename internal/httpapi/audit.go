package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/edgevault/edgevault/internal/audit"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
	"github.com/edgevault/edgevault/internal/token"
)

// Where audit keeps its secrets.
const (
	auditSaltKey    = "sys/audit-salt"      // per zone: the HMAC key of its entries
	auditDevicesKey = "sys/audit-devices"   // root: devices enabled through the API
	auditLogKey     = "sys/audit-log-key"   // root: the checkpoint signing key (a note signer key)
	auditLogState   = "sys/audit-log-state" // root: the last checkpoint this server published
)

// AuditConfig configures auditing.
type AuditConfig struct {
	// Devices are declared in the configuration file; the API cannot disable them.
	Devices []audit.DeviceConfig
	// RequireAny lets a request proceed when at least one device accepted
	// its entry; by default every device must.
	RequireAny bool
	// KeyName names the checkpoint signing key created at first unseal
	// (default "edgevault-audit"); a tlog device's origin defaults to it.
	KeyName string
	// CheckpointInterval is how often the log signs a checkpoint (0: 1s).
	CheckpointInterval time.Duration
	// Reserved are paths no audit device may write (the storage file).
	Reserved []string
	// AcceptLogReset lets the server unseal with a transparency log that is
	// smaller than, or not an extension of, the last checkpoint it
	// published (the log was deleted or restored from an old copy). Off by
	// default: such a log fails the unseal.
	AcceptLogReset bool
}

// openAudit builds the audit broker at unseal: the signing key from the
// barrier, then the configured and the API-enabled devices. A device that
// cannot open fails the unseal, as in Vault: nothing is served unaudited.
func (s *Server) openAudit(ctx context.Context) (*audit.Broker, error) {
	b, err := s.openAuditDevices(ctx)
	if err != nil {
		return nil, operatorError{err}
	}
	return b, nil
}

func (s *Server) openAuditDevices(ctx context.Context) (*audit.Broker, error) {
	signer, err := s.auditSigner(ctx)
	if err != nil {
		return nil, err
	}
	b := audit.NewBroker(audit.Options{RequireAny: s.cfg.Audit.RequireAny, Signer: signer, Logger: s.log,
		CheckpointInterval: s.cfg.Audit.CheckpointInterval, Reserved: s.cfg.Audit.Reserved})
	stored, err := s.storedAuditDevices(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range append(append([]audit.DeviceConfig(nil), s.cfg.Audit.Devices...), stored...) {
		if err := b.Enable(d); err != nil {
			b.Close()
			return nil, fmt.Errorf("audit device %s: %w", d.Path, err)
		}
	}
	if err := b.Reconcile(); err != nil {
		b.Close()
		return nil, err
	}
	if err := s.checkLogState(ctx, b); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// auditKey is the checkpoint key pair as the barrier keeps it.
type auditKey struct {
	Signer   string `json:"signer"`   // note signer key (private)
	Verifier string `json:"verifier"` // note verifier key (public)
}

// auditKeys loads, or creates at first unseal, the checkpoint key pair.
func (s *Server) auditKeys(ctx context.Context) (auditKey, error) {
	var k auditKey
	raw, err := s.barrier.Get(ctx, auditLogKey)
	if errors.Is(err, storage.ErrNotFound) {
		name := s.cfg.Audit.KeyName
		if name == "" {
			name = "edgevault-audit"
		}
		if k.Signer, k.Verifier, err = note.GenerateKey(rand.Reader, name); err != nil {
			return k, fmt.Errorf("audit: generate the checkpoint key: %w", err)
		}
		if raw, err = json.Marshal(k); err != nil {
			return k, err
		}
		err = s.barrier.Put(ctx, auditLogKey, raw)
	} else if err == nil {
		err = json.Unmarshal(raw, &k)
	}
	if err != nil {
		return k, fmt.Errorf("audit: checkpoint key: %w", err)
	}
	return k, nil
}

func (s *Server) auditSigner(ctx context.Context) (note.Signer, error) {
	k, err := s.auditKeys(ctx)
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(k.Signer)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint key: %w", err)
	}
	return signer, nil
}

// AuditVerifierKey returns the verifier key of the log's checkpoints
// ("name+hash+base64", golang.org/x/mod/sumdb/note), for operators to
// hand to auditors.
func (s *Server) AuditVerifierKey(ctx context.Context) (string, error) {
	k, err := s.auditKeys(ctx)
	return k.Verifier, err
}

func (s *Server) storedAuditDevices(ctx context.Context) ([]audit.DeviceConfig, error) {
	raw, err := s.barrier.Get(ctx, auditDevicesKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit devices: %w", err)
	}
	var devs []audit.DeviceConfig
	if err := json.Unmarshal(raw, &devs); err != nil {
		return nil, fmt.Errorf("audit devices: %w", err)
	}
	return devs, nil
}

// zoneSalt loads, or creates, a zone's audit salt.
func zoneSalt(ctx context.Context, store storage.Backend) (*audit.Salt, error) {
	key, err := store.Get(ctx, auditSaltKey)
	if errors.Is(err, storage.ErrNotFound) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		err = store.Put(ctx, auditSaltKey, key)
	}
	if err != nil {
		return nil, fmt.Errorf("audit salt: %w", err)
	}
	return audit.NewSalt(key), nil
}

// trail is what the audit log learns about one request as it is served.
type trail struct {
	entry     audit.Entry // the request part, filled as the request is understood
	logged    bool        // the request entry is in the log
	failed    bool        // the request entry could not be logged: the answer is 500
	resp      *logical.Response
	mountType string
}

func newTrail(c *core, r *http.Request, path string) *trail {
	host, port, _ := net.SplitHostPort(r.RemoteAddr)
	p, _ := strconv.Atoi(port)
	var skip string
	if dev, ok := strings.CutPrefix(path, "sys/audit/"); ok && c.zone == "" && r.Method == http.MethodDelete {
		// Disabling a device is audited by the others: a broken device can
		// always be removed.
		skip = strings.Trim(dev, "/") + "/"
	}
	return &trail{entry: audit.Entry{Memo: &audit.Memo{}, SkipDevice: skip, Request: &audit.Request{
		ID:            newRequestID(),
		Operation:     string(operationOrEmpty(r)),
		Namespace:     c.zone,
		Path:          path,
		RemoteAddress: host,
		RemotePort:    p,
	}}}
}

func operationOrEmpty(r *http.Request) logical.Operation {
	op, _ := operationFor(r)
	return op
}

// authEntry is what the log records of a token.
func authEntry(clientToken string, e *token.Entry) *audit.Auth {
	pols := e.Policies()
	return &audit.Auth{
		ClientToken:    clientToken,
		Accessor:       e.Accessor(),
		DisplayName:    e.DisplayName(),
		Policies:       pols,
		TokenPolicies:  pols,
		Metadata:       e.Meta(),
		TokenType:      "service",
		TokenTTL:       int64(e.CreationTTL() / time.Second),
		TokenIssueTime: e.CreationTime(),
	}
}

// logRequest writes the request entry; the request may go on only if it returns nil.
func (c *core) logRequest(t *trail) error {
	t.entry.Time = time.Now()
	t.entry.Type = audit.TypeRequest
	if _, err := c.audit.LogEntry(&t.entry, c.salt); err != nil {
		t.failed = true
		return err
	}
	t.logged = true
	return nil
}

// recorder holds a response until its audit entry is written.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}

func (r *recorder) flush(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range r.header {
		h[k] = v
	}
	if r.status == 0 {
		r.status = http.StatusOK
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body.Bytes())
}

// serveAudited serves an authenticated-path request and audits it: the
// request entry before anything changes, the response entry before the
// client sees the answer. An entry no required device accepts turns the
// answer into 500 "audit unavailable".
func (s *Server) serveAudited(c *core, w http.ResponseWriter, r *http.Request, path string) {
	if !c.audit.Enabled() {
		s.serveAuthenticated(c, w, r, path, nil)
		return
	}
	rec := &recorder{header: http.Header{}}
	t := newTrail(c, r, path)
	s.serveAuthenticated(c, rec, r, path, t)
	e := &t.entry
	e.Time = time.Now()
	if t.failed {
		rec.flush(w)
		return
	}
	if !t.logged {
		// Refused before it was let in (bad token, denied, malformed):
		// one request entry with the error, as Vault logs it.
		e.Type = audit.TypeRequest
		e.Error = errorText(rec)
		if _, err := c.audit.LogEntry(e, c.salt); err != nil {
			s.auditFailed(w, r, err)
			return
		}
		rec.flush(w)
		return
	}
	e.Type = audit.TypeResponse
	resp := &audit.Response{MountPoint: e.Request.MountPoint, MountType: e.Request.MountType, StatusCode: rec.status}
	if t.resp != nil {
		resp.Data = t.resp.Data
		resp.Warnings = t.resp.Warnings
		resp.LeaseID = t.resp.LeaseID
		if a := t.resp.Auth; a != nil {
			resp.Auth = &audit.Auth{ClientToken: a.ClientToken, Accessor: a.Accessor, Policies: a.Policies,
				TokenPolicies: a.TokenPolicies, Metadata: a.Metadata, TokenType: a.TokenType, TokenTTL: int64(a.LeaseDuration)}
		}
	} else {
		resp.Data, e.Error = bodyParts(rec)
	}
	if rec.status >= 400 && e.Error == "" {
		e.Error = errorText(rec)
	}
	e.Response = resp
	if _, err := c.audit.LogEntry(e, c.salt); err != nil {
		// sys/seal closed the devices itself: its request entry is the record.
		sealed := errors.Is(err, audit.ErrClosed) && path == "sys/seal"
		if !sealed {
			// The change is made and its request entry is in the log; the
			// client is told the answer could not be audited.
			s.auditFailed(w, r, err)
			return
		}
	}
	rec.flush(w)
}

func (s *Server) auditFailed(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("audit failed; request refused", "method", r.Method, "path", r.URL.Path, "err", err)
	errorf(w, http.StatusInternalServerError, audit.ErrUnavailable.Error())
}

// bodyParts reads a JSON answer's data and errors.
func bodyParts(rec *recorder) (data any, errText string) {
	if !strings.HasPrefix(rec.header.Get("Content-Type"), "application/json") || rec.body.Len() == 0 {
		return nil, ""
	}
	var body struct {
		Data   json.RawMessage `json:"data"`
		Auth   json.RawMessage `json:"auth"`
		Errors []string        `json:"errors"`
	}
	if json.Unmarshal(rec.body.Bytes(), &body) != nil {
		return nil, ""
	}
	if len(body.Data) > 0 && string(body.Data) != "null" {
		data = body.Data
	} else if len(body.Auth) > 0 && string(body.Auth) != "null" {
		data = map[string]any{"auth": body.Auth}
	}
	return data, strings.Join(body.Errors, "; ")
}

func errorText(rec *recorder) string {
	_, text := bodyParts(rec)
	if text == "" && rec.status >= 400 {
		text = http.StatusText(rec.status)
	}
	return text
}

// ReopenAudit reopens every file audit device at its path (SIGHUP, after
// logrotate). A sealed server has nothing to reopen.
func (s *Server) ReopenAudit() error {
	if u := s.state.Load(); u != nil {
		return u.audit.Reopen()
	}
	return nil
}

// logState is the last checkpoint this server published, kept in the
// barrier: a log found smaller, or forked, at the next unseal was deleted or
// rolled back, which the server refuses to hide.
type logState struct {
	Dir  string `json:"dir"`
	Size uint64 `json:"size"`
	Root []byte `json:"root"`
}

// checkLogState compares the log with the last checkpoint published from it.
func (s *Server) checkLogState(ctx context.Context, b *audit.Broker) error {
	lg, dir := b.Log(), logDir(b)
	if lg == nil {
		return nil
	}
	raw, err := s.barrier.Get(ctx, auditLogState)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit log state: %w", err)
	}
	var st logState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("audit log state: %w", err)
	}
	if st.Dir != dir || st.Size == 0 {
		return nil // another log
	}
	cp, err := lg.Checkpoint()
	if err != nil {
		return fmt.Errorf("audit log %s: %w", dir, err)
	}
	var problem string
	if cp.Size < st.Size {
		problem = fmt.Sprintf("holds %d entries, but this server published a checkpoint of %d: it was deleted or rolled back", cp.Size, st.Size)
	} else if h, err := lg.TreeHash(st.Size); err != nil || string(h[:]) != string(st.Root) {
		problem = fmt.Sprintf("is not an extension of the checkpoint of size %d this server published: it was replaced", st.Size)
	}
	if problem == "" {
		return nil
	}
	if s.cfg.Audit.AcceptLogReset {
		s.log.Warn("audit log "+problem+"; accepted because audit_log_reset = true", "dir", dir)
		return nil
	}
	return fmt.Errorf("audit log %s %s; restore it, or set audit_log_reset = true to start over (auditors holding older checkpoints will see the break)", dir, problem)
}

// saveLogState records the log's latest checkpoint in the barrier.
func (s *Server) saveLogState(ctx context.Context, b *audit.Broker, last *logState) {
	lg := b.Log()
	if lg == nil {
		return
	}
	cp, err := lg.Checkpoint()
	if err != nil || cp.Size == 0 || (last.Size == cp.Size && last.Dir == logDir(b)) {
		return
	}
	st := logState{Dir: logDir(b), Size: cp.Size, Root: cp.Hash[:]}
	raw, _ := json.Marshal(st)
	if err := s.barrier.Put(ctx, auditLogState, raw); err != nil {
		s.log.Warn("record the audit log's checkpoint", "err", err)
		return
	}
	*last = st
}

// watchLogState records the log's checkpoints until ctx ends.
func (s *Server) watchLogState(ctx context.Context, b *audit.Broker) {
	var last logState
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.saveLogState(ctx, b, &last)
		}
	}
}

func logDir(b *audit.Broker) string {
	for _, d := range b.Devices() {
		if d.Type == audit.TypeLog {
			return d.Options["path"]
		}
	}
	return ""
}

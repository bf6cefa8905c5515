package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/edgevault/edgevault/internal/audit"
	"github.com/edgevault/edgevault/internal/audit/leaf"
	"github.com/edgevault/edgevault/internal/audit/tlog"
	"github.com/edgevault/edgevault/internal/logical"
)

// serveAuditList answers GET sys/audit: the enabled devices by path.
func serveAuditList(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	if req.Operation != logical.ReadOperation {
		s.writeError(w, r, fmt.Errorf("%w: sys/audit takes GET", logical.ErrUnsupportedOperation))
		return
	}
	data := map[string]any{}
	for _, d := range c.audit.Devices() {
		data[d.Path] = deviceOutput(d)
	}
	writeResponse(w, &logical.Response{Data: data}, "system")
}

func deviceOutput(d audit.DeviceConfig) map[string]any {
	opts := map[string]any{}
	for k, v := range d.Options {
		opts[k] = v
	}
	return map[string]any{"type": d.Type, "description": d.Description, "options": opts, "local": false, "path": d.Path, "from_config": d.FromConfig}
}

// serveAuditDevice answers PUT and DELETE sys/audit/:path.
func serveAuditDevice(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	path := strings.TrimPrefix(req.Path, "audit/")
	u := s.state.Load()
	if u == nil {
		s.writeError(w, r, logical.ErrSealed)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Operation {
	case logical.UpdateOperation, logical.CreateOperation:
		var body struct {
			Type        string            `json:"type"`
			Description string            `json:"description"`
			Options     map[string]string `json:"options"`
			Local       bool              `json:"local"`
		}
		if err := remarshal(req.Data, &body); err != nil {
			s.writeError(w, r, err)
			return
		}
		cfg, err := audit.ValidateDevice(audit.DeviceConfig{Path: path, Type: body.Type, Description: body.Description, Options: body.Options})
		if err != nil {
			s.writeError(w, r, logical.InvalidRequest("%s", strings.TrimPrefix(err.Error(), audit.ErrInvalidDevice.Error()+": ")))
			return
		}
		stored, err := s.storedAuditDevices(r.Context())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := u.audit.Enable(cfg); err != nil {
			s.writeError(w, r, logical.InvalidRequest("%s", strings.TrimPrefix(err.Error(), audit.ErrInvalidDevice.Error()+": ")))
			return
		}
		if err := s.storeAuditDevices(r, append(stored, cfg)); err != nil {
			_ = u.audit.Disable(cfg.Path)
			s.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case logical.DeleteOperation:
		p := strings.Trim(path, "/") + "/"
		for _, d := range c.audit.Devices() {
			if d.Path == p && d.FromConfig {
				s.writeError(w, r, logical.InvalidRequest("audit device %q is declared in the server configuration; remove it there", p))
				return
			}
		}
		stored, err := s.storedAuditDevices(r.Context())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		i := slices.IndexFunc(stored, func(d audit.DeviceConfig) bool { return d.Path == p })
		if i < 0 {
			w.WriteHeader(http.StatusNoContent) // as Vault: disabling what is not there succeeds
			return
		}
		if err := s.storeAuditDevices(r, slices.Delete(stored, i, i+1)); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := u.audit.Disable(p); err != nil {
			s.log.Warn("disable audit device", "path", p, "err", err)
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		s.writeError(w, r, fmt.Errorf("%w: sys/audit/:path takes PUT or DELETE", logical.ErrUnsupportedOperation))
	}
}

func (s *Server) storeAuditDevices(r *http.Request, devs []audit.DeviceConfig) error {
	raw, err := json.Marshal(devs)
	if err != nil {
		return err
	}
	return s.barrier.Put(r.Context(), auditDevicesKey, raw)
}

// remarshal decodes request data into v, strictly.
func remarshal(data map[string]any, v any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return logical.InvalidRequest("%v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return logical.InvalidRequest("field %q: expected %s, got a JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)
		}
		return logical.InvalidRequest("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// serveAuditHash answers PUT sys/audit-hash/:path: the HMAC of input under
// the zone's audit salt, as it would appear in that device's entries.
func serveAuditHash(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	if req.Operation != logical.UpdateOperation && req.Operation != logical.CreateOperation {
		s.writeError(w, r, fmt.Errorf("%w: sys/audit-hash takes PUT or POST", logical.ErrUnsupportedOperation))
		return
	}
	p := strings.Trim(strings.TrimPrefix(req.Path, "audit-hash/"), "/") + "/"
	if !slices.ContainsFunc(c.audit.Devices(), func(d audit.DeviceConfig) bool { return d.Path == p }) {
		s.writeError(w, r, logical.InvalidRequest("unknown audit device %q", p))
		return
	}
	input, ok, err := logical.String(req.Data, "input")
	if err == nil && !ok {
		err = logical.InvalidRequest("input is required")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeResponse(w, &logical.Response{Data: map[string]any{"hash": c.salt.Hash(input)}}, "system")
}

// serveAuditLog answers sys/audit-log/*: the transparency log's checkpoint,
// tiles (tlog-tiles layout), proofs, public leaves, and disclosure bundles.
func serveAuditLog(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	lg := c.audit.Log()
	if lg == nil {
		s.writeError(w, r, fmt.Errorf("%w: no transparency log (tlog) audit device is enabled", logical.ErrNotFound))
		return
	}
	rel := strings.TrimPrefix(req.Path, "audit-log/")
	if rel == "disclose" {
		serveDisclose(s, lg, w, r, req)
		return
	}
	if req.Operation != logical.ReadOperation {
		s.writeError(w, r, fmt.Errorf("%w: sys/audit-log/%s takes GET", logical.ErrUnsupportedOperation, rel))
		return
	}
	switch {
	case rel == "checkpoint" || strings.HasPrefix(rel, "tile/"):
		body, err := lg.ReadTile(rel)
		if err != nil {
			s.writeError(w, r, logError(err, rel))
			return
		}
		ct := "application/octet-stream"
		if rel == "checkpoint" {
			ct = "text/plain; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	case rel == "key":
		vkey, err := s.AuditVerifierKey(r.Context())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeResponse(w, &logical.Response{Data: map[string]any{"verifier_key": vkey}}, "system")
	case rel == "inclusion":
		index, err1 := queryUint(req, "index", true)
		size, err2 := queryUint(req, "size", false)
		if err := errors.Join(err1, err2); err != nil {
			s.writeError(w, r, err)
			return
		}
		if size == 0 {
			cp, err := lg.Checkpoint()
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			size = cp.Size
		}
		proof, err := lg.InclusionProof(index, size)
		if err != nil {
			s.writeError(w, r, logError(err, "inclusion"))
			return
		}
		leaves, err := lg.Leaves(index, index+1)
		if err != nil {
			s.writeError(w, r, logError(err, "inclusion"))
			return
		}
		writeResponse(w, &logical.Response{Data: map[string]any{"index": index, "tree_size": size,
			"leaf": base64.StdEncoding.EncodeToString(leaves[0]), "proof": hashStrings(proof)}}, "system")
	case rel == "consistency":
		old, err1 := queryUint(req, "old", true)
		nw, err2 := queryUint(req, "new", true)
		if err := errors.Join(err1, err2); err != nil {
			s.writeError(w, r, err)
			return
		}
		proof, err := lg.ConsistencyProof(old, nw)
		if err != nil {
			s.writeError(w, r, logError(err, "consistency"))
			return
		}
		writeResponse(w, &logical.Response{Data: map[string]any{"old": old, "new": nw, "proof": hashStrings(proof)}}, "system")
	case rel == "entries":
		start, err1 := queryUint(req, "start", true)
		end, err2 := queryUint(req, "end", true)
		if err := errors.Join(err1, err2); err != nil {
			s.writeError(w, r, err)
			return
		}
		if end <= start || end-start > 1000 {
			s.writeError(w, r, logical.InvalidRequest("end must be greater than start, by at most 1000"))
			return
		}
		leaves, err := lg.Leaves(start, end)
		if err != nil {
			s.writeError(w, r, logError(err, "entries"))
			return
		}
		out := make([]string, len(leaves))
		for i, l := range leaves {
			out[i] = base64.StdEncoding.EncodeToString(l)
		}
		writeResponse(w, &logical.Response{Data: map[string]any{"start": start, "leaves": out}}, "system")
	default:
		s.writeError(w, r, fmt.Errorf("%w: sys/audit-log/%s", logical.ErrUnsupportedPath, rel))
	}
}

// serveDisclose answers PUT sys/audit-log/disclose {index, fields}: a
// bundle that shows those fields of one entry with their salts, the other
// fields' digests, an inclusion proof and the signed checkpoint.
func serveDisclose(s *Server, lg *tlog.Log, w http.ResponseWriter, r *http.Request, req *request) {
	if req.Operation != logical.UpdateOperation && req.Operation != logical.CreateOperation {
		s.writeError(w, r, fmt.Errorf("%w: sys/audit-log/disclose takes PUT or POST", logical.ErrUnsupportedOperation))
		return
	}
	var body struct {
		Index  *uint64  `json:"index"`
		Fields []string `json:"fields"`
	}
	if err := remarshal(req.Data, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.Index == nil {
		s.writeError(w, r, logical.InvalidRequest("index is required"))
		return
	}
	if len(body.Fields) == 0 {
		s.writeError(w, r, logical.InvalidRequest("fields: name at least one field to disclose (e.g. time,request.path)"))
		return
	}
	cp, err := lg.Checkpoint()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if *body.Index >= cp.Size {
		cp, err = lg.Integrate() // the entry is newer than the last checkpoint
		if err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if *body.Index >= cp.Size {
		s.writeError(w, r, logical.InvalidRequest("index %d: the log has %d entries", *body.Index, cp.Size))
		return
	}
	priv, err := lg.Private(*body.Index)
	if err != nil {
		s.writeError(w, r, logError(err, "disclose"))
		return
	}
	seed, line, err := audit.SplitPrivate(priv)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	proof, err := lg.InclusionProof(*body.Index, cp.Size)
	if err != nil {
		s.writeError(w, r, logError(err, "disclose"))
		return
	}
	bundle, err := leaf.Disclose(line[:len(line)-1], seed, body.Fields, *body.Index, proof, cp.Signed)
	if err != nil {
		s.writeError(w, r, logical.InvalidRequest("%v", err))
		return
	}
	raw, err := json.Marshal(bundle)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeResponse(w, &logical.Response{Data: map[string]any{"bundle": json.RawMessage(raw)}}, "system")
}

// logError maps the log's errors onto the API's.
func logError(err error, what string) error {
	switch {
	case errors.Is(err, tlog.ErrNotFound):
		return fmt.Errorf("%w: sys/audit-log/%s", logical.ErrNotFound, what)
	case errors.Is(err, tlog.ErrOutOfRange):
		return logical.InvalidRequest("%v", err)
	}
	return err
}

func queryUint(req *request, name string, required bool) (uint64, error) {
	v := req.Query.Get(name)
	if v == "" {
		if required {
			return 0, logical.InvalidRequest("%s is required", name)
		}
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, logical.InvalidRequest("%s: %q is not a non-negative integer", name, v)
	}
	return n, nil
}

func hashStrings[H ~[32]byte](hs []H) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

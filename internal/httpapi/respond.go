package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/edgevault/edgevault/internal/barrier"
	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/token"
)

// errorBody is Vault's error body.
type errorBody struct {
	Errors []string `json:"errors"`
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"errors":["internal error encoding the response"]}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte{'\n'})
}

// writeResponse writes a backend response in Vault's envelope; nil means 204.
func writeResponse(w http.ResponseWriter, resp *logical.Response, mountType string) {
	writeResponseID(w, resp, mountType, "")
}

// writeResponseID is writeResponse with the request's ID (the one its audit
// entries carry); "" draws a new one.
func writeResponseID(w http.ResponseWriter, resp *logical.Response, mountType, requestID string) {
	if resp == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	status := resp.StatusCode
	if status == 0 {
		status = http.StatusOK
	}
	if resp.Raw != nil {
		h := w.Header()
		h.Set("Content-Type", resp.ContentType)
		h.Set("Content-Length", strconv.Itoa(len(resp.Raw)))
		w.WriteHeader(status)
		_, _ = w.Write(resp.Raw)
		return
	}
	if resp.Data == nil && resp.Auth == nil && len(resp.Warnings) == 0 && resp.StatusCode == 0 && resp.LeaseID == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if requestID == "" {
		requestID = newRequestID()
	}
	body, err := appendEnvelope(make([]byte, 0, 512), requestID, resp, mountType)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{Errors: []string{"internal error encoding the response"}})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// operatorError is a 500 whose text is meant for the operator who caused it
// (an audit device that will not open at unseal): it names paths and sizes,
// never a secret.
type operatorError struct{ error }

func (e operatorError) Unwrap() error { return e.error }

// statusFor maps an error to the HTTP status Vault would answer, and says
// whether the error's text is safe and meant for the client.
func statusFor(err error) (int, bool) {
	var oe operatorError
	switch {
	case errors.As(err, &oe):
		return http.StatusInternalServerError, true
	case errors.Is(err, barrier.ErrSealed), errors.Is(err, logical.ErrSealed):
		return http.StatusServiceUnavailable, true
	case errors.Is(err, logical.ErrPermissionDenied), errors.Is(err, token.ErrNotFound):
		return http.StatusForbidden, true
	case errors.Is(err, logical.ErrCASMismatch), errors.Is(err, logical.ErrInvalidRequest):
		return http.StatusBadRequest, true
	case errors.Is(err, logical.ErrNotFound), errors.Is(err, logical.ErrUnsupportedPath):
		return http.StatusNotFound, true
	case errors.Is(err, logical.ErrUnsupportedOperation):
		return http.StatusMethodNotAllowed, true
	case errors.Is(err, logical.ErrConflict):
		return http.StatusConflict, true
	}
	return http.StatusInternalServerError, false
}

// writeError answers with Vault's error body. Internal errors are logged
// (their text never contains secrets: backends guarantee it) and the client
// sees a generic message.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, public := statusFor(err)
	msg := err.Error()
	switch {
	case !public:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error"
	case errors.Is(err, barrier.ErrSealed) || errors.Is(err, logical.ErrSealed):
		msg = "Vault is sealed"
	case errors.Is(err, token.ErrNotFound) || errors.Is(err, logical.ErrPermissionDenied):
		msg = "permission denied"
	default:
		// Vault's messages carry no category prefix; the status says it.
		msg = strings.TrimPrefix(msg, logical.ErrInvalidRequest.Error()+": ")
		msg = strings.TrimPrefix(msg, logical.ErrNotFound.Error()+": ")
		msg = strings.TrimPrefix(msg, logical.ErrConflict.Error()+": ")
	}
	if status == http.StatusNotFound && (msg == logical.ErrNotFound.Error()) {
		writeJSON(w, status, errorBody{Errors: []string{}})
		return
	}
	writeJSON(w, status, errorBody{Errors: []string{msg}})
}

// errorf answers status with a message, for errors the HTTP layer finds itself.
func errorf(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Errors: []string{msg}})
}

package syncproto

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAuthorizeStatus checks that only a refusal of the agent itself is
// answered 403 (which makes agents stop serving their cache); a failure of
// the server's own (storage, audit) is 503.
func TestAuthorizeStatus(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"agent refused", fmt.Errorf("zone %q agent %q: %w: revoked", "a", "x", ErrAgentRefused), http.StatusForbidden},
		{"no identity", fmt.Errorf("%w: no verified client certificate", ErrUnauthorized), http.StatusForbidden},
		{"storage error", errors.New("storage: read agents/x: i/o timeout"), http.StatusServiceUnavailable},
		{"audit failure", fmt.Errorf("audit: %w", errors.New("no space left on device")), http.StatusServiceUnavailable},
	}
	for _, tc := range cases {
		srv := Handler(NewFeed(0), func(*http.Request) (string, string, error) { return "", "", tc.err })
		r := httptest.NewRequest(http.MethodPost, Path, nil)
		r.ProtoMajor, r.ProtoMinor, r.Proto = 2, 0, "HTTP/2.0"
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, w.Code, tc.want)
		}
	}
}

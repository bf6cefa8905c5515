package bench

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestSplitPGURL(t *testing.T) {
	tests := []struct {
		in       string
		template string // "" means an error is wanted
		user, pw string
	}{
		{"postgres://edge:s3cret@127.0.0.1:5432/postgres?sslmode=disable",
			"postgres://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable", "edge", "s3cret"},
		{"postgresql://a:b@db.internal/app", "postgresql://{{username}}:{{password}}@db.internal/app", "a", "b"},
		{"postgres://u:p%40ss%2Fw@h:1/d", "postgres://{{username}}:{{password}}@h:1/d", "u", "p@ss/w"},
		{"mysql://u:p@h/d", "", "", ""},
		{"postgres://u@h/d", "", "", ""},
		{"postgres://u:@h/d", "", "", ""},
		{"postgres://:p@h/d", "", "", ""},
		{"postgres:///d", "", "", ""},
		{"postgres://{{username}}:{{password}}@h/d", "", "", ""},
		{"postgres://u:p@h/d\n", "", "", ""},
		{"postgres://u:s3cret@[::1/d", "", "", ""},
		{"", "", "", ""},
	}
	for _, tt := range tests {
		got, err := splitPGURL(tt.in)
		if tt.template == "" {
			if err == nil {
				t.Errorf("splitPGURL(%q) = %+v, want an error", tt.in, got)
			} else if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), ":p@") {
				t.Errorf("splitPGURL(%q) error %q shows the password", tt.in, err)
			}
			continue
		}
		if err != nil || got.template != tt.template || got.username != tt.user || got.password != tt.pw {
			t.Errorf("splitPGURL(%q) = %+v, %v; want %q %q %q", tt.in, got, err, tt.template, tt.user, tt.pw)
		}
	}
}

func FuzzSplitPGURL(f *testing.F) {
	for _, s := range []string{
		"postgres://edgevault:pw@127.0.0.1:5432/postgres?sslmode=disable",
		"postgresql://a:b@h/d", "postgres://u@h/d", "postgres://u:p%40@h", "http://u:p@h", "postgres://u:p@[::1]:5/x?a=b#f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := splitPGURL(s)
		if err != nil {
			if u, perr := url.Parse(s); perr == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && len(pw) >= 4 && strings.Contains(err.Error(), pw) {
					t.Fatalf("error %q shows the password", err)
				}
			}
			return
		}
		// The template's user info is the placeholders, and filling them in
		// gives back a URL with the same user and password.
		if !strings.HasPrefix(got.template, "postgres://{{username}}:{{password}}@") &&
			!strings.HasPrefix(got.template, "postgresql://{{username}}:{{password}}@") {
			t.Fatalf("template %q", got.template)
		}
		filled := strings.Replace(got.template, "{{username}}:{{password}}", url.UserPassword(got.username, got.password).String(), 1)
		u, err := url.Parse(filled)
		if err != nil {
			t.Fatalf("filled template %q: %v", filled, err)
		}
		if pw, _ := u.User.Password(); u.User.Username() != got.username || pw != got.password {
			t.Fatalf("filled template %q gives %q/%q, want %q/%q", filled, u.User.Username(), pw, got.username, got.password)
		}
	})
}

func TestLeaseIDOf(t *testing.T) {
	tests := []struct {
		body, want string
		noLease    bool
	}{
		{`{"request_id":"r","lease_id":"database/creds/bench/AbC","renewable":true,"lease_duration":300,"data":{"username":"v"}}`, "database/creds/bench/AbC", false},
		{`{"lease_id":"a\"b\\c\u00e9"}`, "a\"b\\c\u00e9", false},
		{`{"lease_id":""}`, "", true},
		{`{"data":{}}`, "", true},
		{`{"lease_id":"` + strings.Repeat("x", maxLeaseID+1) + `"}`, "", true},
		{`{"lease_id":7}`, "", false},
		{`not json`, "", false},
	}
	for _, tt := range tests {
		got, err := leaseIDOf([]byte(tt.body))
		switch {
		case tt.want != "":
			if err != nil || got != tt.want {
				t.Errorf("leaseIDOf(%s) = %q, %v; want %q", tt.body, got, err, tt.want)
			}
		case err == nil:
			t.Errorf("leaseIDOf(%s) = %q, want an error", tt.body, got)
		case tt.noLease != errors.Is(err, ErrNoLeaseID):
			t.Errorf("leaseIDOf(%s) error %v: matches ErrNoLeaseID = %v, want %v", tt.body, err, !tt.noLease, tt.noLease)
		}
	}
}

// FuzzLeaseID decodes arbitrary bodies, and checks that any lease id the
// driver may send back survives appendJSONString and leaseIDOf unchanged.
func FuzzLeaseID(f *testing.F) {
	for _, s := range []string{
		`{"request_id":"x","lease_id":"database/creds/bench/2bQ7x1","renewable":true,"lease_duration":300,"data":{"username":"v-bench-x","password":"p"}}`,
		`{"lease_id":"pki/issue/web/abc"}`, `{"lease_id":null}`, `{"errors":["x"]}`, `[]`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		id, err := leaseIDOf(body)
		if err != nil {
			if id != "" {
				t.Fatalf("error %v with id %q", err, id)
			}
			id = string(body) // try the body itself as an id
			if !utf8.ValidString(id) || id == "" || len(id) > maxLeaseID {
				return
			}
		}
		enc := appendJSONString([]byte(`{"lease_id":`), id)
		enc = append(enc, '}')
		if !json.Valid(enc) {
			t.Fatalf("appendJSONString(%q) gives invalid JSON %q", id, enc)
		}
		back, err := leaseIDOf(enc)
		if err != nil || back != id {
			t.Fatalf("round trip of %q via %s: %q, %v", id, enc, back, err)
		}
	})
}

func TestAppendRequestEngineOps(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Op, cfg.Address, cfg.Token, cfg.Namespace = OpPKIIssue, "http://h:1/base", "evs.tok", "zone-a"
	tg, err := newTarget(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := tg.newWorker(context.Background(), nil)
	w.leaseID = `database/creds/bench/"q"`
	tests := []struct {
		kind         kind
		key          int
		method, path string
		body         string
	}{
		{kindIssue, 0, "POST", "/base/v1/pki/issue/bench", `{"common_name":"0.bench.test"}`},
		{kindIssue, 123456, "POST", "/base/v1/pki/issue/bench", `{"common_name":"123456.bench.test"}`},
		{kindCreds, 0, "GET", "/base/v1/pki/creds/bench", ""},
		{kindRevoke, 0, "PUT", "/base/v1/sys/leases/revoke", `{"lease_id":"database/creds/bench/\"q\""}`},
	}
	for _, tt := range tests {
		raw := w.appendRequest(nil, tt.kind, tt.key)
		req, err := httpReadRequest(raw)
		if err != nil {
			t.Fatalf("%q does not parse: %v", raw, err)
		}
		body, _ := io.ReadAll(req.Body)
		if req.Method != tt.method || req.URL.Path != tt.path || string(body) != tt.body ||
			req.Header.Get("X-Vault-Namespace") != "zone-a" || req.Header.Get("X-Vault-Token") != "evs.tok" {
			t.Errorf("got %s %s %q headers %v", req.Method, req.URL.Path, body, req.Header)
		}
		if m, p := w.describe(tt.kind, tt.key); m != tt.method || p != tt.path {
			t.Errorf("describe = %s %s, want %s %s", m, p, tt.method, tt.path)
		}
	}
	for _, n := range []int{0, 9, 10, 99, 100, 1_000_000} {
		if digits(n) != len(itoa(n)) {
			t.Errorf("digits(%d) = %d", n, digits(n))
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// fakeDB answers db-creds: each creds GET hands out a fresh lease id, each
// revoke must name one handed out and not yet revoked.
type fakeDB struct {
	mu      sync.Mutex
	next    int
	open    map[string]bool
	revoked int
	bad     []string
	noLease bool // answer creds without a lease_id
}

func (f *fakeDB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == "GET" && r.URL.Path == "/v1/sys/mounts":
		io.WriteString(w, `{"data":{"database/":{"type":"database"}}}`)
	case r.Method == "POST" && (r.URL.Path == "/v1/database/config/bench" || r.URL.Path == "/v1/database/roles/bench"):
		w.WriteHeader(http.StatusNoContent)
	case r.Method == "GET" && r.URL.Path == "/v1/database/creds/bench":
		if f.noLease {
			io.WriteString(w, `{"data":{"username":"u"}}`)
			return
		}
		f.next++
		id := "database/creds/bench/" + itoa(f.next)
		f.open[id] = true
		io.WriteString(w, `{"lease_id":"`+id+`","data":{"username":"u"}}`)
	case r.Method == "PUT" && r.URL.Path == "/v1/sys/leases/revoke":
		var req struct {
			LeaseID string `json:"lease_id"`
		}
		if err := json.Unmarshal(body, &req); err != nil || !f.open[req.LeaseID] {
			f.bad = append(f.bad, "revoke "+string(body))
			http.Error(w, `{"errors":["lease not found"]}`, http.StatusBadRequest)
			return
		}
		delete(f.open, req.LeaseID)
		f.revoked++
		w.WriteHeader(http.StatusNoContent)
	default:
		f.bad = append(f.bad, r.Method+" "+r.URL.Path)
		http.Error(w, `{"errors":["unsupported path"]}`, http.StatusNotFound)
	}
}

// db-creds revokes exactly the leases it obtained, one per operation.
func TestDBCredsRoundTrip(t *testing.T) {
	f := &fakeDB{open: map[string]bool{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := quick(OpDBCreds, srv.URL)
	cfg.PGURL = "postgres://u:pw@127.0.0.1:5432/postgres"
	cfg.Warmup = 0
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, res)
	f.mu.Lock()
	defer f.mu.Unlock()
	if res.Errors != 0 || len(f.bad) > 0 {
		t.Fatalf("%d errors (%s), bad requests %q", res.Errors, res.FirstError, f.bad)
	}
	if len(f.open) != 0 || int64(f.revoked) != res.Ops || f.next != f.revoked {
		t.Fatalf("ops %d: %d leases obtained, %d revoked, %d left open", res.Ops, f.next, f.revoked, len(f.open))
	}

	f.noLease = true
	f.mu.Unlock()
	res, err = Run(context.Background(), cfg)
	f.mu.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.Errors != res.Ops || !strings.Contains(res.FirstError, "no lease_id") ||
		!strings.Contains(res.FirstError, "GET /v1/database/creds/bench") {
		t.Fatalf("creds without lease_id: %d ops, %d errors, first %q", res.Ops, res.Errors, res.FirstError)
	}
}

package bench

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestAppendRequestIsValidHTTP(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Address = "http://vault.example:8200/base/"
	cfg.Token = "evs.tok"
	cfg.Mount = "/team/kv/"
	cfg.ValueSize = 5
	tg, err := newTarget(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		kind         kind
		key          int
		method, path string
		body, ctype  string
	}{
		{kindRead, 42, "GET", "/base/v1/team/kv/data/bench/42", "", ""},
		{kindWrite, 7, "PUT", "/base/v1/team/kv/data/bench/7", `{"data":{"value":"xxxxx"}}`, "application/json"},
		{kindToken, 0, "POST", "/base/v1/auth/token/create", `{"policies":["default"],"ttl":"10m"}`, "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			raw := tg.appendRequest([]byte("garbage"), tt.kind, tt.key)[len("garbage"):]
			req, err := httpReadRequest(raw)
			if err != nil {
				t.Fatalf("%q does not parse: %v", raw, err)
			}
			body, _ := io.ReadAll(req.Body)
			switch {
			case req.Method != tt.method, req.URL.Path != tt.path, string(body) != tt.body:
				t.Errorf("got %s %s %q", req.Method, req.URL.Path, body)
			case req.Host != "vault.example:8200", req.Header.Get("X-Vault-Token") != "evs.tok":
				t.Errorf("host %q token %q", req.Host, req.Header.Get("X-Vault-Token"))
			case req.Header.Get("Content-Type") != tt.ctype:
				t.Errorf("content type %q", req.Header.Get("Content-Type"))
			}
			if tg.path(tt.kind, tt.key) != tt.path {
				t.Errorf("path() = %q", tg.path(tt.kind, tt.key))
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	long := strings.Repeat("é", 300)
	tests := []struct{ body, want string }{
		{`{"errors":["permission denied"]}`, "permission denied"},
		{`{"errors":["a","b"]}`, "a; b"},
		{`{"errors":[]}`, `{"errors":[]}`},
		{"upstream\r\nconnect error\x00\x1b[31m", "upstream  connect error[31m"},
		{"  \n ", ""},
		{"", ""},
		{"\xff\xfebad utf8", "bad utf8"},
		{long, strings.Repeat("é", maxMessage/2) + "..."},
	}
	for _, tt := range tests {
		if got := errorMessage([]byte(tt.body)); got != tt.want {
			t.Errorf("errorMessage(%q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func FuzzErrorMessage(f *testing.F) {
	for _, seed := range []string{
		`{"errors":["permission denied"]}`,
		`{"errors":["1 error occurred:\n\t* invalid token\n\n"]}`,
		`{"errors":null}`, `{"errors":[1]}`, "<html>502 Bad Gateway</html>", "\xff\x00", "",
		strings.Repeat("x", 5000),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := errorMessage(body)
		if len(got) > maxMessage+len("...") {
			t.Fatalf("message of %d bytes", len(got))
		}
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8: %q", got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in %q", got)
			}
		}
	})
}

func httpReadRequest(raw []byte) (*http.Request, error) {
	return http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
}

// BenchmarkWorkerDo measures the driver's own cost per request (client and
// in-process baseline server together), with allocations.
func BenchmarkWorkerDo(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Address = startBaseline(b)
	cfg.Op = OpBaseline
	tg, err := newTarget(cfg)
	if err != nil {
		b.Fatal(err)
	}
	w := tg.newWorker(b.Context(), nil)
	defer w.close()
	b.ReportAllocs()
	for b.Loop() {
		if err := w.do(kindRead, 1, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}

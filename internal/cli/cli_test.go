package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"edgevault": func() { os.Exit(Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)) },
	})
}

// TestScripts runs the CLI scenarios in testdata/*.txt against a real
// in-process dev server (started by the script's "devserver" command).
//
// Extra script commands:
//
//	devserver              start a dev server; sets EDGEVAULT_ADDR, EDGEVAULT_TOKEN (root),
//	                       AUDIT_FILE, AUDIT_LOG (its audit devices), AUDIT_KEY (the log's verifier key),
//	                       AGENT_ADDR, AGENT_TOKEN (the dev agent, zone "edge") and ZONE_TOKEN (edge's root token)
//	serverconfig FILE      write a config for a sealed in-memory server on a free port; sets EDGEVAULT_ADDR
//	waitserver             wait until EDGEVAULT_ADDR accepts connections
//	exit CODE PROG ARGS    run PROG and require exit code CODE
//	capture NAME [REGEXP]  set $NAME to the last stdout (trimmed), or to REGEXP's first group in it
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			// Nothing from the developer's shell leaks into the scripts.
			for _, k := range []string{"EDGEVAULT_ADDR", "EDGEVAULT_TOKEN", "VAULT_ADDR", "VAULT_TOKEN", "VAULT_NAMESPACE"} {
				env.Setenv(k, "")
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"devserver":    cmdDevServer,
			"serverconfig": cmdServerConfig,
			"waitserver":   cmdWaitServer,
			"exit":         cmdExit,
			"capture":      cmdCapture,
		},
	})
}

func cmdDevServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: devserver")
	}
	info, stop, err := startDevServer("root")
	ts.Check(err)
	ts.Defer(stop)
	ts.Setenv("EDGEVAULT_ADDR", info.addr)
	ts.Setenv("EDGEVAULT_TOKEN", info.rootToken)
	ts.Setenv("AUDIT_FILE", info.auditFile)
	ts.Setenv("AUDIT_LOG", info.auditLog)
	ts.Setenv("AUDIT_KEY", info.auditVKey)
	ts.Setenv("AGENT_ADDR", info.agentAddr)
	ts.Setenv("AGENT_TOKEN", info.agentToken)
	ts.Setenv("ZONE_TOKEN", info.zoneToken)
}

func cmdServerConfig(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: serverconfig FILE")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	addr := ln.Addr().String()
	ts.Check(ln.Close())
	cfg := fmt.Sprintf("listener \"tcp\" {\n  address = %q\n  tls_disable = true\n}\nstorage \"inmem\" {}\nlog_level = \"error\"\n", addr)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(cfg), 0o600))
	ts.Setenv("EDGEVAULT_ADDR", "http://"+addr)
}

func cmdWaitServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: waitserver")
	}
	u, err := url.Parse(ts.Getenv("EDGEVAULT_ADDR"))
	ts.Check(err)
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", u.Host, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("server at %s not up after 30s: %v", u.Host, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: capture NAME [REGEXP]")
	}
	out := ts.ReadFile("stdout")
	if len(args) == 1 {
		ts.Setenv(args[0], strings.TrimSpace(out))
		return
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	m := re.FindStringSubmatch(out)
	if len(m) < 2 {
		ts.Fatalf("capture %s: %q does not match stdout", args[0], args[1])
	}
	ts.Setenv(args[0], m[1])
}

func cmdExit(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exit CODE PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	var ee *exec.ExitError
	if err := ts.Exec(args[1], args[2:]...); errors.As(err, &ee) {
		got = ee.ExitCode()
	} else {
		ts.Check(err)
	}
	if got != want {
		ts.Fatalf("%s exited with code %d, want %d", args[1], got, want)
	}
}

func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

func TestParseKVData(t *testing.T) {
	files := map[string]string{
		"pw.txt":    "from-file\n",
		"data.json": `{"user":"app","port":5432}`,
		"bad.json":  `["not","an","object"]`,
	}
	readFile := func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	tests := []struct {
		name      string
		args      []string
		stdin     string
		want      map[string]any
		wantUsage bool // a usage error (exit 2)
		wantErr   bool // another error (exit 1)
	}{
		{name: "none", args: nil, want: nil},
		{name: "pairs", args: []string{"a=1", "b=two"}, want: map[string]any{"a": "1", "b": "two"}},
		{name: "empty value", args: []string{"a="}, want: map[string]any{"a": ""}},
		{name: "value with =", args: []string{"url=x?a=b"}, want: map[string]any{"url": "x?a=b"}},
		{name: "later wins", args: []string{"a=1", "a=2"}, want: map[string]any{"a": "2"}},
		{name: "value from file", args: []string{"pw=@pw.txt"}, want: map[string]any{"pw": "from-file\n"}},
		{name: "value from stdin", args: []string{"pw=-"}, stdin: "s3cret", want: map[string]any{"pw": "s3cret"}},
		{name: "json from stdin", args: []string{"-"}, stdin: `{"a":"x","n":1.50}`, want: map[string]any{"a": "x", "n": json.Number("1.50")}},
		{name: "json file then pair", args: []string{"@data.json", "port=1"}, want: map[string]any{"user": "app", "port": "1"}},
		{name: "no =", args: []string{"novalue"}, wantUsage: true},
		{name: "empty key", args: []string{"=v"}, wantUsage: true},
		{name: "stdin twice", args: []string{"a=-", "b=-"}, stdin: "x", wantUsage: true},
		{name: "json not object", args: []string{"-"}, stdin: `[1]`, wantUsage: true},
		{name: "json null", args: []string{"-"}, stdin: `null`, wantUsage: true},
		{name: "json trailing", args: []string{"-"}, stdin: `{} {}`, wantUsage: true},
		{name: "json file not object", args: []string{"@bad.json"}, wantUsage: true},
		{name: "@ without file", args: []string{"@"}, wantUsage: true},
		{name: "key=@ without file", args: []string{"k=@"}, wantUsage: true},
		{name: "missing file", args: []string{"k=@nope.txt"}, wantErr: true},
		{name: "missing json file", args: []string{"@nope.json"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseKVData(tt.args, strings.NewReader(tt.stdin), readFile)
			switch {
			case tt.wantUsage || tt.wantErr:
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				if isUsage(err) != tt.wantUsage {
					t.Fatalf("error %q: usage error = %v, want %v", err, isUsage(err), tt.wantUsage)
				}
			case err != nil:
				t.Fatalf("unexpected error: %v", err)
			case !reflect.DeepEqual(got, tt.want):
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func FuzzParseKVData(f *testing.F) {
	f.Add("a=1\x00b=@f\x00c=-", "stdin")
	f.Add("-", `{"a":{"b":[1,2]}}`)
	f.Add("@f\x00x=", "")
	f.Add("=\x00@\x00k=@", "")
	f.Fuzz(func(t *testing.T, joined, stdin string) {
		args := strings.Split(joined, "\x00")
		readFile := func(string) ([]byte, error) { return []byte(`{"f":"file"}`), nil }
		data, err := parseKVData(args, strings.NewReader(stdin), readFile)
		if err != nil {
			return
		}
		// When every argument is a plain KEY=VALUE, the result is exactly
		// the last value given for each key.
		want := map[string]any{}
		for _, a := range args {
			k, v, ok := strings.Cut(a, "=")
			if !ok || a == "-" || strings.HasPrefix(a, "@") || v == "-" || strings.HasPrefix(v, "@") {
				return
			}
			want[k] = v
		}
		if !reflect.DeepEqual(data, want) {
			t.Fatalf("parseKVData(%q) = %#v, want %#v", args, data, want)
		}
	})
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90s", 90 * time.Second, true},
		{"1h30m", 90 * time.Minute, true},
		{"1.5h", 90 * time.Minute, true},
		{"3600", time.Hour, true},
		{"0", 0, true},
		{"7d", 7 * 24 * time.Hour, true},
		{" 10m ", 10 * time.Minute, true},
		{"", 0, false},
		{"-5s", 0, false},
		{"-1", 0, false},
		{"abc", 0, false},
		{"5x", 0, false},
		{"d", 0, false},
		{"-2d", 0, false},
		{"999999999999d", 0, false},
		{"99999999999999", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDuration("ttl", tt.in)
		if tt.ok != (err == nil) || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && (!isUsage(err) || !strings.Contains(err.Error(), "-ttl")) {
			t.Errorf("parseDuration(%q) error %q: want a usage error naming -ttl", tt.in, err)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"90s", "3600", "7d", "1h30m", "-1s", "", "1e9d", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDuration("ttl", s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("parseDuration(%q) = %v, negative", s, d)
		}
		if got, err := parseDuration("ttl", durationSeconds(d)); err != nil || got != d.Truncate(time.Second) {
			t.Fatalf("round trip of %q via %q: %v, %v", s, durationSeconds(d), got, err)
		}
	})
}

func TestHumanDuration(t *testing.T) {
	tests := map[int]string{0: "∞", 45: "45s", 60: "1m", 90: "1m30s", 3600: "1h", 3605: "1h0m5s", 5400: "1h30m", 2764800: "768h"}
	for in, want := range tests {
		if got := humanDuration(in); got != want {
			t.Errorf("humanDuration(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{nil, "<nil>"},
		{"", "n/a"},
		{"x", "x"},
		{time.Time{}, "n/a"},
		{time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), "2024-01-02T03:04:05Z"},
		{json.Number("12"), "12"},
		{true, "true"},
		{[]any{"a", "b"}, "[a b]"},
	}
	for _, tt := range tests {
		if got := formatValue(tt.in); got != tt.want {
			t.Errorf("formatValue(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPrintTable(t *testing.T) {
	var b strings.Builder
	if err := printTable(&b, mapRows(map[string]any{"version": json.Number("2"), "created_time": "t", "deletion_time": ""})); err != nil {
		t.Fatal(err)
	}
	want := "Key              Value\n" +
		"---              -----\n" +
		"created_time     t\n" +
		"deletion_time    n/a\n" +
		"version          2\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestNormalizeRestoresEmptyDeletionTime(t *testing.T) {
	s := &api.Secret{Data: map[string]any{"metadata": map[string]any{"deletion_time": time.Time{}, "version": json.Number("1")}}}
	var b strings.Builder
	if err := printJSON(&b, s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"deletion_time": ""`) {
		t.Fatalf("JSON output does not restore the empty deletion_time:\n%s", b.String())
	}
}

func TestFail(t *testing.T) {
	c := &conn{addr: "http://127.0.0.1:8200"}
	refused := &url.Error{Op: "Put", URL: "http://127.0.0.1:8200/v1/x", Err: &net.OpError{
		Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED),
	}}
	tests := []struct {
		name     string
		err      error
		wantMsg  string
		wantHint string
	}{
		{
			name:     "permission denied",
			err:      fmt.Errorf("error writing secret: %w", &api.ResponseError{StatusCode: 403, Errors: []string{"permission denied"}, URL: "http://x/v1/secret/data/a"}),
			wantMsg:  "write secret/data/a: permission denied (HTTP 403)",
			wantHint: "check EDGEVAULT_TOKEN and its policies",
		},
		{
			name:     "sealed",
			err:      &api.ResponseError{StatusCode: 503, Errors: []string{"Vault is sealed"}},
			wantMsg:  "write secret/data/a: Vault is sealed (HTTP 503)",
			wantHint: "unseal the server with: edgevault operator unseal",
		},
		{
			name:    "several errors",
			err:     &api.ResponseError{StatusCode: 400, Errors: []string{"a", "b"}},
			wantMsg: "write secret/data/a: a; b (HTTP 400)",
		},
		{
			name:    "raw body",
			err:     &api.ResponseError{StatusCode: 502, RawError: true, Errors: []string{"<html>"}},
			wantMsg: "write secret/data/a: Bad Gateway (HTTP 502)",
		},
		{
			name:     "connection refused",
			err:      refused,
			wantMsg:  "write secret/data/a: cannot reach the server at http://127.0.0.1:8200: connection refused",
			wantHint: "is the server running at http://127.0.0.1:8200? set EDGEVAULT_ADDR",
		},
		{
			name:    "not found",
			err:     fmt.Errorf("%w: no metadata at secret/data/a", api.ErrSecretNotFound),
			wantMsg: "write secret/data/a: no value found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.fail("write secret/data/a", tt.err)
			if err.Error() != tt.wantMsg {
				t.Errorf("message %q, want %q", err, tt.wantMsg)
			}
			var h hintError
			gotHint := ""
			if errors.As(err, &h) {
				gotHint = h.hint
			}
			if gotHint != tt.wantHint {
				t.Errorf("hint %q, want %q", gotHint, tt.wantHint)
			}
		})
	}
}

func TestTokenCreateRequest(t *testing.T) {
	f := tokenCreateFlags{
		policies: []string{"a", " b "}, ttl: "1h", explicitMaxTTL: "2d", numUses: 3,
		renewable: false, metadata: []string{"team=edge", "env=prod=1"}, displayName: "ci",
	}
	req, err := f.request()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(req.Policies, []string{"a", "b"}) || req.TTL != "3600s" || req.ExplicitMaxTTL != "172800s" ||
		req.NumUses != 3 || req.Renewable == nil || *req.Renewable || req.DisplayName != "ci" ||
		!reflect.DeepEqual(req.Metadata, map[string]string{"team": "edge", "env": "prod=1"}) {
		t.Fatalf("unexpected request %+v", req)
	}
	for name, bad := range map[string]tokenCreateFlags{
		"negative uses": {numUses: -1},
		"bad ttl":       {ttl: "soon"},
		"empty policy":  {policies: []string{""}},
		"bad metadata":  {metadata: []string{"novalue"}},
		"bad period":    {period: "-1h"},
	} {
		if _, err := bad.request(); !isUsage(err) {
			t.Errorf("%s: got %v, want a usage error", name, err)
		}
	}
}

func TestCheckVersions(t *testing.T) {
	tests := []struct {
		versions []int
		required bool
		ok       bool
	}{
		{nil, false, true},
		{nil, true, false},
		{[]int{1, 3}, true, true},
		{[]int{0}, false, false},
		{[]int{2, -1}, true, false},
	}
	for _, tt := range tests {
		if err := checkVersions(tt.versions, tt.required); (err == nil) != tt.ok || (err != nil && !isUsage(err)) {
			t.Errorf("checkVersions(%v, %v) = %v, want ok=%v", tt.versions, tt.required, err, tt.ok)
		}
	}
}

func TestCheckPolicyName(t *testing.T) {
	for name, ok := range map[string]bool{"app": true, "app-read_1": true, "": false, " ": false, "a/b": false, "..": false, "a?b": false, "a%2f": false} {
		if err := checkPolicyName(name); (err == nil) != ok {
			t.Errorf("checkPolicyName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestKVPathAPI(t *testing.T) {
	p := kvPath{mount: "secret", key: "app/db"}
	if got := p.api("data"); got != "secret/data/app/db" {
		t.Errorf("api(data) = %q", got)
	}
	if got := (kvPath{mount: "secret"}).api("metadata"); got != "secret/metadata" {
		t.Errorf("api(metadata) with no key = %q", got)
	}
}

// TestClientIgnoresProcessEnvironment checks that the client takes its
// address and token from env.getenv only, not from VAULT_* variables of the
// process that api.NewClient would read by itself.
func TestClientIgnoresProcessEnvironment(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "from-process")
	t.Setenv("VAULT_ADDR", "http://192.0.2.1:1")
	e := &env{getenv: func(k string) string {
		return map[string]string{"EDGEVAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": "from-env"}[k]
	}}
	c, err := (&clientFlags{format: formatTable}).connect(e)
	if err != nil {
		t.Fatal(err)
	}
	if c.api.Token() != "from-env" || c.api.Address() != "http://127.0.0.1:9" {
		t.Fatalf("token %q address %q, want from-env and http://127.0.0.1:9", c.api.Token(), c.api.Address())
	}
	c, err = (&clientFlags{format: formatJSON, address: "https://127.0.0.1:10"}).connect(&env{getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if c.api.Token() != "" || c.api.Address() != "https://127.0.0.1:10" {
		t.Fatalf("token %q address %q, want no token and the -address", c.api.Token(), c.api.Address())
	}
	if _, err := (&clientFlags{format: "yaml"}).connect(e); !isUsage(err) {
		t.Fatalf("-format=yaml: got %v, want a usage error", err)
	}
}

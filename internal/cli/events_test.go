package cli

import (
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/revoke"
)

// files is a readFile over an in-memory set of files.
func files(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if v, ok := m[name]; ok {
			return []byte(v), nil
		}
		return nil, fs.ErrNotExist
	}
}

// "events source write" arguments: the body sent, and usage errors naming
// the field at fault, never echoing a secret.
func TestSourceBody(t *testing.T) {
	fsys := files(map[string]string{"tok": "s3cr3t-token-0123456789\n", "short": "abc"})
	body, err := sourceBody("am", []string{"auth=bearer", "secret=@tok", "kinds=alertmanager, generic", "rate=2.5", "burst=20"}, strings.NewReader(""), fsys)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"kinds": []string{"alertmanager", "generic"}, "auth": map[string]any{"method": "bearer"},
		"rate_limit": map[string]any{"per_second": 2.5, "burst": 20}, "secret": "s3cr3t-token-0123456789"}
	if !reflect.DeepEqual(body, want) {
		t.Fatalf("body %#v\nwant %#v", body, want)
	}
	body, err = sourceBody("ci", []string{"auth=hmac-sha256", "secret=-", "kinds=cloudevents", "timestamp_header=X-Ts", "max_skew=2m"},
		strings.NewReader("hmac-key-0123456789abcdef\n"), fsys)
	if err != nil {
		t.Fatal(err)
	}
	if a := body["auth"].(map[string]any); a["timestamp_header"] != "X-Ts" || a["max_skew_seconds"] != 120 || body["secret"] != "hmac-key-0123456789abcdef" {
		t.Fatalf("hmac body %#v", body)
	}
	// No secret: an update that keeps the server's.
	if body, err = sourceBody("am", []string{"auth=bearer", "kinds=alertmanager"}, nil, fsys); err != nil || body["secret"] != nil {
		t.Fatalf("without secret: %v %#v", err, body)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a/b", []string{"auth=bearer", "kinds=generic"}, `NAME "a/b"`},
		{"am", []string{"auth=bearer", "kinds=generic", "secret=typed-in-the-shell-123"}, "secret: give it as secret=@FILE"},
		{"am", []string{"kinds=generic"}, "auth: required"},
		{"am", []string{"auth=basic", "kinds=generic"}, "auth.method"},
		{"am", []string{"auth=bearer"}, "kinds: required"},
		{"am", []string{"auth=bearer", "kinds=alertmanager,prometheus"}, "kinds[1]"},
		{"am", []string{"auth=bearer", "kinds=generic", "rate=fast"}, `rate "fast"`},
		{"am", []string{"auth=bearer", "kinds=generic", "rate=-1"}, `rate "-1"`},
		{"am", []string{"auth=bearer", "kinds=generic", "burst=0"}, `burst "0"`},
		{"am", []string{"auth=bearer", "kinds=generic", "colour=red"}, "colour: unknown field"},
		{"am", []string{"auth=bearer", "kinds=generic", "secret=@short"}, "secret: must be 16 to 1024 bytes"},
		{"am", []string{"auth=bearer", "kinds=generic", "header=X-Sig"}, "auth: header, timestamp_header and max_skew_seconds apply to hmac-sha256 only"},
		{"am", []string{"auth=hmac-sha256", "kinds=generic", "max_skew=1m"}, "needs timestamp_header"},
		{"am", []string{"@source.json"}, "argument 2: expected KEY=VALUE"},
		{"am", []string{"auth"}, `expected KEY=VALUE, found no "="`},
	} {
		_, err := sourceBody(tc.name, tc.args, strings.NewReader(""), fsys)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !isUsage(err) {
			t.Errorf("sourceBody(%q, %q) = %v; want a usage error containing %q", tc.name, tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "typed-in-the-shell") {
			t.Errorf("the error repeats the secret: %v", err)
		}
	}
	if _, err := sourceBody("am", []string{"auth=bearer", "kinds=generic", "secret=@missing"}, nil, fsys); err == nil || isUsage(err) {
		t.Errorf("missing secret file: %v, want an I/O error (exit 1)", err)
	}
}

// "events rule write" arguments: KEY=VALUE with actions as a JSON array,
// or the whole rule from -file.
func TestRuleBody(t *testing.T) {
	fsys := files(map[string]string{
		"actions.json": `[{"type":"revoke_prefix","params":{"zone":"edge-1","prefix":"secret/app/"}}]`,
		"rule.json":    `{"name":"r1","expression":"true","actions":[{"type":"seal_zone","params":{"zone":"edge-1"}}]}`,
		"other.json":   `{"name":"r2","expression":"true","actions":[]}`,
		"obj.json":     `{"type":"seal_zone"}`,
	})
	body, err := ruleBody("r1", "", []string{`expression=event.labels.severity == "critical"`, "actions=@actions.json", "description=isolate"}, nil, fsys)
	if err != nil {
		t.Fatal(err)
	}
	acts, _ := body["actions"].([]any)
	if body["expression"] != `event.labels.severity == "critical"` || len(acts) != 1 || body["description"] != "isolate" {
		t.Fatalf("body %#v", body)
	}
	body, err = ruleBody("r1", "rule.json", nil, nil, fsys)
	if err != nil || body["name"] != nil || body["expression"] != "true" {
		t.Fatalf("-file: %v %#v", err, body)
	}
	for _, tc := range []struct {
		name, file string
		args       []string
		want       string
	}{
		{"r1", "", []string{"actions=@actions.json"}, "expression: required"},
		{"r1", "", []string{"expression=true"}, "actions: required"},
		{"r1", "", []string{"expression=true", "actions=@obj.json"}, "actions: expected a JSON array"},
		{"r1", "", []string{"expression=true", "actions=@actions.json", "when=now"}, "when: unknown field"},
		{"r1", "rule.json", []string{"expression=true"}, "not both"},
		{"r1", "other.json", nil, `name r2 differs from NAME "r1"`},
		{"r 1", "", []string{"expression=true", "actions=@actions.json"}, `NAME "r 1"`},
		{"r1", "", []string{"-"}, "argument 2: expected KEY=VALUE"},
	} {
		_, err := ruleBody(tc.name, tc.file, tc.args, strings.NewReader(""), fsys)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !isUsage(err) {
			t.Errorf("ruleBody(%q, %q, %q) = %v; want a usage error containing %q", tc.name, tc.file, tc.args, err, tc.want)
		}
	}
}

// "events replay" builds the request a sender would send: the body byte
// for byte, the kind guessed from it, and a signature or bearer token the
// server's own check (revoke.Authenticate) accepts.
func TestBuildReplay(t *testing.T) {
	am := `{"version":"4","status":"firing","alerts":[]}`
	ce := `{"specversion":"1.0","id":"1","source":"/x","type":"t"}`
	fsys := files(map[string]string{"am.json": am, "ce.json": ce, "gen.json": `{"id":"g1"}`, "key": "hmac-key-0123456789abcdef\n", "bad.json": "{"})
	now := time.Unix(1_800_000_000, 0)
	rr, err := buildReplay(replayFlags{source: "am", secretFile: "key"}, "am.json", nil, fsys, now)
	if err != nil {
		t.Fatal(err)
	}
	if rr.path != "sys/events/alertmanager" || rr.query != "source=am" || string(rr.body) != am {
		t.Fatalf("request %+v", rr)
	}
	src := revoke.Source{Name: "am", Kinds: []revoke.Kind{revoke.KindAlertmanager}, Auth: revoke.Auth{Method: revoke.AuthHMACSHA256}}.
		WithSecret([]byte("hmac-key-0123456789abcdef"))
	if err := revoke.Authenticate(src, rr.headers, rr.body, now); err != nil {
		t.Fatalf("the server would refuse the signature: %v", err)
	}
	if err := revoke.Authenticate(src, rr.headers, append(rr.body, ' '), now); err == nil {
		t.Fatal("the signature does not cover the body")
	}

	rr, err = buildReplay(replayFlags{source: "ce", secretFile: "key", tsHeader: "X-Ts", header: "X-Sig"}, "ce.json", nil, fsys, now)
	if err != nil {
		t.Fatal(err)
	}
	tsSrc := revoke.Source{Name: "ce", Kinds: []revoke.Kind{revoke.KindCloudEvents},
		Auth: revoke.Auth{Method: revoke.AuthHMACSHA256, Header: "X-Sig", TimestampHeader: "X-Ts"}}.WithSecret([]byte("hmac-key-0123456789abcdef"))
	if rr.path != "sys/events/cloudevents" || rr.headers.Get("Content-Type") != "application/cloudevents+json" {
		t.Fatalf("cloudevents request %+v", rr)
	}
	if err := revoke.Authenticate(tsSrc, rr.headers, rr.body, now); err != nil {
		t.Fatalf("the server would refuse the timestamped signature: %v", err)
	}

	rr, err = buildReplay(replayFlags{source: "g", secretFile: "-", auth: "bearer"}, "gen.json", strings.NewReader("bearer-token-0123456789\n"), fsys, now)
	if err != nil || rr.path != "sys/events/generic" || rr.headers.Get("Authorization") != "Bearer bearer-token-0123456789" {
		t.Fatalf("bearer request %+v, %v", rr, err)
	}
	if rr, err = buildReplay(replayFlags{source: "g", kind: "generic"}, "am.json", nil, fsys, now); err != nil || rr.path != "sys/events/generic" ||
		rr.headers.Get("Authorization") != "" || rr.headers.Get(revoke.DefaultSignatureHeader) != "" {
		t.Fatalf("-kind and no secret: %+v, %v", rr, err)
	}

	for _, tc := range []struct {
		f    replayFlags
		file string
		want string
	}{
		{replayFlags{}, "am.json", "-source: required"},
		{replayFlags{source: "a/b"}, "am.json", `-source "a/b"`},
		{replayFlags{source: "am", kind: "prometheus"}, "am.json", `-kind "prometheus"`},
		{replayFlags{source: "am", auth: "basic", secretFile: "key"}, "am.json", `-auth "basic"`},
		{replayFlags{source: "am", auth: "bearer"}, "am.json", "need -secret-file"},
		{replayFlags{source: "am", auth: "bearer", secretFile: "key", tsHeader: "X-Ts"}, "am.json", "hmac-sha256 only"},
		{replayFlags{source: "am", secretFile: "-"}, "-", "cannot both be standard input"},
		{replayFlags{source: "am"}, "bad.json", "not JSON"},
	} {
		_, err := buildReplay(tc.f, tc.file, strings.NewReader(""), fsys, now)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !isUsage(err) {
			t.Errorf("buildReplay(%+v, %q) = %v; want a usage error containing %q", tc.f, tc.file, err, tc.want)
		}
	}
}

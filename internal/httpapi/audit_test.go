package httpapi_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"golang.org/x/mod/sumdb/note"
	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/edgevault/edgevault/internal/audit"
	"github.com/edgevault/edgevault/internal/audit/leaf"
	"github.com/edgevault/edgevault/internal/httpapi"
)

// auditedServer is a dev server with the two default devices in a temp dir.
func auditedServer(t *testing.T) (*testServer, string, string) {
	t.Helper()
	dir := t.TempDir()
	file, logDir := filepath.Join(dir, "audit.log"), filepath.Join(dir, "audit-log")
	ts := startServerWith(t, true, httpapi.AuditConfig{CheckpointInterval: 10 * time.Millisecond, Devices: []audit.DeviceConfig{
		{Path: "file", Type: audit.TypeFile, Options: map[string]string{"file_path": file}, FromConfig: true},
		{Path: "log", Type: audit.TypeLog, Options: map[string]string{"path": logDir}, FromConfig: true},
	}})
	return ts, file, logDir
}

func readEntries(t *testing.T, file string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("line %s: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestEveryRequestIsAuditedWithSecretsHashed(t *testing.T) {
	ts, file, logDir := auditedServer(t)
	if _, err := ts.client.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "hunter2"}); err != nil {
		t.Fatal(err)
	}
	got, err := ts.client.KVv2("secret").Get(t.Context(), "app/db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.newClient(t, "evs.bogus").Logical().Read("secret/data/app/db"); statusOf(err) != http.StatusForbidden {
		t.Fatalf("bad token: %v", err)
	}
	raw, _ := os.ReadFile(file)
	for _, secret := range []string{"hunter2", ts.root, "evs.bogus"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatalf("the audit file shows %q in clear", secret)
		}
	}
	entries := readEntries(t, file)
	// put: request+response, get: request+response, denied: request only.
	if len(entries) != 5 {
		t.Fatalf("%d entries:\n%s", len(entries), raw)
	}
	get := entries[3]
	if get["type"] != "response" || get["request"].(map[string]any)["path"] != "secret/data/app/db" ||
		get["request"].(map[string]any)["operation"] != "read" {
		t.Fatalf("get response entry: %v", get)
	}
	hash, err := ts.client.Sys().AuditHash("file", "hunter2")
	if err != nil {
		t.Fatal(err)
	}
	data := get["response"].(map[string]any)["data"].(map[string]any)["data"].(map[string]any)
	if data["password"] != hash || !strings.HasPrefix(hash, "hmac-sha256:") {
		t.Fatalf("response data %v, audit-hash %s", data, hash)
	}
	if id := get["request"].(map[string]any)["id"]; id != got.Raw.RequestID {
		t.Fatalf("the audit entry names request %v, the answer %s", id, got.Raw.RequestID)
	}
	denied := entries[4]
	if denied["type"] != "request" || denied["error"] != "permission denied" {
		t.Fatalf("denied entry: %v", denied)
	}
	// The file and the log agree.
	vkey := verifierKey(t, ts)
	v, _ := note.NewVerifier(vkey)
	ts.srv.Close()
	rep, err := audit.Verify(logDir, v, []string{file}, 0)
	// 5 above, then audit-hash and sys/audit-log/key: a request and a response each.
	if err != nil || !rep.OK() || rep.LogSize != 9 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func verifierKey(t *testing.T, ts *testServer) string {
	t.Helper()
	s, err := ts.client.Logical().Read("sys/audit-log/key")
	if err != nil {
		t.Fatal(err)
	}
	return s.Data["verifier_key"].(string)
}

func TestAuditDevicesAPI(t *testing.T) {
	ts, _, _ := auditedServer(t)
	devs, err := ts.client.Sys().ListAudit()
	if err != nil {
		t.Fatal(err)
	}
	if devs["file/"] == nil || devs["file/"].Type != "file" || devs["log/"] == nil || devs["log/"].Type != "tlog" {
		t.Fatalf("devices: %+v", devs)
	}
	extra := filepath.Join(t.TempDir(), "extra.log")
	if err := ts.client.Sys().EnableAuditWithOptions("extra", &vault.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": extra}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.client.Sys().ListAudit(); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(extra); !bytes.Contains(raw, []byte(`"path":"sys/audit"`)) {
		t.Fatalf("the new device got nothing: %q", raw)
	}
	for name, tc := range map[string]struct {
		path string
		opts vault.EnableAuditOptions
		want string
	}{
		"bad type":       {"x", vault.EnableAuditOptions{Type: "syslog"}, `type "syslog"`},
		"no file_path":   {"x", vault.EnableAuditOptions{Type: "file"}, "options.file_path is required"},
		"path in use":    {"extra", vault.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": extra + "2"}}, "already in use"},
		"second tlog":    {"x", vault.EnableAuditOptions{Type: "tlog", Options: map[string]string{"path": t.TempDir()}}, "only one tlog"},
		"unknown option": {"x", vault.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": extra + "3", "mode": "0600"}}, `"mode" is not an option`},
	} {
		err := ts.client.Sys().EnableAuditWithOptions(tc.path, &tc.opts)
		if statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want 400 %q", name, err, tc.want)
		}
	}
	if err := ts.client.Sys().DisableAudit("file"); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("disabling a configured device: %v", err)
	}
	if err := ts.client.Sys().DisableAudit("extra"); err != nil {
		t.Fatal(err)
	}
	if devs, _ := ts.client.Sys().ListAudit(); devs["extra/"] != nil {
		t.Fatal("extra/ still listed")
	}
	// A zone's token cannot touch the devices; a zone has its own salt.
	if _, err := ts.client.Logical().Write("sys/zones/edge-1", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	zt, err := ts.client.Logical().Write("sys/zones/edge-1/root-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	zc := ts.newClient(t, zt.Auth.ClientToken)
	zc.SetNamespace("edge-1")
	if _, err := zc.Sys().ListAudit(); statusOf(err) != http.StatusNotFound {
		t.Fatalf("sys/audit from a zone: %v", err)
	}
	zh, err := zc.Sys().AuditHash("file", "same-input")
	if err != nil {
		t.Fatal(err)
	}
	rh, _ := ts.client.Sys().AuditHash("file", "same-input")
	if zh == rh {
		t.Fatal("a zone shares the root zone's audit salt")
	}
}

// A required device that refuses an entry fails the request, which changes nothing.
func TestAuditUnavailableFailsClosed(t *testing.T) {
	ts, _, _ := auditedServer(t)
	// The device is enabled; the answer to enabling it already cannot be audited.
	err := ts.client.Sys().EnableAuditWithOptions("full", &vault.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": "/dev/full"}})
	if statusOf(err) != http.StatusInternalServerError {
		t.Fatalf("enable /dev/full: %v", err)
	}
	before := ts.snapshot(t)
	_, err = ts.client.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "x"})
	if statusOf(err) != http.StatusInternalServerError || !strings.Contains(err.Error(), "audit unavailable") {
		t.Fatalf("err = %v, want 500 audit unavailable", err)
	}
	if after := ts.snapshot(t); !equalMaps(before, after) {
		t.Fatal("a request whose audit failed changed storage")
	}
	// The broken device can still be disabled (the others audit that), and
	// the server serves again.
	if err := ts.client.Sys().DisableAudit("full"); err != nil {
		t.Fatalf("disable the broken device: %v", err)
	}
	if _, err := ts.client.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "x"}); err != nil {
		t.Fatal(err)
	}
}

func TestAuditLogEndpointsAndDisclosure(t *testing.T) {
	ts, _, _ := auditedServer(t)
	for i := 0; i < 5; i++ {
		if _, err := ts.client.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "p"}); err != nil {
			t.Fatal(err)
		}
	}
	v, _ := note.NewVerifier(verifierKey(t, ts))
	time.Sleep(50 * time.Millisecond) // a checkpoint interval or more
	code, body := ts.raw(t, "GET", "/v1/sys/audit-log/checkpoint", ts.root, nil)
	if code != 200 {
		t.Fatalf("checkpoint: %d %s", code, body)
	}
	body0 := body
	if _, err := note.Open([]byte(body), note.VerifierList(v)); err != nil {
		t.Fatalf("checkpoint does not verify: %v\n%s", err, body)
	}
	size, _ := strconv.Atoi(strings.Split(body, "\n")[1])
	code, body = ts.raw(t, "GET", "/v1/sys/audit-log/tile/0/000.p/"+strconv.Itoa(size), ts.root, nil)
	if code != 200 || len(body) != 32*size {
		t.Fatalf("tile: %d, %d bytes", code, len(body))
	}
	// Public leaves, and a consistency proof between two sizes, checked with sumdb's verifier.
	le, err := ts.client.Logical().ReadWithData("sys/audit-log/entries", map[string][]string{"start": {"0"}, "end": {"2"}})
	if err != nil || len(le.Data["leaves"].([]any)) != 2 {
		t.Fatalf("entries: %v %v", le, err)
	}
	raw0, _ := base64.StdEncoding.DecodeString(le.Data["leaves"].([]any)[0].(string))
	if _, err := leaf.ParseLeaf(raw0); err != nil {
		t.Fatalf("leaf 0: %v", err)
	}
	c1, err := ts.client.Logical().ReadWithData("sys/audit-log/consistency", map[string][]string{"old": {"2"}, "new": {strconv.Itoa(size)}})
	if err != nil {
		t.Fatal(err)
	}
	raw1, _ := base64.StdEncoding.DecodeString(le.Data["leaves"].([]any)[1].(string))
	oldRoot := sumtlog.NodeHash(sumtlog.RecordHash(raw0), sumtlog.RecordHash(raw1))
	var proof sumtlog.TreeProof
	for _, p := range c1.Data["proof"].([]any) {
		var h sumtlog.Hash
		b, _ := base64.StdEncoding.DecodeString(p.(string))
		copy(h[:], b)
		proof = append(proof, h)
	}
	newRoot, _ := base64.StdEncoding.DecodeString(strings.Split(body0, "\n")[2])
	var nr sumtlog.Hash
	copy(nr[:], newRoot)
	if err := sumtlog.CheckTree(proof, int64(size), nr, 2, oldRoot); err != nil {
		t.Fatalf("consistency 2→%d does not verify: %v", size, err)
	}
	for _, bad := range []string{"inclusion?index=x", "inclusion", "consistency?old=5", "entries?start=3&end=2", "entries?start=0&end=5000", "tile/../checkpoint", "tile/0/999", "nope"} {
		if code, body := ts.raw(t, "GET", "/v1/sys/audit-log/"+bad, ts.root, nil); code != 400 && code != 404 {
			t.Errorf("%s: %d %s", bad, code, body)
		}
	}
	s, err := ts.client.Logical().Write("sys/audit-log/disclose", map[string]any{"index": 2, "fields": []string{"time", "request.path", "auth.display_name"}})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(s.Data["bundle"])
	var b leaf.Bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	got, err := leaf.VerifyBundle(&b, v)
	if err != nil {
		t.Fatalf("bundle does not verify: %v", err)
	}
	if got.Index != 2 || len(got.Fields) != 3 {
		t.Fatalf("verified: %+v", got)
	}
	for _, bad := range []map[string]any{{"fields": []string{"time"}}, {"index": 2}, {"index": 1 << 40, "fields": []string{"time"}}, {"index": 2, "fields": []string{"nope"}}} {
		if _, err := ts.client.Logical().Write("sys/audit-log/disclose", bad); statusOf(err) != http.StatusBadRequest {
			t.Errorf("disclose %v: %v", bad, err)
		}
	}
}

// A transparency log deleted (or rolled back) behind the server's back is
// refused at the next unseal, not silently started over.
func TestDeletedLogFailsUnseal(t *testing.T) {
	ts, _, logDir := auditedServer(t)
	for i := 0; i < 3; i++ {
		if _, err := ts.client.KVv2("secret").Put(t.Context(), "app/db", map[string]any{"password": "p"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.client.Sys().Seal(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(logDir); err != nil {
		t.Fatal(err)
	}
	_, err := ts.client.Sys().Unseal(hex.EncodeToString(ts.key))
	if err == nil || !strings.Contains(err.Error(), "deleted or rolled back") {
		t.Fatalf("unseal with the log deleted: %v", err)
	}
	if st, _ := ts.client.Sys().SealStatus(); !st.Sealed {
		t.Fatal("the server unsealed without its log")
	}
}

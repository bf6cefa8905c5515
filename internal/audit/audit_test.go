package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/edgevault/edgevault/internal/audit/leaf"
	"github.com/edgevault/edgevault/internal/audit/tlog"
)

// rig is a broker with a file device and a tlog device in a temp dir.
type rig struct {
	b        *Broker
	file     string
	logDir   string
	verifier note.Verifier
	signer   note.Signer
	salt     *Salt
}

func newKeys(t testing.TB) (note.Signer, note.Verifier) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "test-audit")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func newRig(t testing.TB, opts Options) *rig {
	dir := t.TempDir()
	s, v := newKeys(t)
	r := &rig{file: filepath.Join(dir, "audit.log"), logDir: filepath.Join(dir, "audit-log"), signer: s, verifier: v,
		salt: NewSalt(bytes.Repeat([]byte{7}, 32))}
	r.open(t, opts)
	return r
}

func (r *rig) open(t testing.TB, opts Options) {
	t.Helper()
	opts.Signer = r.signer
	r.b = NewBroker(opts)
	t.Cleanup(func() { r.b.Close() })
	if err := r.b.Enable(DeviceConfig{Path: "file", Type: TypeFile, Options: map[string]string{"file_path": r.file}}); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Enable(DeviceConfig{Path: "log", Type: TypeLog, Options: map[string]string{"path": r.logDir}}); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Reconcile(); err != nil {
		t.Fatal(err)
	}
}

// verify closes the broker (so the log is integrated) and checks file and log agree.
func (r *rig) verify(t testing.TB) *Report {
	t.Helper()
	if err := r.b.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(r.logDir, r.verifier, []string{r.file}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func sampleEntry(i int) *Entry {
	return &Entry{
		Time: time.Date(2026, 11, 25, 10, 0, 0, i, time.UTC),
		Type: TypeRequest,
		Auth: &Auth{ClientToken: "evs.secret-token", Accessor: "acc-1", DisplayName: "token-app", Policies: []string{"default", "app"},
			TokenPolicies: []string{"default", "app"}, TokenType: "service", TokenTTL: 3600, TokenIssueTime: time.Unix(1700000000, 0)},
		Request: &Request{ID: fmt.Sprintf("req-%d", i), Operation: "update", MountPoint: "secret/", MountType: "kv",
			ClientToken: "evs.secret-token", ClientTokenAccessor: "acc-1", Namespace: "edge-1", Path: "secret/data/app/db",
			Data: map[string]any{"data": map[string]any{"password": "hunter2", "n": json.Number("3")}}, RemoteAddress: "127.0.0.1", RemotePort: 5000},
	}
}

func TestEncoderFieldsAreTheLeafFields(t *testing.T) {
	e := &encoder{salt: NewSalt([]byte("k"))}
	en := sampleEntry(1)
	en.Type = TypeResponse
	en.Response = &Response{MountPoint: "secret/", MountType: "kv", StatusCode: 200, LeaseID: "l",
		Auth: &Auth{ClientToken: "evs.new", Accessor: "a2", Policies: []string{"p"}}, Warnings: []string{"w"},
		Data: map[string]any{"data": json.RawMessage(`{"k":"v","n":1}`)}}
	if err := e.encode(en); err != nil {
		t.Fatal(err)
	}
	line := bytes.Clone(e.b)
	got := e.leafFields(line)
	want, err := leaf.Fields(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		t.Fatalf("%v\n%s", err, line)
	}
	if len(got) != len(want) {
		t.Fatalf("encoder recorded %d fields, the line has %d\n%s", len(got), len(want), line)
	}
	for i := range got {
		if got[i].Name != want[i].Name || !bytes.Equal(got[i].Value, want[i].Value) {
			t.Errorf("field %d: encoder %s=%s, parsed %s=%s", i, got[i].Name, got[i].Value, want[i].Name, want[i].Value)
		}
	}
	for _, secret := range []string{"evs.secret-token", "hunter2", "acc-1", "evs.new", `"v"`} {
		if bytes.Contains(line, []byte(secret)) {
			t.Errorf("line shows %q in clear: %s", secret, line)
		}
	}
	if !bytes.Contains(line, []byte(NewSalt([]byte("k")).Hash("hunter2"))) {
		t.Errorf("the secret is not written as its HMAC: %s", line)
	}
}

func TestConcurrentEntriesReachFileAndLogInOrder(t *testing.T) {
	r := newRig(t, Options{CheckpointInterval: 5 * time.Millisecond})
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := r.b.LogEntry(sampleEntry(w*each+i), r.salt); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rep := r.verify(t)
	if !rep.OK() || rep.LogSize != writers*each || rep.Lines != writers*each {
		t.Fatalf("report: %+v", rep)
	}
}

func TestFullDiskFailsClosedAndWritesNothing(t *testing.T) {
	r := newRig(t, Options{})
	if _, err := r.b.LogEntry(sampleEntry(0), r.salt); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Enable(DeviceConfig{Path: "full", Type: TypeFile, Options: map[string]string{"file_path": "/dev/full"}}); err != nil {
		t.Fatal(err)
	}
	_, err := r.b.LogEntry(sampleEntry(1), r.salt)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("err = %v, want audit unavailable: no space left", err)
	}
	if n := r.b.Log().Size(); n != 1 {
		t.Fatalf("the log took the refused entry: size %d", n)
	}
	if err := r.b.Disable("full"); err != nil {
		t.Fatal(err)
	}
	if rep := r.verify(t); !rep.OK() || rep.LogSize != 1 || rep.Lines != 1 {
		t.Fatalf("report: %+v", rep)
	}
}

// A disk that fills in the middle of a batch: the file keeps whole lines only.
func TestFullDiskMidBatchLeavesWholeLines(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("needs root to mount a small tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	r := newRig(t, Options{})
	r.file = filepath.Join(dir, "audit.log")
	if err := r.b.Disable("file"); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Enable(DeviceConfig{Path: "file", Type: TypeFile, Options: map[string]string{"file_path": r.file}}); err != nil {
		t.Fatal(err)
	}
	var failed error
	accepted := 0
	for i := 0; i < 1000 && failed == nil; i++ {
		if _, failed = r.b.LogEntry(sampleEntry(i), r.salt); failed == nil {
			accepted++
		}
	}
	if !errors.Is(failed, ErrUnavailable) {
		t.Fatalf("64 KiB never filled up: %v", failed)
	}
	raw, err := os.ReadFile(r.file)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 || raw[len(raw)-1] != '\n' || bytes.Count(raw, []byte("\n")) != accepted {
		t.Fatalf("file has %d lines for %d accepted entries; ends %q", bytes.Count(raw, []byte("\n")), accepted, raw[max(0, len(raw)-20):])
	}
	if rep := r.verify(t); !rep.OK() || int(rep.LogSize) != accepted {
		t.Fatalf("report: %+v (accepted %d)", rep, accepted)
	}
}

func TestLogRefusalCutsTheFileBack(t *testing.T) {
	r := newRig(t, Options{})
	for i := range 3 {
		if _, err := r.b.LogEntry(sampleEntry(i), r.salt); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.ReadFile(r.file)
	if err := r.b.Log().Close(); err != nil { // the log now refuses appends
		t.Fatal(err)
	}
	if _, err := r.b.LogEntry(sampleEntry(3), r.salt); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	after, _ := os.ReadFile(r.file)
	if !bytes.Equal(before, after) {
		t.Fatalf("the file kept an entry the log refused:\n%s", after[len(before):])
	}
}

func TestRequireAnyServesWhenOneDeviceFails(t *testing.T) {
	r := newRig(t, Options{RequireAny: true})
	if err := r.b.Log().Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.b.LogEntry(sampleEntry(0), r.salt); err != nil {
		t.Fatalf("one device accepted, yet: %v", err)
	}
	raw, _ := os.ReadFile(r.file)
	if bytes.Count(raw, []byte("\n")) != 1 {
		t.Fatalf("file: %q", raw)
	}
}

// After a crash between the file write and the log append, the file's tail
// that the log never got (no request in it was answered) is cut at start.
func TestRestartCutsTheFileTailTheLogNeverGot(t *testing.T) {
	r := newRig(t, Options{})
	for i := range 5 {
		if _, err := r.b.LogEntry(sampleEntry(i), r.salt); err != nil {
			t.Fatal(err)
		}
	}
	r.b.Close()
	f, err := os.OpenFile(r.file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := &encoder{salt: r.salt}
	e.encode(sampleEntry(99))
	f.Write(e.b)              // a whole line of the lost batch
	f.Write(e.b[:len(e.b)/2]) // and a torn one
	f.Close()
	r.open(t, Options{})
	if _, err := r.b.LogEntry(sampleEntry(5), r.salt); err != nil {
		t.Fatal(err)
	}
	if rep := r.verify(t); !rep.OK() || rep.LogSize != 6 || rep.Lines != 6 {
		t.Fatalf("report: %+v", rep)
	}
}

func TestReopenAfterRotation(t *testing.T) {
	r := newRig(t, Options{})
	for i := range 3 {
		r.b.LogEntry(sampleEntry(i), r.salt)
	}
	rotated := r.file + ".1"
	if err := os.Rename(r.file, rotated); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Reopen(); err != nil {
		t.Fatal(err)
	}
	for i := 3; i < 5; i++ {
		r.b.LogEntry(sampleEntry(i), r.salt)
	}
	r.b.Close()
	rep, err := Verify(r.logDir, r.verifier, []string{rotated, r.file}, 0)
	if err != nil || !rep.OK() || rep.Lines != 5 {
		t.Fatalf("report %+v, err %v", rep, err)
	}
	// The new file alone starts at entry 3: fine when told so...
	if rep, _ = Verify(r.logDir, r.verifier, []string{r.file}, 3); !rep.OK() {
		t.Fatalf("new file alone, from 3: %+v", rep)
	}
	// ...but from the start of the log, entries 0-2 are missing.
	rep, _ = Verify(r.logDir, r.verifier, []string{r.file}, 0)
	if len(rep.Problems) != 3 || rep.Problems[0].Kind != ProblemMissing || rep.Problems[0].Index != 0 {
		t.Fatalf("new file alone, from 0: %+v", rep.Problems)
	}
}

// Every kind of damage to the file or the log is reported, by name.
func TestVerifyFindsEveryTamper(t *testing.T) {
	build := func(t *testing.T) *rig {
		r := newRig(t, Options{})
		for i := range 300 {
			if _, err := r.b.LogEntry(sampleEntry(i), r.salt); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.b.Close(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	lines := func(t *testing.T, r *rig) [][]byte {
		raw, err := os.ReadFile(r.file)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.SplitAfter(raw, []byte("\n"))[:300]
	}
	write := func(t *testing.T, r *rig, ls [][]byte) {
		if err := os.WriteFile(r.file, bytes.Join(ls, nil), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cases := map[string]struct {
		damage func(t *testing.T, r *rig)
		kind   string
		detail string
	}{
		"edited line": {func(t *testing.T, r *rig) {
			ls := lines(t, r)
			ls[10] = bytes.Replace(ls[10], []byte("secret/data/app/db"), []byte("secret/data/app/xx"), 1)
			write(t, r, ls)
		}, ProblemAltered, "differs from log entry 10"},
		"deleted line": {func(t *testing.T, r *rig) {
			ls := lines(t, r)
			write(t, r, append(ls[:20:20], ls[21:]...))
		}, ProblemMissing, "log entry 20 is not in the files"},
		"swapped lines": {func(t *testing.T, r *rig) {
			ls := lines(t, r)
			ls[30], ls[31] = ls[31], ls[30]
			write(t, r, ls)
		}, ProblemReordered, "log entry 30 appears after later entries"},
		"inserted line": {func(t *testing.T, r *rig) {
			ls := lines(t, r)
			forged := bytes.Replace(ls[40], []byte("req-40"), []byte("req-forged"), 1)
			write(t, r, append(append(ls[:41:41], forged), ls[41:]...))
		}, ProblemExtra, "not an entry of the log"},
		"head of the file cut": {func(t *testing.T, r *rig) {
			write(t, r, lines(t, r)[150:])
		}, ProblemMissing, "log entry 0 is not in the files"},
		"emptied file": {func(t *testing.T, r *rig) {
			write(t, r, nil)
		}, ProblemMissing, "log entry 299 is not in the files"},
		"truncated file": {func(t *testing.T, r *rig) {
			raw, _ := os.ReadFile(r.file)
			os.WriteFile(r.file, raw[:len(raw)-25], 0o600)
		}, ProblemTruncated, "the file was cut"},
		"deleted tile": {func(t *testing.T, r *rig) {
			if err := os.Remove(filepath.Join(r.logDir, "tile", "0", "000")); err != nil {
				t.Fatal(err)
			}
		}, ProblemLog, "tile/0/000"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := build(t)
			tc.damage(t, r)
			rep, err := Verify(r.logDir, r.verifier, []string{r.file}, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range rep.Problems {
				if p.Kind == tc.kind && strings.Contains(p.Detail, tc.detail) {
					return
				}
			}
			t.Fatalf("want a %s problem mentioning %q; got %+v", tc.kind, tc.detail, rep.Problems)
		})
	}
	t.Run("checkpoint signed by another key", func(t *testing.T) {
		r := build(t)
		_, other := newKeys(t)
		if _, err := Verify(r.logDir, other, []string{r.file}, 0); err == nil || !errors.Is(err, tlog.ErrBadSignature) {
			rep, _ := Verify(r.logDir, other, []string{r.file}, 0)
			if rep == nil || rep.OK() {
				t.Fatalf("a checkpoint checked with another key passed: err %v", err)
			}
		}
	})
}

func TestSignedEntries(t *testing.T) {
	r := newRig(t, Options{})
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	line := []byte(`{"time":"2026-11-25T10:00:00Z","type":"agent-read","request":{"path":"secret/data/app/db","degraded":true},"error":""}`)
	line2 := []byte(`{"time":"2026-11-25T10:00:01Z","type":"agent-read","request":{"path":"secret/data/app/web"},"error":""}`)
	seed, seed2 := bytes.Repeat([]byte{3}, leaf.SeedSize), bytes.Repeat([]byte{4}, leaf.SeedSize)
	commit := func(l, s []byte) []byte {
		fields, _ := leaf.Fields(l)
		lf, _ := leaf.Commit(fields, s)
		return lf
	}
	sig, err := leaf.SignBatch([][]byte{commit(line, seed), commit(line2, seed2)}, priv)
	if err != nil {
		t.Fatal(err)
	}
	id := "spiffe://edge.example/zone/edge-1/agent/a1"
	batch := func(l []byte, sig []byte, from int) SignedBatch {
		return SignedBatch{Entries: []leaf.SignedLine{{Line: l, Seed: seed}, {Line: line2, Seed: seed2}}, Signer: id, PublicKey: der, Signature: sig, From: from}
	}
	idxs, err := r.b.AppendSigned(batch(line, sig, 0))
	if err != nil || len(idxs) != 2 || idxs[1] != idxs[0]+1 {
		t.Fatalf("AppendSigned = %v, %v", idxs, err)
	}
	idx := idxs[0]
	// Sent again with its first entry already logged: only the second is.
	if idxs, err := r.b.AppendSigned(batch(line, sig, 1)); err != nil || len(idxs) != 1 {
		t.Fatalf("AppendSigned from 1 = %v, %v", idxs, err)
	}
	bad := bytes.Clone(sig)
	bad[0] ^= 1
	if _, err := r.b.AppendSigned(batch(line, bad, 0)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("bad signature: err = %v", err)
	}
	multi := bytes.Replace(line, []byte(`,"error"`), []byte(",\n\"error\""), 1)
	if _, err := r.b.AppendSigned(batch(multi, sig, 0)); !errors.Is(err, ErrBadEntry) || !strings.Contains(err.Error(), "one line") {
		t.Fatalf("a line with a newline: err = %v", err)
	}
	forged := bytes.Replace(line, []byte("degraded\":true"), []byte("degraded\":false"), 1)
	if _, err := r.b.AppendSigned(batch(forged, sig, 0)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("edited line: err = %v", err)
	}
	lg := r.b.Log()
	if lg.Size() != 3 {
		t.Fatalf("log size %d after refused entries", lg.Size())
	}
	cp, err := lg.Integrate()
	if err != nil {
		t.Fatal(err)
	}
	priv2, _ := lg.Private(idx)
	s, l, _ := SplitPrivate(priv2)
	proof, err := lg.InclusionProof(idx, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := leaf.Disclose(bytes.TrimSuffix(l, []byte("\n")), s, []string{"request.path"}, idx, proof, cp.Signed)
	if err != nil {
		t.Fatal(err)
	}
	got, err := leaf.VerifyBundle(bundle, r.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if got.Signer == nil || got.Signer.ID != id {
		t.Fatalf("bundle signer = %+v", got.Signer)
	}
	if rep := r.verify(t); !rep.OK() {
		t.Fatalf("report: %+v", rep)
	}
}

func TestDeviceValidation(t *testing.T) {
	b := NewBroker(Options{})
	defer b.Close()
	for _, tc := range []struct {
		cfg  DeviceConfig
		want string
	}{
		{DeviceConfig{Path: "", Type: TypeFile}, "path"},
		{DeviceConfig{Path: "a/b", Type: TypeFile}, "path"},
		{DeviceConfig{Path: "x", Type: "syslog"}, `type "syslog"`},
		{DeviceConfig{Path: "x", Type: TypeFile}, "options.file_path is required"},
		{DeviceConfig{Path: "x", Type: TypeFile, Options: map[string]string{"file_path": "/tmp/x", "mode": "1"}}, `"mode" is not an option`},
		{DeviceConfig{Path: "x", Type: TypeLog, Options: map[string]string{"path": t.TempDir()}}, "no checkpoint signing key"},
		{DeviceConfig{Path: "x", Type: TypeFile, Options: map[string]string{"file_path": "/nonexistent/dir/a.log"}}, "no such file"},
	} {
		err := b.Enable(tc.cfg)
		if !errors.Is(err, ErrInvalidDevice) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if b.Enabled() {
		t.Fatal("a refused device was enabled")
	}
}

// A device may not write another device's files, or the storage file.
func TestDevicePathsDoNotOverlap(t *testing.T) {
	dir := t.TempDir()
	s, _ := newKeys(t)
	db := filepath.Join(dir, "edgevault.db")
	b := NewBroker(Options{Signer: s, Reserved: []string{db}})
	defer b.Close()
	logDir := filepath.Join(dir, "log")
	if err := b.Enable(DeviceConfig{Path: "log", Type: TypeLog, Options: map[string]string{"path": logDir}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Enable(DeviceConfig{Path: "a", Type: TypeFile, Options: map[string]string{"file_path": filepath.Join(dir, "a.log")}}); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(logDir, "private", "journal"), "overlap"},
		{db, "storage"},
		{filepath.Join(dir, "link", "a.log"), "writes"},
	} {
		err := b.Enable(DeviceConfig{Path: "x", Type: TypeFile, Options: map[string]string{"file_path": tc.path}})
		if !errors.Is(err, ErrInvalidDevice) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.path, err, tc.want)
		}
	}
}

// An entry too large for one line is recorded with its data's size instead,
// and does not fail the other requests of its batch.
func TestOversizedDataIsRecordedBySize(t *testing.T) {
	r := newRig(t, Options{})
	big := map[string]any{}
	for i := range 20000 {
		big[fmt.Sprintf("k%05d", i)] = "v"
	}
	e := sampleEntry(0)
	e.Request.Data = big
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.b.LogEntry(sampleEntry(i+1), r.salt); err != nil {
				t.Error(err)
			}
		}()
	}
	if _, err := r.b.LogEntry(e, r.salt); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	raw, _ := os.ReadFile(r.file)
	if !bytes.Contains(raw, []byte(`"data":{"edgevault_truncated":true,"encoded_bytes":`)) {
		t.Fatalf("no truncation marker in %d bytes", len(raw))
	}
	if rep := r.verify(t); !rep.OK() || rep.LogSize != 9 {
		t.Fatalf("report: %+v", rep)
	}
}

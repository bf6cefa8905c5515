package leaf

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// fixture is a log of a few entries and a bundle for one of them, written
// to and read back from a file as an auditor would receive it.
type fixture struct {
	log   *testLog
	lines [][]byte
	seeds [][]byte
}

func newFixture(t *testing.T, lines ...[]byte) *fixture {
	t.Helper()
	f := &fixture{log: newTestLog(t, "example.com/edgevault/audit")}
	filler := [][]byte{
		[]byte(`{"type":"request","request":{"path":"sys/health"}}`),
		[]byte(`{"type":"response","request":{"path":"sys/health"},"response":{"data":{"ok":true}}}`),
	}
	for i, l := range append(append(filler, lines...), filler...) {
		seed := testSeed(byte(10 * i))
		f.log.append(mustCommit(t, l, seed))
		f.lines = append(f.lines, l)
		f.seeds = append(f.seeds, seed)
	}
	return f
}

// bundle discloses names of entry i and returns the bundle after a trip
// through a JSON file.
func (f *fixture) bundle(t *testing.T, i int, names ...string) *Bundle {
	t.Helper()
	b, err := Disclose(f.lines[i], f.seeds[i], names, uint64(i), f.log.proof(uint64(i)), f.log.checkpoint())
	if err != nil {
		t.Fatalf("Disclose: %v", err)
	}
	return roundTrip(t, b)
}

func roundTrip(t *testing.T, b *Bundle) *Bundle {
	t.Helper()
	js, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bundle.json")
	if err := os.WriteFile(path, js, 0o600); err != nil {
		t.Fatal(err)
	}
	js, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out Bundle
	if err := json.Unmarshal(js, &out); err != nil {
		t.Fatalf("unmarshal bundle: %v\n%s", err, js)
	}
	return &out
}

func TestDiscloseVerify(t *testing.T) {
	entry := readEntry(t)
	f := newFixture(t, entry)
	b := f.bundle(t, 2, "request.path", "auth", "type")
	v, err := VerifyBundle(b, f.log.verifier())
	if err != nil {
		t.Fatalf("VerifyBundle: %v", err)
	}
	if v.Origin != "example.com/edgevault/audit" || v.Index != 2 || v.TreeSize != 5 || v.Signer != nil {
		t.Fatalf("Verified = %+v", v)
	}
	var names []string
	got := map[string]string{}
	for _, d := range v.Fields {
		names = append(names, d.Name)
		got[d.Name] = string(d.Value)
	}
	if len(names) != 12 || got["request.path"] != `"secret/data/app/db"` || got["type"] != `"response"` ||
		got["auth.policies"] != `["default","kv-reader"]` || got["auth.metadata"] != `{"role_name":"edge-app","zone":"edge-1"}` {
		t.Fatalf("disclosed %q", got)
	}
	if _, ok := got["request.operation"]; ok {
		t.Fatal("request.operation disclosed but not asked for")
	}
	if len(b.Withheld) != 26-12 {
		t.Fatalf("%d withheld fields, want 14", len(b.Withheld))
	}
	// Withheld digests reveal nothing guessable: they do not equal an
	// unsalted hash of the value.
	for _, w := range b.Withheld {
		unsalted := FieldDigest([16]byte{}, []byte(`"read"`))
		if w.Name == "request.operation" && bytes.Equal(w.Digest, unsalted[:]) {
			t.Fatal("withheld digest is not salted")
		}
	}
}

// TestValueBytesSurviveJSON: values with whitespace and HTML characters are
// carried byte for byte, whatever JSON library re-encodes the bundle.
func TestValueBytesSurviveJSON(t *testing.T) {
	line := []byte(`{"type": "request", "request": {"path": "kv/a&b<c>", "data": { "k" : [1, 2] }}}`)
	f := newFixture(t, line)
	b := f.bundle(t, 2, "request")
	var generic any
	js, _ := json.Marshal(b)
	if err := json.Unmarshal(js, &generic); err != nil {
		t.Fatal(err)
	}
	js, _ = json.Marshal(generic) // a re-encoding by a generic JSON tool
	var again Bundle
	if err := json.Unmarshal(js, &again); err != nil {
		t.Fatal(err)
	}
	v, err := VerifyBundle(&again, f.log.verifier())
	if err != nil {
		t.Fatalf("VerifyBundle after re-encoding: %v", err)
	}
	if string(v.Fields[0].Value) != `{ "k" : [1, 2] }` || string(v.Fields[1].Value) != `"kv/a&b<c>"` {
		t.Fatalf("values = %s, %s", v.Fields[0].Value, v.Fields[1].Value)
	}
}

func TestDiscloseErrors(t *testing.T) {
	f := newFixture(t, readEntry(t))
	cp := f.log.checkpoint()
	_, err := Disclose(f.lines[2], f.seeds[2], []string{"request.nope"}, 2, f.log.proof(2), cp)
	if !errors.Is(err, ErrUnknownField) || !strings.Contains(err.Error(), `"request.nope"`) {
		t.Errorf("unknown field: %v", err)
	}
	_, err = Disclose(f.lines[2], f.seeds[2], []string{"req"}, 2, f.log.proof(2), cp)
	if !errors.Is(err, ErrUnknownField) {
		t.Errorf("prefix of a key is not a key: %v", err)
	}
	_, err = Disclose(f.lines[2], f.seeds[3], []string{"type"}, 2, f.log.proof(2), cp)
	if !errors.Is(err, ErrMismatch) {
		t.Errorf("wrong seed: %v", err)
	}
	_, err = Disclose(f.lines[2], f.seeds[2], []string{"type"}, 1, f.log.proof(1), cp)
	if !errors.Is(err, ErrMismatch) {
		t.Errorf("wrong index: %v", err)
	}
	_, err = Disclose(f.lines[2], f.seeds[2], []string{"type"}, 2, f.log.proof(2), []byte("not a note"))
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("bad checkpoint: %v", err)
	}
}

func TestTamper(t *testing.T) {
	f := newFixture(t, readEntry(t))
	other := newTestLog(t, "example.com/edgevault/audit")
	for _, tc := range []struct {
		name   string
		tamper func(b *Bundle)
		err    error
		msg    string
	}{
		{"disclosed value", func(b *Bundle) { b.Disclosed[0].Value = RawJSON(`"secret/data/app/other"`) },
			ErrMismatch, "field request.path: value does not match its digest"},
		{"salt", func(b *Bundle) { b.Disclosed[0].Salt[0] ^= 1 },
			ErrMismatch, "field request.path: value does not match its digest"},
		{"value and its digest", func(b *Bundle) {
			b.Disclosed[0].Value = RawJSON(`"x"`)
			d := FieldDigest([16]byte(b.Disclosed[0].Salt), b.Disclosed[0].Value)
			b.Disclosed[0].Digest = d[:]
		}, ErrMismatch, "inclusion proof does not lead to the checkpoint's root: the entry or the proof was modified"},
		{"swapped withheld digests", func(b *Bundle) {
			b.Withheld[0].Digest, b.Withheld[1].Digest = b.Withheld[1].Digest, b.Withheld[0].Digest
		}, ErrMismatch, "inclusion proof does not lead"},
		{"dropped withheld field", func(b *Bundle) { b.Withheld = b.Withheld[1:] }, ErrMismatch, "inclusion proof does not lead"},
		{"dropped disclosed field", func(b *Bundle) { b.Disclosed = b.Disclosed[1:] }, ErrMismatch, "inclusion proof does not lead"},
		{"disclosed moved to withheld under another name", func(b *Bundle) {
			b.Withheld = append(b.Withheld, WithheldField{Name: "zz", Digest: b.Disclosed[0].Digest})
			b.Disclosed = b.Disclosed[1:]
		}, ErrMismatch, "inclusion proof does not lead"},
		{"proof hash", func(b *Bundle) { b.Inclusion[0] = base64.StdEncoding.EncodeToString(make([]byte, 32)) },
			ErrMismatch, "inclusion proof does not lead"},
		{"proof of another index", func(b *Bundle) { b.Index = 3 }, ErrMismatch, "inclusion proof does not lead"},
		{"wrong tree size", func(b *Bundle) { b.TreeSize = 4 }, ErrMismatch, "tree_size 4 differs from the checkpoint's size 5"},
		{"index outside tree", func(b *Bundle) { b.Index = 5 }, ErrMismatch, "index 5 is not in a tree of size 5"},
		{"checkpoint signed by another key", func(b *Bundle) { b.Checkpoint = string(other.checkpoint()) },
			ErrBadSignature, "checkpoint is not signed by the log key example.com/edgevault/audit+"},
		{"checkpoint body edited", func(b *Bundle) { b.Checkpoint = strings.Replace(b.Checkpoint, "\n5\n", "\n6\n", 1) },
			ErrBadSignature, "does not verify: the checkpoint was modified"},
		{"unsorted names", func(b *Bundle) { b.Disclosed[0], b.Disclosed[1] = b.Disclosed[1], b.Disclosed[0] },
			ErrMalformed, "must be sorted and unique"},
		{"name both disclosed and withheld", func(b *Bundle) {
			b.Withheld = append([]WithheldField{{Name: "request.path", Digest: b.Disclosed[0].Digest}}, b.Withheld...)
		}, ErrMalformed, "field request.path is both disclosed and withheld"},
		{"short salt", func(b *Bundle) { b.Disclosed[0].Salt = b.Disclosed[0].Salt[:8] }, ErrMalformed, "salt is 8 bytes"},
		{"bad proof base64", func(b *Bundle) { b.Inclusion[0] = "!!" }, ErrMalformed, "inclusion proof hash 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := f.bundle(t, 2, "request.path", "type")
			if len(b.Disclosed) != 2 || b.Disclosed[0].Name != "request.path" {
				t.Fatalf("fixture: disclosed %+v", b.Disclosed)
			}
			tc.tamper(b)
			_, err := VerifyBundle(roundTrip(t, b), f.log.verifier())
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("VerifyBundle error = %v, want %v containing %q", err, tc.err, tc.msg)
			}
		})
	}
}

// TestModifiedEntryInLog: the log holds a leaf for a modified line; a bundle
// for the original line cannot be made to verify against it.
func TestModifiedEntryInLog(t *testing.T) {
	orig := readEntry(t)
	forged := bytes.Replace(orig, []byte(`"secret/data/app/db"`), []byte(`"secret/data/app/xx"`), 1)
	f := newFixture(t, forged)
	proof := f.log.proof(2)
	_, err := Disclose(orig, f.seeds[2], []string{"request.path"}, 2, proof, f.log.checkpoint())
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("Disclose of a line that is not the logged one: %v", err)
	}
	// Build the bundle for the forged entry, then replace the value.
	b := f.bundle(t, 2, "request.path")
	good := mustFields(t, orig)
	for i, d := range b.Disclosed {
		for _, g := range good {
			if g.Name == d.Name {
				b.Disclosed[i].Value = RawJSON(g.Value)
				dg := FieldDigest([16]byte(d.Salt), g.Value)
				b.Disclosed[i].Digest = dg[:]
			}
		}
	}
	if _, err := VerifyBundle(b, f.log.verifier()); !errors.Is(err, ErrMismatch) {
		t.Fatalf("VerifyBundle: %v, want ErrMismatch", err)
	}
}

func signedLine(t *testing.T, line, seed []byte, key crypto.Signer, id string) []byte {
	t.Helper()
	return signedBatch(t, [][]byte{line}, [][]byte{seed}, key, id)[0]
}

// signedBatch signs lines together and returns them with their signer.
func signedBatch(t *testing.T, lines, seeds [][]byte, key crypto.Signer, id string) [][]byte {
	t.Helper()
	leaves := make([][]byte, len(lines))
	entries := make([]SignedLine, len(lines))
	for i := range lines {
		leaves[i] = mustCommit(t, lines[i], seeds[i])
		entries[i] = SignedLine{Line: lines[i], Seed: seeds[i]}
	}
	sig, err := SignBatch(leaves, key)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	signed, err := AttachSigner(entries, id, der, sig)
	if err != nil {
		t.Fatalf("AttachSigner: %v", err)
	}
	out := make([][]byte, len(signed))
	for i, s := range signed {
		// The leaf AttachSigner builds from the digests it already has is
		// the line's own commitment.
		if want := mustCommit(t, s.Line, seeds[i]); !bytes.Equal(s.Leaf, want) {
			t.Fatalf("entry %d: AttachSigner's leaf differs from Commit(Fields(line)):\n%x\n%x", i, s.Leaf, want)
		}
		out[i] = s.Line
	}
	return out
}

func TestSignedEntry(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"ed25519", edKey}, {"ecdsa-p256", ecKey}} {
		t.Run(tc.name, func(t *testing.T) {
			id := "spiffe://edge.example/zone/edge-1/agent/a7"
			entry := bytes.TrimSpace(readEntry(t))
			seed := testSeed(20) // the seed of entry 2 in the fixture
			line := signedLine(t, entry, seed, tc.key, id)
			f := newFixture(t, line)
			b := f.bundle(t, 2, "request.path")
			if len(b.Disclosed) != 7 || b.Disclosed[4].Name != "signer.id" {
				t.Fatalf("signer fields not disclosed: %+v", b.Disclosed)
			}
			v, err := VerifyBundle(b, f.log.verifier())
			if err != nil {
				t.Fatalf("VerifyBundle: %v", err)
			}
			if v.Signer == nil || v.Signer.ID != id {
				t.Fatalf("Signer = %+v", v.Signer)
			}
		})
	}
}

func TestSignedEntryBad(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	entry := bytes.TrimSpace(readEntry(t))
	seed := testSeed(20)
	good := signedLine(t, entry, seed, key, "spiffe://edge.example/agent/a7")
	fields := mustFields(t, good)
	get := func(name string) string {
		for _, f := range fields {
			if f.Name == name {
				return string(f.Value)
			}
		}
		t.Fatalf("no field %s", name)
		return ""
	}
	otherDER, _ := x509.MarshalPKIXPublicKey(otherPub)
	sig, _ := base64.StdEncoding.DecodeString(strings.Trim(get("signer.signature"), `"`))
	sig[0] ^= 1
	for _, tc := range []struct{ name, old, new string }{
		{"bad signature", get("signer.signature"), `"` + base64.StdEncoding.EncodeToString(sig) + `"`},
		{"other key", get("signer.public_key"), `"` + base64.StdEncoding.EncodeToString(otherDER) + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := bytes.Replace(good, []byte(tc.old), []byte(tc.new), 1)
			f := newFixture(t, line)
			b := f.bundle(t, 2, "type")
			_, err := VerifyBundle(b, f.log.verifier())
			if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), `signer "spiffe://edge.example/agent/a7"`) {
				t.Fatalf("VerifyBundle error = %v, want ErrBadSignature naming the signer", err)
			}
			if _, err := AttachSigner([]SignedLine{{Line: entry, Seed: seed}}, "x", otherDER, sig); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("AttachSigner accepted a bad signature: %v", err)
			}
		})
	}
	// The signer's own entry may not carry signer.* fields.
	if _, err := SignBatch([][]byte{mustCommit(t, good, seed)}, key); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Sign of an entry with signer.* fields: %v", err)
	}
	if _, err := AttachSigner([]SignedLine{{Line: good, Seed: seed}}, "x", nil, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("AttachSigner twice: %v", err)
	}
}

func TestAttachSignerShape(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	for _, line := range []string{`{}`, `{"a":{}}` + "\n", `{ "type" : "x" }  `} {
		out := signedLine(t, []byte(line), testSeed(0), key, "id")
		fs, err := Fields(out)
		if err != nil {
			t.Fatalf("AttachSigner(%q) = %q: %v", line, out, err)
		}
		trailing := line[len(strings.TrimRight(line, " \n")):]
		if !strings.HasSuffix(string(out), `]}}`+trailing) || !slices.ContainsFunc(fs, func(f Field) bool { return f.Name == "signer.signature" }) {
			t.Fatalf("AttachSigner(%q) = %q", line, out)
		}
	}
}

func TestParseCheckpoint(t *testing.T) {
	root := base64.StdEncoding.EncodeToString(make([]byte, 32))
	c, err := ParseCheckpoint("o\n12\n" + root + "\next\n")
	if err != nil || c.Origin != "o" || c.Size != 12 || len(c.Extensions) != 1 {
		t.Fatalf("ParseCheckpoint = %+v, %v", c, err)
	}
	for _, text := range []string{
		"o\n12\n" + root,
		"o\n12\n",
		"\n12\n" + root + "\n",
		"o\n012\n" + root + "\n",
		"o\n-1\n" + root + "\n",
		"o\n1\n" + root[:10] + "\n",
		"o\n1\n" + root + "\n\n",
	} {
		if _, err := ParseCheckpoint(text); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseCheckpoint(%q) error = %v, want ErrMalformed", text, err)
		}
	}
}

func FuzzBundleJSON(f *testing.F) {
	log := newTestLog(f, "example.com/log")
	entry := readEntry(f)
	seed := testSeed(0)
	log.append(mustCommit(f, entry, seed))
	log.append(mustCommit(f, []byte(`{"type":"request"}`), seed))
	b, err := Disclose(entry, seed, []string{"request"}, 0, log.proof(0), log.checkpoint())
	if err != nil {
		f.Fatal(err)
	}
	js, _ := json.Marshal(b)
	f.Add(js)
	f.Add([]byte(`{"index":0,"tree_size":1,"disclosed":[],"withheld":[],"inclusion_proof":[],"checkpoint":""}`))
	v := log.verifier()
	f.Fuzz(func(t *testing.T, js []byte) {
		var b Bundle
		if json.Unmarshal(js, &b) != nil {
			return
		}
		out, err := VerifyBundle(&b, v)
		if err == nil {
			if out.TreeSize != 2 || out.Index > 1 {
				t.Fatalf("verified a bundle outside the log: %+v", out)
			}
			return
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMismatch) && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("error without a sentinel: %v", err)
		}
	})
}

// TestDocExample keeps the worked example of docs/audit-format.md honest:
// the bundle printed there verifies with the key printed there, and the
// leaf it commits to is the one shown byte by byte.
func TestDocExample(t *testing.T) {
	js, err := os.ReadFile(filepath.Join("testdata", "example-bundle.json"))
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := os.ReadFile(filepath.Join("testdata", "example.vkey"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	var b Bundle
	if err := json.Unmarshal(js, &b); err != nil {
		t.Fatal(err)
	}
	out, err := VerifyBundle(&b, v)
	if err != nil {
		t.Fatalf("doc example does not verify: %v", err)
	}
	if len(out.Fields) != 1 || string(out.Fields[0].Value) != `"kv/a"` {
		t.Fatalf("doc example fields = %+v", out.Fields)
	}
	seed := make([]byte, SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	leaf := mustCommit(t, []byte(`{"type":"request","request":{"operation":"read","path":"kv/a"}}`), seed)
	const want = "01000311726571756573742e6f7065726174696f6e8af39721aa4388c8923c8b1e153d8e4d72c3564252c8f2f8155b737e8e854ddf" +
		"0c726571756573742e706174683f55dd0e9aec21742391166734f64f12f72d88fc56fe32256a4217e5810ce117" +
		"0474797065fc4b65954215c2e6c13e5b5fa3a30d28c144fbe50be83c6399bce5de65a6e2ad"
	if hex.EncodeToString(leaf) != want {
		t.Fatalf("doc example leaf = %x", leaf)
	}
}

// Entries signed together each verify alone, through their own proof; an
// entry cannot borrow another's place in the batch.
func TestSignedBatch(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	id := "spiffe://edge.example/zone/z/agent/a1"
	for _, n := range []int{1, 2, 3, 7, 16} {
		lines, seeds := make([][]byte, n), make([][]byte, n)
		for i := range n {
			lines[i] = fmt.Appendf(nil, `{"seq":%d,"type":"agent-read","request":{"path":"secret/data/k%d"}}`, i+1, i)
			seeds[i] = testSeed(byte(100 + i))
		}
		signed := signedBatch(t, lines, seeds, key, id)
		f := &fixture{log: newTestLog(t, "example.com/edgevault/audit")}
		for i, l := range signed {
			f.log.append(mustCommit(t, l, seeds[i]))
			f.lines, f.seeds = append(f.lines, l), append(f.seeds, seeds[i])
		}
		for i := range n {
			v, err := VerifyBundle(f.bundle(t, i, "seq"), f.log.verifier())
			if err != nil || v.Signer == nil || v.Signer.BatchSize != uint64(n) || v.Signer.BatchIndex != uint64(i) {
				t.Fatalf("n=%d entry %d: %v %+v", n, i, err, v)
			}
		}
		if n < 2 {
			continue
		}
		// Entry 0 claiming entry 1's place (index and proof) in the batch.
		swapped := bytes.Replace(signed[0], []byte(`"batch_index":0`), []byte(`"batch_index":1`), 1)
		p0, p1 := proofText(t, signed[0]), proofText(t, signed[1])
		swapped = bytes.Replace(swapped, p0, p1, 1)
		g := newFixture(t, swapped)
		_, err := VerifyBundle(g.bundle(t, 2, "seq"), g.log.verifier())
		if !errors.Is(err, ErrBadSignature) {
			t.Fatalf("n=%d: entry with another's batch place: %v, want ErrBadSignature", n, err)
		}
		// A batch verifies only whole and in order.
		entries := []SignedLine{{Line: lines[1], Seed: seeds[1]}, {Line: lines[0], Seed: seeds[0]}}
		sig := signerValue(t, signed[0], "signer.signature")
		der, _ := x509.MarshalPKIXPublicKey(key.Public())
		if _, err := AttachSigner(entries, id, der, sig); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("n=%d: reordered batch accepted: %v", n, err)
		}
	}
}

func proofText(t *testing.T, line []byte) []byte {
	t.Helper()
	i := bytes.Index(line, []byte(`"batch_proof":`))
	if i < 0 {
		t.Fatalf("no batch_proof in %s", line)
	}
	j := bytes.IndexByte(line[i:], ']')
	return line[i : i+j+1]
}

func signerValue(t *testing.T, line []byte, name string) []byte {
	t.Helper()
	for _, f := range mustFields(t, line) {
		if f.Name == name {
			var b []byte
			if err := json.Unmarshal(f.Value, &b); err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("no %s in %s", name, line)
	return nil
}

package leaf

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// countingReader is a deterministic byte stream, so the doc example's key
// (and so its signature: Ed25519 is deterministic) is the same every time.
type countingReader struct{ n byte }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.n
		r.n++
	}
	return len(p), nil
}

// TestRegenerateDocExample rewrites the worked example's bundle and key
// (go test -run TestRegenerateDocExample -update ./internal/audit/leaf) and
// prints the values docs/audit-format.md shows.
func TestRegenerateDocExample(t *testing.T) {
	if !*update {
		t.Skip("only with -update")
	}
	const origin = "example.com/edgevault/audit"
	skey, vkey, err := note.GenerateKey(&countingReader{}, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	seed := make([]byte, SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	log := &testLog{t: t, signer: signer, vkey: vkey}
	line0 := []byte(`{"type":"request","request":{"operation":"read","path":"kv/a"}}`)
	f0 := mustFields(t, line0)
	leaf0 := mustCommit(t, line0, seed)
	leaf1 := mustCommit(t, []byte(`{"type":"response"}`), seed)
	log.append(leaf0)
	log.append(leaf1)
	cp := log.checkpoint()
	b, err := Disclose(line0, seed, []string{"request.path"}, 0, log.proof(0), cp)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.MarshalIndent(b, "", "  ")
	os.WriteFile(filepath.Join("testdata", "example-bundle.json"), append(js, '\n'), 0o644)
	os.WriteFile(filepath.Join("testdata", "example.vkey"), []byte(vkey+"\n"), 0o644)
	for _, f := range f0 {
		s := Salt(seed, f.Name)
		fmt.Printf("| `%s` | `%s` = `%x` | `%x` | `%x` |\n", f.Name, f.Value, f.Value, s, FieldDigest(s, f.Value))
	}
	h0, h1 := tlog.RecordHash(leaf0), tlog.RecordHash(leaf1)
	root := sha256.Sum256(append(append([]byte{1}, h0[:]...), h1[:]...))
	fmt.Printf("leaf0 %x\nleafhash0 %x\nleaf1 %x\nleafhash1 %x\nroot %x\nvkey %s\n%s\n", leaf0, h0[:], leaf1, h1[:], root, vkey, js)
	_ = hex.EncodeToString
}

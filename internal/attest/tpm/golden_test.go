package tpm_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgevault/edgevault/internal/attest/tpm"
)

var update = flag.Bool("update", false, "regenerate testdata/*.json from the TPM simulator")

// golden is real evidence from the simulator, kept in testdata so the pure
// functions' tests and the fuzz seeds need no TPM.
type golden struct {
	EKPublic   []byte            `json:"ek_public"`
	AKPublic   []byte            `json:"ak_public"`
	Qualifying []byte            `json:"qualifying"`
	Quote      tpm.QuoteEvidence `json:"quote"`
}

// goldenFiles names the testdata files and the keys they hold.
var goldenFiles = []struct {
	file   string
	ek, ak tpm2.TPMTPublic
}{
	{"ecc.json", tpm2.ECCEKTemplate, eccAKTemplate},
	{"rsa.json", tpm2.RSAEKTemplate, rsaAKTemplate},
}

// TestGoldenUpdate regenerates testdata with -update.
func TestGoldenUpdate(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate testdata from the simulator")
	}
	for _, g := range goldenFiles {
		s := openSim(t, g.ek)
		ak := s.newAK(g.ak)
		q := tpm.Qualifying([]byte("0123456789abcdef0123456789abcdef"), []byte("tls key DER"))
		b, err := json.MarshalIndent(golden{EKPublic: s.ekPub, AKPublic: ak.Public, Qualifying: q, Quote: s.quote(ak, q, pcrs07)}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", g.file), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		s.sim.Close()
	}
}

// loadGolden reads testdata/name.
func loadGolden(t testing.TB, name string) golden {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return g
}

// quote decodes g's quote.
func (g golden) quote(t testing.TB) tpm.Quote {
	t.Helper()
	q, err := g.Quote.Decode()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// Package softhsmtest gives tests a fresh SoftHSM2 token of their own: a
// temporary token directory named by a temporary SOFTHSM2_CONF, initialised
// with softhsm2-util. Tests fail (never skip) when SoftHSM2 is missing.
package softhsmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Lib is where Debian's softhsm2 package installs the PKCS#11 module.
const Lib = "/usr/lib/softhsm/libsofthsm2.so"

// Token labels and PINs of the token NewToken creates.
const (
	TokenLabel = "T"
	PIN        = "1234"
	SOPIN      = "5678"
)

// NewToken creates a token in t.TempDir() and points SOFTHSM2_CONF at it
// for the rest of the test (t.Setenv, so the test must not be parallel;
// child processes inherit it).
func NewToken(t testing.TB) {
	t.Helper()
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		t.Fatal("softhsm2-util not found: run ./scripts/test, which installs softhsm2")
	}
	if _, err := os.Stat(Lib); err != nil {
		t.Fatalf("%s not found: run ./scripts/test, which installs softhsm2", Lib)
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command(util, "--init-token", "--free", "--label", TokenLabel, "--pin", PIN, "--so-pin", SOPIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
}

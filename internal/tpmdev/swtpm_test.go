package tpmdev

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/edgevault/edgevault/internal/tpmdev/swtpmtest"
)

// swtpm starts a swtpm process (see swtpmtest.Start).
func swtpm(tb testing.TB, mode string) string {
	tb.Helper()
	return swtpmtest.Start(tb, mode)
}

func swtpmIn(tb testing.TB, mode, state string) string {
	tb.Helper()
	return swtpmtest.StartIn(tb, mode, state)
}

func openSpec(tb testing.TB, spec string) *Device {
	tb.Helper()
	d, err := Open(spec)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

func TestSwtpmTCP(t *testing.T) {
	flow(t, openSpec(t, swtpm(t, "tcp")))
}

func TestSwtpmUnix(t *testing.T) {
	flow(t, openSpec(t, swtpm(t, "unix")))
}

// TestSwtpmOtherTPM copies a sealed blob and an AK file between two swtpm
// instances, and checks that state survives reconnecting.
func TestSwtpmOtherTPM(t *testing.T) {
	spec := swtpm(t, "unix")
	d := openSpec(t, spec)
	dir := t.TempDir()
	akPub, err := d.LoadAK(dir)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := d.Seal([]byte("key"), []int{7})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	again := openSpec(t, spec) // the agent restarts
	if got, err := again.LoadAK(dir); err != nil || !bytes.Equal(got, akPub) {
		t.Fatalf("LoadAK after reconnect: %v", err)
	}
	if got, err := again.Unseal(blob); err != nil || string(got) != "key" {
		t.Fatalf("Unseal after reconnect: %v", err)
	}
	other := openSpec(t, swtpm(t, "tcp"))
	if _, err := other.Unseal(blob); !errors.Is(err, ErrOtherTPM) {
		t.Fatalf("Unseal on another swtpm: %v, want ErrOtherTPM", err)
	}
	if _, err := other.LoadAK(dir); !errors.Is(err, ErrOtherTPM) {
		t.Fatalf("LoadAK on another swtpm: %v, want ErrOtherTPM", err)
	}
}

// TestSwtpmEKCert provisions a swtpm with an EK certificate (swtpm_setup)
// and checks that EK returns it and that it certifies the EK's key.
func TestSwtpmEKCert(t *testing.T) {
	if _, err := exec.LookPath("swtpm_setup"); err != nil {
		t.Skip("swtpm_setup is not on PATH (Debian: apt-get install swtpm-tools); skipping")
	}
	state := t.TempDir()
	cfg := t.TempDir() // keep swtpm_setup away from the user's config
	cmd := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", state, "--createek", "--create-ek-cert", "--overwrite")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+cfg, "HOME="+cfg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("swtpm_setup cannot provision an EK certificate here: %v\n%s", err, out)
	}
	d := openSpec(t, swtpmIn(t, "unix", state))
	pub, der, err := d.EK()
	if err != nil {
		t.Fatal(err)
	}
	if der == nil {
		t.Fatal("no EK certificate")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	certKey, _ := x509.MarshalPKIXPublicKey(cert.PublicKey)
	h, err := EKHash(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%x", sha256Sum(certKey)); h != want {
		t.Fatalf("EK hash %s, certificate key hash %s", h, want)
	}
}

package tpmdev

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// flow runs every method against d and checks the results; it is shared by
// the simulator and swtpm tests.
func flow(t *testing.T, d *Device) {
	t.Helper()
	ekPub, cert, err := d.EK()
	if err != nil {
		t.Fatal(err)
	}
	hash, err := EKHash(ekPub)
	if err != nil || len(hash) != 64 {
		t.Fatalf("EKHash = %q, %v", hash, err)
	}
	ekPub2, cert2, err := d.EK()
	if err != nil || !bytes.Equal(ekPub, ekPub2) || !bytes.Equal(cert, cert2) {
		t.Fatalf("second EK differs: %v", err)
	}
	dir := t.TempDir()
	akPub, err := d.LoadAK(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, AKFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("AK file: %v %v", fi, err)
	}
	if again, err := d.LoadAK(dir); err != nil || !bytes.Equal(again, akPub) {
		t.Fatalf("reload AK: %v", err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	blob, enc := makeCredential(t, ekPub, akPub, secret)
	got, err := d.ActivateCredential(blob, enc)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("ActivateCredential = %x, %v", got, err)
	}
	pcrs := []int{16, 0, 7}
	nonce := digestOf("nonce")
	q, err := d.Quote(nonce, pcrs)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyQuote(akPub, q, nonce, pcrs); err != nil {
		t.Fatalf("verify quote: %v", err)
	}
	key := digestOf("cache key")
	sealed, err := d.Seal(key, []int{16})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, key) {
		t.Fatal("sealed blob contains the key")
	}
	if got, err := d.Unseal(sealed); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unseal = %x, %v", got, err)
	}
	if err := d.ExtendPCR(16, digestOf("boot change")); err != nil {
		t.Fatal(err)
	}
	q2, err := d.Quote(nonce, pcrs)
	if err != nil || bytes.Equal(q2.PCRs[16], q.PCRs[16]) || !bytes.Equal(q2.PCRs[7], q.PCRs[7]) {
		t.Fatalf("quote after extend: %v", err)
	}
	if err := verifyQuote(akPub, Quote{Attest: q2.Attest, Signature: q2.Signature, PCRs: q.PCRs}, nonce, pcrs); err == nil {
		t.Fatal("quote verified against the PCR values before the extend")
	}
	if _, err := d.Unseal(sealed); !errors.Is(err, ErrPCRMismatch) {
		t.Fatalf("Unseal after extend: %v, want ErrPCRMismatch", err)
	}
}

func TestSimulatorFlow(t *testing.T) {
	d, _ := newSim(t)
	flow(t, d)
}

func TestEK(t *testing.T) {
	d, _ := newSim(t)
	pub, cert, err := d.EK()
	if err != nil {
		t.Fatal(err)
	}
	if cert != nil {
		t.Fatalf("simulator has no EK certificate, got %d bytes", len(cert))
	}
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](pub)
	if err != nil || p.Type != tpm2.TPMAlgRSA || !p.ObjectAttributes.Decrypt || !p.ObjectAttributes.Restricted {
		t.Fatalf("EK public is not the RSA EK: %v", err)
	}
	h1, _ := EKHash(pub)
	pub[len(pub)-1] ^= 1 // callers get a copy
	if again, _, _ := d.EK(); !bytes.Equal(again[:len(again)-1], pub[:len(pub)-1]) || again[len(again)-1] == pub[len(pub)-1] {
		t.Fatal("EK returned the cached slice itself")
	}
	h2, err := EKHash(pub)
	if err != nil || h1 == h2 {
		t.Fatalf("EKHash ignores the key: %v", err)
	}
	for name, b := range map[string][]byte{
		"empty":    nil,
		"trailing": append(pub, 0),
		"short":    pub[:20],
	} {
		if _, err := EKHash(b); err == nil {
			t.Errorf("EKHash(%s) succeeded", name)
		}
	}
	// Another TPM has another EK.
	d.Close()
	d2, _ := newSim(t)
	pub2, _, err := d2.EK()
	if err != nil {
		t.Fatal(err)
	}
	if h3, _ := EKHash(pub2); h3 == h1 {
		t.Fatal("two TPMs with the same EK hash")
	}
}

func TestLoadAK(t *testing.T) {
	d, _ := newSim(t)
	dir := filepath.Join(t.TempDir(), "new", "state") // created by LoadAK
	akPub, err := d.LoadAK(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](akPub)
	if err != nil || p.Type != tpm2.TPMAlgECC || !p.ObjectAttributes.Restricted || !p.ObjectAttributes.SignEncrypt {
		t.Fatalf("AK public: %v", err)
	}
	good, err := os.ReadFile(filepath.Join(dir, AKFile))
	if err != nil {
		t.Fatal(err)
	}
	// A restarted agent (new Device, same TPM) loads the same AK.
	d2 := New(d.tpm, nil)
	if again, err := d2.LoadAK(dir); err != nil || !bytes.Equal(again, akPub) {
		t.Fatalf("LoadAK on restart: %v", err)
	}

	bad := map[string][]byte{
		"empty":          {},
		"truncated":      good[:len(good)-1],
		"trailing":       append(bytes.Clone(good), 0),
		"no private":     good[:2+int(good[0])<<8|int(good[1])],
		"sealed object":  nil, // filled below
		"garbage public": append([]byte{0, 4, 1, 2, 3, 4}, good[2+int(good[0])<<8|int(good[1]):]...),
	}
	sealed, err := d.Seal([]byte("x"), []int{7})
	if err != nil {
		t.Fatal(err)
	}
	bad["sealed object"] = sealed[8:]
	for name, b := range bad {
		bd := t.TempDir()
		if err := os.WriteFile(filepath.Join(bd, AKFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := d.LoadAK(bd); !errors.Is(err, ErrBadBlob) {
			t.Errorf("%s: LoadAK = %v, want ErrBadBlob", name, err)
		}
	}
	// A flipped bit in the private area: the TPM's integrity check refuses it.
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 1
	fd := t.TempDir()
	os.WriteFile(filepath.Join(fd, AKFile), flipped, 0o600)
	if _, err := d.LoadAK(fd); err == nil {
		t.Error("LoadAK accepted a flipped private area")
	}
	// A failed LoadAK keeps the AK loaded before.
	if _, err := d.Quote(nil, []int{0}); err != nil {
		t.Fatalf("quote after failed LoadAK: %v", err)
	}

	// The AK file copied to another machine.
	d.Close()
	other, _ := newSim(t)
	if _, err := other.LoadAK(dir); !errors.Is(err, ErrOtherTPM) {
		t.Fatalf("AK file on another TPM: %v, want ErrOtherTPM", err)
	}
	if _, err := other.Quote(nil, []int{0}); !errors.Is(err, ErrNoAK) {
		t.Fatalf("quote without AK: %v, want ErrNoAK", err)
	}
}

func TestActivateCredential(t *testing.T) {
	d, _ := newSim(t)
	if _, err := d.ActivateCredential([]byte{1}, []byte{2}); !errors.Is(err, ErrNoAK) {
		t.Fatalf("before LoadAK: %v, want ErrNoAK", err)
	}
	ekPub, _, err := d.EK()
	if err != nil {
		t.Fatal(err)
	}
	otherAKDir := t.TempDir()
	otherAK, err := d.LoadAK(otherAKDir) // a second AK in the same TPM
	if err != nil {
		t.Fatal(err)
	}
	akPub, err := d.LoadAK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("the server's secret")
	blob, enc := makeCredential(t, ekPub, akPub, secret)
	if got, err := d.ActivateCredential(blob, enc); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("activate: %x %v", got, err)
	}
	// Made for another AK: the TPM refuses since the name differs.
	blob2, enc2 := makeCredential(t, ekPub, otherAK, secret)
	if _, err := d.ActivateCredential(blob2, enc2); !errors.Is(err, ErrActivation) {
		t.Fatalf("credential for another AK: %v, want ErrActivation", err)
	}
	// Tampered blob.
	tb := bytes.Clone(blob)
	tb[len(tb)-1] ^= 1
	if _, err := d.ActivateCredential(tb, enc); !errors.Is(err, ErrActivation) {
		t.Fatalf("tampered credential: %v, want ErrActivation", err)
	}
	if _, err := d.ActivateCredential(nil, nil); !errors.Is(err, ErrActivation) {
		t.Fatalf("empty credential: %v, want ErrActivation", err)
	}
	// Made for another TPM's EK (same AK public).
	d.Close()
	d2, _ := newSim(t)
	ek2, _, err := d2.EK()
	if err != nil {
		t.Fatal(err)
	}
	blob3, enc3 := makeCredential(t, ek2, akPub, secret)
	d2.Close()
	d3, _ := newSim(t)
	if _, err := d3.LoadAK(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if _, err := d3.ActivateCredential(blob3, enc3); !errors.Is(err, ErrActivation) {
		t.Fatalf("credential for another EK: %v, want ErrActivation", err)
	}
}

func TestQuote(t *testing.T) {
	d, _ := newSim(t)
	akPub, err := d.LoadAK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	all := make([]int, numPCRs) // more than one PCRRead's worth
	for i := range all {
		all[i] = numPCRs - 1 - i
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	q, err := d.Quote(nonce, all)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyQuote(akPub, q, nonce, all); err != nil {
		t.Fatal(err)
	}
	if err := verifyQuote(akPub, q, digestOf("other nonce"), all); err == nil {
		t.Fatal("quote verified with another nonce")
	}
	if q64, err := d.Quote(bytes.Repeat([]byte{1}, 64), []int{7}); err != nil || verifyQuote(akPub, q64, bytes.Repeat([]byte{1}, 64), []int{7}) != nil {
		t.Fatalf("64-byte qualifying data: %v", err)
	}
	if _, err := d.Quote(make([]byte, 65), []int{7}); err == nil {
		t.Fatal("65-byte qualifying data accepted")
	}
	for _, bad := range [][]int{nil, {24}, {-1}, {3, 3}} {
		if _, err := d.Quote(nonce, bad); !errors.Is(err, ErrInvalidPCR) {
			t.Errorf("Quote(%v) = %v, want ErrInvalidPCR", bad, err)
		}
	}
	if err := d.ExtendPCR(24, digestOf("x")); !errors.Is(err, ErrInvalidPCR) {
		t.Errorf("ExtendPCR(24) = %v", err)
	}
	if err := d.ExtendPCR(16, []byte("short")); err == nil {
		t.Error("ExtendPCR with a 5-byte digest succeeded")
	}
}

func TestSeal(t *testing.T) {
	d, _ := newSim(t)
	data := digestOf("cache key")
	pcrs := []int{7, 16, 23}
	blob, err := d.Seal(data, pcrs)
	if err != nil {
		t.Fatal(err)
	}
	// Unseal works again and again, and after extending a PCR not selected.
	if err := d.ExtendPCR(15, digestOf("unrelated")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got, err := d.Unseal(blob); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Unseal = %x, %v", got, err)
		}
	}
	// The blob's PCR selection cannot be swapped for a weaker one.
	weaker := bytes.Clone(blob)
	weaker[7] = 1 << 7 // mask = PCR 7 only
	weaker[6], weaker[5] = 0, 0
	if _, err := d.Unseal(weaker); !errors.Is(err, ErrPCRMismatch) {
		t.Fatalf("blob with PCR 7 only: %v, want ErrPCRMismatch", err)
	}
	for name, b := range map[string][]byte{
		"empty":       nil,
		"magic":       append([]byte("EVS2"), blob[4:]...),
		"mask zero":   append(append([]byte("EVS1"), 0, 0, 0, 0), blob[8:]...),
		"mask PCR 24": append(append([]byte("EVS1"), 1, 0, 0, 0), blob[8:]...),
		"truncated":   blob[:len(blob)-1],
		"trailing":    append(bytes.Clone(blob), 0),
	} {
		if _, err := d.Unseal(b); !errors.Is(err, ErrBadBlob) {
			t.Errorf("%s: Unseal = %v, want ErrBadBlob", name, err)
		}
	}
	flipped := bytes.Clone(blob)
	flipped[len(flipped)-3] ^= 1
	if _, err := d.Unseal(flipped); err == nil {
		t.Error("Unseal accepted a flipped private area")
	}
	for _, n := range []int{0, MaxSealSize + 1} {
		if _, err := d.Seal(make([]byte, n), pcrs); err == nil {
			t.Errorf("Seal of %d bytes succeeded", n)
		}
	}
	if b, err := d.Seal(make([]byte, MaxSealSize), pcrs); err != nil {
		t.Errorf("Seal of %d bytes: %v", MaxSealSize, err)
	} else if got, err := d.Unseal(b); err != nil || len(got) != MaxSealSize {
		t.Errorf("Unseal of %d bytes: %v", MaxSealSize, err)
	}
	if _, err := d.Seal(data, []int{99}); !errors.Is(err, ErrInvalidPCR) {
		t.Errorf("Seal to PCR 99: %v", err)
	}

	if err := d.ExtendPCR(23, digestOf("boot change")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Unseal(blob); !errors.Is(err, ErrPCRMismatch) || !strings.Contains(err.Error(), "[7 16 23]") {
		t.Fatalf("after extend: %v, want ErrPCRMismatch naming the PCRs", err)
	}

	// The blob copied to another machine.
	d.Close()
	other, _ := newSim(t)
	if _, err := other.Unseal(blob); !errors.Is(err, ErrOtherTPM) {
		t.Fatalf("Unseal on another TPM: %v, want ErrOtherTPM", err)
	}
}

// TestReset checks that a TPM reset (reboot), which voids saved contexts
// and resets PCRs, is survived: keys are recreated, and data sealed before
// unseals again because the PCRs are back at their boot values.
func TestReset(t *testing.T) {
	d, sim := newSim(t)
	ekPub, _, err := d.EK()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	akPub, err := d.LoadAK(dir)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := d.Seal([]byte("k"), []int{16})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ExtendPCR(16, digestOf("runtime")); err != nil {
		t.Fatal(err)
	}
	if d.srk.saved == nil || d.ak.saved == nil || d.ek.saved == nil {
		t.Fatal("contexts were not saved")
	}
	if err := sim.Reset(); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Unseal(blob); err != nil || string(got) != "k" {
		t.Fatalf("Unseal after reset: %q %v", got, err)
	}
	blob2, enc := makeCredential(t, ekPub, akPub, []byte("s"))
	if got, err := d.ActivateCredential(blob2, enc); err != nil || string(got) != "s" {
		t.Fatalf("ActivateCredential after reset: %q %v", got, err)
	}
	q, err := d.Quote([]byte("n"), []int{16})
	if err != nil || verifyQuote(akPub, q, []byte("n"), []int{16}) != nil {
		t.Fatalf("Quote after reset: %v", err)
	}
}

func TestConcurrent(t *testing.T) {
	d, _ := newSim(t)
	akPub, err := d.LoadAK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 4 {
		wg.Go(func() {
			for range 3 {
				nonce := []byte{byte(i)}
				q, err := d.Quote(nonce, []int{0, 7})
				if err == nil {
					err = verifyQuote(akPub, q, nonce, []int{0, 7})
				}
				if err != nil {
					errs <- err
					return
				}
				b, err := d.Seal([]byte{byte(i)}, []int{7})
				if err == nil {
					var got []byte
					got, err = d.Unseal(b)
					if err == nil && !bytes.Equal(got, []byte{byte(i)}) {
						err = errors.New("unsealed another goroutine's data")
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, nil, 0o600)
	for _, spec := range []string{
		"",
		filepath.Join(dir, "missing"),
		regular,
		"/dev/null", // a character device that is no TPM
		"tcp://127.0.0.1:1",
		"unix://" + filepath.Join(dir, "no.sock"),
		"http://example.com",
	} {
		if d, err := Open(spec); !errors.Is(err, ErrNoTPM) {
			t.Errorf("Open(%q) = %v, %v; want ErrNoTPM", spec, d, err)
		}
	}
}

package agent

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/edgevault/edgevault/internal/tpmdev"
)

// tcgLog encodes a minimal TCG2 crypto-agile event log (SHA-256 bank
// only) whose events extend digests[i] into pcrs[i].
func tcgLog(pcrs []uint32, digests [][]byte) []byte {
	le := binary.LittleEndian
	spec := append([]byte("Spec ID Event03\x00"), 0, 0, 0, 0, 0, 2, 0, 2)
	spec = le.AppendUint32(spec, 1)
	spec = le.AppendUint16(spec, 0x000B) // SHA-256
	spec = le.AppendUint16(spec, 32)
	spec = append(spec, 0)
	b := le.AppendUint32(nil, 0)
	b = le.AppendUint32(b, 3) // EV_NO_ACTION
	b = append(b, make([]byte, 20)...)
	b = le.AppendUint32(b, uint32(len(spec)))
	b = append(b, spec...)
	for i, d := range digests {
		b = le.AppendUint32(b, pcrs[i])
		b = le.AppendUint32(b, 0x80000007) // EV_EFI_ACTION
		b = le.AppendUint32(b, 1)
		b = le.AppendUint16(b, 0x000B)
		b = append(b, d...)
		b = le.AppendUint32(b, 0)
	}
	return b
}

// A TPM agent sends the event log file with its quote: the server accepts
// a log that replays to the quoted PCRs and records it, refuses one that
// does not, and an agent without the file enrolls as before.
func TestAgentTPMEventLog(t *testing.T) {
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	dev := tpmdev.New(transport.FromReadWriteCloser(sim), sim)
	defer dev.Close()
	pcrs := []uint32{0, 4, 7}
	var digests [][]byte
	for _, p := range pcrs {
		d := sha256.Sum256([]byte{byte(p), 'f', 'w'})
		digests = append(digests, d[:])
		if err := dev.ExtendPCR(int(p), d[:]); err != nil {
			t.Fatal(err)
		}
	}
	cp := startControlPlane(t, "1h")
	// A device path gets the system's log; swtpm (a socket) none.
	for spec, want := range map[string]string{"/dev/tpmrm0": systemEventLog, "tcp://127.0.0.1:2321": "", "": ""} {
		ta, err := newTPMAttestor(dev, Config{StateDir: t.TempDir(), TPM: spec})
		if err != nil || ta.eventLog != want {
			t.Fatalf("TPM %q: event log path %q, want %q (%v)", spec, ta.eventLog, want, err)
		}
	}
	ta, err := newTPMAttestor(dev, Config{StateDir: t.TempDir(), ServerAddr: cp.hts.URL, Zone: testZone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.admin.Logical().Write("sys/zones/"+testZone+"/attestation", map[string]any{
		"ek_hashes": []string{ta.ekHash}, "pcrs": []int{0, 1, 2, 3, 4, 5, 6, 7}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.LoadAK(ta.dir); err != nil {
		t.Fatal(err)
	}
	a := &agent{cfg: Config{ServerAddr: cp.hts.URL, ServerCA: cp.caPEM, Zone: testZone}}
	a.roots = cp.hts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	hc := a.httpClient(false)
	enroll := func(logPath string) (map[string]any, error) {
		t.Helper()
		ta.eventLog = logPath
		key, err := newKey()
		if err != nil {
			t.Fatal(err)
		}
		body, err := ta.enroll(context.Background(), hc, key)
		if err != nil {
			t.Fatal(err)
		}
		if body["public_key"], err = publicKeyField(key); err != nil {
			t.Fatal(err)
		}
		_, _, err = postAttest(context.Background(), hc, cp.hts.URL, testZone, "enroll", body)
		return body, err
	}
	record := func() map[string]any {
		t.Helper()
		r, err := cp.zone.Logical().Read("sys/agents/tpm-" + ta.ekHash[:16])
		if err != nil || r == nil {
			t.Fatalf("agent record: %v", err)
		}
		return r.Data
	}

	dir := t.TempDir()
	good := filepath.Join(dir, "good.log")
	if err := os.WriteFile(good, tcgLog(pcrs, digests), 0o600); err != nil {
		t.Fatal(err)
	}
	body, err := enroll(good)
	if err != nil {
		t.Fatalf("enroll with the event log: %v", err)
	}
	if _, ok := body["event_log"]; !ok {
		t.Fatal("the enroll body has no event_log")
	}
	if r := record(); r["event_log_events"] != "3" {
		t.Fatalf("sys/agents record: %v", r)
	}

	// A log that does not replay to the quoted PCRs is refused.
	other := sha256.Sum256([]byte("another boot loader"))
	forged := filepath.Join(dir, "forged.log")
	if err := os.WriteFile(forged, tcgLog(pcrs, [][]byte{digests[0], digests[1], other[:]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := enroll(forged); err == nil || !strings.Contains(err.Error(), "event log") || !strings.Contains(err.Error(), "PCR 7") {
		t.Fatalf("enroll with a log of another PCR 7: %v", err)
	}

	// No file: the quote alone, as before.
	body, err = enroll(filepath.Join(dir, "absent.log"))
	if err != nil {
		t.Fatalf("enroll without a log file: %v", err)
	}
	if _, ok := body["event_log"]; ok {
		t.Fatal("event_log sent without a file")
	}
	if r := record(); r["event_log_events"] != nil {
		t.Fatalf("sys/agents still shows an event log: %v", r)
	}
}

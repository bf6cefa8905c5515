package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/agent/cache/keyfile"
	"github.com/edgevault/edgevault/internal/tpmdev"
	"github.com/edgevault/edgevault/internal/tpmdev/swtpmtest"
)

// withTPM opens the TPM at spec for the length of fn (swtpm serves one
// client at a time).
func withTPM(t *testing.T, spec string, fn func(d *tpmdev.Device)) {
	t.Helper()
	d, err := tpmdev.Open(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fn(d)
}

// An agent with a TPM (swtpm, a separate process) enrolls without a join
// token by proving its TPM to the zone's policy and re-attests when the
// server asks. When its boot state (a PCR) changed, its cache, sealed to
// the TPM's PCRs, cannot be opened: the agent discards it and re-attests
// before syncing again — and is quarantined, the new PCR value not being
// one the zone allows.
// tpmIdentity starts a software TPM and returns its spec, its EK hash and
// its PCR 7 (hex).
func tpmIdentity(t *testing.T) (spec, ekHash, pcr7 string) {
	t.Helper()
	spec = swtpmtest.Start(t, "tcp")
	withTPM(t, spec, func(d *tpmdev.Device) {
		ek, _, err := d.EK()
		if err != nil {
			t.Fatal(err)
		}
		if ekHash, err = tpmdev.EKHash(ek); err != nil {
			t.Fatal(err)
		}
		if _, err := d.LoadAK(t.TempDir()); err != nil {
			t.Fatal(err)
		}
		q, err := d.Quote(make([]byte, 32), []int{7})
		if err != nil {
			t.Fatal(err)
		}
		pcr7 = hex.EncodeToString(q.PCRs[7])
	})
	return spec, ekHash, pcr7
}

// allowTPM sets the zone's attestation policy to that EK and PCR 7 value.
func allowTPM(t *testing.T, cp *controlPlane, ekHash, pcr7 string) {
	t.Helper()
	if _, err := cp.admin.Logical().Write("sys/zones/"+testZone+"/attestation", map[string]any{
		"ek_hashes": []string{ekHash}, "pcrs": []int{0, 1, 2, 3, 4, 5, 6, 7},
		"allowed_pcr_sets": []map[string]string{{"7": pcr7}}, "max_quote_age": "2m",
	}); err != nil {
		t.Fatal(err)
	}
}

func TestAgentTPMAttestation(t *testing.T) {
	spec, ekHash, pcr7 := tpmIdentity(t)
	cp := startControlPlane(t, "24h")
	cp.put(t, "app/db", map[string]any{"password": "tpm-guarded"})
	allowTPM(t, cp, ekHash, pcr7)
	cfg := newConfig(t, cp, "", nil)
	cfg.TPM = spec
	logs := &logBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slogTo(logs)
	}
	ag := startAgent(t, cfg)
	local := agentClient(t, ag.info, ag.info.LocalToken)
	waitFor(t, "the secret through the TPM-attested agent", func() bool { p, _ := readPassword(local, "app/db", 0); return p == "tpm-guarded" })
	_, h := health(t, ag.info)
	wantID := "tpm-" + ekHash[:16]
	if h["attestation"] != "tpm (hardware)" || h["ek_hash"] != ekHash || h["pcr_digest"] == "" || h["last_quote"] == "" || h["agent_id"] != wantID {
		t.Fatalf("agent health: %v", h)
	}
	rec, err := cp.zone.Logical().Read("sys/agents/" + wantID)
	if err != nil || rec.Data["attestation_method"] != "tpm" || rec.Data["ek_hash"] != ekHash || rec.Data["last_quote"] == "" ||
		rec.Data["pcr_digest"] != h["pcr_digest"] || rec.Data["attestation_strength"] != "hardware" {
		t.Fatalf("sys/agents/%s: %v %v", wantID, rec, err)
	}

	// The server asks for re-attestation: a new quote and certificate.
	serial := rec.Data["cert_serial"]
	if _, err := cp.zone.Logical().Write("sys/agents/"+wantID+"/reattest", nil); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(cfg.StateDir, identityFile))
	waitFor(t, "a re-attested renewal", func() bool {
		r, err := cp.zone.Logical().Read("sys/agents/" + wantID)
		return err == nil && r.Data["cert_serial"] != serial && r.Data["status"] == "active" && r.Data["reattest_by"] == nil
	})
	waitFor(t, "the agent to keep its new certificate", func() bool {
		now, _ := os.ReadFile(filepath.Join(cfg.StateDir, identityFile))
		return !bytes.Equal(now, before)
	})

	// The zone no longer allows this boot state; asked to re-attest, the
	// agent's fresh quote fails the policy: it is quarantined, with why.
	allowTPM(t, cp, ekHash, strings.Repeat("ff", 32))
	if _, err := cp.zone.Logical().Write("sys/agents/"+wantID+"/reattest", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent quarantined", func() bool {
		r, err := cp.zone.Logical().Read("sys/agents/" + wantID)
		return err == nil && r.Data["status"] == "quarantined"
	})
	r, _ := cp.zone.Logical().Read("sys/agents/" + wantID)
	if reason, _ := r.Data["status_reason"].(string); !strings.Contains(reason, "re-attestation failed") || !strings.Contains(reason, "PCR") {
		t.Fatalf("quarantine reason: %q", reason)
	}
	waitFor(t, "the agent no longer online", func() bool { _, h := health(t, ag.info); return h["mode"] != "online" })

	// Released, with the policy back; then the boot state changes (PCR 7
	// extended) while the agent is down. Its identity and its cache were
	// sealed to the old boot state: it cannot open them, says so, and
	// tries to enroll again with its TPM — refused, the new PCR 7 being
	// one the zone does not allow. It holds nothing to serve.
	allowTPM(t, cp, ekHash, pcr7)
	if _, err := cp.zone.Logical().Delete("sys/agents/" + wantID + "/quarantine"); err != nil {
		t.Fatal(err)
	}
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	withTPM(t, spec, func(d *tpmdev.Device) {
		digest := sha256.Sum256([]byte("an unexpected boot component"))
		if err := d.ExtendPCR(7, digest[:]); err != nil {
			t.Fatal(err)
		}
	})
	serial = r.Data["cert_serial"]
	ag = startAgent(t, cfg)
	for _, want := range []string{"identity sealed to another TPM or another boot state", "cache sealed to another TPM or another boot state"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("the agent did not say %q; log:\n%s", want, logs.String())
		}
	}
	waitFor(t, "the re-enrollment refused", func() bool { return strings.Contains(logs.String(), "PCR values not allowed") })
	if _, h := health(t, ag.info); h["mode"] != "isolated" || h["agent_id"] != "" {
		t.Fatalf("after a refused re-enrollment: %v", h)
	}
	if r, _ := cp.zone.Logical().Read("sys/agents/" + wantID); r.Data["cert_serial"] != serial {
		t.Fatalf("a certificate was issued after the boot change: %v", r.Data)
	}
}

// slogTo is a debug logger writing to w.
func slogTo(w *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A sealed identity round-trips through its protector; a flipped byte, or
// another protector, does not open it; an unsealed file reads as it is.
func TestSealedIdentity(t *testing.T) {
	dir := t.TempDir()
	kp, err := keyfile.Open(filepath.Join(dir, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := keyfile.Open(filepath.Join(dir, "k2"))
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	sealed, err := sealIdentity(plain, kp)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("AAAA\n-----END PRIVATE KEY")) {
		t.Fatal("the sealed identity holds the key in clear")
	}
	if got, err := unsealIdentity(sealed, kp); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("unseal: %q %v", got, err)
	}
	if _, err := unsealIdentity(sealed, other); err == nil {
		t.Fatal("another protector opened the identity")
	}
	if _, err := unsealIdentity(sealed, nil); err == nil {
		t.Fatal("a sealed identity opened without a TPM")
	}
	blk, _ := pem.Decode(sealed)
	blk.Bytes[len(blk.Bytes)-1] ^= 1
	if _, err := unsealIdentity(pem.EncodeToMemory(blk), kp); err == nil {
		t.Fatal("a tampered sealed identity opened")
	}
	if _, err := unsealIdentity(bytes.Replace(sealed, []byte("\n\n"), []byte("\n\n!"), 1), kp); err == nil {
		t.Fatal("a sealed identity that is not valid PEM was read as a plain one")
	}
	if got, err := unsealIdentity(plain, kp); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("an unsealed identity: %q %v", got, err)
	}
}

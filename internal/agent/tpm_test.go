package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
func TestAgentTPMAttestation(t *testing.T) {
	spec := swtpmtest.Start(t, "tcp")
	var ekHash, pcr7 string
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
	cp := startControlPlane(t, "24h")
	cp.put(t, "app/db", map[string]any{"password": "tpm-guarded"})
	if _, err := cp.admin.Logical().Write("sys/zones/"+testZone+"/attestation", map[string]any{
		"ek_hashes": []string{ekHash}, "pcrs": []int{0, 1, 2, 3, 4, 5, 6, 7},
		"allowed_pcr_sets": []map[string]string{{"7": pcr7}}, "max_quote_age": "2m",
	}); err != nil {
		t.Fatal(err)
	}
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

	// The boot state changes (PCR 7 extended) while the agent is down.
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	withTPM(t, spec, func(d *tpmdev.Device) {
		digest := sha256.Sum256([]byte("an unexpected boot component"))
		if err := d.ExtendPCR(7, digest[:]); err != nil {
			t.Fatal(err)
		}
	})
	ag = startAgent(t, cfg)
	if !strings.Contains(logs.String(), "sealed to another TPM or another boot state") {
		t.Fatalf("the agent did not say its cache was sealed to another boot state; log:\n%s", logs.String())
	}
	// It re-attests before syncing again: the quote shows the new PCR 7.
	waitFor(t, "the agent quarantined", func() bool {
		r, err := cp.zone.Logical().Read("sys/agents/" + wantID)
		return err == nil && r.Data["status"] == "quarantined"
	})
	r, _ := cp.zone.Logical().Read("sys/agents/" + wantID)
	if reason, _ := r.Data["status_reason"].(string); !strings.Contains(reason, "re-attestation failed") || !strings.Contains(reason, "PCR") {
		t.Fatalf("quarantine reason: %q", reason)
	}
	// Quarantined: the server refuses its stream and its renewals.
	waitFor(t, "the agent no longer online", func() bool { _, h := health(t, ag.info); return h["mode"] != "online" })
}

// slogTo is a debug logger writing to w.
func slogTo(w *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

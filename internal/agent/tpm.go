package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgevault/edgevault/internal/attest/tpm"
	"github.com/edgevault/edgevault/internal/tpmdev"
)

// sealPCRs are the PCRs the cache key is sealed to: the firmware, boot
// loader and Secure Boot state (PC Client PCRs 0–7). A cache file copied to
// another machine, or read after an unexpected boot change, cannot be
// opened.
var sealPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7}

// systemEventLog is where Linux exposes the firmware's TCG2 event log of
// the platform TPM (readable by root only, usually).
const systemEventLog = "/sys/kernel/security/tpm0/binary_bios_measurements"

// tpmAttestor proves the agent's TPM to the server: at enrollment by
// credential activation (the AK is in the same TPM as the EK) and a quote,
// at every renewal by a fresh quote.
type tpmAttestor struct {
	dev          *tpmdev.Device
	dir          string // holds the AK's blob
	server, zone string
	ekHash       string // the EK's hash, as zone policies name it
	clock        func() time.Time
	last         atomic.Pointer[quoteStatus]
	// eventLog is the file holding the TPM's event log, sent with every
	// quote when it exists and is readable; "" means none. It is
	// systemEventLog for a TPM device and "" for swtpm (a socket): the
	// firmware's log describes the platform TPM only.
	eventLog string
	log      *slog.Logger
	warned   atomic.Bool // the event log's problem was logged once
}

// newTPMAttestor attests with dev for cfg's agent.
func newTPMAttestor(dev *tpmdev.Device, cfg Config) (*tpmAttestor, error) {
	ek, _, err := dev.EK()
	if err != nil {
		return nil, fmt.Errorf("agent: tpm: endorsement key: %w", err)
	}
	h, err := tpmdev.EKHash(ek)
	if err != nil {
		return nil, fmt.Errorf("agent: tpm: %w", err)
	}
	t := &tpmAttestor{dev: dev, dir: cfg.StateDir, server: cfg.ServerAddr, zone: cfg.Zone, ekHash: h, clock: cfg.clock(), log: cfg.logger()}
	if cfg.TPM != "" && !strings.Contains(cfg.TPM, "://") {
		t.eventLog = systemEventLog
	}
	return t, nil
}

// readEventLog returns the TPM's event log, or nil when there is none to
// send: no path, no file, unreadable or larger than the server accepts
// (the log is optional; the quote alone still attests). A problem other
// than a missing file is logged once.
func (t *tpmAttestor) readEventLog() []byte {
	if t.eventLog == "" {
		return nil
	}
	skip := func(reason string, err error) []byte {
		if !t.warned.Swap(true) {
			t.log.Warn("tpm: attesting without the event log: "+reason, "path", t.eventLog, "err", err)
		}
		return nil
	}
	f, err := os.Open(t.eventLog)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return skip("cannot open it", err)
	}
	defer f.Close()
	// securityfs reports size 0: read to the end, bounded.
	b, err := io.ReadAll(io.LimitReader(f, tpm.MaxEventLogBytes+1))
	switch {
	case err != nil:
		return skip("cannot read it", err)
	case len(b) > tpm.MaxEventLogBytes:
		return skip(fmt.Sprintf("larger than %d bytes", tpm.MaxEventLogBytes), nil)
	case len(b) == 0:
		return nil
	}
	return b
}

// quoteStatus is what the agent shows of its last quote.
type quoteStatus struct {
	pcrDigest string
	at        time.Time
}

// challenge is the server's answer to auth/attest/tpm/challenge and
// auth/attest/renew/challenge.
type challenge struct {
	tpm.ChallengePayload
	ID string `json:"challenge_id"`
}

func (t *tpmAttestor) enroll(ctx context.Context, hc *http.Client, key *ecdsa.PrivateKey) (map[string]any, error) {
	ek, ekCert, err := t.dev.EK()
	if err != nil {
		return nil, fmt.Errorf("tpm: endorsement key: %w", err)
	}
	ak, err := t.dev.LoadAK(t.dir)
	if err != nil {
		return nil, fmt.Errorf("tpm: attestation key: %w", err)
	}
	var ch challenge
	if _, err := postAttestAPI(ctx, hc, t.server, t.zone, "tpm/challenge",
		map[string]any{"ek_public": ek, "ek_certificate": ekCert, "ak_public": ak}, &ch); err != nil {
		return nil, err
	}
	secret, err := t.dev.ActivateCredential(ch.CredentialBlob, ch.EncryptedSecret)
	if err != nil {
		return nil, fmt.Errorf("tpm: activate the server's credential: %w", err)
	}
	q, err := t.quote(key, ch.Nonce, ch.PCRs)
	if err != nil {
		return nil, err
	}
	body := map[string]any{"method": "tpm", "challenge_id": ch.ID, "secret": secret, "quote": q}
	if log := t.readEventLog(); log != nil {
		body["event_log"] = log
	}
	return body, nil
}

func (t *tpmAttestor) renew(ctx context.Context, hc *http.Client, key *ecdsa.PrivateKey, body map[string]any) error {
	var ch challenge
	if _, err := postAttestAPI(ctx, hc, t.server, t.zone, "renew/challenge", map[string]any{}, &ch); err != nil {
		return err
	}
	if _, err := t.dev.LoadAK(t.dir); err != nil {
		return fmt.Errorf("tpm: attestation key: %w", err)
	}
	q, err := t.quote(key, ch.Nonce, ch.PCRs)
	if err != nil {
		return err
	}
	body["challenge_id"], body["quote"] = ch.ID, q
	if log := t.readEventLog(); log != nil {
		body["event_log"] = log
	}
	return nil
}

// quote quotes pcrs over the server's nonce bound to key, the TLS key the
// certificate will be issued for.
func (t *tpmAttestor) quote(key *ecdsa.PrivateKey, nonce []byte, pcrs []int) (map[string]any, error) {
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	q, err := t.dev.Quote(tpm.Qualifying(nonce, der), pcrs)
	if err != nil {
		return nil, fmt.Errorf("tpm: quote: %w", err)
	}
	values := make(map[string][]byte, len(q.PCRs))
	h := sha256.New()
	for _, i := range slices.Sorted(maps.Keys(q.PCRs)) {
		values[strconv.Itoa(i)] = q.PCRs[i]
		h.Write(q.PCRs[i])
	}
	t.last.Store(&quoteStatus{pcrDigest: hex.EncodeToString(h.Sum(nil)), at: t.clock()})
	return map[string]any{"attest": q.Attest, "signature": q.Signature, "pcrs": values}, nil
}

func (t *tpmAttestor) strength() string { return "tpm (hardware)" }

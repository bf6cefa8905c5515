package tpm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/attest/tpm"
	"github.com/edgevault/edgevault/internal/storage"
)

// ekPolicy allows s's EK by hash, quotes pcrs07 and allows their reset
// values.
func ekPolicy(t testing.TB, s *simTPM) tpm.Policy {
	t.Helper()
	h, err := tpm.EKHash(s.ekPub)
	if err != nil {
		t.Fatal(err)
	}
	return tpm.Policy{EKHashes: []string{h}, PCRs: pcrs07, AllowedPCRs: []map[string]string{zeroSet()}}
}

func TestEnrollHappyPath(t *testing.T) {
	for _, c := range []struct {
		name       string
		ek, ak     tpm2.TPMTPublic
		wantScheme string
	}{
		{"ECC EK, ECDSA AK", tpm2.ECCEKTemplate, eccAKTemplate, "ecdsa"},
		{"RSA EK, RSASSA AK", tpm2.RSAEKTemplate, rsaAKTemplate, "rsassa"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := openSim(t, c.ek)
			f := newFixture(t)
			f.setPolicy("east", ekPolicy(t, s))
			ak := s.newAK(c.ak)
			ch, p, err := begin(t, f, "east", s, ak, nil, t0)
			if err != nil {
				t.Fatal(err)
			}
			if len(ch.ID) != 32 || !ch.ExpiresAt.Equal(t0.Add(tpm.DefaultMaxQuoteAge)) || len(p.Nonce) != 32 ||
				!slices.Equal(p.PCRs, pcrs07) || len(p.CredentialBlob) == 0 || len(p.EncryptedSecret) == 0 {
				t.Fatalf("challenge %+v payload %+v", ch, p)
			}
			// The store holds the challenge under its hash, never the ID.
			names := f.pending(t, "east")
			sum := sha256.Sum256([]byte(ch.ID))
			if len(names) != 1 || names[0] != hex.EncodeToString(sum[:]) {
				t.Fatalf("stored challenges %q", names)
			}
			tlsDER, _ := tlsKey(t)
			ev := answer(t, s, ak, p, tlsDER)
			id, err := attestReq(t, f, "east", ch.ID, ev, t0.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			ekHash, _ := tpm.EKHash(s.ekPub)
			tlsSum := sha256.Sum256(tlsDER)
			if id.AgentID != "tpm-"+ekHash[:16] || id.Zone != "east" || id.Method != attest.MethodTPM || id.Strength != attest.StrengthHardware {
				t.Fatalf("identity %+v", id)
			}
			if err := attest.ValidateAgentID(id.AgentID); err != nil {
				t.Fatalf("derived agent ID: %v", err)
			}
			want := map[string]string{
				"ek_hash":        ekHash,
				"ak_public":      base64.StdEncoding.EncodeToString(ak.Public),
				"quote_time":     "2026-11-26T12:01:00Z",
				"tls_key_sha256": hex.EncodeToString(tlsSum[:]),
				"pcr_set":        "0",
			}
			for k, v := range want {
				if id.Claims[k] != v {
					t.Errorf("claim %s = %q, want %q", k, id.Claims[k], v)
				}
			}
			if len(id.Claims["pcr_digest"]) != 64 {
				t.Errorf("pcr_digest claim %q", id.Claims["pcr_digest"])
			}
			if n := f.pending(t, "east"); len(n) != 0 {
				t.Fatalf("challenge left in store: %q", n)
			}
			// The same machine enrolls again under the same agent ID.
			ch2, p2, err := begin(t, f, "east", s, s.newAK(c.ak), nil, t0)
			if err != nil || ch2.ID == ch.ID || bytes.Equal(p2.Nonce, p.Nonce) {
				t.Fatalf("second challenge %v: ID or nonce repeats", err)
			}
		})
	}
}

func TestReplayedAndExpiredChallenge(t *testing.T) {
	s := openSim(t, tpm2.ECCEKTemplate)
	f := newFixture(t)
	f.setPolicy("east", ekPolicy(t, s))
	ak := s.newAK(eccAKTemplate)
	tlsDER, _ := tlsKey(t)

	ch, p, err := begin(t, f, "east", s, ak, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	ev := answer(t, s, ak, p, tlsDER)
	if _, err := attestReq(t, f, "east", ch.ID, ev, t0); err != nil {
		t.Fatal(err)
	}
	_, err = attestReq(t, f, "east", ch.ID, ev, t0)
	wantErr(t, "replay", err, tpm.ErrNonce, attest.ErrAttestation)

	// Expired: answered at the expiry instant. The attempt spends it.
	ch, p, err = begin(t, f, "east", s, ak, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	ev = answer(t, s, ak, p, tlsDER)
	_, err = attestReq(t, f, "east", ch.ID, ev, ch.ExpiresAt)
	wantErr(t, "expired", err, tpm.ErrNonce)
	if !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired: message %q", err)
	}
	_, err = attestReq(t, f, "east", ch.ID, ev, t0)
	wantErr(t, "answer after expiry attempt", err, tpm.ErrNonce)

	// A shorter MaxQuoteAge shortens the challenge.
	pol := ekPolicy(t, s)
	pol.MaxQuoteAge = 30 * time.Second
	f.setPolicy("east", pol)
	ch, _, err = begin(t, f, "east", s, ak, nil, t0)
	if err != nil || !ch.ExpiresAt.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("expiry %s, %v", ch.ExpiresAt, err)
	}

	// Unknown and malformed challenge IDs.
	_, err = attestReq(t, f, "east", strings.Repeat("0", 32), ev, t0)
	wantErr(t, "unknown challenge", err, tpm.ErrNonce)
	_, err = attestReq(t, f, "east", "../../ca", ev, t0)
	wantErr(t, "malformed challenge", err, tpm.ErrNonce)

	// A challenge of east is unknown in west (which also has no policy).
	f.setPolicy("west", ekPolicy(t, s))
	ch, p, _ = begin(t, f, "east", s, ak, nil, t0)
	ev = answer(t, s, ak, p, tlsDER)
	_, err = attestReq(t, f, "west", ch.ID, ev, t0)
	wantErr(t, "other zone", err, tpm.ErrNonce)

	// Tidy removes the never-answered challenges once expired.
	if n, err := f.a.Tidy(t.Context(), "east", t0); err != nil || n != 0 {
		t.Fatalf("tidy before expiry: %d, %v", n, err)
	}
	if n, err := f.a.Tidy(t.Context(), "east", t0.Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("tidy: %d, %v; want 2", n, err)
	}
	if n := f.pending(t, "east"); len(n) != 0 {
		t.Fatalf("left after tidy: %q", n)
	}
}

func TestWrongNonceOrKeyBinding(t *testing.T) {
	s := openSim(t, tpm2.ECCEKTemplate)
	f := newFixture(t)
	f.setPolicy("east", ekPolicy(t, s))
	ak := s.newAK(eccAKTemplate)
	tlsDER, _ := tlsKey(t)
	otherDER, _ := tlsKey(t)

	// Quote bound to another TLS key than the one presented.
	ch, p, _ := begin(t, f, "east", s, ak, nil, t0)
	ev := answer(t, s, ak, p, otherDER)
	ev.PublicKeyDER = tlsDER
	_, err := attestReq(t, f, "east", ch.ID, ev, t0)
	wantErr(t, "TLS key swapped", err, tpm.ErrNonce)

	// Quote over another challenge's nonce (a stale quote).
	_, old, _ := begin(t, f, "east", s, ak, nil, t0)
	ch, p, _ = begin(t, f, "east", s, ak, nil, t0)
	ev = answer(t, s, ak, p, tlsDER)
	ev.Quote = s.quote(ak, tpm.Qualifying(old.Nonce, tlsDER), pcrs07)
	_, err = attestReq(t, f, "east", ch.ID, ev, t0)
	wantErr(t, "stale nonce", err, tpm.ErrNonce)

	// The raw nonce instead of the qualifying hash.
	ch, p, _ = begin(t, f, "east", s, ak, nil, t0)
	ev = answer(t, s, ak, p, tlsDER)
	ev.Quote = s.quote(ak, p.Nonce, pcrs07)
	_, err = attestReq(t, f, "east", ch.ID, ev, t0)
	wantErr(t, "raw nonce", err, tpm.ErrNonce)
}

func TestPCRPolicy(t *testing.T) {
	s := openSim(t, tpm2.ECCEKTemplate)
	f := newFixture(t)
	pol := ekPolicy(t, s)
	f.setPolicy("east", pol)
	ak := s.newAK(eccAKTemplate)
	tlsDER, _ := tlsKey(t)
	run := func(mod func(p *tpm.ChallengePayload, ev *tpm.AttestEvidence)) (attest.Identity, error) {
		t.Helper()
		ch, p, err := begin(t, f, "east", s, ak, nil, t0)
		if err != nil {
			t.Fatal(err)
		}
		ev := answer(t, s, ak, p, tlsDER)
		if mod != nil {
			mod(&p, &ev)
		}
		return attestReq(t, f, "east", ch.ID, ev, t0)
	}

	// Selection differs: the agent quotes PCRs 0..6 only, or 0..8.
	_, err := run(func(p *tpm.ChallengePayload, ev *tpm.AttestEvidence) {
		ev.Quote = s.quote(ak, tpm.Qualifying(p.Nonce, tlsDER), pcrs07[:7])
	})
	wantErr(t, "quote over 0..6", err, tpm.ErrPCRSelection)
	_, err = run(func(p *tpm.ChallengePayload, ev *tpm.AttestEvidence) {
		ev.Quote = s.quote(ak, tpm.Qualifying(p.Nonce, tlsDER), append(slices.Clone(pcrs07), 8))
	})
	wantErr(t, "quote over 0..8", err, tpm.ErrPCRSelection)
	// Quote over 0..6 with all of 0..7 reported: the quote's own selection
	// is checked, not just the reported values.
	_, err = run(func(p *tpm.ChallengePayload, ev *tpm.AttestEvidence) {
		pcr7 := ev.Quote.PCRs["7"]
		ev.Quote = s.quote(ak, tpm.Qualifying(p.Nonce, tlsDER), pcrs07[:7])
		ev.Quote.PCRs["7"] = pcr7
	})
	wantErr(t, "quote over 0..6, values for 0..7", err, tpm.ErrPCRSelection)
	// Values reported for other PCRs than quoted.
	_, err = run(func(_ *tpm.ChallengePayload, ev *tpm.AttestEvidence) {
		delete(ev.Quote.PCRs, "7")
	})
	wantErr(t, "PCR 7 value missing", err, tpm.ErrPCRSelection)
	// Values that lie about the quoted state.
	_, err = run(func(_ *tpm.ChallengePayload, ev *tpm.AttestEvidence) {
		ev.Quote.PCRs["3"] = bytes.Repeat([]byte{1}, 32)
	})
	wantErr(t, "lying PCR value", err, tpm.ErrPCRValues)

	// The boot state changes: PCR 7 extended, the quote is honest, the
	// values are not allowed.
	s.extend(7, "secure boot disabled")
	_, err = run(nil)
	wantErr(t, "quote over extended PCR 7", err, tpm.ErrPCRValues)
	if !strings.Contains(err.Error(), "set 0 differs at PCR 7") {
		t.Fatalf("message does not name the PCR: %v", err)
	}

	// Staged upgrade: a second set allows the new PCR 7 value.
	newSet := map[string]string{"7": hex.EncodeToString(s.readPCR(7))}
	pol.AllowedPCRs = append(pol.AllowedPCRs, newSet)
	f.setPolicy("east", pol)
	id, err := run(nil)
	if err != nil || id.Claims["pcr_set"] != "1" {
		t.Fatalf("staged set: %v, claims %v", err, id.Claims)
	}
	// No sets: any values.
	pol.AllowedPCRs = nil
	f.setPolicy("east", pol)
	id, err = run(nil)
	if _, has := id.Claims["pcr_set"]; err != nil || has {
		t.Fatalf("any values: %v, claims %v", err, id.Claims)
	}
	// A policy selecting other PCRs than the challenge asked for at Begin
	// (changed in between): the current policy wins.
	ch, p, _ := begin(t, f, "east", s, ak, nil, t0)
	ev := answer(t, s, ak, p, tlsDER)
	pol.PCRs = []int{0, 7}
	f.setPolicy("east", pol)
	_, err = attestReq(t, f, "east", ch.ID, ev, t0)
	wantErr(t, "policy changed after Begin", err, tpm.ErrPCRSelection)
}

func TestEKNotAllowed(t *testing.T) {
	s := openSim(t, tpm2.ECCEKTemplate)
	f := newFixture(t)
	ak := s.newAK(eccAKTemplate)
	other := strings.Repeat("ab", 32)
	f.setPolicy("east", tpm.Policy{EKHashes: []string{other}, PCRs: pcrs07})
	_, _, err := begin(t, f, "east", s, ak, nil, t0)
	wantErr(t, "EK not in ek_hashes", err, tpm.ErrEKNotAllowed, attest.ErrAttestation)
	if n := f.pending(t, "east"); len(n) != 0 {
		t.Fatalf("refused Begin stored %q", n)
	}
	// No policy in west.
	_, _, err = begin(t, f, "west", s, ak, nil, t0)
	wantErr(t, "zone without policy", err, tpm.ErrNoPolicy)
	// An invalid stored policy is refused, not half-applied.
	f.setPolicy("east", tpm.Policy{PCRs: pcrs07})
	_, _, err = begin(t, f, "east", s, ak, nil, t0)
	wantErr(t, "invalid policy", err, tpm.ErrInvalidPolicy)
	// A stored policy with a broken EK CA fails where the CA is needed.
	ca := newTestCA(t, "EK CA")
	f.setPolicy("east", tpm.Policy{EKCAs: []string{"garbage"}, PCRs: pcrs07})
	_, _, err = begin(t, f, "east", s, ak, ca.ekCert(t, cryptoPub(t, s.ekPub), t0.Add(time.Hour)), t0)
	wantErr(t, "broken EK CA", err, tpm.ErrInvalidPolicy)
	// The SRK is a restricted decryption key too, but the policy does not
	// know it; a signing key is not an EK at all.
	f.setPolicy("east", ekPolicy(t, s))
	ev := mustJSON(t, tpm.BeginEvidence{EKPublic: ak.Public, AKPublic: ak.Public})
	_, err = f.a.Begin(t.Context(), "east", ev, t0)
	wantErr(t, "AK as EK", err, tpm.ErrEKNotAllowed)
	// An unrestricted signing key is not an AK.
	_, _, err = begin(t, f, "east", s, s.newAK(unrestrictedAKTemplate), nil, t0)
	wantErr(t, "unrestricted AK", err, tpm.ErrAKAttributes)
}

func TestAKNotInEKsTPM(t *testing.T) {
	// Machine A's EK is allowed. The attacker sends A's EK public key (it
	// is public) with an AK of machine B, whose TPM cannot decrypt a
	// credential made for A's EK.
	s := openSim(t, tpm2.ECCEKTemplate)
	f := newFixture(t)
	f.setPolicy("east", ekPolicy(t, s))
	ekA := s.ekPub
	s.reset(tpm2.ECCEKTemplate)
	if bytes.Equal(ekA, s.ekPub) {
		t.Fatal("reset kept the EK")
	}
	akB := s.newAK(eccAKTemplate)
	ev := mustJSON(t, tpm.BeginEvidence{EKPublic: ekA, AKPublic: akB.Public})
	ch, err := f.a.Begin(t.Context(), "east", ev, t0)
	if err != nil {
		t.Fatal(err)
	}
	p := decodePayload(t, ch)
	if _, err := s.activate(akB, p.CredentialBlob, p.EncryptedSecret); err == nil {
		t.Fatal("machine B activated a credential made for machine A's EK")
	}
	tlsDER, _ := tlsKey(t)
	guess := tpm.AttestEvidence{Secret: bytes.Repeat([]byte{7}, 32), PublicKeyDER: tlsDER,
		Quote: s.quote(akB, tpm.Qualifying(p.Nonce, tlsDER), pcrs07)}
	_, err = attestReq(t, f, "east", ch.ID, guess, t0)
	wantErr(t, "wrong secret", err, tpm.ErrActivation)
	if !strings.Contains(err.Error(), "the AK is not in the EK's TPM") {
		t.Fatalf("message: %v", err)
	}

	// Same TPM, but the credential names another AK than the one loaded:
	// the TPM refuses too.
	f.setPolicy("east", ekPolicy(t, s))
	ak1, ak2 := s.newAK(eccAKTemplate), s.newAK(eccAKTemplate)
	_, p2, err := begin(t, f, "east", s, ak1, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.activate(ak2, p2.CredentialBlob, p2.EncryptedSecret); err == nil {
		t.Fatal("credential for AK1 activated with AK2")
	}
}

func TestQuoteByAnotherAK(t *testing.T) {
	s := openSim(t, tpm2.ECCEKTemplate)
	f := newFixture(t)
	f.setPolicy("east", ekPolicy(t, s))
	ak1, ak2 := s.newAK(eccAKTemplate), s.newAK(eccAKTemplate)
	tlsDER, _ := tlsKey(t)
	ch, p, _ := begin(t, f, "east", s, ak1, nil, t0)
	ev := answer(t, s, ak1, p, tlsDER)
	ev.Quote = s.quote(ak2, tpm.Qualifying(p.Nonce, tlsDER), pcrs07)
	_, err := attestReq(t, f, "east", ch.ID, ev, t0)
	wantErr(t, "quote by AK2", err, tpm.ErrQuoteSignature)

	// A bit flipped in the signed structure.
	ch, p, _ = begin(t, f, "east", s, ak1, nil, t0)
	ev = answer(t, s, ak1, p, tlsDER)
	ev.Quote.Attest[len(ev.Quote.Attest)-1] ^= 1
	_, err = attestReq(t, f, "east", ch.ID, ev, t0)
	wantErr(t, "tampered attest", err, tpm.ErrQuoteSignature)
}

func TestReattest(t *testing.T) {
	s := openSim(t, tpm2.ECCEKTemplate)
	f := newFixture(t)
	f.setPolicy("east", ekPolicy(t, s))
	ak := s.newAK(eccAKTemplate)
	tlsDER, _ := tlsKey(t)
	ch, p, _ := begin(t, f, "east", s, ak, nil, t0)
	enrolled, err := attestReq(t, f, "east", ch.ID, answer(t, s, ak, p, tlsDER), t0)
	if err != nil {
		t.Fatal(err)
	}
	akPub, err := base64.StdEncoding.DecodeString(enrolled.Claims["ak_public"])
	if err != nil {
		t.Fatal(err)
	}
	ekPub, err := base64.StdEncoding.DecodeString(enrolled.Claims["ek_public"])
	if err != nil || len(ekPub) == 0 {
		t.Fatalf("ek_public claim: %v", err)
	}
	ctx := t.Context()
	reattest := func(ak simAK, now time.Time) (attest.Identity, error) {
		t.Helper()
		rc, err := f.a.ReattestChallenge(ctx, "east", enrolled.AgentID, akPub, ekPub, nil, t0)
		if err != nil {
			t.Fatal(err)
		}
		rp := decodePayload(t, rc)
		if len(rp.CredentialBlob) != 0 || len(rp.Nonce) != 32 {
			t.Fatalf("re-attestation payload %+v", rp)
		}
		ev := answer(t, s, ak, rp, tlsDER)
		return f.a.VerifyReattest(ctx, "east", rc.ID, mustJSON(t, ev), now)
	}
	id, err := reattest(ak, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if id.AgentID != enrolled.AgentID || id.Strength != attest.StrengthHardware || id.Claims["pcr_digest"] != enrolled.Claims["pcr_digest"] ||
		id.Claims["quote_time"] != "2026-11-26T12:01:00Z" {
		t.Fatalf("re-attested identity %+v", id)
	}
	_, err = reattest(ak, t0.Add(time.Hour))
	wantErr(t, "late re-attestation", err, tpm.ErrNonce)
	_, err = reattest(s.newAK(eccAKTemplate), t0)
	wantErr(t, "re-attestation by another AK", err, tpm.ErrQuoteSignature)

	// Replay, and an enrollment challenge used for re-attestation.
	rc, _ := f.a.ReattestChallenge(ctx, "east", enrolled.AgentID, akPub, ekPub, nil, t0)
	ev := mustJSON(t, answer(t, s, ak, decodePayload(t, rc), tlsDER))
	if _, err := f.a.VerifyReattest(ctx, "east", rc.ID, ev, t0); err != nil {
		t.Fatal(err)
	}
	_, err = f.a.VerifyReattest(ctx, "east", rc.ID, ev, t0)
	wantErr(t, "replayed re-attestation", err, tpm.ErrNonce)
	ch, p, _ = begin(t, f, "east", s, ak, nil, t0)
	ans := answer(t, s, ak, p, tlsDER)
	ans.Secret = nil
	_, err = f.a.VerifyReattest(ctx, "east", ch.ID, mustJSON(t, ans), t0)
	wantErr(t, "enrollment challenge as re-attestation", err, tpm.ErrNonce)
	// And the reverse: a re-attestation challenge cannot enroll.
	rc, _ = f.a.ReattestChallenge(ctx, "east", enrolled.AgentID, akPub, ekPub, nil, t0)
	ans = answer(t, s, ak, decodePayload(t, rc), tlsDER)
	ans.Secret = bytes.Repeat([]byte{1}, 32)
	_, err = attestReq(t, f, "east", rc.ID, ans, t0)
	wantErr(t, "re-attestation challenge as enrollment", err, tpm.ErrNonce)

	// The boot state changed since enrollment.
	s.extend(0, "new firmware")
	_, err = reattest(ak, t0)
	wantErr(t, "re-attestation after PCR change", err, tpm.ErrPCRValues)

	// Bad inputs to ReattestChallenge.
	_, err = f.a.ReattestChallenge(ctx, "east", enrolled.AgentID, s.newAK(unrestrictedAKTemplate).Public, ekPub, nil, t0)
	wantErr(t, "unrestricted AK", err, tpm.ErrAKAttributes)
	_, err = f.a.ReattestChallenge(ctx, "west", enrolled.AgentID, akPub, ekPub, nil, t0)
	wantErr(t, "no policy", err, tpm.ErrNoPolicy)

	// The machine's EK taken out of the zone's policy: it cannot renew.
	other := ekPolicy(t, s)
	other.EKHashes = []string{strings.Repeat("ab", 32)}
	f.setPolicy("east", other)
	_, err = reattest(ak, t0)
	wantErr(t, "re-attestation with an EK no longer allowed", err, tpm.ErrEKNotAllowed)
}

func TestConcurrentAnswers(t *testing.T) {
	s := openSim(t, tpm2.ECCEKTemplate)
	f := newFixture(t)
	f.setPolicy("east", ekPolicy(t, s))
	ak := s.newAK(eccAKTemplate)
	tlsDER, _ := tlsKey(t)
	for range 5 {
		ch, p, err := begin(t, f, "east", s, ak, nil, t0)
		if err != nil {
			t.Fatal(err)
		}
		ev := answer(t, s, ak, p, tlsDER)
		var wins, replays atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				_, err := f.a.Attest(context.Background(), attest.Request{Zone: "east", Challenge: ch.ID, Evidence: mustJSON(t, ev), Now: t0})
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, tpm.ErrNonce):
					replays.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || replays.Load() != 7 {
			t.Fatalf("%d accepted, %d ErrNonce; want 1 and 7", wins.Load(), replays.Load())
		}
	}
}

// TestServiceAdmit runs the whole enrollment through attest.Service: the
// identity becomes an agent record and a certificate.
func TestServiceAdmit(t *testing.T) {
	s := openSim(t, tpm2.ECCEKTemplate)
	f := newFixture(t)
	f.setPolicy("east", ekPolicy(t, s))
	svc, err := attest.New(attest.Config{TrustDomain: "edgevault.test", Stores: func(z string) (storage.Backend, error) { return f.stores[z], nil }})
	if err != nil {
		t.Fatal(err)
	}
	ak := s.newAK(eccAKTemplate)
	ev := mustJSON(t, tpm.BeginEvidence{EKPublic: s.ekPub, AKPublic: ak.Public})
	ch, err := svc.Begin(t.Context(), f.a, "east", ev, t0)
	if err != nil {
		t.Fatal(err)
	}
	tlsDER, tlsPub := tlsKey(t)
	ans := answer(t, s, ak, decodePayload(t, ch), tlsDER)
	enr, err := svc.Admit(t.Context(), f.a, attest.Request{Zone: "east", Challenge: ch.ID, Evidence: mustJSON(t, ans), Now: t0}, tlsPub)
	if err != nil {
		t.Fatal(err)
	}
	ekHash, _ := tpm.EKHash(s.ekPub)
	if enr.Agent.ID != tpm.AgentID(ekHash) || enr.Agent.Method != attest.MethodTPM || enr.Agent.Strength != attest.StrengthHardware ||
		enr.Agent.Claims["ek_hash"] != ekHash || !strings.HasSuffix(enr.Certificate.URIs[0].String(), "/agent/"+enr.Agent.ID) {
		t.Fatalf("enrollment %+v", enr.Agent)
	}
}

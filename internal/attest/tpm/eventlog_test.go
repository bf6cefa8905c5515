package tpm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/attest/tpm"
)

// logEvent is one event of a synthetic TCG2 event log.
type logEvent struct {
	pcr    uint32
	typ    uint32
	digest []byte // SHA-256; nil means SHA-256(data)
	data   []byte
}

// sha256Of is the digest an event extends.
func (e logEvent) sha256Of() []byte {
	if e.digest != nil {
		return e.digest
	}
	d := sha256.Sum256(e.data)
	return d[:]
}

// Event types of the synthetic logs.
const (
	evPostCode                  uint32 = 0x00000001
	evSCRTMVersion              uint32 = 0x00000008
	evBootServicesApp           uint32 = 0x80000003
	evEFIAction                 uint32 = 0x80000007
	sha1Alg, sha256Alg                 = uint16(0x0004), uint16(0x000B)
	evNoAction, evSep, evEFIVar        = tpm.EventNoAction, tpm.EventSeparator, tpm.EventEFIVariableDriverConfig
)

// buildLog encodes a crypto-agile log with SHA-1 and SHA-256 banks: the
// Spec ID header, then events (the SHA-1 digest is a dummy; the server
// reads only SHA-256).
func buildLog(events []logEvent) []byte {
	le := binary.LittleEndian
	var spec []byte
	spec = append(spec, "Spec ID Event03\x00"...)
	spec = le.AppendUint32(spec, 0) // platform class: client
	spec = append(spec, 0, 2, 0, 2) // version 2.0 errata 0, uintn 8 bytes
	spec = le.AppendUint32(spec, 2) // algorithms
	spec = le.AppendUint16(spec, sha1Alg)
	spec = le.AppendUint16(spec, 20)
	spec = le.AppendUint16(spec, sha256Alg)
	spec = le.AppendUint16(spec, 32)
	spec = append(spec, 0) // no vendor info
	var b []byte
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, uint32(evNoAction))
	b = append(b, make([]byte, 20)...)
	b = le.AppendUint32(b, uint32(len(spec)))
	b = append(b, spec...)
	for _, e := range events {
		b = le.AppendUint32(b, e.pcr)
		b = le.AppendUint32(b, e.typ)
		b = le.AppendUint32(b, 2)
		b = le.AppendUint16(b, sha1Alg)
		b = append(b, bytes.Repeat([]byte{0x5a}, 20)...)
		b = le.AppendUint16(b, sha256Alg)
		b = append(b, e.sha256Of()...)
		b = le.AppendUint32(b, uint32(len(e.data)))
		b = append(b, e.data...)
	}
	return b
}

// efiVariable encodes a UEFI_VARIABLE_DATA of the global variable name.
func efiVariable(name string, value []byte) []byte {
	le := binary.LittleEndian
	b := []byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}
	u := utf16.Encode([]rune(name))
	b = le.AppendUint64(b, uint64(len(u)))
	b = le.AppendUint64(b, uint64(len(value)))
	for _, c := range u {
		b = le.AppendUint16(b, c)
	}
	return append(b, value...)
}

// bootEvents is a small boot: firmware version, Secure Boot on, the
// separators of PCRs 0 and 7, a boot loader into PCR 4, a PCR 9 event
// (not quoted), and an EV_NO_ACTION event (never extended).
func bootEvents() []logEvent {
	app := sha256.Sum256([]byte("grubx64.efi"))
	return []logEvent{
		{pcr: 0, typ: evNoAction, data: []byte("StartupLocality\x00\x00")},
		{pcr: 0, typ: evSCRTMVersion, data: []byte("edge firmware 1.2")},
		{pcr: 7, typ: evEFIVar, data: efiVariable("SecureBoot", []byte{1})},
		{pcr: 0, typ: evSep, data: []byte{0, 0, 0, 0}},
		{pcr: 7, typ: evSep, data: []byte{0, 0, 0, 0}},
		{pcr: 4, typ: evEFIAction, data: []byte("Calling EFI Application from Boot Option")},
		{pcr: 4, typ: evBootServicesApp, digest: app[:], data: []byte("\\EFI\\debian\\grubx64.efi")},
		{pcr: 9, typ: evPostCode, data: []byte("not quoted")},
	}
}

// extendLog extends s's SHA-256 PCRs with exactly the events' digests,
// as firmware would have.
func (s *simTPM) extendLog(events []logEvent) {
	s.t.Helper()
	for _, e := range events {
		if e.typ == evNoAction {
			continue
		}
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(e.pcr), Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: e.sha256Of()}}},
		}.Execute(s.tpm)
		if err != nil {
			s.t.Fatalf("extend PCR %d: %v", e.pcr, err)
		}
	}
}

// anyValuesPolicy allows s's EK and any values of pcrs07.
func anyValuesPolicy(t testing.TB, s *simTPM) tpm.Policy {
	p := ekPolicy(t, s)
	p.AllowedPCRs = nil
	return p
}

// TestEventLog enrolls a simulated TPM whose PCRs were extended with a
// synthetic firmware log's digests: with the log, without it, and with
// logs that do not explain the quote.
func TestEventLog(t *testing.T) {
	s := openSim(t, tpm2.ECCEKTemplate)
	events := bootEvents()
	s.extendLog(events)
	f := newFixture(t)
	f.setPolicy("east", anyValuesPolicy(t, s))
	ak := s.newAK(eccAKTemplate)
	tlsDER, _ := tlsKey(t)
	enroll := func(log []byte) (attest.Identity, error) {
		t.Helper()
		ch, p, err := begin(t, f, "east", s, ak, nil, t0)
		if err != nil {
			t.Fatal(err)
		}
		ev := answer(t, s, ak, p, tlsDER)
		ev.EventLog = log
		return attestReq(t, f, "east", ch.ID, ev, t0)
	}

	id, err := enroll(buildLog(events))
	if err != nil {
		t.Fatalf("enroll with the log: %v", err)
	}
	if id.Claims["event_log_events"] != "8" || id.Claims["secure_boot"] != "enabled" {
		t.Fatalf("claims %v", id.Claims)
	}
	id, err = enroll(nil)
	if err != nil {
		t.Fatalf("enroll without a log: %v", err)
	}
	if _, ok := id.Claims["event_log_events"]; ok {
		t.Fatalf("claims without a log: %v", id.Claims)
	}
	if _, ok := id.Claims["secure_boot"]; ok {
		t.Fatalf("claims without a log: %v", id.Claims)
	}

	bad := []struct {
		name string
		log  func() []byte
		want string // in the message
	}{
		{"a boot loader digest altered", func() []byte {
			ev := bootEvents()
			d := bytes.Clone(ev[6].sha256Of())
			d[0] ^= 1
			ev[6].digest = d
			return buildLog(ev)
		}, "PCR 4"},
		{"Secure Boot data altered, digest kept", func() []byte {
			ev := bootEvents()
			ev[2].digest = ev[2].sha256Of()
			ev[2].data = efiVariable("SecureBoot", []byte{0})
			return buildLog(ev)
		}, "SecureBoot"},
		{"an event the TPM never saw", func() []byte {
			return buildLog(append(bootEvents(), logEvent{pcr: 7, typ: evEFIAction, data: []byte("extra")}))
		}, "PCR 7"},
		{"a log of another boot (no Secure Boot event)", func() []byte {
			ev := bootEvents()
			return buildLog(append(ev[:2:2], ev[3:]...))
		}, "PCR 7"},
		{"a different startup locality", func() []byte {
			ev := bootEvents()
			ev[0].data = []byte("StartupLocality\x00\x03")
			return buildLog(ev)
		}, "PCR 0"},
		{"truncated", func() []byte { l := buildLog(bootEvents()); return l[:len(l)-3] }, "event 7"},
		{"not a log", func() []byte { return []byte("hello, event log") }, "header"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := enroll(c.log())
			wantErr(t, c.name, err, attest.ErrAttestation, tpm.ErrEventLog)
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%s: %v, want it to name %s", c.name, err, c.want)
			}
		})
	}

	// Too big: refused as malformed evidence before any TPM structure.
	_, err = enroll(make([]byte, tpm.MaxEventLogBytes+1))
	wantErr(t, "oversized log", err, tpm.ErrEvidence)
	if !strings.Contains(err.Error(), "event_log") {
		t.Fatalf("oversized log: %v", err)
	}

	// Re-attestation checks the log too.
	for _, c := range []struct {
		log     []byte
		wantErr error
	}{{buildLog(bootEvents()), nil}, {buildLog(bootEvents()[:3]), tpm.ErrEventLog}} {
		ch, err := f.a.ReattestChallenge(context.Background(), "east", id.AgentID, ak.Public, s.ekPub, nil, t0)
		if err != nil {
			t.Fatal(err)
		}
		ev := answer(t, s, ak, decodePayload(t, ch), tlsDER)
		ev.EventLog = c.log
		got, err := f.a.VerifyReattest(context.Background(), "east", ch.ID, mustJSON(t, ev), t0)
		if c.wantErr == nil && (err != nil || got.Claims["secure_boot"] != "enabled") {
			t.Fatalf("re-attestation with the log: %v %v", err, got.Claims)
		}
		if c.wantErr != nil && !errors.Is(err, c.wantErr) {
			t.Fatalf("re-attestation with a short log: %v, want %v", err, c.wantErr)
		}
	}
}

// TestCheckEventLog checks replay and the Secure Boot claim without a TPM.
func TestCheckEventLog(t *testing.T) {
	events := bootEvents()
	log := buildLog(events)
	l, err := tpm.ParseEventLog(log)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Events) != len(events) || l.Events[6].PCR != 4 || l.Events[6].Type != evBootServicesApp ||
		!bytes.Equal(l.Events[6].Digest, events[6].sha256Of()) || string(l.Events[1].Data) != "edge firmware 1.2" {
		t.Fatalf("parsed %+v", l.Events)
	}
	replayed := l.Replay()
	// Replay by hand: PCR 4 = H(H(0 || d5) || d6).
	want4 := make([]byte, 32)
	for _, e := range events[5:7] {
		h := sha256.Sum256(append(bytes.Clone(want4), e.sha256Of()...))
		want4 = h[:]
	}
	if !bytes.Equal(replayed[4], want4) || len(replayed) != 4 { // PCRs 0, 4, 7, 9
		t.Fatalf("replayed %x, want PCR 4 %x", replayed, want4)
	}
	for _, c := range []struct {
		name       string
		quoted     map[int][]byte
		secureBoot string
		pcrs       []int
	}{
		{"all quoted", map[int][]byte{0: replayed[0], 4: replayed[4], 7: replayed[7], 9: replayed[9]}, "enabled", []int{0, 4, 7, 9}},
		{"PCR 7 not quoted: no claim", map[int][]byte{4: replayed[4]}, "", []int{4}},
		{"uncovered PCRs not judged", map[int][]byte{7: replayed[7], 11: make([]byte, 32)}, "enabled", []int{7}},
	} {
		res, err := tpm.CheckEventLog(log, c.quoted)
		if err != nil || res.Events != len(events) || res.SecureBoot != c.secureBoot || !slices.Equal(res.PCRs, c.pcrs) {
			t.Fatalf("%s: %+v %v", c.name, res, err)
		}
	}
	off := map[int][]byte{7: bytes.Repeat([]byte{7}, 32)}
	if _, err := tpm.CheckEventLog(log, off); !errors.Is(err, tpm.ErrEventLog) || !strings.Contains(err.Error(), "PCR 7") {
		t.Fatalf("wrong PCR 7: %v", err)
	}

	disabled := bootEvents()
	disabled[2].data = efiVariable("SecureBoot", []byte{0})
	dl := buildLog(disabled)
	dr, err := tpm.ParseEventLog(dl)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := tpm.CheckEventLog(dl, dr.Replay()); err != nil || res.SecureBoot != "disabled" {
		t.Fatalf("Secure Boot off: %+v %v", res, err)
	}

	// A log without a SHA-256 bank, or of the SHA-1 format, is refused.
	noSHA256 := bytes.Replace(buildLog(nil), []byte{0x0b, 0x00, 0x20, 0x00}, []byte{0x0c, 0x00, 0x30, 0x00}, 1)
	sha1Format := bytes.Replace(buildLog(nil), []byte("Event03"), []byte("Event02"), 1)
	for name, b := range map[string][]byte{"no SHA-256 bank": noSHA256, "SHA-1 log": sha1Format, "empty": nil} {
		if _, err := tpm.ParseEventLog(b); !errors.Is(err, tpm.ErrEventLog) {
			t.Errorf("%s: %v, want ErrEventLog", name, err)
		}
	}
	if l, err := tpm.ParseEventLog(buildLog(nil)); err != nil || len(l.Events) != 0 {
		t.Fatalf("a header-only log: %v", err)
	}
}

// FuzzParseEventLog feeds the event log parser arbitrary bytes: no panic,
// and whatever parses replays and checks against its own replay.
func FuzzParseEventLog(f *testing.F) {
	f.Add(buildLog(bootEvents()))
	f.Add(buildLog(nil))
	f.Add(buildLog(bootEvents()[:1]))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := tpm.ParseEventLog(b)
		if err != nil {
			if !errors.Is(err, tpm.ErrEventLog) {
				t.Fatalf("error without ErrEventLog: %v", err)
			}
			return
		}
		for _, e := range l.Events {
			if e.PCR < 0 || e.PCR > tpm.MaxPCRIndex || len(e.Digest) != 32 {
				t.Fatalf("event %+v", e)
			}
		}
		replayed := l.Replay()
		res, err := tpm.CheckEventLog(b, replayed)
		if err != nil {
			if !errors.Is(err, tpm.ErrEventLog) || !strings.Contains(err.Error(), "SecureBoot") {
				t.Fatalf("a log does not check against its own replay: %v", err)
			}
			return
		}
		if res.Events != len(l.Events) || len(res.PCRs) != len(replayed) {
			t.Fatalf("result %+v for %d events, %d PCRs", res, len(l.Events), len(replayed))
		}
	})
}

// BenchmarkCheckEventLog measures the server's cost of an event log of
// 200 events (about 20 KB, a typical firmware log).
func BenchmarkCheckEventLog(b *testing.B) {
	var events []logEvent
	for i := range 200 {
		events = append(events, logEvent{pcr: uint32(i % 8), typ: evEFIAction, data: bytes.Repeat([]byte{byte(i)}, 40)})
	}
	log := buildLog(events)
	l, err := tpm.ParseEventLog(log)
	if err != nil {
		b.Fatal(err)
	}
	quoted := l.Replay()
	b.SetBytes(int64(len(log)))
	for b.Loop() {
		if _, err := tpm.CheckEventLog(log, quoted); err != nil {
			b.Fatal(err)
		}
	}
}

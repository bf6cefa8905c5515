package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"unicode/utf16"
)

// This file reads the TCG PC Client crypto-agile ("TCG2") event log: the
// list of measurements the firmware extended into the PCRs, as Linux
// exposes it in /sys/kernel/security/tpm0/binary_bios_measurements (TCG PC
// Client Platform Firmware Profile, section 10). The log itself proves
// nothing: anyone can write one. Replaying its SHA-256 digests and
// comparing the result with the PCR values a verified quote signed is what
// makes it evidence; then the events explain the values (which firmware,
// which boot loader, Secure Boot on or off).
//
// Layout, all integers little-endian:
//
//	header  TCG_PCClientPCREvent (SHA-1 format): pcr u32 = 0, type u32 =
//	        EV_NO_ACTION, digest [20]byte = 0, size u32, data = TCG_EfiSpecIDEvent
//	        ("Spec ID Event03\0", platform class, version 2.x, uintn size,
//	        the algorithms and their digest sizes, vendor info)
//	events  TCG_PCR_EVENT2: pcr u32, type u32, TPML_DIGEST_VALUES (count u32,
//	        then alg u16 and digest, its size from the header), size u32, data

// Event types this package interprets.
const (
	// EventNoAction (EV_NO_ACTION) is informational: never extended.
	EventNoAction uint32 = 0x00000003
	// EventSeparator (EV_SEPARATOR) ends the pre-OS measurements of a PCR.
	EventSeparator uint32 = 0x00000004
	// EventEFIVariableDriverConfig (EV_EFI_VARIABLE_DRIVER_CONFIG) measures
	// a UEFI configuration variable such as SecureBoot, into PCR 7.
	EventEFIVariableDriverConfig uint32 = 0x80000001
)

// MaxEventLogBytes bounds AttestEvidence.EventLog. Firmware logs are
// tens of kilobytes; this leaves room for long boot chains.
const MaxEventLogBytes = 1 << 20

// Limits of the log's header.
const (
	maxLogAlgorithms = 16 // TPM hash algorithms that could ever be in one log
	maxLogDigestSize = 64 // SHA-512, the largest
)

// specIDSignature starts the header's TCG_EfiSpecIDEvent in a
// crypto-agile log ("Spec ID Event02" would be a SHA-1-only log).
var specIDSignature = []byte("Spec ID Event03\x00")

// startupLocality starts the EV_NO_ACTION event that records the locality
// of TPM2_Startup, which sets PCR 0's initial value.
var startupLocality = []byte("StartupLocality\x00")

// efiGlobalVariable is EFI_GLOBAL_VARIABLE
// (8BE4DF61-93CA-11D2-AA0D-00E098032B8C) as it is laid out in memory.
var efiGlobalVariable = [16]byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}

// Event is one measurement of an event log.
type Event struct {
	// Index is the event's position among the log's events (the header
	// is not one), from 0.
	Index int
	// PCR is the PCR the event was extended into, 0..MaxPCRIndex.
	PCR int
	// Type is the TCG event type (EV_*).
	Type uint32
	// Digest is the event's SHA-256 digest: what was extended.
	Digest []byte
	// Data is the event data; the digest covers it for some event types
	// only, so it is unauthenticated unless checked against the digest.
	// It aliases the log's bytes.
	Data []byte
}

// EventLog is a parsed crypto-agile event log.
type EventLog struct {
	// Events are the log's events after the header, in order.
	Events []Event
}

// ParseEventLog decodes a TCG2 crypto-agile event log: the header must
// declare the SHA-256 bank, every event must carry a SHA-256 digest and
// only digests of the algorithms the header declares, name a PCR
// 0..MaxPCRIndex, and the log must end exactly after its last event.
// Errors wrap ErrEventLog and name the event and its offset.
func ParseEventLog(b []byte) (EventLog, error) {
	if len(b) == 0 || len(b) > MaxEventLogBytes {
		return EventLog{}, fmt.Errorf("%w: event_log is %d bytes, want 1..%d", ErrEventLog, len(b), MaxEventLogBytes)
	}
	r := &reader{b: b, order: binary.LittleEndian}
	sizes, err := parseSpecID(r)
	if err != nil {
		return EventLog{}, fmt.Errorf("%w: header: %v", ErrEventLog, err)
	}
	var log EventLog
	for i := 0; len(r.b) > 0; i++ {
		off := len(b) - len(r.b)
		e, err := parseEvent(r, sizes)
		if err != nil {
			return EventLog{}, fmt.Errorf("%w: event %d at offset %d: %v", ErrEventLog, i, off, err)
		}
		e.Index = i
		log.Events = append(log.Events, e)
	}
	return log, nil
}

// parseSpecID reads the SHA-1-format header event and returns the digest
// size of each algorithm it declares.
func parseSpecID(r *reader) (map[uint16]int, error) {
	pcr, typ := r.u32(), r.u32()
	digest := r.bytes(20)
	data := r.bytes(int(r.u32()))
	if r.err != nil {
		return nil, r.err
	}
	if pcr != 0 || typ != EventNoAction || !allZero(digest) {
		return nil, fmt.Errorf("first event is PCR %d type %#x, want the EV_NO_ACTION Spec ID event of PCR 0", pcr, typ)
	}
	s := &reader{b: data, order: binary.LittleEndian}
	if sig := s.bytes(len(specIDSignature)); s.err == nil && !bytes.Equal(sig, specIDSignature) {
		return nil, fmt.Errorf("signature %q, want %q (a crypto-agile log)", sig, specIDSignature)
	}
	s.u32() // platform class
	_, major, _, _ := s.u8(), s.u8(), s.u8(), s.u8()
	n := s.u32()
	if s.err != nil {
		return nil, fmt.Errorf("Spec ID event: %v", s.err)
	}
	if major != 2 {
		return nil, fmt.Errorf("Spec ID event: spec version major %d, want 2", major)
	}
	if n == 0 || n > maxLogAlgorithms {
		return nil, fmt.Errorf("Spec ID event: %d algorithms, want 1..%d", n, maxLogAlgorithms)
	}
	sizes := make(map[uint16]int, n)
	for range n {
		alg, size := s.u16(), int(s.u16())
		if s.err != nil {
			return nil, fmt.Errorf("Spec ID event: %v", s.err)
		}
		if _, dup := sizes[alg]; dup || size == 0 || size > maxLogDigestSize {
			return nil, fmt.Errorf("Spec ID event: algorithm %#04x with digest size %d (duplicate or out of 1..%d)", alg, size, maxLogDigestSize)
		}
		sizes[alg] = size
	}
	s.bytes(int(s.u8())) // vendor info
	if s.err != nil {
		return nil, fmt.Errorf("Spec ID event: %v", s.err)
	}
	if sizes[algSHA256] != sha256.Size {
		return nil, fmt.Errorf("Spec ID event: the log has no SHA-256 bank")
	}
	return sizes, nil
}

// parseEvent reads one TCG_PCR_EVENT2.
func parseEvent(r *reader, sizes map[uint16]int) (Event, error) {
	pcr, typ, count := r.u32(), r.u32(), r.u32()
	if r.err != nil {
		return Event{}, r.err
	}
	if pcr > MaxPCRIndex {
		return Event{}, fmt.Errorf("PCR %d out of 0..%d", pcr, MaxPCRIndex)
	}
	if count == 0 || count > uint32(len(sizes)) {
		return Event{}, fmt.Errorf("PCR %d: %d digests, the header declares %d algorithms", pcr, count, len(sizes))
	}
	e := Event{PCR: int(pcr), Type: typ}
	seen := make([]uint16, 0, count)
	for range count {
		alg := r.u16()
		size, ok := sizes[alg]
		if r.err == nil && (!ok || slices.Contains(seen, alg)) {
			return Event{}, fmt.Errorf("PCR %d: digest of algorithm %#04x is undeclared or repeated", pcr, alg)
		}
		seen = append(seen, alg)
		d := r.bytes(size)
		if alg == algSHA256 {
			e.Digest = d
		}
	}
	e.Data = r.bytes(int(r.u32()))
	if r.err != nil {
		return Event{}, r.err
	}
	if e.Digest == nil {
		return Event{}, fmt.Errorf("PCR %d: no SHA-256 digest", pcr)
	}
	return e, nil
}

// Replay returns the SHA-256 bank values the log's events produce, for
// every PCR it extends (or whose start it sets: a StartupLocality event
// sets PCR 0's initial value to the locality, if it comes before PCR 0's
// first measurement). Other PCRs are absent.
// PCRs start at zero (PC Client PCRs 0..16 and 23; the log does not
// cover the dynamic PCRs 17..22, which start at all ones).
func (l EventLog) Replay() map[int][]byte {
	pcrs := make(map[int][]byte)
	value := func(n int) []byte {
		if v, ok := pcrs[n]; ok {
			return v
		}
		v := make([]byte, sha256.Size)
		pcrs[n] = v
		return v
	}
	h := sha256.New()
	for _, e := range l.Events {
		if e.Type == EventNoAction {
			_, started := pcrs[0]
			if e.PCR == 0 && !started && len(e.Data) == len(startupLocality)+1 && bytes.HasPrefix(e.Data, startupLocality) {
				value(0)[sha256.Size-1] = e.Data[len(startupLocality)]
			}
			continue
		}
		v := value(e.PCR)
		h.Reset()
		h.Write(v)
		h.Write(e.Digest)
		pcrs[e.PCR] = h.Sum(v[:0])
	}
	return pcrs
}

// EventLogResult is what CheckEventLog established.
type EventLogResult struct {
	// Events is the number of events in the log (the header excluded).
	Events int
	// PCRs are the quoted PCRs the log covers, whose values it explains.
	PCRs []int
	// SecureBoot is "enabled" or "disabled" as the SecureBoot UEFI
	// variable measured into PCR 7 says, when PCR 7 is quoted and the log
	// holds that measurement; "" otherwise.
	SecureBoot string
}

// CheckEventLog parses log and checks it against quoted, the SHA-256 PCR
// values of a verified quote: every quoted PCR the log covers must replay
// to its quoted value. PCRs the log does not cover, or that are not
// quoted, are not judged. The SecureBoot variable's event, when its PCR is
// quoted (PCR 7), must also carry the SHA-256 of its data, so that its value is
// authenticated. Errors wrap ErrEventLog and name the PCR or event at
// fault.
func CheckEventLog(log []byte, quoted map[int][]byte) (EventLogResult, error) {
	l, err := ParseEventLog(log)
	if err != nil {
		return EventLogResult{}, err
	}
	res := EventLogResult{Events: len(l.Events)}
	replayed := l.Replay()
	for _, n := range slices.Sorted(maps.Keys(replayed)) {
		q, ok := quoted[n]
		if !ok {
			continue
		}
		if !bytes.Equal(replayed[n], q) {
			return EventLogResult{}, fmt.Errorf("%w: PCR %d: the event log replays to %x, the quote says %x", ErrEventLog, n, replayed[n], q)
		}
		res.PCRs = append(res.PCRs, n)
	}
	for _, e := range l.Events {
		if e.Type != EventEFIVariableDriverConfig || e.PCR != 7 {
			continue
		}
		if _, ok := quoted[e.PCR]; !ok {
			continue
		}
		value, ok := secureBootVariable(e.Data)
		if !ok {
			continue
		}
		if sum := sha256.Sum256(e.Data); !bytes.Equal(sum[:], e.Digest) {
			return EventLogResult{}, fmt.Errorf("%w: event %d (SecureBoot variable, PCR %d): its digest is not the SHA-256 of its data", ErrEventLog, e.Index, e.PCR)
		}
		switch {
		case bytes.Equal(value, []byte{1}):
			res.SecureBoot = "enabled"
		case bytes.Equal(value, []byte{0}):
			res.SecureBoot = "disabled"
		default:
			res.SecureBoot = ""
		}
	}
	return res, nil
}

// secureBootVariable returns the value of a UEFI_VARIABLE_DATA event
// measuring the global SecureBoot variable; ok is false for any other
// variable or undecodable data.
func secureBootVariable(data []byte) (value []byte, ok bool) {
	r := &reader{b: data, order: binary.LittleEndian}
	guid := r.bytes(16)
	nameLen, dataLen := r.u64(), r.u64()
	if r.err != nil || !bytes.Equal(guid, efiGlobalVariable[:]) || nameLen > uint64(len(r.b))/2 {
		return nil, false
	}
	raw := r.bytes(int(nameLen) * 2)
	if dataLen > uint64(len(r.b)) {
		return nil, false
	}
	value = r.bytes(int(dataLen))
	if r.err != nil {
		return nil, false
	}
	name := make([]uint16, nameLen)
	for i := range name {
		name[i] = binary.LittleEndian.Uint16(raw[2*i:])
	}
	if string(utf16.Decode(name)) != "SecureBoot" {
		return nil, false
	}
	return value, true
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

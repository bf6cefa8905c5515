package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/edgevault/edgevault/internal/agent/spool"
	"github.com/edgevault/edgevault/internal/audit/leaf"
	"github.com/edgevault/edgevault/internal/jsonenc"
)

// Audit spool: where and how the agent keeps and forwards its entries.
const (
	// spoolDir is the spool's directory in StateDir.
	spoolDir = "audit"
	// spoolIDFile, in spoolDir, names the spool for the server: a new
	// spool (its directory lost) numbers its entries from 1 again.
	spoolIDFile = "spool-id"
	// forwardBatch bounds one forward (the server takes up to 1,000).
	forwardBatch, forwardBytes = 1000, 4 << 20
	// forwardLinger lets entries gather before a forward, so one signature
	// and one request carry many.
	forwardLinger = 200 * time.Millisecond
	// forwardRate paces forwarding (entries per second): committing,
	// signing and sending an entry costs the node about 8 µs of CPU, and
	// the server several times that to check and log it. Paced, the audit
	// trail never takes more than a small share of a node's CPU from
	// serving; a burst above the pace waits in the spool (1 GiB, about
	// 2.5 million entries) and drains after it.
	forwardRate = 5000
	// forwardDrain is how soon a backlog should be gone: past
	// forwardRate*forwardDrain entries the pace rises with the backlog, so
	// a sustained load above the pace still cannot fill the spool.
	forwardDrain = time.Minute
	// maxLineField bounds a request's path and error message in its entry.
	maxLineField = 1024
	// refusalReserve is the share of the spool kept for the entries of
	// requests the agent serves: past it, refusals (which serve nothing)
	// are answered without an entry, so a flood of bad requests cannot
	// stop the agent from serving.
	refusalReserve = 0.1
)

// readEntry describes one request the agent answered itself: what the
// audit entry records. Never a value or a token.
type readEntry struct {
	requestID []byte
	operation string
	path      string // without /v1/
	version   int    // 0: none asked
	online    bool
	stale     int64 // seconds; -1 when not served from the cache
	remote    string
	status    int
	err       string
	serial    string // a certificate issued offline (subca.go); "" if none
}

// appendLine appends e's audit line (compact JSON, no "seq": the spool
// numbers it, and the forwarder adds it).
func (e *readEntry) appendLine(b []byte, now time.Time, zone string) []byte {
	b = append(b, `{"time":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","type":"agent-read","request":{"id":"`...)
	b = append(b, e.requestID...)
	b = append(b, `","operation":`...)
	b = jsonenc.AppendString(b, e.operation)
	b = append(b, `,"path":`...)
	b = jsonenc.AppendString(b, e.path)
	if e.version > 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendInt(b, int64(e.version), 10)
	}
	b = append(b, `,"mode":"`...)
	if e.online {
		b = append(b, "online"...)
	} else {
		b = append(b, "degraded"...)
	}
	b = append(b, '"')
	if e.stale >= 0 && !e.online {
		b = append(b, `,"stale_seconds":`...)
		b = strconv.AppendInt(b, e.stale, 10)
	}
	b = append(b, `,"remote_address":`...)
	b = jsonenc.AppendString(b, e.remote)
	b = append(b, `,"namespace":{"id":`...)
	b = jsonenc.AppendString(b, zoneID(zone))
	b = append(b, `}},"response":{"status_code":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	if e.serial != "" {
		b = append(b, `,"serial_number":`...)
		b = jsonenc.AppendString(b, e.serial)
	}
	b = append(b, '}')
	if e.err != "" {
		b = append(b, `,"error":`...)
		b = jsonenc.AppendString(b, clip(e.err))
	}
	return append(b, '}')
}

// clip bounds a field's text, marking the cut (on a UTF-8 boundary).
func clip(s string) string {
	if len(s) <= maxLineField {
		return s
	}
	cut := maxLineField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// zoneID is a zone's namespace ID as audit entries carry it.
func zoneID(zone string) string {
	if zone == "" {
		return "root"
	}
	return zone
}

// remoteHost is a request's peer without its port ("" on a Unix socket).
func remoteHost(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 && !strings.HasSuffix(addr, "]") {
		addr = addr[:i]
	}
	return strings.Trim(addr, "[]")
}

// auditTrail spools an entry for every request the agent answers itself
// and forwards them, signed by batch with the agent's key, to the server's
// sys/agents/audit, which appends them to the zone's audit devices and
// transparency log.
type auditTrail struct {
	a     *agent
	spool *spool.Spool
	bufs  chan []byte
	// idFile holds the spool's ID; spoolID is read by the forwarder only.
	idFile  string
	spoolID string
	// lastErr is the last forwarding failure ("" after a success), for
	// sys/health.
	lastErr atomic.Pointer[string]
	// skipped counts refusals answered without an entry (spool nearly full).
	skipped atomic.Int64
}

// openAuditTrail opens (or creates) the spool in dir.
func openAuditTrail(a *agent, dir string) (*auditTrail, error) {
	sp, err := spool.Open(dir, spool.Options{Logger: a.log})
	if err != nil {
		return nil, fmt.Errorf("agent: audit spool: %w", err)
	}
	t := &auditTrail{a: a, spool: sp, bufs: make(chan []byte, 64), idFile: filepath.Join(dir, spoolIDFile)}
	// A spool that never held an entry gets a new ID: its numbers start
	// at 1 again, which the server must not take for entries it holds.
	st := sp.Stats()
	if t.spoolID, err = readSpoolID(t.idFile); err != nil || (st.LastSeq == 0 && st.Committed == 0) {
		err = t.newSpoolID()
	}
	if err != nil {
		_ = sp.Close()
		return nil, fmt.Errorf("agent: audit spool: %w", err)
	}
	return t, nil
}

// readSpoolID reads the spool's ID.
func readSpoolID(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	if id := strings.TrimSpace(string(b)); id != "" && len(id) <= 64 {
		return id, nil
	}
	return "", fmt.Errorf("%s: not a spool ID", file)
}

// newSpoolID names the spool anew.
func (t *auditTrail) newSpoolID() error {
	id := string(appendRequestID(nil))
	if err := writePrivate(t.idFile, []byte(id+"\n")); err != nil {
		return err
	}
	t.spoolID = id
	return nil
}

// record spools e. An error means the spool did not take the entry: the
// caller must not serve the request. A refusal (the request gets nothing)
// is not spooled once the spool is nearly full; it is counted.
func (t *auditTrail) record(e *readEntry, refusal bool) error {
	if refusal && float64(t.spool.Stats().PendingBytes) > (1-refusalReserve)*spool.DefaultMaxBytes {
		if t.skipped.Add(1)%1000 == 1 {
			t.a.log.Warn("agent: the audit spool is nearly full; refusals are answered without an entry", "skipped", t.skipped.Load())
		}
		return nil
	}
	var b []byte
	select {
	case b = <-t.bufs:
	default:
		b = make([]byte, 0, 512)
	}
	b = e.appendLine(b[:0], t.a.clock(), t.a.cfg.Zone)
	_, err := t.spool.Append(b)
	select {
	case t.bufs <- b:
	default:
	}
	return err
}

// forwardLoop sends spooled entries to the server while the agent is
// online, oldest first, and commits what the server holds. It stops when
// ctx ends.
func (t *auditTrail) forwardLoop(ctx context.Context) {
	var (
		hc       *http.Client
		sentWith *identity
	)
	defer func() {
		if hc != nil {
			hc.CloseIdleConnections()
		}
	}()
	retry := minRetry
	for {
		recs, err := t.spool.Next(forwardBatch, forwardBytes)
		if err != nil {
			t.a.log.Error("agent: audit spool: read", "err", err)
		}
		wait := forwardLinger
		switch {
		case err != nil:
			wait = retry
		case len(recs) == 0:
			select {
			case <-ctx.Done():
				return
			case <-t.spool.Wait():
			case <-time.After(time.Second): // Wait may have fired before Next
			}
			continue
		case t.a.online.Load():
			id := t.a.id.Load()
			if id != sentWith {
				// A batch goes over a connection that presents the
				// certificate of the key that signed it.
				if hc != nil {
					hc.CloseIdleConnections()
				}
				hc, sentWith = t.a.httpClientAs(id), id
			}
			err = t.forward(ctx, hc, id, recs)
			if err == nil {
				t.lastErr.Store(nil)
				retry = minRetry
				wait = max(wait, time.Duration(len(recs))*time.Second/time.Duration(t.pace()))
				break
			}
			msg := err.Error()
			t.lastErr.Store(&msg)
			if errors.Is(err, errSpoolConflict) {
				// The server holds other entries under these numbers (this
				// spool was restored from a copy): go on under a new name.
				t.a.log.Error("agent: the server holds other audit entries under this spool's numbers; starting a new spool name", "err", err)
				if err := t.newSpoolID(); err != nil {
					t.a.log.Error("agent: audit spool: new name", "err", err)
				}
				continue
			}
			t.a.log.Warn("agent: forwarding audit entries failed; they stay spooled", "entries", len(recs),
				"first_seq", recs[0].Seq, "retry_in", retry, "err", err)
			wait, retry = retry, min(2*retry, maxRetry)
		default:
			wait = time.Second // offline: the entries wait in the spool
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// pace is the forwarding rate (entries/s): forwardRate, or faster when the
// backlog would take longer than forwardDrain to send.
func (t *auditTrail) pace() int64 {
	return max(forwardRate, t.spool.Stats().Pending/int64(forwardDrain/time.Second))
}

// errSpoolConflict: the server holds other entries under the spool's numbers.
var errSpoolConflict = errors.New("audit spool conflict")

// forward signs recs as one batch with id's key, sends them, and commits
// them in the spool once the server holds them.
func (t *auditTrail) forward(ctx context.Context, hc *http.Client, id *identity, recs []spool.Record) error {
	if id == nil || id.cert == nil {
		return errors.New("not enrolled")
	}
	type entry struct {
		Line string `json:"line"`
		Seed []byte `json:"seed"`
	}
	entries := make([]entry, len(recs))
	leaves := make([][]byte, len(recs))
	seeds := make([]byte, leaf.SeedSize*len(recs))
	if _, err := rand.Read(seeds); err != nil {
		return err
	}
	for i, r := range recs {
		line, err := withSeq(r.Data, r.Seq)
		if err != nil {
			return err
		}
		seed := seeds[i*leaf.SeedSize : (i+1)*leaf.SeedSize]
		fields, err := leaf.Fields(line)
		if err != nil {
			return fmt.Errorf("spooled entry %d: %w", r.Seq, err)
		}
		if leaves[i], err = leaf.Commit(fields, seed); err != nil {
			return fmt.Errorf("spooled entry %d: %w", r.Seq, err)
		}
		entries[i] = entry{Line: string(line), Seed: seed}
	}
	sig, err := leaf.SignBatch(leaves, id.key)
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]any{"spool": t.spoolID, "signature": sig, "entries": entries})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(t.a.cfg.ServerAddr, "/")+"/v1/sys/agents/audit", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(nsHeader, t.a.cfg.Zone)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	var out struct {
		Data struct {
			AuditSeq uint64 `json:"audit_seq"`
		} `json:"data"`
		Errors []string `json:"errors"`
	}
	_ = json.Unmarshal(raw, &out)
	if resp.StatusCode == http.StatusConflict {
		return fmt.Errorf("%w: %s", errSpoolConflict, strings.Join(out.Errors, "; "))
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("server: %s: %s", resp.Status, strings.Join(out.Errors, "; "))
	}
	last := recs[len(recs)-1].Seq
	if out.Data.AuditSeq != last {
		return fmt.Errorf("server holds entries up to %d, not %d", out.Data.AuditSeq, last)
	}
	return t.spool.Commit(last)
}

// withSeq returns a spooled line with its sequence number as first member.
func withSeq(line []byte, seq uint64) ([]byte, error) {
	if len(line) < 2 || line[0] != '{' {
		return nil, fmt.Errorf("spooled entry %d is not a JSON object", seq)
	}
	b := make([]byte, 0, len(line)+24)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ',')
	return append(b, line[1:]...), nil
}

// close syncs and closes the spool.
func (t *auditTrail) close() error { return t.spool.Close() }

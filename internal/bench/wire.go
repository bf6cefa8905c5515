package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// The wire side of the driver: one keep-alive connection per worker, each
// request written whole from a reused buffer, each response parsed by
// http.ReadResponse and drained (see the package comment for why not
// http.Transport).

// target holds what is built once and shared, read-only, by the workers.
type target struct {
	op       Op
	keys     int
	timeout  time.Duration
	network  string      // "tcp" or "unix"
	hostport string      // dial address: host:port, or the socket's path
	tls      *tls.Config // nil for http
	dialer   *net.Dialer
	base     string // the address's path, before /v1/
	mount    string // the engine's mount path, no slashes around it
	keyPath  string // "<base>/v1/<mount>/data/bench/", followed by the key number
	tokPath  string // "<base>/v1/auth/token/create"
	issPath  string // "<base>/v1/<mount>/issue/bench"
	credPath string // "<base>/v1/<mount>/creds/bench"
	revPath  string // "<base>/v1/sys/leases/revoke"
	headers  string // "Host: ...\r\n...X-Vault-Token: ...\r\n"
	kvTail   string // Content-Type, Content-Length, blank line and KV body
	tokTail  string // the same for token creation
	first    firstError
}

func newTarget(cfg Config) (*target, error) {
	u, err := url.Parse(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: -address: %w", ErrInvalidConfig, err)
	}
	t := &target{
		op:      cfg.Op,
		keys:    cfg.Keys,
		timeout: cfg.Timeout,
		network: "tcp",
		dialer:  &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second},
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	t.hostport = net.JoinHostPort(u.Hostname(), port)
	host, base := u.Host, strings.TrimRight(u.EscapedPath(), "/")
	socket, unix, err := SocketPath(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: -address: %w", ErrInvalidConfig, err)
	}
	if unix {
		// Plain HTTP over the socket; the URL's path is the socket's.
		t.network, t.hostport, host, base = "unix", socket, "localhost", ""
	}
	tlsCfg, err := tlsConfig(cfg, u.Hostname()) // checks -ca-cert even for http
	if err != nil {
		return nil, err
	}
	if u.Scheme == "https" {
		t.tls = tlsCfg
	}
	t.base, t.mount = base, cfg.mount()
	t.keyPath = base + "/v1/" + t.mount + "/data/bench/"
	t.tokPath = base + "/v1/auth/token/create"
	t.issPath = base + "/v1/" + t.mount + "/issue/" + benchRole
	t.credPath = base + "/v1/" + t.mount + "/creds/" + benchRole
	t.revPath = base + "/v1/sys/leases/revoke"
	t.headers = "Host: " + host + "\r\nUser-Agent: edgevault-bench\r\n"
	if cfg.Token != "" {
		t.headers += "X-Vault-Token: " + cfg.Token + "\r\n"
	}
	if cfg.Namespace != "" {
		t.headers += "X-Vault-Namespace: " + cfg.Namespace + "\r\n"
	}
	t.kvTail = bodyTail(`{"data":{"value":"` + strings.Repeat("x", cfg.ValueSize) + `"}}`)
	t.tokTail = bodyTail(`{"policies":["default"],"ttl":"10m"}`)
	return t, nil
}

func bodyTail(body string) string {
	return "Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func tlsConfig(cfg Config, serverName string) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		NextProtos: []string{"http/1.1"},
	}
	if cfg.TLSSkipVerify {
		c.InsecureSkipVerify = true //nolint:gosec // asked for with -tls-skip-verify
	}
	if cfg.CACert != "" {
		pem, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, fmt.Errorf("%w: -ca-cert: %w", ErrInvalidConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: -ca-cert: no PEM certificate in %s", ErrInvalidConfig, cfg.CACert)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// kind is one request shape.
type kind int

const (
	kindRead   kind = iota // GET <keyPath><key>
	kindWrite              // PUT <keyPath><key> with the KV body
	kindToken              // POST <tokPath> with the token body
	kindIssue              // POST <issPath> {"common_name":"<key>.bench.test"}
	kindCreds              // GET <credPath>; the response's lease_id is kept
	kindRevoke             // PUT <revPath> {"lease_id":<the kept lease_id>}
	kindRaw                // the worker's rawRequest (setup); the body is kept
)

// The pieces of the pki-issue body around the key number.
const (
	issueHead = `{"common_name":"`
	issueTail = `.` + benchDomain + `"}`
)

// appendRequest appends the whole HTTP/1.1 request of kind k to b, for the
// kinds that need nothing but the key (all but kindRevoke and kindRaw).
func (t *target) appendRequest(b []byte, k kind, key int) []byte {
	b = append(b, k.method()...)
	b = append(b, ' ')
	switch k {
	case kindRead, kindWrite:
		b = strconv.AppendInt(append(b, t.keyPath...), int64(key), 10)
	case kindToken:
		b = append(b, t.tokPath...)
	case kindIssue:
		b = append(b, t.issPath...)
	case kindCreds:
		b = append(b, t.credPath...)
	}
	b = append(b, " HTTP/1.1\r\n"...)
	b = append(b, t.headers...)
	switch k {
	case kindWrite:
		return append(b, t.kvTail...)
	case kindToken:
		return append(b, t.tokTail...)
	case kindIssue:
		n := len(issueHead) + len(issueTail) + digits(key)
		b = append(b, "Content-Type: application/json\r\nContent-Length: "...)
		b = append(strconv.AppendInt(b, int64(n), 10), "\r\n\r\n"...)
		b = strconv.AppendInt(append(b, issueHead...), int64(key), 10)
		return append(b, issueTail...)
	}
	return append(b, "\r\n"...)
}

// digits returns the length of the decimal form of n >= 0.
func digits(n int) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}

// appendBody appends the headers closing a request with a JSON body, and
// the body.
func appendBody(b, body []byte) []byte {
	b = append(b, "Content-Type: application/json\r\nContent-Length: "...)
	b = append(strconv.AppendInt(b, int64(len(body)), 10), "\r\n\r\n"...)
	return append(b, body...)
}

// path returns the request path of kind k, for error messages.
func (t *target) path(k kind, key int) string {
	switch k {
	case kindToken:
		return t.tokPath
	case kindIssue:
		return t.issPath
	case kindCreds:
		return t.credPath
	case kindRevoke:
		return t.revPath
	}
	return t.keyPath + strconv.Itoa(key)
}

// rawRequest is a setup request (kindRaw).
type rawRequest struct {
	method, path string // path from the server's root: "<base>/v1/..."
	body         []byte // JSON; nil for none
}

// appendRequest appends the request of kind k, any kind, to b.
func (w *worker) appendRequest(b []byte, k kind, key int) []byte {
	switch k {
	case kindRevoke:
		b = append(b, "PUT "...)
		b = append(b, w.t.revPath...)
		b = append(b, " HTTP/1.1\r\n"...)
		b = append(b, w.t.headers...)
		w.revBody = appendJSONString(append(w.revBody[:0], `{"lease_id":`...), w.leaseID)
		return appendBody(b, append(w.revBody, '}'))
	case kindRaw:
		b = append(b, w.raw.method...)
		b = append(b, ' ')
		b = append(b, w.raw.path...)
		b = append(b, " HTTP/1.1\r\n"...)
		b = append(b, w.t.headers...)
		if w.raw.body == nil {
			return append(b, "\r\n"...)
		}
		return appendBody(b, w.raw.body)
	}
	return w.t.appendRequest(b, k, key)
}

// describe returns the method and path of a request, for error messages.
func (w *worker) describe(k kind, key int) (method, path string) {
	if k == kindRaw {
		return w.raw.method, w.raw.path
	}
	return k.method(), w.t.path(k, key)
}

// worker issues one request at a time on its own connection. Its fields are
// its own: no lock is taken on the hot path.
type worker struct {
	t    *target
	ctx  context.Context
	rng  *rand.Rand // nil for setup workers
	buf  []byte
	conn *conn // nil until dialled, and after a failure
	lat  []time.Duration
	errs int64

	// db-creds and setup only:
	body    []byte     // the body of the last kindCreds or kindRaw response
	leaseID string     // the lease_id of the last kindCreds response
	revBody []byte     // reused buffer for the kindRevoke body
	raw     rawRequest // the next kindRaw request
}

// conn is one keep-alive connection.
type conn struct {
	nc       net.Conn
	br       *bufio.Reader
	deadline time.Time
	used     bool        // has carried a request: may have gone stale
	stop     func() bool // unregisters the cancellation hook
}

func (t *target) newWorker(ctx context.Context, rng *rand.Rand) *worker {
	return &worker{t: t, ctx: ctx, rng: rng, buf: make([]byte, 0, 512+len(t.kvTail))}
}

// dial opens the worker's connection. Cancelling the worker's context sets
// a past deadline, which aborts any read or write in progress.
func (w *worker) dial() error {
	ctx, cancel := context.WithTimeout(w.ctx, w.t.timeout)
	defer cancel()
	nc, err := w.t.dialer.DialContext(ctx, w.t.network, w.t.hostport)
	if err != nil {
		return err
	}
	if w.t.tls != nil {
		tc := tls.Client(nc, w.t.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return err
		}
		nc = tc
	}
	w.conn = &conn{
		nc:   nc,
		br:   bufio.NewReaderSize(nc, 4096),
		stop: context.AfterFunc(w.ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) }),
	}
	return nil
}

// close closes the worker's connection, if any.
func (w *worker) close() {
	if w.conn != nil {
		w.conn.stop()
		w.conn.nc.Close()
		w.conn = nil
	}
}

// do sends one request and reads its response, which must arrive before
// deadline. It returns an error for a transport failure or a non-2xx status.
// A request that fails on a reused connection before any response byte
// arrived (the server closed it while idle) is retried once on a new one.
func (w *worker) do(k kind, key int, deadline time.Time) error {
	retried := false
	for {
		stale, err := w.try(k, key, deadline)
		if err == nil || !stale || retried {
			return err
		}
		retried = true
	}
}

// try makes one attempt; stale reports a failure that a reused connection
// going stale explains.
func (w *worker) try(k kind, key int, deadline time.Time) (stale bool, err error) {
	fail := func(err error) *requestError {
		w.close()
		method, path := w.describe(k, key) // only on failure: path allocates
		return &requestError{method: method, path: path, err: err}
	}
	if w.conn == nil {
		if err := w.dial(); err != nil {
			return false, fail(err)
		}
	}
	c := w.conn
	if !deadline.Equal(c.deadline) {
		if err := c.nc.SetDeadline(deadline); err != nil {
			return false, fail(err)
		}
		c.deadline = deadline
	}
	if err := w.ctx.Err(); err != nil { // after SetDeadline: see dial
		return false, fail(err)
	}
	reused := c.used
	c.used = true
	w.buf = w.appendRequest(w.buf[:0], k, key)
	if _, err := c.nc.Write(w.buf); err != nil {
		return reused && isStale(err), fail(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return reused && isStale(err) && c.br.Buffered() == 0, fail(err)
	}
	var failure error
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		method, path := w.describe(k, key)
		failure = &requestError{method: method, path: path, status: resp.StatusCode, msg: errorMessage(head)}
	} else if k == kindCreds || k == kindRaw {
		failure = w.keepBody(resp.Body, k, key)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		resp.Body.Close()
		e := fail(fmt.Errorf("read body: %w", err))
		if failure == nil {
			failure = e
		}
		return false, failure
	}
	resp.Body.Close()
	if resp.Close {
		w.close()
	}
	return false, failure
}

// keepBody reads a successful response's body into w.body; for kindCreds
// it decodes the lease_id into w.leaseID.
func (w *worker) keepBody(r io.Reader, k kind, key int) error {
	b, err := readAllInto(w.body[:0], io.LimitReader(r, maxBody+1))
	w.body = b
	switch {
	case err != nil:
		err = fmt.Errorf("read body: %w", err)
	case len(b) > maxBody:
		err = fmt.Errorf("response body over %d bytes", maxBody)
	case k == kindCreds:
		w.leaseID, err = leaseIDOf(b)
	}
	if err != nil {
		method, path := w.describe(k, key)
		return &requestError{method: method, path: path, err: err}
	}
	return nil
}

// maxBody bounds the response bodies a worker keeps.
const maxBody = 1 << 20

// readAllInto appends everything r yields to b.
func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

func (k kind) method() string {
	return [...]string{
		kindRead: http.MethodGet, kindWrite: http.MethodPut, kindToken: http.MethodPost,
		kindIssue: http.MethodPost, kindCreds: http.MethodGet, kindRevoke: http.MethodPut, kindRaw: "",
	}[k]
}

// isStale reports an error typical of a keep-alive connection the server
// has closed.
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// requestError is one failed request. Its message never holds the token.
type requestError struct {
	method, path string
	status       int    // 0 for a transport error
	msg          string // server's message, for a status error
	err          error  // transport error
}

func (e *requestError) Error() string {
	if e.status == 0 {
		return fmt.Sprintf("%s %s: %v", e.method, e.path, e.err)
	}
	s := fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.status, http.StatusText(e.status))
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}

func (e *requestError) Unwrap() error { return e.err }

// maxMessage bounds the server message kept from an error body.
const maxMessage = 200

// errorMessage extracts a short, printable message from an error response
// body: Vault's {"errors":[...]} joined with "; ", or else the start of the
// body itself.
func errorMessage(body []byte) string {
	var env struct {
		Errors []string `json:"errors"`
	}
	msg := ""
	if err := json.Unmarshal(body, &env); err == nil && len(env.Errors) > 0 {
		msg = strings.Join(env.Errors, "; ")
	} else {
		msg = string(body)
	}
	msg = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case r < 0x20 || r == 0x7f || r == utf8.RuneError:
			return -1
		}
		return r
	}, msg)
	msg = strings.TrimSpace(msg)
	if len(msg) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	return msg
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// BaselineBodySize is the size of the baseline server's response body.
const BaselineBodySize = 200

// BaselineBody returns the body the baseline server sends: a Vault-style
// JSON envelope padded to exactly BaselineBodySize bytes.
func BaselineBody() []byte {
	const (
		head = `{"request_id":"00000000-0000-0000-0000-000000000000","lease_id":"","renewable":false,` +
			`"lease_duration":0,"data":{"value":"`
		tail = `"},"wrap_info":null,"warnings":null,"auth":null}`
	)
	return []byte(head + strings.Repeat("x", BaselineBodySize-len(head)-len(tail)) + tail)
}

// BaselineHandler answers every request, whatever its method and path, with
// 200 and BaselineBody. It does no other work, so its rate is the ceiling
// of what a net/http server can do on the machine.
func BaselineHandler() http.Handler {
	body := BaselineBody()
	contentType := []string{"application/json"}
	contentLength := []string{strconv.Itoa(len(body))}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = contentType
		h["Content-Length"] = contentLength
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

// Serve runs the baseline server on ln until ctx is done, then shuts it
// down (waiting up to 2 seconds for requests in flight) and returns nil.
// It closes ln. It returns an error only if serving fails.
func Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           BaselineHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("baseline server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		_ = srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("baseline server on %s: %w", ln.Addr(), err)
	}
	return nil
}

// Listen opens a listener for Serve: address is host:port (TCP) or
// unix:///absolute/path (a Unix socket, see SocketPath). A socket file left
// behind by a process that is gone is replaced; a socket another process
// still accepts on, or an existing file that is not a socket, is an error.
// Closing the listener removes the socket file.
func Listen(address string) (net.Listener, error) {
	path, unix, err := SocketPath(address)
	if err != nil {
		return nil, err
	}
	if !unix {
		return net.Listen("tcp", address)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, 100*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process is listening on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove the stale socket: %w", err)
		}
	}
	return net.Listen("unix", path)
}

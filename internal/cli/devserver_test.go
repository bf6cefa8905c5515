package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// startDevServer runs a real in-memory dev server on a free loopback port in
// this process, as "edgevault server -dev" would, and returns what it
// printed and a function that stops it and waits for it to exit.
func startDevServer(rootToken string) (info devInfo, stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	readyc := make(chan devInfo, 1)
	done := make(chan error, 1)
	go func() {
		done <- runDevServer(ctx, e, serverFlags{devRootToken: rootToken, devListenAddr: "127.0.0.1:0", devAgentAddr: "127.0.0.1:0", logLevel: "error"},
			func(i devInfo) { readyc <- i })
	}()
	select {
	case r := <-readyc:
		return r, func() { cancel(); <-done }, nil
	case err := <-done:
		cancel()
		return devInfo{}, nil, fmt.Errorf("dev server: %w", err)
	case <-time.After(30 * time.Second):
		cancel()
		return devInfo{}, nil, fmt.Errorf("dev server: not ready after 30s")
	}
}

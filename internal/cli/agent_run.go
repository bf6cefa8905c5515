package cli

// This file holds "edgevault agent -config FILE" (run the edge agent) and
// "edgevault agent status" (ask a running agent how it is).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/internal/agent"
	"github.com/edgevault/edgevault/internal/config"
)

// agentConfig turns the configuration file into the agent's settings; the
// join token comes from join_token_file or EDGEVAULT_JOIN_TOKEN.
func agentConfig(e *env, path string) (agent.Config, string, error) {
	fc, err := config.LoadAgent(path)
	if err != nil {
		return agent.Config{}, "", err
	}
	tok := e.getenv("EDGEVAULT_JOIN_TOKEN")
	if fc.JoinTokenFile != "" {
		raw, err := os.ReadFile(fc.JoinTokenFile)
		if err != nil {
			return agent.Config{}, "", fmt.Errorf("join_token_file: %w", err)
		}
		tok = strings.TrimSpace(string(raw))
	}
	cfg := agent.Config{ServerAddr: fc.ServerAddress, ServerCA: fc.ServerCACert, Zone: fc.Zone, JoinToken: tok,
		StateDir: fc.StateDir, Listen: fc.Listen, Socket: fc.Socket, TPM: fc.TPMDevice}
	for _, r := range fc.OfflinePKI {
		cfg.OfflinePKI = append(cfg.OfflinePKI, agent.OfflinePKI{Mount: r.Mount, Role: r.Role})
	}
	return cfg, fc.LogLevel, nil
}

// runAgent runs the agent until SIGINT/SIGTERM.
func runAgent(cmd *cobra.Command, e *env, path string) error {
	cfg, level, err := agentConfig(e, path)
	if err != nil {
		return usageError{err}
	}
	log, err := newLogger(e, level)
	if err != nil {
		return err
	}
	cfg.Logger = log
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return agent.Run(ctx, cfg, func(i agent.Info) {
		where := i.Listen
		if where == "" {
			where = "unix:" + i.Socket
		}
		who := "edgevault agent (enrolling with its join token)"
		if i.AgentID != "" {
			who = fmt.Sprintf("edgevault agent %s (%s)", i.AgentID, i.SPIFFEID)
		}
		fmt.Fprintf(e.stdout, "%s serving on %s\n\n    export VAULT_ADDR='http://%s'\n    export VAULT_TOKEN='%s'   # the agent's local token\n\n",
			who, where, i.Listen, i.LocalToken)
	})
}

// agentStatus asks a running agent's local API for its health.
func agentStatus(ctx context.Context, e *env, addr, socket string, asJSON bool) error {
	client := &http.Client{Timeout: 5 * time.Second}
	url := "http://" + addr + "/v1/sys/health"
	if socket != "" {
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}}
		url = "http://agent/v1/sys/health"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return hintError{fmt.Errorf("agent status: %w", err), "is the agent running? check its listener in the agent configuration"}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		return fmt.Errorf("agent status: not an agent's answer (HTTP %d)", resp.StatusCode)
	}
	if asJSON {
		return printJSON(e.stdout, h)
	}
	return printTable(e.stdout, mapRows(h))
}

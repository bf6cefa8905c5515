package cli

// This file holds "edgevault agent": the operator's side of edge agents —
// single-use join tokens to enroll one, and the zone's agent registry
// (list, read, quarantine, release, delete). An agent acts in one zone;
// -zone (or -namespace) picks it.

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/internal/attest/tpm"
	"github.com/edgevault/edgevault/internal/config"
	"github.com/edgevault/edgevault/internal/tpmdev"
)

func newAgentCmd(e *env) *cobra.Command {
	var cf clientFlags
	var zone, configFile string
	cmd := newGroupCmd("agent", "Run the edge agent (-config FILE), or enroll agents and manage a zone's registry",
		`With -config FILE, run the edge agent: it enrolls with its join token the first
time, follows its zone's feed of cacheable secrets over mTLS, keeps them in an
encrypted cache, and serves local applications Vault's API on loopback (or a
Unix socket) — also, for a bounded time, while the control plane is down.

The subcommands are for operators: create join tokens that enroll edge agents
into a zone, and list, inspect, quarantine, release or delete the zone's
agents. -zone names the zone (the same as -namespace); a zone token with sudo
on auth/attest/join-token is needed to create join tokens.`,
		newAgentJoinTokenCmd(e, &cf, &zone),
		newAgentListCmd(e, &cf, &zone),
		newAgentReadCmd(e, &cf, &zone),
		newAgentStatusCmd(e, &cf, &zone, "quarantine", "Quarantine an agent: it is refused until released", true),
		newAgentStatusCmd(e, &cf, &zone, "release", "Release a quarantined agent", false),
		newAgentDeleteCmd(e, &cf, &zone),
		newAgentReattestCmd(e, &cf, &zone),
		newAgentLocalStatusCmd(e, &cf),
		newAgentTPMEKCmd(e),
	)
	addClientFlags(cmd, &cf)
	cmd.PersistentFlags().StringVar(&zone, "zone", "", "the agents' zone (same as -namespace)")
	cmd.Flags().StringVar(&configFile, "config", "", "run the agent with this configuration file")
	group := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if configFile != "" && len(args) == 0 {
			return runAgent(c, e, configFile)
		}
		return group(c, args)
	}
	return cmd
}

func newAgentLocalStatusCmd(e *env, cf *clientFlags) *cobra.Command {
	var configFile, addr string
	cmd := &cobra.Command{
		Use:   "status [-config FILE | -agent-address HOST:PORT]",
		Short: "Ask a running agent how it is: online, degraded or isolated, its identity and cache",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var socket string
			if configFile != "" {
				fc, err := config.LoadAgent(configFile)
				if err != nil {
					return usageError{err}
				}
				addr, socket = fc.Listen, fc.Socket
				if addr != "" {
					socket = ""
				}
			}
			if addr == "" && socket == "" {
				return usagef("give -config FILE (the agent's) or -agent-address HOST:PORT")
			}
			return agentStatus(cmd.Context(), e, addr, socket, cf.format == formatJSON)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "the agent's configuration file (its listener is used)")
	cmd.Flags().StringVar(&addr, "agent-address", "", "the agent's loopback listener, HOST:PORT")
	return cmd
}

// agentConn connects in the zone -zone names, if any.
func agentConn(e *env, cf *clientFlags, zone string, check error) (*conn, error) {
	if zone != "" {
		if cf.namespace != "" && cf.namespace != zone {
			check = usagef("-zone %q and -namespace %q disagree", zone, cf.namespace)
		}
		cf.namespace = zone
	}
	return cf.connectAfter(e, check)
}

func newAgentJoinTokenCmd(e *env, cf *clientFlags, zone *string) *cobra.Command {
	var ttl time.Duration
	var agentID, field string
	cmd := &cobra.Command{
		Use:   "join-token -zone ZONE [-ttl 15m] [-agent-id ID] [-field join_token]",
		Short: "Create a single-use join token that enrolls one agent into the zone",
		Long: `Create a single-use, short-lived join token bound to the zone. The agent
presents it once, with the public key it generated, and receives a
certificate from the zone's CA. Join tokens are the weakest attestation: they
prove possession of a secret, not of hardware (status output says so).`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var check error
			if ttl <= 0 || ttl > 24*time.Hour {
				check = usagef("-ttl %s: must be more than 0 and at most 24h", ttl)
			}
			c, err := agentConn(e, cf, *zone, check)
			if err != nil {
				return err
			}
			body := map[string]any{"ttl": ttl.String()}
			if agentID != "" {
				body["agent_id"] = agentID
			}
			s, err := c.api.Logical().WriteWithContext(cmd.Context(), "auth/attest/join-token", body)
			if err != nil {
				return c.fail("create join token", err)
			}
			if field != "" {
				return c.printField(s, field)
			}
			return c.printSecret(s)
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 15*time.Minute, "how long the token can be used")
	cmd.Flags().StringVar(&agentID, "agent-id", "", "the ID the enrolling agent gets (default: a random one)")
	cmd.Flags().StringVar(&field, "field", "", "print only this field (join_token) raw")
	return cmd
}

func newAgentListCmd(e *env, cf *clientFlags, zone *string) *cobra.Command {
	return &cobra.Command{
		Use:   "list -zone ZONE",
		Short: "List the zone's agents",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := agentConn(e, cf, *zone, nil)
			if err != nil {
				return err
			}
			s, err := c.readRaw(cmd.Context(), "sys/agents", true)
			if err != nil {
				return c.fail("list agents", err)
			}
			if c.json() {
				return printJSON(c.out, s.Data)
			}
			info, _ := s.Data["key_info"].(map[string]any)
			ids := make([]string, 0, len(info))
			for id := range info {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			rows := [][]string{{"ID", "Status", "Attestation", "Cert expiry", "Last seen"}}
			for _, id := range ids {
				a, _ := info[id].(map[string]any)
				rows = append(rows, []string{id, fmt.Sprint(a["status"]), fmt.Sprint(a["attestation_strength"]), fmt.Sprint(a["cert_expiry"]), fmt.Sprint(a["last_seen"])})
			}
			for _, r := range rows {
				fmt.Fprintln(c.out, strings.Join(r, "\t"))
			}
			return nil
		},
	}
}

func newAgentReadCmd(e *env, cf *clientFlags, zone *string) *cobra.Command {
	return &cobra.Command{
		Use:   "read -zone ZONE ID",
		Short: "Show an agent: attestation, certificate, last seen, cache watermark, status",
		Args:  argsBetween(1, 1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := agentConn(e, cf, *zone, nil)
			if err != nil {
				return err
			}
			s, err := c.readRaw(cmd.Context(), "sys/agents/"+args[0], false)
			if err != nil {
				return c.fail("read agent "+args[0], err)
			}
			return c.printSecret(s)
		},
	}
}

func newAgentStatusCmd(e *env, cf *clientFlags, zone *string, use, short string, quarantine bool) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   use + " -zone ZONE ID",
		Short: short,
		Args:  argsBetween(1, 1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := agentConn(e, cf, *zone, nil)
			if err != nil {
				return err
			}
			path := "sys/agents/" + args[0] + "/quarantine"
			if quarantine {
				_, err = c.api.Logical().WriteWithContext(cmd.Context(), path, map[string]any{"reason": reason})
			} else {
				_, err = c.api.Logical().DeleteWithContext(cmd.Context(), path)
			}
			if err != nil {
				return c.fail(use+" agent "+args[0], err)
			}
			return c.success("Agent %s: %s", args[0], map[bool]string{true: "quarantined", false: "released"}[quarantine])
		},
	}
	if quarantine {
		cmd.Flags().StringVar(&reason, "reason", "", "why (kept in the registry)")
	}
	return cmd
}

func newAgentDeleteCmd(e *env, cf *clientFlags, zone *string) *cobra.Command {
	return &cobra.Command{
		Use:   "delete -zone ZONE ID",
		Short: "Delete an agent from the registry (its certificate is refused from then on)",
		Args:  argsBetween(1, 1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := agentConn(e, cf, *zone, nil)
			if err != nil {
				return err
			}
			if _, err := c.api.Logical().DeleteWithContext(cmd.Context(), "sys/agents/"+args[0]); err != nil {
				return c.fail("delete agent "+args[0], err)
			}
			return c.success("Deleted agent %s", args[0])
		},
	}
}

func newAgentReattestCmd(e *env, cf *clientFlags, zone *string) *cobra.Command {
	return &cobra.Command{
		Use:   "reattest -zone ZONE ID",
		Short: "Ask a TPM-attested agent to re-attest now (a fresh quote; a failure quarantines it)",
		Args:  argsBetween(1, 1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := agentConn(e, cf, *zone, nil)
			if err != nil {
				return err
			}
			if _, err := c.api.Logical().WriteWithContext(cmd.Context(), "sys/agents/"+args[0]+"/reattest", nil); err != nil {
				return c.fail("reattest agent "+args[0], err)
			}
			return c.success("Agent %s: asked to re-attest over its sync stream", args[0])
		},
	}
}

func newAgentTPMEKCmd(e *env) *cobra.Command {
	var device, format string
	cmd := &cobra.Command{
		Use:   "tpm-ek -device DEVICE",
		Short: "Print a TPM's endorsement key hash (for a zone's attestation policy) and whether it has an EK certificate",
		Args:  noArgs,
		Example: `  edgevault agent tpm-ek -device /dev/tpmrm0
  edgevault agent tpm-ek -device tcp://127.0.0.1:2321 -format json   # swtpm`,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := tpmdev.Open(device)
			if err != nil {
				return hintError{fmt.Errorf("tpm-ek: %w", err), "-device is /dev/tpmrm0, tcp://HOST:PORT or unix:///PATH (a software TPM)"}
			}
			defer d.Close()
			ek, cert, err := d.EK()
			if err != nil {
				return fmt.Errorf("tpm-ek: %w", err)
			}
			h, err := tpmdev.EKHash(ek)
			if err != nil {
				return fmt.Errorf("tpm-ek: %w", err)
			}
			out := map[string]any{"ek_hash": h, "ek_certificate": cert != nil, "agent_id": tpm.AgentID(h)}
			if format == "json" {
				return printJSON(e.stdout, out)
			}
			return printTable(e.stdout, mapRows(out))
		},
	}
	cmd.Flags().StringVar(&device, "device", "/dev/tpmrm0", "the TPM: a device path, tcp://HOST:PORT or unix:///PATH")
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	return cmd
}

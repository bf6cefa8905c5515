package cli

// This file holds the generic commands, as Vault's CLI has them: read,
// write, list and delete any API path (the pki and database engines, sys/*).

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// newLogicalCmds builds read, write, list and delete.
func newLogicalCmds(e *env) []*cobra.Command {
	var cf clientFlags
	clean := func(p string) (string, error) {
		p = strings.Trim(p, "/")
		if p == "" || strings.Contains(p, "//") {
			return "", usagef("PATH %q: expected an API path such as pki/issue/web", p)
		}
		return p, nil
	}
	// open checks PATH and connects.
	open := func(arg string) (string, *conn, error) {
		p, err := clean(arg)
		c, err := cf.connectAfter(e, err)
		return p, c, err
	}
	read := &cobra.Command{
		Use:   "read PATH",
		Short: "Read any API path (GET /v1/PATH), as vault read does",
		Args:  argsBetween(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := open(args[0])
			if err != nil {
				return err
			}
			s, err := c.api.Logical().ReadWithContext(cmd.Context(), p)
			if err != nil {
				return c.fail("read "+p, err)
			}
			if s == nil {
				return fmt.Errorf("read %s: nothing at that path", p)
			}
			if c.json() {
				return printJSON(c.out, s)
			}
			return printTable(c.out, mapRows(s.Data))
		},
	}
	write := &cobra.Command{
		Use:   "write PATH [KEY=VALUE...]",
		Short: "Write to any API path (POST /v1/PATH), as vault write does",
		Long: `Write KEY=VALUE pairs (VALUE may be @FILE, or - for standard input) to PATH, or a JSON
object with a single argument @FILE or -. The answer's data is printed.`,
		Args: argsBetween(1, -1, "PATH [KEY=VALUE...]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := clean(args[0])
			var data map[string]any
			if err == nil {
				data, err = parseKVData(args[1:], e.stdin, os.ReadFile)
			}
			c, err := cf.connectAfter(e, err)
			if err != nil {
				return err
			}
			s, err := c.api.Logical().WriteWithContext(cmd.Context(), p, data)
			if err != nil {
				return c.fail("write "+p, err)
			}
			if s == nil || (len(s.Data) == 0 && s.Auth == nil) {
				return c.success("Data written to: %s", p)
			}
			if c.json() {
				return printJSON(c.out, s)
			}
			rows := mapRows(s.Data)
			if s.LeaseID != "" {
				rows = append([]row{{"lease_id", s.LeaseID}, {"lease_duration", fmt.Sprint(s.LeaseDuration)}, {"lease_renewable", fmt.Sprint(s.Renewable)}}, rows...)
			}
			return printTable(c.out, rows)
		},
	}
	list := &cobra.Command{
		Use:   "list PATH",
		Short: "List the keys under any API path (LIST /v1/PATH), as vault list does",
		Args:  argsBetween(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := open(args[0])
			if err != nil {
				return err
			}
			s, err := c.api.Logical().ListWithContext(cmd.Context(), p)
			if err != nil {
				return c.fail("list "+p, err)
			}
			var keys []string
			if s != nil {
				raw, _ := s.Data["keys"].([]any)
				for _, k := range raw {
					keys = append(keys, fmt.Sprint(k))
				}
			}
			sort.Strings(keys)
			return c.printNames(keys)
		},
	}
	del := &cobra.Command{
		Use:   "delete PATH",
		Short: "Delete at any API path (DELETE /v1/PATH), as vault delete does",
		Args:  argsBetween(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := open(args[0])
			if err != nil {
				return err
			}
			if _, err := c.api.Logical().DeleteWithContext(cmd.Context(), p); err != nil {
				return c.fail("delete "+p, err)
			}
			return c.success("Data deleted (if it existed) at: %s", p)
		},
	}
	cmds := []*cobra.Command{read, write, list, del}
	for _, c := range cmds {
		addClientFlags(c, &cf)
	}
	return cmds
}

package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func newPolicyCmd(e *env) *cobra.Command {
	var cf clientFlags
	cmd := newGroupCmd("policy", "Write, read, list and delete ACL policies",
		`Write, read, list and delete ACL policies, written in Vault's HCL policy syntax:

    path "secret/data/app/*" {
      capabilities = ["read", "list"]
    }`,
		newPolicyWriteCmd(e, &cf),
		newPolicyReadCmd(e, &cf),
		newPolicyListCmd(e, &cf),
		newPolicyDeleteCmd(e, &cf),
	)
	addClientFlags(cmd, &cf)
	return cmd
}

// checkPolicyName refuses names that cannot be a single path segment.
func checkPolicyName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return usagef("NAME: empty policy name")
	case strings.ContainsAny(name, "/?#%") || name == "." || name == "..":
		return usagef("NAME %q: a policy name cannot contain / ? # %% or be . or ..", name)
	}
	return nil
}

func newPolicyWriteCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "write NAME FILE|-",
		Short: "Create or replace a policy from a file (or - for standard input)",
		Long: `Create or replace the policy NAME with the HCL rules in FILE, or on standard
input when FILE is "-". The server checks the syntax and refuses a bad policy.
` + exitCodesHelp,
		Args: argsBetween(2, 2, "NAME FILE|-"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, src := args[0], args[1]
			if err := checkPolicyName(name); err != nil {
				return err
			}
			var rules []byte
			var err error
			if src == "-" {
				rules, err = io.ReadAll(e.stdin)
			} else {
				rules, err = os.ReadFile(src)
			}
			if err != nil {
				return fmt.Errorf("read policy %s: %w", name, err)
			}
			if strings.TrimSpace(string(rules)) == "" {
				return usagef("policy %s: %s is empty", name, src)
			}
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			if err := c.api.Sys().PutPolicyWithContext(cmd.Context(), name, string(rules)); err != nil {
				return c.fail("write policy "+name, err)
			}
			return c.success("Uploaded policy: %s", name)
		},
	}
}

func newPolicyReadCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "read NAME",
		Short: "Print a policy's rules",
		Long:  "Print the HCL rules of the policy NAME.\n" + exitCodesHelp,
		Args:  argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			c, err := cf.connectAfter(e, checkPolicyName(name))
			if err != nil {
				return err
			}
			s, err := c.api.Logical().ReadWithContext(cmd.Context(), "sys/policies/acl/"+name)
			if err != nil {
				return c.fail("read policy "+name, err)
			}
			if s == nil || s.Data == nil {
				return fmt.Errorf("read policy %s: no policy named %q", name, name)
			}
			if c.json() {
				return printJSON(c.out, s)
			}
			rules, _ := s.Data["policy"].(string)
			if !strings.HasSuffix(rules, "\n") {
				rules += "\n"
			}
			_, err = io.WriteString(c.out, rules)
			return err
		},
	}
}

func newPolicyListCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the policy names",
		Long:  "List the names of all ACL policies, one per line.\n" + exitCodesHelp,
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			names, err := c.api.Sys().ListPoliciesWithContext(cmd.Context())
			if err != nil {
				return c.fail("list policies", err)
			}
			return c.printNames(names)
		},
	}
}

func newPolicyDeleteCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a policy",
		Long: `Delete the policy NAME. Tokens that name it keep the name but lose its rules.
` + exitCodesHelp,
		Args: argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			c, err := cf.connectAfter(e, checkPolicyName(name))
			if err != nil {
				return err
			}
			if err := c.api.Sys().DeletePolicyWithContext(cmd.Context(), name); err != nil {
				return c.fail("delete policy "+name, err)
			}
			return c.success("Deleted policy: %s", name)
		},
	}
}

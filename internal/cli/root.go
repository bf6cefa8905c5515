// Package cli implements the edgevault command line: the server, the
// operator and client verbs (which talk to a server through
// github.com/hashicorp/vault/api) and the benchmark driver.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/spf13/cobra"
)

// Exit codes, as Vault's CLI uses them.
const (
	exitOK    = 0
	exitError = 1 // the request failed (API error, I/O)
	exitUsage = 2 // bad flags or arguments
)

// env is what every command reads and writes instead of globals.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// usageError marks errors caused by bad arguments (exit code 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// hintError carries a one-line hint printed under the error.
type hintError struct {
	error
	hint string
}

func (h hintError) Unwrap() error { return h.error }

// Main runs edgevault with the process's arguments and environment.
func Main() int {
	return Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
}

// Run runs edgevault with args and returns the process exit code.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := newRootCmd(e)
	root.SetArgs(vaultStyleFlags(args))
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "error: %v\n", err)
	var h hintError
	if errors.As(err, &h) {
		fmt.Fprintf(stderr, "hint: %s\n", h.hint)
	}
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	return exitError
}

func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "edgevault",
		Short:         "A secret manager for hybrid cloud and edge, speaking Vault's API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newServerCmd(e),
		newDevCmd(e),
		newBenchCmd(e),
		newOperatorCmd(e),
		newKVCmd(e),
		newTokenCmd(e),
		newLeaseCmd(e),
		newPolicyCmd(e),
		newStatusCmd(e),
		newZoneCmd(e),
		newAuditCmd(e),
		newAgentCmd(e),
		newEventsCmd(e),
	)
	root.AddCommand(newLogicalCmds(e)...)
	return root
}

// longFlag matches a Vault-style single-dash long flag such as -dev or
// -config=file.hcl.
var longFlag = regexp.MustCompile(`^-[a-zA-Z][a-zA-Z0-9_-]+(=.*)?$`)

// vaultStyleFlags rewrites "-flag" to "--flag" so the flags Vault's users type
// (edgevault server -dev -dev-root-token-id=root) work with cobra. Arguments
// after "--" are left alone.
func vaultStyleFlags(args []string) []string {
	out := make([]string, len(args))
	rest := false
	for i, a := range args {
		switch {
		case rest:
			out[i] = a
		case a == "--":
			rest = true
			out[i] = a
		case longFlag.MatchString(a):
			out[i] = "-" + a
		default:
			out[i] = a
		}
	}
	return out
}

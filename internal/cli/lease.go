package cli

// This file holds "edgevault lease": look up, renew and revoke the leases of
// dynamic secrets (database users, certificates) through sys/leases, as
// Vault's "vault lease" commands do.

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newLeaseCmd(e *env) *cobra.Command {
	var cf clientFlags
	cmd := newGroupCmd("lease", "Look up, renew and revoke the leases of dynamic secrets",
		`Look up, renew and revoke the leases of dynamic secrets: database users,
certificates issued by a role with generate_lease. A lease ID is the one the
secret was returned with, such as database/creds/readonly/2f6a614c... Leases
of tokens are handled by "edgevault token".`,
		newLeaseLookupCmd(e, &cf),
		newLeaseRenewCmd(e, &cf),
		newLeaseRevokeCmd(e, &cf),
	)
	addClientFlags(cmd, &cf)
	return cmd
}

// leaseArg checks a lease ID (or, with prefix, a lease ID prefix) given on
// the command line. what names the argument in errors. Errors do not repeat
// the argument.
func leaseArg(what, arg string, prefix bool) (string, error) {
	id := strings.TrimSpace(arg)
	if strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", usagef("%s: contains a control character", what)
	}
	if prefix {
		if strings.Trim(id, "/") == "" {
			return "", usagef("%s: empty prefix (it would name every lease); give a path such as database/creds/readonly", what)
		}
		return id, nil
	}
	if id == "" {
		return "", usagef("%s: empty lease ID", what)
	}
	return id, nil
}

func newLeaseLookupCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "lookup ID",
		Short: "Show a lease: issue and expire time, TTL, renewable",
		Long: `Show the lease ID: when it was issued, last renewed and expires, its
remaining ttl in seconds and whether it is renewable (PUT sys/leases/lookup).
` + exitCodesHelp,
		Example: `  edgevault lease lookup database/creds/readonly/2f6a614c4aa6...`,
		Args:    argsBetween(1, 1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := leaseArg("ID", args[0], false)
			c, err := cf.connectAfter(e, err)
			if err != nil {
				return err
			}
			s, err := c.api.Sys().LookupWithContext(cmd.Context(), id)
			if err != nil {
				return c.fail("look up lease "+id, err)
			}
			if s == nil {
				return fmt.Errorf("look up lease %s: the server returned no data", id)
			}
			return c.printSecret(s)
		},
	}
}

func newLeaseRenewCmd(e *env, cf *clientFlags) *cobra.Command {
	var increment string
	cmd := &cobra.Command{
		Use:   "renew [-increment=D] ID",
		Short: "Extend a lease (within its max TTL)",
		Long: `Ask for the lease ID to be extended by -increment from now (default: the
lease's own TTL), within its max TTL (PUT sys/leases/renew). The server may
grant less than asked; the lease_duration printed is what it granted.
Certificate leases are not renewable.
` + exitCodesHelp,
		Example: `  edgevault lease renew -increment=1h database/creds/readonly/2f6a614c4aa6...`,
		Args:    argsBetween(1, 1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var inc time.Duration
			id, err := leaseArg("ID", args[0], false)
			if err == nil && cmd.Flags().Changed("increment") {
				inc, err = parseDuration("increment", increment)
			}
			c, err := cf.connectAfter(e, err)
			if err != nil {
				return err
			}
			s, err := c.api.Sys().RenewWithContext(cmd.Context(), id, int(inc/time.Second))
			if err != nil {
				return c.fail("renew lease "+id, err)
			}
			if s == nil {
				return fmt.Errorf("renew lease %s: the server returned no data", id)
			}
			return c.printSecret(s)
		},
	}
	cmd.Flags().StringVar(&increment, "increment", "", "requested extension, such as 30m, 1h or 3600 (default: the lease's TTL)")
	return cmd
}

func newLeaseRevokeCmd(e *env, cf *clientFlags) *cobra.Command {
	var prefix, force, sync bool
	cmd := &cobra.Command{
		Use:   "revoke [-prefix] [-force] ID|PREFIX",
		Short: "Revoke a lease, or every lease under a prefix, and the secret behind it",
		Long: `Revoke the lease ID: the engine undoes the secret (drops the database user,
adds the certificate to the CRL), then the lease is deleted (PUT
sys/leases/revoke). Revocation is synchronous: when this command succeeds the
secret is gone. If the engine fails, the command fails and the lease stays,
retried by the server.

-prefix revokes every lease whose ID starts with PREFIX (PUT
sys/leases/revoke-prefix/PREFIX, needs sudo). -force, only with -prefix,
deletes the leases even where the engine cannot revoke the secret (PUT
sys/leases/revoke-force/PREFIX, needs sudo): for recovery when the secret was
removed by hand; anything not removed stays valid and edgevault forgets it.
-sync is accepted for compatibility with Vault's CLI and changes nothing.
` + exitCodesHelp,
		Example: `  edgevault lease revoke database/creds/readonly/2f6a614c4aa6...
  edgevault lease revoke -prefix database/creds/readonly
  edgevault lease revoke -force -prefix database/creds/readonly/2f6a614c4aa6...`,
		Args: argsBetween(1, 1, "ID, or PREFIX with -prefix"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var (
				id  string
				err error
			)
			if force && !prefix {
				err = usagef("-force requires -prefix (it removes leases without revoking their secrets)")
			} else if prefix {
				id, err = leaseArg("PREFIX", args[0], true)
			} else {
				id, err = leaseArg("ID", args[0], false)
			}
			c, err := cf.connectAfter(e, err)
			if err != nil {
				return err
			}
			ctx, sys := cmd.Context(), c.api.Sys()
			switch {
			case force:
				if err := sys.RevokeForceWithContext(ctx, id); err != nil {
					return c.fail("force-revoke leases under "+id, err)
				}
				if !c.json() {
					fmt.Fprintln(e.stderr, "warning: the leases were deleted without revoking their secrets; any secret still valid is no longer tracked")
				}
				return c.success("Force revoked any leases with prefix: %s", id)
			case prefix:
				if err := sys.RevokePrefixWithContext(ctx, id); err != nil {
					return c.fail("revoke leases under "+id, err)
				}
				return c.success("Revoked any leases with prefix: %s", id)
			}
			if err := sys.RevokeWithContext(ctx, id); err != nil {
				return c.fail("revoke lease "+id, err)
			}
			return c.success("Revoked lease: %s", id)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&prefix, "prefix", false, "treat the argument as a prefix and revoke every lease under it (needs sudo)")
	f.BoolVarP(&force, "force", "f", false, "with -prefix: delete the leases even if their secrets cannot be revoked (needs sudo)")
	f.BoolVar(&sync, "sync", false, "accepted for compatibility with Vault; revocation is always synchronous")
	return cmd
}

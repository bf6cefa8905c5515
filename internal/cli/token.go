package cli

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"
)

func newTokenCmd(e *env) *cobra.Command {
	var cf clientFlags
	cmd := newGroupCmd("token", "Create, inspect, renew and revoke tokens",
		`Create, inspect, renew and revoke tokens. Without a TOKEN argument, lookup and
renew act on the token in EDGEVAULT_TOKEN (or VAULT_TOKEN).`,
		newTokenCreateCmd(e, &cf),
		newTokenLookupCmd(e, &cf),
		newTokenRenewCmd(e, &cf),
		newTokenRevokeCmd(e, &cf),
		newTokenCapabilitiesCmd(e, &cf),
	)
	addClientFlags(cmd, &cf)
	return cmd
}

// tokenCreateFlags are the flags of "token create", named as Vault names them.
type tokenCreateFlags struct {
	policies        []string
	ttl             string
	explicitMaxTTL  string
	period          string
	numUses         int
	renewable       bool
	orphan          bool
	metadata        []string
	displayName     string
	noDefaultPolicy bool
	field           string
}

// request validates the flags and builds the create request.
func (f *tokenCreateFlags) request() (*api.TokenCreateRequest, error) {
	req := &api.TokenCreateRequest{
		DisplayName:     f.displayName,
		NoDefaultPolicy: f.noDefaultPolicy,
		Renewable:       &f.renewable,
	}
	for _, p := range f.policies {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, usagef("-policy: empty policy name")
		}
		req.Policies = append(req.Policies, p)
	}
	if f.numUses < 0 {
		return nil, usagef("-num-uses %d: expected 0 (unlimited) or more", f.numUses)
	}
	req.NumUses = f.numUses
	for _, d := range []struct {
		flag, value string
		dst         *string
	}{
		{"ttl", f.ttl, &req.TTL},
		{"explicit-max-ttl", f.explicitMaxTTL, &req.ExplicitMaxTTL},
		{"period", f.period, &req.Period},
	} {
		if d.value == "" {
			continue
		}
		dur, err := parseDuration(d.flag, d.value)
		if err != nil {
			return nil, err
		}
		*d.dst = durationSeconds(dur)
	}
	meta, err := parseStringMap("metadata", f.metadata)
	if err != nil {
		return nil, err
	}
	req.Metadata = meta
	return req, nil
}

func newTokenCreateCmd(e *env, cf *clientFlags) *cobra.Command {
	f := tokenCreateFlags{renewable: true}
	cmd := &cobra.Command{
		Use:   "create [-policy=NAME...] [-ttl=D] [flags]",
		Short: "Create a token, a child of the current one unless -orphan",
		Long: `Create a token. It is a child of the token making the request (revoking the
parent revokes it) unless -orphan is given. It gets the "default" policy plus
those given with -policy, unless -no-default-policy.

-field=token prints only the new token, for scripts.
` + exitCodesHelp,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request()
			if err != nil {
				return err
			}
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var s *api.Secret
			if f.orphan {
				s, err = c.api.Auth().Token().CreateOrphanWithContext(ctx, req)
			} else {
				s, err = c.api.Auth().Token().CreateWithContext(ctx, req)
			}
			if err != nil {
				return c.fail("create a token", err)
			}
			return c.printTokenSecret(s, f.field)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.policies, "policy", nil, "policy to attach (repeatable, or comma separated)")
	fl.StringVar(&f.ttl, "ttl", "", "time to live, such as 30m or 24h (default: the server's)")
	fl.StringVar(&f.explicitMaxTTL, "explicit-max-ttl", "", "hard limit the token cannot be renewed past")
	fl.StringVar(&f.period, "period", "", "make a periodic token, renewable by this period forever")
	fl.IntVar(&f.numUses, "num-uses", 0, "number of uses before the token is revoked (0: unlimited)")
	fl.BoolVar(&f.renewable, "renewable", true, "allow the token to be renewed")
	fl.BoolVar(&f.orphan, "orphan", false, "create a token with no parent")
	fl.StringArrayVar(&f.metadata, "metadata", nil, "metadata KEY=VALUE (repeatable)")
	fl.StringVar(&f.displayName, "display-name", "", "name shown in audit logs and lookups")
	fl.BoolVar(&f.noDefaultPolicy, "no-default-policy", false, `do not attach the "default" policy`)
	fl.StringVar(&f.field, "field", "", "print only this field (for example token or token_accessor)")
	return cmd
}

// printTokenSecret prints a token response: one field, or all of it.
func (c *conn) printTokenSecret(s *api.Secret, field string) error {
	if s == nil {
		return fmt.Errorf("the server returned no data")
	}
	if field != "" {
		return c.printField(s, field)
	}
	return c.printSecret(s)
}

func newTokenLookupCmd(e *env, cf *clientFlags) *cobra.Command {
	var (
		accessor bool
		field    string
	)
	cmd := &cobra.Command{
		Use:   "lookup [-accessor] [TOKEN]",
		Short: "Show a token's properties (the current token by default)",
		Long: `Show a token's properties: policies, TTL, uses, parent. Without TOKEN, the
current token's; with -accessor, the argument is a token accessor.
` + exitCodesHelp,
		Args: argsBetween(0, 1, "[TOKEN]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if accessor && len(args) == 0 {
				return usagef("-accessor: give the ACCESSOR to look up")
			}
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			t := c.api.Auth().Token()
			var s *api.Secret
			switch {
			case accessor:
				s, err = t.LookupAccessorWithContext(ctx, args[0])
			case len(args) == 1:
				s, err = t.LookupWithContext(ctx, args[0])
			default:
				s, err = t.LookupSelfWithContext(ctx)
			}
			if err != nil {
				return c.fail("look up the token", err)
			}
			return c.printTokenSecret(s, field)
		},
	}
	cmd.Flags().BoolVar(&accessor, "accessor", false, "the argument is a token accessor")
	cmd.Flags().StringVar(&field, "field", "", "print only this field")
	return cmd
}

func newTokenRenewCmd(e *env, cf *clientFlags) *cobra.Command {
	var increment, field string
	cmd := &cobra.Command{
		Use:   "renew [-increment=D] [TOKEN]",
		Short: "Extend a token's lease (the current token by default)",
		Long: `Extend a token's lease by -increment (default: its TTL), within its explicit
max TTL. Without TOKEN, the current token is renewed.
` + exitCodesHelp,
		Args: argsBetween(0, 1, "[TOKEN]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var inc time.Duration
			if increment != "" {
				var err error
				if inc, err = parseDuration("increment", increment); err != nil {
					return err
				}
			}
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			t := c.api.Auth().Token()
			var s *api.Secret
			if len(args) == 1 {
				s, err = t.RenewWithContext(ctx, args[0], int(inc/time.Second))
			} else {
				s, err = t.RenewSelfWithContext(ctx, int(inc/time.Second))
			}
			if err != nil {
				return c.fail("renew the token", err)
			}
			return c.printTokenSecret(s, field)
		},
	}
	cmd.Flags().StringVar(&increment, "increment", "", "requested extension, such as 1h (default: the token's TTL)")
	cmd.Flags().StringVar(&field, "field", "", "print only this field")
	return cmd
}

func newTokenRevokeCmd(e *env, cf *clientFlags) *cobra.Command {
	var (
		self, accessor bool
		mode           string
	)
	cmd := &cobra.Command{
		Use:   "revoke [-self] [-accessor] [-mode=orphan] [TOKEN]",
		Short: "Revoke a token and its children",
		Long: `Revoke a token and, unless -mode=orphan, every token created from it. -self
revokes the current token; -accessor takes a token accessor instead of a token.
` + exitCodesHelp,
		Args: argsBetween(0, 1, "TOKEN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case mode != "" && mode != "orphan":
				return usagef("-mode %q: expected orphan (or no -mode to revoke the children too)", mode)
			case self && len(args) > 0:
				return usagef("-self takes no TOKEN")
			case self && (accessor || mode != ""):
				return usagef("-self cannot be combined with -accessor or -mode")
			case !self && len(args) == 0:
				return usagef("token revoke: give the TOKEN (or ACCESSOR with -accessor), or -self")
			case accessor && mode != "":
				return usagef("-accessor cannot be combined with -mode")
			}
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			t := c.api.Auth().Token()
			switch {
			case self:
				err = t.RevokeSelfWithContext(ctx, "")
			case accessor:
				err = t.RevokeAccessorWithContext(ctx, args[0])
			case mode == "orphan":
				err = t.RevokeOrphanWithContext(ctx, args[0])
			default:
				err = t.RevokeTreeWithContext(ctx, args[0])
			}
			if err != nil {
				return c.fail("revoke the token", err)
			}
			return c.success("Revoked token (if it existed)")
		},
	}
	cmd.Flags().BoolVar(&self, "self", false, "revoke the current token")
	cmd.Flags().BoolVar(&accessor, "accessor", false, "the argument is a token accessor")
	cmd.Flags().StringVar(&mode, "mode", "", `"orphan": revoke only the token, its children become orphans`)
	return cmd
}

func newTokenCapabilitiesCmd(e *env, cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "capabilities [TOKEN] PATH",
		Short: "Show what a token may do on a path (the current token by default)",
		Long: `Show the capabilities (create, read, update, patch, delete, list, sudo, deny)
a token's policies grant on PATH, the API path without /v1/ (for KV v2:
secret/data/app/db).
` + exitCodesHelp,
		Args: argsBetween(1, 2, "[TOKEN] PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var caps []string
			if len(args) == 2 {
				caps, err = c.api.Sys().CapabilitiesWithContext(ctx, args[0], args[1])
			} else {
				caps, err = c.api.Sys().CapabilitiesSelfWithContext(ctx, args[0])
			}
			if err != nil {
				return c.fail("read capabilities", err)
			}
			sort.Strings(caps)
			if c.json() {
				return printJSON(c.out, nonNil(caps))
			}
			_, err = fmt.Fprintln(c.out, strings.Join(caps, ", "))
			return err
		},
	}
	return cmd
}

package cli

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// maxKeyShares is the largest number of key shares Shamir's scheme over
// GF(256) can produce.
const maxKeyShares = 255

func newOperatorCmd(e *env) *cobra.Command {
	var cf clientFlags
	cmd := newGroupCmd("operator", "Initialise, unseal, seal and rotate the server",
		`Operator commands: initialise a new server (init), unseal it after each start
(unseal), seal it in an emergency (seal), and add a new encryption key term
(rotate, key-status).`,
		newOperatorInitCmd(e, &cf),
		newOperatorUnsealCmd(e, &cf),
		newOperatorSealCmd(e, &cf),
		newOperatorRotateCmd(e, &cf),
		newOperatorKeyStatusCmd(e, &cf),
		newOperatorHSMKeygenCmd(e),
		newOperatorSealMigrateCmd(e),
	)
	addClientFlags(cmd, &cf)
	return cmd
}

func newOperatorInitCmd(e *env, cf *clientFlags) *cobra.Command {
	var shares, threshold, rShares, rThreshold int
	cmd := &cobra.Command{
		Use:   "init [-key-shares=5] [-key-threshold=3] [-recovery-shares=5] [-recovery-threshold=3]",
		Short: "Initialise a new server and print its unseal (or recovery) keys and root token",
		Long: `Initialise a new server: generate its root key, split it into -key-shares
unseal keys of which -key-threshold are needed to unseal, and create the initial
root token. This happens once per server; the keys are shown only now.

A server with an auto-unseal seal (seal "pkcs11") keeps its root key wrapped by
the HSM and needs no unseal keys; it gets -recovery-shares recovery keys instead,
-recovery-threshold of which authorise operator actions such as seal migration.
` + exitCodesHelp,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkShares("key", shares, threshold); err != nil {
				return err
			}
			if err := checkShares("recovery", rShares, rThreshold); err != nil {
				return err
			}
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			st, err := c.api.Sys().SealStatusWithContext(cmd.Context())
			if err != nil {
				return c.fail("read the seal status", err)
			}
			req := &api.InitRequest{SecretShares: shares, SecretThreshold: threshold}
			if st.RecoverySeal {
				req = &api.InitRequest{RecoveryShares: rShares, RecoveryThreshold: rThreshold}
			}
			resp, err := c.api.Sys().InitWithContext(cmd.Context(), req)
			if err != nil {
				return c.fail("initialise", err)
			}
			if c.json() {
				return printJSON(c.out, resp)
			}
			if st.RecoverySeal {
				return printRecoveryInit(c.out, resp, rThreshold)
			}
			return printInit(c.out, resp, threshold)
		},
	}
	cmd.Flags().IntVar(&shares, "key-shares", 5, "number of unseal keys to create")
	cmd.Flags().IntVar(&threshold, "key-threshold", 3, "number of unseal keys needed to unseal")
	cmd.Flags().IntVar(&rShares, "recovery-shares", 5, "number of recovery keys to create (auto-unseal seals)")
	cmd.Flags().IntVar(&rThreshold, "recovery-threshold", 3, "number of recovery keys needed (auto-unseal seals)")
	return cmd
}

// checkShares validates a shares/threshold flag pair named by kind.
func checkShares(kind string, shares, threshold int) error {
	switch {
	case shares < 1 || shares > maxKeyShares:
		return usagef("-%s-shares %d: expected 1 to %d", kind, shares, maxKeyShares)
	case threshold < 1 || threshold > shares:
		return usagef("-%s-threshold %d: expected 1 to -%s-shares (%d)", kind, threshold, kind, shares)
	}
	return nil
}

// printRecoveryInit prints the recovery keys and root token of an
// auto-unseal server, as Vault does.
func printRecoveryInit(w io.Writer, resp *api.InitResponse, threshold int) error {
	keys := firstNonEmpty(resp.RecoveryKeysB64, resp.RecoveryKeys)
	return printKeys(w, "Recovery Key", keys, resp.RootToken, fmt.Sprintf(`Server initialised with %d recovery key shares and a key threshold of %d.
The server unseals itself with its HSM; the recovery keys authorise operator
actions such as seal migration. Please securely distribute them.
`, len(keys), threshold))
}

// printInit prints the unseal keys and root token as Vault does.
func printInit(w io.Writer, resp *api.InitResponse, threshold int) error {
	keys := firstNonEmpty(resp.KeysB64, resp.Keys)
	return printKeys(w, "Unseal Key", keys, resp.RootToken, fmt.Sprintf(`Server initialised with %d key shares and a key threshold of %d. Please
securely distribute the key shares printed above. When the server is sealed or
restarted, at least %d of these keys are needed to unseal it before it can serve
requests.

The server does not store the root key. Without at least %d keys to rebuild it,
the server stays sealed for good!
`, len(keys), threshold, threshold, threshold))
}

// printKeys prints numbered keys, the root token and a closing text.
func printKeys(w io.Writer, label string, keys []string, rootToken, text string) error {
	var b strings.Builder
	for i, k := range keys {
		fmt.Fprintf(&b, "%s %d: %s\n", label, i+1, k)
	}
	fmt.Fprintf(&b, "\nInitial Root Token: %s\n\n%s", rootToken, text)
	_, err := io.WriteString(w, b.String())
	return err
}

func firstNonEmpty(a, b []string) []string {
	if len(a) > 0 {
		return a
	}
	return b
}

func newOperatorUnsealCmd(e *env, cf *clientFlags) *cobra.Command {
	var reset bool
	cmd := &cobra.Command{
		Use:   "unseal [-reset] [KEY]",
		Short: "Give one unseal key to a sealed server",
		Long: `Give one unseal key to a sealed server; once -key-threshold keys have been given,
the server unseals. Without KEY the key is read from standard input (hidden when
it is a terminal), which keeps it out of the shell history. -reset forgets the keys
given so far.
` + exitCodesHelp,
		Args: argsBetween(0, 1, "[KEY]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reset && len(args) > 0 {
				return usagef("-reset takes no KEY")
			}
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var st *api.SealStatusResponse
			if reset {
				st, err = c.api.Sys().ResetUnsealProcessWithContext(ctx)
				if err != nil {
					return c.fail("reset the unseal process", err)
				}
				return c.printSealStatus(st)
			}
			var key string
			if len(args) == 1 {
				key = args[0]
			} else if key, err = readSecretLine(e, "Unseal Key (will be hidden): "); err != nil {
				return err
			}
			if key == "" {
				return usagef("unseal: empty key")
			}
			st, err = c.api.Sys().UnsealWithContext(ctx, key)
			if err != nil {
				return c.fail("unseal", err)
			}
			return c.printSealStatus(st)
		},
	}
	cmd.Flags().BoolVar(&reset, "reset", false, "discard the unseal keys given so far")
	return cmd
}

// fdReader is a reader backed by a file descriptor, such as *os.File.
type fdReader interface {
	io.Reader
	Fd() uintptr
}

// readSecretLine reads one line from standard input, without echo and after
// a prompt on standard error when it is a terminal.
func readSecretLine(e *env, prompt string) (string, error) {
	if f, ok := e.stdin.(fdReader); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(e.stderr, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", fmt.Errorf("read the key from the terminal: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read the key from standard input: %w", err)
	}
	return strings.TrimSpace(line), nil
}

func newOperatorSealCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "seal",
		Short: "Seal the server: it forgets its keys and serves nothing until unsealed",
		Long: `Seal the server: it drops its keys from memory and refuses every request but
the seal status until it is unsealed again with the unseal keys. Needs a root or
sudo token.
` + exitCodesHelp,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			if err := c.api.Sys().SealWithContext(cmd.Context()); err != nil {
				return c.fail("seal", err)
			}
			return c.success("Server is sealed.")
		},
	}
}

func newOperatorRotateCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate",
		Short: "Add a new encryption key term; new writes use it",
		Long: `Add a new term to the encryption keyring: new writes are encrypted with it,
existing data stays readable. Prints the new key status.
` + exitCodesHelp,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := c.api.Sys().RotateWithContext(ctx); err != nil {
				return c.fail("rotate", err)
			}
			ks, err := c.api.Sys().KeyStatusWithContext(ctx)
			if err != nil {
				return c.fail("rotated, but reading the key status failed", err)
			}
			if c.json() {
				return printJSON(c.out, ks)
			}
			if err := c.success("Rotated key\n"); err != nil {
				return err
			}
			return printKeyStatus(c.out, ks)
		},
	}
}

func newOperatorKeyStatusCmd(e *env, cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "key-status",
		Short: "Show the current encryption key term",
		Long:  "Show the current encryption key term and when it was installed.\n" + exitCodesHelp,
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			ks, err := c.api.Sys().KeyStatusWithContext(cmd.Context())
			if err != nil {
				return c.fail("read the key status", err)
			}
			if c.json() {
				return printJSON(c.out, ks)
			}
			return printKeyStatus(c.out, ks)
		},
	}
}

// printKeyStatus prints a key status as Vault does: two aligned columns, no
// header.
func printKeyStatus(w io.Writer, ks *api.KeyStatus) error {
	installed := "n/a"
	if !ks.InstallTime.IsZero() {
		installed = ks.InstallTime.UTC().Format(time.RFC3339)
	}
	rows := []row{
		{"Key Term", strconv.Itoa(ks.Term)},
		{"Install Time", installed},
		{"Encryption Count", strconv.Itoa(ks.Encryptions)},
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r.key))
	}
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s    %s\n", width, r.key, r.value)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

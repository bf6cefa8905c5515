package cli

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"
)

// sealedError is returned by "status" when the server is sealed. It is a
// usage error only so that Run exits with code 2, which is what Vault's
// "status" does for a sealed server.
func sealedError(initialized bool) error {
	if !initialized {
		return usageError{errors.New("the server is not initialised (initialise it once with: edgevault operator init)")}
	}
	return usageError{errors.New("the server is sealed (unseal it with: edgevault operator unseal)")}
}

func newStatusCmd(e *env) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether the server is initialised and sealed",
		Long: `Show the server's seal status: initialised, sealed, the unseal threshold and
progress, the storage type.

Exit codes: 0 unsealed, 1 error (for example the server cannot be reached),
2 sealed (or bad flags), as Vault's "status" does, so scripts can wait for an
unsealed server with: until edgevault status >/dev/null; do sleep 1; done`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect(e)
			if err != nil {
				return err
			}
			st, err := c.api.Sys().SealStatusWithContext(cmd.Context())
			if err != nil {
				return c.fail("read the seal status", err)
			}
			if err := c.printSealStatus(st); err != nil {
				return err
			}
			if st.Sealed {
				return sealedError(st.Initialized)
			}
			return nil
		},
	}
	addClientFlags(cmd, &cf)
	return cmd
}

// printSealStatus prints a seal status as Vault does, or as JSON.
func (c *conn) printSealStatus(st *api.SealStatusResponse) error {
	if c.json() {
		return printJSON(c.out, st)
	}
	return printTable(c.out, sealStatusRows(st))
}

// sealStatusRows returns the rows of Vault's seal status table.
func sealStatusRows(st *api.SealStatusResponse) []row {
	rows := []row{
		{"Seal Type", st.Type},
		{"Initialized", strconv.FormatBool(st.Initialized)},
		{"Sealed", strconv.FormatBool(st.Sealed)},
		{"Total Shares", strconv.Itoa(st.N)},
		{"Threshold", strconv.Itoa(st.T)},
	}
	if st.Sealed {
		nonce := st.Nonce
		if nonce == "" {
			nonce = "n/a"
		}
		rows = append(rows,
			row{"Unseal Progress", fmt.Sprintf("%d/%d", st.Progress, st.T)},
			row{"Unseal Nonce", nonce},
		)
	}
	optional := []row{
		{"Version", st.Version},
		{"Build Date", st.BuildDate},
		{"Storage Type", st.StorageType},
		{"Cluster Name", st.ClusterName},
		{"Cluster ID", st.ClusterID},
	}
	for _, r := range optional {
		if r.value != "" {
			rows = append(rows, r)
		}
	}
	return rows
}

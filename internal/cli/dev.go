package cli

import (
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func newDevCmd(e *env) *cobra.Command {
	f := serverFlags{devListenAddr: "127.0.0.1:8200", devAgentAddr: "127.0.0.1:8100"}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a dev control plane in memory and show what to try next",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runDevServer(ctx, e, f, func(devInfo) {
				fmt.Fprintf(e.stdout, `
Try, in another shell (after the two exports above):

    go run ./cmd/edgevault kv put secret/app/db password=s3cret
    go run ./cmd/edgevault kv get secret/app/db
    go run ./cmd/edgevault token create -policy=default -ttl=1h
    go run ./cmd/edgevault status
    go run ./cmd/edgevault audit tail <audit file above>

Press Ctrl-C to stop.
`)
			})
		},
	}
	cmd.Flags().StringVar(&f.devRootToken, "dev-root-token-id", "", "root token ID (random when empty)")
	cmd.Flags().StringVar(&f.devListenAddr, "dev-listen-address", f.devListenAddr, "address to listen on (loopback only)")
	cmd.Flags().StringVar(&f.devAgentAddr, "dev-agent-address", f.devAgentAddr, `where the dev edge agent serves (loopback; "" for no agent)`)
	cmd.Flags().StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error")
	return cmd
}

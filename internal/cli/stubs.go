package cli

import "github.com/spf13/cobra"

// Temporary until the server and bench commands land.
func newServerCmd(e *env) *cobra.Command { return &cobra.Command{Use: "server"} }
func newDevCmd(e *env) *cobra.Command    { return &cobra.Command{Use: "dev"} }
func newBenchCmd(e *env) *cobra.Command  { return &cobra.Command{Use: "bench"} }

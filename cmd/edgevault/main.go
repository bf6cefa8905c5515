// Command edgevault is the edgevault server, agent and CLI in one binary.
package main

import (
	"os"

	"github.com/edgevault/edgevault/internal/cli"
)

func main() {
	os.Exit(cli.Main())
}

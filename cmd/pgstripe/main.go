// Command pgstripe keeps a Postgres schema in sync with a Stripe account and
// turns SQL writes into Stripe API calls. See `pgstripe --help`.
package main

import (
	"os"

	"github.com/pgstripe/pgstripe/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}

package main

import "github.com/pgstripe/pgstripe/chaos"

func init() {
	register("chaos", "SIGKILLs of serve, Postgres restarts and Stripe faults under load; tables must end exact (--kills K --faults F)", chaos.Command)
}

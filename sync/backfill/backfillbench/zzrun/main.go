package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/pgstripe/pgstripe/sync/backfill"
	"github.com/pgstripe/pgstripe/sync/backfill/backfillbench"
)

func main() {
	n := flag.Int("objects", 2000, "")
	d := flag.String("distribution", "uniform", "")
	r := flag.Float64("rate", 20, "")
	l := flag.Duration("latency", 250*time.Millisecond, "")
	b := flag.Duration("seq-budget", 30*time.Second, "")
	flag.Parse()
	last := time.Now()
	res, err := backfillbench.Run(context.Background(), backfillbench.Options{Objects: *n, Distribution: *d, Rate: *r, Latency: *l,
		SequentialBudget: *b, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Progress: func(p backfill.Progress) {
			if time.Since(last) > 5*time.Second || p.Done {
				last = time.Now()
				fmt.Fprintf(os.Stderr, "%s %d req %.1f/s workers %d target %d queued %d\n", p.Elapsed.Round(time.Second), p.Requests, p.RequestsPerSec, p.Workers, p.Target, p.Queued)
			}
		}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	j, _ := json.Marshal(res)
	fmt.Println(string(j))
}

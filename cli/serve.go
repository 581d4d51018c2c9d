package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/server"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

func runServe(ctx context.Context, env *Env, args []string) error {
	fs := flagSet(env, "serve")
	loader := config.Flags(fs, config.NeedDatabase|config.NeedStripe)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loader.Load()
	if err != nil {
		return err
	}
	log := newLogger(env.Stderr, cfg.LogFormat)
	return server.Run(ctx, server.Options{Config: cfg, Logger: log})
}

func runBackfill(ctx context.Context, env *Env, args []string) error {
	fs := flagSet(env, "backfill")
	loader := config.Flags(fs, config.NeedDatabase|config.NeedStripe)
	objects := fs.String("objects", "", "comma-separated tables to backfill (default: all)")
	restart := fs.Bool("restart", false, "backfill again objects that completed earlier")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loader.Load()
	if err != nil {
		return err
	}
	var names []string
	if *objects != "" {
		for _, n := range strings.Split(*objects, ",") {
			names = append(names, strings.TrimSpace(n))
		}
		if err := server.CheckTables(names); err != nil {
			return err
		}
	}
	log := newLogger(env.Stderr, cfg.LogFormat)
	show := progressPrinter(env.Stdout, log)
	err = server.Backfill(ctx, server.Options{Config: cfg, Logger: log, Progress: show}, names, *restart)
	if err != nil && ctx.Err() != nil {
		fmt.Fprintln(env.Stderr, "pgstripe backfill: interrupted; progress is saved, run the same command to resume")
		return exitCode(130)
	}
	return err
}

// newLogger logs text on a terminal and JSON otherwise (or as asked).
func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressPrinter redraws a table on a terminal; otherwise it logs a line
// every 5 seconds, or prints the table when log is nil.
func progressPrinter(w io.Writer, log *slog.Logger) func(backfill.Progress) {
	if isTerminal(w) {
		lines := 0
		return func(p backfill.Progress) {
			if lines > 0 {
				fmt.Fprintf(w, "\x1b[%dA\x1b[J", lines)
			}
			var b strings.Builder
			renderProgress(&b, p)
			lines = strings.Count(b.String(), "\n")
			io.WriteString(w, b.String())
		}
	}
	var last time.Time
	return func(p backfill.Progress) {
		if !p.Done && time.Since(last) < 5*time.Second {
			return
		}
		last = time.Now()
		if log == nil {
			var b strings.Builder
			renderProgress(&b, p)
			io.WriteString(w, b.String())
			return
		}
		var rows int64
		active := 0
		for _, o := range p.Objects {
			rows += o.Rows
			if o.Phase == "backfilling" {
				active++
			}
		}
		log.Info("backfill progress", "elapsed", p.Elapsed.Round(time.Second).String(), "rows", rows,
			"requests", p.Requests, "requests_per_sec", fmt.Sprintf("%.1f", p.RequestsPerSec),
			"rate_limit", fmt.Sprintf("%.1f", p.Rate), "objects_in_progress", active, "done", p.Done)
	}
}

func renderProgress(b *strings.Builder, p backfill.Progress) {
	fmt.Fprintf(b, "backfill %s  %d requests  %.1f req/s (limit %.1f/s)  %d in flight\n",
		p.Elapsed.Round(time.Second), p.Requests, p.RequestsPerSec, p.Rate, p.Workers)
	for _, o := range p.Objects {
		eta := ""
		if o.ETA > 0 {
			eta = "ETA " + o.ETA.Round(time.Second).String()
		}
		status := o.Phase
		if o.Phase == "live" {
			status = "done"
		}
		if o.Error != "" {
			status = "error: " + truncate(o.Error, 60)
		}
		fmt.Fprintf(b, "  %-24s %9d rows %8.1f rows/s  %-12s %s\n", o.Object, o.Rows, o.RowsPerSec, eta, status)
	}
}

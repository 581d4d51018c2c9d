package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgstripe/pgstripe/config"
	"github.com/pgstripe/pgstripe/server"
	"github.com/pgstripe/pgstripe/sync/backfill"
)

func runServe(ctx context.Context, env *Env, args []string) error {
	fs := flagSet(env, "serve")
	loader := config.Flags(fs, config.NeedDatabase|config.NeedStripe|config.NeedServe)
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
			if n = strings.TrimSpace(n); n != "" { // "customers," is customers
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return fmt.Errorf("--objects %q names no table (leave it out to backfill all)", *objects)
		}
		if err := server.CheckTables(names); err != nil {
			return err
		}
	}
	tty, logw := ttyProgress(env.Stdout, env.Stderr)
	log := newLogger(logw, cfg.LogFormat)
	show := progressPrinter(env.Stdout, tty, log)
	var skipped []string
	var started atomic.Bool
	progress := func(p backfill.Progress) {
		started.Store(true)
		show(p)
		if p.Done {
			skipped = skippedObjects(p)
		}
	}
	err = server.Backfill(ctx, server.Options{Config: cfg, Logger: log, Progress: progress}, names, *restart)
	if err != nil && ctx.Err() != nil {
		if !started.Load() {
			// Still waiting for a serve that leads sync (or connecting):
			// "progress is saved" would promise what isn't there.
			fmt.Fprintln(env.Stderr, "pgstripe backfill: interrupted before it fetched anything; run the same command again to backfill")
			return exitCode(130)
		}
		fmt.Fprintln(env.Stderr, "pgstripe backfill: interrupted; progress is saved, run the same command to resume")
		return exitCode(130)
	}
	if err == nil && len(skipped) > 0 {
		// Otherwise a table named in --objects ends "done" with 0 rows,
		// which reads as an empty Stripe account, not as work done before.
		log.Info("backfill: skipped tables whose backfill completed in an earlier run; add --restart to backfill them again", "objects", skipped)
	}
	return err
}

// skippedObjects names the objects a finished run did not fetch because an
// earlier run completed them.
func skippedObjects(p backfill.Progress) []string {
	var names []string
	for _, o := range p.Objects {
		if o.Skipped {
			names = append(names, o.Object)
		}
	}
	return names
}

// newLogger logs text on a terminal and JSON otherwise (or as asked).
func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "" {
		format = "json"
		if t, ok := w.(logsAboveTable); ok {
			w = t.w
		}
		if isTerminal(w) {
			format = "text"
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: durationText}))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// durationText writes durations as the text handler does ("1s", "250ms"):
// slog's JSON handler would give bare nanoseconds ("retry_in":1000000000),
// which a reader of the log has to decode.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressPrinter redraws the table tty when there is one (a terminal);
// otherwise it logs a line every 5 seconds, or prints the table when log
// is nil.
func progressPrinter(w io.Writer, tty *ttyTable, log *slog.Logger) func(backfill.Progress) {
	if tty != nil {
		return tty.draw
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
			"rate_limit", fmt.Sprintf("%.1f", p.Rate), "objects_in_progress", active, "done", p.Done && !p.Stopped, "stopped", p.Stopped)
	}
}

// ttyTable is the progress table drawn in place on a terminal: each drawing
// moves the cursor up over the previous one and erases it. A log line
// printed to the same terminal in between would be erased instead and
// leave a stale part of the table behind, so log lines go through above,
// which erases the table first and prints the line where it was; the next
// drawing comes below it.
type ttyTable struct {
	mu    sync.Mutex
	w     io.Writer
	lines int
}

func (t *ttyTable) draw(p backfill.Progress) {
	var b strings.Builder
	renderProgress(&b, p)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.erase()
	io.WriteString(t.w, b.String())
	if !p.Done {
		t.lines = strings.Count(b.String(), "\n")
	}
	// A finished table stays: what is printed after it (the demo's help)
	// must not be erased by the next log line.
}

func (t *ttyTable) erase() {
	if t.lines > 0 {
		fmt.Fprintf(t.w, "\x1b[%dA\x1b[J", t.lines)
		t.lines = 0
	}
}

// above writes log output through to w (the same terminal) after erasing
// the table.
func (t *ttyTable) above(w io.Writer) io.Writer { return logsAboveTable{t, w} }

type logsAboveTable struct {
	t *ttyTable
	w io.Writer
}

func (l logsAboveTable) Write(b []byte) (int, error) {
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	l.t.erase()
	return l.w.Write(b)
}

// ttyProgress gives the table for progress on out when out is a terminal
// (else nil), and the writer for log lines meant for errw: through the
// table when errw is a terminal too.
func ttyProgress(out, errw io.Writer) (*ttyTable, io.Writer) {
	if !isTerminal(out) {
		return nil, errw
	}
	t := &ttyTable{w: out}
	if isTerminal(errw) {
		return t, t.above(errw)
	}
	return t, errw
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
		switch {
		case o.Skipped:
			status = "done earlier (--restart to redo)"
		case o.Phase == "live":
			status = "done"
		}
		if o.Error != "" {
			status = "error: " + truncate(o.Error, 60)
		}
		fmt.Fprintf(b, "  %-24s %9d rows %8.1f rows/s  %-12s %s\n", o.Object, o.Rows, o.RowsPerSec, eta, status)
	}
}

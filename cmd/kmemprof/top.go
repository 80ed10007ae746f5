package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/kmemprof/kmemprof/bpf"
)

const topUsage = `Usage: kmemprof top [options]

A live, poolmon-style view of the kernel's slab caches: one row per cache
with the allocations and the frees since top started, their difference (how
many objects the cache gained, negative when it shrank), the bytes that
difference holds, and how fast it grows. A cache whose DIFF keeps rising
while ALLOCS and FREES churn is the place to point
'kmemprof record --cache NAME --interval 5s' at.

On a terminal the view refreshes in place; keys:
  d  sort by diff (default)    b  by in-use bytes    a  by allocs
  f  by frees                  g  by growth          q  quit (also Ctrl-C)
Without a terminal (a pipe, a log file) it prints a plain table every
interval instead, until --duration ends or it is interrupted.

Options:
      --interval D   refresh every D (default 1s)
      --sort KEY     diff, bytes, allocs, frees or growth (default diff)
  -n N               rows shown (default 20)
  -d, --duration D   stop after D (default: run until q or Ctrl-C)
      --attach MODE  auto (default), raw_tp, tp_btf, tracepoint, fentry or kprobe
  -h, --help         show this help

Every free counts, whenever its object was allocated: top keeps no record of
each object, only counts per cache, and walks no stacks, so it is cheap to
leave running. The header says how many events it saw and how many it could
not count (a free whose cache was not found). Needs root.
`

type topOptions struct {
	interval time.Duration
	sortKey  string
	rows     int
	duration time.Duration
	mode     bpf.Mode
}

var topSortKeys = map[string]bool{"diff": true, "bytes": true, "allocs": true, "frees": true, "growth": true}

func parseTop(args []string, stdout io.Writer) (*topOptions, error) {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var interval, duration, sortKey, attach string
	var rows int
	var help bool
	fs.StringVar(&interval, "interval", "1s", "")
	fs.StringVar(&sortKey, "sort", "diff", "")
	fs.IntVar(&rows, "n", 20, "")
	fs.StringVar(&duration, "duration", "0", "")
	fs.StringVar(&duration, "d", "0", "")
	fs.StringVar(&attach, "attach", "auto", "")
	fs.BoolVar(&help, "help", false, "")
	fs.BoolVar(&help, "h", false, "")
	if err := fs.Parse(args); err != nil {
		return nil, flagError(err)
	}
	if help {
		fmt.Fprint(stdout, topUsage)
		return nil, flag.ErrHelp
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	o := &topOptions{sortKey: sortKey, rows: rows}
	var err error
	if o.interval, err = parseDuration(interval); err != nil || o.interval < 100*time.Millisecond {
		return nil, usagef("bad --interval %q: want at least 100ms", interval)
	}
	if o.duration, err = parseDuration(duration); err != nil || o.duration < 0 {
		return nil, usagef("bad --duration %q", duration)
	}
	if !topSortKeys[sortKey] {
		return nil, usagef("bad --sort %q: want diff, bytes, allocs, frees or growth", sortKey)
	}
	if rows < 1 {
		return nil, usagef("bad -n %d: want 1 or more rows", rows)
	}
	if o.mode, err = bpf.ParseMode(attach); err != nil {
		return nil, usagef("bad --attach: %v", err)
	}
	return o, nil
}

func runTop(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseTop(args, stdout)
	if err != nil {
		return report(stderr, "top", err)
	}
	if err := top(o, stdin, stdout, stderr); err != nil {
		return report(stderr, "top", err)
	}
	return exitOK
}

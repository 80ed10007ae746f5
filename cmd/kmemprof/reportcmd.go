package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/google/pprof/profile"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/etw"
	"github.com/kmemprof/kmemprof/tracer"
)

const reportUsage = `Usage: kmemprof report [--top N] [--sample-index T] [--diff BASE] FILE

Prints the summary of a saved profile (kmemprof record, convert or agent):
the capture's facts, the call sites holding the most in-use bytes with their
cache, kind and REQ%, the totals, every counter with the losses explained,
and the self-check, as record printed them when the capture ended. No root,
no Go toolchain.

Options:
      --top N        rows to show (default 10)
      --sample-index T  rank the rows by inuse_space (the default, or the
                     growth with record --interval), inuse_objects,
                     alloc_space, alloc_objects (what the capture allocated,
                     freed or not: --mode full or sample), growth_space or
                     growth_objects
      --diff BASE    instead, the call sites that hold more in-use bytes in
                     FILE than in BASE (another capture), with both figures.
                     A capture holds only what its own window allocated and
                     left outstanding: the diff compares what two windows
                     left behind (before and after a fix, two machines), not
                     what the kernel gained between them
  -h, --help         this help

Examples:
  kmemprof report kmem.pb.gz
  kmemprof report --top 30 kmem.pb.gz
  kmemprof report --diff before.pb.gz after.pb.gz
  kmemprof serve kmem.pb.gz      # the same profile in the pprof web UI

A profile keeps each sample's stack (the allocator's own frames as the
allocator label), values and labels, and the capture's counters, self-check
and facts as comments: the rows are the ones the capture printed.
`

type reportOptions struct {
	path string
	top  int
	diff string // BASE of --diff
	// index ranks the summary's rows (tracer.SummaryIndexes; "": default)
	index string
}

func parseReport(args []string, stdout io.Writer) (*reportOptions, error) {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		o    reportOptions
		help bool
	)
	fs.IntVar(&o.top, "top", tracer.DefaultSummaryRows, "")
	fs.StringVar(&o.diff, "diff", "", "")
	fs.StringVar(&o.index, "sample-index", "", "")
	fs.BoolVar(&help, "help", false, "")
	fs.BoolVar(&help, "h", false, "")
	files, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	if help {
		fmt.Fprint(stdout, reportUsage)
		return nil, flag.ErrHelp
	}
	if o.top <= 0 {
		return nil, usagef("bad --top %d: want 1 or more rows", o.top)
	}
	if o.index != "" && !slices.Contains(tracer.SummaryIndexes, o.index) {
		return nil, usagef("bad --sample-index %q: want one of %s", o.index, strings.Join(tracer.SummaryIndexes, ", "))
	}
	if o.index != "" && o.diff != "" {
		return nil, usagef("--diff compares in-use bytes: it takes no --sample-index")
	}
	if o.path, err = oneProfile(files, "kmemprof report [--top N] FILE", "; --diff BASE FILE compares two"); err != nil {
		return nil, err
	}
	return &o, nil
}

func runReport(args []string, stdout, stderr io.Writer) int {
	o, err := parseReport(args, stdout)
	if err != nil {
		return report(stderr, "report", err)
	}
	if err := writeReport(o, stdout); err != nil {
		return report(stderr, "report", err)
	}
	return exitOK
}

// readAggregation reads a kmemprof profile back into its aggregation and
// the capture facts of its comments.
func readAggregation(path string) (*tracer.Aggregation, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s is not a pprof profile: %w", path, err)
	}
	platform := bpf.Platform
	if len(p.Comments) > 0 && strings.HasPrefix(p.Comments[0], "kmemprof windows") {
		platform = etw.Platform
	}
	agg, facts, err := tracer.FromProfile(p, platform)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(facts) == 0 {
		return nil, nil, errors.New(path + ": not a kmemprof profile (no kmemprof comments)")
	}
	return agg, facts, nil
}

// writeReport reads the profile and prints its summary, or its diff.
func writeReport(o *reportOptions, w io.Writer) error {
	agg, facts, err := readAggregation(o.path)
	if err != nil {
		return err
	}
	if o.diff != "" {
		base, baseFacts, err := readAggregation(o.diff)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\n  %s\nminus the base %s\n  %s\n\n", o.path, strings.Join(facts[:min(3, len(facts))], "\n  "),
			o.diff, strings.Join(baseFacts[:min(3, len(baseFacts))], "\n  "))
		return agg.WriteDiff(w, base, o.top)
	}
	// The capture's facts above the table; the rest (the system view:
	// meminfo, slab caches that grew) below it, where record prints it.
	var head, tail []string
	for i, c := range facts {
		switch {
		case strings.HasPrefix(c, "sampled:"): // the summary says it
		case i == 0 || strings.HasPrefix(c, "hooks:") || strings.HasPrefix(c, "start "):
			head = append(head, c)
		default:
			tail = append(tail, c)
		}
	}
	for _, c := range head {
		fmt.Fprintln(w, c)
	}
	fmt.Fprintln(w)
	if err := agg.WriteSummaryBy(w, o.top, o.index); err != nil {
		return err
	}
	if len(tail) > 0 {
		fmt.Fprintln(w)
	}
	for _, c := range tail {
		if _, err := fmt.Fprintln(w, c); err != nil {
			return err
		}
	}
	return nil
}

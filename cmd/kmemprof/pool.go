package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kmemprof/kmemprof/etw"
	"github.com/kmemprof/kmemprof/symbolize"
	"github.com/kmemprof/kmemprof/tracer"
)

// Pool profiles, live (Windows) or from .etl files (any OS).

// capturePool runs the capture of src (a live session, or a trace fed in
// full: done closed) and writes its profile: the same steps as the Linux
// capture, with pool tags and drivers for names.
func capturePool(ctx context.Context, o *recordOptions, src *etw.Source, done <-chan struct{}, drivers *symbolize.DriverMap, tags *symbolize.PoolTags, stdout, stderr io.Writer) error {
	if len(o.tags) > 0 {
		src.Meta.Filters = append(src.Meta.Filters, "tag="+strings.Join(o.tags, ","))
	}
	if o.bpf.PID != 0 {
		src.Meta.Filters = append(src.Meta.Filters, fmt.Sprintf("pid=%d", o.bpf.PID))
	}
	src.Meta.MinAge = o.minAge
	res, err := tracer.Capture(ctx, src, tracer.CaptureConfig{Duration: o.duration, Done: done, Progress: progressLine(stderr, o.duration)})
	clearProgress(stderr)
	if err != nil {
		return err
	}
	if res.Interrupted {
		fmt.Fprintln(stderr, "interrupted: writing what was captured")
	}
	snap := res.Snapshot
	if o.bpf.PID != 0 {
		keepPID(snap, o.bpf.PID)
	}
	agg, err := tracer.Aggregate(snap, etw.DriverSymbolizer(drivers), tracer.Options{MinAge: o.minAge})
	if err != nil {
		return err
	}
	if tags != nil {
		for _, e := range tagDrivers(tags, agg) {
			fmt.Fprintln(stderr, e)
		}
	}
	return writeOutputs(o, agg, stdout, stderr, nil)
}

// tagDrivers lists, for the tags in the profile, what pooltag.txt says of them.
func tagDrivers(tags *symbolize.PoolTags, agg *tracer.Aggregation) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range agg.Samples {
		if s.Cache == "" || seen[s.Cache] {
			continue
		}
		seen[s.Cache] = true
		if es := tags.Lookup(s.Cache); len(es) > 0 {
			out = append(out, fmt.Sprintf("tag %-4s: %s - %s", s.Cache, es[0].Binary, es[0].Description))
		}
	}
	return out
}

// keepPID leaves in the snapshot only the allocations made by process pid
// (pool events carry no in-kernel process filter).
func keepPID(snap *tracer.Snapshot, pid uint32) {
	recs := snap.Records[:0]
	for _, r := range snap.Records {
		if r.PID == pid {
			recs = append(recs, r)
		}
	}
	snap.Records = recs
	tots := snap.Totals[:0]
	for _, t := range snap.Totals {
		if t.PID == pid {
			tots = append(tots, t)
		}
	}
	snap.Totals = tots
}

// loadPoolTags reads --pooltag FILE, or returns nil when path is "".
func loadPoolTags(path string) (*symbolize.PoolTags, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading --pooltag: %w", err)
	}
	defer f.Close()
	tags, err := symbolize.ParsePoolTags(f)
	if err != nil {
		return nil, fmt.Errorf("reading --pooltag %s: %w", path, err)
	}
	return tags, nil
}

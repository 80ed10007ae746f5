package main

import (
	"fmt"
	"os"

	"github.com/kmemprof/kmemprof/symbolize"
	"github.com/kmemprof/kmemprof/tracer"
)

// Pool profiles, live (Windows) or from .etl files (any OS).

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

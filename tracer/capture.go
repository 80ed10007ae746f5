package tracer

import (
	"context"
	"time"
)

// Source is a capture backend: the Linux BPF tracer, a live ETW session, a
// recorded trace. Capture drives it; the backend knows its platform, the
// loop does not.
type Source interface {
	// Stats returns figures for the progress line while the capture runs.
	Stats() (Stats, error)
	// Stop ends tracing (detaches the programs, stops the session), so that
	// the next Snapshot is the capture's final view. Calling it again does
	// nothing.
	Stop() error
	// Snapshot returns what is outstanding, with the capture's counters
	// and meta.
	Snapshot() (*Snapshot, error)
}

// UsageSource is a Source that can sum outstanding allocations by stack
// while the capture runs: what growth series are made of.
type UsageSource interface {
	Source
	Usage() (map[StackID]Usage, error)
}

// Stats are a running capture's figures.
type Stats struct {
	Events      uint64 // events seen by every hook
	Outstanding uint64 // allocations tracked now
	Losses      uint64 // sum of the loss counters
	// Live says Outstanding and Losses are kept up to date while the
	// capture runs; a backend that knows them only at the end leaves them 0.
	Live bool
}

// CaptureConfig says how long a capture runs and what it reports.
type CaptureConfig struct {
	// Duration ends the capture after this long; 0: only ctx or Done end it.
	Duration time.Duration
	// Done ends the capture when closed (the traced command exited, the
	// recorded trace was read). nil: never.
	Done <-chan struct{}
	// Interval, when positive, measures the outstanding allocations by
	// stack this often (the Source must be a UsageSource): the growth
	// series of CaptureResult.
	Interval time.Duration
	// Progress, when set, is called every second with the elapsed time,
	// the Source's stats and its events per second.
	Progress func(elapsed time.Duration, st Stats, eventsPerSecond float64)
	// BeforeStop, when set, is called once the capture ends, after the
	// last growth measurement and before the source is stopped: the
	// source still traces, so that what it holds can be compared with the
	// kernel's own counts at that instant (RunSelfCheck). An error it
	// returns becomes a note of the result; the capture goes on.
	BeforeStop func() error
}

// CaptureResult is what a capture saw.
type CaptureResult struct {
	Snapshot *Snapshot
	// Series holds the growth measurements (nil without Interval), the
	// last taken as the capture ended.
	Series *Series
	// Interrupted says ctx ended the capture (a signal): what was seen is
	// still there.
	Interrupted bool
	// Notes are what went wrong without stopping the capture.
	Notes []string
}

// Capture runs one capture: it waits for the duration, Done or ctx, with
// progress and growth measurements on the way, then calls BeforeStop,
// stops the source and takes its final snapshot. An interrupted capture returns its snapshot
// like any other: nothing seen is lost to a Ctrl-C.
func Capture(ctx context.Context, src Source, cfg CaptureConfig) (*CaptureResult, error) {
	now := time.Now
	res := &CaptureResult{}
	usage, _ := src.(UsageSource)
	if cfg.Interval > 0 && usage != nil {
		res.Series = &Series{Start: now()}
	}
	start := now()
	var timeUp <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		timeUp = t.C
	}
	var measure <-chan time.Time
	if res.Series != nil {
		t := time.NewTicker(cfg.Interval)
		defer t.Stop()
		measure = t.C
	}
	var tick <-chan time.Time
	if cfg.Progress != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	var lastEvents uint64
	lastAt := start
loop:
	for {
		select {
		case <-ctx.Done():
			res.Interrupted = true
			break loop
		case <-timeUp:
			break loop
		case <-cfg.Done:
			break loop
		case <-measure:
			if u, err := usage.Usage(); err == nil {
				res.Series.Add(now(), u)
			}
		case <-tick:
			st, err := src.Stats()
			if err != nil {
				continue
			}
			at := now()
			rate := 0.0
			if d := at.Sub(lastAt).Seconds(); d > 0 {
				rate = float64(st.Events-lastEvents) / d
			}
			lastEvents, lastAt = st.Events, at
			cfg.Progress(at.Sub(start), st, rate)
		}
	}
	if res.Series != nil {
		// The last point is the end of the capture.
		if u, err := usage.Usage(); err == nil {
			res.Series.Add(now(), u)
		} else {
			res.Notes = append(res.Notes, "measuring growth at the end: "+err.Error())
		}
	}
	if cfg.BeforeStop != nil {
		if err := cfg.BeforeStop(); err != nil {
			res.Notes = append(res.Notes, err.Error())
		}
	}
	if err := src.Stop(); err != nil {
		return nil, err
	}
	snap, err := src.Snapshot()
	if err != nil {
		return nil, err
	}
	res.Snapshot = snap
	return res, nil
}

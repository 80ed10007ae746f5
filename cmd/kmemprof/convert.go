package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/kmemprof/kmemprof/etw"
	"github.com/kmemprof/kmemprof/etw/etl"
	"github.com/kmemprof/kmemprof/symbolize"
)

const convertUsage = `Usage: kmemprof convert [options] TRACE.etl
       kmemprof convert --info [--json] TRACE.etl

Turn a Windows trace (.etl) recorded with pool events into a pool profile,
on any operating system: the pool allocations still outstanding at the end
of the trace, by kernel stack, tag, pool type and driver, as 'kmemprof
record' makes them live on Windows. The trace is read without the Windows
API: buffers (compressed or not), every event header kind, PoolTrace,
StackWalk, Image and Process events.

Record the trace on the Windows machine with the tools Windows ships, from
an elevated prompt (on x64, for whole kernel stacks, once: 'wpr
-disablepagingexecutive on' and reboot):
  wpr -start pool.wprp -filemode        (pool.wprp: etw/pool.wprp in
  ...reproduce the leak...               kmemprof's sources and releases)
  wpr -stop pool.etl
or
  xperf -on PROC_THREAD+LOADER+POOL -stackwalk PoolAlloc+PoolAllocSession -f pool.etl
  ...reproduce the leak...
  xperf -stop
Copy pool.etl anywhere and convert it there.

Options:
  -o, --output FILE   profile to write (default pool.pb.gz; 0600, atomically);
                      - for stdout
      --info          say what the trace holds instead: Windows build, pointer
                      size, time span, buffers, records by header kind and
                      kernel event, stacks (full, keyed, joined), pool events,
                      losses; writes no profile
      --json          with --info: one JSON object
      --tag TAGS      only these pool tags, comma-separated (e.g. Leak,Ntfx)
  -p, --pid PID       only allocations made by this process
      --min-age D     keep only allocations at least D old at the end of the
                      trace (e.g. 2s)
      --pooltag FILE  pooltag.txt, to print the owner of each tag
      --top N         rows in the terminal summary (default 10; 0 for none)
  -h, --help          show this help

A trace without pool events is refused with the commands that record them,
and no profile is written. Conversion merges the processors' buffers in time
order, holding the trace's events in memory (about the trace's size,
decompressed); on a terminal it shows its progress through long traces.
`

type convertOptions struct {
	rec     recordOptions
	path    string
	info    bool
	json    bool
	pooltag string
}

func parseConvert(args []string, stdout io.Writer) (*convertOptions, error) {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := &convertOptions{}
	var output, tags, pid, minAge string
	var help bool
	fs.StringVar(&output, "output", "pool.pb.gz", "")
	fs.StringVar(&output, "o", "pool.pb.gz", "")
	fs.BoolVar(&o.info, "info", false, "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.StringVar(&tags, "tag", "", "")
	fs.StringVar(&pid, "pid", "", "")
	fs.StringVar(&pid, "p", "", "")
	fs.StringVar(&minAge, "min-age", "0s", "")
	fs.StringVar(&o.pooltag, "pooltag", "", "")
	fs.IntVar(&o.rec.top, "top", 10, "")
	fs.BoolVar(&help, "help", false, "")
	fs.BoolVar(&help, "h", false, "")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	if help {
		fmt.Fprint(stdout, convertUsage)
		return nil, flag.ErrHelp
	}
	if len(pos) != 1 {
		return nil, usagef("want one trace file, got %d arguments", len(pos))
	}
	o.path = pos[0]
	if o.json && !o.info {
		return nil, usagef("--json goes with --info")
	}
	o.rec.output = output
	if tags != "" {
		for _, t := range strings.Split(tags, ",") {
			if t = strings.TrimSpace(t); t != "" {
				o.rec.tags = append(o.rec.tags, t)
			}
		}
		if err := etw.CheckTags(o.rec.tags); err != nil {
			return nil, usagef("--tag: %v", err)
		}
	}
	if pid != "" {
		p, err := strconv.ParseUint(pid, 10, 32)
		if err != nil || p == 0 {
			return nil, usagef("bad --pid %q: want a process id", pid)
		}
		o.rec.bpf.PID = uint32(p)
	}
	d, err := parseDuration(minAge)
	if err != nil || d < 0 {
		return nil, usagef("bad --min-age %q: want a duration such as 2s or 2", minAge)
	}
	o.rec.minAge = d
	if o.rec.top < 0 {
		return nil, usagef("bad --top %d", o.rec.top)
	}
	return o, nil
}

func runConvert(args []string, stdout, stderr io.Writer) int {
	o, err := parseConvert(args, stdout)
	if err != nil {
		return report(stderr, "convert", err)
	}
	if err := convert(o, stdout, stderr); err != nil {
		return report(stderr, "convert", err)
	}
	return exitOK
}

// noPoolHelp says how to record pool events.
const noPoolHelp = `it holds no pool events (PoolTrace PoolAlloc/PoolFree): record them on the Windows machine, elevated, with
  wpr -start pool.wprp -filemode   (etw/pool.wprp in kmemprof's sources)   then   wpr -stop pool.etl
or
  xperf -on PROC_THREAD+LOADER+POOL -stackwalk PoolAlloc+PoolAllocSession -f pool.etl   then   xperf -stop
('kmemprof convert --info' says what the trace holds)`

func convert(o *convertOptions, stdout, stderr io.Writer) error {
	// What can fail without reading the trace fails before it is read,
	// which may take minutes.
	var tags *symbolize.PoolTags
	if !o.info {
		if err := checkOutput(o.rec.output, stdout); err != nil {
			return err
		}
		var err error
		if tags, err = loadPoolTags(o.pooltag); err != nil {
			return err
		}
	}
	fh, err := os.Open(o.path)
	if err != nil {
		return err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return err
	}
	f, err := etl.Open(fh, st.Size())
	if err != nil {
		return fmt.Errorf("%s: %w", o.path, err)
	}
	if ef, ok := stderr.(*os.File); ok && term.IsTerminal(int(ef.Fd())) && len(f.Buffers) > 1000 {
		// Long traces: say how far reading is.
		f.Progress = func(done, total int) {
			if done%200 == 0 || done == total-1 {
				fmt.Fprintf(stderr, "\rreading %s: buffer %d of %d ", o.path, done+1, total)
			}
			if done == total-1 {
				fmt.Fprintln(stderr)
			}
		}
	}
	if o.info {
		in, err := f.Info()
		if err != nil {
			return fmt.Errorf("%s: %w", o.path, err)
		}
		in.File = o.path
		if o.json {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(in)
		}
		return writeInfo(stdout, in)
	}

	// The trace is read and decompressed once, then gone through twice.
	sorted := f.Sort()
	scan, err := etw.ScanETL(f, sorted)
	if err != nil {
		return fmt.Errorf("%s: %w", o.path, err)
	}
	if scan.PoolEvents == 0 {
		if f.Truncated || buffersShort(f) {
			// Not a recording without pool events: a recording cut short.
			return fmt.Errorf("%s: the file is cut short (%s), and the part that is there holds no pool events: "+
				"copy the whole trace, after the recording has stopped (wpr -stop / xperf -stop), and convert that", o.path, truncation(f))
		}
		return fmt.Errorf("%s: %s", o.path, noPoolHelp)
	}
	drivers := symbolize.NewDriverMap()
	end := scan.End
	// Raw time stamps tick at the trace's PerfFreq (QPC or CPU cycles), or
	// at 10 MHz for system time (ClockType 2).
	tps := int64(f.Header.PerfFreq)
	if f.Header.ClockType == 2 || tps <= 0 {
		tps = 10_000_000
	}
	m := etw.NewMatcher(etw.MatcherConfig{
		TicksPerSecond: tps,
		PtrSize:        int(f.Header.PointerSize),
		Tags:           o.rec.tags,
		RawTimestamps:  true,
		Images:         drivers,
		Time:           scan.Time,
		Clock:          func() time.Time { return end },
	})
	stats, err := etw.FeedETL(f, sorted, m, scan.StackKeys)
	if err != nil {
		return fmt.Errorf("%s: %w", o.path, err)
	}
	meta := etw.ETLMeta(f, o.path)
	if stats.BuffersBad > 0 {
		fmt.Fprintf(stderr, "note: %d buffers of the trace could not be read whole (first: %v); their events are missing\n", stats.BuffersBad, stats.FirstError)
		meta.Comments = append(meta.Comments, fmt.Sprintf("%d buffers not read whole: %v", stats.BuffersBad, stats.FirstError))
	}
	if f.Truncated {
		fmt.Fprintln(stderr, "note: the trace ends inside a buffer (copied while being written?): that buffer is missing")
		meta.Comments = append(meta.Comments, "trace truncated: its last buffer is missing")
	}
	// The trace was read whole: the capture is over before it starts.
	done := make(chan struct{})
	close(done)
	src := &etw.Source{Matcher: m, Meta: meta, Events: scan.PoolEvents}
	o.rec.duration = 0
	return capturePool(context.Background(), &o.rec, src, done, drivers, tags, stdout, stderr)
}

// writeInfo prints what a trace holds.
func writeInfo(w io.Writer, in *etl.Info) error {
	fmt.Fprintf(w, "%s: Windows build %d, %d-bit pointers, %d CPUs, logger %q\n", in.File, in.OSBuild, 8*in.PointerSize, in.CPUs, in.LoggerName)
	fmt.Fprintf(w, "time: %s to %s (%.1f s), %s clock at %d Hz\n", in.Start.Format(time.RFC3339), in.End.Format(time.RFC3339), in.SpanSeconds, in.ClockType, in.PerfFreq)
	fmt.Fprintf(w, "buffers: %d (%d compressed, %d not read whole)", in.Buffers, in.Compressed, in.BuffersBad)
	if in.Truncated {
		fmt.Fprint(w, "; the file ends inside a buffer")
	}
	fmt.Fprintln(w)
	if in.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", in.FirstError)
	}
	fmt.Fprintf(w, "records: %d;", in.Records)
	for _, k := range []string{"SystemHeader", "CompactHeader", "PerfinfoTraceHeader", "EventHeader", "EventTraceHeader", "EventInstanceHeader", "MessageHeader", "TimedHeader", "ErrorHeader", "WnodeHeader"} {
		if n := in.ByHeader[k]; n > 0 {
			fmt.Fprintf(w, " %s %d", k, n)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "stacks: %d full, %d keyed (cached stacks); %d joined to their event, %d not\n", in.Stacks.Full, in.Stacks.Keyed, in.Stacks.Joined, in.Stacks.Unjoined)
	fmt.Fprintf(w, "pool: %d allocations, %d frees, %d other PoolTrace events\n", in.Pool.Allocs, in.Pool.Frees, in.Pool.Other)
	fmt.Fprintf(w, "lost: %d events, %d buffers (logfile header); %d buffers flagged after lost events, %d after lost buffers\n",
		in.Lost.Events, in.Lost.Buffers, in.Lost.BuffersEventsLost, in.Lost.BuffersAfterLosses)
	if in.Pool.Allocs == 0 {
		fmt.Fprintln(w, "no pool allocations: this trace cannot make a pool profile (see 'kmemprof convert --help' for how to record one)")
	}
	fmt.Fprintln(w, "\nkernel events:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, k := range in.Kernel {
		fmt.Fprintf(tw, "%d\t  %s\t%d/%d\t  %s\t\n", k.Count, k.Header, k.Group, k.Opcode, k.Name)
	}
	return tw.Flush()
}

// buffersShort reports whether the file holds fewer buffers than its
// logfile header says the logger wrote (a trace cut at a buffer boundary).
// A circular log (EVENT_TRACE_FILE_MODE_CIRCULAR) keeps only its last
// buffers, so it says nothing there.
func buffersShort(f *etl.File) bool {
	const circular = 0x2
	return f.Header.LogFileMode&circular == 0 && f.Header.BuffersWritten > 0 &&
		uint64(len(f.Buffers)) < uint64(f.Header.BuffersWritten)
}

// truncation says how much of a cut-short trace is there.
func truncation(f *etl.File) string {
	s := fmt.Sprintf("%d whole buffers", len(f.Buffers))
	if f.Header.BuffersWritten > 0 {
		s += fmt.Sprintf(" of the %d the logger wrote", f.Header.BuffersWritten)
	}
	if f.Truncated {
		s += ", then part of one"
	}
	return s
}

package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// topRow is one cache in the view.
type topRow struct {
	bpf.CacheStat
	growth float64 // outstanding objects per second over the last interval
}

func top(o *topOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := checkPrivileges(); err != nil {
		return err
	}
	// Count mode: slab objects are counted per cache, never recorded, and
	// no stack is walked.
	tr, err := bpf.Open(bpf.Config{Mode: o.mode, Tracking: bpf.TrackCount})
	if err != nil {
		return err
	}
	defer tr.Close()
	// What the kernel could not offer (a cache that cannot be read from an
	// object leaves kfree's frees uncounted, say): before the view takes the
	// terminal.
	for _, n := range tr.Notes() {
		fmt.Fprintln(stderr, "note:", n)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}

	// Interactive when both ends are a terminal: keys on stdin, the view
	// redrawn in place on stdout.
	inF, inOK := stdin.(*os.File)
	outF, outOK := stdout.(*os.File)
	interactive := inOK && outOK && term.IsTerminal(int(inF.Fd())) && term.IsTerminal(int(outF.Fd()))
	keys := make(chan byte, 16)
	nl := "\n"
	if interactive {
		old, err := term.MakeRaw(int(inF.Fd()))
		if err != nil {
			return fmt.Errorf("setting the terminal to raw mode: %w", err)
		}
		defer term.Restore(int(inF.Fd()), old)
		nl = "\r\n"                     // raw mode: no newline translation
		fmt.Fprint(stdout, "\033[?25l") // hide the cursor
		defer fmt.Fprint(stdout, "\033[?25h")
		go func() {
			b := make([]byte, 1)
			for {
				if n, err := inF.Read(b); err != nil || n == 0 {
					return
				}
				keys <- b[0]
			}
		}()
	} else {
		fmt.Fprintf(stderr, "tracing %s via %s; a table every %s (not a terminal: no keys)\n",
			strings.Join(tr.Hooks(), ","), tr.Mode(), o.interval)
	}

	start := time.Now()
	prev := map[string]int64{}
	var stats bpf.Stats
	var statsErr error
	// Caches the allocator merged: a row shows the names users look for.
	merged, _ := host.SlabAliases(os.DirFS("/sys/kernel/slab"))
	last := start
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	var rows []topRow
	var drawn time.Time
	draw := func() {
		sortTop(rows, o.sortKey)
		var b strings.Builder
		if interactive {
			b.WriteString("\033[H\033[2J")
		}
		stamp := ""
		if !interactive {
			// A log of tables: each says when it was taken.
			stamp = time.Now().Format("2006-01-02 15:04:05") + "  "
		}
		fmt.Fprintf(&b, "kmemprof top  %s%s since start  via %s  sort: %s  events %d", stamp, time.Since(start).Round(time.Second), tr.Mode(), o.sortKey, stats.Events)
		if stats.Losses > 0 {
			// Frees whose cache was not found, and the like: kmemprof record's summary names them.
			fmt.Fprintf(&b, "  lost %d", stats.Losses)
		}
		if statsErr != nil {
			fmt.Fprintf(&b, "  error: %v", statsErr)
		}
		if interactive {
			b.WriteString("   keys: d diff  b bytes  a allocs  f frees  g growth  q quit")
		}
		b.WriteString(nl)
		shown := rows[:min(o.rows, len(rows))]
		// The cache column is as wide as the names; what SLUB merged into a
		// cache, which can be long, ends the row.
		w := len("CACHE")
		for _, r := range shown {
			w = max(w, len(r.Name))
		}
		fmt.Fprintf(&b, "%-*s %10s %10s %10s %11s %10s%s", w, "CACHE", "ALLOCS", "FREES", "DIFF", "IN-USE", "GROWTH/s", nl)
		for _, r := range shown {
			note := ""
			if m := merged[r.Name]; len(m) > 0 {
				note = "  " + tracer.MergedNote(m)
			}
			fmt.Fprintf(&b, "%-*s %10d %10d %+10d %11s %+10.0f%s%s", w, r.Name, r.Allocs, r.Frees, r.Diff(), tracer.SignedBytes(r.InUse()), r.growth, note, nl)
		}
		if len(rows) == 0 {
			b.WriteString("(no slab allocations yet)" + nl)
		}
		if !interactive {
			b.WriteString(nl)
		}
		fmt.Fprint(stdout, b.String())
		drawn = time.Now()
	}
	refresh := func(now time.Time) {
		cs, err := tr.CacheStats()
		if err == nil {
			stats, err = tr.Stats()
		}
		statsErr = err
		if err != nil {
			return
		}
		dt := now.Sub(last).Seconds()
		rows = rows[:0]
		for _, s := range cs {
			g := 0.0
			if dt > 0 {
				g = (float64(s.Diff()) - float64(prev[s.Name])) / dt
			}
			prev[s.Name] = s.Diff()
			rows = append(rows, topRow{CacheStat: s, growth: g})
		}
		last = now
	}
	if interactive {
		draw()
	}
	for {
		select {
		case <-ctx.Done():
			if !interactive && time.Since(drawn) > o.interval/2 {
				refresh(time.Now())
				draw()
			}
			return nil
		case now := <-tick.C:
			refresh(now)
			draw()
		case k := <-keys:
			switch k {
			case 'q', 'Q', 3: // 3: Ctrl-C in raw mode
				return nil
			case 'd':
				o.sortKey = "diff"
			case 'b':
				o.sortKey = "bytes"
			case 'a':
				o.sortKey = "allocs"
			case 'f':
				o.sortKey = "frees"
			case 'g':
				o.sortKey = "growth"
			default:
				continue
			}
			draw()
		}
	}
}

// sortTop orders the rows by key, descending, then by name.
func sortTop(rows []topRow, key string) {
	value := func(r topRow) float64 {
		switch key {
		case "bytes":
			return float64(r.InUse())
		case "allocs":
			return float64(r.Allocs)
		case "frees":
			return float64(r.Frees)
		case "growth":
			return r.growth
		}
		return float64(r.Diff())
	}
	slices.SortStableFunc(rows, func(x, y topRow) int {
		return cmp.Or(cmp.Compare(value(y), value(x)), cmp.Compare(x.Name, y.Name))
	})
}

package tracer

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// DefaultSummaryRows is the number of rows WriteSummary prints when asked for
// zero or fewer.
const DefaultSummaryRows = 10

// summaryFrames is how many frames past the allocator the "where" column
// shows: enough to tell call sites apart, short enough for one line.
const summaryFrames = 3

// summaryRow is the summary's unit: samples that differ only in who
// allocated (comm, pid, cgroup) look the same in the table, so they are
// merged into one row.
type summaryRow struct {
	kind    Kind
	stack   StackID
	cache   string
	pool    string
	frames  []Frame
	objects uint64
	space   uint64
	req     uint64 // bytes requested by the callers of the in-use allocations
	// allocated during the capture, freed or not
	allocObjects, allocSpace uint64
	// growth (when the aggregation has it)
	growthObjects, growthSpace uint64
	steadiness                 float64
	reclaimable                bool
	owner                      string // ReclaimableOwner: the row's objects are freed with that cache's
	untraced                   bool
	merged                     []string // slab caches merged into this one
}

type rowKey struct {
	kind  Kind
	stack string // the stack as the profile shows it (stackKey)
	cache string
	pool  string
}

// stackKey tells stacks apart as the profile does: by the frames past the
// allocator's (which the profile leaves out) and the allocator called, so
// that the summary's rows are those `kmemprof report` and pprof find in
// the profile.
func (p *Platform) stackKey(s *AggSample) string {
	if s.Stack < 0 {
		return "lost " + strconv.Itoa(int(s.Stack))
	}
	n := p.allocatorRun(s)
	var b strings.Builder
	if n > 0 {
		b.WriteString(frameName(s.Frames[n-1]))
	}
	for _, f := range s.Frames[n:] {
		b.WriteByte(' ')
		b.WriteString(strconv.FormatUint(f.Addr, 16))
		if f.Addr == 0 {
			b.WriteString(f.Function)
		}
	}
	return b.String()
}

// WriteSummary writes a human-readable report to w: the n call sites
// (DefaultSummaryRows when n <= 0) holding the most in-use bytes, each with the
// first frames past the allocator and the share of its bytes the callers
// requested (REQ%), then the totals, then every counter, with
// non-zero losses marked "!" and explained. The frames the snapshot's
// Platform.AllocatorFrame names are skipped. With growth (Options.Growth)
// the rows are ranked by it, rows the kernel reclaims (AggSample.Reclaimed:
// marked "(reclaimable)" or "(freed with CACHE)") after the others, with
// their growth shown all the same. It returns the first write error.
func (a *Aggregation) WriteSummary(w io.Writer, n int) error {
	return a.WriteSummaryBy(w, n, "")
}

// SummaryIndexes are the sample types a summary can be ranked by
// (WriteSummaryBy); growth ones only with growth.
var SummaryIndexes = []string{"inuse_space", "inuse_objects", "alloc_space", "alloc_objects", "growth_space", "growth_objects"}

// WriteSummaryBy is WriteSummary with the rows ranked by the sample type
// index (SummaryIndexes; "" ranks as WriteSummary does: growth first when
// there is growth, else in-use bytes). Ranked by alloc_*, the first two
// columns are what was allocated during the capture, and rows with nothing
// in use left are shown too.
func (a *Aggregation) WriteSummaryBy(w io.Writer, n int, index string) error {
	if n <= 0 {
		n = DefaultSummaryRows
	}
	switch index {
	case "", "inuse_space", "inuse_objects", "alloc_space", "alloc_objects":
	case "growth_space", "growth_objects":
		if !a.HasGrowth {
			return fmt.Errorf("no growth in this profile to rank by %s: record it with --interval", index)
		}
	default:
		return fmt.Errorf("cannot rank by %q: want one of %s", index, strings.Join(SummaryIndexes, ", "))
	}
	alloc := strings.HasPrefix(index, "alloc_")
	skipFrame := a.Platform.isAllocator

	rowIndex := make(map[rowKey]int)
	var rows []summaryRow
	for i := range a.Samples {
		s := &a.Samples[i]
		if s.InuseObjects == 0 && s.InuseSpace == 0 && (!alloc || s.AllocObjects == 0) {
			continue
		}
		k := rowKey{s.Kind, a.Platform.stackKey(s), s.Cache, s.Pool}
		ri, ok := rowIndex[k]
		if !ok {
			ri = len(rows)
			rowIndex[k] = ri
			rows = append(rows, summaryRow{kind: s.Kind, stack: s.Stack, cache: s.Cache, pool: s.Pool, frames: s.Frames})
		}
		rows[ri].objects += s.InuseObjects
		rows[ri].space += s.InuseSpace
		rows[ri].allocObjects += s.AllocObjects
		rows[ri].allocSpace += s.AllocSpace
		rows[ri].req += s.ReqSpace
		rows[ri].growthObjects += s.GrowthObjects
		rows[ri].growthSpace += s.GrowthSpace
		rows[ri].steadiness = s.Steadiness
		rows[ri].reclaimable = s.Reclaimable
		rows[ri].owner = s.ReclaimableOwner
		rows[ri].untraced = s.FreesUntraced
		if s.Kind == KindSlab {
			rows[ri].merged = a.MergedCaches[s.Cache]
		}
	}
	slices.SortStableFunc(rows, func(x, y summaryRow) int {
		return cmp.Or(cmp.Compare(y.space, x.space), cmp.Compare(y.objects, x.objects))
	})
	switch {
	case index == "inuse_objects":
		slices.SortStableFunc(rows, func(x, y summaryRow) int { return cmp.Compare(y.objects, x.objects) })
	case index == "alloc_space":
		slices.SortStableFunc(rows, func(x, y summaryRow) int {
			return cmp.Or(cmp.Compare(y.allocSpace, x.allocSpace), cmp.Compare(y.allocObjects, x.allocObjects))
		})
	case index == "alloc_objects":
		slices.SortStableFunc(rows, func(x, y summaryRow) int { return cmp.Compare(y.allocObjects, x.allocObjects) })
	case index == "growth_objects":
		sortByGrowth(rows, func(r summaryRow) bool { return r.reclaimable || r.owner != "" },
			func(r summaryRow) uint64 { return r.growthObjects }, func(r summaryRow) uint64 { return r.growthSpace })
	case a.HasGrowth && (index == "" || index == "growth_space"):
		// What still grows, and cannot be reclaimed, first; objects freed
		// with reclaimable ones are reclaimed with them.
		sortByGrowth(rows, func(r summaryRow) bool { return r.reclaimable || r.owner != "" },
			func(r summaryRow) uint64 { return r.growthSpace }, func(r summaryRow) uint64 { return r.growthObjects })
	}

	rows = rows[:min(n, len(rows))]
	more := len(rowIndex) - len(rows)
	// Cache and kind are text, so they are padded to the widest shown value
	// here; the numbers are right-aligned cells of the tabwriter.
	// Windows pool samples carry a pool tag where Linux ones carry a cache.
	cacheHead := a.Platform.cacheHeader()
	cw, kw := len(cacheHead), len("KIND")
	for i := range rows {
		name := rows[i].cacheLabel()
		cw = max(cw, len(name))
		kw = max(kw, len(rows[i].kindName()))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(rows) == 0 {
		fmt.Fprintln(tw, "no outstanding allocations")
	} else {
		growthHead := ""
		if a.HasGrowth {
			growthHead = "GROWTH\tSTEADY\t"
		}
		spaceHead, objectsHead, total := "IN-USE", "OBJECTS", a.InuseSpace
		if alloc {
			spaceHead, objectsHead, total = "ALLOCATED", "ALLOCS", a.AllocSpace
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%%\tREQ%%\t  %-*s  %-*s  %s\n", growthHead, spaceHead, objectsHead, cw, cacheHead, kw, "KIND", "WHERE")
		for i := range rows {
			r := &rows[i]
			space, objects := r.space, r.objects
			if alloc {
				space, objects = r.allocSpace, r.allocObjects
			}
			pct := "-"
			if total > 0 {
				pct = strconv.FormatFloat(100*float64(space)/float64(total), 'f', 1, 64) + "%"
			}
			growth := ""
			if a.HasGrowth {
				growth = HumanBytes(r.growthSpace) + "\t" + strconv.FormatFloat(100*r.steadiness, 'f', 0, 64) + "%\t"
			}
			cache := r.cacheLabel()
			fmt.Fprintf(tw, "%s%s\t%d\t%s\t%s\t  %-*s  %-*s  %s\n", growth, HumanBytes(space), objects, pct, r.reqPercent(),
				cw, cache, kw, r.kindName(), where(r.frames, skipFrame))
		}
		if more > 0 {
			pad := ""
			if a.HasGrowth {
				pad = "\t\t"
			}
			fmt.Fprintf(tw, "%s\t\t\t\t  ... and %d more call sites\n", pad, more)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	_, err := fmt.Fprintf(w, "\noutstanding: %d objects, %s in %d samples; allocated during the capture: %d objects, %s\n",
		a.InuseObjects, HumanBytes(a.InuseSpace), len(a.Samples), a.AllocObjects, HumanBytes(a.AllocSpace))
	if err != nil {
		return err
	}
	if a.SampleEvery > 1 {
		fmt.Fprintf(w, "sampled: 1 allocation in %d recorded; the numbers above are scaled by %d (estimates)\n", a.SampleEvery, a.SampleEvery)
	}
	if line := untracedLine(a.UntracedFrees); line != "" {
		fmt.Fprintln(w, line)
	}
	if err := a.writeRemovedMemcgs(w, skipFrame); err != nil {
		return err
	}
	return a.writeCounters(w)
}

// removedMemcgRows is how many removed memory cgroups the summary lists.
const removedMemcgRows = 5

// writeRemovedMemcgs lists the memory cgroups that were removed while
// objects charged to them live on (a container gone, its kernel memory
// not): how many, their objects and bytes, and the largest with the stack
// holding most of their bytes. It writes nothing when there are none.
func (a *Aggregation) writeRemovedMemcgs(w io.Writer, skipFrame func(Frame) bool) error {
	type site struct {
		cache  string
		frames []Frame
		space  uint64
	}
	type memcgRow struct {
		path           string
		objects, space uint64
		sites          map[rowKey]*site
	}
	byPath := map[string]*memcgRow{}
	var objects, space uint64
	for i := range a.Samples {
		s := &a.Samples[i]
		if !s.MemcgRemoved || s.InuseObjects == 0 {
			continue
		}
		r := byPath[s.MemcgPath]
		if r == nil {
			r = &memcgRow{path: s.MemcgPath, sites: map[rowKey]*site{}}
			byPath[s.MemcgPath] = r
		}
		r.objects += s.InuseObjects
		r.space += s.InuseSpace
		objects += s.InuseObjects
		space += s.InuseSpace
		k := rowKey{s.Kind, a.Platform.stackKey(s), s.Cache, s.Pool}
		st := r.sites[k]
		if st == nil {
			st = &site{cache: s.Cache, frames: s.Frames}
			r.sites[k] = st
		}
		st.space += s.InuseSpace
	}
	if len(byPath) == 0 {
		return nil
	}
	rows := make([]*memcgRow, 0, len(byPath))
	for _, r := range byPath {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(x, y *memcgRow) int {
		return cmp.Or(cmp.Compare(y.space, x.space), cmp.Compare(y.objects, x.objects), cmp.Compare(x.path, y.path))
	})
	fmt.Fprintf(w, "memory cgroups removed, objects charged to them still live: %d memcgs, %d objects, %s (profile label memcg_removed=true)\n",
		len(rows), objects, HumanBytes(space))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "IN-USE\tOBJECTS\t  %s\n", "MEMCG (then the call site holding most of its bytes)")
	for _, r := range rows[:min(len(rows), removedMemcgRows)] {
		var top *site
		for _, st := range r.sites {
			if top == nil || st.space > top.space || (st.space == top.space && st.cache < top.cache) {
				top = st
			}
		}
		cache := top.cache
		if cache == "" {
			cache = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t  %s\n", HumanBytes(r.space), r.objects, r.path)
		fmt.Fprintf(tw, "\t\t    %s %s  %s\n", HumanBytes(top.space), cache, where(top.frames, skipFrame))
	}
	if len(rows) > removedMemcgRows {
		fmt.Fprintf(tw, "\t\t  ... and %d more removed memcgs\n", len(rows)-removedMemcgRows)
	}
	return tw.Flush()
}

// writeCounters prints the counters compactly: events per hook, the other
// statistics and every loss counter on one line each, then one line per
// non-zero loss, marked "!" and explained, then the self-check's lines
// (SelfCheck.Lines), when one was made.
func (a *Aggregation) writeCounters(w io.Writer) error {
	g := groupCounters(a.Counters)
	events, stats, losses, lost := g.events, g.stats, g.losses, g.lost
	if len(events) > 0 {
		fmt.Fprintf(w, "events: %s\n", strings.Join(events, " "))
	}
	if len(stats) > 0 {
		fmt.Fprintf(w, "counters: %s\n", strings.Join(stats, " "))
	}
	if len(losses) > 0 {
		verdict := "none lost"
		if len(lost) > 0 {
			verdict = "SOME DATA LOST OR SUSPECT"
		}
		fmt.Fprintf(w, "losses (%s): %s\n", verdict, strings.Join(losses, " "))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range lost {
		fmt.Fprintf(tw, "! %s\t%d\t%s\n", c.Name, c.Value, c.Help)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if a.SelfCheck != nil {
		for _, l := range a.SelfCheck.Lines() {
			if _, err := fmt.Fprintln(w, l); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteLosses writes only what says data was lost or is suspect: the
// non-zero loss counters, explained, and the self-check's contradictions;
// nothing when there are none. For a summary of no rows (record --top 0),
// which must still not lose the news that the profile is incomplete.
func (a *Aggregation) WriteLosses(w io.Writer) error {
	g := groupCounters(a.Counters)
	var b strings.Builder
	if len(g.lost) > 0 {
		fmt.Fprintf(&b, "losses (SOME DATA LOST OR SUSPECT): %s\n", strings.Join(g.losses, " "))
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, c := range g.lost {
			fmt.Fprintf(tw, "! %s\t%d\t%s\n", c.Name, c.Value, c.Help)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if a.SelfCheck != nil {
		for _, l := range a.SelfCheck.Lines() {
			if strings.HasPrefix(strings.TrimSpace(l), "!") {
				b.WriteString(l + "\n")
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cacheLabel is the CACHE cell: the name, and what qualifies it.
func (r *summaryRow) cacheLabel() string {
	name := r.cacheName()
	if r.reclaimable {
		name += " (reclaimable)"
	}
	if r.owner != "" {
		name += " (freed with " + r.owner + ")"
	}
	if r.untraced {
		name += " (frees untraced)"
	}
	if len(r.merged) > 0 {
		name += " " + MergedNote(r.merged)
	}
	return name
}

// MergedNote says which slab caches share a cache's objects, at most three
// by name: "(merged: damon_region, ...)".
func MergedNote(names []string) string {
	const show = 3
	if len(names) <= show {
		return "(merged: " + strings.Join(names, ", ") + ")"
	}
	return fmt.Sprintf("(merged: %s +%d)", strings.Join(names[:show], ", "), len(names)-show)
}

func (r *summaryRow) cacheName() string {
	if r.cache == "" {
		return "-"
	}
	return r.cache
}

// reqPercent is the REQ% cell: the bytes the callers asked for as a share
// of the bytes the allocator handed out, which shows internal fragmentation
// (a 33-byte request served from kmalloc-64 is 51.6%); "-" when the
// requested size is unknown.
func (r *summaryRow) reqPercent() string {
	if r.req == 0 || r.space == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(r.req)/float64(r.space), 'f', 1, 64) + "%"
}

func (r *summaryRow) kindName() string {
	if r.pool != "" {
		return r.kind.String() + "/" + r.pool
	}
	return r.kind.String()
}

// where names the first frames past the allocator, callee first: "a < b < c"
// reads "a, called by b, called by c".
func where(fs []Frame, skipFrame func(Frame) bool) string {
	i := 0
	for i < len(fs) && skipFrame(fs[i]) {
		i++
	}
	if i == len(fs) {
		// Nothing but allocator frames: show them rather than nothing.
		i = 0
	}
	fs = fs[i:min(len(fs), i+summaryFrames)]
	names := make([]string, len(fs))
	for j, f := range fs {
		names[j] = frameName(f)
	}
	return strings.Join(names, " < ")
}

// HumanBytes formats n with binary units and one decimal, e.g. "512 B",
// "2.4 MiB".
func HumanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v >= unit-0.05 && exp < 5 {
		// Would print as "1024.0 KiB".
		v /= unit
		exp++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + string("KMGTPE"[exp]) + "iB"
}

// SignedBytes is HumanBytes of a change: "+1.5 MiB", "-12 B", "0 B".
func SignedBytes(d int64) string {
	switch {
	case d > 0:
		return "+" + HumanBytes(uint64(d))
	case d < 0:
		return "-" + HumanBytes(uint64(-(d+1))+1)
	}
	return "0 B"
}

// WriteDiff writes the n call sites whose in-use bytes grew most from base
// to a (both rebuilt from profiles, or aggregated), keyed as the summary's
// rows, with their figures in each and a line that says what such a diff
// means: each capture holds only what its own window allocated and left
// outstanding.
func (a *Aggregation) WriteDiff(w io.Writer, base *Aggregation, n int) error {
	if n <= 0 {
		n = DefaultSummaryRows
	}
	type side struct{ objects, space uint64 }
	type diffRow struct {
		key       rowKey
		frames    []Frame
		now, then side
	}
	index := map[rowKey]int{}
	var rows []diffRow
	add := func(agg *Aggregation, now bool) {
		for i := range agg.Samples {
			s := &agg.Samples[i]
			k := rowKey{s.Kind, agg.Platform.stackKey(s), s.Cache, s.Pool}
			ri, ok := index[k]
			if !ok {
				ri = len(rows)
				index[k] = ri
				rows = append(rows, diffRow{key: k, frames: s.Frames})
			}
			sd := &rows[ri].then
			if now {
				sd = &rows[ri].now
			}
			sd.objects += s.InuseObjects
			sd.space += s.InuseSpace
		}
	}
	add(base, false)
	add(a, true)
	delta := func(r diffRow) int64 { return int64(r.now.space) - int64(r.then.space) }
	slices.SortStableFunc(rows, func(x, y diffRow) int {
		return cmp.Or(cmp.Compare(delta(y), delta(x)), cmp.Compare(y.now.objects, x.now.objects))
	})
	var grew, shrank int
	for _, r := range rows {
		switch d := delta(r); {
		case d > 0:
			grew++
		case d < 0:
			shrank++
		}
	}
	shown := rows[:min(n, grew)]
	skip := a.Platform.isAllocator
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(shown) == 0 {
		fmt.Fprintln(tw, "no call site holds more in-use bytes than in the base")
	} else {
		cacheName := func(r diffRow) string {
			if r.key.cache == "" {
				return "-"
			}
			return r.key.cache
		}
		kindName := func(r diffRow) string {
			if r.key.pool != "" {
				return r.key.kind.String() + "/" + r.key.pool
			}
			return r.key.kind.String()
		}
		head := a.Platform.cacheHeader()
		cw, kw := len(head), len("KIND")
		for _, r := range shown {
			cw, kw = max(cw, len(cacheName(r))), max(kw, len(kindName(r)))
		}
		fmt.Fprintf(tw, "DELTA\tOBJECTS\tIN-USE\tBASE\t  %-*s  %-*s  %s\n", cw, head, kw, "KIND", "WHERE")
		for _, r := range shown {
			fmt.Fprintf(tw, "%s\t%+d\t%s\t%s\t  %-*s  %-*s  %s\n", SignedBytes(delta(r)), int64(r.now.objects)-int64(r.then.objects),
				HumanBytes(r.now.space), HumanBytes(r.then.space), cw, cacheName(r), kw, kindName(r), where(r.frames, skip))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nin-use: %s in this capture, %s in the base (%s); %d call sites hold more, %d less\n"+
		"A capture holds only what was allocated during its own window and still outstanding at its end: a call site "+
		"that holds more here left more behind in this window than in the base's (before and after a change, on two "+
		"machines), which is not what the kernel gained between the two captures. Growth within one capture is record --interval's.\n",
		HumanBytes(a.InuseSpace), HumanBytes(base.InuseSpace), SignedBytes(int64(a.InuseSpace)-int64(base.InuseSpace)), grew, shrank)
	return err
}

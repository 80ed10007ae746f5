package host

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// This file holds the portable parsers of the /proc files that give the
// system's own view of kernel memory (/proc/meminfo, /proc/slabinfo) and of a
// process's cgroups (/proc/PID/cgroup). kmemprof shows that view beside what
// it traced so that a user can tell a growing cache, which the kernel gives
// back under memory pressure, from a leak. The readers are in
// procfs_linux.go and cgroup_linux.go.

// DefaultPageSize is the page size SlabCache.TotalBytes assumes when it is
// given 0.
const DefaultPageSize = 4096

// SlabTopCaches is how many slab caches FormatSystemView and
// SystemViewComments show: those that grew most during the capture.
const SlabTopCaches = 10

// Meminfo holds the kernel-memory lines of /proc/meminfo, in bytes. A field
// whose line the kernel does not print (an older kernel, another
// configuration) is 0.
type Meminfo struct {
	MemTotal uint64
	// MemFree is memory no one uses; MemTotal - MemFree bounds what the
	// kernel can have allocated (the self-check's page comparison).
	MemFree      uint64
	MemAvailable uint64
	// Slab is all slab memory, SReclaimable + SUnreclaim.
	Slab uint64
	// SReclaimable is slab memory the kernel frees under memory pressure:
	// dentries, inodes and the other caches made with SLAB_RECLAIM_ACCOUNT.
	// Its growth is seldom a leak.
	SReclaimable uint64
	// SUnreclaim is the rest of the slab memory, where slab leaks show.
	SUnreclaim   uint64
	KReclaimable uint64 // SReclaimable and other reclaimable kernel memory
	Percpu       uint64
	VmallocUsed  uint64
	PageTables   uint64
	KernelStack  uint64
}

// meminfoFields maps the /proc/meminfo keys ParseMeminfo keeps to their
// fields in m.
func meminfoFields(m *Meminfo) map[string]*uint64 {
	return map[string]*uint64{
		"MemTotal":     &m.MemTotal,
		"MemFree":      &m.MemFree,
		"MemAvailable": &m.MemAvailable,
		"Slab":         &m.Slab,
		"SReclaimable": &m.SReclaimable,
		"SUnreclaim":   &m.SUnreclaim,
		"KReclaimable": &m.KReclaimable,
		"Percpu":       &m.Percpu,
		"VmallocUsed":  &m.VmallocUsed,
		"PageTables":   &m.PageTables,
		"KernelStack":  &m.KernelStack,
	}
}

// meminfoRequired are the lines every kernel since 2.6.19 prints.
var meminfoRequired = [...]string{"Slab", "SReclaimable", "SUnreclaim"}

// ParseMeminfo parses /proc/meminfo ("Slab:  550696 kB" lines) and returns
// the kernel-memory fields in bytes; lines it does not keep are skipped. It
// returns an error when a kept line is malformed, when the Slab,
// SReclaimable or SUnreclaim line is missing, or when r fails.
func ParseMeminfo(r io.Reader) (Meminfo, error) {
	var m Meminfo
	fields := meminfoFields(&m)
	seen := make(map[string]bool, len(fields))
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		dst := fields[key]
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 {
			return Meminfo{}, fmt.Errorf("parsing meminfo line %d: %q is not \"%s: <number> kB\"", n, sc.Text(), key)
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return Meminfo{}, fmt.Errorf("parsing meminfo line %d (%s): %w", n, key, err)
		}
		if len(f) == 2 {
			if f[1] != "kB" {
				return Meminfo{}, fmt.Errorf("parsing meminfo line %d (%s): unknown unit %q", n, key, f[1])
			}
			if v > math.MaxUint64/1024 {
				return Meminfo{}, fmt.Errorf("parsing meminfo line %d (%s): %d kB overflows", n, key, v)
			}
			v *= 1024
		}
		*dst = v
		seen[key] = true
	}
	if err := sc.Err(); err != nil {
		return Meminfo{}, fmt.Errorf("reading meminfo: %w", err)
	}
	for _, k := range meminfoRequired {
		if !seen[k] {
			return Meminfo{}, fmt.Errorf("parsing meminfo: no %s line", k)
		}
	}
	return m, nil
}

// SlabCache is one line of /proc/slabinfo: a slab cache and its usage.
//
// With SLUB (every kernel since 6.8) ActiveObjs counts as free only the
// objects on the per-node partial slabs; objects free in per-CPU slabs count
// as active, so the fragmentation is a lower bound. ActiveSlabs equals
// NumSlabs. Caches merged by SLUB appear once, under the name of the first.
type SlabCache struct {
	Name         string
	ActiveObjs   uint64 // objects in use
	NumObjs      uint64 // objects the cache's slabs hold, in use or free
	ObjSize      uint64 // bytes per object, with the allocator's metadata
	ObjPerSlab   uint64
	PagesPerSlab uint64
	ActiveSlabs  uint64
	NumSlabs     uint64
}

// ActiveBytes returns the bytes of the objects in use: ActiveObjs * ObjSize.
func (c SlabCache) ActiveBytes() uint64 { return c.ActiveObjs * c.ObjSize }

// TotalBytes returns the memory the cache's slabs take: NumSlabs *
// PagesPerSlab pages of pageSize bytes (DefaultPageSize when pageSize is 0).
func (c SlabCache) TotalBytes(pageSize uint64) uint64 {
	if pageSize == 0 {
		pageSize = DefaultPageSize
	}
	return c.NumSlabs * c.PagesPerSlab * pageSize
}

// Fragmentation returns the share of the cache's objects that are free,
// 1 - ActiveObjs/NumObjs, or 0 for an empty cache.
func (c SlabCache) Fragmentation() float64 {
	if c.NumObjs == 0 || c.ActiveObjs >= c.NumObjs {
		return 0
	}
	return 1 - float64(c.ActiveObjs)/float64(c.NumObjs)
}

// slabinfoVersion is the /proc/slabinfo format ParseSlabinfo reads, the only
// one since Linux 2.6.10.
const slabinfoVersion = "2.1"

// ParseSlabinfo parses /proc/slabinfo version 2.1 and returns its caches in
// file order:
//
//	slabinfo - version: 2.1
//	# name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables ... : slabdata <active_slabs> <num_slabs> <sharedavail>
//	dentry 385434 385434 192 21 1 : tunables 0 0 0 : slabdata 18354 18354 0
//
// The "(statistics)" variant of SLAB kernels, which adds columns at the end,
// is read too. It returns an error when the version line is missing or names
// another version, when a cache line is malformed, or when r fails.
func ParseSlabinfo(r io.Reader) ([]SlabCache, error) {
	sc := bufio.NewScanner(r)
	n := 0
	versioned := false
	var caches []SlabCache
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if !versioned {
			v, ok := strings.CutPrefix(line, "slabinfo - version:")
			if !ok {
				return nil, fmt.Errorf("parsing slabinfo: first line %q is not \"slabinfo - version: %s\"", line, slabinfoVersion)
			}
			if f := strings.Fields(v); len(f) == 0 || f[0] != slabinfoVersion {
				return nil, fmt.Errorf("parsing slabinfo: version %q is not supported (kmemprof reads version %s)", strings.TrimSpace(v), slabinfoVersion)
			}
			versioned = true
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		c, err := parseSlabinfoLine(line)
		if err != nil {
			return nil, fmt.Errorf("parsing slabinfo line %d: %w", n, err)
		}
		caches = append(caches, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading slabinfo: %w", err)
	}
	if !versioned {
		return nil, errors.New("parsing slabinfo: empty input, no version line")
	}
	return caches, nil
}

func parseSlabinfoLine(line string) (SlabCache, error) {
	f := strings.Fields(line)
	sd := slices.Index(f, "slabdata")
	if len(f) < 6 || sd < 6 || sd+2 >= len(f) {
		return SlabCache{}, fmt.Errorf("%q is not \"<name> <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables ... : slabdata <active_slabs> <num_slabs> ...\"", line)
	}
	c := SlabCache{Name: f[0]}
	for i, dst := range []*uint64{&c.ActiveObjs, &c.NumObjs, &c.ObjSize, &c.ObjPerSlab, &c.PagesPerSlab, &c.ActiveSlabs, &c.NumSlabs} {
		s := f[1+i]
		if i >= 5 {
			s = f[sd+i-4]
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return SlabCache{}, fmt.Errorf("cache %s: %w", c.Name, err)
		}
		*dst = v
	}
	return c, nil
}

// ParseProcCgroup parses /proc/PID/cgroup, whose lines are
// "hierarchy-ID:controller-list:path", and returns the cgroup path of every
// controller: "memory" -> "/user.slice", "name=systemd" -> "/user.slice/...".
// A list of several controllers ("4:cpu,cpuacct:/") gives each the path. The
// cgroup v2 (unified) hierarchy, "0::/path", is under the key "" (CgroupV2);
// on a hybrid system both kinds appear. A v2 path of a removed cgroup keeps
// the kernel's " (deleted)" suffix. It returns an error when a line is
// malformed or r fails.
func ParseProcCgroup(r io.Reader) (map[string]string, error) {
	paths := make(map[string]string)
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		// The path may itself hold colons: split on the first two only.
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[0] == "" || !strings.HasPrefix(f[2], "/") {
			return nil, fmt.Errorf("parsing cgroup line %d: %q is not \"hierarchy-ID:controller-list:path\"", n, line)
		}
		if _, err := strconv.ParseUint(f[0], 10, 32); err != nil {
			return nil, fmt.Errorf("parsing cgroup line %d: hierarchy id: %w", n, err)
		}
		if f[0] == "0" && f[1] == "" {
			paths[CgroupV2] = f[2]
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c != "" {
				paths[c] = f[2]
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading cgroup file: %w", err)
	}
	return paths, nil
}

// CgroupV2 is the key of the cgroup v2 (unified) hierarchy in the maps of
// ParseProcCgroup and CgroupPathsOfPID.
const CgroupV2 = ""

// SystemView is the kernel's own account of its memory at one moment, read
// at the start and the end of a capture to be shown beside what kmemprof
// traced.
type SystemView struct {
	Taken time.Time
	Meminfo
	// Caches is /proc/slabinfo in file order; nil when it could not be read.
	Caches []SlabCache
	// PageSize is the size of a page in bytes (0: DefaultPageSize).
	PageSize uint64
	// Memcg counts the memory cgroups, dying ones apart (Source "": unknown).
	Memcg MemcgCount
}

// readSystemView reads meminfo and slabinfo from procfs, the /proc
// directory. When slabinfo cannot be read it still returns the meminfo part,
// with the error.
func readSystemView(procfs fs.FS, now time.Time, pageSize uint64) (SystemView, error) {
	v := SystemView{Taken: now, PageSize: pageSize}
	m, err := readProcFile(procfs, "meminfo", ParseMeminfo)
	if err != nil {
		return SystemView{}, err
	}
	v.Meminfo = m
	caches, err := readProcFile(procfs, "slabinfo", ParseSlabinfo)
	if err != nil {
		return v, err
	}
	v.Caches = caches
	return v, nil
}

// readProcFile opens name in procfs and parses it, naming the fix in the
// error when the file is missing or unreadable.
func readProcFile[T any](procfs fs.FS, name string, parse func(io.Reader) (T, error)) (T, error) {
	var zero T
	f, err := procfs.Open(name)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrPermission):
			err = fmt.Errorf("%w (run kmemprof as root)", err)
		case errors.Is(err, fs.ErrNotExist) && name == "slabinfo":
			err = fmt.Errorf("%w (the kernel was built without CONFIG_SLUB_DEBUG)", err)
		}
		return zero, fmt.Errorf("reading /proc/%s: %w", name, err)
	}
	defer f.Close()
	v, err := parse(f)
	if err != nil {
		return zero, fmt.Errorf("reading /proc/%s: %w", name, err)
	}
	return v, nil
}

// cacheGrowth is a slab cache at the end of a capture and how much its
// active bytes grew since the start.
type cacheGrowth struct {
	SlabCache
	growth int64
}

// topGrowth returns up to SlabTopCaches caches of end whose active bytes
// grew since start, most growth first (ties by name). A cache missing from
// start grew from nothing.
func topGrowth(start, end SystemView) []cacheGrowth {
	before := make(map[string]uint64, len(start.Caches))
	for _, c := range start.Caches {
		before[c.Name] += c.ActiveBytes()
	}
	var gs []cacheGrowth
	for _, c := range end.Caches {
		if d := delta(before[c.Name], c.ActiveBytes()); d > 0 {
			gs = append(gs, cacheGrowth{c, d})
		}
	}
	slices.SortFunc(gs, func(x, y cacheGrowth) int {
		return cmp.Or(cmp.Compare(y.growth, x.growth), cmp.Compare(x.Name, y.Name))
	})
	return gs[:min(len(gs), SlabTopCaches)]
}

// delta returns to - from as a signed number, saturating.
func delta(from, to uint64) int64 {
	if to >= from {
		return int64(min(to-from, math.MaxInt64))
	}
	return -int64(min(from-to, math.MaxInt64))
}

func percent(f float64) string {
	return strconv.FormatFloat(100*f, 'f', 1, 64) + "%"
}

// meminfoRow is one /proc/meminfo line of the system view.
type meminfoRow struct {
	name       string
	start, end uint64
	always     bool // shown even when 0 at both ends
}

func meminfoRows(start, end SystemView) []meminfoRow {
	return []meminfoRow{
		{"Slab", start.Slab, end.Slab, true},
		{"SReclaimable", start.SReclaimable, end.SReclaimable, true},
		{"SUnreclaim", start.SUnreclaim, end.SUnreclaim, true},
		{"Percpu", start.Percpu, end.Percpu, false},
		{"VmallocUsed", start.VmallocUsed, end.VmallocUsed, false},
	}
}

// slabHint says where the slab growth between start and end went, or ""
// when the slab did not grow.
func slabHint(start, end SystemView) string {
	rcl, unrcl := delta(start.SReclaimable, end.SReclaimable), delta(start.SUnreclaim, end.SUnreclaim)
	switch {
	case rcl > 0 && rcl >= unrcl:
		return "hint: the slab grew mostly in reclaimable caches (dentries, inodes), which the kernel frees under memory pressure"
	case unrcl > 0:
		return "hint: the slab grew mostly in unreclaimable memory (SUnreclaim), where slab leaks show"
	}
	return ""
}

// SystemViewReport is the kernel's own view of its memory over a capture,
// for the terminal summary (tracer.WriteReport): Slab, SReclaimable and
// SUnreclaim (and Percpu and VmallocUsed when the kernel reports them) at
// start and end with their change, a hint where the slab growth went, then
// the SlabTopCaches caches whose active bytes grew most, each with its
// objects in use and allocated, its fragmentation (share of free objects)
// and, from tracked (cache name -> bytes kmemprof held outstanding when end
// was read, programs attached: the self-check's counts; nil when unknown),
// what kmemprof saw of it. start and end should come from ReadSystemView
// (end: ReadKernelCounts, read just after the tracked figures); a view
// without caches is reported as such.
func SystemViewReport(start, end SystemView, tracked map[string]uint64) tracer.Report {
	var r tracer.Report
	line := func(s string) { r = append(r, tracer.ReportBlock{Line: s}) }
	head := "kernel memory (/proc/meminfo)"
	if !start.Taken.IsZero() && !end.Taken.IsZero() {
		head += " over " + end.Taken.Sub(start.Taken).Round(time.Second).String()
	}
	line(head + ":")
	var rows [][]string
	for _, m := range meminfoRows(start, end) {
		if !m.always && m.start == 0 && m.end == 0 {
			continue
		}
		rows = append(rows, []string{m.name, tracer.HumanBytes(m.start), "->", tracer.HumanBytes(m.end), tracer.SignedBytes(delta(m.start, m.end))})
	}
	if rows != nil {
		r = append(r, tracer.ReportBlock{Table: rows, Left: 1})
	}
	if h := slabHint(start, end); h != "" {
		line("  " + h)
	}

	switch gs := topGrowth(start, end); {
	case len(start.Caches) == 0 || len(end.Caches) == 0:
		line("slab caches: /proc/slabinfo was not read at both ends of the capture")
	case len(gs) == 0:
		line("slab caches (/proc/slabinfo): none grew")
	default:
		line("slab caches that grew most (/proc/slabinfo):")
		rows := [][]string{{"CACHE", "ACTIVE", "GROWTH", "OBJECTS ACTIVE/ALL", "FRAG", "TRACKED"}}
		for _, g := range gs {
			t := "-"
			if v, ok := tracked[g.Name]; ok {
				t = tracer.HumanBytes(v)
			}
			rows = append(rows, []string{
				g.Name,
				tracer.HumanBytes(g.ActiveBytes()),
				tracer.SignedBytes(g.growth),
				strconv.FormatUint(g.ActiveObjs, 10) + "/" + strconv.FormatUint(g.NumObjs, 10),
				percent(g.Fragmentation()),
				t,
			})
		}
		r = append(r, tracer.ReportBlock{Table: rows, Left: 1})
		if tracked != nil {
			line("  TRACKED: bytes kmemprof held outstanding in the cache when ACTIVE was read (programs attached); growth beyond it was not traced")
		}
	}
	if l := memcgLine(start.Memcg, end.Memcg); l != "" {
		line(l)
	}
	return r
}

// memcgLine is the system view's line on memory cgroups, "" when unknown.
func memcgLine(start, end MemcgCount) string {
	if start.Source == "" || end.Source == "" {
		return ""
	}
	line := fmt.Sprintf("memory cgroups (%s): %d -> %d", end.Source, start.Total, end.Total)
	if start.DyingKnown && end.DyingKnown {
		line += fmt.Sprintf(", removed but not freed (dying): %d -> %d", start.Dying, end.Dying)
		if end.Dying > start.Dying {
			line += "\n  hint: removed cgroups are held by kernel objects charged to them (slab, page cache)"
		}
	}
	return line
}

// SystemViewComments returns the system view as profile comments: one line
// for /proc/meminfo (Slab, SReclaimable, SUnreclaim at start and end), then
// one line for each of the SlabTopCaches caches that grew most, or one line
// saying why there are none.
func SystemViewComments(start, end SystemView) []string {
	var mi []string
	for _, r := range meminfoRows(start, end)[:3] {
		mi = append(mi, fmt.Sprintf("%s %s -> %s (%s)", r.name, tracer.HumanBytes(r.start), tracer.HumanBytes(r.end), tracer.SignedBytes(delta(r.start, r.end))))
	}
	line := "meminfo: " + strings.Join(mi, ", ")
	if !start.Taken.IsZero() && !end.Taken.IsZero() {
		line += " over " + end.Taken.Sub(start.Taken).Round(time.Second).String()
	}
	c := []string{line}
	if l := memcgLine(start.Memcg, end.Memcg); l != "" {
		c = append(c, strings.SplitN(l, "\n", 2)[0])
	}
	gs := topGrowth(start, end)
	switch {
	case len(start.Caches) == 0 || len(end.Caches) == 0:
		return append(c, "slabinfo: not read at both ends of the capture")
	case len(gs) == 0:
		return append(c, "slabinfo: no cache grew")
	}
	for _, g := range gs {
		c = append(c, fmt.Sprintf("slabinfo %s: active %s (%s), %d/%d objects active, fragmentation %s",
			g.Name, tracer.HumanBytes(g.ActiveBytes()), tracer.SignedBytes(g.growth), g.ActiveObjs, g.NumObjs, percent(g.Fragmentation())))
	}
	return c
}

// SlabAliases reads which slab caches the allocator merged into one (SLUB,
// sysfs at dir, normally /sys/kernel/slab). There every mergeable cache's
// name is a symlink to the directory of the cache it lives in, so names
// that point to the same directory share one cache: its objects carry the
// name of the first (the one allocations report), and users look for the
// others (damon_region objects show as ftrace_event_field). It returns,
// for each name in a group of two or more, the other names, sorted; an
// empty map where the directory is missing (SLAB, no sysfs).
func SlabAliases(fsys fs.FS) (map[string][]string, error) {
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return map[string][]string{}, nil
		}
		return nil, fmt.Errorf("reading the slab caches in sysfs: %w", err)
	}
	groups := map[string][]string{}
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		target, err := fs.ReadLink(fsys, e.Name())
		if err != nil {
			continue
		}
		groups[target] = append(groups[target], e.Name())
	}
	out := map[string][]string{}
	for _, names := range groups {
		if len(names) < 2 {
			continue
		}
		slices.Sort(names)
		for _, n := range names {
			others := make([]string, 0, len(names)-1)
			for _, o := range names {
				if o != n {
					others = append(others, o)
				}
			}
			out[n] = others
		}
	}
	return out, nil
}

// MemcgCount is how many memory cgroups the kernel holds, and how many of
// them were removed but are not freed yet (dying): a removed container's
// memcg lives on while kernel objects charged to it do (slab, page cache).
type MemcgCount struct {
	// Source says where the counts come from; "" when unknown.
	Source string
	// Total counts memory cgroups, the root and dying ones included.
	Total uint64
	// Dying counts removed memory cgroups not freed yet; DyingKnown is
	// false where the kernel does not tell them apart.
	Dying      uint64
	DyingKnown bool
}

// ParseProcCgroups parses /proc/cgroups: for each controller, its hierarchy
// id (0: cgroup v2) and its number of cgroups.
func ParseProcCgroups(r io.Reader) (map[string][2]uint64, error) {
	out := map[string][2]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("bad /proc/cgroups line %q", line)
		}
		h, err1 := strconv.ParseUint(f[1], 10, 64)
		n, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad /proc/cgroups line %q", line)
		}
		out[f[0]] = [2]uint64{h, n}
	}
	return out, sc.Err()
}

// ParseCgroupStat parses a cgroup v2 cgroup.stat file ("key value" lines).
func ParseCgroupStat(r io.Reader) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad cgroup.stat line %q", sc.Text())
		}
		out[f[0]] = v
	}
	return out, sc.Err()
}

// memcgCount counts memory cgroups. On cgroup v1 (the memory controller has
// a hierarchy of its own), /proc/cgroups counts them dying ones included,
// and the directories of the memory hierarchy (v1, nil if not mounted) are
// the live ones. On cgroup v2, the root's cgroup.stat (v2, nil if not
// mounted) counts live and dying memory controllers (Linux 6.11+), or else
// cgroups of every kind.
func memcgCount(procfs, v1, v2 fs.FS) MemcgCount {
	// From 6.15 /proc/cgroups lists only the controllers bound to v1.
	cg, _ := readProcFile(procfs, "cgroups", ParseProcCgroups)
	if mem, ok := cg["memory"]; ok && mem[0] != 0 {
		c := MemcgCount{Source: "cgroup v1 memory hierarchy, /proc/cgroups", Total: mem[1]}
		if v1 != nil {
			var live uint64
			err := fs.WalkDir(v1, ".", func(_ string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					live++
				}
				return nil
			})
			if err == nil && live > 0 && live <= c.Total {
				c.Dying, c.DyingKnown = c.Total-live, true
			}
		}
		return c
	}
	if v2 == nil {
		return MemcgCount{}
	}
	f, err := v2.Open("cgroup.stat")
	if err != nil {
		return MemcgCount{}
	}
	defer f.Close()
	st, err := ParseCgroupStat(f)
	if err != nil {
		return MemcgCount{}
	}
	if live, ok := st["nr_subsys_memory"]; ok {
		dying := st["nr_dying_subsys_memory"]
		return MemcgCount{Source: "cgroup v2 cgroup.stat", Total: live + dying, Dying: dying, DyingKnown: true}
	}
	// Before 6.11: every cgroup, the root included, memory controller or not.
	return MemcgCount{Source: "cgroup v2 cgroup.stat, cgroups of every controller", Total: st["nr_descendants"] + st["nr_dying_descendants"] + 1,
		Dying: st["nr_dying_descendants"], DyingKnown: true}
}

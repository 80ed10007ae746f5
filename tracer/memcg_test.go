package tracer_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kmemprof/kmemprof/tracer"
)

// TestMemcgLabelsAndSummary: records charged to removed memory cgroups get
// memcg and memcg_removed labels (container from the memcg path when the v2
// cgroup is the root, as on cgroup v1 hosts), live ones only memcg, and the
// summary lists the removed memcgs, largest first, with their top call site.
func TestMemcgLabelsAndSummary(t *testing.T) {
	const (
		idGone  = 101
		idGone2 = 102
		idLive  = 103
		idAnon  = 104 // removed before anyone could name it
	)
	dock := "/docker/3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081"
	snap := &tracer.Snapshot{
		Platform: testPlatform,
		Meta:     tracer.Meta{Platform: "linux"},
		Stacks: map[tracer.StackID][]uint64{
			sKmalloc: {aProg1, aTraceRun2, aTraceKmal, aKmalloc, aAllocFoo, aFooInit, aSyscall},
			sPages:   {aPagesLeaf, aPagesMpol, aFtraceLocs, aFtraceInit, aStartKern},
		},
		Memcgs: map[uint64]tracer.Memcg{
			idGone:  {Path: dock, Removed: true},
			idGone2: {Path: "/small", Removed: true},
			idLive:  {Path: "/live"},
			idAnon:  {Removed: true},
		},
	}
	add := func(memcg uint64, stack tracer.StackID, cache string, n int, size uint64) {
		for range n {
			snap.Records = append(snap.Records, tracer.Record{
				Key:        tracer.Key{Kind: tracer.KindSlab, Stack: stack, Cache: cache, PID: 7, CgroupID: 1, MemcgID: memcg},
				Addr:       uint64(len(snap.Records)+1) << 6,
				BytesAlloc: size,
			})
		}
	}
	add(idGone, sKmalloc, "dentry", 10, 192)
	add(idGone, sPages, "shmem_inode_cache", 3, 768)
	add(idGone2, sKmalloc, "kmalloc-64", 2, 64)
	add(idLive, sKmalloc, "dentry", 5, 192)
	add(idAnon, sKmalloc, "kmalloc-32", 1, 32)
	// The backend's container naming, as the builder applies it: the
	// container of the memcg path where the cgroup (v1 host: "/") has none.
	container := func(path string) (string, string) {
		if id, ok := strings.CutPrefix(path, "/docker/"); ok && len(id) >= 12 {
			return "docker:" + id[:12], ""
		}
		return "", ""
	}
	agg, err := tracer.Aggregate(snap, newFakeSymbolizer(t), tracer.Options{CgroupPath: func(uint64) string { return "/" }, Container: container})
	if err != nil {
		t.Fatal(err)
	}
	p, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range p.Sample {
		m := s.Label[tracer.LabelMemcg]
		if len(m) != 1 {
			t.Fatalf("sample without one memcg label: %v", s.Label)
		}
		seen[m[0]] = true
		removed := strings.Join(s.Label[tracer.LabelMemcgRemoved], ",")
		wantRemoved := m[0] != "/live"
		if (removed == "true") != wantRemoved {
			t.Errorf("memcg %s: memcg_removed=%q, want removed %v", m[0], removed, wantRemoved)
		}
		container := strings.Join(s.Label[tracer.LabelContainer], ",")
		if wantC := map[bool]string{true: "docker:3f4e5a6b7c8d", false: ""}[m[0] == dock]; container != wantC {
			t.Errorf("memcg %s: container=%q, want %q", m[0], container, wantC)
		}
	}
	for _, want := range []string{dock, "/small", "/live", "id:104"} {
		if !seen[want] {
			t.Errorf("no sample labelled memcg=%s; seen %v", want, seen)
		}
	}

	var buf bytes.Buffer
	if err := agg.WriteSummary(&buf, 0); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Logf("summary:\n%s", out)
	head := "memory cgroups removed, objects charged to them still live: 3 memcgs, 16 objects, "
	i := strings.Index(out, head)
	if i < 0 {
		t.Fatalf("no removed-memcg line %q", head)
	}
	// A row per memcg, then its top call site.
	rows := strings.Split(out[i:], "\n")[2:8]
	for j, want := range []string{dock, "/small", "id:104"} {
		if !strings.HasSuffix(rows[2*j], "  "+want) {
			t.Errorf("removed memcg row %d = %q, want %s (largest first)", j, rows[2*j], want)
		}
	}
	// The docker memcg's bytes: 10*192 + 3*768; its top site is the inodes'.
	if !strings.Contains(rows[0], "4.1 KiB") || !strings.Contains(rows[0], " 13 ") ||
		!strings.HasSuffix(rows[1], "2.2 KiB shmem_inode_cache  ftrace_process_locs < ftrace_init < start_kernel") {
		t.Errorf("rows %q, %q: want 4.1 KiB in 13 objects, top site 2.2 KiB of shmem_inode_cache at ftrace_process_locs", rows[0], rows[1])
	}
	if strings.Contains(out, "  /live\n") {
		t.Errorf("the live memcg is listed as removed")
	}

	// Without removed memcgs, no section.
	delete(snap.Memcgs, idGone)
	for id := range snap.Memcgs {
		snap.Memcgs[id] = tracer.Memcg{Path: "/x"}
	}
	agg, err = tracer.Aggregate(snap, newFakeSymbolizer(t), tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := agg.WriteSummary(&buf, 0); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "memory cgroups removed") {
		t.Errorf("removed-memcg section without removed memcgs:\n%s", buf.String())
	}
}

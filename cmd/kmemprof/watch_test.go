package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// reading makes a kernel reading: active objects per cache (object size
// 64 bytes, "dentry" reclaimable) and dying memcgs; the second argument is
// not used.
func reading(at int, _ uint64, dying uint64, objs map[string]uint64) kernelReading {
	r := kernelReading{At: time.Unix(int64(at)*60, 0), Caches: map[string]host.SlabCache{},
		Memcg: host.MemcgCount{Source: "test", Total: 10 + dying, Dying: dying, DyingKnown: true}}
	for name, n := range objs {
		r.Caches[name] = host.SlabCache{Name: name, ActiveObjs: n, NumObjs: n, ObjSize: 64}
	}
	return r
}

func newTestWatcher() *watcher {
	return &watcher{rule: watchRule{Intervals: 3, MinBytes: 32 << 10}, reclaimable: func(c string) bool { return c == "dentry" }}
}

// TestWatchSteadyLeak: a cache that grows by the rule's amount in each of
// three intervals triggers at the fourth reading, not before, with its
// figures; churn beside it does not.
func TestWatchSteadyLeak(t *testing.T) {
	w := newTestWatcher()
	churn := []uint64{5000, 9000, 4000, 9500, 3000, 9000}
	var trig *watchTrigger
	for i := 0; i < 6; i++ {
		leak := uint64(1000 + i*600) // 600 objects of 64 bytes: 37.5 KiB an interval
		trig = w.Add(reading(i, 1<<30, 0, map[string]uint64{"kmalloc-64": leak, "kmalloc-128": churn[i]}))
		if i < 3 && trig != nil {
			t.Fatalf("trigger after %d intervals: %v", i, trig)
		}
		if i == 3 {
			break
		}
	}
	if trig == nil {
		t.Fatal("no trigger after 3 intervals of steady growth")
	}
	if len(trig.Caches) != 1 || trig.Caches[0].Name != "kmalloc-64" || trig.Caches[0].Objects != 1800 || trig.Caches[0].Bytes != 1800*64 {
		t.Errorf("trigger caches %+v, want kmalloc-64 +1800 objects", trig.Caches)
	}
	if trig.Reason() != "cache:kmalloc-64" || trig.Window != 3*time.Minute {
		t.Errorf("trigger %+v (reason %s)", trig, trig.Reason())
	}
	if s := trig.String(); !strings.Contains(s, "kmalloc-64 +112.5 KiB (+1800 objects)") || !strings.Contains(s, "each of the last 3 intervals (3m0s)") {
		t.Errorf("trigger line %q", s)
	}
}

// TestWatchNoTrigger: what must not trigger.
func TestWatchNoTrigger(t *testing.T) {
	cases := map[string][]kernelReading{
		// dentries made steadily: reclaimable.
		"reclaimable": {reading(0, 1<<30, 0, map[string]uint64{"dentry": 1000}), reading(1, 1<<30, 0, map[string]uint64{"dentry": 5000}),
			reading(2, 1<<30, 0, map[string]uint64{"dentry": 9000}), reading(3, 1<<30, 0, map[string]uint64{"dentry": 13000}), reading(4, 1<<30, 0, map[string]uint64{"dentry": 17000})},
		// grew in two intervals, then stopped.
		"plateau": {reading(0, 1<<30, 0, map[string]uint64{"filp": 1000}), reading(1, 1<<30, 0, map[string]uint64{"filp": 5000}),
			reading(2, 1<<30, 0, map[string]uint64{"filp": 9000}), reading(3, 1<<30, 0, map[string]uint64{"filp": 9000}), reading(4, 1<<30, 0, map[string]uint64{"filp": 9100})},
		// rose every interval, but by less than --trigger-growth.
		"small": {reading(0, 1<<30, 0, map[string]uint64{"filp": 1000}), reading(1, 1<<30, 0, map[string]uint64{"filp": 1100}),
			reading(2, 1<<30, 0, map[string]uint64{"filp": 1200}), reading(3, 1<<30, 0, map[string]uint64{"filp": 1300}), reading(4, 1<<30, 0, map[string]uint64{"filp": 1400})},
		// a cache that appears: no growth measured before it existed.
		"new cache": {reading(0, 1<<30, 0, nil), reading(1, 1<<30, 0, nil), reading(2, 1<<30, 0, map[string]uint64{"x": 1000}), reading(3, 1<<30, 0, map[string]uint64{"x": 2000})},
	}
	for name, rs := range cases {
		w := newTestWatcher()
		for i, r := range rs {
			if trig := w.Add(r); trig != nil {
				t.Errorf("%s: trigger at reading %d: %v", name, i, trig)
			}
		}
	}
}

// TestWatchSpreadAndDying: growth spread over caches, each below the
// rule's amount, triggers together; dying memory cgroups that pile up
// trigger on their own.
func TestWatchSpreadAndDying(t *testing.T) {
	w := newTestWatcher()
	var trig *watchTrigger
	for i := 0; i < 4; i++ {
		objs := map[string]uint64{"dentry": uint64(1000 + 5000*i), "shrinking": uint64(100000 - 100*i)}
		for c := 0; c < 10; c++ {
			objs[fmt.Sprint("cache-", c)] = uint64(1000 + 200*i) // 12.5 KiB an interval each
		}
		trig = w.Add(reading(i, 0, 0, objs))
	}
	if want := int64(3 * (10*200 - 100) * 64); trig == nil || trig.Reason() != "unreclaimable_slab" || trig.Unreclaimable != want || len(trig.Caches) != 0 {
		t.Errorf("ten caches +12.5 KiB an interval: %+v, want unreclaimable_slab %d", trig, want)
	}
	w = newTestWatcher()
	for i := 0; i < 4; i++ {
		trig = w.Add(reading(i, 1<<30, uint64(i*2), nil))
	}
	if trig == nil || trig.Reason() != "dying_memcgs" || trig.Dying != 6 {
		t.Errorf("dying memcgs 0, 2, 4, 6: %+v", trig)
	}
	// Not when one interval added none.
	w = newTestWatcher()
	for i, d := range []uint64{0, 2, 2, 4} {
		if trig = w.Add(reading(i, 1<<30, d, nil)); trig != nil {
			t.Errorf("dying memcgs 0, 2, 2, 4: %v", trig)
		}
	}
}

// TestWatchExplained: the growth that follows reclaimable growth (an LSM
// blob per inode, a metadata vector per new slab) is no trigger; a leak of
// the same cache beyond it is.
func TestWatchExplained(t *testing.T) {
	read := func(i int, inodes, dentrySlabs, lsm, k192 uint64) kernelReading {
		return kernelReading{At: time.Unix(int64(i)*60, 0), Caches: map[string]host.SlabCache{
			"ext4_inode_cache": {Name: "ext4_inode_cache", ActiveObjs: inodes, ObjSize: 1080},
			"dentry":           {Name: "dentry", ActiveObjs: dentrySlabs * 21, ObjSize: 192, ObjPerSlab: 21, NumSlabs: dentrySlabs},
			"lsm_inode_cache":  {Name: "lsm_inode_cache", ActiveObjs: lsm, ObjSize: 32},
			"kmalloc-192":      {Name: "kmalloc-192", ActiveObjs: k192, ObjSize: 192},
		}}
	}
	w := &watcher{rule: watchRule{Intervals: 3, MinBytes: 16 << 10}, reclaimable: func(c string) bool { return c == "dentry" || c == "ext4_inode_cache" }}
	// 2000 files an interval: inodes, their LSM blobs, dentries in 96 new
	// slabs, and a 168-byte vector per new slab in kmalloc-192.
	for i := 0; i < 5; i++ {
		if trig := w.Add(read(i, uint64(2000*i), uint64(96*i), uint64(2000*i), uint64(96*i))); trig != nil {
			t.Fatalf("reclaimable growth and what follows it triggered: %v", trig)
		}
	}
	// lsm_inode_cache merged into another cache (arm64 6.1: numa_policy):
	// the explanation follows it.
	merged := func(i int) kernelReading {
		r := read(i, uint64(2000*i), uint64(96*i), uint64(2000*i), uint64(96*i))
		c := r.Caches["lsm_inode_cache"]
		delete(r.Caches, "lsm_inode_cache")
		c.Name = "numa_policy"
		r.Caches["numa_policy"] = c
		return r
	}
	w = &watcher{rule: w.rule, reclaimable: w.reclaimable, aliases: map[string][]string{"numa_policy": {"ext4_io_end_vec", "lsm_inode_cache"}}}
	for i := 0; i < 5; i++ {
		if trig := w.Add(merged(i)); trig != nil {
			t.Fatalf("inode growth with lsm_inode_cache merged into numa_policy triggered: %v", trig)
		}
	}
	w.aliases = nil // without knowing the merge, the same growth is a trigger: the test can fail
	w.Reset()
	var unexplained *watchTrigger
	for i := 0; i < 4; i++ {
		unexplained = w.Add(merged(i))
	}
	if unexplained == nil {
		t.Error("numa_policy growing with inodes, merge unknown: no trigger")
	}
	// The same, and kmalloc-192 leaking 200 objects (37.5 KiB) an interval beyond it.
	w.Reset()
	var trig *watchTrigger
	for i := 0; i < 4; i++ {
		trig = w.Add(read(i, uint64(2000*i), uint64(96*i), uint64(2000*i), uint64(296*i)))
	}
	if trig == nil || trig.Reason() != "cache:kmalloc-192" {
		t.Errorf("a leak beside the explained growth: %+v", trig)
	}
}

// TestWatchReset: after a capture the window starts afresh.
func TestWatchReset(t *testing.T) {
	w := newTestWatcher()
	for i := 0; i < 4; i++ {
		w.Add(reading(i, 1<<30, 0, map[string]uint64{"filp": uint64(1000 + i*1000)}))
	}
	if w.Streak("filp") != 3 {
		t.Fatalf("streak %d, want 3", w.Streak("filp"))
	}
	w.Reset()
	for i := 4; i < 7; i++ {
		if trig := w.Add(reading(i, 1<<30, 0, map[string]uint64{"filp": uint64(1000 + i*1000)})); trig != nil {
			t.Fatalf("trigger %d readings after a reset: %v", i-3, trig)
		}
	}
	if trig := w.Add(reading(7, 1<<30, 0, map[string]uint64{"filp": 8000})); trig == nil {
		t.Error("no trigger after a full window since the reset")
	}
}

// TestSlabProfile: the watch mode's profile is one sample per cache in use,
// under its reclaimable or unreclaimable frame, readable by pprof.
func TestSlabProfile(t *testing.T) {
	v := host.SystemView{Taken: time.Unix(100, 0), Caches: []host.SlabCache{
		{Name: "filp", ActiveObjs: 10, ObjSize: 256}, {Name: "dentry", ActiveObjs: 4, ObjSize: 192}, {Name: "empty", ObjSize: 8}}}
	p := slabProfile(v, func(c string) bool { return c == "dentry" }, time.Minute)
	var buf bytes.Buffer
	if err := tracer.EncodeProfile(&buf, p); err != nil {
		t.Fatal(err)
	}
	back, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range back.Sample {
		got[s.Label["cache"][0]] = s.Location[1].Line[0].Function.Name + " " + s.Location[0].Line[0].Function.Name + " " + strings.Join(s.Label[tracer.LabelReclaim], "")
		if s.Label["cache"][0] == "filp" && (s.Value[0] != 10 || s.Value[1] != 2560) {
			t.Errorf("filp values %v", s.Value)
		}
	}
	want := map[string]string{"filp": "[unreclaimable slab] [slab cache filp] false", "dentry": "[reclaimable slab] [slab cache dentry] true"}
	if len(got) != len(want) || got["filp"] != want["filp"] || got["dentry"] != want["dentry"] {
		t.Errorf("samples %v, want %v", got, want)
	}
}

// TestReclaimableByName: the fallback without SLUB's sysfs.
func TestReclaimableByName(t *testing.T) {
	for name, want := range map[string]bool{"dentry": true, "ext4_inode_cache": true, "kmalloc-rcl-64": true, "filp": false, "kmalloc-64": false, "sock_inode_cache": true} {
		s := &slabReclaimable{known: map[string]bool{}}
		if got := s.Is(name); got != want {
			t.Errorf("%s reclaimable: %v, want %v", name, got, want)
		}
	}
}

// TestMemcgProfile: each cgroup's own share under its ancestors' frames;
// the flame graph's totals are the kernel's hierarchical figures.
func TestMemcgProfile(t *testing.T) {
	ms := []host.MemcgKernel{
		{Path: "/", Kernel: 1000, SlabUnreclaimable: -1},
		{Path: "/a", Kernel: 600, SlabUnreclaimable: -1},
		{Path: "/a/b", Kernel: 250, SlabUnreclaimable: -1},
		{Path: "/c", Kernel: 100, SlabUnreclaimable: -1},
	}
	p := memcgProfile(ms, time.Unix(5, 0), time.Minute)
	if p == nil {
		t.Fatal("no profile")
	}
	var buf bytes.Buffer
	if err := tracer.EncodeProfile(&buf, p); err != nil {
		t.Fatal(err)
	}
	back, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	total := map[string]int64{} // per frame: what a flame graph shows
	for _, s := range back.Sample {
		var frames []string
		for _, l := range s.Location {
			frames = append(frames, l.Line[0].Function.Name)
			total[l.Line[0].Function.Name] += s.Value[0]
		}
		got[s.Label["memcg"][0]] = fmt.Sprint(s.Value[0], " ", strings.Join(frames, " < "))
	}
	want := map[string]string{
		"/":    "300 [memcg /]",
		"/a":   "350 [memcg /a] < [memcg /]",
		"/a/b": "250 [memcg /a/b] < [memcg /a] < [memcg /]",
		"/c":   "100 [memcg /c] < [memcg /]",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if total["[memcg /]"] != 1000 || total["[memcg /a]"] != 600 {
		t.Errorf("flame graph totals %v, want the kernel's figures", total)
	}
	// A root that counts slab alone (kernel 0), as a 6.12 guest's did.
	p = memcgProfile([]host.MemcgKernel{{Path: "/", Kernel: 0, SlabUnreclaimable: 3088}}, time.Unix(5, 0), time.Minute)
	if p == nil || p.Sample[0].Value[0] != 3088 {
		t.Errorf("kernel 0, slab 3088: %+v", p)
	}
	// v2 before 5.18: no "kernel", the unreclaimable slab instead.
	p = memcgProfile([]host.MemcgKernel{{Path: "/", Kernel: -1, SlabUnreclaimable: 40}}, time.Unix(5, 0), time.Minute)
	if p == nil || p.Sample[0].Value[0] != 40 || !strings.Contains(p.Comments[0], "slab_unreclaimable") {
		t.Errorf("slab fallback: %+v", p)
	}
}

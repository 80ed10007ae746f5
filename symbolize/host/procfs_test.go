package host

import (
	"errors"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// The fixtures in testdata/ come from a 6.18 x86-64 kernel: meminfo-start.txt
// and slabinfo-start.txt as read, the -end files edited to show a capture in
// which dentry and ext4_inode_cache grew (reclaimable caches), kmalloc-192
// leaked 20480 objects, nf_conntrack, kmalloc-cg-64 and others grew a
// little, fuse_request went from empty to used, and kmalloc-512 and
// vm_area_struct shrank.

func openFixture(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func fixtureView(t *testing.T, which string, taken time.Time) SystemView {
	t.Helper()
	m, err := ParseMeminfo(openFixture(t, "meminfo-"+which+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseSlabinfo(openFixture(t, "slabinfo-"+which+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	return SystemView{Taken: taken, Meminfo: m, Caches: c, PageSize: 4096}
}

var (
	viewStart = time.Date(2025, 3, 14, 15, 0, 0, 0, time.UTC)
	viewEnd   = viewStart.Add(5 * time.Minute)
)

func TestParseMeminfoFixture(t *testing.T) {
	m, err := ParseMeminfo(openFixture(t, "meminfo-start.txt"))
	if err != nil {
		t.Fatal(err)
	}
	const k = 1024
	want := Meminfo{
		MemTotal:     24683656 * k,
		MemFree:      22545824 * k,
		MemAvailable: 23938084 * k,
		Slab:         580396 * k,
		SReclaimable: 539540 * k,
		SUnreclaim:   40856 * k,
		KReclaimable: 539540 * k,
		Percpu:       4680 * k,
		VmallocUsed:  227864 * k,
		PageTables:   3184 * k,
		KernelStack:  1720 * k,
	}
	if m != want {
		t.Errorf("ParseMeminfo =\n%+v, want\n%+v", m, want)
	}
	if m.Slab != m.SReclaimable+m.SUnreclaim {
		t.Errorf("Slab %d != SReclaimable + SUnreclaim %d", m.Slab, m.SReclaimable+m.SUnreclaim)
	}
}

func TestParseMeminfo(t *testing.T) {
	const slab = "Slab: 3 kB\nSReclaimable: 1 kB\nSUnreclaim: 2 kB\n"
	for _, tt := range []struct {
		name    string
		in      string
		want    Meminfo
		wantErr string
	}{
		{
			name: "minimal",
			in:   slab,
			want: Meminfo{Slab: 3072, SReclaimable: 1024, SUnreclaim: 2048},
		},
		{
			name: "other lines and counts without unit are skipped",
			in:   "MemTotal:  10 kB\nHugePages_Total:       0\nDirectMap1G:    25165824 kB\n" + slab + "Percpu: 7 kB\n",
			want: Meminfo{MemTotal: 10240, Slab: 3072, SReclaimable: 1024, SUnreclaim: 2048, Percpu: 7168},
		},
		{name: "empty", in: "", wantErr: "no Slab line"},
		{name: "no SUnreclaim", in: "Slab: 3 kB\nSReclaimable: 1 kB\n", wantErr: "no SUnreclaim line"},
		{name: "bad number", in: "Slab: x kB\n", wantErr: "line 1 (Slab)"},
		{name: "bad unit", in: "SReclaimable: 1 MB\n", wantErr: `unknown unit "MB"`},
		{name: "no value", in: "Slab:\n", wantErr: "line 1"},
		{name: "overflow", in: "Slab: 18446744073709551615 kB\n", wantErr: "overflows"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMeminfo(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseMeminfo error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m != tt.want {
				t.Errorf("ParseMeminfo = %+v, want %+v", m, tt.want)
			}
		})
	}
}

func TestParseSlabinfoFixture(t *testing.T) {
	caches, err := ParseSlabinfo(openFixture(t, "slabinfo-start.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(caches) != 36 {
		t.Errorf("%d caches, want 36", len(caches))
	}
	if caches[0].Name != "nf_conntrack" || caches[len(caches)-1].Name != "kmalloc-32" {
		t.Errorf("caches not in file order: first %s, last %s", caches[0].Name, caches[len(caches)-1].Name)
	}
	byName := make(map[string]SlabCache)
	for _, c := range caches {
		byName[c.Name] = c
	}
	t.Run("dentry", func(t *testing.T) {
		want := SlabCache{Name: "dentry", ActiveObjs: 399509, NumObjs: 399630, ObjSize: 192, ObjPerSlab: 21, PagesPerSlab: 1, ActiveSlabs: 19030, NumSlabs: 19030}
		if got := byName["dentry"]; got != want {
			t.Errorf("dentry = %+v, want %+v", got, want)
		}
	})
	t.Run("long name", func(t *testing.T) {
		// Names longer than the 17-column field push the numbers right.
		c := byName["ext4_allocation_context"]
		if c.ActiveObjs != 2088 || c.ObjSize != 168 || c.NumSlabs != 87 {
			t.Errorf("ext4_allocation_context = %+v", c)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		c := byName["task_struct"] // 119 objects of 4288 bytes in 17 slabs of 8 pages
		if got, want := c.ActiveBytes(), uint64(119*4288); got != want {
			t.Errorf("ActiveBytes = %d, want %d", got, want)
		}
		if got, want := c.TotalBytes(4096), uint64(17*8*4096); got != want {
			t.Errorf("TotalBytes(4096) = %d, want %d", got, want)
		}
		if got, want := c.TotalBytes(0), c.TotalBytes(DefaultPageSize); got != want {
			t.Errorf("TotalBytes(0) = %d, want the default page size's %d", got, want)
		}
		if got, want := c.TotalBytes(16384), uint64(17*8*16384); got != want {
			t.Errorf("TotalBytes(16384) = %d, want %d", got, want)
		}
	})
	t.Run("fragmentation", func(t *testing.T) {
		for name, want := range map[string]float64{
			"kmalloc-64":   1 - 2551.0/4288, // 40.5%
			"kmalloc-2k":   0,
			"fuse_request": 0, // empty
		} {
			if got := byName[name].Fragmentation(); math.Abs(got-want) > 1e-12 {
				t.Errorf("%s: Fragmentation = %v, want %v", name, got, want)
			}
		}
	})
}

func TestParseSlabinfo(t *testing.T) {
	const head = "slabinfo - version: 2.1\n# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n"
	for _, tt := range []struct {
		name    string
		in      string
		want    []SlabCache
		wantErr string
	}{
		{
			name: "one cache",
			in:   head + "kmalloc-64          2175   3968     64   64    1 : tunables    0    0    0 : slabdata     62     62      0\n",
			want: []SlabCache{{Name: "kmalloc-64", ActiveObjs: 2175, NumObjs: 3968, ObjSize: 64, ObjPerSlab: 64, PagesPerSlab: 1, ActiveSlabs: 62, NumSlabs: 62}},
		},
		{
			name: "header only",
			in:   head,
		},
		{
			name: "SLAB statistics variant",
			in: "slabinfo - version: 2.1 (statistics)\n" +
				"dentry 300 320 192 21 1 : tunables 120 60 8 : slabdata 15 16 0 : globalstat 1 2 3 4 5 6 7 8 9 : cpustat 1 2 3 4\n",
			want: []SlabCache{{Name: "dentry", ActiveObjs: 300, NumObjs: 320, ObjSize: 192, ObjPerSlab: 21, PagesPerSlab: 1, ActiveSlabs: 15, NumSlabs: 16}},
		},
		{name: "empty", in: "", wantErr: "no version line"},
		{name: "no header", in: "dentry 1 1 192 21 1 : tunables 0 0 0 : slabdata 1 1 0\n", wantErr: "is not \"slabinfo - version: 2.1\""},
		{name: "old version", in: "slabinfo - version: 1.1\n", wantErr: `version "1.1" is not supported`},
		{name: "future version", in: "slabinfo - version: 3.0\n", wantErr: `version "3.0" is not supported`},
		{name: "no slabdata", in: head + "dentry 1 1 192 21 1\n", wantErr: "line 3"},
		{name: "short", in: head + "dentry 1 1 : slabdata 1 1 0\n", wantErr: "line 3"},
		{name: "bad number", in: head + "dentry 1 x 192 21 1 : tunables 0 0 0 : slabdata 1 1 0\n", wantErr: "cache dentry"},
		{name: "bad slab count", in: head + "dentry 1 1 192 21 1 : tunables 0 0 0 : slabdata 1 -1 0\n", wantErr: "cache dentry"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSlabinfo(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSlabinfo error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParseSlabinfo = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("cache %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseProcCgroup(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{
			name: "v2",
			in:   "0::/system.slice/docker-3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081.scope\n",
			want: map[string]string{CgroupV2: "/system.slice/docker-3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081.scope"},
		},
		{
			name: "hybrid",
			in: "12:pids:/user.slice/user-1000.slice/session-2.scope\n" +
				"11:memory:/user.slice/user-1000.slice/session-2.scope\n" +
				"4:cpu,cpuacct:/user.slice\n" +
				"3:net_cls,net_prio:/\n" +
				"1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n" +
				"0::/user.slice/user-1000.slice/session-2.scope\n",
			want: map[string]string{
				"pids":         "/user.slice/user-1000.slice/session-2.scope",
				"memory":       "/user.slice/user-1000.slice/session-2.scope",
				"cpu":          "/user.slice",
				"cpuacct":      "/user.slice",
				"net_cls":      "/",
				"net_prio":     "/",
				"name=systemd": "/user.slice/user-1000.slice/session-2.scope",
				CgroupV2:       "/user.slice/user-1000.slice/session-2.scope",
			},
		},
		{
			name: "v1 docker",
			in: "9:name=systemd:/docker/3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081\n" +
				"4:memory:/docker/3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081\n" +
				"0::/\n",
			want: map[string]string{
				"name=systemd": "/docker/3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081",
				"memory":       "/docker/3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081",
				CgroupV2:       "/",
			},
		},
		{
			name: "colons in the path",
			in:   "2:memory:/system.slice/containerd.service/kubepods-burstable-pod1b2c.slice:cri-containerd:3f4e\n",
			want: map[string]string{"memory": "/system.slice/containerd.service/kubepods-burstable-pod1b2c.slice:cri-containerd:3f4e"},
		},
		{
			name: "removed cgroup",
			in:   "0::/system.slice/foo.service (deleted)\n",
			want: map[string]string{CgroupV2: "/system.slice/foo.service (deleted)"},
		},
		{name: "empty", in: "", want: map[string]string{}},
		{name: "two fields", in: "0:/\n", wantErr: "line 1"},
		{name: "relative path", in: "0::user.slice\n", wantErr: "line 1"},
		{name: "bad hierarchy id", in: "0::/\nx:memory:/\n", wantErr: "line 2: hierarchy id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcCgroup(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseProcCgroup error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("ParseProcCgroup = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadSystemViewFS(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	meminfo, slabinfo := read("meminfo-start.txt"), read("slabinfo-start.txt")

	t.Run("both", func(t *testing.T) {
		v, err := readSystemView(fstest.MapFS{
			"meminfo":  {Data: meminfo},
			"slabinfo": {Data: slabinfo},
		}, viewStart, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Taken.Equal(viewStart) || v.PageSize != 4096 || v.Slab != 580396*1024 || len(v.Caches) != 36 {
			t.Errorf("view = taken %v, page size %d, Slab %d, %d caches", v.Taken, v.PageSize, v.Slab, len(v.Caches))
		}
	})
	t.Run("no slabinfo", func(t *testing.T) {
		v, err := readSystemView(fstest.MapFS{"meminfo": {Data: meminfo}}, viewStart, 4096)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "reading /proc/slabinfo") || !strings.Contains(err.Error(), "CONFIG_SLUB_DEBUG") {
			t.Errorf("error = %v, want one that names /proc/slabinfo and CONFIG_SLUB_DEBUG", err)
		}
		if v.Slab != 580396*1024 || v.Caches != nil {
			t.Errorf("view = Slab %d, caches %v: want the meminfo part only", v.Slab, v.Caches)
		}
	})
	t.Run("bad slabinfo", func(t *testing.T) {
		_, err := readSystemView(fstest.MapFS{"meminfo": {Data: meminfo}, "slabinfo": {Data: []byte("slabinfo - version: 1.1\n")}}, viewStart, 4096)
		if err == nil || !strings.Contains(err.Error(), "reading /proc/slabinfo: parsing slabinfo: version") {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("no meminfo", func(t *testing.T) {
		v, err := readSystemView(fstest.MapFS{"slabinfo": {Data: slabinfo}}, viewStart, 4096)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "reading /proc/meminfo") {
			t.Errorf("error = %v", err)
		}
		if v.Caches != nil || !v.Taken.IsZero() {
			t.Errorf("view = %+v, want empty", v)
		}
	})
}

func TestReadSystemView(t *testing.T) {
	v, err := ReadSystemView()
	if os.Getenv("KMEMPROF_REQUIRE_BPF") != "1" && (errors.Is(err, ErrNotSupported) || errors.Is(err, fs.ErrPermission)) {
		t.Skipf("ReadSystemView: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if v.Slab == 0 || v.MemTotal == 0 || len(v.Caches) == 0 || v.PageSize == 0 {
		t.Errorf("view = Slab %d, MemTotal %d, %d caches, page size %d", v.Slab, v.MemTotal, len(v.Caches), v.PageSize)
	}
}

// wantSystemView is SystemViewReport of the fixtures with tracked bytes for
// kmalloc-192, nf_conntrack and kmalloc-cg-64.
const wantSystemView = `kernel memory (/proc/meminfo) over 5m0s:
  Slab          566.8 MiB  ->  586.4 MiB  +19.6 MiB
  SReclaimable  526.9 MiB  ->  541.8 MiB  +14.9 MiB
  SUnreclaim     39.9 MiB  ->   44.5 MiB   +4.6 MiB
  Percpu          4.6 MiB  ->    4.7 MiB  +96.0 KiB
  VmallocUsed   222.5 MiB  ->  222.5 MiB        0 B
  hint: the slab grew mostly in reclaimable caches (dentries, inodes), which the kernel frees under memory pressure
slab caches that grew most (/proc/slabinfo):
  CACHE                 ACTIVE      GROWTH  OBJECTS ACTIVE/ALL   FRAG    TRACKED
  dentry              81.9 MiB    +8.8 MiB       447509/447636   0.0%          -
  ext4_inode_cache   394.5 MiB    +5.2 MiB       366687/366730   0.0%          -
  kmalloc-192          7.3 MiB    +3.8 MiB         40123/40425   0.7%    3.7 MiB
  nf_conntrack       853.0 KiB  +650.0 KiB           3412/3568   4.4%  640.0 KiB
  radix_tree_node     21.5 MiB  +513.3 KiB         38614/38738   0.3%          -
  buffer_head         15.8 MiB  +121.9 KiB       159525/175500   9.1%          -
  kmalloc-64         253.2 KiB   +93.8 KiB           4051/4800  15.6%          -
  filp               215.2 KiB   +65.6 KiB           1148/1155   0.6%          -
  kmalloc-cg-64       56.0 KiB   +40.0 KiB             896/896   0.0%        0 B
  skbuff_head_cache  100.0 KiB   +16.0 KiB             400/400   0.0%          -
  TRACKED: bytes kmemprof held outstanding in the cache when ACTIVE was read (programs attached); growth beyond it was not traced
`

func TestFormatSystemView(t *testing.T) {
	start, end := fixtureView(t, "start", viewStart), fixtureView(t, "end", viewEnd)
	tracked := map[string]uint64{"kmalloc-192": 20000 * 192, "nf_conntrack": 2560 * 256, "kmalloc-cg-64": 0}
	var b strings.Builder
	if err := writeSystemView(&b, start, end, tracked); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("system view:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")

	t.Run("whole", func(t *testing.T) {
		if out != wantSystemView {
			t.Errorf("FormatSystemView =\n%s\nwant\n%s", out, wantSystemView)
		}
	})
	var table []string
	for i, l := range lines {
		if strings.HasPrefix(l, "  CACHE ") {
			table = lines[i+1:]
			break
		}
	}
	t.Run("top caches", func(t *testing.T) {
		// Eleven caches grew (fuse_request least); kmalloc-512 and
		// vm_area_struct shrank.
		var names []string
		for _, l := range table {
			if f := strings.Fields(l); len(f) > 0 && f[0] != "TRACKED:" {
				names = append(names, f[0])
			}
		}
		want := []string{"dentry", "ext4_inode_cache", "kmalloc-192", "nf_conntrack", "radix_tree_node", "buffer_head", "kmalloc-64", "filp", "kmalloc-cg-64", "skbuff_head_cache"}
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Errorf("caches = %v, want %v", names, want)
		}
	})
	t.Run("rows", func(t *testing.T) {
		for _, want := range [][]string{
			{"kmalloc-192", "7.3 MiB", "+3.8 MiB", "40123/40425", "0.7%", "3.7 MiB"},
			{"nf_conntrack", "853.0 KiB", "+650.0 KiB", "3412/3568", "4.4%", "640.0 KiB"},
			{"kmalloc-64", "253.2 KiB", "+93.8 KiB", "4051/4800", "15.6%", "-"},
			{"kmalloc-cg-64", "56.0 KiB", "+40.0 KiB", "896/896", "0.0%", "0 B"},
			{"skbuff_head_cache", "100.0 KiB", "+16.0 KiB", "400/400", "0.0%", "-"},
		} {
			found := false
			for _, l := range table {
				if strings.HasPrefix(strings.TrimSpace(l), want[0]+" ") {
					found = true
					if got := splitCells(l); strings.Join(got, "|") != strings.Join(want, "|") {
						t.Errorf("row %q = %q, want %q", l, got, want)
					}
				}
			}
			if !found {
				t.Errorf("no row for %s", want[0])
			}
		}
	})
	t.Run("aligned", func(t *testing.T) {
		// Right-aligned columns end at the same offset on every row.
		head := lines[len(lines)-len(table)-1]
		for _, l := range table[:len(table)-1] {
			if len(l) != len(head) {
				t.Errorf("row %q is %d wide, header %d", l, len(l), len(head))
			}
		}
	})
	t.Run("tracked note", func(t *testing.T) {
		if !strings.HasPrefix(lines[len(lines)-1], "  TRACKED: bytes kmemprof held") {
			t.Errorf("last line = %q", lines[len(lines)-1])
		}
		var b strings.Builder
		writeSystemView(&b, start, end, nil)
		if strings.Contains(b.String(), "TRACKED:") {
			t.Error("note on TRACKED printed without tracked bytes")
		}
	})
}

// splitCells splits a system view row on runs of two or more spaces.
func splitCells(l string) []string {
	var cells []string
	for _, c := range strings.Split(strings.TrimSpace(l), "  ") {
		if c = strings.TrimSpace(c); c != "" {
			cells = append(cells, c)
		}
	}
	return cells
}

func TestFormatSystemViewCases(t *testing.T) {
	start, end := fixtureView(t, "start", viewStart), fixtureView(t, "end", viewEnd)
	noCaches := end
	noCaches.Caches = nil
	leak := end
	leak.SReclaimable = start.SReclaimable
	leak.SUnreclaim = start.SUnreclaim + 8<<20
	leak.Slab = leak.SReclaimable + leak.SUnreclaim
	for _, tt := range []struct {
		name       string
		start, end SystemView
		want       []string
		not        []string
	}{
		{
			name:  "no change",
			start: start, end: start,
			want: []string{"over 0s:", "slab caches (/proc/slabinfo): none grew", "  Slab          566.8 MiB  ->  566.8 MiB  0 B"},
			not:  []string{"hint:"},
		},
		{
			name:  "slabinfo not read",
			start: start, end: noCaches,
			want: []string{"slab caches: /proc/slabinfo was not read at both ends of the capture"},
		},
		{
			name:  "unreclaimable growth",
			start: start, end: leak,
			want: []string{"hint: the slab grew mostly in unreclaimable memory (SUnreclaim), where slab leaks show", "SUnreclaim     39.9 MiB  ->   47.9 MiB   +8.0 MiB"},
		},
		{
			name:  "shrinking",
			start: end, end: start,
			want: []string{"Slab          586.4 MiB  ->  566.8 MiB  -19.6 MiB", "kmalloc-512", "vm_area_struct"},
			not:  []string{"hint:", "dentry"},
		},
		{
			name:  "no times, no optional lines",
			start: SystemView{Caches: start.Caches}, end: SystemView{Caches: start.Caches},
			want: []string{"kernel memory (/proc/meminfo):\n", "  Slab          0 B  ->  0 B  0 B\n"},
			not:  []string{"Percpu", "VmallocUsed"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := writeSystemView(&b, tt.start, tt.end, nil); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output does not contain %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.not {
				if strings.Contains(b.String(), w) {
					t.Errorf("output contains %q:\n%s", w, b.String())
				}
			}
		})
	}
}

func TestFormatSystemViewWriteError(t *testing.T) {
	start := fixtureView(t, "start", viewStart)
	if err := writeSystemView(failWriter{}, start, start, nil); err == nil {
		t.Error("no error from a failing writer")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestSystemViewComments(t *testing.T) {
	start, end := fixtureView(t, "start", viewStart), fixtureView(t, "end", viewEnd)
	c := SystemViewComments(start, end)
	t.Logf("comments:\n%s", strings.Join(c, "\n"))
	if len(c) != 1+SlabTopCaches {
		t.Fatalf("%d comments, want %d", len(c), 1+SlabTopCaches)
	}
	if want := "meminfo: Slab 566.8 MiB -> 586.4 MiB (+19.6 MiB), SReclaimable 526.9 MiB -> 541.8 MiB (+14.9 MiB), SUnreclaim 39.9 MiB -> 44.5 MiB (+4.6 MiB) over 5m0s"; c[0] != want {
		t.Errorf("comment 0 = %q, want %q", c[0], want)
	}
	if want := "slabinfo kmalloc-192: active 7.3 MiB (+3.8 MiB), 40123/40425 objects active, fragmentation 0.7%"; c[3] != want {
		t.Errorf("comment 3 = %q, want %q", c[3], want)
	}
	for _, l := range c {
		if strings.Contains(l, "\n") {
			t.Errorf("comment %q spans lines", l)
		}
	}
	t.Run("no slabinfo", func(t *testing.T) {
		c := SystemViewComments(start, SystemView{Meminfo: end.Meminfo})
		if len(c) != 2 || c[1] != "slabinfo: not read at both ends of the capture" {
			t.Errorf("comments = %q", c)
		}
	})
	t.Run("none grew", func(t *testing.T) {
		c := SystemViewComments(start, start)
		if len(c) != 2 || c[1] != "slabinfo: no cache grew" {
			t.Errorf("comments = %q", c)
		}
	})
}

// TestSlabAliases reads merged caches from a sysfs-like directory: names
// that link to one cache directory are merged; a lone link or a real
// directory is not.
func TestSlabAliases(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{":0000056", ":A-0000064", "kmalloc-64"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{
		"ftrace_event_field": ":0000056", "damon_region": ":0000056", "zz_region": ":0000056",
		"fs_cache": ":A-0000064",
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := SlabAliases(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"damon_region":       {"ftrace_event_field", "zz_region"},
		"ftrace_event_field": {"damon_region", "zz_region"},
		"zz_region":          {"damon_region", "ftrace_event_field"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SlabAliases = %v, want %v", got, want)
	}
	if got, err := SlabAliases(os.DirFS(filepath.Join(dir, "missing"))); err != nil || len(got) != 0 {
		t.Errorf("missing directory: %v, %v; want an empty map", got, err)
	}
}

// TestMemcgCount counts memory cgroups on v1 (/proc/cgroups less the live
// directories of the memory hierarchy are dying) and on v2 (cgroup.stat,
// per controller from 6.11, else every cgroup).
func TestMemcgCount(t *testing.T) {
	procV1 := fstest.MapFS{"cgroups": {Data: []byte("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nmemory\t4\t9\t1\n")}}
	tree := fstest.MapFS{
		"a/memory.limit_in_bytes": {Data: []byte("1")}, "a/b/x": {}, "c/x": {}, "d/x": {}, "e/x": {}, "f/x": {},
	}
	// Directories: the root, a, a/b, c, d, e, f: 7 live of 9.
	got := memcgCount(procV1, tree, nil)
	if got.Total != 9 || !got.DyingKnown || got.Dying != 2 || !strings.Contains(got.Source, "v1") {
		t.Errorf("v1: %+v, want 9 with 2 dying", got)
	}
	procV2 := fstest.MapFS{"cgroups": {Data: []byte("#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t0\t40\t1\n")}}
	v2 := fstest.MapFS{"cgroup.stat": {Data: []byte("nr_descendants 30\nnr_subsys_memory 25\nnr_dying_descendants 7\nnr_dying_subsys_memory 5\n")}}
	if got := memcgCount(procV2, nil, v2); got.Total != 30 || got.Dying != 5 || !got.DyingKnown {
		t.Errorf("v2: %+v, want 30 with 5 dying", got)
	}
	old := fstest.MapFS{"cgroup.stat": {Data: []byte("nr_descendants 30\nnr_dying_descendants 7\n")}}
	if got := memcgCount(procV2, nil, old); got.Total != 38 || got.Dying != 7 || !strings.Contains(got.Source, "every controller") {
		t.Errorf("v2 before 6.11: %+v, want 38 with 7 dying, of every controller", got)
	}
	if got := memcgCount(fstest.MapFS{}, nil, nil); got.Source != "" {
		t.Errorf("without /proc/cgroups or cgroup2: %+v, want unknown", got)
	}
	// 6.15+: /proc/cgroups lists v1 controllers only.
	v1only := fstest.MapFS{"cgroups": {Data: []byte("#subsys_name\thierarchy\tnum_cgroups\tenabled\n")}}
	if got := memcgCount(v1only, nil, v2); got.Total != 30 || got.Dying != 5 {
		t.Errorf("v2 where /proc/cgroups does not list memory: %+v, want 30 with 5 dying", got)
	}
	var b strings.Builder
	start := SystemView{Memcg: MemcgCount{Source: "s", Total: 9, Dying: 0, DyingKnown: true}}
	end := SystemView{Memcg: MemcgCount{Source: "s", Total: 29, Dying: 20, DyingKnown: true}}
	if err := writeSystemView(&b, start, end, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "memory cgroups (s): 9 -> 29, removed but not freed (dying): 0 -> 20") {
		t.Errorf("system view:\n%s", b.String())
	}
}

// writeSystemView renders SystemViewReport as the record command does.
func writeSystemView(w io.Writer, start, end SystemView, tracked map[string]uint64) error {
	return tracer.WriteReport(w, SystemViewReport(start, end, tracked))
}

package tracer_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/kmemprof/kmemprof/tracer"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// sampleOut, when set, is where TestProfileRoundTrip also writes the fixture
// profile, for trying it with `go tool pprof` by hand.
var sampleOut = flag.String("sample-out", "", "also write the fixture profile to this `file`")

// buildFixture aggregates the fixture and round-trips its profile through the
// wire format, as `go tool pprof` would read it.
func buildFixture(t *testing.T) (*tracer.Aggregation, *profile.Profile, []byte) {
	t.Helper()
	sym := newFakeSymbolizer(t)
	agg, err := tracer.Aggregate(fixture(), sym, fixtureOptions())
	if err != nil {
		t.Fatalf("Aggregate: %v", err)
	}
	p, err := agg.Profile()
	if err != nil {
		t.Fatalf("Profile: %v", err)
	}
	if err := p.CheckValid(); err != nil {
		t.Fatalf("CheckValid: %v", err)
	}
	var buf bytes.Buffer
	if err := tracer.EncodeProfile(&buf, p); err != nil {
		t.Fatalf("EncodeProfile: %v", err)
	}
	parsed, err := profile.Parse(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := parsed.CheckValid(); err != nil {
		t.Fatalf("CheckValid after Parse: %v", err)
	}
	return agg, parsed, buf.Bytes()
}

// sampleName describes a sample by its stack and labels, e.g.
// "a;b;c kind=slab pid=1 bytes=64".
func sampleName(s *profile.Sample) string {
	var names []string
	for _, l := range s.Location {
		for _, ln := range l.Line {
			names = append(names, ln.Function.Name)
		}
	}
	var labels []string
	for k, vs := range s.Label {
		for _, v := range vs {
			labels = append(labels, k+"="+v)
		}
	}
	slices.Sort(labels)
	var nums []string
	for k, vs := range s.NumLabel {
		for i, v := range vs {
			unit := ""
			if us := s.NumUnit[k]; i < len(us) {
				unit = us[i]
			}
			nums = append(nums, fmt.Sprintf("%s=%d%s", k, v, unit))
		}
	}
	slices.Sort(nums)
	labels = append(labels, nums...)
	return strings.Join(names, ";") + " " + strings.Join(labels, " ")
}

func TestProfileRoundTrip(t *testing.T) {
	agg, p, raw := buildFixture(t)
	if *sampleOut != "" {
		if err := os.WriteFile(*sampleOut, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("sample types", func(t *testing.T) {
		var got []string
		for _, st := range p.SampleType {
			got = append(got, st.Type+"/"+st.Unit)
		}
		want := []string{"alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"}
		if !slices.Equal(got, want) {
			t.Errorf("sample types = %v, want %v", got, want)
		}
		if p.DefaultSampleType != "inuse_space" {
			t.Errorf("default sample type = %q, want inuse_space", p.DefaultSampleType)
		}
		if p.PeriodType == nil || p.PeriodType.Type != "space" || p.PeriodType.Unit != "bytes" || p.Period != 1 {
			t.Errorf("period = %v %d, want space/bytes 1", p.PeriodType, p.Period)
		}
		if p.TimeNanos != fixtureStart.UnixNano() || p.DurationNanos != int64(60e9) {
			t.Errorf("time, duration = %d, %d", p.TimeNanos, p.DurationNanos)
		}
	})

	t.Run("values", func(t *testing.T) {
		// The allocator's frames leave the stacks for the allocator label:
		// the leaf is the code that allocated.
		const (
			foo   = "alloc_foo;foo_init;do_syscall_64"
			nft   = "nft_trans_alloc_gfp;[unknown 0xffffffff81777777];do_syscall_64"
			pages = "ftrace_process_locs;ftrace_init;start_kernel"
			plumb = "bpf_prog_0123456789abcdef_mm_page_alloc;bpf_trace_run2"
		)
		// alloc_objects, alloc_space, inuse_objects, inuse_space.
		want := map[string][4]int64{
			pages + " allocator=alloc_pages_mpol comm=swapper/0 gfp=0xcc0 kind=page migratetype=Unmovable order=1 bytes=8192bytes requested=8192bytes":                      {2, 16384, 1, 8192},
			foo + " allocator=__kmalloc_noprof comm=System kind=pool pid=4 pool=NonPaged tag=Tag1 bytes=320bytes requested=300bytes":                                        {1, 320, 1, 320},
			"[stack lost: evicted from stack map] cache=kmalloc-128 comm=bar kind=slab pid=5 bytes=128bytes requested=220bytes":                                             {2, 256, 2, 256},
			foo + " accounted=true allocator=__kmalloc_noprof cache=kmalloc-64 cgroup=/system.slice/foo.service comm=foo kind=slab pid=100 bytes=64bytes requested=90bytes": {10, 640, 2, 128},
			nft + " allocator=kmem_cache_alloc_noprof cache=nft_trans comm=nft kind=slab pid=200 bytes=128bytes requested=100bytes":                                         {3, 384, 1, 128},
			foo + " allocator=__kmalloc_noprof cache=kmalloc-64 cgroup=/system.slice/foo.service comm=foo kind=slab pid=101 bytes=64bytes requested=64bytes":                {1, 64, 1, 64},
			"[stack lost: bucket collision] cache=kmalloc-64 comm=foo kind=slab pid=100 bytes=64bytes requested=64bytes":                                                    {4, 256, 1, 64},
			plumb + " cache=kmalloc-32 comm=baz kind=slab pid=6 bytes=32bytes requested=20bytes":                                                                            {1, 32, 1, 32},
			pages + " allocator=alloc_pages_mpol cache=kmalloc-8k comm=qux kind=slab pid=8 bytes=8192bytes":                                                                 {1, 8192, 0, 0},
			nft + " allocator=kmem_cache_alloc_noprof cache=nft_trans cgroup=9 comm=nft kind=slab pid=300 bytes=128bytes":                                                   {5, 640, 0, 0},
		}
		got := make(map[string][4]int64)
		for _, s := range p.Sample {
			name := sampleName(s)
			if _, dup := got[name]; dup {
				t.Errorf("duplicate sample %q", name)
			}
			got[name] = [4]int64(s.Value)
		}
		for name, w := range want {
			g, ok := got[name]
			if !ok {
				t.Errorf("missing sample %q", name)
				continue
			}
			if g != w {
				t.Errorf("sample %q = %v, want %v", name, g, w)
			}
		}
		for name := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("unexpected sample %q = %v", name, got[name])
			}
		}
	})

	t.Run("aggregation", func(t *testing.T) {
		for _, c := range []struct {
			name      string
			got, want uint64
		}{
			{"AllocObjects", agg.AllocObjects, 30},
			{"AllocSpace", agg.AllocSpace, 27168},
			{"InuseObjects", agg.InuseObjects, 10},
			{"InuseSpace", agg.InuseSpace, 9184},
			{"ReqSpace", agg.ReqSpace, 8192 + 300 + 220 + 90 + 100 + 64 + 64 + 20},
			{"YoungSkipped", agg.YoungSkipped, 2},
			{"YoungSkippedSpace", agg.YoungSkippedSpace, 64 + 8192},
			{"MissingStacks", agg.MissingStacks, 2},
			{"UnresolvedFrames", agg.UnresolvedFrames, 1},
			{"len(Samples)", uint64(len(agg.Samples)), 10},
		} {
			if c.got != c.want {
				t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
			}
		}
		if agg.Meta.MinAge != fixtureAge {
			t.Errorf("Meta.MinAge = %v, want %v", agg.Meta.MinAge, fixtureAge)
		}
		for i := 1; i < len(agg.Samples); i++ {
			if agg.Samples[i-1].InuseSpace < agg.Samples[i].InuseSpace {
				t.Errorf("samples not sorted by in-use space at %d", i)
			}
		}
		for _, s := range agg.Samples {
			for _, f := range s.Frames {
				if s.Stack >= 0 && f.Addr>>32 != 0xffffffff {
					t.Errorf("frame %q has address %#x, want the walked kernel address", f.Function, f.Addr)
				}
			}
		}
	})

	t.Run("labels are only set when known", func(t *testing.T) {
		for _, s := range p.Sample {
			for k, vs := range s.Label {
				if len(vs) != 1 || vs[0] == "" {
					t.Errorf("sample %q: label %s = %q", sampleName(s), k, vs)
				}
			}
		}
	})

	t.Run("comments", func(t *testing.T) {
		all := strings.Join(p.Comments, "\n")
		for _, want := range []string{
			"kmemprof linux 6.8.0-45-generic, attach raw_tp",
			"hooks: kmem:kmalloc, kmem:kfree, kmem:mm_page_alloc",
			"start 2025-03-14T15:08:26Z, duration 1m0s, min-age 10s, filters: comm!=kmemprof",
			"counters: events=1234 young_skipped=2",
			"losses: ringbuf_drops=3 unmatched_frees=0 stack_missing=2 frames_unresolved=1",
			"loss ringbuf_drops=3: events dropped because the ring buffer was full",
			"loss stack_missing=2: ",
			"loss frames_unresolved=1: ",
			"note: fixture",
		} {
			if !slices.ContainsFunc(p.Comments, func(c string) bool { return strings.HasPrefix(c, want) }) {
				t.Errorf("no comment starting with %q in:\n%s", want, all)
			}
		}
		if !strings.HasPrefix(p.Comments[0], "kmemprof") {
			t.Errorf("first comment = %q, want kmemprof...", p.Comments[0])
		}
		if strings.Contains(all, "unmatched_frees=0:") {
			t.Errorf("a zero loss counter got an explanation line:\n%s", all)
		}
	})

	t.Run("mapping and locations", func(t *testing.T) {
		if len(p.Mapping) != 1 {
			t.Fatalf("%d mappings, want 1", len(p.Mapping))
		}
		m := p.Mapping[0]
		if m.File != "[kernel.kallsyms]" || !m.HasFunctions || m.ID != 1 {
			t.Errorf("mapping = %+v, want [kernel.kallsyms] with functions", m)
		}
		// Trimmed frames are gone, but the all-plumbing stack keeps
		// bpf_trace_run2, the lowest address.
		if m.Start != aTraceRun2 || m.Limit != aNftAlloc+1 {
			t.Errorf("mapping [%#x, %#x), want [%#x, %#x)", m.Start, m.Limit, uint64(aTraceRun2), uint64(aNftAlloc+1))
		}
		seen := make(map[uint64]bool)
		for _, l := range p.Location {
			if len(l.Line) != 1 || l.Line[0].Function == nil || l.Line[0].Function.Name == "" {
				t.Errorf("location %d (%#x) has no function name", l.ID, l.Address)
				continue
			}
			name := l.Line[0].Function.Name
			if strings.HasPrefix(name, "[stack lost") {
				if l.Mapping != nil || l.Address != 0 {
					t.Errorf("placeholder %q: mapping %v address %#x, want none", name, l.Mapping, l.Address)
				}
				continue
			}
			if l.Mapping != m {
				t.Errorf("location %q is not in the kernel mapping", name)
			}
			if l.Address < m.Start || l.Address >= m.Limit {
				t.Errorf("location %q address %#x outside the mapping", name, l.Address)
			}
			if seen[l.Address] {
				t.Errorf("two locations for address %#x", l.Address)
			}
			seen[l.Address] = true
		}
		files := make(map[string]string)
		for _, f := range p.Function {
			files[f.Name] = f.Filename
		}
		for name, want := range map[string]string{
			"alloc_foo":           "vmlinux",
			"nft_trans_alloc_gfp": "[nf_tables]",
			"bpf_prog_0123456789abcdef_mm_page_alloc": "[bpf]",
			"[unknown 0xffffffff81777777]":            "",
		} {
			if got, ok := files[name]; !ok || got != want {
				t.Errorf("function %q filename = %q (present %v), want %q", name, got, ok, want)
			}
		}
	})

	t.Run("trimming", func(t *testing.T) {
		for _, s := range p.Sample {
			name := s.Location[0].Line[0].Function.Name
			if len(s.Location) > 2 && (strings.HasPrefix(name, "bpf_") || strings.HasPrefix(name, "__bpf_trace")) {
				t.Errorf("sample %q still starts with BPF plumbing", sampleName(s))
			}
		}
	})

	t.Run("golden", func(t *testing.T) {
		p := p.Copy()
		p.TimeNanos = 0 // p.String prints it in the local time zone
		checkGolden(t, "fixture.profile.txt", []byte(p.String()))
	})
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestAggregateOptions(t *testing.T) {
	firstFrames := func(t *testing.T, agg *tracer.Aggregation, stack tracer.StackID) string {
		t.Helper()
		for _, s := range agg.Samples {
			if s.Stack == stack {
				var names []string
				for _, f := range s.Frames {
					names = append(names, f.Function)
				}
				return strings.Join(names, ";")
			}
		}
		t.Fatalf("no sample with stack %d", stack)
		return ""
	}
	tests := []struct {
		name   string
		opt    tracer.Options
		sym    func(t *testing.T) tracer.Symbolizer
		check  func(t *testing.T, agg *tracer.Aggregation)
		errStr string
	}{
		{
			name: "no trimming",
			opt:  tracer.Options{TrimLeading: []string{}},
			check: func(t *testing.T, agg *tracer.Aggregation) {
				got := firstFrames(t, agg, sKmalloc)
				if !strings.HasPrefix(got, "bpf_prog_6deef7357e7b4530_kmalloc;bpf_trace_run2;__bpf_trace_kmalloc;__kmalloc_noprof") {
					t.Errorf("frames = %s, want untrimmed", got)
				}
			},
		},
		{
			name: "custom trimming",
			opt:  tracer.Options{TrimLeading: []string{"bpf_prog_"}},
			check: func(t *testing.T, agg *tracer.Aggregation) {
				if got := firstFrames(t, agg, sKmalloc); !strings.HasPrefix(got, "bpf_trace_run2;") {
					t.Errorf("frames = %s, want only bpf_prog_ dropped", got)
				}
			},
		},
		{
			name: "no min age keeps young records",
			opt:  tracer.Options{},
			check: func(t *testing.T, agg *tracer.Aggregation) {
				if agg.YoungSkipped != 0 || agg.InuseObjects != 12 {
					t.Errorf("young skipped %d, in-use objects %d; want 0, 12", agg.YoungSkipped, agg.InuseObjects)
				}
			},
		},
		{
			name: "cgroup ids without a resolver",
			opt:  tracer.Options{},
			check: func(t *testing.T, agg *tracer.Aggregation) {
				for _, s := range agg.Samples {
					if s.CgroupID == 7 && s.CgroupPath != "7" {
						t.Errorf("cgroup path = %q, want 7", s.CgroupPath)
					}
					if s.CgroupID == 0 && s.CgroupPath != "" {
						t.Errorf("cgroup path = %q for id 0, want empty", s.CgroupPath)
					}
				}
			},
		},
		{
			name: "nil symbolizer",
			opt:  tracer.Options{},
			sym:  func(*testing.T) tracer.Symbolizer { return nil },
			check: func(t *testing.T, agg *tracer.Aggregation) {
				// The referenced stacks hold 18 distinct addresses.
				if agg.UnresolvedFrames != 18 {
					t.Errorf("unresolved = %d, want 18", agg.UnresolvedFrames)
				}
				p, err := agg.Profile()
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range p.Function {
					if f.Name == "" {
						t.Errorf("function %d has no name", f.ID)
					}
				}
			},
		},
		{
			name:   "min age without snapshot time",
			opt:    tracer.Options{MinAge: 1},
			errStr: "Snapshot.Taken",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := fixture()
			if tt.errStr != "" {
				snap.Taken = time.Time{}
			}
			var sym tracer.Symbolizer = newFakeSymbolizer(t)
			if tt.sym != nil {
				sym = tt.sym(t)
			}
			agg, err := tracer.Aggregate(snap, sym, tt.opt)
			if tt.errStr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errStr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.errStr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, agg)
		})
	}
}

func TestAggregateNil(t *testing.T) {
	if _, err := tracer.Aggregate(nil, nil, tracer.Options{}); err == nil {
		t.Error("Aggregate(nil) succeeded")
	}
}

func TestProfileOnlyLostStacks(t *testing.T) {
	snap := &tracer.Snapshot{
		Platform: testPlatform,
		Records:  []tracer.Record{{Key: kLost, BytesAlloc: 64}},
	}
	agg, err := tracer.Aggregate(snap, nil, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	q, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Mapping) != 0 || len(q.Sample) != 1 {
		t.Errorf("%d mappings, %d samples; want 0, 1", len(q.Mapping), len(q.Sample))
	}
}

func TestProfileEmpty(t *testing.T) {
	agg, err := tracer.Aggregate(&tracer.Snapshot{}, nil, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := profile.Parse(&buf); err != nil {
		t.Fatal(err)
	}
}

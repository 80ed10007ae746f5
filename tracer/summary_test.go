package tracer_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kmemprof/kmemprof/tracer"
)

func TestWriteSummary(t *testing.T) {
	agg, _, _ := buildFixture(t)
	var buf bytes.Buffer
	if err := agg.WriteSummary(&buf, 0); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Logf("summary:\n%s", out)
	lines := strings.Split(out, "\n")

	t.Run("top line", func(t *testing.T) {
		if !strings.Contains(lines[0], "IN-USE") || !strings.Contains(lines[0], "WHERE") {
			t.Errorf("header = %q", lines[0])
		}
		top := lines[1]
		for _, want := range []string{"8.0 KiB", " 1 ", "89.2%", "page", "ftrace_process_locs < ftrace_init < start_kernel"} {
			if !strings.Contains(top, want) {
				t.Errorf("top line %q does not contain %q", top, want)
			}
		}
		if strings.Contains(top, "alloc_pages") {
			t.Errorf("top line %q shows allocator frames", top)
		}
	})

	t.Run("rows merge pids", func(t *testing.T) {
		// kmalloc-64 from pid 100 and 101: one row, 3 objects, 192 bytes.
		var row string
		for _, l := range lines {
			if strings.Contains(l, "alloc_foo < foo_init < do_syscall_64") && strings.Contains(l, "kmalloc-64") {
				if row != "" {
					t.Errorf("two rows for the same call site:\n%s\n%s", row, l)
				}
				row = l
			}
		}
		if !strings.Contains(row, "192 B") || !strings.Contains(row, " 3 ") {
			t.Errorf("row = %q, want 192 B in 3 objects", row)
		}
	})

	t.Run("lost stacks and pools", func(t *testing.T) {
		for _, want := range []string{"[stack lost: evicted from stack map]", "[stack lost: bucket collision]", "pool/NonPaged", "Tag1"} {
			if !strings.Contains(out, want) {
				t.Errorf("summary does not mention %q", want)
			}
		}
	})

	t.Run("losses", func(t *testing.T) {
		for _, want := range []string{
			"! ringbuf_drops  ",
			"losses (SOME DATA LOST OR SUSPECT): ringbuf_drops=3 unmatched_frees=0 stack_missing=2 frames_unresolved=1",
			"counters: events=1234 young_skipped=2",
			"! stack_missing  ",
			"! frames_unresolved",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("summary does not contain %q", want)
			}
		}
		if strings.Contains(out, "! unmatched_frees") || strings.Contains(out, "! events") {
			t.Error("zero or non-loss counter marked as a loss")
		}
	})

	t.Run("requested share", func(t *testing.T) {
		if !strings.Contains(lines[0], "     %    REQ%  CACHE") {
			t.Errorf("header %q has no REQ%% column after %%", lines[0])
		}
		// Requested / allocated bytes of the in-use allocations of each
		// row: (40+50+64)/192 for the merged kmalloc-64 row.
		for _, want := range [][2]string{
			{"alloc_foo < foo_init < do_syscall_64", "   2.1%   80.2%  kmalloc-64 "},
			{"[stack lost: evicted from stack map]", "   2.8%   85.9%  kmalloc-128 "},
			{"ftrace_process_locs", "  89.2%  100.0%  - "},
		} {
			found := false
			for _, l := range lines {
				if strings.Contains(l, want[0]) && strings.Contains(l, want[1]) {
					found = true
				}
			}
			if !found {
				t.Errorf("no row for %s with %q", want[0], want[1])
			}
		}
	})

	t.Run("totals", func(t *testing.T) {
		if !strings.Contains(out, "outstanding: 10 objects, 9.0 KiB in 10 samples; allocated during the capture: 30 objects, 26.5 KiB") {
			t.Errorf("no totals line in:\n%s", out)
		}
	})

	t.Run("golden", func(t *testing.T) {
		checkGolden(t, "fixture.summary.txt", buf.Bytes())
	})

	t.Run("row limit", func(t *testing.T) {
		var buf bytes.Buffer
		if err := agg.WriteSummary(&buf, 2); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "... and 5 more call sites") {
			t.Errorf("no truncation note in:\n%s", buf.String())
		}
	})
}

func TestWriteSummaryRequestedUnknown(t *testing.T) {
	// ETW events and kprobe captures may not know the requested size.
	snap := &tracer.Snapshot{
		Platform: testPlatform,
		Stacks:   map[tracer.StackID][]uint64{1: {0xffffffff81000000}},
		Records: []tracer.Record{
			{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "kmalloc-64"}, BytesAlloc: 64},
			{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "kmalloc-32"}, BytesAlloc: 32, BytesReq: 8},
		},
	}
	agg, err := tracer.Aggregate(snap, nil, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := agg.WriteSummary(&buf, 1); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	for i, want := range []string{
		"  IN-USE  OBJECTS      %  REQ%  CACHE       KIND  WHERE",
		"    64 B        1  66.7%     -  kmalloc-64  slab  ",
		"                                ... and 1 more call sites",
	} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d = %q, want it to start with %q", i, lines[i], want)
		}
	}
}

func TestWriteSummaryEmpty(t *testing.T) {
	agg, err := tracer.Aggregate(&tracer.Snapshot{}, nil, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := agg.WriteSummary(&buf, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "no outstanding allocations") {
		t.Errorf("summary = %q", buf.String())
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tt := range []struct {
		n    uint64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{2516582, "2.4 MiB"},
		{1<<20 - 1, "1.0 MiB"},
		{5 << 30, "5.0 GiB"},
		{1<<64 - 1, "16.0 EiB"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			if got := tracer.HumanBytes(tt.n); got != tt.want {
				t.Errorf("HumanBytes(%d) = %q, want %q", tt.n, got, tt.want)
			}
		})
	}
}

// TestMergedCaches: a slab cache others were merged into is named with them
// in the summary (at most three, then a count) and labelled in the profile.
func TestMergedCaches(t *testing.T) {
	agg, _, _ := buildFixture(t)
	agg.MergedCaches = map[string][]string{"kmalloc-64": {"damon_region", "ftrace_event_field"}}
	var buf bytes.Buffer
	if err := agg.WriteSummary(&buf, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "kmalloc-64 (merged: damon_region, ftrace_event_field)") {
		t.Errorf("summary does not name the merged caches:\n%s", buf.String())
	}
	p, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	var labelled int
	for _, s := range p.Sample {
		if c := s.Label[tracer.LabelCache]; len(c) == 1 && c[0] == "kmalloc-64" {
			if got := s.Label[tracer.LabelMerged]; len(got) != 1 || got[0] != "damon_region,ftrace_event_field" {
				t.Errorf("kmalloc-64 sample labelled %s=%v", tracer.LabelMerged, got)
			}
			labelled++
		} else if len(s.Label[tracer.LabelMerged]) != 0 {
			t.Errorf("sample of cache %v labelled %s", c, tracer.LabelMerged)
		}
	}
	if labelled == 0 {
		t.Error("no kmalloc-64 sample in the fixture")
	}
	if got := tracer.MergedNote([]string{"a", "b", "c", "d", "e"}); got != "(merged: a, b, c +2)" {
		t.Errorf("MergedNote of five = %q", got)
	}
}

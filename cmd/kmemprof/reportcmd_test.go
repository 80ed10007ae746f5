package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/tracer"
)

// TestReportOfSavedProfile: kmemprof report of a profile that record's
// writer wrote prints the summary record printed, and the capture's facts.
func TestReportOfSavedProfile(t *testing.T) {
	now := time.Unix(5000, 0)
	snap := &tracer.Snapshot{
		Platform: bpf.Platform,
		Meta:     tracer.Meta{Platform: "linux", Kernel: "6.12.0", AttachMode: "raw_tp", Hooks: []string{"kmem:kmalloc"}, Counters: []tracer.Counter{{Name: "alloc_at_tracked_ptr", Value: 3, Loss: true, Help: "a free was missed"}}},
		Taken:    now,
		Stacks: map[tracer.StackID][]uint64{
			1: {0xffffffff81300010, 0xffffffff81400020, 0xffffffff81500030},
			2: {0xffffffff81300110, 0xffffffff81400020, 0xffffffff81500030},
		},
	}
	for i := 0; i < 5; i++ {
		snap.Records = append(snap.Records, tracer.Record{Key: tracer.Key{Kind: tracer.KindSlab, Stack: tracer.StackID(1 + i%2), Cache: "kmalloc-64", PID: 42}, BytesAlloc: 64, BytesReq: 40, Time: now.UnixNano()})
	}
	names := map[uint64]string{0xffffffff81300000: "__kmalloc_cache_noprof", 0xffffffff81300100: "kmem_cache_alloc_noprof", 0xffffffff81400000: "do_eventfd", 0xffffffff81500000: "__x64_sys_eventfd2"}
	sym := symbolizerFunc(func(pc uint64) (tracer.Symbol, bool) {
		start := pc &^ 0xff
		n, ok := names[start]
		return tracer.Symbol{Name: n, Start: start}, ok
	})
	agg, err := tracer.Aggregate(snap, sym, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "kmem.pb.gz")
	var summary, stderr bytes.Buffer
	if err := writeOutputs(&recordOptions{output: out, top: 10}, agg, &summary, &stderr, nil); err != nil {
		t.Fatal(err)
	}
	code, got, errOut := runInProcess("report", out)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(got, summary.String()) {
		t.Errorf("report does not hold the capture's summary:\n--- capture\n%s\n--- report\n%s", summary.String(), got)
	}
	for _, w := range []string{"kmemprof linux 6.12.0, attach raw_tp", "hooks: kmem:kmalloc", "! alloc_at_tracked_ptr", "62.5%"} {
		if !strings.Contains(got, w) {
			t.Errorf("report lacks %q:\n%s", w, got)
		}
	}
	// Two stacks that differ only in the allocator called are two rows.
	if n := strings.Count(got, "do_eventfd < __x64_sys_eventfd2"); n != 2 {
		t.Errorf("%d rows through do_eventfd, want 2:\n%s", n, got)
	}
}

func TestReportRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pb.gz")
	if err := os.WriteFile(junk, []byte("not a profile"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runInProcess("report", junk)
	if code != exitError || !strings.Contains(errOut, "is not a pprof profile") {
		t.Errorf("junk: exit %d, %q", code, errOut)
	}
}

type symbolizerFunc func(pc uint64) (tracer.Symbol, bool)

func (f symbolizerFunc) Lookup(pc uint64) (tracer.Symbol, bool) { return f(pc) }

// TestSecondCaptureKeepsFirst: a capture written over an earlier profile
// keeps it as FILE.old, and says so.
func TestSecondCaptureKeepsFirst(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "kmem.pb.gz")
	write := func(cache string) string {
		now := time.Unix(5000, 0)
		agg, err := tracer.Aggregate(&tracer.Snapshot{
			Taken:   now,
			Stacks:  map[tracer.StackID][]uint64{1: {0xffffffff81400020}},
			Records: []tracer.Record{{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: cache}, BytesAlloc: 64, Time: now.UnixNano()}},
		}, nil, tracer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if err := writeOutputs(&recordOptions{output: out}, agg, &stdout, &stderr, nil); err != nil {
			t.Fatal(err)
		}
		return stderr.String()
	}
	if msg := write("first"); strings.Contains(msg, ".old") {
		t.Errorf("first capture: %q", msg)
	}
	if msg := write("second"); !strings.Contains(msg, "kept the previous "+out+" as "+out+".old") {
		t.Errorf("second capture does not say it kept the first: %q", msg)
	}
	for path, want := range map[string]string{out: "second", out + ".old": "first"} {
		code, got, errOut := runInProcess("report", path)
		if code != exitOK || !strings.Contains(got, want) {
			t.Errorf("%s: exit %d, %s %s; want cache %s", path, code, got, errOut, want)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v", path, fi.Mode(), err)
		}
	}
}

// TestTopZeroKeepsLosses: --top 0 prints no summary, but still the losses.
func TestTopZeroKeepsLosses(t *testing.T) {
	now := time.Unix(5000, 0)
	snap := &tracer.Snapshot{
		Meta:    tracer.Meta{Counters: []tracer.Counter{{Name: "alloc_at_tracked_ptr", Value: 3, Loss: true, Help: "a free was missed"}, {Name: "tracked", Value: 9}}},
		Taken:   now,
		Stacks:  map[tracer.StackID][]uint64{1: {0xffffffff81400020}},
		Records: []tracer.Record{{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "filp"}, BytesAlloc: 64, Time: now.UnixNano()}},
	}
	for _, lost := range []bool{true, false} {
		if !lost {
			snap.Meta.Counters[0].Value = 0
		}
		agg, err := tracer.Aggregate(snap, nil, tracer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if err := writeOutputs(&recordOptions{output: filepath.Join(t.TempDir(), "k.pb.gz")}, agg, &stdout, &stderr, nil); err != nil {
			t.Fatal(err)
		}
		if stdout.Len() != 0 {
			t.Errorf("--top 0 printed a summary: %q", stdout.String())
		}
		if got := strings.Contains(stderr.String(), "! alloc_at_tracked_ptr"); got != lost {
			t.Errorf("loss %v: stderr %q", lost, stderr.String())
		}
	}
}

// TestOutputToStdout: -o - writes the profile to stdout, the summary to
// stderr, and no file named "-".
func TestOutputToStdout(t *testing.T) {
	now := time.Unix(5000, 0)
	agg, err := tracer.Aggregate(&tracer.Snapshot{
		Taken:   now,
		Stacks:  map[tracer.StackID][]uint64{1: {0xffffffff81400020}},
		Records: []tracer.Record{{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "filp"}, BytesAlloc: 64, Time: now.UnixNano()}},
	}, nil, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	var stdout, stderr bytes.Buffer
	if err := checkOutput(stdoutName, &stdout); err != nil {
		t.Fatal(err)
	}
	if err := writeOutputs(&recordOptions{output: stdoutName, top: 5}, agg, &stdout, &stderr, nil); err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(&stdout)
	if err != nil || len(p.Sample) != 1 {
		t.Fatalf("stdout is not the profile: %v", err)
	}
	if !strings.Contains(stderr.String(), "IN-USE") || !strings.Contains(stderr.String(), "filp") {
		t.Errorf("the summary is not on stderr: %q", stderr.String())
	}
	if _, err := os.Stat("-"); err == nil {
		t.Error("a file named - was written")
	}
	if code, _, errOut := runInProcess("record", "-o", "-", "--http", "127.0.0.1:0"); code != exitUsage || !strings.Contains(errOut, "not -o -") {
		t.Errorf("-o - with --http: exit %d, %q", code, errOut)
	}
}

// TestConvertChecksBeforeReading: convert refuses an unwritable -o and a
// missing --pooltag before it reads the trace (which may take minutes): the
// trace here does not even exist.
func TestConvertChecksBeforeReading(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "absent.etl")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", filepath.Join(dir, "no", "such", "dir", "p.pb.gz"), trace}, "checking output file"},
		{[]string{"-o", filepath.Join(dir, "p.pb.gz"), "--pooltag", filepath.Join(dir, "none.txt"), trace}, "--pooltag"},
	} {
		code, _, errOut := runInProcess(append([]string{"convert"}, tc.args...)...)
		if code == exitOK || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "absent.etl") {
			t.Errorf("%q: exit %d, %q", tc.args, code, errOut)
		}
	}
}

// TestReportDiff: report --diff lists the call sites that hold more than in
// the base, with both figures, and says what a diff of two windows is.
func TestReportDiff(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, filp, dentry int) string {
		now := time.Unix(5000, 0)
		snap := &tracer.Snapshot{
			Platform: bpf.Platform,
			Taken:    now,
			Stacks:   map[tracer.StackID][]uint64{1: {0xffffffff81400020}, 2: {0xffffffff81500030}},
		}
		for i := 0; i < filp; i++ {
			snap.Records = append(snap.Records, tracer.Record{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "filp"}, BytesAlloc: 256, Time: now.UnixNano()})
		}
		for i := 0; i < dentry; i++ {
			snap.Records = append(snap.Records, tracer.Record{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 2, Cache: "dentry"}, BytesAlloc: 192, Time: now.UnixNano()})
		}
		names := map[uint64]string{0xffffffff81400000: "alloc_empty_file", 0xffffffff81500000: "__d_alloc"}
		agg, err := tracer.Aggregate(snap, symbolizerFunc(func(pc uint64) (tracer.Symbol, bool) {
			n, ok := names[pc&^0xff]
			return tracer.Symbol{Name: n, Start: pc &^ 0xff}, ok
		}), tracer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, name)
		var so, se bytes.Buffer
		if err := writeOutputs(&recordOptions{output: out}, agg, &so, &se, nil); err != nil {
			t.Fatal(err)
		}
		return out
	}
	base, now := write("base.pb.gz", 10, 50), write("now.pb.gz", 40, 20)
	code, out, errOut := runInProcess("report", "--diff", base, now)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(out, "\n")
	var rows []string
	for i, l := range lines {
		if strings.Contains(l, "DELTA") {
			rows = lines[i+1:]
			break
		}
	}
	if len(rows) == 0 || !strings.Contains(rows[0], "+7.5 KiB") || !strings.Contains(rows[0], "+30") || !strings.Contains(rows[0], "filp") {
		t.Errorf("the first row is not filp's growth (30 x 256 B):\n%s", out)
	}
	if strings.Contains(out, "dentry  ") {
		t.Errorf("dentry, which holds less, is listed as holding more:\n%s", out)
	}
	for _, w := range []string{"1 call sites hold more, 1 less", "not what the kernel gained"} {
		if !strings.Contains(out, w) {
			t.Errorf("report --diff lacks %q:\n%s", w, out)
		}
	}
}

// TestReportSampleIndex: --sample-index ranks the rows by that sample type;
// growth without growth, and unknown types, are refused.
func TestReportSampleIndex(t *testing.T) {
	now := time.Unix(5000, 0)
	snap := &tracer.Snapshot{
		Taken:  now,
		Stacks: map[tracer.StackID][]uint64{1: {0xffffffff81400020}, 2: {0xffffffff81500030}},
		// Stack 1: one big object in use. Stack 2: 100 small ones made, 3 in use.
		Records: []tracer.Record{{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "big"}, BytesAlloc: 4096, Time: now.UnixNano()}},
		Totals: []tracer.Total{
			{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "big"}, Count: 1, Bytes: 4096},
			{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 2, Cache: "small"}, Count: 100, Bytes: 100 * 64},
		},
	}
	for i := 0; i < 3; i++ {
		snap.Records = append(snap.Records, tracer.Record{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 2, Cache: "small"}, BytesAlloc: 64, Time: now.UnixNano()})
	}
	agg, err := tracer.Aggregate(snap, nil, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "k.pb.gz")
	var so, se bytes.Buffer
	if err := writeOutputs(&recordOptions{output: out}, agg, &so, &se, nil); err != nil {
		t.Fatal(err)
	}
	first := func(index string) string {
		args := []string{"report", out}
		if index != "" {
			args = append(args, "--sample-index", index)
		}
		code, got, errOut := runInProcess(args...)
		if code != exitOK {
			t.Fatalf("%v: exit %d %s", args, code, errOut)
		}
		_, rest, _ := strings.Cut(got, "WHERE\n")
		row, _, _ := strings.Cut(rest, "\n")
		return row
	}
	for index, want := range map[string]string{"": "big", "inuse_space": "big", "inuse_objects": "small", "alloc_objects": "small", "alloc_space": "small"} {
		if row := first(index); !strings.Contains(row, " "+want+" ") {
			t.Errorf("--sample-index %q: first row %q, want %s's", index, row, want)
		}
	}
	if row := first("alloc_objects"); !strings.Contains(row, " 100 ") {
		t.Errorf("alloc_objects: the first row %q does not show the 100 allocations", row)
	}
	for _, bad := range []string{"growth_space", "cpu"} {
		if code, _, errOut := runInProcess("report", "--sample-index", bad, out); code == exitOK {
			t.Errorf("--sample-index %s accepted: %s", bad, errOut)
		}
	}
}

package etw

import (
	"strings"
	"testing"

	"github.com/kmemprof/kmemprof/symbolize"
	"github.com/kmemprof/kmemprof/tracer"
)

// TestDriverUnloadedBeforeTheEnd: a driver that leaks and is unloaded
// before the capture ends (the classic case) keeps its name in the stacks
// and the driver label.
func TestDriverUnloadedBeforeTheEnd(t *testing.T) {
	const nt, leak = 0xfffff80000000000, 0xfffff80005000000
	drivers := symbolize.NewDriverMap()
	m := NewMatcher(MatcherConfig{RawTimestamps: true, Images: drivers})
	m.Event(ImageGUID, OpImageDCStart, Header{}, imagePayload(8, nt, 0x1000000, 0, `\SystemRoot\system32\ntoskrnl.exe`), 8)
	m.Event(ImageGUID, OpImageLoad, Header{TimeStamp: 5}, imagePayload(8, leak, 0x10000, 0, `\??\C:\drivers\myleak.sys`), 8)
	for i := range 10 {
		ts := int64(10 + 2*i)
		m.Event(PoolTraceGUID, OpPoolAlloc, Header{ThreadID: 7, ProcessID: 4, TimeStamp: ts}, poolPayload(OpPoolAlloc, 8, 512, TagValue("Leak"), 256, 0xffffa00000100000+uint64(i)*0x100, 0), 8)
		m.Event(StackWalkGUID, OpStackWalk, Header{ThreadID: 7, TimeStamp: ts + 1}, stackPayload(8, uint64(ts), 4, 7, nt+0x1234, leak+0x2345, nt+0x3456), 8)
	}
	m.Event(ImageGUID, OpImageUnload, Header{TimeStamp: 100}, imagePayload(8, leak, 0x10000, 0, `\??\C:\drivers\myleak.sys`), 8)
	if drivers.Len() != 1 {
		t.Errorf("%d images loaded after the unload, want 1", drivers.Len())
	}
	agg, err := tracer.Aggregate(m.Snapshot(tracer.Meta{Platform: "windows"}), DriverSymbolizer(drivers), tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Sample) != 1 {
		t.Fatalf("%d samples, want the one leak", len(p.Sample))
	}
	s := p.Sample[0]
	if d := s.Label[tracer.LabelDriver]; len(d) != 1 || d[0] != "myleak.sys" {
		t.Errorf("driver label %v, want myleak.sys", d)
	}
	var names []string
	for _, l := range s.Location {
		for _, ln := range l.Line {
			names = append(names, ln.Function.Name)
		}
	}
	if !strings.Contains(strings.Join(names, " "), "myleak.sys+0x2345") {
		t.Errorf("frames %v, want myleak.sys+0x2345", names)
	}
}

// TestDriverLoadedOverAnUnloadedOne: a driver loaded, after another was
// unloaded, over part of its range does not take over the earlier driver's
// stacks: each stack is named by the images there when it was seen.
func TestDriverLoadedOverAnUnloadedOne(t *testing.T) {
	const nt, base = 0xfffff80000000000, 0xfffff80005000000
	drivers := symbolize.NewDriverMap()
	m := NewMatcher(MatcherConfig{RawTimestamps: true, Images: drivers})
	m.Event(ImageGUID, OpImageDCStart, Header{}, imagePayload(8, nt, 0x1000000, 0, `\SystemRoot\system32\ntoskrnl.exe`), 8)
	leak := func(ts int64, entry uint64) {
		m.Event(PoolTraceGUID, OpPoolAlloc, Header{ThreadID: 7, ProcessID: 4, TimeStamp: ts}, poolPayload(OpPoolAlloc, 8, 512, TagValue("Leak"), 256, entry, 0), 8)
		m.Event(StackWalkGUID, OpStackWalk, Header{ThreadID: 7, TimeStamp: ts + 1}, stackPayload(8, uint64(ts), 4, 7, nt+0x1234, base+0x2345, nt+0x3456), 8)
	}
	m.Event(ImageGUID, OpImageLoad, Header{TimeStamp: 5}, imagePayload(8, base, 0x10000, 0, `\??\C:\drivers\first.sys`), 8)
	leak(10, 0xffffa00000100000)
	m.Event(ImageGUID, OpImageUnload, Header{TimeStamp: 20}, imagePayload(8, base, 0x10000, 0, `\??\C:\drivers\first.sys`), 8)
	m.Event(ImageGUID, OpImageLoad, Header{TimeStamp: 30}, imagePayload(8, base-0x1000, 0x20000, 0, `\??\C:\drivers\second.sys`), 8)
	leak(40, 0xffffa00000200000)
	// After the reload, the same addresses: the second driver's.
	leak(50, 0xffffa00000300000)

	agg, err := tracer.Aggregate(m.Snapshot(tracer.Meta{Platform: "windows"}), DriverSymbolizer(drivers), tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, s := range agg.Samples {
		var names []string
		for _, f := range s.Frames {
			names = append(names, f.Function)
		}
		got[strings.Join(names, " < ")] += s.InuseObjects
	}
	want := map[string]uint64{
		"ntoskrnl.exe+0x1234 < first.sys+0x2345 < ntoskrnl.exe+0x3456":  1,
		"ntoskrnl.exe+0x1234 < second.sys+0x3345 < ntoskrnl.exe+0x3456": 2,
	}
	if len(got) != len(want) {
		t.Errorf("stacks %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d objects, want %d (all: %v)", k, got[k], n, got)
		}
	}
}

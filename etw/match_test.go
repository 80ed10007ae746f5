package etw

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// Steps of a matcher scenario. Time stamps are raw unless the case turns
// RawTimestamps off; a stack's own header time stamp is its event's + 1.

type step func(m *Matcher)

const (
	tagLeak = "Leak"
	tagNdis = "NDnd"
)

func allocStep(tid uint32, ts int64, entry uint64, tag string, size uint64) step {
	return func(m *Matcher) {
		m.Pool(Header{ThreadID: tid, ProcessID: 4, TimeStamp: ts},
			PoolEvent{Alloc: true, PoolType: 512, Tag: TagValue(tag), Size: size, Entry: entry})
	}
}

func allocSessionStep(tid uint32, ts int64, entry uint64, session uint32) step {
	return func(m *Matcher) {
		m.Pool(Header{ThreadID: tid, ProcessID: 700, TimeStamp: ts},
			PoolEvent{Alloc: true, Session: true, PoolType: 33, Tag: TagValue("Gses"), Size: 64, Entry: entry, SessionID: session})
	}
}

func freeStep(tid uint32, ts int64, entry uint64, tag string) step {
	return func(m *Matcher) {
		m.Pool(Header{ThreadID: tid, ProcessID: 4, TimeStamp: ts},
			PoolEvent{PoolType: 512, Tag: TagValue(tag), Size: 1, Entry: entry})
	}
}

func freeSessionStep(tid uint32, ts int64, entry uint64, session uint32) step {
	return func(m *Matcher) {
		m.Pool(Header{ThreadID: tid, ProcessID: 700, TimeStamp: ts},
			PoolEvent{Session: true, PoolType: 33, Tag: TagValue("Gses"), Entry: entry, SessionID: session})
	}
}

// stackStep delivers the stack of the event logged at eventTS on tid.
func stackStep(tid uint32, eventTS int64, frames ...uint64) step {
	return stackAtStep(tid, eventTS, eventTS+1, frames...)
}

// stackAtStep also sets the StackWalk event's own header time stamp.
func stackAtStep(tid uint32, eventTS, headerTS int64, frames ...uint64) step {
	return func(m *Matcher) {
		m.Stack(Header{ThreadID: tid, ProcessID: 4, TimeStamp: headerTS},
			StackEvent{EventTimeStamp: uint64(eventTS), ProcessID: 4, ThreadID: tid, Frames: frames})
	}
}

var (
	stackA = []uint64{0xfffff800002a1b30, 0xfffff80003001234, 0xfffff80003002345}
	stackB = []uint64{0xfffff800002a1b30, 0xfffff80002005678}
)

// recWant is an expected outstanding record: its address, tag and stack
// (nil frames: the lost-stack id in lost).
type recWant struct {
	addr   uint64
	tag    string
	frames []uint64
	lost   tracer.StackID
}

func TestMatcher(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      MatcherConfig
		steps    []step
		records  []recWant
		totals   int               // allocations in the totals
		counters map[string]uint64 // loss counters not listed must be 0
	}{
		{
			name:     "in order",
			cfg:      MatcherConfig{RawTimestamps: true},
			steps:    []step{allocStep(1, 100, 0xa0, tagLeak, 256), stackStep(1, 100, stackA...)},
			records:  []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}},
			totals:   1,
			counters: map[string]uint64{CounterEventsPoolAlloc: 1, CounterEventsStack: 1, CounterTracked: 1},
		},
		{
			name:    "in order, converted time stamps",
			cfg:     MatcherConfig{},
			steps:   []step{allocStep(1, 100, 0xa0, tagLeak, 256), stackAtStep(1, 99999, 100, stackA...)},
			records: []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}},
			totals:  1,
		},
		{
			name: "stack before its event",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				stackStep(1, 100, stackA...), allocStep(1, 100, 0xa0, tagLeak, 256),
				allocStep(1, 200, 0xb0, tagLeak, 256), stackStep(1, 200, stackB...),
			},
			records: []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}, {addr: 0xb0, tag: tagLeak, frames: stackB}},
			totals:  2,
		},
		{
			name:    "stack before its event, converted time stamps",
			cfg:     MatcherConfig{},
			steps:   []step{stackAtStep(1, 0, 100, stackA...), allocStep(1, 100, 0xa0, tagLeak, 256)},
			records: []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}},
			totals:  1,
		},
		{
			name: "missing stack, settled by the next event of the thread",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				allocStep(1, 100, 0xa0, tagLeak, 256),
				allocStep(2, 150, 0xc0, tagLeak, 256), stackStep(2, 150, stackB...), // another thread: no effect
				allocStep(1, 200, 0xb0, tagLeak, 256), stackStep(1, 200, stackA...),
			},
			records: []recWant{
				{addr: 0xa0, tag: tagLeak, lost: tracer.StackLostNone},
				{addr: 0xc0, tag: tagLeak, frames: stackB},
				{addr: 0xb0, tag: tagLeak, frames: stackA},
			},
			totals:   3,
			counters: map[string]uint64{CounterStackLostNone: 1},
		},
		{
			name:     "missing stack, settled by the snapshot",
			cfg:      MatcherConfig{RawTimestamps: true},
			steps:    []step{allocStep(1, 100, 0xa0, tagLeak, 256)},
			records:  []recWant{{addr: 0xa0, tag: tagLeak, lost: tracer.StackLostNone}},
			totals:   1,
			counters: map[string]uint64{CounterStackLostNone: 1},
		},
		{
			name: "stack for an unknown event",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				allocStep(1, 100, 0xa0, tagLeak, 256), stackStep(1, 100, stackA...),
				stackStep(1, 150, stackB...), // its event was lost
				allocStep(1, 200, 0xb0, tagLeak, 256), stackStep(1, 200, stackA...),
				stackStep(9, 300, stackB...), // a thread with no event at all
			},
			records:  []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}, {addr: 0xb0, tag: tagLeak, frames: stackA}},
			totals:   2,
			counters: map[string]uint64{CounterStackOrphans: 2},
		},
		{
			name: "stack for an unknown event, converted time stamps",
			cfg:  MatcherConfig{},
			steps: []step{
				stackAtStep(1, 0, 150, stackB...), // logged before the next event: an orphan
				allocStep(1, 200, 0xb0, tagLeak, 256), stackAtStep(1, 0, 201, stackA...),
			},
			records:  []recWant{{addr: 0xb0, tag: tagLeak, frames: stackA}},
			totals:   1,
			counters: map[string]uint64{CounterStackOrphans: 1},
		},
		{
			name: "stack of an older event while another waits",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				allocStep(1, 100, 0xa0, tagLeak, 256),
				stackStep(1, 90, stackB...), // not this event's: waits, then proves an orphan
				stackStep(1, 100, stackA...),
				allocStep(1, 200, 0xb0, tagLeak, 256), stackStep(1, 200, stackA...),
			},
			records:  []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}, {addr: 0xb0, tag: tagLeak, frames: stackA}},
			totals:   2,
			counters: map[string]uint64{CounterStackOrphans: 1},
		},
		{
			name: "too many early stacks",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				stackStep(1, 100, stackA...), stackStep(1, 200, stackA...), stackStep(1, 300, stackA...),
				stackStep(1, 400, stackA...), stackStep(1, 500, stackA...), stackStep(1, 600, stackA...),
				allocStep(1, 600, 0xa0, tagLeak, 256),
			},
			records:  []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}},
			totals:   1,
			counters: map[string]uint64{CounterStackOrphans: 5},
		},
		{
			name:     "empty stack",
			cfg:      MatcherConfig{RawTimestamps: true},
			steps:    []step{allocStep(1, 100, 0xa0, tagLeak, 256), stackStep(1, 100)},
			records:  []recWant{{addr: 0xa0, tag: tagLeak, lost: tracer.StackLostWalk}},
			totals:   1,
			counters: map[string]uint64{CounterStackLostWalk: 1},
		},
		{
			name: "freed, with and without stacks for frees",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				allocStep(1, 100, 0xa0, tagLeak, 256), stackStep(1, 100, stackA...),
				allocStep(1, 200, 0xb0, tagLeak, 256), stackStep(1, 200, stackA...),
				freeStep(2, 300, 0xa0, tagLeak), stackStep(2, 300, stackB...),
				freeStep(2, 400, 0xb0, tagLeak), // no stack walked for this free
				allocStep(2, 500, 0xc0, tagLeak, 256), stackStep(2, 500, stackB...),
			},
			records:  []recWant{{addr: 0xc0, tag: tagLeak, frames: stackB}},
			totals:   3,
			counters: map[string]uint64{CounterFreed: 2, CounterStacksDiscarded: 1, CounterEventsPoolFree: 2},
		},
		{
			name: "freed on another thread before its stack arrived",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				allocStep(1, 100, 0xa0, tagLeak, 256), freeStep(2, 101, 0xa0, tagLeak), stackStep(1, 100, stackA...),
			},
			totals:   1,
			counters: map[string]uint64{CounterFreed: 1, CounterFreeUntracked: 0},
		},
		{
			name: "unknown frees",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				freeStep(1, 100, 0xdead, tagLeak), freeSessionStep(1, 200, 0xbeef, 1),
			},
			counters: map[string]uint64{CounterFreeUntracked: 2},
		},
		{
			name: "session frees",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				allocSessionStep(1, 100, 0x5000, 1), stackStep(1, 100, stackA...),
				allocSessionStep(1, 200, 0x5000, 2), stackStep(1, 200, stackA...), // same address, another session
				allocSessionStep(1, 300, 0x5000, 0), stackStep(1, 300, stackA...), // session 0 is not "no session"
				allocStep(1, 400, 0x5000, tagLeak, 8), stackStep(1, 400, stackA...),
				freeSessionStep(2, 500, 0x5000, 1),
				freeStep(2, 600, 0x5000, tagLeak), // the plain allocation, not session 0's
			},
			records: []recWant{{addr: 0x5000, tag: "Gses", frames: stackA}, {addr: 0x5000, tag: "Gses", frames: stackA}},
			totals:  4,
			counters: map[string]uint64{
				CounterEventsPoolAllocSession: 3, CounterEventsPoolFreeSession: 1, CounterFreed: 2, CounterFreeCrossVariant: 0,
			},
		},
		{
			name: "session allocation freed by a plain PoolFree",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				allocSessionStep(1, 100, 0x5000, 1), stackStep(1, 100, stackA...),
				freeStep(2, 200, 0x5000, "Gses"),
			},
			totals:   1,
			counters: map[string]uint64{CounterFreed: 1, CounterFreeCrossVariant: 1},
		},
		{
			name: "plain allocation freed by a PoolFreeSession",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				allocStep(1, 100, 0x5000, tagLeak, 8), stackStep(1, 100, stackA...),
				freeSessionStep(2, 200, 0x5000, 3),
			},
			totals:   1,
			counters: map[string]uint64{CounterFreed: 1, CounterFreeCrossVariant: 1},
		},
		{
			name: "plain free of an address held by two sessions is ambiguous",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				allocSessionStep(1, 100, 0x5000, 1), stackStep(1, 100, stackA...),
				allocSessionStep(1, 200, 0x5000, 2), stackStep(1, 200, stackA...),
				freeStep(2, 300, 0x5000, "Gses"),
			},
			records:  []recWant{{addr: 0x5000, tag: "Gses", frames: stackA}, {addr: 0x5000, tag: "Gses", frames: stackA}},
			totals:   2,
			counters: map[string]uint64{CounterFreeUntracked: 1},
		},
		{
			name: "allocation at a tracked address",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{
				allocStep(1, 100, 0xa0, tagLeak, 256), stackStep(1, 100, stackA...),
				allocStep(1, 200, 0xa0, tagNdis, 512), stackStep(1, 200, stackB...),
			},
			records:  []recWant{{addr: 0xa0, tag: tagNdis, frames: stackB}},
			totals:   2,
			counters: map[string]uint64{CounterAllocAtTrackedAddr: 1, CounterTracked: 2},
		},
		{
			name: "tag filter",
			cfg:  MatcherConfig{RawTimestamps: true, Tags: []string{tagLeak, "Irp"}},
			steps: []step{
				allocStep(1, 100, 0xa0, tagLeak, 256), stackStep(1, 100, stackA...),
				allocStep(1, 200, 0xb0, tagNdis, 256), stackStep(1, 200, stackB...),
				allocStep(1, 300, 0xc0, "Irp ", 256), stackStep(1, 300, stackB...),
				freeStep(1, 400, 0xb0, tagNdis), stackStep(1, 400, stackB...),
				allocStep(1, 500, 0xd0, tagLeak, 256), stackStep(1, 500, stackA...),
				freeStep(2, 600, 0xd0, `\x00\x00\x00\x00`), // a free that reports no tag still frees
			},
			records:  []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}, {addr: 0xc0, tag: "Irp ", frames: stackB}},
			totals:   3,
			counters: map[string]uint64{CounterFiltered: 2, CounterStacksDiscarded: 2, CounterFreeUntracked: 0, CounterFreed: 1},
		},
		{
			name: "outstanding table full",
			cfg:  MatcherConfig{RawTimestamps: true, MaxOutstanding: 1},
			steps: []step{
				allocStep(1, 100, 0xa0, tagLeak, 256), stackStep(1, 100, stackA...),
				allocStep(1, 200, 0xb0, tagLeak, 256), stackStep(1, 200, stackA...),
				freeStep(1, 300, 0xb0, tagLeak),
			},
			records:  []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}},
			totals:   2,
			counters: map[string]uint64{CounterOutstandingFull: 1, CounterTracked: 1, CounterFreeUntracked: 1},
		},
		{
			name: "lost events and decode errors",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{func(m *Matcher) {
				m.Lost(LostEvents, 3)
				m.Lost(LostEvents, 2)
				m.DecodeError(ErrTruncated)
				m.DecodeError(nil)
			}},
			counters: map[string]uint64{CounterEventsLost: 5, CounterDecodeErrors: 2},
		},
		{
			name: "oversized payloads",
			cfg:  MatcherConfig{RawTimestamps: true},
			steps: []step{func(m *Matcher) {
				m.Pool(Header{ThreadID: 1, TimeStamp: 1}, PoolEvent{Tag: 1, Entry: 1, Extra: 4})
			}},
			counters: map[string]uint64{CounterOversizedPayloads: 1, CounterFreeUntracked: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMatcher(tc.cfg)
			for _, s := range tc.steps {
				s(m)
			}
			snap := m.Snapshot(tracer.Meta{})
			checkRecords(t, snap, tc.records)
			var n uint64
			for _, tot := range snap.Totals {
				n += tot.Count
			}
			if n != uint64(tc.totals) {
				t.Errorf("totals count %d allocations, want %d", n, tc.totals)
			}
			checkCounters(t, snap.Meta.Counters, tc.counters)
			checkStacks(t, snap)
			if len(m.threads)+len(m.pendingByTS)+len(m.earlyByTS) != 0 {
				t.Errorf("state left after the snapshot: %d threads, %d pending, %d early", len(m.threads), len(m.pendingByTS), len(m.earlyByTS))
			}
		})
	}
}

func checkRecords(t *testing.T, snap *tracer.Snapshot, want []recWant) {
	t.Helper()
	if len(snap.Records) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(snap.Records), len(want), snap.Records)
	}
	for i, w := range want {
		r := snap.Records[i]
		if r.Addr != w.addr || r.Cache != w.tag || r.Kind != tracer.KindPool {
			t.Errorf("record %d = addr %#x tag %q kind %v, want addr %#x tag %q", i, r.Addr, r.Cache, r.Kind, w.addr, w.tag)
		}
		switch {
		case w.frames == nil && r.Stack != w.lost:
			t.Errorf("record %d: stack %d, want %d (%s)", i, r.Stack, w.lost, tracer.StackLostName(w.lost))
		case w.frames != nil && !slices.Equal(snap.Stacks[r.Stack], w.frames):
			t.Errorf("record %d: stack %d = %#x, want %#x", i, r.Stack, snap.Stacks[r.Stack], w.frames)
		}
	}
}

func checkCounters(t *testing.T, cs []tracer.Counter, want map[string]uint64) {
	t.Helper()
	got := map[string]uint64{}
	for _, c := range cs {
		got[c.Name] = c.Value
		if _, listed := want[c.Name]; !listed && c.Loss && c.Value != 0 {
			t.Errorf("loss counter %s = %d, want 0", c.Name, c.Value)
		}
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("counter %s = %d (present %v), want %d", name, g, ok, v)
		}
	}
}

// checkStacks checks that every stack id the snapshot uses is in Stacks or
// a lost-stack id, and that Stacks holds nothing else.
func checkStacks(t *testing.T, snap *tracer.Snapshot) {
	t.Helper()
	used := map[tracer.StackID]bool{}
	for _, r := range snap.Records {
		used[r.Stack] = true
	}
	for _, tot := range snap.Totals {
		used[tot.Stack] = true
	}
	for id := range used {
		if _, ok := snap.Stacks[id]; id >= 0 && !ok {
			t.Errorf("stack %d used but not in Stacks", id)
		}
	}
	for id, frames := range snap.Stacks {
		if !used[id] || len(frames) == 0 {
			t.Errorf("stack %d in Stacks (%d frames) but not used", id, len(frames))
		}
	}
}

func TestMatcherStackDedupe(t *testing.T) {
	m := NewMatcher(MatcherConfig{RawTimestamps: true})
	for i := range 10 {
		ts := int64(100 * (i + 1))
		allocStep(uint32(i%3), ts, uint64(0x1000+i), tagLeak, 16)(m)
		frames := stackA
		if i%2 == 1 {
			frames = stackB
		}
		stackStep(uint32(i%3), ts, slices.Clone(frames)...)(m)
	}
	snap := m.Snapshot(tracer.Meta{})
	if len(snap.Stacks) != 2 {
		t.Errorf("%d distinct stacks, want 2", len(snap.Stacks))
	}
	if len(snap.Totals) != 2 || snap.Totals[0].Count+snap.Totals[1].Count != 10 {
		t.Errorf("totals = %+v, want two keys with 10 allocations", snap.Totals)
	}
}

// recordingSink is an ImageSink that logs its calls.
type recordingSink struct{ calls []string }

func (s *recordingSink) Load(base, size uint64, path string) {
	s.calls = append(s.calls, fmt.Sprintf("load %#x %#x %s", base, size, path))
}
func (s *recordingSink) Unload(base uint64) {
	s.calls = append(s.calls, fmt.Sprintf("unload %#x", base))
}

func TestMatcherImages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ptrSize int
		events  []ImageEvent
		want    []string
	}{
		{
			name: "64-bit kernel images only",
			events: []ImageEvent{
				{Op: ImageRundown, Base: 0xfffff80000000000, Size: 0x1000000, FileName: `\SystemRoot\system32\ntoskrnl.exe`},
				{Op: ImageLoad, Base: 0x00007ff700000000, Size: 0x1000, ProcessID: 1234, FileName: `C:\x.dll`},
				{Op: ImageLoad, Base: 0xfffff80003000000, Size: 0x10000, FileName: `\??\C:\myleak.sys`},
				{Op: ImageUnload, Base: 0xfffff80003000000, Size: 0x10000},
				{Op: ImageUnload, Base: 0x00007ff700000000, ProcessID: 1234},
			},
			want: []string{
				`load 0xfffff80000000000 0x1000000 \SystemRoot\system32\ntoskrnl.exe`,
				`load 0xfffff80003000000 0x10000 \??\C:\myleak.sys`,
				`unload 0xfffff80003000000`,
			},
		},
		{
			name:    "32-bit kernel half",
			ptrSize: 4,
			events: []ImageEvent{
				{Op: ImageRundown, Base: 0x82000000, Size: 0x1000, FileName: `a.sys`},
				{Op: ImageRundown, Base: 0x7ff00000, Size: 0x1000, FileName: `b.dll`},
			},
			want: []string{`load 0x82000000 0x1000 a.sys`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &recordingSink{}
			m := NewMatcher(MatcherConfig{PtrSize: tc.ptrSize, Images: sink})
			for _, ev := range tc.events {
				m.Image(Header{}, ev)
			}
			if !reflect.DeepEqual(sink.calls, tc.want) {
				t.Errorf("sink calls:\n%s\nwant:\n%s", strings.Join(sink.calls, "\n"), strings.Join(tc.want, "\n"))
			}
			checkCounters(t, m.Counters(), map[string]uint64{CounterEventsImage: uint64(len(tc.events))})
		})
	}
	// Without a sink, image events are only counted.
	m := NewMatcher(MatcherConfig{})
	m.Image(Header{}, ImageEvent{Op: ImageLoad, Base: 0xfffff80000000000, Size: 1})
	checkCounters(t, m.Counters(), map[string]uint64{CounterEventsImage: 1})
}

func TestMatcherTimes(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	fileTime := (now.UnixNano()/100 + fileTimeUnixEpoch) - 10 // 1 µs before now
	for _, tc := range []struct {
		name string
		cfg  MatcherConfig
		ts   int64
		want time.Time
	}{
		{"FILETIME", MatcherConfig{Clock: clock}, fileTime, now.Add(-time.Microsecond)},
		{"raw without conversion is the arrival time", MatcherConfig{Clock: clock, RawTimestamps: true}, 12345, now},
		{"raw with conversion", MatcherConfig{Clock: clock, RawTimestamps: true,
			Time: func(ts int64) time.Time { return now.Add(-time.Duration(ts) * time.Second) }}, 60, now.Add(-time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMatcher(tc.cfg)
			allocStep(1, tc.ts, 0xa0, tagLeak, 1)(m)
			snap := m.Snapshot(tracer.Meta{})
			if got := time.Unix(0, snap.Records[0].Time).UTC(); !got.Equal(tc.want) {
				t.Errorf("record time %v, want %v", got, tc.want)
			}
			if !snap.Taken.Equal(now) {
				t.Errorf("Taken = %v, want %v", snap.Taken, now)
			}
		})
	}
}

func TestMatcherSnapshotMeta(t *testing.T) {
	m := NewMatcher(MatcherConfig{RawTimestamps: true, ProcessName: func(pid uint32) string { return fmt.Sprintf("p%d", pid) }})
	m.DecodeError(fmt.Errorf("decoding PoolAlloc: %w", ErrTruncated))
	m.DecodeError(errors.New("second"))
	allocStep(1, 100, 0xa0, tagLeak, 1)(m)
	meta := tracer.Meta{
		Platform: "windows",
		Counters: []tracer.Counter{{Name: "caller_counter", Value: 7}},
		Comments: []string{"caller comment"},
	}
	snap := m.Snapshot(meta)
	if snap.Meta.Platform != "windows" || snap.Meta.Counters[0].Name != "caller_counter" {
		t.Errorf("caller's meta not kept first: %+v", snap.Meta)
	}
	if n := len(snap.Meta.Counters); n != 1+nCounters {
		t.Errorf("%d counters, want %d", n, 1+nCounters)
	}
	if want := []string{"caller comment", "first decode error: decoding PoolAlloc: truncated payload"}; !slices.Equal(snap.Meta.Comments, want) {
		t.Errorf("comments = %q, want %q", snap.Meta.Comments, want)
	}
	if len(meta.Counters) != 1 || len(meta.Comments) != 1 {
		t.Errorf("Snapshot changed the caller's meta slices")
	}
	if r := snap.Records[0]; r.Comm != "p4" || r.PID != 4 || r.Pool != "NonPagedNx" || r.BytesAlloc != 1 || r.BytesReq != 1 {
		t.Errorf("record = %+v", r)
	}
	for i, ci := range counterInfo {
		if ci.name == "" || ci.help == "" {
			t.Errorf("counter %d has no name or help", i)
		}
	}
}

func BenchmarkMatcher(b *testing.B) {
	frames := [][]uint64{stackA, stackB}
	m := NewMatcher(MatcherConfig{RawTimestamps: true})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ts := int64(2 * i)
		tid := uint32(i % 8)
		entry := 0xffffa00000000000 + uint64(i%4096)*0x40
		h := Header{ThreadID: tid, ProcessID: 4, TimeStamp: ts}
		if i%2 == 0 {
			m.Pool(h, PoolEvent{Alloc: true, PoolType: 512, Tag: 1, Size: 64, Entry: entry})
		} else {
			m.Pool(h, PoolEvent{PoolType: 512, Tag: 1, Entry: entry - 0x40})
		}
		m.Stack(Header{ThreadID: tid, TimeStamp: ts + 1}, StackEvent{EventTimeStamp: uint64(ts), ThreadID: tid, Frames: frames[i%2]})
	}
	b.ReportMetric(float64(m.Outstanding()), "outstanding")
}

// TestMatcherThreadless covers pool events whose header names no thread or
// process (0xFFFFFFFF), and stacks that name another thread than their
// event.
func TestMatcherThreadless(t *testing.T) {
	pool := func(tid uint32, cpu uint16, ts int64, entry uint64) step {
		return func(m *Matcher) {
			m.Pool(Header{ThreadID: tid, ProcessID: noID, TimeStamp: ts, CPU: cpu},
				PoolEvent{Alloc: true, PoolType: 1, Tag: TagValue(tagLeak), Size: 8, Entry: entry})
		}
	}
	stack := func(tid uint32, cpu uint16, eventTS, headerTS int64, frames []uint64) step {
		return func(m *Matcher) {
			m.Stack(Header{ThreadID: tid, ProcessID: 4, TimeStamp: headerTS, CPU: cpu},
				StackEvent{EventTimeStamp: uint64(eventTS), ProcessID: 321, ThreadID: tid, Frames: frames})
		}
	}
	for _, tc := range []struct {
		name     string
		raw      bool
		steps    []step
		records  []recWant
		pids     []uint32
		counters map[string]uint64
	}{
		{
			name: "raw, interleaved on two CPUs",
			raw:  true,
			steps: []step{
				pool(noID, 0, 100, 0xa0), pool(noID, 1, 101, 0xb0),
				stack(77, 1, 101, 102, stackB), stack(78, 0, 100, 103, stackA),
			},
			records: []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}, {addr: 0xb0, tag: tagLeak, frames: stackB}},
			pids:    []uint32{321, 321},
		},
		{
			name:    "raw, stack first",
			raw:     true,
			steps:   []step{stack(77, 0, 100, 101, stackA), pool(noID, 0, 100, 0xa0)},
			records: []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}},
			pids:    []uint32{321},
		},
		{
			name:    "raw, stack names another thread",
			raw:     true,
			steps:   []step{pool(5, 0, 100, 0xa0), stack(6, 0, 100, 101, stackA)},
			records: []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}},
			pids:    []uint32{321},
		},
		{
			name: "raw, two threads with one time stamp",
			raw:  true,
			steps: []step{
				pool(5, 0, 100, 0xa0), pool(6, 1, 100, 0xb0),
				stack(5, 0, 100, 101, stackA), stack(6, 1, 100, 101, stackB),
			},
			records: []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}, {addr: 0xb0, tag: tagLeak, frames: stackB}},
			pids:    []uint32{321, 321},
		},
		{
			// Both events wait at one tick on two CPUs, logged without a
			// thread; each stack names a thread neither event carries: the
			// CPU that logged them tells them apart (by time stamp alone,
			// the stack of CPU 1 took CPU 0's event, the last indexed).
			name: "raw, threadless events of two CPUs at one tick",
			raw:  true,
			steps: []step{
				pool(noID, 1, 100, 0xb0), pool(noID, 0, 100, 0xa0),
				stack(77, 1, 100, 102, stackB), stack(78, 0, 100, 103, stackA),
			},
			records:  []recWant{{addr: 0xb0, tag: tagLeak, frames: stackB}, {addr: 0xa0, tag: tagLeak, frames: stackA}},
			pids:     []uint32{321, 321},
			counters: map[string]uint64{CounterStackJoinAmbiguous: 0, CounterStackOrphans: 0, CounterStackLostNone: 0},
		},
		{
			name: "raw, stacks of two CPUs at one tick first",
			raw:  true,
			steps: []step{
				stack(77, 1, 100, 101, stackB), stack(78, 0, 100, 101, stackA),
				pool(noID, 0, 100, 0xa0), pool(noID, 1, 100, 0xb0),
			},
			records:  []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}, {addr: 0xb0, tag: tagLeak, frames: stackB}},
			pids:     []uint32{321, 321},
			counters: map[string]uint64{CounterStackJoinAmbiguous: 0, CounterStackOrphans: 0, CounterStackLostNone: 0},
		},
		{
			// One CPU, one tick, two waiting events without a thread: which
			// stack is whose cannot be told; it is counted.
			name: "raw, two threadless events of one CPU at one tick",
			raw:  true,
			steps: []step{
				pool(noID, 0, 100, 0xa0), pool(9, 0, 100, 0xb0),
				stack(77, 0, 100, 102, stackA), stack(9, 0, 100, 103, stackB),
			},
			records:  []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}, {addr: 0xb0, tag: tagLeak, frames: stackB}},
			pids:     []uint32{321, 321},
			counters: map[string]uint64{CounterStackJoinAmbiguous: 1},
		},
		{
			name: "raw, two threads with one time stamp, stacks first",
			raw:  true,
			steps: []step{
				stack(5, 0, 100, 101, stackA), stack(6, 1, 100, 101, stackB),
				pool(5, 0, 100, 0xa0), pool(6, 1, 100, 0xb0),
			},
			records: []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}, {addr: 0xb0, tag: tagLeak, frames: stackB}},
			pids:    []uint32{321, 321},
		},
		{
			name:     "raw, next event on the CPU settles a missing stack",
			raw:      true,
			steps:    []step{pool(noID, 0, 100, 0xa0), pool(noID, 0, 200, 0xb0), stack(77, 0, 200, 201, stackB)},
			records:  []recWant{{addr: 0xa0, tag: tagLeak, lost: tracer.StackLostNone}, {addr: 0xb0, tag: tagLeak, frames: stackB}},
			pids:     []uint32{0, 321},
			counters: map[string]uint64{CounterStackLostNone: 1},
		},
		{
			name:    "converted time stamps, joined by CPU",
			steps:   []step{pool(noID, 3, 100, 0xa0), stack(77, 3, 0, 100, stackA)},
			records: []recWant{{addr: 0xa0, tag: tagLeak, frames: stackA}},
			pids:    []uint32{321},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMatcher(MatcherConfig{RawTimestamps: tc.raw})
			for _, s := range tc.steps {
				s(m)
			}
			snap := m.Snapshot(tracer.Meta{})
			checkRecords(t, snap, tc.records)
			for i, pid := range tc.pids {
				if got := snap.Records[i].PID; got != pid {
					t.Errorf("record %d: pid %d, want %d", i, got, pid)
				}
			}
			checkCounters(t, snap.Meta.Counters, tc.counters)
			checkStacks(t, snap)
			if len(m.threads)+len(m.pendingByTS)+len(m.earlyByTS) != 0 {
				t.Errorf("state left after the snapshot: %d threads, %d pending, %d early", len(m.threads), len(m.pendingByTS), len(m.earlyByTS))
			}
		})
	}
}

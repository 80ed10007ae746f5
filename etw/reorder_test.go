package etw

import (
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/kmemprof/kmemprof/tracer"
)

func counter(cs []tracer.Counter, name string) uint64 {
	for _, c := range cs {
		if c.Name == name {
			return c.Value
		}
	}
	return 1<<64 - 1
}

func outstandingAddrs(m *Matcher) []uint64 {
	snap := m.Snapshot(tracer.Meta{})
	var addrs []uint64
	for _, r := range snap.Records {
		addrs = append(addrs, r.Addr)
	}
	slices.Sort(addrs)
	return addrs
}

// TestMatcherReorderPermutations: an allocation at t1, its free at t2 and
// a new allocation of the same address at t3, logged on three CPUs and
// delivered in every order: only the t3 allocation is outstanding, and no
// loss is counted.
func TestMatcherReorderPermutations(t *testing.T) {
	const addr = 0xffffa00012340000
	type ev struct {
		alloc bool
		ts    int64
		cpu   uint16
	}
	evs := []ev{{true, 100, 0}, {false, 200, 1}, {true, 300, 2}}
	perms := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for _, p := range perms {
		m := NewMatcher(MatcherConfig{RawTimestamps: true})
		for _, i := range p {
			e := evs[i]
			op := OpPoolFree
			if e.alloc {
				op = OpPoolAlloc
			}
			m.Event(PoolTraceGUID, op, Header{ThreadID: uint32(10 + e.cpu), ProcessID: 4, TimeStamp: e.ts, CPU: e.cpu},
				poolPayload(op, 8, 512, TagValue("Leak"), 64, addr, 0), 8)
		}
		snap := m.Snapshot(tracer.Meta{})
		if len(snap.Records) != 1 || snap.Records[0].Addr != addr {
			t.Errorf("order %v: outstanding %+v, want the one allocation at t3", p, snap.Records)
			continue
		}
		cs := m.Counters()
		for _, name := range []string{CounterAllocAtTrackedAddr, CounterFreeUntracked} {
			if v := counter(cs, name); v != 0 {
				t.Errorf("order %v: %s = %d, want 0", p, name, v)
			}
		}
		if v := counter(cs, CounterFreed); v != 1 {
			t.Errorf("order %v: freed = %d, want 1", p, v)
		}
	}
}

// TestMatcherPerCPUDelivery: a random workload of allocations and frees on
// a few addresses (reused at once), logged on 4 CPUs, each CPU's events
// delivered in order in buffers, the CPUs' buffers interleaved at random,
// as a real-time ETW consumer gets them. The outstanding allocations are
// exactly those never freed, with no false leak and no loss counted.
func TestMatcherPerCPUDelivery(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		type ev struct {
			alloc bool
			addr  uint64
			ts    int64
		}
		const cpus, addrs = 4, 40
		var perCPU [cpus][]ev
		live := map[uint64]bool{}
		for i := range 4000 {
			a := 0xffffb00000000000 + uint64(rng.IntN(addrs))*0x100
			e := ev{alloc: !live[a], addr: a, ts: int64(1000 + i)}
			live[a] = e.alloc
			c := rng.IntN(cpus)
			perCPU[c] = append(perCPU[c], e)
		}
		m := NewMatcher(MatcherConfig{RawTimestamps: true})
		next := [cpus]int{}
		for {
			var open []int
			for c := range cpus {
				if next[c] < len(perCPU[c]) {
					open = append(open, c)
				}
			}
			if len(open) == 0 {
				break
			}
			c := open[rng.IntN(len(open))]
			n := min(1+rng.IntN(300), len(perCPU[c])-next[c]) // one buffer
			for _, e := range perCPU[c][next[c] : next[c]+n] {
				op := OpPoolFree
				if e.alloc {
					op = OpPoolAlloc
				}
				m.Event(PoolTraceGUID, op, Header{ThreadID: uint32(100 + c), ProcessID: 4, TimeStamp: e.ts, CPU: uint16(c)},
					poolPayload(op, 8, 512, TagValue("Leak"), 32, e.addr, 0), 8)
			}
			next[c] += n
		}
		var want []uint64
		for a, l := range live {
			if l {
				want = append(want, a)
			}
		}
		slices.Sort(want)
		cs := m.Counters()
		got := outstandingAddrs(m)
		if !slices.Equal(got, want) {
			t.Errorf("seed %d: %d outstanding, want %d (never freed)", seed, len(got), len(want))
		}
		for _, name := range []string{CounterAllocAtTrackedAddr, CounterFreeUntracked} {
			if v := counter(cs, name); v != 0 {
				t.Errorf("seed %d: %s = %d, want 0", seed, name, v)
			}
		}
	}
}

// TestMatcherReorderWindowBound: the bound on events kept pushes the
// oldest out before their span has passed; that is counted
// (reorder_overflow), and a late allocation whose free was pushed out is
// counted as late (reorder_late), never taken for a leak. One whose free
// still waits is matched.
func TestMatcherReorderWindowBound(t *testing.T) {
	m := NewMatcher(MatcherConfig{RawTimestamps: true, ReorderWindow: 16})
	for i := range 100 {
		m.Event(PoolTraceGUID, OpPoolFree, Header{ThreadID: 1, TimeStamp: int64(i)}, poolPayload(OpPoolFree, 8, 0, TagValue("Old "), 8, 0xffffc00000000000+uint64(i)*8, 0), 8)
	}
	if n := m.outstanding.n; n != 16 {
		t.Errorf("window holds %d frees, want 16", n)
	}
	cs := m.Counters()
	if v := counter(cs, CounterFreeUntracked); v != 100 {
		t.Errorf("free_untracked = %d, want 100", v)
	}
	if v := counter(cs, CounterReorderOverflow); v != 84 {
		t.Errorf("reorder_overflow = %d, want 84", v)
	}
	m.Event(PoolTraceGUID, OpPoolAlloc, Header{ThreadID: 2, TimeStamp: -1}, poolPayload(OpPoolAlloc, 8, 0, TagValue("Old "), 8, 0xffffc00000000000, 0), 8)
	m.Event(PoolTraceGUID, OpPoolAlloc, Header{ThreadID: 2, TimeStamp: -1}, poolPayload(OpPoolAlloc, 8, 0, TagValue("Old "), 8, 0xffffc00000000000+99*8, 0), 8)
	if got := outstandingAddrs(m); len(got) != 0 {
		t.Errorf("outstanding %x, want none: one allocation's free still waits, the other's was pushed out", got)
	}
	if v := counter(m.Counters(), CounterReorderLate); v != 1 {
		t.Errorf("reorder_late = %d, want 1", v)
	}
}

// TestMatcherReorderSpan: pairs whose free arrives first and whose
// allocation arrives up to the reorder span later are matched; allocations
// that arrive later than that are counted late, not leaks. The test of the
// earlier, event-counted window: 100 such pairs were 100 silent false leaks.
func TestMatcherReorderSpan(t *testing.T) {
	const tps = 10_000_000 // ticks a second
	for _, tc := range []struct {
		name            string
		delay           int64
		leaks, lateWant uint64
	}{
		{"within the span", 2 * tps, 0, 0},
		{"beyond the span", 4 * tps, 0, 100},
	} {
		m := NewMatcher(MatcherConfig{RawTimestamps: true, TicksPerSecond: tps})
		addr := func(i int) uint64 { return 0xffffc00000000000 + uint64(i)*64 }
		// CPU 1 delivers its frees (and later events) at once; CPU 0's
		// allocations, logged just before, arrive delay later.
		for i := range 100 {
			m.Pool(Header{ThreadID: 1, CPU: 1, TimeStamp: int64(i)*1000 + 500}, PoolEvent{Tag: 1, Entry: addr(i)})
		}
		m.Pool(Header{ThreadID: 1, CPU: 1, TimeStamp: tc.delay}, PoolEvent{Alloc: true, Tag: 1, Size: 8, Entry: 0xffffd00000000000})
		for i := range 100 {
			m.Pool(Header{ThreadID: 2, CPU: 0, TimeStamp: int64(i) * 1000}, PoolEvent{Alloc: true, Tag: 1, Size: 8, Entry: addr(i)})
		}
		cs := m.Counters()
		got := outstandingAddrs(m)
		if uint64(len(got)) != 1+tc.leaks {
			t.Errorf("%s: %d outstanding, want the one allocation never freed", tc.name, len(got))
		}
		if v := counter(cs, CounterReorderLate); v != tc.lateWant {
			t.Errorf("%s: reorder_late = %d, want %d", tc.name, v, tc.lateWant)
		}
		if v := counter(cs, CounterFreed); tc.lateWant == 0 && v != 100 {
			t.Errorf("%s: freed = %d, want 100", tc.name, v)
		}
	}
}

// TestMatcherSkewedCPUs: a million events of pool churn over reused
// addresses, logged on 4 CPUs, each CPU's buffers delivered in order but
// up to 1.5 s of trace time late: the outstanding set is exactly the
// allocations never freed, with no event lost, late or unpaired.
func TestMatcherSkewedCPUs(t *testing.T) {
	if testing.Short() {
		t.Skip("a million events")
	}
	const tps = 10_000_000
	const cpus, events = 4, 1_000_000
	rng := rand.New(rand.NewPCG(3, 5))
	type ev struct {
		alloc bool
		addr  uint64
		ts    int64
	}
	var perCPU [cpus][]ev
	live := map[uint64]bool{}
	// 4,096 addresses, a few of them hot: 500k events a second of trace
	// time, 2 s in all.
	for i := range events {
		var a uint64
		if rng.IntN(4) == 0 {
			a = 0xffffb00000000000 + uint64(rng.IntN(8))*0x40
		} else {
			a = 0xffffb00000000000 + uint64(8+rng.IntN(4088))*0x40
		}
		e := ev{alloc: !live[a], addr: a, ts: int64(i) * (tps / 500_000)}
		live[a] = e.alloc
		c := rng.IntN(cpus)
		perCPU[c] = append(perCPU[c], e)
	}
	// Deliver: each CPU's events in order, in buffers of 2,000; a CPU's
	// buffer goes out once the newest event delivered is up to its skew
	// past the buffer's last (CPU c lags c*0.5 s).
	m := NewMatcher(MatcherConfig{RawTimestamps: true, TicksPerSecond: tps})
	next := [cpus]int{}
	for {
		best, bestKey := -1, int64(1<<62)
		for c := range cpus {
			if next[c] >= len(perCPU[c]) {
				continue
			}
			end := min(next[c]+2000, len(perCPU[c])) - 1
			key := perCPU[c][end].ts + int64(c)*tps/2 // when the buffer is handed over
			if key < bestKey {
				best, bestKey = c, key
			}
		}
		if best < 0 {
			break
		}
		end := min(next[best]+2000, len(perCPU[best]))
		for _, e := range perCPU[best][next[best]:end] {
			m.Pool(Header{ThreadID: uint32(100 + best), CPU: uint16(best), TimeStamp: e.ts}, PoolEvent{Alloc: e.alloc, Tag: 1, Size: 64, Entry: e.addr})
		}
		next[best] = end
	}
	var want []uint64
	for a, l := range live {
		if l {
			want = append(want, a)
		}
	}
	slices.Sort(want)
	cs := m.Counters()
	if got := outstandingAddrs(m); !slices.Equal(got, want) {
		t.Errorf("%d outstanding, want %d (never freed)", len(got), len(want))
	}
	for _, name := range []string{CounterAllocAtTrackedAddr, CounterFreeUntracked, CounterReorderLate, CounterReorderOverflow} {
		if v := counter(cs, name); v != 0 {
			t.Errorf("%s = %d, want 0", name, v)
		}
	}
	if v := counter(cs, CounterOutOfOrder); v == 0 {
		t.Error("out_of_order = 0: the delivery was not skewed")
	}
}

// TestMatcherEventRules: the events a real session delivers besides
// allocations and frees: other PoolTrace opcodes, StackWalk key events,
// user-mode stack halves, RT_LostEvent notices in their units.
func TestMatcherEventRules(t *testing.T) {
	m := NewMatcher(MatcherConfig{RawTimestamps: true})
	kstack := []uint64{0xfffff80000001000, 0xfffff80000002000}
	m.Event(PoolTraceGUID, OpPoolAlloc, Header{ThreadID: 5, ProcessID: 9, TimeStamp: 10}, poolPayload(OpPoolAlloc, 8, 0, TagValue("Leak"), 100, 0xffffd00000000000, 0), 8)
	m.Event(StackWalkGUID, OpStackWalk, Header{ThreadID: 5, TimeStamp: 11}, stackPayload(8, 10, 9, 5, kstack...), 8)
	// The user half of the same stack, logged on the way back to user mode.
	m.Event(StackWalkGUID, OpStackWalk, Header{ThreadID: 5, TimeStamp: 50}, stackPayload(8, 10, 9, 5, 0x7ff600001000, 0x7ff600002000), 8)
	for op := uint8(0x24); op <= 0x2f; op++ {
		m.Event(PoolTraceGUID, op, Header{ThreadID: 5, TimeStamp: 60}, []byte{1, 2, 3}, 8)
	}
	for op := uint8(34); op <= 38; op++ {
		m.Event(StackWalkGUID, op, Header{ThreadID: 5, TimeStamp: 61}, []byte{1}, 8)
	}
	m.Event(LostEventGUID, OpRTLostEvent, Header{}, nil, 8)
	m.Event(LostEventGUID, OpRTLostBuffer, Header{}, nil, 8)
	m.Event(LostEventGUID, OpRTLostBuffer, Header{}, nil, 8)
	m.Event(LostEventGUID, OpRTLostFile, Header{}, nil, 8)
	// The session's EventsLost at the stop counts the events the notice
	// announced: not twice.
	m.Lost(LostEvents, 5)
	m.Lost(LostRealtimeBuffers, 3)
	m.Lost(LostLogBuffers, 1)
	snap := m.Snapshot(tracer.Meta{})
	if len(snap.Records) != 1 || !slices.Equal(snap.Stacks[snap.Records[0].Stack], kstack) {
		t.Fatalf("the allocation and its kernel stack: %+v, stacks %v", snap.Records, snap.Stacks)
	}
	want := map[string]uint64{
		CounterEventsPoolOther: 12, CounterStackKeyEvents: 5, CounterStackUserHalves: 1, CounterStackOrphans: 0,
		CounterDecodeErrors: 0, CounterEventsLost: 5, CounterLostEventNotices: 1, CounterBuffersLost: 2, CounterRealtimeBuffersLost: 3, CounterLogBuffersLost: 1,
		CounterLostFileNotices: 1,
		CounterStackLostNone:   0,
	}
	cs := m.Counters()
	for name, v := range want {
		if got := counter(cs, name); got != v {
			t.Errorf("%s = %d, want %d", name, got, v)
		}
	}
	if len(counterInfo) != nCounters {
		t.Errorf("%d counters described, %d counted", len(counterInfo), nCounters)
	}
}

// TestMatcherSelfBuffers: the session's own buffers (pool tag EtwB of its
// buffer size) are left out; other EtwB allocations are not.
func TestMatcherSelfBuffers(t *testing.T) {
	m := NewMatcher(MatcherConfig{RawTimestamps: true, SelfTag: SelfTag, SelfSize: SessionBufferKB * 1024})
	m.Event(PoolTraceGUID, OpPoolAlloc, Header{ThreadID: 1, TimeStamp: 1}, poolPayload(OpPoolAlloc, 8, 0, TagValue("EtwB"), SessionBufferKB*1024, 0xffffa00000010000, 0), 8)
	m.Event(PoolTraceGUID, OpPoolAlloc, Header{ThreadID: 1, TimeStamp: 2}, poolPayload(OpPoolAlloc, 8, 0, TagValue("EtwB"), 4096, 0xffffa00000020000, 0), 8)
	if got := outstandingAddrs(m); !slices.Equal(got, []uint64{0xffffa00000020000}) {
		t.Errorf("outstanding %x, want only the EtwB allocation of another size", got)
	}
	if v := counter(m.Counters(), CounterSelf); v != 1 {
		t.Errorf("self = %d, want 1", v)
	}
	if lo, hi := sessionBuffers(4); lo != 1024 || hi != 1290 {
		t.Errorf("buffers for 4 CPUs: %d..%d, want 1024..1290 (64 MB of 64 KB buffers)", lo, hi)
	}
	if lo, _ := sessionBuffers(64); lo != 2048 {
		t.Errorf("buffers for 64 CPUs: %d, want 2048 (2 MB per CPU)", lo)
	}
}

// TestMatcherSelfBuffersBounded: no more buffers of the session's size and
// tag are taken for its own than it can hold (SelfMax); another session's
// buffers beyond that, which leak, show. Freed ones make room again.
func TestMatcherSelfBuffersBounded(t *testing.T) {
	m := NewMatcher(MatcherConfig{RawTimestamps: true, SelfTag: SelfTag, SelfSize: SessionBufferKB * 1024, SelfMax: 4})
	buf := func(ts int64, op uint8, i int) {
		m.Event(PoolTraceGUID, op, Header{ThreadID: 1, TimeStamp: ts}, poolPayload(op, 8, 0, TagValue("EtwB"), SessionBufferKB*1024, 0xffffa00000010000+uint64(i)*0x10000, 0), 8)
	}
	for i := range 4 {
		buf(int64(1+i), OpPoolAlloc, i) // the session's
	}
	buf(10, OpPoolFree, 0)    // one of them freed: room for one more
	buf(11, OpPoolAlloc, 100) // taken for the session's
	for i := range 3 {
		buf(int64(20+i), OpPoolAlloc, 200+i) // beyond: another session's
	}
	if got := outstandingAddrs(m); len(got) != 3 || got[0] != 0xffffa00000010000+200*0x10000 {
		t.Errorf("outstanding %x, want the 3 buffers beyond the session's 4", got)
	}
	if v := counter(m.Counters(), CounterSelf); v != 5 {
		t.Errorf("self = %d, want 5", v)
	}
}

// BenchmarkMatcherManyOutstanding: a million allocations never freed, then
// churn: the history stays linear (no rebuild of its queue per event).
func BenchmarkMatcherManyOutstanding(b *testing.B) {
	for b.Loop() {
		m := NewMatcher(MatcherConfig{RawTimestamps: true, ReorderWindow: 1 << 10})
		ts := int64(0)
		for i := range 200000 {
			ts++
			m.Pool(Header{ThreadID: 1, TimeStamp: ts}, PoolEvent{Alloc: true, Tag: 1, Size: 8, Entry: 0xffffa00000000000 + uint64(i)*16})
		}
		for i := range 200000 {
			ts++
			a := 0xffffb00000000000 + uint64(i%64)*16
			m.Pool(Header{ThreadID: 1, TimeStamp: ts}, PoolEvent{Alloc: true, Tag: 1, Size: 8, Entry: a})
			ts++
			m.Pool(Header{ThreadID: 1, TimeStamp: ts}, PoolEvent{Tag: 1, Entry: a})
		}
		if m.Outstanding() != 200000 {
			b.Fatalf("%d outstanding", m.Outstanding())
		}
	}
}

// benchmarkHot: pairs of allocation and free over n hot addresses, in
// order: per event, whatever the reuse of an address.
func benchmarkHot(b *testing.B, hot int) {
	const pairs = 200_000
	for b.Loop() {
		m := NewMatcher(MatcherConfig{RawTimestamps: true})
		ts := int64(0)
		for i := range pairs {
			a := 0xffffb00000000000 + uint64(i%hot)*0x40
			ts += 20
			m.Pool(Header{ThreadID: 1, TimeStamp: ts}, PoolEvent{Alloc: true, Tag: 1, Size: 64, Entry: a})
			ts += 20
			m.Pool(Header{ThreadID: 1, TimeStamp: ts}, PoolEvent{Tag: 1, Entry: a})
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(2*pairs), "ns/event")
}

// BenchmarkMatcherOneHotAddress: 200k pairs at one address (was 212 us an
// event with the event-counted window).
func BenchmarkMatcherOneHotAddress(b *testing.B) { benchmarkHot(b, 1) }

// BenchmarkMatcherSixteenHotAddresses: 200k pairs over 16 addresses (was
// 11-13 us an event).
func BenchmarkMatcherSixteenHotAddresses(b *testing.B) { benchmarkHot(b, 16) }

// TestTagFilterLayout: EVENT_TRACE_TAG_FILTER_INFORMATION as phnt declares
// it (Filter at 16, sizeof 24 with one tag), and the length passed never
// below 24, with every tag asked in it.
func TestTagFilterLayout(t *testing.T) {
	var info eventTraceTagFilterInformation
	if off := unsafe.Offsetof(info.Filter); off != 16 {
		t.Errorf("Filter at %d, want 16 (class, padding, TRACEHANDLE)", off)
	}
	for _, tc := range []struct {
		tags   []uint32
		length uintptr
		filter [4]uint32
	}{
		{[]uint32{7}, 24, [4]uint32{7, 7}},
		{[]uint32{7, 8}, 24, [4]uint32{7, 8}},
		{[]uint32{7, 8, 9}, 28, [4]uint32{7, 8, 9}},
		{[]uint32{7, 8, 9, 10}, 32, [4]uint32{7, 8, 9, 10}},
	} {
		info, n := tagFilterInfo(0x1234, tc.tags)
		if n != tc.length || info.Filter != tc.filter || info.Class != 10 || info.TraceHandle != 0x1234 {
			t.Errorf("%v: length %d, %+v; want %d, %v", tc.tags, n, info, tc.length, tc.filter)
		}
	}
}

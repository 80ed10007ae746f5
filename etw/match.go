package etw

import (
	"cmp"
	"encoding/binary"
	"slices"
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// Header is what the Matcher needs of an event's EVENT_HEADER (and
// ETW_BUFFER_CONTEXT).
type Header struct {
	// ThreadID and ProcessID are 0xFFFFFFFF when the kernel logged the
	// event without them (compact headers); the Matcher then files the
	// event under its CPU and takes the process from its stack.
	ThreadID  uint32
	ProcessID uint32
	// TimeStamp is EVENT_HEADER.TimeStamp as delivered: a raw QPC (or
	// cycle counter, or system time) value when the consumer was opened with
	// PROCESS_TRACE_MODE_RAW_TIMESTAMP, otherwise a FILETIME (100 ns
	// intervals since 1601). See MatcherConfig.RawTimestamps.
	TimeStamp int64
	CPU       uint16 // ETW_BUFFER_CONTEXT.ProcessorNumber
	// Version is the event's version (EVENT_DESCRIPTOR.Version), which
	// some kernel event layouts depend on (Process events).
	Version uint8
}

// ImageSink receives the kernel images (drivers) the Image events report,
// so that the caller can resolve stack addresses; *symbolize.DriverMap is
// one.
type ImageSink interface {
	Load(base, size uint64, path string)
	Unload(base uint64)
}

// imageHistory is an ImageSink that knows where an image was loaded over
// another, and names addresses as they are now (*symbolize.DriverMap):
// stacks through such addresses are named when they arrive.
type imageHistory interface {
	Contested(addr uint64) bool
	Lookup(addr uint64) (name string, offset uint64, ok bool)
	// Overlapped lists the [base, end) of the images an image loaded at
	// [base, base+size) would replace.
	Overlapped(base, size uint64) [][2]uint64
}

// DefaultMaxOutstanding is MatcherConfig.MaxOutstanding when left zero.
const DefaultMaxOutstanding = 1 << 21

// MatcherConfig configures a Matcher. The zero value works for a 64-bit
// kernel whose events carry FILETIME time stamps, without tag filter.
type MatcherConfig struct {
	// PtrSize is the pointer size of the traced kernel, 4 or 8 (0 means 8).
	// It decides which addresses are kernel addresses (see Images).
	PtrSize int

	// Tags, when not empty, keeps only allocations with one of these pool
	// tags, written as TagValue reads them ("Leak", "Cc" for "Cc  "). The
	// kernel can filter by at most MaxTags tags, but it may refuse to, so
	// the Matcher filters too; it applies every tag given. Validate user
	// input with CheckTags first. Events of other tags count as "filtered".
	Tags []string

	// MaxOutstanding bounds the outstanding-allocation table. Allocations
	// made while it is full are counted in totals but not tracked, and
	// counted as "outstanding_full". 0 means DefaultMaxOutstanding.
	MaxOutstanding int

	// RawTimestamps says that Header.TimeStamp is the raw value
	// (PROCESS_TRACE_MODE_RAW_TIMESTAMP). Then a stack joins the pool event
	// whose TimeStamp equals StackEvent.EventTimeStamp, exactly, whatever
	// thread the two name. Otherwise the header time stamp has been
	// converted and cannot be compared with EventTimeStamp, and a stack
	// joins the latest pool event of its thread (StackThread) that was
	// logged no later than the stack, the kernel logging the stack right
	// after its event: a heuristic that attributes a stack wrongly only when
	// the event it belongs to was lost. Either way a pool event waits for
	// its stack only until the next pool event of its thread (or, for an
	// event whose header has no thread, 0xFFFFFFFF, of its CPU). The
	// Windows session uses raw time stamps.
	RawTimestamps bool

	// Images, when set, receives the loads, rundowns and unloads of kernel
	// images (base addresses in the kernel half of the address space;
	// user-mode DLLs are left out). Nil ignores Image events.
	Images ImageSink

	// ProcessName, when set, names the process of an allocation (the
	// "comm" label) that no Process event (start, end, rundown) named.
	// Snapshot calls it once per distinct process id.
	ProcessName func(pid uint32) string

	// Time converts a Header.TimeStamp to wall-clock time for
	// tracer.Record.Time. When nil, FILETIME stamps are converted directly,
	// and raw stamps are taken to be "now" (Clock) when the event arrives,
	// which is close for a real-time session.
	Time func(ts int64) time.Time

	// Clock returns the current time (Snapshot.Taken, and the time of
	// events with raw stamps when Time is nil). Nil means time.Now.
	Clock func() time.Time

	// ReorderSpan is how late, in trace time, an event may arrive and still
	// be paired (see history): events are kept that long behind the newest
	// time stamp seen. 0 means DefaultReorderSpan.
	ReorderSpan time.Duration
	// TicksPerSecond is the frequency of the events' time stamps: the QPC
	// frequency with raw time stamps (an .etl file's PerfFreq), 10 MHz
	// (FILETIME, and QPC on Windows 10 and later) when 0.
	TicksPerSecond int64
	// ReorderWindow bounds how many events are kept for the reorder span,
	// outstanding allocations aside (a memory bound; events it pushes out
	// early count as reorder_overflow). 0 means DefaultReorderWindow.
	ReorderWindow int

	// SelfTag and SelfSize, when SelfSize is not 0, describe the pool
	// allocations of the tracing session's own buffers, which are left out
	// (counted as "self"): they are allocated while the session runs and
	// freed when it stops, after the last event.
	SelfTag  string
	SelfSize uint64
	// SelfMax, when not 0, is how many such allocations may be outstanding
	// at once as the session's own (its maximum buffer count): beyond it
	// they are tracked like any other, so that another ETW session's
	// buffers of the same size that leak still show.
	SelfMax int
}

// DefaultReorderWindow is MatcherConfig.ReorderWindow when left zero: the
// events of DefaultReorderSpan at several hundred thousand pool events a
// second, 32 bytes each.
const DefaultReorderWindow = 1 << 22

// DefaultReorderSpan is MatcherConfig.ReorderSpan when left zero: a CPU's
// buffer reaches the consumer when it fills, or when the session's flush
// timer (1 s, StartSession) fires; twice that and a second of delivery.
const DefaultReorderSpan = 3 * time.Second

// Names of the counters a Matcher reports, in Snapshot.Meta.Counters order.
const (
	CounterEventsPoolAlloc        = "events_pool_alloc"
	CounterEventsPoolAllocSession = "events_pool_alloc_session"
	CounterEventsPoolFree         = "events_pool_free"
	CounterEventsPoolFreeSession  = "events_pool_free_session"
	CounterEventsStack            = "events_stack"
	CounterEventsImage            = "events_image"
	CounterTracked                = "tracked"
	CounterFreed                  = "freed"
	CounterFreeUntracked          = "free_untracked"
	CounterFreeCrossVariant       = "free_cross_variant"
	CounterOutOfOrder             = "out_of_order"
	CounterEventsPoolOther        = "events_pool_other"
	CounterStackKeyEvents         = "events_stack_key"
	CounterStackUserHalves        = "stack_user_halves"
	CounterSelf                   = "self"
	CounterFiltered               = "filtered"
	CounterStacksDiscarded        = "stacks_discarded"
	CounterOversizedPayloads      = "oversized_payloads"
	CounterAllocAtTrackedAddr     = "alloc_at_tracked_addr"
	CounterOutstandingFull        = "outstanding_full"
	CounterStackLostNone          = "stack_lost_none"
	CounterStackLostWalk          = "stack_lost_walk"
	CounterStackOrphans           = "stack_orphans"
	CounterStackKeyUnresolved     = "stack_key_unresolved"
	CounterEventsLost             = "events_lost"
	CounterBuffersLost            = "buffers_lost"
	CounterRealtimeBuffersLost    = "realtime_buffers_lost"
	CounterLogBuffersLost         = "log_buffers_lost"
	CounterDecodeErrors           = "decode_errors"
	CounterReorderLate            = "reorder_late"
	CounterReorderOverflow        = "reorder_overflow"
	CounterStackJoinAmbiguous     = "stack_join_ambiguous"
	CounterLostEventNotices       = "lost_event_notices"
	CounterLostFileNotices        = "lost_file_notices"
)

// counterInfo describes each counter, in display order.
var counterInfo = [...]struct {
	name, help string
	loss       bool
}{
	{CounterEventsPoolAlloc, "PoolTrace PoolAlloc events", false},
	{CounterEventsPoolAllocSession, "PoolTrace PoolAllocSession events", false},
	{CounterEventsPoolFree, "PoolTrace PoolFree events", false},
	{CounterEventsPoolFreeSession, "PoolTrace PoolFreeSession events", false},
	{CounterEventsStack, "StackWalk events", false},
	{CounterEventsImage, "Image load, unload and rundown events", false},
	{CounterTracked, "allocations recorded in the outstanding table", false},
	{CounterFreed, "recorded allocations freed during the capture", false},
	{CounterFreeUntracked, "frees of addresses not tracked (most were allocated before the capture)", false},
	{CounterFreeCrossVariant, "frees matched to an allocation of the other variant (session pool freed by a plain PoolFree, or the reverse)", false},
	{CounterOutOfOrder, "allocations and frees delivered after a later event of their address (ETW hands each CPU's buffer over on its own), paired by time stamp", false},
	{CounterEventsPoolOther, "other PoolTrace events (pool pages, big pool pages, pool snapshots), not needed", false},
	{CounterStackKeyEvents, "StackWalk key events (cached stacks, key rundown and delete), not needed", false},
	{CounterStackUserHalves, "StackWalk events with only the user-mode part of a stack, logged apart from the kernel part, not needed", false},
	{CounterSelf, "allocations of the tracing session's own buffers (pool tag EtwB of the session's buffer size), left out", false},
	{CounterFiltered, "allocations skipped by the tag filter, and frees of untracked addresses with a tag it keeps out", false},
	{CounterStacksDiscarded, "stacks of frees and filtered events, not needed", false},
	{CounterOversizedPayloads, "pool events with more payload than the documented layout (a newer Windows; the extra bytes were ignored)", false},
	{CounterAllocAtTrackedAddr, "allocations at an address still tracked: its free was missed, the old record was replaced", true},
	{CounterOutstandingFull, "allocations not tracked because the outstanding table was full", true},
	{CounterStackLostNone, "allocations whose StackWalk event never arrived; shown as " + tracer.StackLostName(tracer.StackLostNone), true},
	{CounterStackLostWalk, "allocations whose StackWalk event held no frame; shown as " + tracer.StackLostName(tracer.StackLostWalk), true},
	{CounterStackOrphans, "StackWalk events whose pool event never arrived (lost, or not a pool event)", true},
	{CounterStackKeyUnresolved, "cached kernel stacks (StackKeyKernel events) whose key the trace never defined: their events have no stack", true},
	{CounterEventsLost, "events the ETW session reported lost (EventsLost): buffers were full", true},
	{CounterBuffersLost, "buffers of events the real-time consumer never got (RT_LostEvent RTLostBuffer notices)", true},
	{CounterRealtimeBuffersLost, "buffers the session failed to deliver in real time (RealTimeBuffersLost)", true},
	{CounterLogBuffersLost, "buffers the session failed to write (LogBuffersLost)", true},
	{CounterDecodeErrors, "events whose payload could not be decoded", true},
	{CounterReorderLate, "allocations and frees delivered later than the reorder span after newer events (or after events of their address had been settled): not paired", true},
	{CounterReorderOverflow, "events settled before their reorder span had passed, because the events kept reached their bound: a late event at their address may be mispaired", true},
	{CounterStackJoinAmbiguous, "pool events (or stacks) waiting at the same time stamp on the same CPU: a stack that names another thread than its event's may have joined the wrong one", true},
	{CounterLostEventNotices, "RT_LostEvent RTLostEvent notices to the real-time consumer: events were lost (counted in events_lost from the session's EventsLost)", true},
	{CounterLostFileNotices, "RT_LostEvent RTLostFile notices: the session's backing file was lost", true},
}

// Indexes into counts.v, in counterInfo order.
const (
	cEventsPoolAlloc = iota
	cEventsPoolAllocSession
	cEventsPoolFree
	cEventsPoolFreeSession
	cEventsStack
	cEventsImage
	cTracked
	cFreed
	cFreeUntracked
	cFreeCrossVariant
	cOutOfOrder
	cEventsPoolOther
	cStackKeyEvents
	cStackUserHalves
	cSelf
	cFiltered
	cStacksDiscarded
	cOversized
	cAllocAtTracked
	cOutstandingFull
	cStackLostNone
	cStackLostWalk
	cStackOrphans
	cStackKeyUnresolved
	cEventsLost
	cBuffersLost
	cRealtimeBuffersLost
	cLogBuffersLost
	cDecodeErrors
	cReorderLate
	cReorderOverflow
	cStackJoinAmbiguous
	cLostEventNotices
	cLostFileNotices
	nCounters
)

// maxEarlyStacks bounds the stacks kept per thread while they wait for an
// event that arrived late. The kernel logs a stack right after its event,
// so more than one waiting is already unusual.
const maxEarlyStacks = 4

// maxSpareThreads bounds the idle per-thread states kept for reuse.
const maxSpareThreads = 64

// allocKey identifies an outstanding allocation. Session pool lives in
// per-session address space, so the same address may be allocated in
// several sessions at once; session 0 is a real session, so a plain
// (non-session) allocation is told apart by inSession, not by the id.
type allocKey struct {
	entry     uint64
	session   uint32
	inSession bool
}

// allocation is one allocation seen during the capture. It lives in the
// outstanding table until freed, and in a pending event until its stack is
// known; then it is added to the totals.
type allocation struct {
	entry, size   uint64
	ts            int64  // Header.TimeStamp: orders it against frees delivered out of order
	time          int64  // wall clock, Unix ns
	seq           uint64 // allocation order
	tag, poolType uint32
	pid           uint32
	stack         tracer.StackID // StackLostNone until the stack is known
}

// totalKey groups allocations for tracer.Total; strings are made at
// Snapshot time only.
type totalKey struct {
	stack         tracer.StackID
	tag, poolType uint32
	pid           uint32
}

type totalVal struct{ count, bytes uint64 }

// pendingEvent is a pool event waiting for its StackWalk event.
type pendingEvent struct {
	ts    int64       // the event's Header.TimeStamp
	cpu   uint16      // the CPU that logged it, which logs its stack too
	alloc *allocation // nil for frees and filtered events: their stack is not needed
}

// tsCPU indexes events and stacks by what both carry: the time stamp and
// the CPU that logged them (a stack is logged on its event's CPU, right
// after it).
type tsCPU struct {
	ts  int64
	cpu uint16
}

// earlyStack is a StackWalk event that arrived before its pool event.
type earlyStack struct {
	eventTS  uint64 // StackEvent.EventTimeStamp
	headerTS int64  // the StackWalk event's own Header.TimeStamp
	cpu      uint16 // the CPU that logged it
	pid      uint32 // StackEvent.ProcessID
	id       tracer.StackID
}

// threadState is what the Matcher keeps per thread (see eventKey) between
// events.
type threadState struct {
	pending    pendingEvent
	hasPending bool
	early      [maxEarlyStacks]earlyStack
	nEarly     int
}

// noID is the ThreadId and ProcessId of an event header that has none:
// kernel events logged with a compact header (no thread or process fields)
// reach consumers with 0xFFFFFFFF there.
const noID = 0xffffffff

// eventKey is what the Matcher files events under: the thread, or for an
// event without one, its CPU (an event and its stack are logged by the
// same logging call, so on that CPU unless the thread migrates between).
func eventKey(tid uint32, cpu uint16) uint64 {
	if tid == noID {
		return 1<<32 | uint64(cpu)
	}
	return uint64(tid)
}

// threadless reports whether an eventKey is a CPU's, for events logged
// without a thread.
func threadless(key uint64) bool { return key>>32 != 0 }

// Matcher turns the pool, stack and image events of an ETW session into a
// tracer.Snapshot: it pairs frees with allocations by address, joins each
// pool event to its kernel stack, and counts every event it could not use.
// Feed it every event in the order the session delivers them; build one with
// NewMatcher. It is not safe for concurrent use: a caller that takes
// snapshots while events arrive must serialize the calls.
type Matcher struct {
	cfg         MatcherConfig
	tags        map[uint32]bool // nil: no filter
	kernelStart uint64

	// outstanding holds the allocations and frees not paired yet, by
	// address (see history).
	outstanding history
	seq         uint64

	threads map[uint64]*threadState // by eventKey
	spare   []*threadState
	// With raw time stamps a stack joins its event by time stamp alone,
	// whatever thread either names: these find the thread holding the
	// pending event, or the early stack, of a time stamp.
	pendingByTS map[tsCPU]uint64
	earlyByTS   map[tsCPU]uint64

	stackIDs map[string]tracer.StackID
	stacks   [][]uint64
	// frameSyms names the frames of stacks seen through contested
	// addresses, as they were then (tracer.Snapshot.FrameSymbols).
	frameSyms map[tracer.StackID][]tracer.Symbol
	keyBuf    []byte

	totals map[totalKey]totalVal

	// procNames are the process names Process events gave, by pid: exact
	// for processes that exited before the end, whose pid another may
	// have taken since.
	procNames map[uint32]string

	counts         [nCounters]uint64
	firstDecodeErr string
	// selfLive holds the addresses of the session's own buffers
	// outstanding (SelfMax).
	selfLive map[uint64]bool
}

// reorderTicks is the reorder span in time-stamp units.
func reorderTicks(cfg MatcherConfig) int64 {
	span, tps := cfg.ReorderSpan, cfg.TicksPerSecond
	if span <= 0 {
		span = DefaultReorderSpan
	}
	if tps <= 0 {
		tps = 10_000_000
	}
	return int64(span.Seconds() * float64(tps))
}

// NewMatcher returns a Matcher with no events seen.
func NewMatcher(cfg MatcherConfig) *Matcher {
	if cfg.PtrSize == 0 {
		cfg.PtrSize = 8
	}
	if cfg.MaxOutstanding <= 0 {
		cfg.MaxOutstanding = DefaultMaxOutstanding
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	m := &Matcher{
		cfg:         cfg,
		kernelStart: 0xffff800000000000,
		outstanding: newHistory(cfg.ReorderWindow, reorderTicks(cfg)),
		threads:     make(map[uint64]*threadState),
		pendingByTS: make(map[tsCPU]uint64),
		earlyByTS:   make(map[tsCPU]uint64),
		stackIDs:    make(map[string]tracer.StackID),
		frameSyms:   make(map[tracer.StackID][]tracer.Symbol),
		selfLive:    make(map[uint64]bool),
		totals:      make(map[totalKey]totalVal),
		procNames:   make(map[uint32]string),
	}
	if cfg.PtrSize == 4 {
		m.kernelStart = 0x80000000
	}

	if len(cfg.Tags) > 0 {
		m.tags = make(map[uint32]bool, len(cfg.Tags))
		for _, t := range cfg.Tags {
			m.tags[TagValue(t)] = true
		}
	}
	return m
}

// Pool takes a decoded PoolTrace event. An allocation enters the
// outstanding table at once, so that a free on another thread finds it even
// before its stack arrives; a free removes the allocation at its address
// (of the same session for the session variants), whatever size the free
// reports. The event then waits for its stack; an older event of the same
// thread still waiting will never get one and is settled without.
func (m *Matcher) Pool(h Header, ev PoolEvent) {
	switch {
	case ev.Alloc && ev.Session:
		m.counts[cEventsPoolAllocSession]++
	case ev.Alloc:
		m.counts[cEventsPoolAlloc]++
	case ev.Session:
		m.counts[cEventsPoolFreeSession]++
	default:
		m.counts[cEventsPoolFree]++
	}
	if ev.Extra > 0 {
		m.counts[cOversized]++
	}
	key := eventKey(h.ThreadID, h.CPU)
	t := m.thread(key)
	m.settlePending(key, t)
	m.expireEarly(key, t, h.TimeStamp)

	filtered := m.tags != nil && !m.tags[ev.Tag]
	var a *allocation
	switch {
	case ev.Alloc && m.self(ev):
		m.counts[cSelf]++
		if m.cfg.SelfMax > 0 {
			m.selfLive[ev.Entry] = true
		}
	case ev.Alloc && filtered:
		m.counts[cFiltered]++
	case ev.Alloc:
		a = m.alloc(h, ev)
	default:
		// A free is matched by address whatever its tag, so that a free
		// that reports another tag (or none) cannot leave a leak behind.
		delete(m.selfLive, ev.Entry)
		m.free(ev, h.TimeStamp, filtered)
	}
	p := pendingEvent{ts: h.TimeStamp, cpu: h.CPU, alloc: a}
	if e, ok := m.takeEarly(key, t, h.TimeStamp, h.CPU); ok {
		m.join(p, e.id, e.pid)
	} else {
		t.pending, t.hasPending = p, true
		if m.cfg.RawTimestamps {
			at := tsCPU{p.ts, p.cpu}
			other, ok := m.pendingByTS[at]
			if ok && other != key {
				// Two events of one CPU at one tick, waiting: a stack that
				// names neither's thread may join either. The index keeps
				// an event logged without a thread, which only such a stack
				// can join (the other's own thread's stack finds it).
				m.counts[cStackJoinAmbiguous]++
			}
			if !ok || other == key || !threadless(other) || threadless(key) {
				m.pendingByTS[at] = key
			}
		}
	}
	m.release(key, t)
}

// self reports whether an allocation is one of the session's own buffers:
// their tag and size, while fewer than SelfMax of them are outstanding.
func (m *Matcher) self(ev PoolEvent) bool {
	if m.cfg.SelfSize == 0 || ev.Size != m.cfg.SelfSize || ev.Tag != TagValue(m.cfg.SelfTag) {
		return false
	}
	return m.cfg.SelfMax <= 0 || len(m.selfLive) < m.cfg.SelfMax
}

// keyOf returns the outstanding-table key of a pool event.
func keyOf(ev PoolEvent) allocKey {
	k := allocKey{entry: ev.Entry}
	if ev.Session {
		k.session, k.inSession = ev.SessionID, true
	}
	return k
}

// alloc records an allocation and returns it. An allocation that a free
// delivered earlier releases (logged at or after it, at its address), or
// that arrives after a newer allocation at its address, was freed during
// the capture: it is counted, not tracked.
func (m *Matcher) alloc(h Header, ev PoolEvent) *allocation {
	m.seq++
	a := &allocation{
		entry:    ev.Entry,
		size:     ev.Size,
		ts:       h.TimeStamp,
		time:     m.wallTime(h.TimeStamp),
		seq:      m.seq,
		tag:      ev.Tag,
		poolType: ev.PoolType,
		pid:      h.ProcessID,
		stack:    tracer.StackLostNone,
	}
	k := keyOf(ev)
	if m.outstanding.allocs >= m.cfg.MaxOutstanding {
		m.counts[cOutstandingFull]++
		return a
	}
	late, dropped := m.outstanding.add(k, addrEvent{ts: a.ts, alloc: a})
	if !dropped {
		m.counts[cTracked]++
	}
	if late {
		m.counts[cOutOfOrder]++
	}
	m.outstanding.evict()
	return a
}

// free files a free logged at ts at its address: it releases the
// allocation logged just before it there (see history), which may arrive
// later. A free of an address with no allocation before it freed what was
// allocated before the capture: it counts as free_untracked, or as
// filtered when its tag is one the filter keeps out.
func (m *Matcher) free(ev PoolEvent, ts int64, filtered bool) {
	k := keyOf(ev)
	if m.outstanding.lastAllocBefore(k, ts) == nil {
		// Whether Windows ever logs the free of a session allocation as a
		// plain PoolFree (or the reverse) is not documented. Session pool
		// and system pool never share addresses, so matching across the
		// variants cannot free the wrong allocation, as long as only one
		// session holds the address; it is counted to show whether it
		// happens.
		var other allocKey
		cross := true
		switch sessions := m.outstanding.sessions[ev.Entry]; {
		case ev.Session:
			other = allocKey{entry: ev.Entry}
		case len(sessions) == 1:
			other = allocKey{entry: ev.Entry, session: sessions[0], inSession: true}
		default:
			cross = false
		}
		if cross && m.outstanding.lastAllocBefore(other, ts) != nil {
			k = other
			m.counts[cFreeCrossVariant]++
		}
	}
	if late, _ := m.outstanding.add(k, addrEvent{ts: ts, filtered: filtered}); late {
		m.counts[cOutOfOrder]++
	}
	m.outstanding.evict()
}

// Stack takes a decoded StackWalk event and joins it to the pool event it
// belongs to (see MatcherConfig.RawTimestamps). A stack that arrives before
// its event waits, a few per thread, until its event takes it or a later
// event of its thread proves it an orphan.
func (m *Matcher) Stack(h Header, ev StackEvent) {
	m.counts[cEventsStack]++
	if len(ev.Frames) > 0 && ev.Frames[0] < m.kernelStart {
		// The user-mode part of a stack, which the kernel logs apart from
		// (and after) the kernel part with the same EventTimeStamp when it
		// walks the user stack on the way back to user mode.
		m.counts[cStackUserHalves]++
		return
	}
	id := m.intern(ev.Frames)
	if m.cfg.RawTimestamps {
		ts := int64(ev.EventTimeStamp)
		// The stack's own thread first: the index holds only one thread
		// per time stamp, and two threads may log at the same tick.
		keys, n := [2]uint64{eventKey(ev.ThreadID, h.CPU)}, 1
		if indexed, ok := m.pendingByTS[tsCPU{ts, h.CPU}]; ok && indexed != keys[0] {
			keys[1], n = indexed, 2
		}
		for _, key := range keys[:n] {
			if t := m.threads[key]; t != nil && t.hasPending && t.pending.ts == ts {
				p := t.pending
				m.clearPending(key, t)
				m.join(p, id, ev.ProcessID)
				m.release(key, t)
				return
			}
		}
	} else {
		// The latest event of the stack's thread, or failing one, of its
		// CPU for events logged without a thread, if logged no later than
		// the stack.
		for _, key := range [...]uint64{eventKey(ev.ThreadID, h.CPU), eventKey(noID, h.CPU)} {
			if t := m.threads[key]; t != nil && t.hasPending && h.TimeStamp >= t.pending.ts {
				p := t.pending
				m.clearPending(key, t)
				m.join(p, id, ev.ProcessID)
				m.release(key, t)
				return
			}
		}
	}
	key := eventKey(ev.ThreadID, h.CPU)
	t := m.thread(key)
	if t.nEarly == maxEarlyStacks {
		m.counts[cStackOrphans]++
		m.dropEarly(key, t, 0)
	}
	t.early[t.nEarly] = earlyStack{eventTS: ev.EventTimeStamp, headerTS: h.TimeStamp, cpu: h.CPU, pid: ev.ProcessID, id: id}
	t.nEarly++
	if m.cfg.RawTimestamps {
		at := tsCPU{int64(ev.EventTimeStamp), h.CPU}
		if other, ok := m.earlyByTS[at]; ok && other != key {
			m.counts[cStackJoinAmbiguous]++
		}
		m.earlyByTS[at] = key
	}
	m.release(key, t)
}

// takeEarly removes and returns the waiting stack that belongs to the event
// of thread key logged at ts: with raw time stamps, the stack of any thread
// with that EventTimeStamp; otherwise the thread's oldest stack logged no
// earlier than the event.
func (m *Matcher) takeEarly(key uint64, t *threadState, ts int64, cpu uint16) (earlyStack, bool) {
	if m.cfg.RawTimestamps {
		// The event's own thread first, then the stack its CPU logged at
		// its time stamp (a stack that names another thread).
		owners, n := [2]uint64{key}, 1
		if owner, ok := m.earlyByTS[tsCPU{ts, cpu}]; ok && owner != key {
			owners[1], n = owner, 2
		}
		for _, owner := range owners[:n] {
			ot := t
			if owner != key {
				if ot = m.threads[owner]; ot == nil {
					continue
				}
			}
			for i, e := range ot.early[:ot.nEarly] {
				if e.eventTS == uint64(ts) && (owner == key || e.cpu == cpu) {
					m.dropEarly(owner, ot, i)
					if owner != key {
						m.release(owner, ot)
					}
					return e, true
				}
			}
		}
		return earlyStack{}, false
	}
	for i, e := range t.early[:t.nEarly] {
		if e.headerTS >= ts {
			m.dropEarly(key, t, i)
			return e, true
		}
	}
	return earlyStack{}, false
}

// expireEarly drops as orphans the waiting stacks of a thread that were
// logged for events before ts: the thread's events arrive in order, so
// those events will not come any more.
func (m *Matcher) expireEarly(key uint64, t *threadState, ts int64) {
	for i := 0; i < t.nEarly; {
		e := t.early[i]
		older := e.headerTS < ts
		if m.cfg.RawTimestamps {
			older = e.eventTS < uint64(ts)
		}
		if !older {
			i++
			continue
		}
		m.counts[cStackOrphans]++
		m.dropEarly(key, t, i)
	}
}

// dropEarly removes the i-th waiting stack of thread key.
func (m *Matcher) dropEarly(key uint64, t *threadState, i int) {
	if at := (tsCPU{int64(t.early[i].eventTS), t.early[i].cpu}); m.cfg.RawTimestamps && m.earlyByTS[at] == key {
		delete(m.earlyByTS, at)
	}
	copy(t.early[i:], t.early[i+1:t.nEarly])
	t.nEarly--
	t.early[t.nEarly] = earlyStack{}
}

// clearPending forgets the pending event of thread key.
func (m *Matcher) clearPending(key uint64, t *threadState) {
	if at := (tsCPU{t.pending.ts, t.pending.cpu}); m.cfg.RawTimestamps && m.pendingByTS[at] == key {
		delete(m.pendingByTS, at)
	}
	t.hasPending = false
	t.pending = pendingEvent{}
}

// join settles a pending event with its stack. An allocation whose header
// named no process takes the stack's.
func (m *Matcher) join(p pendingEvent, id tracer.StackID, pid uint32) {
	if p.alloc == nil {
		m.counts[cStacksDiscarded]++
		return
	}
	if id == tracer.StackLostWalk {
		m.counts[cStackLostWalk]++
	}
	if p.alloc.pid == noID {
		p.alloc.pid = pid
	}
	m.settle(p.alloc, id)
}

// settlePending settles the event thread key still waits with, without a
// stack: a newer event of the thread came first, so none will come.
func (m *Matcher) settlePending(key uint64, t *threadState) {
	if !t.hasPending {
		return
	}
	a := t.pending.alloc
	m.clearPending(key, t)
	if a != nil {
		m.counts[cStackLostNone]++
		m.settle(a, tracer.StackLostNone)
	}
}

// settle gives an allocation its stack and counts it in the totals.
func (m *Matcher) settle(a *allocation, id tracer.StackID) {
	a.stack = id
	k := totalKey{stack: id, tag: a.tag, poolType: a.poolType, pid: a.pid}
	v := m.totals[k]
	v.count++
	v.bytes += a.size
	m.totals[k] = v
}

// intern returns the id of a stack, the same for the same frames.
func (m *Matcher) intern(frames []uint64) tracer.StackID {
	if len(frames) == 0 {
		return tracer.StackLostWalk
	}
	b := m.keyBuf[:0]
	for _, f := range frames {
		b = binary.LittleEndian.AppendUint64(b, f)
	}
	// Where an image was loaded over another, the same addresses are other
	// code: the stack is told apart, and named, by the images now there.
	syms := m.namesNow(frames)
	for _, s := range syms {
		b = append(append(b, 0), s.Module...)
	}
	m.keyBuf = b
	if id, ok := m.stackIDs[string(b)]; ok {
		return id
	}
	id := tracer.StackID(len(m.stacks))
	m.stacks = append(m.stacks, slices.Clone(frames))
	m.stackIDs[string(b)] = id
	if syms != nil {
		m.frameSyms[id] = syms
	}
	return id
}

// freezeNames names, as they are now, the frames of the stacks seen so far
// that pass through the ranges (images about to be replaced).
func (m *Matcher) freezeNames(ranges [][2]uint64) {
	h := m.cfg.Images.(imageHistory)
	for id, frames := range m.stacks {
		if _, done := m.frameSyms[tracer.StackID(id)]; done {
			continue
		}
		through := slices.ContainsFunc(frames, func(f uint64) bool {
			return slices.ContainsFunc(ranges, func(r [2]uint64) bool { return r[0] <= f && f < r[1] })
		})
		if through {
			m.frameSyms[tracer.StackID(id)] = namesOf(h, frames)
		}
	}
}

func namesOf(h imageHistory, frames []uint64) []tracer.Symbol {
	syms := make([]tracer.Symbol, len(frames))
	for i, f := range frames {
		pc := f
		if i > 0 {
			pc-- // a return address: the call is the instruction before it
		}
		if name, off, ok := h.Lookup(pc); ok {
			syms[i] = tracer.Symbol{Start: pc - off, Module: name}
		}
	}
	return syms
}

// namesNow names the frames of a stack through a contested range (see
// imageHistory) by the images there now; nil for other stacks.
func (m *Matcher) namesNow(frames []uint64) []tracer.Symbol {
	h, ok := m.cfg.Images.(imageHistory)
	if !ok || !slices.ContainsFunc(frames, h.Contested) {
		return nil
	}
	return namesOf(h, frames)
}

// thread returns the state of thread key, creating it.
func (m *Matcher) thread(key uint64) *threadState {
	if t, ok := m.threads[key]; ok {
		return t
	}
	var t *threadState
	if n := len(m.spare); n > 0 {
		t, m.spare = m.spare[n-1], m.spare[:n-1]
	} else {
		t = new(threadState)
	}
	m.threads[key] = t
	return t
}

// release forgets a thread that has nothing waiting, so that the map stays
// as small as the number of threads with events in flight.
func (m *Matcher) release(key uint64, t *threadState) {
	if t.hasPending || t.nEarly > 0 {
		return
	}
	delete(m.threads, key)
	if len(m.spare) < maxSpareThreads {
		*t = threadState{}
		m.spare = append(m.spare, t)
	}
}

// Image takes a decoded Image event and passes kernel images on to
// MatcherConfig.Images.
func (m *Matcher) Image(h Header, ev ImageEvent) {
	m.counts[cEventsImage]++
	if m.cfg.Images == nil || ev.Base < m.kernelStart {
		return
	}
	switch ev.Op {
	case ImageLoad, ImageRundown:
		if h, ok := m.cfg.Images.(imageHistory); ok {
			// Stacks seen through the images this one replaces keep the
			// names they had.
			if over := h.Overlapped(ev.Base, ev.Size); len(over) > 0 {
				m.freezeNames(over)
			}
		}
		m.cfg.Images.Load(ev.Base, ev.Size, ev.FileName)
	case ImageUnload:
		m.cfg.Images.Unload(ev.Base)
	}
}

// Loss is a unit of loss an ETW session reports.
type Loss uint8

const (
	// LostEvents are events (EVENT_TRACE_PROPERTIES.EventsLost).
	LostEvents Loss = iota
	// LostBuffers are buffers the real-time consumer never got (one per
	// RT_LostEvent RTLostBuffer notice).
	LostBuffers
	// LostRealtimeBuffers are EVENT_TRACE_PROPERTIES.RealTimeBuffersLost.
	LostRealtimeBuffers
	// LostLogBuffers are EVENT_TRACE_PROPERTIES.LogBuffersLost.
	LostLogBuffers
	// LostEventNotices are RT_LostEvent RTLostEvent notices: events were
	// lost (how many, EventsLost says).
	LostEventNotices
	// LostFileNotices are RT_LostEvent RTLostFile notices: the session's
	// backing file was lost.
	LostFileNotices
)

// Lost counts n units of a loss the session reported. Each unit has its
// own counter: events and buffers do not add up.
func (m *Matcher) Lost(unit Loss, n uint64) {
	switch unit {
	case LostEvents:
		m.counts[cEventsLost] += n
	case LostBuffers:
		m.counts[cBuffersLost] += n
	case LostRealtimeBuffers:
		m.counts[cRealtimeBuffersLost] += n
	case LostLogBuffers:
		m.counts[cLogBuffersLost] += n
	case LostEventNotices:
		m.counts[cLostEventNotices] += n
	case LostFileNotices:
		m.counts[cLostFileNotices] += n
	}
}

// DecodeError counts an event whose payload failed to decode. The first
// error is kept for the snapshot's comments.
func (m *Matcher) DecodeError(err error) {
	m.counts[cDecodeErrors]++
	if m.firstDecodeErr == "" && err != nil {
		m.firstDecodeErr = err.Error()
	}
}

// Outstanding returns how many allocations the outstanding table holds.
func (m *Matcher) Outstanding() int {
	return m.outstanding.allocs
}

// Counters returns the Matcher's counters as they stand, in display order.
//
// Frees still waiting for an allocation delivered late count as
// free_untracked (or filtered) here, and allocations followed by another at
// their address as alloc_at_tracked_addr, though the events that pair them
// may yet arrive.
func (m *Matcher) Counters() []tracer.Counter {
	counts := m.counts
	p := m.outstanding.pairing()
	counts[cFreed] += p.freed
	counts[cFreeUntracked] += p.freeUntracked
	counts[cFiltered] += p.filtered
	counts[cAllocAtTracked] += p.allocLostFree
	counts[cReorderLate] += m.outstanding.late
	counts[cReorderOverflow] += m.outstanding.overflow
	cs := make([]tracer.Counter, len(counterInfo))
	for i, ci := range counterInfo {
		cs[i] = tracer.Counter{Name: ci.name, Value: counts[i], Help: ci.help, Loss: ci.loss}
	}
	return cs
}

// Snapshot returns the outstanding allocations, the totals of every
// allocation seen and the stacks they refer to, with meta completed by the
// Matcher's counters (appended to meta.Counters) and, after decode errors,
// a comment with the first one.
//
// It settles every event still waiting for its stack (as
// tracer.StackLostNone) and drops every stack still waiting for its event
// (as an orphan): call it when the session has stopped and delivered its
// last event. Called while events still arrive, it may count the few
// stacks in flight as lost. Records are in allocation order.
func (m *Matcher) Snapshot(meta tracer.Meta) *tracer.Snapshot {
	for key, t := range m.threads {
		m.settlePending(key, t)
		for t.nEarly > 0 {
			m.counts[cStackOrphans]++
			m.dropEarly(key, t, 0)
		}
		m.release(key, t)
	}

	names := snapshotNames{m: m, tags: map[uint32]string{}, pools: map[uint32]string{}, comms: map[uint32]string{}}
	used := map[tracer.StackID]bool{}
	// At each address the newest allocation is outstanding; any before it
	// lost its free (see Counters).
	allocs := make([]*allocation, 0, m.outstanding.allocs)
	m.outstanding.each(func(_ allocKey, es []addrEvent) {
		if outstandingAt(es) {
			allocs = append(allocs, es[len(es)-1].alloc)
		}
	})
	slices.SortFunc(allocs, func(a, b *allocation) int { return cmp.Compare(a.seq, b.seq) })
	snap := &tracer.Snapshot{
		Platform: Platform,
		Records:  make([]tracer.Record, len(allocs)),
		Totals:   make([]tracer.Total, 0, len(m.totals)),
		Stacks:   map[tracer.StackID][]uint64{},
		Taken:    m.cfg.Clock(),
	}
	for i, a := range allocs {
		snap.Records[i] = tracer.Record{
			Key:        names.key(a.stack, a.tag, a.poolType, a.pid),
			Addr:       a.entry,
			BytesReq:   a.size,
			BytesAlloc: a.size,
			Time:       a.time,
		}
		used[a.stack] = true
	}
	tks := make([]totalKey, 0, len(m.totals))
	for k := range m.totals {
		tks = append(tks, k)
	}
	slices.SortFunc(tks, func(a, b totalKey) int {
		return cmp.Or(cmp.Compare(a.stack, b.stack), cmp.Compare(a.tag, b.tag),
			cmp.Compare(a.poolType, b.poolType), cmp.Compare(a.pid, b.pid))
	})
	for _, k := range tks {
		v := m.totals[k]
		snap.Totals = append(snap.Totals, tracer.Total{
			Key:   names.key(k.stack, k.tag, k.poolType, k.pid),
			Count: v.count,
			Bytes: v.bytes,
		})
		used[k.stack] = true
	}
	for id := range used {
		if id >= 0 {
			snap.Stacks[id] = m.stacks[id]
			if syms, ok := m.frameSyms[id]; ok {
				if snap.FrameSymbols == nil {
					snap.FrameSymbols = map[tracer.StackID][]tracer.Symbol{}
				}
				snap.FrameSymbols[id] = syms
			}
		}
	}

	snap.Meta = meta
	snap.Meta.Counters = append(slices.Clone(meta.Counters), m.Counters()...)
	if m.firstDecodeErr != "" {
		snap.Meta.Comments = append(slices.Clone(meta.Comments), "first decode error: "+m.firstDecodeErr)
	}
	return snap
}

// snapshotNames makes the strings of snapshot keys once per distinct value.
type snapshotNames struct {
	m                  *Matcher
	tags, pools, comms map[uint32]string
}

func (n *snapshotNames) key(stack tracer.StackID, tag, poolType, pid uint32) tracer.Key {
	if pid == noID {
		pid = 0 // neither the event nor a stack named the process
	}
	return tracer.Key{
		Kind:  tracer.KindPool,
		Stack: stack,
		Cache: memo(n.tags, tag, TagString),
		Pool:  memo(n.pools, poolType, PoolTypeName),
		PID:   pid,
		Comm:  memo(n.comms, pid, n.comm),
	}
}

func (n *snapshotNames) comm(pid uint32) string {
	if name, ok := n.m.procNames[pid]; ok {
		return name
	}
	if n.m.cfg.ProcessName == nil {
		return ""
	}
	return n.m.cfg.ProcessName(pid)
}

func memo(cache map[uint32]string, v uint32, f func(uint32) string) string {
	if s, ok := cache[v]; ok {
		return s
	}
	s := f(v)
	cache[v] = s
	return s
}

// fileTimeUnixEpoch is 1970-01-01 in FILETIME units (100 ns since 1601).
const fileTimeUnixEpoch = 116444736000000000

// wallTime converts a header time stamp to Unix nanoseconds.
func (m *Matcher) wallTime(ts int64) int64 {
	switch {
	case m.cfg.Time != nil:
		return m.cfg.Time(ts).UnixNano()
	case !m.cfg.RawTimestamps:
		return (ts - fileTimeUnixEpoch) * 100
	}
	return m.cfg.Clock().UnixNano()
}

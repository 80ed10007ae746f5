package tracer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// Addresses of the hand-built fixture. Each address is only ever a leaf or
// only ever a return address, so the fake symbolizer can check the leaf flag.
const (
	aProg1      = 0xffffffffc0001010 // bpf_prog_..._kmalloc (leaf)
	aProg2      = 0xffffffffc0002020 // bpf_prog_..._kmem_cache_alloc (leaf)
	aProg3      = 0xffffffffc0003030 // bpf_prog_..._mm_page_alloc (leaf)
	aTraceRun2  = 0xffffffff81180010
	aTraceKmal  = 0xffffffff81180110
	aTraceCache = 0xffffffff81180210
	aKmalloc    = 0xffffffff81300020
	aCacheAlloc = 0xffffffff81300120
	aAllocFoo   = 0xffffffff81400030
	aFooInit    = 0xffffffff81400130
	aSyscall    = 0xffffffff81e00040
	aNftAlloc   = 0xffffffffc0101050 // [nf_tables]
	aUnknown    = 0xffffffff81777777 // no symbol
	aPagesLeaf  = 0xffffffff81260060 // __alloc_pages_noprof (leaf)
	aPagesMpol  = 0xffffffff81260160
	aFtraceLocs = 0xffffffff81190070 // ftrace_process_locs: a real caller, not plumbing
	aFtraceInit = 0xffffffff81190170
	aStartKern  = 0xffffffff81f00080
)

// Stack ids of the fixture.
const (
	sKmalloc  tracer.StackID = 1 // BPF plumbing, __kmalloc_noprof, alloc_foo, ...
	sCache    tracer.StackID = 2 // BPF plumbing, kmem_cache_alloc_noprof, nf_tables, unknown, ...
	sPages    tracer.StackID = 3 // no plumbing; an ftrace_* caller that must stay
	sPlumbing tracer.StackID = 4 // nothing but plumbing: kept whole
	sMissing  tracer.StackID = 7 // referenced, absent from Stacks
	sMissing2 tracer.StackID = 8 // present but empty
)

var fixtureSymbols = map[uint64]tracer.Frame{
	aProg1:      {Function: "bpf_prog_6deef7357e7b4530_kmalloc", Module: "bpf"},
	aProg2:      {Function: "bpf_prog_1b2c3d4e5f607182_kmem_cache_alloc", Module: "bpf"},
	aProg3:      {Function: "bpf_prog_0123456789abcdef_mm_page_alloc", Module: "bpf"},
	aTraceRun2:  {Function: "bpf_trace_run2"},
	aTraceKmal:  {Function: "__bpf_trace_kmalloc"},
	aTraceCache: {Function: "__bpf_trace_kmem_cache_alloc"},
	aKmalloc:    {Function: "__kmalloc_noprof"},
	aCacheAlloc: {Function: "kmem_cache_alloc_noprof"},
	aAllocFoo:   {Function: "alloc_foo"},
	aFooInit:    {Function: "foo_init"},
	aSyscall:    {Function: "do_syscall_64"},
	aNftAlloc:   {Function: "nft_trans_alloc_gfp", Module: "nf_tables"},
	aPagesLeaf:  {Function: "__alloc_pages_noprof"},
	aPagesMpol:  {Function: "alloc_pages_mpol"},
	aFtraceLocs: {Function: "ftrace_process_locs"},
	aFtraceInit: {Function: "ftrace_init"},
	aStartKern:  {Function: "start_kernel"},
}

var fixtureLeaves = map[uint64]bool{aProg1: true, aProg2: true, aProg3: true, aPagesLeaf: true}

// testPlatform stands in for a backend's Platform: the core applies what
// it says (the tests do not test any one OS's lists).
var testPlatform = tracer.Platform{
	KernelMapping: "[kernel.kallsyms]",
	KernelFile:    "vmlinux",
	TrimLeading:   []string{"bpf_prog_", "bpf_trace_run", "__bpf_trace_", "bpf_trampoline_"},
	DropFrames:    []string{"bpf_trampoline_"},
	AllocatorFrame: func(f tracer.Frame) bool {
		for _, p := range []string{"kmem_cache_alloc", "__kmalloc", "kmalloc", "__alloc_pages", "alloc_pages", "ExAllocatePool"} {
			if strings.HasPrefix(f.Function, p) {
				return true
			}
		}
		return f.Module == "ntoskrnl.exe"
	},
	Constructor: func(fn string) bool { return fn == "alloc_inode" || fn == "__d_alloc" },
	Origin: func(fs []tracer.Frame) string {
		for _, f := range fs {
			if strings.HasSuffix(f.Module, ".sys") {
				return f.Module
			}
		}
		return ""
	},
	MigrateName: func(mt uint8) string { return []string{"Unmovable", "Movable", "Reclaimable"}[mt%3] },
}

// fakeSymbolizer resolves from fixtureSymbols and checks how it is called.
type fakeSymbolizer struct {
	t     testing.TB
	calls map[uint64]int
}

func newFakeSymbolizer(t testing.TB) *fakeSymbolizer {
	return &fakeSymbolizer{t: t, calls: make(map[uint64]int)}
}

// Leaves are looked up at their address, return addresses one byte before
// (the return-address rule, applied by the builder).
func (s *fakeSymbolizer) Lookup(pc uint64) (tracer.Symbol, bool) {
	addr := pc
	if !fixtureLeaves[pc] {
		addr = pc + 1
		if fixtureLeaves[addr] {
			s.t.Errorf("Lookup(%#x): the leaf %#x looked up as a return address", pc, addr)
		}
	}
	s.calls[addr]++
	if s.calls[addr] > 1 {
		s.t.Errorf("Lookup(%#x) called %d times, want once per address", pc, s.calls[addr])
	}
	f := fixtureSymbols[addr]
	if f.Function == "" {
		return tracer.Symbol{}, false
	}
	return tracer.Symbol{Name: f.Function, Start: addr &^ 0xf, Module: f.Module}, true
}

var (
	fixtureTaken = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	fixtureStart = fixtureTaken.Add(-time.Minute)
	old          = fixtureStart.Add(time.Second).UnixNano()  // well past MinAge
	young        = fixtureTaken.Add(-time.Second).UnixNano() // younger than MinAge
	fixtureAge   = 10 * time.Second
)

// Keys of the fixture.
var (
	kFoo100 = tracer.Key{Kind: tracer.KindSlab, Stack: sKmalloc, Cache: "kmalloc-64", Comm: "foo", PID: 100, CgroupID: 7}
	kFoo101 = tracer.Key{Kind: tracer.KindSlab, Stack: sKmalloc, Cache: "kmalloc-64", Comm: "foo", PID: 101, CgroupID: 7}
	kNft200 = tracer.Key{Kind: tracer.KindSlab, Stack: sCache, Cache: "nft_trans", Comm: "nft", PID: 200}
	kNft300 = tracer.Key{Kind: tracer.KindSlab, Stack: sCache, Cache: "nft_trans", Comm: "nft", PID: 300, CgroupID: 9}
	kPages  = tracer.Key{Kind: tracer.KindPage, Stack: sPages, Comm: "swapper/0", Order: 1, GFP: 0xcc0, Migrate: 1}
	kLost   = tracer.Key{Kind: tracer.KindSlab, Stack: tracer.StackLostCollision, Cache: "kmalloc-64", Comm: "foo", PID: 100}
	kMiss   = tracer.Key{Kind: tracer.KindSlab, Stack: sMissing, Cache: "kmalloc-128", Comm: "bar", PID: 5}
	kMiss2  = tracer.Key{Kind: tracer.KindSlab, Stack: sMissing2, Cache: "kmalloc-128", Comm: "bar", PID: 5}
	kPlumb  = tracer.Key{Kind: tracer.KindSlab, Stack: sPlumbing, Cache: "kmalloc-32", Comm: "baz", PID: 6}
	kYoung  = tracer.Key{Kind: tracer.KindSlab, Stack: sPages, Cache: "kmalloc-8k", Comm: "qux", PID: 8}
	kPool   = tracer.Key{Kind: tracer.KindPool, Stack: sKmalloc, Cache: "Tag1", Comm: "System", PID: 4, Pool: "NonPaged"}
)

// fixture returns a snapshot exercising every path of Aggregate.
func fixture() *tracer.Snapshot {
	return &tracer.Snapshot{
		Platform: testPlatform,
		Meta: tracer.Meta{
			Platform:   "linux",
			Kernel:     "6.8.0-45-generic",
			AttachMode: "raw_tp",
			Hooks:      []string{"kmem:kmalloc", "kmem:kfree", "kmem:mm_page_alloc"},
			Start:      fixtureStart,
			Duration:   time.Minute,
			Filters:    []string{"comm!=kmemprof"},
			Counters: []tracer.Counter{
				{Name: "events", Value: 1234, Help: "allocation and free events seen"},
				{Name: "ringbuf_drops", Value: 3, Help: "events dropped because the ring buffer was full", Loss: true},
				{Name: "unmatched_frees", Value: 0, Help: "frees of pointers allocated before the capture", Loss: true},
			},
			Comments: []string{"note: fixture"},
		},
		Stacks: map[tracer.StackID][]uint64{
			sKmalloc:  {aProg1, aTraceRun2, aTraceKmal, aKmalloc, aAllocFoo, aFooInit, aSyscall},
			sCache:    {aProg2, aTraceRun2, aTraceCache, aCacheAlloc, aNftAlloc, aUnknown, aSyscall},
			sPages:    {aPagesLeaf, aPagesMpol, aFtraceLocs, aFtraceInit, aStartKern},
			sPlumbing: {aProg3, aTraceRun2},
			sMissing2: {},
			99:        {aStartKern}, // unreferenced: never symbolized
		},
		Records: []tracer.Record{
			{Key: kFoo100, Addr: 0x1000, BytesReq: 40, BytesAlloc: 64, Time: old},
			{Key: kFoo100, Addr: 0x1040, BytesReq: 50, BytesAlloc: 64, Time: old, Accounted: true},
			{Key: kFoo100, Addr: 0x1080, BytesReq: 50, BytesAlloc: 64, Time: young}, // young: alloc only
			{Key: kFoo101, Addr: 0x10c0, BytesReq: 64, BytesAlloc: 64, Time: old},
			{Key: kNft200, Addr: 0x2000, BytesReq: 100, BytesAlloc: 128, Time: old},
			{Key: kPages, Addr: 0x3000, BytesReq: 8192, BytesAlloc: 8192, Time: old},
			{Key: kLost, Addr: 0x4000, BytesReq: 64, BytesAlloc: 64, Time: old},
			{Key: kMiss, Addr: 0x5000, BytesReq: 100, BytesAlloc: 128, Time: old},
			{Key: kMiss2, Addr: 0x5080, BytesReq: 120, BytesAlloc: 128, Time: old},
			{Key: kPlumb, Addr: 0x6000, BytesReq: 20, BytesAlloc: 32, Time: old},
			{Key: kYoung, Addr: 0x7000, BytesReq: 5000, BytesAlloc: 8192, Time: young},
			{Key: kPool, Addr: 0x8000, BytesReq: 300, BytesAlloc: 320, Time: old},
		},
		Totals: []tracer.Total{
			{Key: kFoo100, Count: 10, Bytes: 640},
			{Key: kNft200, Count: 3, Bytes: 384},
			{Key: kNft300, Count: 5, Bytes: 640}, // all freed: no records
			{Key: kPages, Count: 2, Bytes: 16384},
			{Key: kLost, Count: 4, Bytes: 256},
		},
		Taken: fixtureTaken,
	}
}

func fixtureOptions() tracer.Options {
	return tracer.Options{
		MinAge: fixtureAge,
		CgroupPath: func(id uint64) string {
			if id == 7 {
				return "/system.slice/foo.service"
			}
			return ""
		},
	}
}

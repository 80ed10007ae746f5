package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"

	"github.com/kmemprof/kmemprof/tracer"
)

// This file finds out, from the running kernel, what the BPF programs must
// be told before load: where each tracepoint passes each field (BTF
// prototypes for raw_tp and tp_btf, tracefs formats for classic
// tracepoints), which allocator functions exist and with which parameters
// (kprobe, fentry), and which BPF features the kernel has.

// Field indexes, as enum field of kmemprof.h.
const (
	fSite     = int(kmemprofFieldF_SITE)
	fPtr      = int(kmemprofFieldF_PTR)
	fCache    = int(kmemprofFieldF_CACHE)
	fReq      = int(kmemprofFieldF_REQ)
	fAlloc    = int(kmemprofFieldF_ALLOC)
	fGFP      = int(kmemprofFieldF_GFP)
	fOrder    = int(kmemprofFieldF_ORDER)
	fMigrate  = int(kmemprofFieldF_MIGRATE)
	fName     = int(kmemprofFieldF_NAME)
	fAccount  = int(kmemprofFieldF_ACCOUNTED)
	nrFields  = int(kmemprofFieldNR_FIELDS)
	nrFnSlots = 14 // NR_FN_SLOTS
)

// fieldNames are the tracepoint argument and record field names of each
// field, in order of preference.
var fieldNames = [nrFields][]string{
	fSite:    {"call_site"},
	fPtr:     {"ptr", "page", "pfn"},
	fCache:   {"s"},
	fReq:     {"bytes_req", "size"},
	fAlloc:   {"bytes_alloc"},
	fGFP:     {"gfp_flags"},
	fOrder:   {"order"},
	fMigrate: {"migratetype"},
	fName:    {"name"},
	fAccount: {"accounted"},
}

// hookEvent is one tracepoint and the hook whose program handles it. The
// _node events of kernels before 6.1 share the program of their plain event.
type hookEvent struct {
	hook   int
	group  string
	event  string
	prog   string // program name stem (kt_<prog> for tracing, tp_<prog> for classic)
	needed bool   // the kind cannot be traced without it
	kind   tracer.Kind
	// required fields: the event is unusable without them.
	required []int
}

var hookEvents = []hookEvent{
	{hook: hookCacheAlloc, group: "kmem", event: "kmem_cache_alloc", prog: "cache_alloc", needed: true, kind: tracer.KindSlab, required: []int{fPtr}},
	{hook: hookCacheAlloc, group: "kmem", event: "kmem_cache_alloc_node", prog: "cache_alloc", kind: tracer.KindSlab, required: []int{fPtr}},
	{hook: hookCacheFree, group: "kmem", event: "kmem_cache_free", prog: "cache_free", needed: true, kind: tracer.KindSlab, required: []int{fPtr}},
	{hook: hookKmalloc, group: "kmem", event: "kmalloc", prog: "kmalloc", needed: true, kind: tracer.KindSlab, required: []int{fPtr, fAlloc, fGFP}},
	{hook: hookKmalloc, group: "kmem", event: "kmalloc_node", prog: "kmalloc", kind: tracer.KindSlab, required: []int{fPtr, fAlloc, fGFP}},
	{hook: hookKfree, group: "kmem", event: "kfree", prog: "kfree", needed: true, kind: tracer.KindSlab, required: []int{fPtr}},
	{hook: hookPageAlloc, group: "kmem", event: "mm_page_alloc", prog: "page_alloc", needed: true, kind: tracer.KindPage, required: []int{fPtr, fOrder}},
	{hook: hookPageFree, group: "kmem", event: "mm_page_free", prog: "page_free", needed: true, kind: tracer.KindPage, required: []int{fPtr}},
	{hook: hookPageFreeBatched, group: "kmem", event: "mm_page_free_batched", prog: "page_freeb", kind: tracer.KindPage, required: []int{fPtr}},
	{hook: hookPercpuAlloc, group: "percpu", event: "percpu_alloc_percpu", prog: "pcpu_alloc", needed: true, kind: tracer.KindPercpu, required: []int{fPtr, fReq}},
	{hook: hookPercpuFree, group: "percpu", event: "percpu_free_percpu", prog: "pcpu_free", needed: true, kind: tracer.KindPercpu, required: []int{fPtr}},
}

// argShape is where a tracepoint passes each field: argument index + 1, 0
// when absent, as arg_idx of bpf/c/maps.h.
type argShape [nrFields]uint8

// kernelBTF is the running kernel's BTF, loaded once.
var kernelBTF = sync.OnceValues(btf.LoadKernelSpec)

// tracepointShape reads a tracepoint's argument list from the kernel's BTF.
// The prototype the BPF program is called with (the typedef
// btf_trace_<event>, a pointer to a function whose first parameter is the
// tracepoint's private data) has no parameter names; the tracepoint's
// iterator function __traceiter_<event> (5.10+), or its BPF probe
// __bpf_trace_<event> where the event is its own class, has the same
// parameters with their names. It returns an error when the kernel has no
// such tracepoint or no BTF.
func tracepointShape(spec *btf.Spec, event string) (argShape, error) {
	var shape argShape
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_"+event, &td); err != nil {
		return shape, fmt.Errorf("tracepoint %s: %w", event, err)
	}
	ptr, ok := btf.UnderlyingType(td.Type).(*btf.Pointer)
	if !ok {
		return shape, fmt.Errorf("btf_trace_%s is not a function pointer", event)
	}
	proto, ok := btf.UnderlyingType(ptr.Target).(*btf.FuncProto)
	if !ok || len(proto.Params) == 0 {
		return shape, fmt.Errorf("btf_trace_%s is not a function pointer", event)
	}
	var params []btf.FuncParam
	for _, name := range []string{"__traceiter_" + event, "__bpf_trace_" + event} {
		var fn *btf.Func
		if spec.TypeByName(name, &fn) != nil {
			continue
		}
		fp, ok := fn.Type.(*btf.FuncProto)
		if ok && len(fp.Params) == len(proto.Params) {
			params = fp.Params[1:] // the first is the tracepoint's private data
			break
		}
	}
	if params == nil {
		return shape, fmt.Errorf("tracepoint %s: the kernel's BTF has no named parameters for it (no __traceiter_%s)", event, event)
	}
	for f, names := range fieldNames {
		for _, n := range names {
			if i := paramIndex(params, n); i >= 0 {
				if f == fCache && !isKmemCachePtr(params[i].Type) {
					continue
				}
				shape[f] = uint8(i + 1)
				break
			}
		}
	}
	return shape, nil
}

func paramIndex(params []btf.FuncParam, name string) int {
	for i, p := range params {
		if p.Name == name {
			return i
		}
	}
	return -1
}

// isKmemCachePtr reports whether t is a (const) struct kmem_cache pointer.
func isKmemCachePtr(t btf.Type) bool {
	p, ok := btf.UnderlyingType(t).(*btf.Pointer)
	if !ok {
		return false
	}
	s, ok := btf.UnderlyingType(p.Target).(*btf.Struct)
	return ok && s.Name == "kmem_cache"
}

// isGFP reports whether t is gfp_t.
func isGFP(t btf.Type) bool {
	for {
		switch v := t.(type) {
		case *btf.Typedef:
			if v.Name == "gfp_t" {
				return true
			}
			t = v.Type
		case *btf.Const:
			t = v.Type
		case *btf.Volatile:
			t = v.Type
		default:
			return false
		}
	}
}

// tpField is where a classic tracepoint record holds a field.
type tpField struct {
	off, size uint16
}

// classicFormat is the record layout of a classic tracepoint, by field.
type classicFormat [nrFields]tpField

// tracefsDirs are where tracefs is found, newest first.
var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// readClassicFormat reads a classic tracepoint's record layout from its
// tracefs format file.
func readClassicFormat(group, event string) (classicFormat, error) {
	var lastErr error
	for _, dir := range tracefsDirs {
		f, err := os.Open(filepath.Join(dir, "events", group, event, "format"))
		if err != nil {
			lastErr = err
			continue
		}
		defer f.Close()
		return parseClassicFormat(f)
	}
	return classicFormat{}, fmt.Errorf("reading the format of %s:%s: %w", group, event, lastErr)
}

// parseClassicFormat parses a tracefs format file ("field:const void * ptr;
// offset:16; size:8; signed:0;" lines).
func parseClassicFormat(r io.Reader) (classicFormat, error) {
	var out classicFormat
	fields := map[string]tpField{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "field:") {
			continue
		}
		var decl string
		var off, size int = -1, -1
		for _, part := range strings.Split(line, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), ":")
			if !ok {
				continue
			}
			switch k {
			case "field":
				decl = v
			case "offset":
				off, _ = strconv.Atoi(v)
			case "size":
				size, _ = strconv.Atoi(v)
			}
		}
		if decl == "" || off < 0 || size <= 0 || off > 0xffff {
			continue
		}
		// The name is the last word of the declaration ("__data_loc char[]
		// name", "char comm[16]"), without an array suffix.
		words := strings.Fields(strings.ReplaceAll(decl, "*", " "))
		if len(words) == 0 {
			continue
		}
		name := words[len(words)-1]
		if i := strings.IndexByte(name, '['); i >= 0 {
			name = name[:i]
		}
		fields[name] = tpField{uint16(off), uint16(size)}
	}
	if err := sc.Err(); err != nil {
		return out, err
	}
	if len(fields) == 0 {
		return out, errors.New("no fields in the format")
	}
	for f, names := range fieldNames {
		for _, n := range names {
			if loc, ok := fields[n]; ok {
				out[f] = loc
				break
			}
		}
	}
	// __data_loc fields hold offset | length << 16 in 4 bytes; the name
	// field is only used that way.
	if out[fName].size != 4 {
		out[fName] = tpField{}
	}
	return out, nil
}

// fnSlot is an allocator function hooked by kprobe or fentry mode, and the
// layout its program reads (fn_layout of kmemprof.h).
type fnSlot struct {
	name   string
	layout kmemprofFnLayout
}

// allocFunctions are the allocator entry points kprobe and fentry modes hook,
// across kernel versions (those a kernel lacks are skipped). A function
// called by another hooked one counts once (the BPF side recognises the
// nesting), so overlaps between versions' lists do no harm.
var allocFunctions = []struct {
	name  string
	hook  int
	large bool
}{
	{"kmem_cache_alloc_noprof", hookCacheAlloc, false},
	{"kmem_cache_alloc_lru_noprof", hookCacheAlloc, false},
	{"kmem_cache_alloc_node_noprof", hookCacheAlloc, false},
	{"__kmalloc_noprof", hookKmalloc, false},
	{"__kmalloc_node_noprof", hookKmalloc, false},
	{"__kmalloc_cache_noprof", hookKmalloc, false},
	{"__kmalloc_cache_node_noprof", hookKmalloc, false},
	{"__kmalloc_node_track_caller_noprof", hookKmalloc, false},
	{"__kmalloc_large_noprof", hookKmalloc, true},
	{"__kmalloc_large_node_noprof", hookKmalloc, true},
	{"kmalloc_nolock_noprof", hookKmalloc, false},
	// Before the _noprof names (6.10).
	{"kmem_cache_alloc", hookCacheAlloc, false},
	{"kmem_cache_alloc_lru", hookCacheAlloc, false},
	{"kmem_cache_alloc_node", hookCacheAlloc, false},
	{"kmem_cache_alloc_trace", hookKmalloc, false},
	{"kmem_cache_alloc_node_trace", hookKmalloc, false},
	{"kmalloc_trace", hookKmalloc, false},
	{"kmalloc_node_trace", hookKmalloc, false},
	{"__kmalloc", hookKmalloc, false},
	{"__kmalloc_node", hookKmalloc, false},
	{"__kmalloc_track_caller", hookKmalloc, false},
	{"__kmalloc_node_track_caller", hookKmalloc, false},
	{"kmalloc_large", hookKmalloc, true},
	{"kmalloc_large_node", hookKmalloc, true},
	{"kmalloc_order_trace", hookKmalloc, true},
	{"kmalloc_order", hookKmalloc, true},
}

// allocFunctionSlots finds the allocator functions of the running kernel in
// its BTF and their parameter layouts. exists, if not nil, further filters
// names (kallsyms: a function in BTF may have been inlined everywhere).
func allocFunctionSlots(spec *btf.Spec, exists func(string) bool) ([]fnSlot, error) {
	var slots []fnSlot
	for _, f := range allocFunctions {
		var fn *btf.Func
		if err := spec.TypeByName(f.name, &fn); err != nil {
			continue
		}
		if exists != nil && !exists(f.name) {
			continue
		}
		proto, ok := fn.Type.(*btf.FuncProto)
		if !ok {
			continue
		}
		var l kmemprofFnLayout
		l.Hook = uint8(f.hook)
		l.Nargs = uint8(len(proto.Params))
		if f.large {
			l.Large = 1
		}
		for i, p := range proto.Params {
			switch {
			case l.Cache == 0 && isKmemCachePtr(p.Type):
				l.Cache = uint8(i + 1)
			case l.Gfp == 0 && isGFP(p.Type):
				l.Gfp = uint8(i + 1)
			case l.Size == 0 && p.Name == "size":
				l.Size = uint8(i + 1)
			}
		}
		if f.hook == hookCacheAlloc && l.Cache == 0 {
			return nil, fmt.Errorf("%s has no struct kmem_cache * parameter", f.name)
		}
		if f.hook == hookKmalloc && l.Size == 0 {
			return nil, fmt.Errorf("%s has no size parameter", f.name)
		}
		if l.Nargs > 6 {
			return nil, fmt.Errorf("%s has %d parameters (at most 6 are read)", f.name, l.Nargs)
		}
		slots = append(slots, fnSlot{name: f.name, layout: l})
	}
	if len(slots) == 0 {
		return nil, errors.New("none of the allocator functions is in the kernel's BTF")
	}
	if len(slots) > nrFnSlots {
		return nil, fmt.Errorf("%d allocator functions, more than the %d program slots", len(slots), nrFnSlots)
	}
	return slots, nil
}

// kernelFeatures are the BPF capabilities that choose program variants.
type kernelFeatures struct {
	atomics   bool // BPF_ATOMIC compare-and-swap and fetch-add (5.12+)
	taskBTF   bool // bpf_get_current_task_btf (5.11+)
	ctxDirect bool // typed contexts allow loading pointers to non-structs
	// memAlloc: tracing programs may use hash maps that allocate their
	// elements at run time (the BPF memory allocator, 6.1+); before, the
	// verifier accepts them with a kernel WARNING.
	memAlloc bool
}

var probeFeatures = sync.OnceValue(func() kernelFeatures {
	return kernelFeatures{
		atomics:   probeAtomics() == nil,
		taskBTF:   features.HaveProgramHelper(ebpf.RawTracepoint, asm.FnGetCurrentTaskBtf) == nil,
		ctxDirect: probeCtxDirect() == nil,
		memAlloc:  haveBTFStruct("bpf_mem_alloc"),
	}
})

// haveBTFStruct reports whether the kernel's BTF has a struct of that name.
func haveBTFStruct(name string) bool {
	spec, err := kernelBTF()
	if err != nil {
		return false
	}
	var st *btf.Struct
	return spec.TypeByName(name, &st) == nil
}

// probeAtomics loads a program with a compare-and-swap on the stack.
func probeAtomics() error {
	// BPF_STX | BPF_DW | BPF_ATOMIC with imm BPF_CMPXCHG: set the immediate
	// explicitly, cilium/ebpf's encoder leaves it 0 (a plain atomic add, which
	// every kernel accepts).
	cmpxchg := asm.CmpXchg.Mem(asm.RFP, asm.R1, asm.DWord, -8)
	cmpxchg.Constant = 0xf1
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord),
			asm.Mov.Imm(asm.R1, 1),
			cmpxchg,
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return err
	}
	prog.Close()
	return nil
}

// probeCtxDirect loads a tp_btf program that reads kfree's const void *
// argument directly.
func probeCtxDirect() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceRawTp,
		AttachTo:   "kfree",
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 8, asm.DWord),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return err
	}
	prog.Close()
	return nil
}

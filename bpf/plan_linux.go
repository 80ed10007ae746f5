package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/kmemprof/kmemprof/tracer"
)

// A plan is what one attach mode loads and attaches on the running kernel,
// and the configuration its programs are loaded with.
type plan struct {
	mode      Mode
	features  kernelFeatures
	hashTable bool // no BPF atomics: the *_na programs and table_hash
	ctxDirect bool
	progs     []progLoad
	attach    []attachment
	argIdx    [nrHooks][nrFields]uint8
	tpOff     [nrHooks][nrFields]uint16
	tpSize    [nrHooks][nrFields]uint8
	slots     []fnSlot
	slotAddrs []uint64
	// fn: allocator functions are hooked (kprobe, fentry).
	fn bool
	// needsObjCache: some allocations' cache is read from the object.
	needsObjCache bool
	notes         []string
	// bulkWhy says why the free functions without a tracepoint
	// (untracedFrees) are not hooked, if they are not.
	bulkWhy string
	// rcuPtrArg: kvfree_call_rcu passes the object as its second argument.
	rcuPtrArg bool
	// loadOnly: the programs are loaded to be verified, not attached.
	loadOnly bool
}

// progLoad is one program of the collection: a copy of an ELF program
// (from), under its own name (key), with the type and target overridden
// where the same instructions serve another attach type.
type progLoad struct {
	key, from  string
	typ        ebpf.ProgramType
	attachType ebpf.AttachType
	attachTo   string
}

type attachHow int

const (
	attachRawTP attachHow = iota
	attachTracing
	attachTracepoint
	attachKprobe
	attachKretprobe
)

// attachment is one link to make.
type attachment struct {
	how      attachHow
	prog     string // key in the collection
	group    string // classic tracepoints
	target   string // tracepoint or kernel function
	label    string // for the tracing line ("" for a kretprobe paired with its kprobe)
	optional bool   // failing to attach is a note, not an error
	bulk     bool   // it hooks kmem_cache_free_bulk
	// alloc: it records allocations. Allocation hooks are attached after
	// every other hook (frees first) and detached first: an allocation
	// recorded while its free could not yet be seen would stay outstanding
	// although it was freed (a false leak); a free seen before its
	// allocation is only counted untracked.
	alloc bool
	// paired: an allocator function's entry kprobe, which shares its
	// address (and the count of dropped hits) with the function's kretprobe.
	paired bool
	// allocBulk: it counts kmem_cache_alloc_bulk's objects (bulk_allocs).
	allocBulk bool
}

func (p *plan) addProg(pl progLoad) {
	for _, x := range p.progs {
		if x.key == pl.key {
			return
		}
	}
	p.progs = append(p.progs, pl)
}

// makePlan decides what mode loads and attaches on the running kernel, or
// says why the kernel cannot offer it.
// With loadOnly, it skips the checks that only attaching needs (kprobe and
// trampoline support).
func makePlan(cfg Config, mode Mode, loadOnly bool) (*plan, error) {
	f := probeFeatures()
	p := &plan{mode: mode, features: f, hashTable: !f.atomics, ctxDirect: true, loadOnly: loadOnly}
	sfx := ""
	if p.hashTable {
		sfx = "_na"
		p.notes = append(p.notes, "this kernel has no BPF atomics (before 5.12): the outstanding table is a BPF hash map")
	}
	var err error
	switch mode {
	case ModeRawTP, ModeTPBTF:
		err = p.planTracing(cfg, sfx)
	case ModeTracepoint:
		err = p.planClassic(cfg, sfx)
	case ModeFentry, ModeKprobe:
		err = p.planFunctions(cfg, sfx)
	default:
		err = fmt.Errorf("unknown attach mode %q", mode)
	}
	if err != nil {
		return nil, err
	}
	if cfg.Tracking == TrackCount {
		// kfree passes no cache: count mode reads it from the object.
		p.needsObjCache = true
	}
	if !p.fn && cfg.has(tracer.KindSlab) && !loadOnly {
		p.planBulk(cfg, sfx)
	}
	if cfg.Follow {
		// The followed tree grows with every fork of a member.
		for _, ev := range []struct{ prog, event string }{{"tree_fork", "sched_process_fork"}, {"tree_exit", "sched_process_exit"}} {
			p.addProg(progLoad{key: ev.prog, from: ev.prog})
			p.attach = append(p.attach, attachment{how: attachRawTP, prog: ev.prog, target: ev.event})
		}
	}
	// The paths of cgroups made during the capture, for the memcg and cgroup
	// labels of objects that outlive their cgroup.
	p.addProg(progLoad{key: "cgroup_mkdir", from: "cgroup_mkdir"})
	p.attach = append(p.attach, attachment{how: attachRawTP, prog: "cgroup_mkdir", target: "cgroup_mkdir", label: "cgroup_mkdir", optional: true})
	// Programs run from user space (BPF_PROG_TEST_RUN), never attached.
	for _, name := range []string{"resolve_cache", "read_word", "calib_probe", "obj_cache_probe", "register_caches"} {
		p.addProg(progLoad{key: name, from: name})
	}
	return p, nil
}

// planTracing: raw_tp and tp_btf, the same programs. The argument lists come
// from the kernel's BTF prototypes of the tracepoints.
func (p *plan) planTracing(cfg Config, sfx string) error {
	spec, err := kernelBTF()
	if err != nil {
		return fmt.Errorf("%w: %s needs the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF=y) to read the tracepoints' arguments: %v", ErrAttach, p.mode, err)
	}
	typed := p.mode == ModeTPBTF
	if typed {
		p.ctxDirect = p.features.ctxDirect
	}
	seen := map[int]bool{}
	for _, ev := range hookEvents {
		if !cfg.has(ev.kind) {
			continue
		}
		shape, err := tracepointShape(spec, ev.event)
		if err == nil {
			err = shapeHas(shape, ev)
		}
		if err != nil {
			if ev.needed {
				return fmt.Errorf("%w: %v", ErrAttach, err)
			}
			if !strings.HasSuffix(ev.event, "_node") { // _node events are gone since 6.1
				p.notes = append(p.notes, fmt.Sprintf("%s:%s not attached (%v)", ev.group, ev.event, err))
			}
			continue
		}
		if !seen[ev.hook] {
			seen[ev.hook] = true
			p.argIdx[ev.hook] = shape
			if ev.hook == hookCacheAlloc && shape[fCache] == 0 {
				p.needsObjCache = true
				p.notes = append(p.notes, "kmem:kmem_cache_alloc passes no cache on this kernel (before 6.0): each object's cache is read from its slab")
			}
		} else if !sameShape(p.argIdx[ev.hook], shape) {
			return fmt.Errorf("%w: %s:%s passes its arguments unlike the event it shares a program with (%v vs %v)", ErrAttach, ev.group, ev.event, shape, p.argIdx[ev.hook])
		}
		p.addTracing(ev, "kt_"+ev.prog+sfx, typed)
	}
	return nil
}

// addTracing adds a tracepoint's raw_tp or tp_btf program, and for frees
// its backup (see guard_enter in bpf/c/guard.h): the backup handles the
// frees the kernel does not run the primary for because it is already
// running on that CPU.
func (p *plan) addTracing(ev hookEvent, prog string, typed bool) {
	label := ev.group + ":" + ev.event
	names := []string{prog}
	if isFreeHook(ev.hook) {
		names = append(names, backupName(prog))
	}
	for i, name := range names {
		a := attachment{how: attachRawTP, prog: name, target: ev.event, optional: !ev.needed || i > 0, alloc: !isFreeHook(ev.hook)}
		if i == 0 {
			a.label = label
		}
		if typed {
			key := name + "@" + ev.event
			p.addProg(progLoad{key: key, from: name, typ: ebpf.Tracing, attachType: ebpf.AttachTraceRawTp, attachTo: ev.event})
			a.how, a.prog = attachTracing, key
		} else {
			p.addProg(progLoad{key: name, from: name})
		}
		p.attach = append(p.attach, a)
	}
}

// backupName is the name of a program's backup: kt_kfree_b, kt_kfree_na_b.
func backupName(prog string) string { return prog + "_b" }

// primaryOf is the key of the primary program of a backup's key:
// kt_kfree_b -> kt_kfree, kt_kfree_b@kfree -> kt_kfree@kfree.
func (p *plan) primaryOf(key string) string {
	name, at, typed := strings.Cut(key, "@")
	name = strings.TrimSuffix(name, "_b")
	if typed {
		return name + "@" + at
	}
	return name
}

type progRole int

const (
	roleAlone   progRole = iota
	rolePrimary          // a free hook's primary program, with a backup
	roleBackup
)

// role says what a program of the plan (by its key) is.
func (p *plan) role(key string) progRole {
	name, at, _ := strings.Cut(key, "@")
	if strings.HasSuffix(name, "_b") {
		return roleBackup
	}
	backup := backupName(name)
	if at != "" {
		backup += "@" + at
	}
	for _, pl := range p.progs {
		if pl.key == backup {
			return rolePrimary
		}
	}
	return roleAlone
}

// shapeHas checks that a tracepoint passes the fields its program needs.
func shapeHas(shape argShape, ev hookEvent) error {
	for _, f := range ev.required {
		if shape[f] == 0 {
			return fmt.Errorf("tracepoint %s has no %s argument", ev.event, fieldNames[f][0])
		}
	}
	return nil
}

// sameShape compares two argument lists on every field.
func sameShape(a, b argShape) bool { return a == b }

// planClassic: classic tracepoints, read at the offsets of their tracefs
// formats. Frees come from raw tracepoints where the kernel has them: a
// classic tracepoint's program does not run while another tracing program
// runs on the same CPU, so frees in a softirq that interrupts an
// allocation's stack walk would be lost (and show as leaks). Pages and
// per-CPU allocations then come wholly from raw tracepoints too: the
// classic page records hold a pfn, the raw ones a struct page, and an
// allocation must be keyed as its free is.
func (p *plan) planClassic(cfg Config, sfx string) error {
	rawFrees := p.rawFrees(cfg, sfx, isSlab)
	if rawFrees {
		spec, err := kernelBTF()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrAttach, err)
		}
		if err := p.rawOtherKinds(cfg, sfx, spec); err != nil {
			return err
		}
	}
	seen := map[int]bool{}
	for _, ev := range hookEvents {
		if !cfg.has(ev.kind) || (rawFrees && (isFreeHook(ev.hook) || ev.kind != tracer.KindSlab)) {
			continue
		}
		format, err := readClassicFormat(ev.group, ev.event)
		if err == nil {
			for _, f := range ev.required {
				if format[f].size == 0 {
					err = fmt.Errorf("tracepoint %s:%s has no %s field", ev.group, ev.event, fieldNames[f][0])
					break
				}
			}
		}
		if err != nil {
			if ev.needed {
				hint := ""
				if errors.Is(err, os.ErrNotExist) {
					hint = " (is tracefs mounted? mount -t tracefs nodev /sys/kernel/tracing)"
				}
				return fmt.Errorf("%w: %v%s", ErrAttach, err, hint)
			}
			if !strings.HasSuffix(ev.event, "_node") {
				p.notes = append(p.notes, fmt.Sprintf("%s:%s not attached (%v)", ev.group, ev.event, err))
			}
			continue
		}
		var off [nrFields]uint16
		var size [nrFields]uint8
		for f := range format {
			off[f], size[f] = format[f].off, uint8(format[f].size)
		}
		if !seen[ev.hook] {
			seen[ev.hook] = true
			p.tpOff[ev.hook], p.tpSize[ev.hook] = off, size
			if ev.hook == hookCacheAlloc && size[fName] == 0 {
				p.needsObjCache = true
				p.notes = append(p.notes, "the kmem:kmem_cache_alloc record names no cache on this kernel: each object's cache is read from its slab")
			}
		} else if p.tpOff[ev.hook] != off || p.tpSize[ev.hook] != size {
			return fmt.Errorf("%w: %s:%s lays out its record unlike the event it shares a program with", ErrAttach, ev.group, ev.event)
		}
		prog := "tp_" + ev.prog + sfx
		p.addProg(progLoad{key: prog, from: prog})
		p.attach = append(p.attach, attachment{how: attachTracepoint, prog: prog, group: ev.group, target: ev.event,
			label: ev.group + ":" + ev.event, optional: !ev.needed, alloc: !isFreeHook(ev.hook)})
	}
	return nil
}

// isFreeHook reports whether a hook is a free.
func isFreeHook(hook int) bool {
	switch hook {
	case hookCacheFree, hookKfree, hookPageFree, hookPageFreeBatched, hookPercpuFree:
		return true
	}
	return false
}

// rawFrees adds the free tracepoints as raw_tp programs, for the modes
// whose own free hooks can miss events (classic tracepoints, kprobes: the
// kernel runs no such program while another runs on the same CPU). It
// returns false, with a note, when the kernel's BTF does not describe them.
func (p *plan) rawFrees(cfg Config, sfx string, kinds func(tracer.Kind) bool) bool {
	spec, err := kernelBTF()
	if err != nil {
		p.notes = append(p.notes, "frees use "+string(p.mode)+" hooks, which miss frees that interrupt another tracing program (no kernel BTF for raw tracepoints)")
		return false
	}
	type add struct {
		ev    hookEvent
		shape argShape
	}
	var adds []add
	for _, ev := range hookEvents {
		if !cfg.has(ev.kind) || !kinds(ev.kind) || !isFreeHook(ev.hook) {
			continue
		}
		shape, err := tracepointShape(spec, ev.event)
		if err == nil {
			err = shapeHas(shape, ev)
		}
		if err != nil {
			if ev.needed {
				p.notes = append(p.notes, fmt.Sprintf("frees use %s hooks, which miss frees that interrupt another tracing program (%v)", p.mode, err))
				return false
			}
			continue
		}
		adds = append(adds, add{ev, shape})
	}
	for _, a := range adds {
		p.argIdx[a.ev.hook] = a.shape
		p.addTracing(a.ev, "kt_"+a.ev.prog+sfx, false)
	}
	return true
}

func isSlab(k tracer.Kind) bool  { return k == tracer.KindSlab }
func anyKind(tracer.Kind) bool   { return true }
func notSlab(k tracer.Kind) bool { return k != tracer.KindSlab }

// rawOtherKinds adds, to a mode that hooks the slab allocator's functions,
// the raw tracepoints of the other kinds cfg asks for (pages, per-CPU
// allocations), their allocations and frees.
func (p *plan) rawOtherKinds(cfg Config, sfx string, spec *btf.Spec) error {
	for _, ev := range hookEvents {
		if !cfg.has(ev.kind) || !notSlab(ev.kind) {
			continue
		}
		shape, err := tracepointShape(spec, ev.event)
		if err == nil {
			err = shapeHas(shape, ev)
		}
		if err != nil {
			if ev.needed {
				return fmt.Errorf("%w: %s mode traces %s allocations through their raw tracepoints, which this kernel's BTF does not describe (%v): use --attach raw_tp, tp_btf or tracepoint", ErrAttach, p.mode, ev.kind, err)
			}
			continue
		}
		p.argIdx[ev.hook] = shape
		p.addTracing(ev, "kt_"+ev.prog+sfx, false)
	}
	return nil
}

// coreAllocFunctions must attach in kprobe and fentry modes (under one of
// their names); the other allocator functions are skipped with a note when
// they cannot be hooked.
var coreAllocFunctions = map[string]bool{
	"kmem_cache_alloc": true, "kmem_cache_alloc_noprof": true,
	"__kmalloc": true, "__kmalloc_noprof": true,
}

// planFunctions: kprobe or fentry on the allocator functions and on kfree,
// kmem_cache_free and kmem_cache_free_bulk.
func (p *plan) planFunctions(cfg Config, sfx string) error {
	spec, err := kernelBTF()
	if err != nil {
		return fmt.Errorf("%w: %s mode needs the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF=y) to read the allocator functions' parameters: %v", ErrAttach, p.mode, err)
	}
	fentry := p.mode == ModeFentry
	switch {
	case p.loadOnly:
	case fentry:
		if err := probeFentry("kfree"); err != nil {
			return fmt.Errorf("%w: fentry: this kernel cannot attach BPF trampolines (%s): use --attach raw_tp or kprobe", ErrAttach, loadErrString(err))
		}
	default:
		if hint := kprobeHint(); hint != "" {
			return fmt.Errorf("%w: %s", ErrAttach, hint)
		}
	}
	if fentry {
		p.ctxDirect = p.features.ctxDirect
	}
	syms := kallsymsAddrs()
	var exists func(string) bool
	if len(syms) > 0 {
		exists = func(name string) bool { return syms[name] != 0 }
	}
	slots, err := allocFunctionSlots(spec, exists)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrAttach, p.mode, err)
	}
	p.fn = true
	p.needsObjCache = true
	p.slots = slots
	kind := "kprobe:"
	if fentry {
		kind = "fexit:"
	}
	for i, s := range slots {
		p.slotAddrs = append(p.slotAddrs, syms[s.name])
		optional := !coreAllocFunctions[s.name]
		if fentry {
			key := fmt.Sprintf("fx_alloc_%d%s", i, sfx)
			p.addProg(progLoad{key: key, from: key, typ: ebpf.Tracing, attachType: ebpf.AttachTraceFExit, attachTo: s.name})
			p.attach = append(p.attach, attachment{how: attachTracing, prog: key, target: s.name, label: kind + s.name, optional: optional, alloc: true})
		} else {
			key := fmt.Sprintf("kp_alloc_%d%s", i, sfx)
			p.addProg(progLoad{key: key, from: key})
			p.addProg(progLoad{key: "kr_alloc" + sfx, from: "kr_alloc" + sfx})
			// The kretprobe first: see kp_alloc in bpf/c/attach_functions.h.
			p.attach = append(p.attach,
				attachment{how: attachKretprobe, prog: "kr_alloc" + sfx, target: s.name, optional: optional, alloc: true},
				attachment{how: attachKprobe, prog: key, target: s.name, label: kind + s.name, optional: optional, alloc: true, paired: true})
		}
	}
	frees := []struct{ prog, fn string }{
		{"cache_free", "kmem_cache_free"},
		{"kfree", "kfree"},
	}
	// kprobes miss the frees that interrupt another kprobe's program (a free
	// in a softirq during an allocation's stack walk): take the frees from
	// raw tracepoints where the kernel has them. Trampolines have no such
	// limit.
	if !fentry && p.rawFrees(cfg, sfx, isSlab) {
		frees = nil
	}
	// The allocator functions are the slab allocator's: pages and per-CPU
	// allocations come from their raw tracepoints.
	if err := p.rawOtherKinds(cfg, sfx, spec); err != nil {
		return err
	}
	for _, f := range frees {
		if fentry {
			p.addFentry("fe_"+f.prog+sfx, f.fn, false)
		} else {
			key := "kp_" + f.prog + sfx
			p.addProg(progLoad{key: key, from: key})
			p.attach = append(p.attach, attachment{how: attachKprobe, prog: key, target: f.fn, label: "kprobe:" + f.fn})
		}
	}
	how := attachKprobe
	if fentry {
		how = attachTracing
	}
	p.planUntracedFrees(cfg, sfx, how)
	return nil
}

// untracedFrees are the kernel functions that free slab objects without a
// tracepoint: kmem_cache_free_bulk (kfree_bulk, the maple tree, batched
// kfree_rcu before 6.18) and kvfree_call_rcu (kfree_rcu and kvfree_rcu:
// freed after a grace period in batches no hook sees, RCU sheaves from
// 6.18). They are hooked wherever fentry or kprobes exist.
var untracedFrees = []struct{ prog, fn string }{
	{"free_bulk", "kmem_cache_free_bulk"},
	{"free_rcu", "kvfree_call_rcu"},
}

// planBulk adds to a tracepoint mode the hooks of the free functions that
// have no tracepoint: fentry where the kernel allows it, else kprobes.
func (p *plan) planBulk(cfg Config, sfx string) {
	if cfg.BulkFrees == BulkOff {
		p.bulkWhy = "it was turned off"
		return
	}
	fentryErr := probeFentry("kfree")
	switch {
	case fentryErr == nil:
		p.planUntracedFrees(cfg, sfx, attachTracing)
	case kprobeHint() == "":
		p.planUntracedFrees(cfg, sfx, attachKprobe)
	default:
		p.bulkWhy = "this kernel allows neither fentry (" + loadErrString(fentryErr) + ") nor kprobes"
	}
}

// planUntracedFrees hooks the functions of untracedFrees the kernel has, with
// fentry (how = attachTracing) or kprobes.
func (p *plan) planUntracedFrees(cfg Config, sfx string, how attachHow) {
	spec, err := kernelBTF()
	if err != nil {
		p.bulkWhy = "the kernel has no BTF"
		return
	}
	for _, f := range untracedFrees {
		var fn *btf.Func
		if spec.TypeByName(f.fn, &fn) != nil {
			continue
		}
		if f.fn == "kvfree_call_rcu" {
			// (head, ptr) from 6.12; (head, func) before.
			proto, _ := fn.Type.(*btf.FuncProto)
			p.rcuPtrArg = proto != nil && len(proto.Params) == 2 && proto.Params[1].Name == "ptr"
		}
		if how == attachTracing {
			p.addFentry("fe_"+f.prog+sfx, f.fn, true)
			continue
		}
		key := "kp_" + f.prog + sfx
		p.addProg(progLoad{key: key, from: key})
		p.attach = append(p.attach, attachment{how: attachKprobe, prog: key, target: f.fn, label: "kprobe:" + f.fn, optional: true, bulk: true})
	}
	if p.bulkWhy == "" {
		p.bulkWhy = "its hooks failed to attach"
	}
	// kmem_cache_alloc_bulk: its objects are counted per cache, not
	// tracked (bulk_allocs), for the self-check.
	for _, fn := range []string{"kmem_cache_alloc_bulk_noprof", "kmem_cache_alloc_bulk"} {
		var f *btf.Func
		if spec.TypeByName(fn, &f) != nil {
			continue
		}
		a := attachment{prog: "kp_alloc_bulk", target: fn, label: "kprobe:" + fn, optional: true, alloc: true, allocBulk: true}
		if how == attachTracing {
			a.how, a.prog, a.label = attachTracing, "fx_alloc_bulk", "fexit:"+fn
			p.addProg(progLoad{key: a.prog, from: a.prog, typ: ebpf.Tracing, attachType: ebpf.AttachTraceFExit, attachTo: fn})
		} else {
			a.how = attachKprobe
			p.addProg(progLoad{key: a.prog, from: a.prog})
		}
		p.attach = append(p.attach, a)
		break
	}
}

// addFentry adds a free function's fentry program and its backup.
func (p *plan) addFentry(prog, fn string, bulk bool) {
	for i, key := range []string{prog, backupName(prog)} {
		p.addProg(progLoad{key: key, from: key, typ: ebpf.Tracing, attachType: ebpf.AttachTraceFEntry, attachTo: fn})
		a := attachment{how: attachTracing, prog: key, target: fn, optional: bulk || i > 0, bulk: bulk && i == 0}
		if i == 0 {
			a.label = "fentry:" + fn
		}
		p.attach = append(p.attach, a)
	}
}

// loadErrString is a load or attach error's first line without cilium/ebpf's
// memlock hint, which is wrong here: kmemprof lifts the limit first, and a
// kernel that forbids a program type also answers EPERM.
func loadErrString(err error) string {
	return strings.TrimSpace(strings.Replace(firstLine(err), "(MEMLOCK may be too low, consider rlimit.RemoveMemlock)", "", 1))
}

// probeFentry loads and attaches an empty fentry program to a kernel
// function: it fails where the kernel cannot make BPF trampolines.
func probeFentry(fn string) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceFEntry,
		AttachTo:     fn,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return err
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return err
	}
	return l.Close()
}

// kallsymsNames are the kernel symbols the loader needs the addresses of:
// the allocator functions (fentry finds their return addresses by them) and
// the variables that calibrate the linear map.
func kallsymsNames() map[string]bool {
	names := map[string]bool{}
	for _, f := range allocFunctions {
		names[f.name] = true
	}
	for _, n := range calibrationSymbols {
		names[n] = true
	}
	return names
}

// kallsymsAddrs reads the addresses of kallsymsNames from /proc/kallsyms,
// once. It returns an empty map when the file cannot be read or the
// addresses are hidden (kptr_restrict without CAP_SYSLOG).
var kallsymsAddrs = sync.OnceValue(func() map[string]uint64 {
	out := map[string]uint64{}
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return out
	}
	defer f.Close()
	want := kallsymsNames()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	nonzero := false
	for sc.Scan() {
		line := sc.Text()
		// "ffffffff81234560 T name\t[module]": module symbols are not ours.
		fs := strings.Fields(line)
		if len(fs) != 3 || !want[fs[2]] {
			continue
		}
		addr, err := strconv.ParseUint(fs[0], 16, 64)
		if err != nil {
			continue
		}
		if addr != 0 {
			nonzero = true
		}
		if _, dup := out[fs[2]]; !dup {
			out[fs[2]] = addr
		}
	}
	if !nonzero {
		return map[string]uint64{}
	}
	return out
})

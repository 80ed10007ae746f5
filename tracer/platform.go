package tracer

// Platform is what a backend tells the core about the kernel its snapshot
// comes from: how to name and present its frames and labels. The core
// knows no operating system; each backend has one (bpf.Platform for
// Linux, etw.Platform for Windows) and puts it in every Snapshot. The zero
// value is valid: nothing trimmed, no allocator frames known, the mapping
// named "[kernel]".
type Platform struct {
	// KernelMapping is the file name of the profile's one kernel mapping,
	// as tools expect it ("[kernel.kallsyms]" on Linux); "" means "[kernel]".
	KernelMapping string
	// KernelFile is the function file name of frames in the kernel image
	// itself, which have no module ("vmlinux" on Linux); "" leaves it
	// empty.
	KernelFile string
	// TrimLeading lists function-name prefixes of the tracing machinery
	// that stacks walked from the backend's programs begin with; the
	// builder drops the run of them at the leaf end (Options.TrimLeading
	// overrides it).
	TrimLeading []string
	// DropFrames lists function-name prefixes of frames dropped wherever
	// they are in a walked stack: code that runs between a function and
	// its caller without being either (Linux: the BPF trampoline of an
	// fentry/fexit hook, on the stack of whatever the hooked allocator
	// itself allocates, such as a new slab's pages).
	DropFrames []string
	// AllocatorFrame reports whether a frame is the kernel allocator (or
	// the kernel image underneath a driver) rather than the caller the
	// summary shows: it shows the first frame past the run of them. nil:
	// none is.
	AllocatorFrame func(f Frame) bool
	// ProfileAllocator reports whether a frame is the allocator proper,
	// which the profile leaves out at the leaf end of its stacks (so that
	// pprof's flat column names the code that allocated, as Go's heap
	// profiles do) and names in the allocator label; nil: AllocatorFrame.
	ProfileAllocator func(f Frame) bool
	// Constructor reports whether a function builds an object of a
	// reclaimable cache and allocates what is freed with it (an inode's
	// security blob, a dentry's long name): objects allocated under one
	// call of it are owned by the reclaimable object allocated under the
	// same call (see markOwners). nil: none is, nothing is owned.
	Constructor func(function string) bool
	// Origin names, for the driver label, the module a stack's allocation
	// came from (Windows: the first driver past the kernel image); nil or
	// "": no label.
	Origin func(frames []Frame) string
	// MigrateName names a page migrate type (Options.MigrateName
	// overrides it); nil: "migratetype(N)".
	MigrateName func(mt uint8) string
	// CacheHeader is the summary's heading for the cache or tag column;
	// "" means "CACHE".
	CacheHeader string
}

func (p *Platform) kernelMapping() string {
	if p.KernelMapping == "" {
		return "[kernel]"
	}
	return p.KernelMapping
}

func (p *Platform) isAllocator(f Frame) bool {
	return p.AllocatorFrame != nil && p.AllocatorFrame(f)
}

func (p *Platform) isProfileAllocator(f Frame) bool {
	if p.ProfileAllocator != nil {
		return p.ProfileAllocator(f)
	}
	return p.isAllocator(f)
}

// allocatorRun is the number of allocator frames at the leaf end of fs that
// the profile leaves out: none when every frame is one (the stack would be
// empty), or for a placeholder of a lost stack.
func (p *Platform) allocatorRun(s *AggSample) int {
	if s.Stack < 0 {
		return 0
	}
	n := 0
	for n < len(s.Frames) && s.Frames[n].Function != NotWalkedName && p.isProfileAllocator(s.Frames[n]) {
		n++
	}
	if n == len(s.Frames) {
		return 0
	}
	return n
}

func (p *Platform) isConstructor(f Frame) bool {
	return p.Constructor != nil && f.Function != "" && p.Constructor(f.Function)
}

func (p *Platform) cacheHeader() string {
	if p.CacheHeader == "" {
		return "CACHE"
	}
	return p.CacheHeader
}

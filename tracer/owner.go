package tracer

import "math/bits"

// ownerFunc names a function apart from its address.
type ownerFunc struct {
	name, module string
}

// ctorKey finds the constructor frames of reclaimable samples: the frame's
// function and a hash of the addresses of the frames above it.
type ctorKey struct {
	fn    int32
	above uint64
}

// ctorSite is one constructor frame of a reclaimable sample.
type ctorSite struct {
	above []Frame // the frames above the constructor frame, to compare exactly
	owner string  // the reclaimable sample's cache
}

// ownerIndex holds the constructor frames of the reclaimable samples of an
// aggregation.
type ownerIndex struct {
	fns       map[ownerFunc]int32 // functions of constructor frames
	sites     map[ctorKey][]ctorSite
	callSites map[int32]string // function of a call site (r0) -> owner cache; 0 is no function
	hashes    []uint64         // scratch for aboveHashes
	ctor      func(Frame) bool // constructor functions
}

// markOwners sets ReclaimableOwner on the samples owned by reclaimable
// ones. An inode's LSM blob, a dentry's external name and the like are
// allocated while the kernel builds an object of a reclaimable slab cache
// and are freed with it: when the dentry and inode caches grow with use,
// so do they, and they are no more a leak than their owners.
//
// The rule works on stacks alone. Let R be a sample of a reclaimable slab
// cache and r0, r1, ... its frames past the allocator (r0 the call site,
// r1 its caller). Those of r0 and r1 that are in a constructor function
// (Platform.Constructor: on Linux alloc_inode and __d_alloc, which build
// an inode or a dentry and allocate what is freed with it) are R's
// constructor frames. A slab sample S of a cache that is not reclaimable
// is owned by R when S's stack has a frame in the same function as one of
// them and every frame above it, up to the root, has the same address as
// the frames above it in R: both were allocated under the same call of
// that constructor. A frame shared further up proves nothing (an eventfd's
// context and its file's dentry are both allocated under do_eventfd, and
// no dentry reclaim frees the context), nor does a caller that is not a
// constructor (create_pipe_files allocates a pipe's inode and its
// pipe_inode_info, which the pipe's release frees, not the inode's
// eviction). A partial stack (the call site only, Snapshot.Partial) is
// owned when its call site is in a constructor function that is a
// reclaimable sample's call site (r0), walked or not; a partial
// reclaimable sample owns nothing else, since the frames above its call
// site are not known.
//
// isAllocator names the allocator frames at the leaf end of a stack, which
// are not call sites; isConstructor the constructor functions; partial
// marks the stacks that hold a call site only.
// Samples must be sorted as Aggregate sorts them: where several reclaimable
// samples could own one, the owner is the first. The cost is one pass over
// the frames of each distinct stack.
func markOwners(samples []AggSample, partial map[StackID]bool, isAllocator, isConstructor func(Frame) bool) {
	ix := ownerIndex{
		fns:       map[ownerFunc]int32{},
		sites:     map[ctorKey][]ctorSite{},
		callSites: map[int32]string{},
		ctor:      isConstructor,
	}
	seen := map[StackID]bool{}
	for i := range samples {
		r := &samples[i]
		if !r.Reclaimable || r.Kind != KindSlab || r.Stack < 0 || seen[r.Stack] {
			continue
		}
		seen[r.Stack] = true
		ix.add(callerFrames(r.Frames, isAllocator), partial[r.Stack], r.Cache)
	}
	if len(ix.fns) == 0 {
		return // no reclaimable sample with a call site: nothing is owned
	}
	owners := map[StackID]string{}
	for i := range samples {
		s := &samples[i]
		if s.Reclaimable || s.Kind != KindSlab || s.Stack < 0 {
			continue
		}
		owner, ok := owners[s.Stack]
		if !ok {
			owner = ix.owner(callerFrames(s.Frames, isAllocator), partial[s.Stack])
			owners[s.Stack] = owner
		}
		s.ReclaimableOwner = owner
	}
}

// add indexes the constructor frames of a reclaimable sample of cache
// owner whose frames past the allocator are fs.
func (ix *ownerIndex) add(fs []Frame, partial bool, owner string) {
	if len(fs) > 0 && isCodeFrame(fs[0]) && ix.ctor(fs[0]) {
		fn := ix.funcID(fs[0])
		if _, ok := ix.callSites[fn]; !ok {
			ix.callSites[fn] = owner
		}
	}
	if partial {
		return // the frames above the call site are not known
	}
	hs := ix.aboveHashes(fs)
	for k := 0; k < 2 && k < len(fs); k++ {
		if !isCodeFrame(fs[k]) || !ix.ctor(fs[k]) {
			continue
		}
		key := ctorKey{ix.funcID(fs[k]), hs[k]}
		dup := false
		for _, c := range ix.sites[key] {
			dup = dup || sameAddrs(c.above, fs[k+1:])
		}
		if !dup {
			ix.sites[key] = append(ix.sites[key], ctorSite{above: fs[k+1:], owner: owner})
		}
	}
}

// owner returns the cache of the reclaimable sample that owns a sample
// whose frames past the allocator are fs, or "".
func (ix *ownerIndex) owner(fs []Frame, partial bool) string {
	if partial {
		if len(fs) == 0 || !isCodeFrame(fs[0]) {
			return ""
		}
		return ix.callSites[ix.fns[funcOf(fs[0])]]
	}
	var hs []uint64 // computed when a frame is a constructor's function
	for i := range fs {
		if !isCodeFrame(fs[i]) {
			continue
		}
		fn, ok := ix.fns[funcOf(fs[i])]
		if !ok {
			continue
		}
		if hs == nil {
			hs = ix.aboveHashes(fs)
		}
		for _, c := range ix.sites[ctorKey{fn, hs[i]}] {
			if sameAddrs(c.above, fs[i+1:]) {
				return c.owner
			}
		}
	}
	return ""
}

// funcID numbers the function of f, from 1.
func (ix *ownerIndex) funcID(f Frame) int32 {
	k := funcOf(f)
	id, ok := ix.fns[k]
	if !ok {
		id = int32(len(ix.fns)) + 1
		ix.fns[k] = id
	}
	return id
}

// aboveHashes returns, for every frame of fs, a hash of the addresses of
// the frames above it (fs[i+1:]), computed from the root in one pass. The
// slice is reused by the next call.
func (ix *ownerIndex) aboveHashes(fs []Frame) []uint64 {
	if cap(ix.hashes) < len(fs) {
		ix.hashes = make([]uint64, len(fs), 2*len(fs))
	}
	hs := ix.hashes[:len(fs)]
	h := uint64(0x6a09e667f3bcc908)
	for i := len(fs) - 1; i >= 0; i-- {
		hs[i] = h
		h = bits.RotateLeft64((h^fs[i].Addr)*0x9e3779b97f4a7c15, 31)
	}
	return hs
}

// callerFrames returns the frames of a stack past the run of allocator
// frames at its leaf end: the call site first. A stack of allocator frames
// only has no call site.
func callerFrames(fs []Frame, isAllocator func(Frame) bool) []Frame {
	i := 0
	for i < len(fs) && isAllocator(fs[i]) {
		i++
	}
	return fs[i:]
}

// isCodeFrame tells a resolved kernel frame from a placeholder (a lost
// stack, the root of a partial one) or an address without a symbol, whose
// function is not known.
func isCodeFrame(f Frame) bool {
	return f.Addr != 0 && f.Function != ""
}

func funcOf(f Frame) ownerFunc {
	return ownerFunc{f.Function, f.Module}
}

// sameAddrs reports whether a and b are the same frames, address by address.
func sameAddrs(a, b []Frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Addr != b[i].Addr {
			return false
		}
	}
	return true
}

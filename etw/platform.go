package etw

import (
	"strings"

	"github.com/kmemprof/kmemprof/tracer"
)

// Platform presents Windows kernel frames and labels: every Snapshot of a
// Matcher carries it.
var Platform = tracer.Platform{
	KernelMapping: "[kernel]",
	// Frames of the kernel image are skipped like the allocator's: without
	// symbols they only say "ntoskrnl.exe+0x...", and the first driver past
	// them is the caller worth showing.
	AllocatorFrame: func(f tracer.Frame) bool { return IsAllocatorFrame(f.Function) || isKernelImage(f.Module) },
	// The profile leaves out only the pool allocator itself: the kernel
	// functions that called it for a driver (IoAllocateIrp...) stay.
	ProfileAllocator: func(f tracer.Frame) bool { return IsAllocatorFrame(f.Function) },
	Origin:           firstDriver,
	CacheHeader:      "TAG",
}

// kernelImages are the modules that make up the Windows kernel itself: the
// driver label names the first module past them.
var kernelImages = map[string]bool{"ntoskrnl.exe": true, "ntkrnlmp.exe": true, "ntkrnlpa.exe": true, "ntkrpamp.exe": true, "hal.dll": true}

func isKernelImage(module string) bool { return kernelImages[strings.ToLower(module)] }

// firstDriver returns the module of the first frame, leaf first, that is not
// the kernel image: the driver that asked for the pool allocation.
func firstDriver(fs []tracer.Frame) string {
	for _, f := range fs {
		if f.Module != "" && !isKernelImage(f.Module) {
			return f.Module
		}
	}
	return ""
}

// IsAllocatorFrame reports whether name is the pool allocator
// (ExAllocatePool*, also as the import thunk or module-qualified,
// "nt!ExAllocatePool2") rather than its caller.
func IsAllocatorFrame(name string) bool {
	if i := strings.LastIndexByte(name, '!'); i >= 0 {
		name = name[i+1:]
	}
	return strings.HasPrefix(name, "ExAllocatePool")
}

package etw

import (
	"testing"

	"github.com/kmemprof/kmemprof/tracer"
)

func TestIsAllocatorFrame(t *testing.T) {
	for name, want := range map[string]bool{
		"ExAllocatePool2":          true,
		"ExAllocatePoolWithTag":    true,
		"nt!ExAllocatePoolWithTag": true,
		"myleak.sys+0x1234":        false,
		"kmalloc":                  false,
		"":                         false,
	} {
		if got := IsAllocatorFrame(name); got != want {
			t.Errorf("IsAllocatorFrame(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestPlatformFrames: the summary skips the kernel image's frames like the
// allocator's, and the driver label names the first driver past them.
func TestPlatformFrames(t *testing.T) {
	fs := []tracer.Frame{
		{Function: "ntoskrnl.exe+0x10", Module: "ntoskrnl.exe"},
		{Function: "HAL.DLL+0x20", Module: "HAL.DLL"},
		{Function: "myleak.sys+0x30", Module: "myleak.sys"},
		{Function: "ntoskrnl.exe+0x40", Module: "ntoskrnl.exe"},
	}
	for i, want := range []bool{true, true, false, true} {
		if got := Platform.AllocatorFrame(fs[i]); got != want {
			t.Errorf("AllocatorFrame(%s) = %v, want %v", fs[i].Function, got, want)
		}
	}
	if got := Platform.Origin(fs); got != "myleak.sys" {
		t.Errorf("Origin = %q, want myleak.sys", got)
	}
	if got := Platform.Origin(fs[:2]); got != "" {
		t.Errorf("Origin of kernel frames only = %q, want none", got)
	}
}

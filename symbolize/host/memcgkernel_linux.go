package host

import (
	"os"
	"slices"
	"strings"
)

// ReadMemcgKernel reads the kernel memory of the memory cgroups down to
// maxDepth levels below the root (readMemcgKernel): the memory controller's
// cgroup v1 hierarchy when it has one, else cgroup v2 when the memory
// controller is on there. The source names which; nil, "" when neither.
func ReadMemcgKernel(maxDepth int) ([]MemcgKernel, string) {
	if m := cgroupV1Mount("memory"); m != "" {
		return readMemcgKernel(os.DirFS(m), true, maxDepth), "cgroup v1 " + m
	}
	if m := Cgroup2Mount(); m != "" {
		if b, err := os.ReadFile(m + "/cgroup.controllers"); err == nil && slices.Contains(strings.Fields(string(b)), "memory") {
			return readMemcgKernel(os.DirFS(m), false, maxDepth), "cgroup v2 " + m
		}
	}
	return nil, ""
}

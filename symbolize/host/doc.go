// Package host reads the facts of the Linux host a capture runs on, which
// the profile and the summary show beside what was traced: /proc/meminfo
// and /proc/slabinfo (the system view), slab cache aliases, the cgroup
// hierarchies (where they are mounted, cgroup ids to paths, removed cgroups,
// the memory controller's hierarchy and dying memcgs), container and pod
// ids in cgroup paths, and GFP flag names from the kernel's BTF.
//
// The BPF loader (package bpf) takes what it needs from here as plain
// values in its Config; it imports nothing of this package.
package host

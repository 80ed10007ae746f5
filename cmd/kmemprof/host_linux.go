package main

import (
	"os"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// hostConfig fills what the tracer needs to know of the host's cgroups:
// the memory controller's hierarchy, and the id of --memcg. The error says
// what to give instead of a bad --memcg.
func hostConfig(cfg *bpf.Config) error {
	h := host.FindMemcgHierarchy()
	cfg.MemcgHierarchy = h.V1ID
	if cfg.MemcgPath != "" {
		id, err := h.FilterID(cfg.MemcgPath)
		if err != nil {
			return err
		}
		cfg.MemcgID = id
	}
	return nil
}

// hostNames names the cgroups of a capture: those that existed when it
// started, walked once the tracer is attached, and those the tracer saw made.
type hostNames struct {
	names *host.Names
}

// newHostNames walks the cgroup hierarchies: call it after bpf.Open, so that
// the tracer sees every cgroup made afterwards.
func newHostNames() *hostNames {
	return &hostNames{names: host.NewNames(host.FindMemcgHierarchy())}
}

// annotate completes a snapshot with what the host knows: the names of the
// memory cgroups its records are charged to (removed ones marked), and the
// slab caches the allocator merged. It returns a resolver of cgroup v2 ids
// that knows the cgroups made during the capture.
func (h *hostNames) annotate(tr *bpf.Tracer, snap *tracer.Snapshot) (*host.CgroupResolver, error) {
	made, err := tr.CgroupsMade()
	if err != nil {
		return nil, err
	}
	for _, c := range made {
		h.names.Learn(c.Hierarchy, c.ID, c.Path)
	}
	snap.Memcgs = h.names.Memcgs(snap)
	// Missing on kernels without SLUB's sysfs: no cache is named as merged.
	snap.MergedCaches, _ = host.SlabAliases(os.DirFS("/sys/kernel/slab"))
	cg := host.NewCgroupResolver()
	cg.Learn(h.names.V2())
	return cg, nil
}

package main

import (
	"os"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// openTracer attaches the tracer with what it needs to know of the host's
// cgroups (the memory controller's hierarchy, the id of --memcg), then
// walks the cgroup hierarchies, so that every cgroup made from then on is
// one the tracer sees made. A bad --memcg is an error that says what to
// give instead.
func openTracer(cfg bpf.Config) (*bpf.Tracer, *hostNames, error) {
	h := host.FindMemcgHierarchy()
	cfg.MemcgHierarchy = h.V1ID
	if cfg.MemcgPath != "" {
		id, err := h.FilterID(cfg.MemcgPath)
		if err != nil {
			return nil, nil, err
		}
		cfg.MemcgID = id
	}
	tr, err := bpf.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	return tr, &hostNames{names: host.NewNames(h)}, nil
}

// hostNames names the cgroups of a capture: those that existed when it
// started, walked once the tracer is attached, and those the tracer saw made.
type hostNames struct {
	names *host.Names
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

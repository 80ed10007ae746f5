package bpf

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/kmemprof/kmemprof/tracer"
)

// batchSize is how many map entries one BPF_MAP_LOOKUP_BATCH call reads.
const batchSize = 4096

// Snapshot reads the outstanding allocations, the per-stack totals, the
// stacks they refer to and every counter. Call Detach first for a consistent
// end-of-capture view; while programs run, entries inserted or deleted during
// the read may or may not appear.
func (t *Tracer) Snapshot() (*tracer.Snapshot, error) {
	clock, err := newMonoToWall()
	if err != nil {
		return nil, err
	}
	caches, err := t.readCaches()
	if err != nil {
		return nil, err
	}
	comms := map[[16]int8]string{}
	snap := &tracer.Snapshot{Stacks: map[tracer.StackID][]uint64{}, Taken: time.Now()}

	for _, m := range []struct {
		name string
		kind tracer.Kind
	}{{"slab_allocs", tracer.KindSlab}, {"page_allocs", tracer.KindPage}, {"percpu_allocs", tracer.KindPercpu}} {
		if !t.cfg.has(m.kind) {
			continue
		}
		err := readHash(t.coll.Maps[m.name], func(k uint64, v *kmemprofAllocInfo) {
			snap.Records = append(snap.Records, tracer.Record{
				Key: tracer.Key{
					Kind:     tracer.Kind(v.Kind),
					Stack:    tracer.StackID(v.StackId),
					Cache:    caches.name(v.Cache),
					Comm:     commString(comms, v.Comm),
					PID:      v.Tgid,
					CgroupID: v.Cgroup,
				},
				Addr:       k,
				BytesReq:   v.BytesReq,
				BytesAlloc: v.BytesAlloc,
				Time:       clock.at(v.Ts),
				Accounted:  v.Accounted != 0,
				GFP:        uint64(v.Gfp),
				Order:      v.Order,
			})
		})
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", m.name, err)
		}
	}

	var key kmemprofTotalsKey
	var vals []kmemprofTotalsVal
	it := t.coll.Maps["totals"].Iterate()
	for it.Next(&key, &vals) {
		tot := tracer.Total{Key: tracer.Key{
			Kind:     tracer.Kind(key.Kind),
			Stack:    tracer.StackID(key.StackId),
			Cache:    caches.name(key.Cache),
			Comm:     commString(comms, key.Comm),
			PID:      key.Tgid,
			CgroupID: key.Cgroup,
		}}
		for _, v := range vals {
			tot.Count += v.Count
			tot.Bytes += v.Bytes
		}
		snap.Totals = append(snap.Totals, tot)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading totals: %w", err)
	}

	if err := t.readStacks(snap); err != nil {
		return nil, err
	}
	counters, err := t.readCounters()
	if err != nil {
		return nil, err
	}
	snap.Meta = t.meta(counters)
	return snap, nil
}

// readHash reads every entry of a hash map of alloc_info, in batches when the
// kernel supports it (5.6+) and one by one otherwise.
func readHash(m *ebpf.Map, fn func(uint64, *kmemprofAllocInfo)) error {
	keys := make([]uint64, batchSize)
	vals := make([]kmemprofAllocInfo, batchSize)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			fn(keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		if err != nil {
			return err
		}
	}
	var k uint64
	var v kmemprofAllocInfo
	it := m.Iterate()
	for it.Next(&k, &v) {
		fn(k, &v)
	}
	return it.Err()
}

func commString(cache map[[16]int8]string, c [16]int8) string {
	if s, ok := cache[c]; ok {
		return s
	}
	b := make([]byte, 0, 16)
	for _, ch := range c {
		if ch == 0 {
			break
		}
		b = append(b, byte(ch))
	}
	s := string(b)
	cache[c] = s
	return s
}

type cacheNames map[uint64]string

func (c cacheNames) name(id uint64) string {
	if id == 0 {
		return ""
	}
	if n, ok := c[id]; ok {
		return n
	}
	if n := kmallocName(id); n != "" {
		return n
	}
	return "[unknown cache]"
}

func (t *Tracer) readCaches() (cacheNames, error) {
	out := cacheNames{}
	var id uint64
	var ci kmemprofCacheInfo
	it := t.coll.Maps["caches"].Iterate()
	for it.Next(&id, &ci) {
		b := make([]byte, 0, len(ci.Name))
		for _, ch := range ci.Name {
			if ch == 0 {
				break
			}
			b = append(b, byte(ch))
		}
		out[id] = string(b)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading cache names: %w", err)
	}
	return out, nil
}

// readStacks looks up every stack id the records and totals refer to.
func (t *Tracer) readStacks(snap *tracer.Snapshot) error {
	m := t.coll.Maps["stacks"]
	buf := make([]uint64, t.cfg.StackDepth)
	want := func(id tracer.StackID) error {
		if id < 0 {
			return nil
		}
		if _, ok := snap.Stacks[id]; ok {
			return nil
		}
		if err := m.Lookup(uint32(id), &buf); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil // the builder reports it as evicted
			}
			return fmt.Errorf("reading stack %d: %w", id, err)
		}
		n := 0
		for n < len(buf) && buf[n] != 0 {
			n++
		}
		snap.Stacks[id] = append([]uint64(nil), buf[:n]...)
		return nil
	}
	for i := range snap.Records {
		if err := want(snap.Records[i].Stack); err != nil {
			return err
		}
	}
	for i := range snap.Totals {
		if err := want(snap.Totals[i].Stack); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tracer) meta(c [nrCounters]uint64) tracer.Meta {
	end := t.stop
	if end.IsZero() {
		end = time.Now()
	}
	m := tracer.Meta{
		Platform:   "linux",
		Kernel:     KernelRelease(),
		AttachMode: string(t.mode),
		Hooks:      t.Hooks(),
		Start:      t.start,
		Duration:   end.Sub(t.start),
		Comments:   t.Notes(),
	}
	if t.cfg.PID != 0 {
		m.Filters = append(m.Filters, fmt.Sprintf("pid=%d", t.cfg.PID))
	}
	if t.cfg.CgroupPath != "" {
		m.Filters = append(m.Filters, "cgroup="+t.cfg.CgroupPath)
	}
	for _, c := range t.cfg.Caches {
		m.Filters = append(m.Filters, "cache="+c)
	}
	if t.cfg.MinSize != 0 {
		m.Filters = append(m.Filters, fmt.Sprintf("min-size=%d", t.cfg.MinSize))
	}
	for i := 0; i < nrHooks; i++ {
		if c[i] != 0 || t.hooked(i) {
			m.Counters = append(m.Counters, tracer.Counter{
				Name: "events_" + hookShort(i), Value: c[i],
				Help: "events seen on " + hookNames[i],
			})
		}
	}
	for i := nrHooks; i < nrCounters; i++ {
		if i == cKretprobeNoEntry && t.mode != ModeKprobe {
			continue
		}
		info := counterInfo[i]
		m.Counters = append(m.Counters, tracer.Counter{Name: info.name, Value: c[i], Help: info.help, Loss: info.loss})
	}
	var misses uint64
	for _, p := range t.progs {
		if st, err := p.Stats(); err == nil {
			misses += st.RecursionMisses
		}
	}
	m.Counters = append(m.Counters, tracer.Counter{
		Name: "prog_recursion_misses", Value: misses, Loss: true,
		Help: "events the kernel did not deliver because a BPF program was already running on that CPU",
	})
	return m
}

func (t *Tracer) hooked(i int) bool {
	for _, h := range t.hooks {
		if h == hookNames[i] {
			return true
		}
	}
	return false
}

func hookShort(i int) string {
	n := hookNames[i]
	for j := 0; j < len(n); j++ {
		if n[j] == ':' {
			return n[j+1:]
		}
	}
	return n
}

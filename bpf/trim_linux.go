package bpf

import (
	"errors"

	"github.com/cilium/ebpf"

	"github.com/kmemprof/kmemprof/tracer"
)

// continuous is the state of Config.Continuous: what the previous
// Snapshot saw, to report totals per interval and to trim the maps.
type continuous struct {
	// last is each per-stack total as the previous Snapshot read it.
	last map[kmemprofTotalsKey]kmemprofTotalsVal
	// idle are the stack map ids the previous Snapshot found unreferenced.
	idle map[uint32]bool
	// Cumulative, for the counters.
	totalsTrimmed, stacksTrimmed, raced uint64
}

func sumTotals(vals []kmemprofTotalsVal) (s kmemprofTotalsVal) {
	for _, v := range vals {
		s.Count += v.Count
		s.Bytes += v.Bytes
	}
	return s
}

// interval turns a total read now into what was added since the previous
// Snapshot, and remembers it. A key seen for the first time, or smaller
// than before (deleted and made again), counts from zero.
func (c *continuous) interval(now map[kmemprofTotalsKey]kmemprofTotalsVal, key kmemprofTotalsKey, cur kmemprofTotalsVal) kmemprofTotalsVal {
	now[key] = cur
	if l, ok := c.last[key]; ok && l.Count <= cur.Count && l.Bytes <= cur.Bytes {
		cur.Count -= l.Count
		cur.Bytes -= l.Bytes
	}
	return cur
}

// trim keeps the kernel maps of a capture that runs for days from filling
// with what no longer matters. The stack map keeps every stack ever walked,
// so new call paths find their buckets held by stacks nothing refers to;
// the per-stack totals keep a key for every process that ever allocated.
//
// It deletes the totals unchanged since the previous Snapshot (their
// interval value was zero, so nothing reported changes), and the stacks that
// neither snap nor the previous Snapshot referred to. A stack deleted just
// as a new allocation reuses it shows as "[stack lost: evicted from stack
// map]", counted like any lost stack. The second-chance store (stack
// collisions) is not trimmed: with the stack map trimmed, collisions stay
// rare.
func (t *Tracer) trim(snap *tracer.Snapshot, now map[kmemprofTotalsKey]kmemprofTotalsVal) error {
	c := t.cont
	m := t.maps.Totals
	for k, cur := range now {
		if l, ok := c.last[k]; !ok || l != cur {
			continue
		}
		var final []kmemprofTotalsVal
		err := m.LookupAndDelete(&k, &final)
		switch {
		case err == nil:
			// Allocations added between the read and the delete are lost
			// to the alloc values.
			if f := sumTotals(final); f.Count > cur.Count {
				c.raced += f.Count - cur.Count
			}
		case errors.Is(err, ebpf.ErrKeyNotExist):
		default:
			// Before 5.14 hash maps cannot be read and deleted at once.
			if err = m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return err
			}
		}
		delete(now, k)
		c.totalsTrimmed++
	}
	c.last = now

	used := map[uint32]bool{}
	ref := func(id tracer.StackID) {
		if base, ok := t.leafBase[id]; ok {
			id = base
		}
		if c, ok := t.callerBase[id]; ok {
			id = c.base
		}
		if id >= 0 && id < tracer.StackID(t.cfg.MaxStacks) {
			used[uint32(id)] = true
		}
	}
	for i := range snap.Records {
		ref(snap.Records[i].Stack)
	}
	for k := range now { // the totals kept: a deleted one holds no stack
		ref(tracer.StackID(k.StackId))
	}
	stacks := t.maps.Stacks
	idle := map[uint32]bool{}
	var id uint32
	var prev any // nil: from the first key
	for n := 0; n <= t.cfg.MaxStacks; n++ {
		var next uint32
		err := stacks.NextKey(prev, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return err
		}
		id = next
		prev = &id
		if !used[id] {
			idle[id] = true
		}
	}
	for id := range idle {
		if !c.idle[id] {
			continue
		}
		if err := stacks.Delete(&id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		delete(idle, id)
		c.stacksTrimmed++
	}
	c.idle = idle
	return nil
}

// continuousCounters are the counters of Config.Continuous.
func (c *continuous) counters() []tracer.Counter {
	return []tracer.Counter{
		{Name: "totals_trimmed", Value: c.totalsTrimmed, Help: "per-stack totals deleted after a snapshot interval without allocations (continuous capture): they count from zero if they come back"},
		{Name: "stacks_trimmed", Value: c.stacksTrimmed, Help: "stacks deleted from the stack map after two snapshots that did not refer to them (continuous capture): walked again if they come back"},
		{Name: "totals_trim_raced", Value: c.raced, Loss: true, Help: "allocations added to a per-stack total between its read and its deletion (continuous capture): missing from alloc_objects and alloc_space; not known before Linux 5.14"},
	}
}

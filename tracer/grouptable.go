package tracer

import (
	"hash/maphash"
	"math/bits"
)

// groupTable maps group keys to indexes into a []group that holds the keys
// themselves. It is an open-addressing table of 8-byte slots: where a Go map
// touches its control word, its slot and then the group it points to, a
// lookup here usually touches one slot, in a table small enough to stay in
// cache, and the group it is about to update anyway. Aggregating a million
// records is dominated by these lookups.
type groupTable struct {
	seed  maphash.Seed
	slots []groupSlot
	used  int
}

// groupSlot is one table entry; idx 0 marks an empty slot.
type groupSlot struct {
	tag uint32 // high bits of the key's hash, to skip most mismatches cheaply
	idx uint32 // group index + 1
}

func newGroupTable(hint int) groupTable {
	return groupTable{seed: maphash.MakeSeed(), slots: make([]groupSlot, tableSize(hint))}
}

// tableSize returns a power of two at least twice n, so that the table is
// at most half full and probe sequences stay short.
func tableSize(n int) int {
	return 1 << max(4, bits.Len(uint(2*n)))
}

func (t *groupTable) hash(gk *groupKey) (pos uint64, tag uint32) {
	h := maphash.Comparable(t.seed, *gk)
	return h, uint32(h >> 32)
}

func (t *groupTable) hashOf(gk *groupKey) uint64 {
	return maphash.Comparable(t.seed, *gk)
}

// find returns the index of the group with key gk.
func (t *groupTable) find(gk *groupKey, groups []group) (int32, bool) {
	return t.findHashed(gk, t.hashOf(gk), groups)
}

func (t *groupTable) findHashed(gk *groupKey, h uint64, groups []group) (int32, bool) {
	tag := uint32(h >> 32)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s.idx == 0 {
			return 0, false
		}
		if s.tag == tag && groups[s.idx-1].gk == *gk {
			return int32(s.idx - 1), true
		}
	}
}

// insert adds gk, which must not be in the table, as groups[idx].
func (t *groupTable) insert(gk *groupKey, idx int32, groups []group) {
	if 2*(t.used+1) > len(t.slots) {
		t.grow(groups)
	}
	t.put(gk, idx)
	t.used++
}

func (t *groupTable) put(gk *groupKey, idx int32) {
	h, tag := t.hash(gk)
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for t.slots[i].idx != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = groupSlot{tag: tag, idx: uint32(idx) + 1}
}

func (t *groupTable) grow(groups []group) {
	old := t.slots
	t.slots = make([]groupSlot, 2*len(old))
	for _, s := range old {
		if s.idx != 0 {
			t.put(&groups[s.idx-1].gk, int32(s.idx-1))
		}
	}
}

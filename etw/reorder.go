package etw

import (
	"cmp"
	"slices"
)

// ETW hands each CPU's buffer to a real-time consumer on its own, when it
// fills or is flushed, so events of different CPUs arrive out of order: a
// free logged on one CPU can arrive before its allocation logged on
// another, and an allocation of a reused address before the free of the
// allocation before it. So the Matcher does not pair events as they
// arrive: it keeps each address's events in time-stamp order, where
// allocations and frees alternate, and reads the pairs off that order. A
// free releases the allocation just before it; an allocation with no free
// after it is outstanding; a free with no allocation before it freed what
// was allocated before the capture; an allocation followed by another one
// lost its free. Events leave the history, oldest arrivals first, once it
// holds more than its bound; their pairing is settled then.

// addrEvent is an allocation or a free at one address.
type addrEvent struct {
	ts       int64
	alloc    *allocation // nil for a free
	seq      uint64      // arrival order
	filtered bool        // a free whose tag the filter keeps out
}

// eventRef names an event in the eviction queue.
type eventRef struct {
	k   allocKey
	seq uint64
}

// pairing counts how events were settled.
type pairing struct {
	freed, freeUntracked, filtered, allocLostFree uint64
}

// history holds recent events of every address in time-stamp order, at
// most max events that are not the last allocation of their address (those
// are the outstanding allocations, bounded by MaxOutstanding instead).
type history struct {
	byKey   map[allocKey][]addrEvent
	allocs  int // addresses whose last event is an allocation
	n       int // events kept
	max     int
	seq     uint64
	fifo    []eventRef
	head    int
	settled pairing // of the events that left
	// sessions lists, by address, the sessions with session-pool events
	// kept there.
	sessions map[uint64][]uint32
}

func newHistory(max int) history {
	if max <= 0 {
		max = DefaultReorderWindow
	}
	return history{byKey: map[allocKey][]addrEvent{}, max: max, sessions: map[uint64][]uint32{}}
}

// outstandingAt reports whether an address's events end with an
// allocation.
func outstandingAt(es []addrEvent) bool {
	return len(es) > 0 && es[len(es)-1].alloc != nil
}

// add inserts an event at k in time-stamp order (at equal stamps,
// allocations before frees) and reports whether it arrived after a later
// event of its address.
func (h *history) add(k allocKey, e addrEvent) (late bool) {
	h.seq++
	e.seq = h.seq
	es := h.byKey[k]
	if len(es) == 0 && k.inSession {
		h.sessions[k.entry] = append(h.sessions[k.entry], k.session)
	}
	was := outstandingAt(es)
	i, _ := slices.BinarySearchFunc(es, e, func(x, y addrEvent) int {
		if x.ts < y.ts || (x.ts == y.ts && (x.alloc != nil || y.alloc == nil)) {
			return -1
		}
		return 1
	})
	es = slices.Insert(es, i, e)
	h.byKey[k] = es
	h.n++
	if now := outstandingAt(es); now != was {
		if now {
			h.allocs++
		} else {
			h.allocs--
		}
	}
	h.fifo = append(h.fifo, eventRef{k, e.seq})
	return i < len(es)-1
}

// lastAllocBefore returns the allocation the free logged at ts at k would
// release: the event just before ts, if it is an allocation.
func (h *history) lastAllocBefore(k allocKey, ts int64) *allocation {
	es := h.byKey[k]
	i, _ := slices.BinarySearchFunc(es, ts, func(x addrEvent, ts int64) int {
		if x.ts <= ts {
			return -1
		}
		return 1
	})
	if i > 0 {
		return es[i-1].alloc
	}
	return nil
}

// settle counts the pairing of es[:n] (what follows decides the last of
// them: an allocation followed by a free was freed).
func settle(p *pairing, es []addrEvent, n int) {
	for i := 0; i < n; i++ {
		e := es[i]
		switch {
		case e.alloc == nil && (i == 0 || es[i-1].alloc == nil):
			if e.filtered {
				p.filtered++
			} else {
				p.freeUntracked++
			}
		case e.alloc == nil:
			// Counted with its allocation.
		case i+1 < len(es) && es[i+1].alloc == nil:
			p.freed++
		case i+1 < len(es):
			p.allocLostFree++
		}
	}
}

// evict lets the oldest arrivals go while more than max events are kept,
// with every event of their address logged before them, settling them.
// The outstanding allocation of an address (its last event) stays.
func (h *history) evict() {
	for h.n-h.allocs > h.max && h.head < len(h.fifo) {
		r := h.fifo[h.head]
		h.head++
		es := h.byKey[r.k]
		i := slices.IndexFunc(es, func(e addrEvent) bool { return e.seq == r.seq })
		if i < 0 {
			continue // gone with an earlier eviction
		}
		n := i + 1
		if es[i].alloc != nil {
			if n == len(es) {
				continue // outstanding: it stays
			}
			if es[n].alloc == nil {
				n++ // its free goes with it
			}
		}
		// An allocation left first with its free gone too would be
		// settled as a free without allocation: keep pairs whole.
		settle(&h.settled, es, n)
		h.n -= n
		if n == len(es) {
			delete(h.byKey, r.k)
			if r.k.inSession {
				ss := slices.DeleteFunc(h.sessions[r.k.entry], func(s uint32) bool { return s == r.k.session })
				if len(ss) == 0 {
					delete(h.sessions, r.k.entry)
				} else {
					h.sessions[r.k.entry] = ss
				}
			}
		} else {
			h.byKey[r.k] = slices.Delete(es, 0, n)
		}
	}
	if h.head > 1024 && h.head > len(h.fifo)/2 {
		h.fifo = slices.Delete(h.fifo, 0, h.head)
		h.head = 0
	}
	if len(h.fifo)-h.head > 2*h.n+1024 {
		// Most of the queue names events gone since: rebuild it.
		h.compact()
	}
}

// compact rebuilds the eviction queue from the events kept.
func (h *history) compact() {
	live := make([]eventRef, 0, h.n)
	for k, es := range h.byKey {
		for _, e := range es {
			live = append(live, eventRef{k, e.seq})
		}
	}
	slices.SortFunc(live, func(a, b eventRef) int { return cmp.Compare(a.seq, b.seq) })
	h.fifo, h.head = live, 0
}

// pairing returns the counts of every event so far: those settled when
// they left, and those kept as their order now says.
func (h *history) pairing() pairing {
	p := h.settled
	for _, es := range h.byKey {
		settle(&p, es, len(es))
	}
	return p
}

// each calls f with the events of every address.
func (h *history) each(f func(k allocKey, es []addrEvent)) {
	for k, es := range h.byKey {
		f(k, es)
	}
}

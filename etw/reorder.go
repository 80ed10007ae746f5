package etw

import (
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
// lost its free.
//
// How late an event can arrive is bounded in time, not in events: a CPU's
// buffer reaches the consumer when it fills, or at the latest when the
// session's flush timer fires. So events are kept for the reorder span
// (MatcherConfig.ReorderSpan) of trace time behind the newest time stamp
// seen, the watermark; once older than it, an address's events are final
// and leave at once, their pairs settled. Each event is inserted once
// (at the end of its address's list when it arrives in order) and leaves
// once, from the front: constant work however often an address is reused.
// An event that arrives already older than the watermark, or older than
// events of its address that have left, cannot be paired any more: it is
// counted (reorder_late), never taken for a leak. A bound on the events
// kept (MatcherConfig.ReorderWindow) caps memory; events pushed out by it
// before their span has passed are counted too (reorder_overflow).

// addrEvent is an allocation or a free at one address.
type addrEvent struct {
	ts       int64
	alloc    *allocation // nil for a free
	filtered bool        // a free whose tag the filter keeps out
}

// addrQueue is an address's events in time-stamp order: es[head:].
type addrQueue struct {
	es   []addrEvent
	head int
	// left is the newest time stamp of the events that left; leftAny says
	// some did.
	left    int64
	leftAny bool
}

func (q *addrQueue) live() []addrEvent { return q.es[q.head:] }

// arrival names an event in arrival order, by address and time stamp.
type arrival struct {
	k  allocKey
	ts int64
}

// pairing counts how events were settled.
type pairing struct {
	freed, freeUntracked, filtered, allocLostFree uint64
}

// history holds the recent events of every address (see above).
type history struct {
	byKey  map[allocKey]*addrQueue
	allocs int // addresses whose last event is an allocation
	n      int // events kept
	max    int // events kept at most, outstanding allocations aside
	span   int64
	// newest is the newest time stamp seen; any true once an event was.
	newest int64
	any    bool
	fifo   []arrival
	head   int
	// gone holds, for addresses whose events all left before their span
	// had passed (pushed out by max), the newest time stamp that left.
	gone    map[allocKey]int64
	settled pairing // of the events that left
	// late counts events that arrived too late to be paired, overflow the
	// events pushed out by max.
	late, overflow uint64
	// sessions lists, by address, the sessions with session-pool events
	// kept there.
	sessions map[uint64][]uint32
	spare    []*addrQueue
}

// newHistory returns a history that keeps events span time-stamp units
// behind the newest, and at most max of them (<= 0: DefaultReorderWindow).
func newHistory(max int, span int64) history {
	if max <= 0 {
		max = DefaultReorderWindow
	}
	return history{byKey: map[allocKey]*addrQueue{}, max: max, span: span, gone: map[allocKey]int64{}, sessions: map[uint64][]uint32{}}
}

// outstandingAt reports whether an address's events end with an
// allocation.
func outstandingAt(es []addrEvent) bool {
	return len(es) > 0 && es[len(es)-1].alloc != nil
}

// watermark is the time stamp below which events are final.
func (h *history) watermark() int64 {
	if !h.any {
		return -1 << 63
	}
	return h.newest - h.span
}

// add inserts an event at k in time-stamp order (at equal stamps,
// allocations before frees). late says it arrived after a later event of
// its address (paired all the same); dropped says it arrived too late to be
// paired at all, and was counted instead of kept.
func (h *history) add(k allocKey, e addrEvent) (late, dropped bool) {
	if h.any && e.ts < h.watermark() {
		h.late++
		return false, true
	}
	q := h.byKey[k]
	if q == nil {
		if ts, ok := h.gone[k]; ok && e.ts <= ts {
			h.late++
			return false, true
		}
		if n := len(h.spare); n > 0 {
			q, h.spare = h.spare[n-1], h.spare[:n-1]
		} else {
			q = &addrQueue{}
		}
		h.byKey[k] = q
		if k.inSession {
			h.sessions[k.entry] = append(h.sessions[k.entry], k.session)
		}
	} else if q.leftAny && e.ts <= q.left {
		h.late++
		return false, true
	}
	es := q.live()
	was := outstandingAt(es)
	// Nearly always in order: the end.
	i := len(es)
	if i > 0 && !after(e, es[i-1]) {
		i, _ = slices.BinarySearchFunc(es, e, func(x, y addrEvent) int {
			if after(y, x) {
				return -1
			}
			return 1
		})
	}
	if i == len(es) {
		q.es = append(q.es, e)
	} else {
		q.es = slices.Insert(q.es, q.head+i, e)
	}
	h.n++
	if now := outstandingAt(q.live()); now != was {
		if now {
			h.allocs++
		} else {
			h.allocs--
		}
	}
	h.fifo = append(h.fifo, arrival{k, e.ts})
	if !h.any || e.ts > h.newest {
		h.newest, h.any = e.ts, true
	}
	return i < len(es), false
}

// after reports whether e goes after x in an address's order: a later time
// stamp, or at the same one, a free after an allocation (an allocation
// after everything of its stamp).
func after(e, x addrEvent) bool {
	return e.ts > x.ts || (e.ts == x.ts && (e.alloc != nil || x.alloc == nil))
}

// lastAllocBefore returns the allocation the free logged at ts at k would
// release: the event just before ts, if it is an allocation.
func (h *history) lastAllocBefore(k allocKey, ts int64) *allocation {
	q := h.byKey[k]
	if q == nil {
		return nil
	}
	es := q.live()
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

// evict lets final events leave: those older than the watermark, and the
// oldest arrivals while more than max events are kept (counted as
// overflow). An allocation stays while no final event follows it (it is
// outstanding, or what follows may still be preceded by a late free), and
// a pair leaves whole.
func (h *history) evict() {
	wm := h.watermark()
	for h.head < len(h.fifo) {
		r := h.fifo[h.head]
		forced := false
		if r.ts >= wm {
			if h.n-h.allocs <= h.max {
				break
			}
			forced = true
		}
		h.head++
		q := h.byKey[r.k]
		if q == nil {
			continue // gone with an earlier arrival
		}
		limit := wm
		if forced {
			limit = r.ts + 1
		}
		es := q.live()
		n := 0
		for n < len(es) && es[n].ts < limit {
			n++
		}
		// The last final allocation stays unless a final event follows.
		if n > 0 && es[n-1].alloc != nil {
			n--
		}
		if n == 0 {
			continue
		}
		settle(&h.settled, es, n)
		if forced {
			h.overflow += uint64(n)
		}
		q.left, q.leftAny = es[n-1].ts, true
		q.head += n
		h.n -= n
		if q.head == len(q.es) {
			h.drop(r.k, q, forced)
		} else if q.head > 32 && q.head > len(q.es)/2 {
			q.es = append(q.es[:0], q.es[q.head:]...)
			q.head = 0
		}
	}
	if h.head > 1024 && h.head > len(h.fifo)/2 {
		h.fifo = append(h.fifo[:0], h.fifo[h.head:]...)
		h.head = 0
	}
	if len(h.gone) > 1024 {
		// Addresses pushed out are remembered until their span has passed:
		// later, any event before it is late anyway.
		for k, ts := range h.gone {
			if ts < wm {
				delete(h.gone, k)
			}
		}
	}
}

// drop forgets an address whose events all left; pushed out before its
// span had passed, it is remembered in gone.
func (h *history) drop(k allocKey, q *addrQueue, forced bool) {
	if forced || q.left >= h.watermark() {
		h.gone[k] = q.left
	}
	delete(h.byKey, k)
	*q = addrQueue{es: q.es[:0]}
	if cap(q.es) <= 64 {
		h.spare = append(h.spare, q)
	}
	if k.inSession {
		ss := slices.DeleteFunc(h.sessions[k.entry], func(s uint32) bool { return s == k.session })
		if len(ss) == 0 {
			delete(h.sessions, k.entry)
		} else {
			h.sessions[k.entry] = ss
		}
	}
}

// pairing returns the counts of every event so far: those settled when
// they left, and those kept as their order now says.
func (h *history) pairing() pairing {
	p := h.settled
	for _, q := range h.byKey {
		es := q.live()
		settle(&p, es, len(es))
	}
	return p
}

// each calls f with the events of every address.
func (h *history) each(f func(k allocKey, es []addrEvent)) {
	for k, q := range h.byKey {
		f(k, q.live())
	}
}

package tracer

import (
	"math"
	"sort"
	"time"
)

// Usage is what one stack holds at one moment.
type Usage struct {
	Objects uint64
	Bytes   uint64
}

// Series records, at regular moments of a capture, what every stack holds.
// The capture's start counts as a moment where every stack held nothing:
// only allocations made during the capture are tracked.
type Series struct {
	Start  time.Time
	Times  []time.Time
	Points []map[StackID]Usage
}

// Add appends one moment.
func (s *Series) Add(at time.Time, usage map[StackID]Usage) {
	s.Times = append(s.Times, at)
	s.Points = append(s.Points, usage)
}

// GrowthFigure says how steadily a stack's outstanding allocations rose.
type GrowthFigure struct {
	// Objects and Bytes are what the stack holds at the end, weighted by
	// Steadiness: a leak that still climbs at every interval keeps all of
	// it; a stack that rose and plateaued before the second half of the
	// capture keeps nothing; churn (rises and falls) keeps about half of a
	// small net amount.
	Objects, Bytes float64
	// Steadiness is the share of intervals of the second half of the capture
	// in which the count rose, 0 to 1: growth that goes on, not growth that was.
	Steadiness float64
	// Rises is how many intervals the count rose in, of Intervals (whole capture).
	Rises, Intervals int
}

// Growth computes a GrowthFigure for every stack of the series. A stack
// absent at a moment held nothing then.
func (s *Series) Growth() map[StackID]GrowthFigure {
	out := make(map[StackID]GrowthFigure)
	if len(s.Points) == 0 {
		return out
	}
	stacks := map[StackID]bool{}
	for _, p := range s.Points {
		for id := range p {
			stacks[id] = true
		}
	}
	n := len(s.Points)
	for id := range stacks {
		var prev Usage // the capture's start: nothing
		rises, lateRises := 0, 0
		half := n / 2 // intervals from here on are the second half
		for i, p := range s.Points {
			u := p[id]
			if u.Objects > prev.Objects {
				rises++
				if i >= half {
					lateRises++
				}
			}
			prev = u
		}
		last := s.Points[n-1][id]
		if last.Objects == 0 {
			continue
		}
		steady := float64(lateRises) / float64(n-half)
		out[id] = GrowthFigure{
			Objects:    float64(last.Objects) * steady,
			Bytes:      float64(last.Bytes) * steady,
			Steadiness: steady,
			Rises:      rises,
			Intervals:  n,
		}
	}
	return out
}

// applyGrowth spreads each stack's growth over its samples in proportion to
// their in-use objects (the labels split a stack into several samples).
func applyGrowth(samples []AggSample, growth map[StackID]GrowthFigure) {
	if len(growth) == 0 {
		return
	}
	inuse := map[StackID]uint64{}
	for i := range samples {
		inuse[samples[i].Stack] += samples[i].InuseObjects
	}
	for i := range samples {
		s := &samples[i]
		g, ok := growth[s.Stack]
		if !ok || inuse[s.Stack] == 0 {
			continue
		}
		share := float64(s.InuseObjects) / float64(inuse[s.Stack])
		s.GrowthObjects = uint64(math.Round(g.Objects * share))
		s.GrowthSpace = uint64(math.Round(g.Bytes * share))
		s.Steadiness = g.Steadiness
	}
}

// IsReclaimableCache reports whether a slab cache's objects are reclaimable
// under memory pressure (SLAB_RECLAIM_ACCOUNT: dentries, inodes...): they
// grow with use and are given back later, so they rarely are leaks.
func IsReclaimableCache(name string, reclaimable map[string]bool) bool {
	if reclaimable[name] {
		return true
	}
	return len(name) > 12 && name[:12] == "kmalloc-rcl-"
}

// sortByGrowth orders rows for the summary: unreclaimable before
// reclaimable (a reclaimable cache, or objects freed with one), then by
// growth of bytes, then of objects.
func sortByGrowth[T any](rows []T, reclaimable func(T) bool, space, objects func(T) uint64) {
	sort.SliceStable(rows, func(i, j int) bool {
		ri, rj := reclaimable(rows[i]), reclaimable(rows[j])
		if ri != rj {
			return !ri
		}
		if a, b := space(rows[i]), space(rows[j]); a != b {
			return a > b
		}
		return objects(rows[i]) > objects(rows[j])
	})
}

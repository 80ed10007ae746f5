package tracer_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// randomSnapshot returns a snapshot with every kind of key Aggregate has to
// handle, in bulk: missing and lost stacks, young records, totals without
// records and records without totals.
func randomSnapshot(seed uint64, nRecords int, withTotals bool) *tracer.Snapshot {
	rng := rand.New(rand.NewPCG(seed, 7))
	snap := &tracer.Snapshot{
		Stacks: make(map[tracer.StackID][]uint64),
		Taken:  time.Unix(1000, 0),
	}
	for id := range tracer.StackID(40) {
		if id%10 == 9 {
			continue // referenced below, but missing
		}
		snap.Stacks[id] = []uint64{0xffffffff81000000 + uint64(id)*16, 0xffffffff82000000 + uint64(rng.IntN(5))*16}
	}
	key := func() tracer.Key {
		return tracer.Key{
			Kind:     tracer.Kind(1 + rng.IntN(4)),
			Stack:    tracer.StackID(rng.IntN(45) - 5),
			Cache:    []string{"", "kmalloc-64", "kmalloc-128"}[rng.IntN(3)],
			Comm:     []string{"", "a", "b", "c"}[rng.IntN(4)],
			PID:      uint32(rng.IntN(3)),
			CgroupID: uint64(rng.IntN(3)),
			Pool:     []string{"", "Paged"}[rng.IntN(2)],
		}
	}
	for range nRecords {
		snap.Records = append(snap.Records, tracer.Record{
			Key:        key(),
			BytesReq:   uint64(rng.IntN(100)),
			BytesAlloc: 100 + uint64(rng.IntN(100)),
			Time:       snap.Taken.Add(-time.Duration(rng.IntN(20)) * time.Second).UnixNano(),
			Accounted:  rng.IntN(5) == 0,
		})
	}
	if withTotals {
		for i := range nRecords / 2 {
			k := key()
			if i%2 == 0 {
				k = snap.Records[rng.IntN(len(snap.Records))].Key
			}
			snap.Totals = append(snap.Totals, tracer.Total{Key: k, Count: uint64(1 + rng.IntN(10)), Bytes: uint64(rng.IntN(5000))})
		}
	}
	return snap
}

type refValues struct {
	allocObjects, allocSpace, inuseObjects, inuseSpace, reqSpace uint64
	accounted                                                    bool
}

// reference aggregates the obvious way, for comparison.
func reference(snap *tracer.Snapshot, minAge time.Duration) map[tracer.Key]refValues {
	fix := func(k tracer.Key) tracer.Key {
		if k.Stack >= 0 && len(snap.Stacks[k.Stack]) == 0 {
			k.Stack = tracer.StackLostNotFound
		}
		return k
	}
	type acc struct {
		refValues
		recObjects, recSpace uint64
		hasTotal             bool
	}
	m := make(map[tracer.Key]*acc)
	get := func(k tracer.Key) *acc {
		a := m[k]
		if a == nil {
			a = &acc{}
			m[k] = a
		}
		return a
	}
	// The alloc fallback applies per original key, before missing stacks
	// are merged, so accumulate by original key first.
	for _, r := range snap.Records {
		a := get(r.Key)
		a.recObjects++
		a.recSpace += r.BytesAlloc
		a.accounted = a.accounted || r.Accounted
		if snap.Taken.Sub(time.Unix(0, r.Time)) < minAge {
			continue
		}
		a.inuseObjects++
		a.inuseSpace += r.BytesAlloc
		a.reqSpace += r.BytesReq
	}
	for _, t := range snap.Totals {
		a := get(t.Key)
		a.hasTotal = true
		a.allocObjects += t.Count
		a.allocSpace += t.Bytes
	}
	out := make(map[tracer.Key]refValues)
	for k, a := range m {
		if !a.hasTotal {
			a.allocObjects, a.allocSpace = a.recObjects, a.recSpace
		}
		fk := fix(k)
		v := out[fk]
		v.allocObjects += a.allocObjects
		v.allocSpace += a.allocSpace
		v.inuseObjects += a.inuseObjects
		v.inuseSpace += a.inuseSpace
		v.reqSpace += a.reqSpace
		v.accounted = v.accounted || a.accounted
		out[fk] = v
	}
	for k, v := range out {
		if v.allocObjects == 0 && v.allocSpace == 0 && v.inuseObjects == 0 && v.inuseSpace == 0 {
			delete(out, k)
		}
	}
	return out
}

func TestAggregateMatchesReference(t *testing.T) {
	for _, tt := range []struct {
		records int
		totals  bool
	}{
		{1, false}, {100, true}, {5000, false}, {20000, true},
	} {
		t.Run(fmt.Sprintf("records=%d,totals=%v", tt.records, tt.totals), func(t *testing.T) {
			snap := randomSnapshot(uint64(tt.records), tt.records, tt.totals)
			const minAge = 10 * time.Second
			agg, err := tracer.Aggregate(snap, nil, tracer.Options{MinAge: minAge})
			if err != nil {
				t.Fatal(err)
			}
			want := reference(snap, minAge)
			got := make(map[tracer.Key]refValues)
			for _, s := range agg.Samples {
				if _, dup := got[s.Key]; dup {
					t.Errorf("key %+v appears twice", s.Key)
				}
				got[s.Key] = refValues{s.AllocObjects, s.AllocSpace, s.InuseObjects, s.InuseSpace, s.ReqSpace, s.Accounted}
			}
			if !reflect.DeepEqual(got, want) {
				for k, w := range want {
					if g, ok := got[k]; !ok || g != w {
						t.Errorf("key %+v: got %+v (present %v), want %+v", k, g, ok, w)
					}
				}
				for k, g := range got {
					if _, ok := want[k]; !ok {
						t.Errorf("unexpected key %+v = %+v", k, g)
					}
				}
			}

			// The order must not depend on the order of the records.
			shuffled := *snap
			shuffled.Records = append([]tracer.Record(nil), snap.Records...)
			shuffled.Totals = append([]tracer.Total(nil), snap.Totals...)
			rng := rand.New(rand.NewPCG(1, 1))
			rng.Shuffle(len(shuffled.Records), func(i, j int) {
				shuffled.Records[i], shuffled.Records[j] = shuffled.Records[j], shuffled.Records[i]
			})
			rng.Shuffle(len(shuffled.Totals), func(i, j int) {
				shuffled.Totals[i], shuffled.Totals[j] = shuffled.Totals[j], shuffled.Totals[i]
			})
			agg2, err := tracer.Aggregate(&shuffled, nil, tracer.Options{MinAge: minAge})
			if err != nil {
				t.Fatal(err)
			}
			if len(agg2.Samples) != len(agg.Samples) {
				t.Fatalf("%d samples after shuffling, want %d", len(agg2.Samples), len(agg.Samples))
			}
			for i := range agg.Samples {
				if agg.Samples[i].Key != agg2.Samples[i].Key {
					t.Fatalf("sample %d is %+v after shuffling, want %+v", i, agg2.Samples[i].Key, agg.Samples[i].Key)
				}
			}
		})
	}
}

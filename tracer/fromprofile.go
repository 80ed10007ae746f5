package tracer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/pprof/profile"
)

// FromProfile rebuilds, from a profile that Aggregation.Profile wrote, the
// aggregation its summary was printed from: the samples with their stacks,
// values and labels, the counters and the self-check's lines from the
// comments. What the profile does not keep is not invented: the allocator
// frames (left out of its stacks, see LabelAllocator) are one frame named by
// that label, which the summary skips as it skipped them.
// platform presents the frames as the capture's did. It returns the
// comments it did not turn into counters (capture facts, the system view),
// in order, for the caller to print.
func FromProfile(p *profile.Profile, platform Platform) (*Aggregation, []string, error) {
	if p == nil {
		return nil, nil, errors.New("reading profile: nil profile")
	}
	col := map[string]int{}
	for i, st := range p.SampleType {
		col[st.Type] = i
	}
	for _, need := range []string{"alloc_objects", "alloc_space", "inuse_objects", "inuse_space"} {
		if _, ok := col[need]; !ok {
			return nil, nil, fmt.Errorf("not a kmemprof profile: no %s sample type (has %s)", need, sampleTypes(p))
		}
	}
	value := func(s *profile.Sample, name string) uint64 {
		i, ok := col[name]
		if !ok || i >= len(s.Value) || s.Value[i] < 0 {
			return 0
		}
		return uint64(s.Value[i])
	}
	_, hasGrowth := col["growth_space"]
	a := &Aggregation{Platform: platform, HasGrowth: hasGrowth, SampleEvery: 1, MergedCaches: map[string][]string{}}
	if p.PeriodType != nil && p.PeriodType.Type == "allocations" && p.Period > 1 {
		a.SampleEvery = uint64(p.Period)
	}
	// Stacks are told apart by their locations and the allocator called.
	type stackKey struct {
		locs      string
		allocator string
	}
	stacks := map[stackKey]StackID{}
	frames := map[StackID][]Frame{}
	a.Samples = make([]AggSample, 0, len(p.Sample))
	for _, ps := range p.Sample {
		label := func(k string) string {
			if v := ps.Label[k]; len(v) > 0 {
				return v[0]
			}
			return ""
		}
		num := func(k string) (int64, bool) {
			if v := ps.NumLabel[k]; len(v) > 0 {
				return v[0], true
			}
			return 0, false
		}
		var s AggSample
		kind, err := parseKind(label(LabelKind))
		if err != nil {
			return nil, nil, err
		}
		s.Kind = kind
		s.Cache = label(LabelCache)
		if s.Cache == "" {
			s.Cache = label(LabelTag)
		}
		s.Pool = label(LabelPool)
		s.Comm = label(LabelComm)
		if pid, err := strconv.ParseUint(label(LabelPID), 10, 32); err == nil {
			s.PID = uint32(pid)
		}
		s.CgroupPath = label(LabelCgroup)
		s.MemcgPath = label(LabelMemcg)
		s.MemcgRemoved = label(LabelMemcgRemoved) == "true"
		s.Accounted = label(LabelAccounted) == "true"
		s.Reclaimable = label(LabelReclaim) == "true"
		s.ReclaimableOwner = label(LabelOwner)
		s.FreesUntraced = label(LabelUntraced) == "true"
		if m := label(LabelMerged); m != "" && s.Kind == KindSlab {
			a.MergedCaches[s.Cache] = strings.Split(m, ",")
		}
		s.AllocObjects, s.AllocSpace = value(ps, "alloc_objects"), value(ps, "alloc_space")
		s.InuseObjects, s.InuseSpace = value(ps, "inuse_objects"), value(ps, "inuse_space")
		if req, ok := num(LabelRequested); ok && req > 0 {
			s.ReqSpace = uint64(req)
		}
		if hasGrowth {
			s.GrowthObjects, s.GrowthSpace = value(ps, "growth_objects"), value(ps, "growth_space")
			if o, ok := num(LabelGrowthObjects); ok {
				sp, _ := num(LabelGrowthSpace)
				s.GrowthObjects, s.GrowthSpace = uint64(max(o, 0)), uint64(max(sp, 0))
			}
			if st, ok := num(LabelSteadiness); ok {
				s.Steadiness = float64(st) / 1e6
			}
		}

		var ids strings.Builder
		fs := make([]Frame, 0, len(ps.Location)+1)
		if alloc := label(LabelAllocator); alloc != "" {
			// The allocator's frames are gone; its name stands for them, so
			// that rows are told apart by it as at capture end (where the
			// summary skips it).
			fs = append(fs, Frame{Function: alloc})
		}
		lost := StackID(0)
		for _, l := range ps.Location {
			fmt.Fprintf(&ids, "%d,", l.ID)
			f := Frame{Addr: l.Address}
			if len(l.Line) > 0 && l.Line[0].Function != nil {
				fn := l.Line[0].Function
				f.Function = fn.Name
				if strings.HasPrefix(fn.Filename, "[") {
					f.Module = strings.TrimSuffix(strings.TrimPrefix(fn.Filename, "["), "]")
				}
				if id, ok := stackLostID(fn.Name); ok && len(ps.Location) == 1 {
					lost = id
				}
			}
			fs = append(fs, f)
		}
		k := stackKey{ids.String(), label(LabelAllocator)}
		id, ok := stacks[k]
		if !ok {
			id = StackID(len(stacks) + 1)
			if lost < 0 {
				id = lost
			}
			stacks[k] = id
			frames[id] = fs
		}
		s.Stack = id
		s.Frames = frames[id]
		a.Samples = append(a.Samples, s)

		a.AllocObjects += s.AllocObjects
		a.AllocSpace += s.AllocSpace
		a.InuseObjects += s.InuseObjects
		a.InuseSpace += s.InuseSpace
		a.ReqSpace += s.ReqSpace
	}
	rest, err := a.parseComments(p.Comments)
	if err != nil {
		return nil, nil, err
	}
	return a, rest, nil
}

func sampleTypes(p *profile.Profile) string {
	var ts []string
	for _, st := range p.SampleType {
		ts = append(ts, st.Type)
	}
	if len(ts) == 0 {
		return "none"
	}
	return strings.Join(ts, ", ")
}

func parseKind(s string) (Kind, error) {
	for _, k := range []Kind{KindSlab, KindPage, KindPercpu, KindPool} {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("not a kmemprof profile: a sample of kind %q", s)
}

// stackLostID is the StackID of a lost-stack placeholder's name.
func stackLostID(name string) (StackID, bool) {
	if !strings.HasPrefix(name, "[stack lost") {
		return 0, false
	}
	for id := StackID(-1); id >= -16; id-- {
		if StackLostName(id) == name {
			return id, true
		}
	}
	return 0, false
}

// parseComments takes back the counters (the events:, counters: and
// losses: lines, the help of each loss from its "loss" line), the caches
// whose frees went untraced and the self-check's lines; it returns the
// other comments, in order.
func (a *Aggregation) parseComments(comments []string) ([]string, error) {
	var rest, selfCheck []string
	help := map[string]string{}
	type kv struct {
		name  string
		value uint64
		loss  bool
	}
	var counters []kv
	// parseList reads "prefix a=1 b=2"; names get namePrefix.
	parseList := func(line, prefix, namePrefix string, loss bool) error {
		for _, f := range strings.Fields(strings.TrimPrefix(line, prefix)) {
			name, v, ok := strings.Cut(f, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			if !ok || err != nil {
				return fmt.Errorf("reading profile comments: bad counter %q in %q", f, line)
			}
			counters = append(counters, kv{namePrefix + name, n, loss})
		}
		return nil
	}
	for i, c := range comments {
		var err error
		switch {
		case i == 0 && strings.HasPrefix(c, "kmemprof"):
			a.Meta.Platform = platformOf(c)
			rest = append(rest, c)
		case strings.HasPrefix(c, "events: "):
			err = parseList(c, "events: ", "events_", false)
		case strings.HasPrefix(c, "counters: "):
			err = parseList(c, "counters: ", "", false)
		case strings.HasPrefix(c, "losses: "):
			err = parseList(c, "losses: ", "", true)
		case strings.HasPrefix(c, "loss "):
			name, h, _ := strings.Cut(strings.TrimPrefix(c, "loss "), ": ")
			name, _, _ = strings.Cut(name, "=")
			help[name] = h
		case strings.HasPrefix(c, "frees untraced ("):
			a.UntracedFrees = parseUntraced(c)
		case strings.HasPrefix(c, "self-check") || strings.HasPrefix(c, "! self-check"):
			selfCheck = append(selfCheck, c)
		default:
			rest = append(rest, c)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, k := range counters {
		a.Counters = append(a.Counters, Counter{Name: k.name, Value: k.value, Loss: k.loss, Help: help[k.name]})
	}
	if len(selfCheck) > 0 {
		a.SelfCheck = &SelfCheck{Printed: selfCheck}
	}
	return rest, nil
}

func platformOf(head string) string {
	f := strings.Fields(head)
	if len(f) > 1 {
		return strings.TrimSuffix(f[1], ",")
	}
	return ""
}

// parseUntraced reads untracedLine's list back.
func parseUntraced(line string) map[string]uint64 {
	_, list, ok := strings.Cut(line, "): ")
	if !ok {
		return nil
	}
	m := map[string]uint64{}
	for _, part := range strings.Split(list, ", ") {
		i := strings.LastIndexByte(part, ' ')
		if i < 0 || strings.HasPrefix(part, "and ") {
			continue
		}
		if n, err := strconv.ParseUint(part[i+1:], 10, 64); err == nil {
			m[part[:i]] = n
		}
	}
	return m
}

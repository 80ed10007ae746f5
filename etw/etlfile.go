package etw

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/kmemprof/kmemprof/etw/etl"
	"github.com/kmemprof/kmemprof/tracer"
)

// kernelGroupGUIDs are the event classes of the kernel groups whose events
// the Matcher takes, for records logged with classic kernel headers (which
// name a group, not a class GUID).
var kernelGroupGUIDs = map[uint8]GUID{
	etl.GroupPool:      PoolTraceGUID,
	etl.GroupStackWalk: StackWalkGUID,
	etl.GroupImage:     ImageGUID,
	etl.GroupProcess:   ProcessGUID,
}

// ETLResult is what feeding a trace file to a Matcher found.
type ETLResult struct {
	Stats      etl.Stats
	PoolEvents uint64 // PoolTrace allocations and frees
	// Time converts the trace's raw time stamps to wall-clock time, and End
	// is the trace's end: MatcherConfig.Time and Clock for a Matcher that
	// ages the trace's allocations.
	Time func(ts int64) time.Time
	End  time.Time
	// StackKeys are the frames of cached stacks, by key, from the StackWalk
	// key definition events (create, delete, rundown).
	StackKeys map[uint64][]uint64
}

// StackWalk key definition opcodes: a cached stack's key and frames.
const (
	opStackKeyCreate  = 34
	opStackKeyDelete  = 35
	opStackKeyRundown = 36
	opStackKeyKernel  = 37
)

// ScanETL goes once through a trace's sorted records for what FeedETL and
// its Matcher need first: how many pool events it holds, the definitions
// of its cached stacks, and its clock (the wall-clock time of raw stamps,
// the end).
func ScanETL(f *etl.File, sorted *etl.Sorted) (*ETLResult, error) {
	res := &ETLResult{StackKeys: map[uint64][]uint64{}}
	var maxTS int64
	err := sorted.Each(func(r *etl.Record) error {
		maxTS = max(maxTS, r.TimeStamp)
		if r.Kind.Kernel() && r.Group == etl.GroupPool && r.Opcode >= OpPoolAlloc && r.Opcode <= OpPoolFreeSession {
			res.PoolEvents++
		}
		if r.Kind.Kernel() && r.Group == etl.GroupStackWalk && r.Opcode >= opStackKeyCreate && r.Opcode <= opStackKeyRundown {
			// PTR StackKey, then the frames (leaf first).
			ps := r.PtrSize
			if len(r.Payload) >= ps && (len(r.Payload)-ps)%ps == 0 {
				key := readPtr(r.Payload, ps)
				frames := make([]uint64, (len(r.Payload)-ps)/ps)
				for i := range frames {
					frames[i] = readPtr(r.Payload[ps+i*ps:], ps)
				}
				res.StackKeys[key] = frames
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Stats = sorted.Stats
	h := f.Header
	res.End = fileTimeToTime(h.EndTime)
	freq := float64(h.PerfFreq)
	switch h.ClockType {
	case 2: // system time: FILETIME stamps
		res.Time = func(ts int64) time.Time { return fileTimeToTime(ts) }
		return res, nil
	case 3: // CPU cycles
		freq = float64(h.CPUSpeedMHz) * 1e6
	}
	if freq <= 0 {
		freq = 1e7
	}
	end := res.End
	res.Time = func(ts int64) time.Time {
		return end.Add(-time.Duration(float64(maxTS-ts) / freq * 1e9))
	}
	return res, nil
}

func fileTimeToTime(ft int64) time.Time {
	if ft <= 0 {
		return time.Time{}
	}
	return time.Unix(0, (ft-fileTimeUnixEpoch)*100)
}

// FeedETL feeds every record of a trace (sorted) to m, in time-stamp order, through
// Matcher.Event: the same decoders and rules as the live session. A kernel
// stack cached by the kernel (a StackKeyKernel event naming a key) joins
// its event with the frames of the key's definition in keys (ScanETL).
// Losses the trace records (in its logfile header and buffer flags) are
// counted.
func FeedETL(f *etl.File, sorted *etl.Sorted, m *Matcher, keys map[uint64][]uint64) (etl.Stats, error) {
	st := sorted.Stats
	err := sorted.Each(func(r *etl.Record) error {
		var provider GUID
		switch {
		case r.Kind.Kernel() && r.Group == etl.GroupStackWalk && r.Opcode == opStackKeyKernel && len(r.Payload) >= 16+r.PtrSize:
			// EventTimeStamp, StackProcess, StackThread, PTR StackKey.
			frames, ok := keys[readPtr(r.Payload[16:], r.PtrSize)]
			if !ok {
				m.counts[cStackKeyUnresolved]++
				return nil
			}
			m.Stack(Header{ThreadID: r.ThreadID, ProcessID: r.ProcessID, TimeStamp: r.TimeStamp, CPU: r.CPU}, StackEvent{
				EventTimeStamp: binary.LittleEndian.Uint64(r.Payload),
				ProcessID:      binary.LittleEndian.Uint32(r.Payload[8:]),
				ThreadID:       binary.LittleEndian.Uint32(r.Payload[12:]),
				Frames:         frames,
			})
			return nil
		case r.Kind.Kernel():
			g, ok := kernelGroupGUIDs[r.Group]
			if !ok {
				return nil
			}
			provider = g
		case r.Provider != (etl.GUID{}):
			provider = r.Provider
		default:
			return nil
		}
		h := Header{ThreadID: r.ThreadID, ProcessID: r.ProcessID, TimeStamp: r.TimeStamp, CPU: r.CPU, Version: r.Version}
		m.Event(provider, r.Opcode, h, r.Payload, r.PtrSize)
		return nil
	})
	if err != nil {
		return st, err
	}
	m.Lost(LostEvents, uint64(f.Header.EventsLost)+uint64(st.EventsLostFlags))
	m.Lost(LostLogBuffers, uint64(f.Header.BuffersLost))
	m.Lost(LostBuffers, uint64(st.BuffersLostFlag))
	return st, nil
}

// ETLMeta describes a trace for the profile.
func ETLMeta(f *etl.File, path string) tracer.Meta {
	h := f.Header
	start, end := fileTimeToTime(h.StartTime), fileTimeToTime(h.EndTime)
	m := tracer.Meta{
		Platform:   "windows",
		Kernel:     fmt.Sprintf("Windows build %d", h.OSBuild),
		AttachMode: "etl file",
		Hooks:      []string{"PoolAlloc,PoolFree,PoolAllocSession,PoolFreeSession from " + path},
		Start:      start,
	}
	if end.After(start) {
		m.Duration = end.Sub(start)
	}
	m.Comments = append(m.Comments, fmt.Sprintf("trace %s: logger %q, %d CPUs, %d-bit pointers, %d buffers", path, h.LoggerName, h.NumberOfProcessors, 8*h.PointerSize, len(f.Buffers)))
	return m
}

package etl

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Kernel event groups (the high byte of a hook id) this package names.
const (
	GroupHeader    = 0x00
	GroupProcess   = 0x03
	GroupThread    = 0x05
	GroupPool      = 0x0e
	GroupPerfInfo  = 0x0f
	GroupImage     = 0x14
	GroupStackWalk = 0x18
)

// StackWalk opcodes: a full stack, and the stack key events of cached
// stacks.
const (
	OpStack        = 32
	OpStackKeyKern = 37
	OpStackKeyUser = 38
)

// PoolTrace opcodes of allocations and frees.
const (
	OpPoolAlloc        = 0x20
	OpPoolAllocSession = 0x21
	OpPoolFree         = 0x22
	OpPoolFreeSession  = 0x23
)

var groupNames = map[uint8]string{
	0x00: "Header", 0x01: "IO", 0x02: "Memory", 0x03: "Process", 0x04: "File", 0x05: "Thread",
	0x06: "TcpIp", 0x07: "Job", 0x08: "UdpIp", 0x09: "Registry", 0x0a: "DbgPrint", 0x0b: "Config",
	0x0d: "Wnf", 0x0e: "PoolTrace", 0x0f: "PerfInfo", 0x10: "Heap", 0x11: "Object", 0x12: "Power",
	0x13: "Modbound", 0x14: "Image", 0x15: "Dpc", 0x16: "Cc", 0x17: "CritSec", 0x18: "StackWalk",
	0x19: "Ums", 0x1a: "Alpc", 0x1b: "SplitIo", 0x1c: "ThreadPool", 0x1d: "Hypervisor", 0x1e: "HypervisorX",
}

var hookNames = map[uint16]string{
	0x0000: "LogfileHeader", 0x0005: "HeaderExtension", 0x0008: "RundownComplete", 0x0020: "DbgIdRsds",
	0x0301: "Start", 0x0302: "End", 0x0303: "DCStart", 0x0304: "DCEnd", 0x030a: "Load", 0x030b: "Terminate",
	0x0501: "Start", 0x0502: "End", 0x0503: "DCStart", 0x0504: "DCEnd",
	0x0e20: "PoolAlloc", 0x0e21: "PoolAllocSession", 0x0e22: "PoolFree", 0x0e23: "PoolFreeSession",
	0x0e24: "AddPoolPage", 0x0e25: "AddPoolPageSession", 0x0e26: "BigPoolPage", 0x0e27: "BigPoolPageSession",
	0x0f2e: "SampledProfile",
	0x140a: "Load", 0x1402: "Unload", 0x1403: "DCStart", 0x1404: "DCEnd",
	0x1820: "Stack", 0x1822: "KeyCreate", 0x1823: "KeyDelete", 0x1824: "KeyRundown",
	0x1825: "StackKeyKernel", 0x1826: "StackKeyUser",
}

// HookName names a kernel event: "StackWalk/Stack", "PoolTrace/PoolAlloc",
// "Image/Load", or the group with the opcode number.
func HookName(group, opcode uint8) string {
	g, ok := groupNames[group]
	if !ok {
		g = fmt.Sprintf("Group%d", group)
	}
	if n, ok := hookNames[uint16(group)<<8|uint16(opcode)]; ok {
		return g + "/" + n
	}
	return fmt.Sprintf("%s/%d", g, opcode)
}

// KernelCount counts the records of one kernel event kind.
type KernelCount struct {
	Header string `json:"header"`
	Group  uint8  `json:"group"`
	Opcode uint8  `json:"opcode"`
	Name   string `json:"name"`
	Count  uint64 `json:"count"`
}

// Info is what a trace holds, as `kmemprof convert --info` reports it.
type Info struct {
	File        string            `json:"file,omitempty"`
	OSBuild     uint32            `json:"os_build"`
	PointerSize uint32            `json:"pointer_size"`
	CPUs        uint32            `json:"cpus"`
	ClockType   string            `json:"clock_type"`
	PerfFreq    uint64            `json:"perf_freq"`
	LoggerName  string            `json:"logger_name"`
	Start       time.Time         `json:"start"`
	End         time.Time         `json:"end"`
	SpanSeconds float64           `json:"span_seconds"`
	Buffers     int               `json:"buffers"`
	Compressed  int               `json:"compressed_buffers"`
	BuffersBad  int               `json:"bad_buffers"`
	Truncated   bool              `json:"truncated"`
	FirstError  string            `json:"first_error,omitempty"`
	Records     uint64            `json:"records"`
	ByHeader    map[string]uint64 `json:"records_by_header"`
	Kernel      []KernelCount     `json:"kernel_records"`
	Stacks      StackCounts       `json:"stacks"`
	Pool        PoolCounts        `json:"pool"`
	Lost        LostCounts        `json:"lost"`
}

// StackCounts counts StackWalk records: full stacks (opcode 32) and stack
// key records of cached stacks (37, 38), and whether a record of the trace
// carries the raw time stamp (and, where its header has one, the thread)
// they name: the event they belong to.
type StackCounts struct {
	Full     uint64 `json:"full"`
	Keyed    uint64 `json:"keyed"`
	Joined   uint64 `json:"joined"`
	Unjoined uint64 `json:"unjoined"`
}

// PoolCounts counts PoolTrace allocations and frees (session variants
// included), and its other events.
type PoolCounts struct {
	Allocs uint64 `json:"allocs"`
	Frees  uint64 `json:"frees"`
	Other  uint64 `json:"other"`
}

// LostCounts are the losses the trace records: the logfile header's
// counts, and buffers flagged as having lost events or following lost
// buffers.
type LostCounts struct {
	Events             uint32 `json:"events"`
	Buffers            uint32 `json:"buffers"`
	BuffersEventsLost  int    `json:"buffers_flagged_events_lost"`
	BuffersAfterLosses int    `json:"buffers_flagged_buffers_lost"`
}

// fileTime converts a FILETIME to time.
func fileTime(ft int64) time.Time {
	if ft <= 0 {
		return time.Time{}
	}
	const unixEpoch = 116444736000000000
	return time.Unix(0, (ft-unixEpoch)*100).UTC()
}

func clockName(t uint32) string {
	switch t {
	case 1:
		return "QPC"
	case 2:
		return "system time"
	case 3:
		return "CPU cycles"
	}
	return fmt.Sprintf("clock %d", t)
}

// Info reads the whole trace and says what it holds.
func (f *File) Info() (*Info, error) {
	h := f.Header
	in := &Info{
		OSBuild: h.OSBuild, PointerSize: h.PointerSize, CPUs: h.NumberOfProcessors,
		ClockType: clockName(h.ClockType), PerfFreq: h.PerfFreq, LoggerName: h.LoggerName,
		Start: fileTime(h.StartTime), End: fileTime(h.EndTime), Truncated: f.Truncated,
		ByHeader: map[string]uint64{},
		Lost:     LostCounts{Events: h.EventsLost, Buffers: h.BuffersLost},
	}
	if !in.Start.IsZero() && in.End.After(in.Start) {
		in.SpanSeconds = in.End.Sub(in.Start).Seconds()
	}
	type hookKey struct {
		class         string
		group, opcode uint8
	}
	hooks := map[hookKey]uint64{}
	// The events stacks may belong to: thread ids by raw time stamp.
	type stackRef struct {
		ts  int64
		tid uint32
	}
	var stacks []stackRef
	events := map[int64][]uint32{}
	st, err := f.Records(func(r *Record) error {
		in.Records++
		class := r.Kind.Class()
		in.ByHeader[class]++
		if r.Kind.Kernel() {
			hooks[hookKey{class, r.Group, r.Opcode}]++
		}
		if r.Kind.Kernel() && r.Group == GroupStackWalk && (r.Opcode == OpStack || r.Opcode == OpStackKeyKern || r.Opcode == OpStackKeyUser) {
			if r.Opcode == OpStack {
				in.Stacks.Full++
			} else {
				in.Stacks.Keyed++
			}
			if len(r.Payload) >= 16 {
				stacks = append(stacks, stackRef{int64(binary.LittleEndian.Uint64(r.Payload)), binary.LittleEndian.Uint32(r.Payload[12:])})
			} else {
				stacks = append(stacks, stackRef{ts: -1})
			}
			return nil
		}
		if r.Kind.Kernel() && r.Group == GroupPool {
			switch r.Opcode {
			case OpPoolAlloc, OpPoolAllocSession:
				in.Pool.Allocs++
			case OpPoolFree, OpPoolFreeSession:
				in.Pool.Frees++
			default:
				in.Pool.Other++
			}
		}
		tids := events[r.TimeStamp]
		if !slices.Contains(tids, r.ThreadID) {
			events[r.TimeStamp] = append(tids, r.ThreadID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, s := range stacks {
		tids, ok := events[s.ts]
		if ok && (slices.Contains(tids, s.tid) || slices.Contains(tids, NoID)) {
			in.Stacks.Joined++
		} else {
			in.Stacks.Unjoined++
		}
	}
	in.Buffers, in.Compressed, in.BuffersBad = st.Buffers, st.Compressed, st.BuffersBad
	in.Lost.BuffersEventsLost, in.Lost.BuffersAfterLosses = st.EventsLostFlags, st.BuffersLostFlag
	if st.FirstError != nil {
		in.FirstError = st.FirstError.Error()
	}
	for k, n := range hooks {
		in.Kernel = append(in.Kernel, KernelCount{Header: k.class, Group: k.group, Opcode: k.opcode, Name: HookName(k.group, k.opcode), Count: n})
	}
	slices.SortFunc(in.Kernel, func(a, b KernelCount) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Opcode, b.Opcode), cmp.Compare(a.Header, b.Header))
	})
	return in, nil
}

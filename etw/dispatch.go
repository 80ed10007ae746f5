package etw

import (
	"errors"
	"fmt"
)

// Event decodes one event, as its EVENT_RECORD carries it (provider GUID,
// opcode, header, payload and the logging kernel's pointer size), and
// feeds it to the Matcher: the one set of rules for the live session and
// for recorded traces. PoolTrace allocations and frees, StackWalk stacks,
// Image loads and unloads are matched; the other PoolTrace and StackWalk
// events and RT_LostEvent notices are counted; events of other classes are
// ignored. Process events name processes (the comm label). A payload that
// fails to decode is counted with DecodeError.
func (m *Matcher) Event(provider GUID, opcode uint8, h Header, payload []byte, ptrSize int) {
	switch provider {
	case PoolTraceGUID:
		if opcode >= opPoolOtherFirst && opcode <= opPoolOtherLast {
			m.counts[cEventsPoolOther]++
			return
		}
		ev, err := DecodePool(opcode, payload, ptrSize)
		if err != nil {
			m.DecodeError(err)
			return
		}
		m.Pool(h, ev)
	case StackWalkGUID:
		if opcode != OpStackWalk {
			if opcode >= opStackKeyFirst && opcode <= opStackKeyLast {
				m.counts[cStackKeyEvents]++
			} else {
				m.DecodeError(fmt.Errorf("decoding StackWalk opcode %d: %w", opcode, ErrUnknownOpcode))
			}
			return
		}
		ev, err := DecodeStack(payload, ptrSize)
		if err != nil {
			m.DecodeError(err)
			return
		}
		m.Stack(h, ev)
	case ImageGUID:
		ev, err := DecodeImage(opcode, payload, ptrSize)
		if errors.Is(err, ErrUnknownOpcode) {
			return // image opcodes kmemprof does not use
		}
		if err != nil {
			m.DecodeError(err)
			return
		}
		m.Image(h, ev)
	case ProcessGUID:
		if pid, name, ok := DecodeProcessName(opcode, h.Version, payload, ptrSize); ok {
			m.procNames[pid] = name
		}
	case LostEventGUID:
		switch opcode {
		case OpRTLostEvent:
			// A notice that events were lost, not a count of them: the
			// session's EventsLost, read at the stop, counts those.
			m.Lost(LostEventNotices, 1)
		case OpRTLostBuffer:
			m.Lost(LostBuffers, 1)
		case OpRTLostFile:
			m.Lost(LostFileNotices, 1)
		}
	}
}

// Package etw is kmemprof's Windows backend: it turns the kernel's pool
// events, delivered by Event Tracing for Windows (ETW), into the
// platform-neutral tracer model.
//
// The package has two halves. The platform-neutral half, which builds and is
// tested on every OS, holds:
//
//   - the constants of the kernel event classes kmemprof uses (PoolTrace,
//     StackWalk, Image) and of the session settings that enable them;
//   - decoders of the raw event payloads ([DecodePool], [DecodeStack],
//     [DecodeImage]), which take the pointer size of the logging kernel
//     explicitly and never read past the payload;
//   - the [Matcher], which pairs allocations with frees by address, joins each
//     pool event to the StackWalk event the kernel logs right after it, and
//     produces a [tracer.Snapshot];
//   - a small framing format for recorded or synthesised event streams
//     ([ReadReplay], [ReplayWriter]), so that the whole path from payload
//     bytes to a pprof profile is testable without Windows.
//
// The Windows half (session_windows.go) starts the kernel session, consumes
// it in real time and feeds each EVENT_RECORD to the decoders and the
// Matcher. It must open the consumer with PROCESS_TRACE_MODE_RAW_TIMESTAMP
// and build the Matcher with MatcherConfig.RawTimestamps set: the StackWalk
// payload carries the raw (QPC) time stamp of the event it belongs to, and
// only with raw header time stamps can the two be compared exactly.
//
// Nothing here keeps global state; every loss (decode errors, stacks that
// never arrived, frees of unknown addresses, events ETW reported lost) is
// counted and ends up in Snapshot.Meta.Counters.
package etw

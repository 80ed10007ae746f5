package etw

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/pprof/profile"

	"github.com/kmemprof/kmemprof/symbolize"
	"github.com/kmemprof/kmemprof/tracer"
)

var update = flag.Bool("update", false, "rewrite testdata/pool_replay.bin from the synthesised stream")

const fixturePath = "testdata/pool_replay.bin"

// Where the fixture's images lie.
const (
	ntBase    = 0xfffff80000000000
	ndisBase  = 0xfffff80002000000
	leakBase  = 0xfffff80003000000
	otherBase = 0xfffff80004000000
)

// Stacks of the fixture, leaf first as StackWalk delivers them: the pool
// allocator in the kernel image, then its callers.
var (
	leakFrames    = []uint64{ntBase + 0x2a1b30, leakBase + 0x1234, leakBase + 0x2345, ntBase + 0x6c1f00, ntBase + 0x40a000}
	ndisFrames    = []uint64{ntBase + 0x2a1b30, ndisBase + 0x5678, ndisBase + 0x9abc, ntBase + 0x300000}
	freeFrames    = []uint64{ntBase + 0x2a2000, ndisBase + 0x7000, ntBase + 0x300000}
	sessionFrames = []uint64{ntBase + 0x2a1b30, ntBase + 0x123000, ntBase + 0x300000}
)

// fixtureBase is the wall-clock time of raw time stamp 0 in the fixture;
// raw time stamps count 100 ns units.
var fixtureBase = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fixtureWriter synthesises a 64-bit event stream from the documented
// payload layouts.
type fixtureWriter struct {
	tb testing.TB
	w  *ReplayWriter
	ts int64
}

func (f *fixtureWriter) next() int64 {
	f.ts += 10
	return f.ts
}

func (f *fixtureWriter) write(kind RecordKind, op uint8, h Header, payload []byte) {
	f.tb.Helper()
	if err := f.w.Write(kind, op, 8, h, payload); err != nil {
		f.tb.Fatal(err)
	}
}

func (f *fixtureWriter) image(op uint8, base, size uint64, pid uint32, path string) {
	f.write(RecordImage, op, Header{ThreadID: 8, ProcessID: pid, TimeStamp: f.next()}, imagePayload(8, base, size, pid, path))
}

func (f *fixtureWriter) pool(op uint8, tid, pid uint32, ts int64, poolType uint32, tag string, size, entry uint64, session uint32) {
	f.write(RecordPool, op, Header{ThreadID: tid, ProcessID: pid, TimeStamp: ts}, poolPayload(op, 8, poolType, TagValue(tag), size, entry, session))
}

// stack writes the StackWalk event of the event logged at eventTS.
func (f *fixtureWriter) stack(tid, pid uint32, eventTS int64, frames []uint64) {
	f.write(RecordStack, OpStackWalk, Header{ThreadID: tid, ProcessID: pid, TimeStamp: eventTS + 1}, stackPayload(8, uint64(eventTS), pid, tid, frames...))
}

// buildFixture synthesises the replay fixture: image rundowns for the
// kernel and two drivers, a leak of 20 "Leak" allocations from myleak.sys,
// ndis.sys traffic that is mostly freed, session pool, frees of unknown
// addresses, one stack delivered before its event, one event without a
// stack, one stack without an event, an oversized and a truncated payload,
// and a lost-events record.
func buildFixture(tb testing.TB) []byte {
	var buf bytes.Buffer
	w, err := NewReplayWriter(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixtureWriter{tb: tb, w: w, ts: 1_000_000}

	f.image(OpImageDCStart, ntBase, 0x1000000, 0, `\SystemRoot\system32\ntoskrnl.exe`)
	f.image(OpImageDCStart, ndisBase, 0x100000, 0, `\SystemRoot\system32\drivers\ndis.sys`)
	f.image(OpImageDCStart, leakBase, 0x10000, 0, `\??\C:\drivers\myleak.sys`)
	f.image(OpImageDCStart, 0x00007ff700000000, 0x40000, 1234, `C:\Windows\System32\notepad.exe`)

	const pidSystem, pidCsrss = 4, 812
	var ndisEntries []uint64
	for i := range 20 {
		ts := f.next()
		entry := 0xffffa00000100000 + uint64(i)*0x100
		if i == 5 {
			// Delivered out of order: the stack before its event.
			f.stack(100, pidSystem, ts, leakFrames)
			f.pool(OpPoolAlloc, 100, pidSystem, ts, 512, "Leak", 256, entry, 0)
		} else {
			f.pool(OpPoolAlloc, 100, pidSystem, ts, 512, "Leak", 256, entry, 0)
			f.stack(100, pidSystem, ts, leakFrames)
		}
		if i < 10 {
			ts := f.next()
			entry := 0xffffb00000200000 + uint64(i)*0x1000
			ndisEntries = append(ndisEntries, entry)
			f.pool(OpPoolAlloc, 200, pidSystem, ts, 1, "NDnd", 1500, entry, 0)
			if i != 3 { // its stack never comes
				f.stack(200, pidSystem, ts, ndisFrames)
			}
		}
	}
	for i, entry := range ndisEntries[:9] {
		ts := f.next()
		payload := poolPayload(OpPoolFree, 8, 1, TagValue("NDnd"), 1500, entry, 0)
		if i == 4 {
			payload = append(payload, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0) // a newer Windows' extra field
		}
		f.write(RecordPool, OpPoolFree, Header{ThreadID: 201, ProcessID: pidSystem, TimeStamp: ts}, payload)
		f.stack(201, pidSystem, ts, freeFrames)
	}

	const sessionEntry, sessionEntry2 = 0xffff9e0000001000, 0xffff9e0000002000
	for _, ev := range []struct {
		op      uint8
		entry   uint64
		session uint32
	}{
		{OpPoolAllocSession, sessionEntry, 1},
		{OpPoolAllocSession, sessionEntry, 2}, // the same address in another session
		{OpPoolFreeSession, sessionEntry, 1},
		{OpPoolAllocSession, sessionEntry2, 1},
		{OpPoolFree, sessionEntry2, 0}, // a plain free of session pool
	} {
		ts := f.next()
		f.pool(ev.op, 300, pidCsrss, ts, 33, "Gses", 64, ev.entry, ev.session)
		f.stack(300, pidCsrss, ts, sessionFrames)
	}

	f.image(OpImageLoad, otherBase, 0x8000, 0, `\??\C:\drivers\other.sys`)
	f.image(OpImageUnload, otherBase, 0x8000, 0, `\??\C:\drivers\other.sys`)

	f.stack(400, pidSystem, f.next(), freeFrames) // its event was lost
	for _, entry := range []uint64{0xffffc00000000000, 0xffffc00000000040} {
		ts := f.next()
		f.pool(OpPoolFree, 400, pidSystem, ts, 512, "Unkn", 0, entry, 0)
		f.stack(400, pidSystem, ts, freeFrames)
	}

	if err := w.WriteLost(3); err != nil {
		tb.Fatal(err)
	}
	f.write(RecordPool, OpPoolAlloc, Header{ThreadID: 500, ProcessID: pidSystem, TimeStamp: f.next()}, make([]byte, 10))
	return buf.Bytes()
}

// TestReplayFixture checks that testdata/pool_replay.bin is what
// buildFixture synthesises (rewrite it with -update), then replays it into
// a profile and checks the leak comes out on top.
func TestReplayFixture(t *testing.T) {
	want := buildFixture(t)
	if *update {
		if err := os.WriteFile(fixturePath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(fixturePath)
	if err != nil {
		t.Fatalf("%v (create it with: go test ./etw -run TestReplayFixture -update)", err)
	}
	if !bytes.Equal(data, want) {
		t.Fatalf("%s is stale: run go test ./etw -run TestReplayFixture -update", fixturePath)
	}

	drivers := symbolize.NewDriverMap()
	m := NewMatcher(MatcherConfig{
		PtrSize:       8,
		RawTimestamps: true,
		Images:        drivers,
		Time:          func(ts int64) time.Time { return fixtureBase.Add(time.Duration(ts) * 100) },
		Clock:         func() time.Time { return fixtureBase.Add(10 * time.Second) },
	})
	if err := ReadReplay(bytes.NewReader(data), m); err != nil {
		t.Fatalf("ReadReplay: %v", err)
	}
	if drivers.Len() != 3 {
		t.Errorf("driver map holds %d images, want 3 (ntoskrnl.exe, ndis.sys, myleak.sys)", drivers.Len())
	}
	snap := m.Snapshot(tracer.Meta{Platform: "windows", AttachMode: "etw replay", Start: fixtureBase, Duration: time.Second})
	checkCounters(t, snap.Meta.Counters, map[string]uint64{
		CounterEventsPoolAlloc:        30,
		CounterEventsPoolAllocSession: 3,
		CounterEventsPoolFree:         12,
		CounterEventsPoolFreeSession:  1,
		CounterEventsStack:            46,
		CounterEventsImage:            6,
		CounterTracked:                33,
		CounterFreed:                  11,
		CounterFreeUntracked:          2,
		CounterFreeCrossVariant:       1,
		CounterStacksDiscarded:        13,
		CounterOversizedPayloads:      1,
		CounterStackLostNone:          1,
		CounterStackOrphans:           1,
		CounterEventsLost:             3,
		CounterDecodeErrors:           1,
	})
	checkStacks(t, snap)
	if len(snap.Records) != 22 {
		t.Errorf("%d outstanding records, want 22 (20 Leak, 1 NDnd, 1 Gses)", len(snap.Records))
	}

	agg, err := tracer.Aggregate(snap, DriverSymbolizer(drivers), tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	built, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	var enc bytes.Buffer
	if err := tracer.EncodeProfile(&enc, built); err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(&enc)
	if err != nil {
		t.Fatal(err)
	}
	checkLeakProfile(t, p)
	if len(p.Mapping) != 1 || p.Mapping[0].File != Platform.KernelMapping {
		t.Errorf("mappings %v, want one %s", p.Mapping, Platform.KernelMapping)
	}

	// The terminal summary names tags, and starts WHERE at the driver.
	var sum bytes.Buffer
	if err := agg.WriteSummary(&sum, 3); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(sum.String(), "\n")
	if !strings.Contains(lines[0], "TAG") || strings.Contains(lines[0], "CACHE") {
		t.Errorf("summary header %q, want a TAG column", lines[0])
	}
	if !strings.Contains(lines[1], "Leak") || !strings.Contains(lines[1], "pool/NonPagedNx    myleak.sys+0x1234 <") {
		t.Errorf("summary top row %q, want the Leak tag and WHERE starting at myleak.sys+0x1234", lines[1])
	}
}

// checkLeakProfile checks the profile of the fixture.
func checkLeakProfile(t *testing.T, p *profile.Profile) {
	t.Helper()
	idx := map[string]int{}
	for i, st := range p.SampleType {
		idx[st.Type] = i
	}
	inuse, objects := idx["inuse_space"], idx["inuse_objects"]
	var top *profile.Sample
	for _, s := range p.Sample {
		if top == nil || s.Value[inuse] > top.Value[inuse] {
			top = s
		}
	}
	if top == nil {
		t.Fatal("profile has no samples")
	}
	for key, want := range map[string]string{tracer.LabelTag: "Leak", tracer.LabelPool: "NonPagedNx", tracer.LabelKind: "pool", tracer.LabelDriver: "myleak.sys", tracer.LabelPID: "4"} {
		if got := top.Label[key]; !slices.Equal(got, []string{want}) {
			t.Errorf("heaviest sample: label %s = %q, want %q", key, got, want)
		}
	}
	if got := top.Label[tracer.LabelCache]; got != nil {
		t.Errorf("heaviest sample: label cache = %q, want none (pool samples carry tag)", got)
	}
	if top.Value[objects] != 20 || top.Value[inuse] != 20*256 {
		t.Errorf("heaviest sample: %d objects, %d bytes in use; want 20, %d", top.Value[objects], top.Value[inuse], 20*256)
	}
	var names []string
	for _, loc := range top.Location {
		names = append(names, loc.Line[0].Function.Name)
	}
	if len(names) == 0 || !strings.HasPrefix(names[0], "ntoskrnl.exe+") {
		t.Errorf("heaviest sample: leaf frame %q, want the pool allocator in ntoskrnl.exe (stack %q)", names[0], names)
	}
	// The leaf-most frame outside the kernel image is the leaking driver's
	// call into the pool allocator.
	var firstDriverFrame string
	for _, n := range names {
		if !strings.HasPrefix(n, "ntoskrnl.exe+") {
			firstDriverFrame = n
			break
		}
	}
	if firstDriverFrame != "myleak.sys+0x1234" {
		t.Errorf("heaviest sample: first frame past the kernel %q, want myleak.sys+0x1234 (stack %q)", firstDriverFrame, names)
	}
	for _, loc := range p.Location {
		if len(loc.Line) == 0 || loc.Line[0].Function == nil || loc.Line[0].Function.Name == "" {
			t.Errorf("location %d at %#x has no function name", loc.ID, loc.Address)
		}
	}
	comments := strings.Join(p.Comments, "\n")
	for _, want := range []string{
		"events_lost=3", "decode_errors=1", "stack_lost_none=1", "stack_orphans=1",
		"free_untracked=2", "oversized_payloads=1", "frames_unresolved=0", "stack_missing=0",
		"first decode error: decoding PoolAlloc: 10-byte payload, 24 needed: truncated payload",
	} {
		if !strings.Contains(comments, want) {
			t.Errorf("profile comments lack %q:\n%s", want, comments)
		}
	}
}

func TestReadReplayFraming(t *testing.T) {
	valid := func() []byte {
		var b bytes.Buffer
		w, _ := NewReplayWriter(&b)
		_ = w.Write(RecordPool, OpPoolAlloc, 8, Header{ThreadID: 1, TimeStamp: 5}, poolPayload(OpPoolAlloc, 8, 0, 1, 16, 0xa0, 0))
		_ = w.Write(RecordStack, OpStackWalk, 8, Header{ThreadID: 1, TimeStamp: 6}, stackPayload(8, 5, 0, 1, 0xfffff80000001000))
		return b.Bytes()
	}()
	record := func(kind RecordKind, op uint8, ptrSize int, payload []byte) []byte {
		var b bytes.Buffer
		w, _ := NewReplayWriter(&b)
		_ = w.Write(kind, op, ptrSize, Header{ThreadID: 2, TimeStamp: 9}, payload)
		return b.Bytes()[len(ReplayMagic):]
	}
	for _, tc := range []struct {
		name     string
		input    []byte
		wantErr  error
		counters map[string]uint64
	}{
		{name: "valid", input: valid, counters: map[string]uint64{CounterTracked: 1, CounterEventsStack: 1}},
		{name: "magic only", input: []byte(ReplayMagic)},
		{name: "empty", input: nil, wantErr: ErrBadReplay},
		{name: "wrong magic", input: []byte("kmemprof etw replay v2\n"), wantErr: ErrBadReplay},
		{name: "magic cut short", input: []byte(ReplayMagic[:5]), wantErr: ErrBadReplay},
		{name: "record header cut short", input: valid[:len(ReplayMagic)+7], wantErr: ErrBadReplay},
		{name: "payload cut short", input: valid[:len(valid)-1], wantErr: ErrBadReplay},
		{
			name:     "undecodable payloads are counted",
			input:    slices.Concat([]byte(ReplayMagic), record(RecordPool, OpPoolAlloc, 8, make([]byte, 3)), record(RecordStack, OpStackWalk, 5, make([]byte, 16))),
			counters: map[string]uint64{CounterDecodeErrors: 2},
		},
		{
			// Longer than ReadReplay's initial buffer (a bug the fuzzer found).
			name: "long payloads",
			input: slices.Concat([]byte(ReplayMagic),
				record(RecordPool, OpPoolAlloc, 8, poolPayload(OpPoolAlloc, 8, 0, 1, 16, 0xa0, 0)),
				record(RecordStack, OpStackWalk, 8, stackPayload(8, 9, 0, 2, frameRange(MaxStackFrames, ntBase)...)),
				record(RecordImage, OpImageLoad, 8, imagePayload(8, ntBase, 1, 0, strings.Repeat("x", 4000)))),
			counters: map[string]uint64{CounterTracked: 1, CounterEventsStack: 1, CounterEventsImage: 1},
		},
		{
			name:     "unknown kind is counted",
			input:    slices.Concat([]byte(ReplayMagic), record(99, 0, 8, []byte{1, 2, 3}), record(RecordLost, 0, 0, le64(7))),
			counters: map[string]uint64{CounterDecodeErrors: 1, CounterEventsLost: 7},
		},
		{
			name:     "lost record of the wrong size",
			input:    slices.Concat([]byte(ReplayMagic), record(RecordLost, 0, 0, le32(7))),
			counters: map[string]uint64{CounterDecodeErrors: 1},
		},
		{
			// As live: Image opcodes kmemprof does not use are skipped.
			name:     "image with unknown opcode",
			input:    slices.Concat([]byte(ReplayMagic), record(RecordImage, 33, 8, imagePayload(8, ntBase, 1, 0, "x"))),
			counters: map[string]uint64{CounterDecodeErrors: 0, CounterEventsImage: 0},
		},
		{
			name: "pool page and snapshot opcodes, stack key events",
			input: slices.Concat([]byte(ReplayMagic), record(RecordPool, 0x24, 8, le64(1)), record(RecordPool, 0x2f, 8, nil),
				record(RecordStack, 37, 8, le64(1)), record(RecordStack, 35, 8, nil)),
			counters: map[string]uint64{CounterDecodeErrors: 0, CounterEventsPoolOther: 2, CounterStackKeyEvents: 2, CounterEventsStack: 0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMatcher(MatcherConfig{RawTimestamps: true})
			err := ReadReplay(bytes.NewReader(tc.input), m)
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("ReadReplay error = %v, want %v", err, tc.wantErr)
			}
			if err == nil {
				checkCounters(t, m.Snapshot(tracer.Meta{}).Meta.Counters, tc.counters)
			}
		})
	}
}

func TestReadReplayReaderError(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		r    func() *bytes.Reader
		at   int
	}{
		{"in the magic", nil, 3},
		{"in a record", nil, len(ReplayMagic) + 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := buildFixture(t)[:tc.at]
			r := iotest.DataErrReader(&errAfter{data: data, err: boom})
			err := ReadReplay(r, NewMatcher(MatcherConfig{}))
			if !errors.Is(err, boom) {
				t.Errorf("ReadReplay error = %v, want the reader's", err)
			}
		})
	}
}

// errAfter returns data, then err.
type errAfter struct {
	data []byte
	err  error
}

func (e *errAfter) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, e.err
	}
	n := copy(p, e.data)
	e.data = e.data[n:]
	return n, nil
}

func TestReplayWriter(t *testing.T) {
	var b bytes.Buffer
	w, err := NewReplayWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(RecordPool, OpPoolAlloc, 8, Header{}, make([]byte, MaxReplayPayload+1)); err == nil {
		t.Error("Write took a payload longer than MaxReplayPayload")
	}
	if err := w.Write(RecordPool, OpPoolAlloc, 8, Header{ThreadID: 0x01020304, ProcessID: 0x05060708, TimeStamp: -2}, []byte{0xaa}); err != nil {
		t.Fatal(err)
	}
	want := slices.Concat([]byte(ReplayMagic), hexb(`01 20 08   04 03 02 01   08 07 06 05   fe ff ff ff ff ff ff ff   01 00   aa`))
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("replay bytes\n% x\nwant\n% x", b.Bytes(), want)
	}
	if _, err := NewReplayWriter(iotestErrWriter{}); err == nil {
		t.Error("NewReplayWriter ignored the writer's error")
	}
}

type iotestErrWriter struct{}

func (iotestErrWriter) Write([]byte) (int, error) { return 0, errors.New("full") }

func FuzzReadReplay(f *testing.F) {
	// Small seeds: the fuzzer minimizes every input that finds new
	// coverage, and minimizing the whole fixture would take its time budget.
	short := func(write func(w *ReplayWriter)) []byte {
		var b bytes.Buffer
		w, _ := NewReplayWriter(&b)
		write(w)
		return b.Bytes()
	}
	f.Add([]byte(ReplayMagic))
	f.Add([]byte(ReplayMagic + "\x02\x20\x08\x00"))
	f.Add(short(func(w *ReplayWriter) {
		_ = w.Write(RecordStack, OpStackWalk, 8, Header{ThreadID: 1, TimeStamp: 11}, stackPayload(8, 10, 4, 1, leakFrames...))
		_ = w.Write(RecordPool, OpPoolAlloc, 8, Header{ThreadID: 1, TimeStamp: 10}, poolPayload(OpPoolAlloc, 8, 512, 1, 16, 0xa0, 0))
		_ = w.Write(RecordPool, OpPoolFreeSession, 8, Header{ThreadID: 2, TimeStamp: 12}, poolPayload(OpPoolFreeSession, 8, 33, 1, 16, 0xa0, 1))
	}))
	f.Add(short(func(w *ReplayWriter) {
		_ = w.Write(RecordImage, OpImageDCStart, 8, Header{}, imagePayload(8, ntBase, 0x1000, 0, "a.sys"))
		_ = w.Write(RecordImage, OpImageUnload, 4, Header{}, imagePayload(4, 0x80000000, 0x1000, 0, "b.sys"))
		_ = w.WriteLost(2)
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := NewMatcher(MatcherConfig{RawTimestamps: true, MaxOutstanding: 1000, Images: symbolize.NewDriverMap()})
		err := ReadReplay(bytes.NewReader(data), m)
		if err != nil && !errors.Is(err, ErrBadReplay) {
			t.Fatalf("error %v is not a framing error", err)
		}
		snap := m.Snapshot(tracer.Meta{})
		checkStacks(t, snap)
	})
}

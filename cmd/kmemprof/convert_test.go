package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/google/pprof/profile"

	"github.com/kmemprof/kmemprof/etw"
	"github.com/kmemprof/kmemprof/etw/etl"
	"github.com/kmemprof/kmemprof/tracer"
)

// Payload builders for a synthetic pool trace, field by field from the
// documented layouts (etw's decoders document them).

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func ptrBytes(v uint64, ps int) []byte {
	if ps == 4 {
		return le32(uint32(v))
	}
	return le64(v)
}

func utf16zBytes(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return append(b, 0, 0)
}

func poolEv(ps int, poolType, tag uint32, size, addr uint64) []byte {
	return bytes.Join([][]byte{le32(poolType), le32(tag), ptrBytes(size, ps), ptrBytes(addr, ps)}, nil)
}

func stackEv(ps int, ts uint64, pid, tid uint32, frames ...uint64) []byte {
	b := bytes.Join([][]byte{le64(ts), le32(pid), le32(tid)}, nil)
	for _, f := range frames {
		b = append(b, ptrBytes(f, ps)...)
	}
	return b
}

func imageEv(ps int, base, size uint64, name string) []byte {
	return bytes.Join([][]byte{ptrBytes(base, ps), ptrBytes(size, ps), le32(0), le32(0), le32(0), le32(0),
		ptrBytes(base, ps), le32(0), le32(0), le32(0), le32(0), utf16zBytes(name)}, nil)
}

// processEv is a Process_TypeGroup1 version 4 payload without a SID.
func processEv(ps int, pid uint32, name string) []byte {
	return bytes.Join([][]byte{ptrBytes(0xffff000000001000, ps), le32(pid), le32(4), le32(1), le32(0),
		ptrBytes(0x1aa000, ps), le32(0), ptrBytes(0, ps), append([]byte(name), 0), utf16zBytes("")}, nil)
}

// poolTrace writes a synthetic pool trace in the real container format:
// drivers in the image rundown, a process, 300 allocations of tag "Leak"
// from myleak.sys never freed, 2000 allocations of "Ntfx" from ntfs.sys
// freed (each free logged on another CPU than its allocation, so in another
// buffer: the reader merges them by time stamp), each allocation with its
// kernel stack.
func poolTrace(t *testing.T, ptrSize int, compress bool) []byte {
	t.Helper()
	kbase, leak, ntfs := uint64(0xfffff80000000000), uint64(0xfffff80005000000), uint64(0xfffff80006000000)
	heap := uint64(0xffffa00000000000)
	if ptrSize == 4 {
		kbase, leak, ntfs, heap = 0x80000000, 0x85000000, 0x86000000, 0x90000000
	}
	w, err := etl.NewWriter(etl.LogfileHeader{Version: 0x0501000a, OSBuild: 19045, NumberOfProcessors: 4, PointerSize: uint32(ptrSize),
		PerfFreq: 10_000_000, ClockType: 1, StartTime: 133000000000000000, EndTime: 133000000100000000,
		LoggerName: "kmemprof test", LogFileName: `C:\pool.etl`}, 65536, compress)
	if err != nil {
		t.Fatal(err)
	}
	add := func(cpu uint16, perfinfo bool, group, op, version uint8, tid, pid uint32, ts int64, p []byte) {
		if err := w.Kernel(cpu, perfinfo, group, op, version, tid, pid, ts, p); err != nil {
			t.Fatal(err)
		}
	}
	ts := int64(1000)
	add(0, false, etl.GroupImage, 3, 2, 0, 0, ts, imageEv(ptrSize, kbase, 0x1000000, `\SystemRoot\system32\ntoskrnl.exe`))
	add(0, false, etl.GroupImage, 3, 2, 0, 0, ts+1, imageEv(ptrSize, leak, 0x10000, `\SystemRoot\system32\drivers\myleak.sys`))
	add(0, false, etl.GroupImage, 3, 2, 0, 0, ts+2, imageEv(ptrSize, ntfs, 0x200000, `\SystemRoot\system32\drivers\ntfs.sys`))
	add(0, false, etl.GroupProcess, 3, 4, 0, 0, ts+3, processEv(ptrSize, 4242, "leaker.exe"))
	ts += 10
	rng := rand.New(rand.NewPCG(uint64(ptrSize), 9))
	// 2300 allocations: 3 in every 23 (300) leak, the others (2000) churn.
	for i := range 2300 {
		ts += 10
		cpu := uint16(rng.IntN(4))
		if i%23 < 3 {
			addr := heap + uint64(i)*0x100
			// PERFINFO header (no thread): joined by time stamp.
			add(cpu, true, etl.GroupPool, etl.OpPoolAlloc, 2, 0, 0, ts, poolEv(ptrSize, 512, etw.TagValue("Leak"), 200, addr))
			add(cpu, true, etl.GroupStackWalk, etl.OpStack, 2, 0, 0, ts+1, stackEv(ptrSize, uint64(ts), 4242, 77,
				kbase+0x2000, leak+0x1234, leak+0x3456, kbase+0x9999))
			continue
		}
		addr := heap + 0x10000000 + uint64(i%50)*0x40
		add(cpu, false, etl.GroupPool, etl.OpPoolAlloc, 2, 88, 4, ts, poolEv(ptrSize, 1, etw.TagValue("Ntfx"), 64, addr))
		add(cpu, true, etl.GroupStackWalk, etl.OpStack, 2, 0, 0, ts+1, stackEv(ptrSize, uint64(ts), 4, 88, kbase+0x2000, ntfs+0x4444, kbase+0x5555))
		// Freed at once, on another CPU: in another buffer, which the
		// reader merges by time stamp.
		add((cpu+1)%4, false, etl.GroupPool, etl.OpPoolFree, 2, 89, 4, ts+5, poolEv(ptrSize, 1, etw.TagValue("Ntfx"), 64, addr))
	}
	var out bytes.Buffer
	if err := w.Close(&out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestConvertSyntheticPoolTraces: pool traces in the real container
// format, both pointer sizes, compressed and not, convert to profiles whose
// top stack is the planted leak, with tag, pool, driver and comm labels;
// --info --json says what they hold.
func TestConvertSyntheticPoolTraces(t *testing.T) {
	for _, ps := range []int{8, 4} {
		for _, compress := range []bool{false, true} {
			t.Run(fmt.Sprintf("ptr%d-compressed=%v", ps, compress), func(t *testing.T) {
				dir := t.TempDir()
				trace := filepath.Join(dir, "pool.etl")
				if err := os.WriteFile(trace, poolTrace(t, ps, compress), 0o644); err != nil {
					t.Fatal(err)
				}
				var stdout, stderr bytes.Buffer
				if code := run([]string{"convert", "--info", "--json", trace}, &stdout, &stderr); code != exitOK {
					t.Fatalf("convert --info: exit %d: %s", code, stderr.String())
				}
				var in etl.Info
				if err := json.Unmarshal(stdout.Bytes(), &in); err != nil {
					t.Fatalf("--info --json: %v\n%s", err, stdout.String())
				}
				if int(in.PointerSize) != ps || in.Pool.Allocs != 2300 || in.Pool.Frees != 2000 || in.Stacks.Full != 2300 || in.Stacks.Joined != 2300 {
					t.Errorf("info: pointer size %d, pool %+v, stacks %+v", in.PointerSize, in.Pool, in.Stacks)
				}
				if compress != (in.Compressed > 0) || in.BuffersBad != 0 {
					t.Errorf("info: %d buffers, %d compressed, %d bad", in.Buffers, in.Compressed, in.BuffersBad)
				}

				out := filepath.Join(dir, "pool.pb.gz")
				stdout.Reset()
				stderr.Reset()
				if code := run([]string{"convert", "-o", out, trace}, &stdout, &stderr); code != exitOK {
					t.Fatalf("convert: exit %d: %s", code, stderr.String())
				}
				st, err := os.Stat(out)
				if err != nil || st.Mode().Perm() != 0o600 {
					t.Fatalf("profile: %v, mode %v", err, st.Mode())
				}
				f, _ := os.Open(out)
				p, err := profile.Parse(f)
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				idx := -1
				for i, st := range p.SampleType {
					if st.Type == "inuse_space" {
						idx = i
					}
				}
				var top *profile.Sample
				var total int64
				for _, s := range p.Sample {
					total += s.Value[idx]
					if top == nil || s.Value[idx] > top.Value[idx] {
						top = s
					}
				}
				if top == nil || total != 300*200 {
					t.Fatalf("in-use %d bytes, want the 300 leaked allocations of 200 bytes:\n%s", total, stdout.String())
				}
				want := map[string]string{tracer.LabelTag: "Leak", tracer.LabelPool: "NonPagedNx", tracer.LabelDriver: "myleak.sys", tracer.LabelComm: "leaker.exe"}
				for k, v := range want {
					if got := strings.Join(top.Label[k], ","); got != v {
						t.Errorf("top sample %s=%q, want %q", k, got, v)
					}
				}
				var frames []string
				for _, l := range top.Location {
					for _, ln := range l.Line {
						frames = append(frames, ln.Function.Name)
					}
				}
				if !strings.Contains(strings.Join(frames, " "), "myleak.sys+0x1234") {
					t.Errorf("top stack %v, want myleak.sys+0x1234", frames)
				}
				if !strings.Contains(stdout.String(), "Leak") || !strings.Contains(stdout.String(), "myleak.sys+0x1234") {
					t.Errorf("summary does not show the leak:\n%s", stdout.String())
				}
				for _, c := range p.Comments {
					for _, loss := range []string{"free_untracked=", "stack_lost_none=", "stack_orphans=", "decode_errors=", "alloc_at_tracked_addr="} {
						if i := strings.Index(c, loss); i >= 0 && !strings.HasPrefix(c[i+len(loss):], "0") {
							t.Errorf("comment %q: %s not 0", c, loss)
						}
					}
				}
			})
		}
	}
}

// TestConvertWithoutPoolEvents: a trace without pool events is refused,
// the message names pool events and how to record them, no file is
// written.
func TestConvertWithoutPoolEvents(t *testing.T) {
	w, err := etl.NewWriter(etl.LogfileHeader{PointerSize: 8, PerfFreq: 1e7, ClockType: 1}, 8192, true)
	if err != nil {
		t.Fatal(err)
	}
	w.Kernel(0, false, etl.GroupProcess, 3, 4, 0, 0, 100, processEv(8, 10, "x.exe"))
	var buf bytes.Buffer
	w.Close(&buf)
	dir := t.TempDir()
	trace := filepath.Join(dir, "nopool.etl")
	os.WriteFile(trace, buf.Bytes(), 0o644)
	out := filepath.Join(dir, "pool.pb.gz")
	var stdout, stderr bytes.Buffer
	code := run([]string{"convert", "-o", out, trace}, &stdout, &stderr)
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	for _, want := range []string{"no pool events", "PoolAlloc", "wpr -start", "xperf -on PROC_THREAD+LOADER+POOL"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("message %q lacks %q", stderr.String(), want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a profile was written")
	}
	// Not a trace at all.
	bad := filepath.Join(dir, "bad.etl")
	os.WriteFile(bad, []byte("hello, not a trace"), 0o644)
	stderr.Reset()
	if code := run([]string{"convert", "--info", bad}, &stdout, &stderr); code != exitError || !strings.Contains(stderr.String(), "not an .etl trace") {
		t.Errorf("bad file: exit %d, %q", code, stderr.String())
	}
}

// TestConvertTruncated: a real trace cut short (copied while it was being
// written) is called that, not a recording without pool events.
func TestConvertTruncated(t *testing.T) {
	src := filepath.Join(sharedETLDir(), "ShutdownPerfDiagLogger.etl")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Skipf("the real traces are not here (set KMEMPROF_ETL_DIR): %v", err)
	}
	dir := t.TempDir()
	for name, cut := range map[string]int{"inside a buffer": len(b)/2 + 1234, "at a buffer's end": 24 * 65536} {
		trace := filepath.Join(dir, "cut.etl")
		if err := os.WriteFile(trace, b[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := runInProcess("convert", "-o", filepath.Join(dir, "p.pb.gz"), trace)
		if code != exitError || !strings.Contains(errOut, "cut short") || strings.Contains(errOut, "wpr -start") {
			t.Errorf("%s: exit %d, %q", name, code, errOut)
		}
	}
	// The whole trace has no pool events either: that is what it says.
	code, _, errOut := runInProcess("convert", "-o", filepath.Join(dir, "p.pb.gz"), src)
	if code != exitError || strings.Contains(errOut, "cut short") || !strings.Contains(errOut, "no pool events") {
		t.Errorf("whole trace: exit %d, %q", code, errOut)
	}
}

// sharedETLDir is where the real traces written by Windows are:
// $KMEMPROF_ETL_DIR, or shared/etl beside the repository or a directory
// above it (as etw/etl's tests find them).
func sharedETLDir() string {
	if d := os.Getenv("KMEMPROF_ETL_DIR"); d != "" {
		return d
	}
	dir, err := filepath.Abs(".")
	if err != nil {
		return ""
	}
	for {
		cand := filepath.Join(dir, "shared", "etl")
		if _, err := os.Stat(filepath.Join(cand, "README.md")); err == nil {
			return cand
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

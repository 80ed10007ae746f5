package etl

import (
	"archive/zip"
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// sharedETL returns where the real traces written by Windows are, with a
// README of what independent readers count in each: $KMEMPROF_ETL_DIR, or
// shared/etl beside the repository or any directory above it.
func sharedETL() string {
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
			return "/work/shared/etl"
		}
		dir = parent
	}
}

// traceFacts are the facts ../shared/etl/README.md states for one trace.
type traceFacts struct {
	ptrSize, buffers, records int
	byHeader                  map[string]uint64
	kernel                    map[string]uint64 // "SystemHeader 0/0"
}

// readFacts parses the README's "### file" sections.
func readFacts(t *testing.T) map[string]*traceFacts {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sharedETL(), "README.md"))
	if err != nil {
		if os.Getenv("KMEMPROF_REQUIRE_ETL") == "1" {
			t.Fatalf("the real traces: %v", err)
		}
		t.Skipf("the real traces are not here (set KMEMPROF_ETL_DIR): %v", err)
	}
	facts := map[string]*traceFacts{}
	var cur *traceFacts
	head := regexp.MustCompile(`^pointer size (\d+) buffers written (\d+); records (\d+)$`)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "### "); ok {
			if strings.HasSuffix(name, ".etl") && !strings.Contains(name, " ") {
				cur = &traceFacts{byHeader: map[string]uint64{}, kernel: map[string]uint64{}}
				facts[name] = cur
			} else {
				cur = nil
			}
			continue
		}
		if cur == nil {
			continue
		}
		line = strings.TrimPrefix(line, "- ")
		if m := head.FindStringSubmatch(line); m != nil {
			cur.ptrSize, _ = strconv.Atoi(m[1])
			cur.buffers, _ = strconv.Atoi(m[2])
			cur.records, _ = strconv.Atoi(m[3])
		} else if rest, ok := strings.CutPrefix(line, "records by header kind: "); ok {
			for _, kv := range strings.Split(rest, ", ") {
				f := strings.Fields(kv)
				n, _ := strconv.ParseUint(f[1], 10, 64)
				cur.byHeader[f[0]] = n
			}
		} else if rest, ok := strings.CutPrefix(line, "kernel records by (header kind, group, opcode): "); ok {
			for _, kv := range strings.Split(rest, "; ") {
				k, v, _ := strings.Cut(kv, ": ")
				n, _ := strconv.ParseUint(v, 10, 64)
				cur.kernel[k] = n
			}
		}
	}
	return facts
}

// openShared opens a trace of ../shared/etl, unzipping it when it is kept
// zipped.
func openShared(t *testing.T, name string) *File {
	t.Helper()
	path := filepath.Join(sharedETL(), name)
	var data []byte
	if _, err := os.Stat(path); err != nil {
		zr, err := zip.OpenReader(path + ".zip")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer zr.Close()
		for _, f := range zr.File {
			if f.Name == name {
				rc, err := f.Open()
				if err != nil {
					t.Fatal(err)
				}
				data, err = io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	} else if data, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if data == nil {
		t.Fatalf("%s not found", name)
	}
	f, err := Open(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

// TestRealTraces: on every trace written by Windows in ../shared/etl, the
// reader counts exactly what the independent readers of its README count:
// pointer size, buffers, records, records by header kind and kernel records
// by header kind, group and opcode; every stack is joined; no unknown header
// kind, no decoding error.
func TestRealTraces(t *testing.T) {
	facts := readFacts(t)
	if len(facts) < 3 {
		t.Fatalf("README facts for %d traces, want 3 or more", len(facts))
	}
	for name, want := range facts {
		t.Run(name, func(t *testing.T) {
			f := openShared(t, name)
			in, err := f.Info()
			if err != nil {
				t.Fatal(err)
			}
			if int(in.PointerSize) != want.ptrSize || in.Buffers != want.buffers || int(in.Records) != want.records {
				t.Errorf("pointer size %d, buffers %d, records %d; README: %d, %d, %d", in.PointerSize, in.Buffers, in.Records, want.ptrSize, want.buffers, want.records)
			}
			if int(f.Header.BuffersWritten) != want.buffers {
				t.Errorf("logfile header: %d buffers written, README %d", f.Header.BuffersWritten, want.buffers)
			}
			if fmt.Sprint(in.ByHeader) != fmt.Sprint(want.byHeader) {
				t.Errorf("records by header kind %v, README %v", in.ByHeader, want.byHeader)
			}
			got := map[string]uint64{}
			for _, k := range in.Kernel {
				got[fmt.Sprintf("%s %d/%d", k.Header, k.Group, k.Opcode)] = k.Count
			}
			if fmt.Sprint(got) != fmt.Sprint(want.kernel) {
				t.Errorf("kernel records %v\nREADME %v", got, want.kernel)
			}
			if in.Stacks.Unjoined != 0 || in.Stacks.Joined != in.Stacks.Full+in.Stacks.Keyed {
				t.Errorf("stacks %+v: want all joined", in.Stacks)
			}
			if in.BuffersBad != 0 || in.FirstError != "" || in.Truncated {
				t.Errorf("bad buffers %d (%s), truncated %v", in.BuffersBad, in.FirstError, in.Truncated)
			}
		})
	}
}

// TestRealStackCounts: the StackWalk facts of the README's last section.
func TestRealStackCounts(t *testing.T) {
	readFacts(t)
	in, err := openShared(t, "net.4.5.2.x64.etl").Info()
	if err != nil {
		t.Fatal(err)
	}
	if in.Stacks != (StackCounts{Full: 252, Keyed: 2061 + 7046, Joined: 252 + 9107}) {
		t.Errorf("stacks %+v, want 252 full and 9,107 keyed, all joined", in.Stacks)
	}
	if in.Compressed != in.Buffers-1 {
		t.Errorf("%d of %d buffers compressed, want all but the header buffer", in.Compressed, in.Buffers)
	}
}

package bpf

import (
	"errors"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"
)

// TestEveryCounterDescribed: every counter of the BPF program's enum (the
// generated constants) has a name and a help line, once: adding a counter
// to the C without describing it fails here.
func TestEveryCounterDescribed(t *testing.T) {
	seen := map[string]int{}
	for i := range nrHooks {
		if hookNames[i] == "" {
			t.Errorf("hook %d has no name", i)
		}
	}
	for i := nrHooks; i < nrCounters; i++ {
		c := counterInfo[i]
		if c.name == "" || c.help == "" {
			t.Errorf("counter %d of the C enum has no name or help (counters_linux.go)", i)
			continue
		}
		if j, dup := seen[c.name]; dup {
			t.Errorf("counters %d and %d are both named %s", j, i, c.name)
		}
		seen[c.name] = i
	}
}

// TestNoAtomicsProgramsUseOnlyAdd: the programs for kernels without BPF
// atomics (_na, before 5.12) may use no atomic operation but a plain add
// (XADD), which every kernel has; the compiler turns some adds into others
// (an add of 0 into an atomic or). Checked in this architecture's object,
// without a kernel.
func TestNoAtomicsProgramsUseOnlyAdd(t *testing.T) {
	{
		spec, err := loadKmemprof()
		if err != nil {
			t.Fatal(err)
		}
		checked := 0
		for name, p := range spec.Programs {
			if !strings.HasSuffix(name, "_na") && !strings.HasSuffix(name, "_na_b") {
				continue
			}
			checked++
			for i, ins := range p.Instructions {
				if ins.OpCode.Class() == asm.StXClass && ins.OpCode.Mode() == asm.AtomicMode && ins.OpCode.AtomicOp() != asm.AddAtomic {
					t.Errorf("%s: instruction %d is %v, which kernels without BPF atomics reject", name, i, ins)
				}
			}
		}
		if checked < 10 {
			t.Errorf("checked %d _na programs, want the whole set", checked)
		}
	}
}

// TestClockTickMatchesC: the programs judge how fresh a record is by
// CLOCK_TICK_NS (recorded_just_now), which must be the tick at which user
// space advances their clock.
func TestClockTickMatchesC(t *testing.T) {
	src, err := os.ReadFile("c/maps.h")
	if errors.Is(err, fs.ErrNotExist) {
		// The kernel matrix's guests carry test binaries, not the C.
		t.Skip("no BPF C sources beside the test binary")
	}
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`#define CLOCK_TICK_NS (\d+)ULL`).FindSubmatch(src)
	if m == nil {
		t.Fatal("c/maps.h defines no CLOCK_TICK_NS")
	}
	if got := string(m[1]); got != strconv.FormatInt(clockTick.Nanoseconds(), 10) {
		t.Errorf("CLOCK_TICK_NS is %s, clockTick %d ns", got, clockTick.Nanoseconds())
	}
}

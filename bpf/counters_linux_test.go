package bpf

import "testing"

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

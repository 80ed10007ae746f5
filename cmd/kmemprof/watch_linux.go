package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// watchAgent is the agent's default mode: every interval it reads the
// kernel's counts (no BPF program attached), exports and pushes them, and
// when the watch rule holds it attaches for one bounded capture, pushes what
// it found labelled with the trigger, detaches and backs off.
func watchAgent(ctx context.Context, o *agentOptions, stderr io.Writer) error {
	first, err := host.ReadSystemView()
	if err != nil && first.Caches == nil {
		return fmt.Errorf("watch mode reads the kernel's slab counts: %w (or trace all the time: --continuous)", err)
	}
	m := newAgentMetrics()
	p, closeOutputs, err := startOutputs(ctx, o, m, stderr)
	if err != nil {
		return err
	}
	defer closeOutputs()
	slabs := newSlabReclaimable()
	m.watchSlabs = slabs.Is
	// Merged caches' other names; none where SLUB's sysfs is missing.
	aliases, _ := host.SlabAliases(os.DirFS("/sys/kernel/slab"))
	w := &watcher{rule: o.rule, reclaimable: slabs.Is, aliases: aliases}
	fmt.Fprintf(stderr, "watching the kernel's counts every %s, no program attached; a capture of %s when an unreclaimable slab cache grows by %s or more in each of %d intervals in a row (or those caches together by %s, or the dying memory cgroups)\n",
		o.interval, o.capture, tracer.HumanBytes(o.rule.MinBytes), o.rule.Intervals, tracer.HumanBytes(uint64(o.rule.Intervals)*o.rule.MinBytes))
	stopping := func() error {
		if p != nil {
			p.drain(5 * time.Second)
		}
		fmt.Fprintln(stderr, "stopping")
		return nil
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	v := first
	for {
		trig := w.Add(readingOf(v))
		memcgs, _ := host.ReadMemcgKernel(memcgDepth)
		m.updateKernel(v, w, memcgs)
		if p != nil {
			var buf bytes.Buffer
			if err := tracer.EncodeProfile(&buf, slabProfile(v, slabs.Is, o.interval)); err == nil {
				p.enqueue(buf.Bytes(), "kmemprof_source", "slabinfo")
			}
			if mp := memcgProfile(memcgs, v.Taken, o.interval); mp != nil {
				buf = bytes.Buffer{}
				if err := tracer.EncodeProfile(&buf, mp); err == nil {
					p.enqueue(buf.Bytes(), "kmemprof_source", "memcg")
				}
			}
		}
		if trig != nil {
			m.mu.Lock()
			next := m.nextAfter
			m.mu.Unlock()
			if time.Now().Before(next) {
				m.mu.Lock()
				m.heldBack++
				m.heldNow++
				held := m.heldNow
				m.mu.Unlock()
				if held == 1 {
					fmt.Fprintf(stderr, "%s trigger held back until %s (backoff after a capture): %s\n", stamp(), next.Format(time.TimeOnly), trig)
				}
			} else {
				capture(ctx, o, m, p, trig, stderr)
				w.Reset()
				tick.Reset(o.interval)
			}
		}
		select {
		case <-ctx.Done():
			return stopping()
		case <-tick.C:
		}
		for {
			next, err := host.ReadSystemView()
			if err == nil || next.Caches != nil {
				v = next
				break
			}
			// Nothing to compare this time: the next reading will tell.
			m.snapshotErrors.Add(1)
			fmt.Fprintf(stderr, "%s reading the kernel's counts: %v\n", stamp(), err)
			select {
			case <-ctx.Done():
				return stopping()
			case <-tick.C:
			}
		}
	}
}

func stamp() string { return time.Now().Format("2006-01-02 15:04:05") }

// capture attaches for o.capture, pushes the outstanding profile labelled
// with the trigger, and detaches; it says what it did, and counts it.
func capture(ctx context.Context, o *agentOptions, m *agentMetrics, p *pusher, trig *watchTrigger, stderr io.Writer) {
	reason := trig.Reason()
	m.mu.Lock()
	m.triggers[reason]++
	m.capturing = true
	m.mu.Unlock()
	fmt.Fprintf(stderr, "%s trigger: %s: capturing for %s\n", stamp(), trig, o.capture)
	agg, err := watchCapture(ctx, o, trig, stderr)
	result := "ok"
	if err == nil {
		var prof []byte
		if prof, err = encodeAggregation(agg); err == nil && p != nil {
			p.enqueue(prof, "kmemprof_source", "capture", "trigger", reason)
		}
	}
	if err != nil {
		result = "error"
		fmt.Fprintf(stderr, "%s capture failed: %v\n", stamp(), err)
	} else {
		fmt.Fprintf(stderr, "%s capture done, programs detached; what it found:\n", stamp())
		agg.WriteSummary(stderr, 5)
	}
	next := time.Now().Add(o.backoff)
	m.mu.Lock()
	m.capturing = false
	m.captures[result]++
	m.nextAfter, m.heldNow = next, 0
	m.mu.Unlock()
	if o.backoff > 0 {
		fmt.Fprintf(stderr, "%s watching again; no capture before %s\n", stamp(), next.Format(time.TimeOnly))
	}
}

func encodeAggregation(agg *tracer.Aggregation) ([]byte, error) {
	prof, err := agg.Profile()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := tracer.EncodeProfile(&buf, prof); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// watchCapture is one bounded capture in the agent's capture options,
// growth measured six times, every program detached when it returns.
func watchCapture(ctx context.Context, o *agentOptions, trig *watchTrigger, stderr io.Writer) (*tracer.Aggregation, error) {
	tr, names, err := openTracer(o.bpf)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	sysStart, sysErr := host.ReadSystemView()
	fmt.Fprintf(stderr, "%s tracing %s via %s (attached in %s)\n", stamp(), strings.Join(tr.Hooks(), ","), tr.Mode(), roundDuration(tr.AttachTime()))
	out, err := captureAggregate(ctx, tr, names, sysStart, sysErr, tracer.CaptureConfig{
		Duration: o.capture,
		Interval: max(o.capture/6, time.Second),
	}, 0, nil)
	if err != nil {
		return nil, err
	}
	for _, n := range out.res.Notes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}
	out.agg.Meta.Comments = append(out.agg.Meta.Comments, "kmemprof agent: captured because "+trig.String())
	return out.agg, nil
}

// memcgDepth is how deep below the root the watch mode reads the memory
// cgroups (a Kubernetes pod is /kubepods/burstable/pod...: three).
const memcgDepth = 3

// updateKernel takes a reading's figures for /metrics.
func (m *agentMetrics) updateKernel(v host.SystemView, w *watcher, memcgs []host.MemcgKernel) {
	streaks := map[string]int{}
	for _, c := range v.Caches {
		if w.reclaimable(c.Name) {
			continue
		}
		if n := w.Streak(c.Name); n > 0 {
			streaks[c.Name] = n
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kernel = &v
	m.memcgKernel = memcgs
	m.streaks = streaks
	m.readings++
}

func (m *agentMetrics) collectWatch(ch chan<- prometheus.Metric) {
	if m.kernel == nil {
		return
	}
	v := m.kernel
	for _, c := range v.Caches {
		rcl := fmt.Sprint(m.watchSlabs != nil && m.watchSlabs(c.Name))
		ch <- prometheus.MustNewConstMetric(descKSlabObjects, prometheus.GaugeValue, float64(c.ActiveObjs), c.Name, rcl)
		ch <- prometheus.MustNewConstMetric(descKSlabBytes, prometheus.GaugeValue, float64(c.ActiveBytes()), c.Name, rcl)
	}
	for _, f := range []struct {
		name string
		v    uint64
	}{{"Slab", v.Slab}, {"SReclaimable", v.SReclaimable}, {"SUnreclaim", v.SUnreclaim}, {"KernelStack", v.KernelStack},
		{"PageTables", v.PageTables}, {"VmallocUsed", v.VmallocUsed}, {"Percpu", v.Percpu}} {
		ch <- prometheus.MustNewConstMetric(descKMemory, prometheus.GaugeValue, float64(f.v), f.name)
	}
	if v.Memcg.Source != "" {
		ch <- prometheus.MustNewConstMetric(descKMemcgs, prometheus.GaugeValue, float64(v.Memcg.Total), "all")
		if v.Memcg.DyingKnown {
			ch <- prometheus.MustNewConstMetric(descKMemcgs, prometheus.GaugeValue, float64(v.Memcg.Dying), "dying")
		}
	}
	for _, mk := range m.memcgKernel {
		if mk.Kernel >= 0 {
			ch <- prometheus.MustNewConstMetric(descKMemcgKernel, prometheus.GaugeValue, float64(mk.Kernel), mk.Path)
		}
		if mk.SlabUnreclaimable >= 0 {
			ch <- prometheus.MustNewConstMetric(descKMemcgSlab, prometheus.GaugeValue, float64(mk.SlabUnreclaimable), mk.Path)
		}
	}
	for name, n := range m.streaks {
		ch <- prometheus.MustNewConstMetric(descStreak, prometheus.GaugeValue, float64(n), name)
	}
	ch <- prometheus.MustNewConstMetric(descReadings, prometheus.CounterValue, float64(m.readings))
	for reason, n := range m.triggers {
		ch <- prometheus.MustNewConstMetric(descTriggers, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(descHeldBack, prometheus.CounterValue, float64(m.heldBack))
	capturing := 0.0
	if m.capturing {
		capturing = 1
	}
	ch <- prometheus.MustNewConstMetric(descCapturing, prometheus.GaugeValue, capturing)
	for _, r := range []string{"ok", "error"} {
		ch <- prometheus.MustNewConstMetric(descCaptures, prometheus.CounterValue, float64(m.captures[r]), r)
	}
}

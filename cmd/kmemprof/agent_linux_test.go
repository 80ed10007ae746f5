package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/pprof/profile"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/bpf/bpftest"
	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// fakePyroscope is an in-process Pyroscope push endpoint built on the
// official API module's connect handler. It fails the first failFirst
// pushes (and every push while down is set).
type fakePyroscope struct {
	pushv1connect.UnimplementedPusherServiceHandler
	mu        sync.Mutex
	reqs      []*pushv1.PushRequest
	headers   []http.Header
	failFirst int
	down      bool
	calls     int
}

func (f *fakePyroscope) Push(_ context.Context, r *connect.Request[pushv1.PushRequest]) (*connect.Response[pushv1.PushResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down || f.calls <= f.failFirst {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("ingester not ready"))
	}
	f.reqs = append(f.reqs, r.Msg)
	f.headers = append(f.headers, r.Header().Clone())
	return connect.NewResponse(&pushv1.PushResponse{}), nil
}

func (f *fakePyroscope) received() ([]*pushv1.PushRequest, []http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*pushv1.PushRequest(nil), f.reqs...), append([]http.Header(nil), f.headers...)
}

func startFakePyroscope(t *testing.T, f *fakePyroscope) string {
	t.Helper()
	path, h := pushv1connect.NewPusherServiceHandler(f)
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// fakeSource makes a small aggregation: a growing leak in kmalloc-64 and a
// removed memcg's dentries.
type fakeSource struct{ n int }

type nameSym struct{}

func (nameSym) Lookup(pc uint64) (tracer.Symbol, bool) {
	return tracer.Symbol{Name: fmt.Sprintf("fn_%x", pc), Start: pc}, true
}

func (s *fakeSource) Collect() (*tracer.Aggregation, error) {
	s.n++
	snap := &tracer.Snapshot{
		Platform: bpf.Platform,
		Meta:     tracer.Meta{Platform: "linux", Start: time.Now()},
		Stacks:   map[tracer.StackID][]uint64{1: {0xffffffff81000010, 0xffffffff81000020}, 2: {0xffffffff81000030}},
		Memcgs:   map[uint64]tracer.Memcg{7: {Path: "/docker/3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081", Removed: true}},
		Records:  nil,
	}
	for i := range 100 * s.n {
		snap.Records = append(snap.Records, tracer.Record{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "kmalloc-64", PID: 42, Comm: "leaker"}, Addr: uint64(i+1) << 6, BytesAlloc: 64})
	}
	for i := range 10 {
		snap.Records = append(snap.Records, tracer.Record{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 2, Cache: "dentry", MemcgID: 7}, Addr: uint64(1<<30 + i<<8), BytesAlloc: 192})
	}
	snap.Meta.Counters = []tracer.Counter{{Name: "events_kmalloc", Value: uint64(1000 * s.n)}, {Name: "outstanding_map_full", Value: 3, Loss: true},
		{Name: tracer.CounterSelfCheckOverKernel, Value: 5, Loss: true, Gauge: true}}
	return tracer.Aggregate(snap, nameSym{}, tracer.Options{Container: host.Container})
}

func (s *fakeSource) Events() uint64 { return uint64(1000 * s.n) }

// runLoop runs the agent loop for a while on a fake source.
func runLoop(t *testing.T, o *agentOptions, d time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var stderr bytes.Buffer
	if err := runAgentLoop(ctx, o, &fakeSource{}, &lockedWriter{w: &stderr}); err != nil {
		t.Fatal(err)
	}
	return stderr.String()
}

// TestAgentPush: every interval the agent pushes a memory profile to
// Pyroscope's push API: series labels that make Pyroscope show a memory
// profile (__name__ memory, service_name), credentials and tenant from the
// environment, and the pprof with its sample labels.
func TestAgentPush(t *testing.T) {
	f := &fakePyroscope{}
	url := startFakePyroscope(t, f)
	o, err := parseAgent([]string{"--pyroscope", url, "--interval", "1s", "--tenant", "team-a", "--service-name", "node-7"}, io.Discard,
		func(k string) string { return map[string]string{"KMEMPROF_PYROSCOPE_TOKEN": "s3cret"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	o.interval = 100 * time.Millisecond
	runLoop(t, o, 550*time.Millisecond)
	reqs, headers := f.received()
	if len(reqs) < 3 {
		t.Fatalf("%d pushes in 5 intervals, want 3 or more", len(reqs))
	}
	if got := headers[0].Get("Authorization"); got != "Bearer s3cret" {
		t.Errorf("Authorization %q, want the bearer token from the environment", got)
	}
	if got := headers[0].Get("X-Scope-OrgID"); got != "team-a" {
		t.Errorf("X-Scope-OrgID %q", got)
	}
	series := reqs[len(reqs)-1].Series
	if len(series) != 1 || len(series[0].Samples) != 1 {
		t.Fatalf("series %v", series)
	}
	labels := map[string]string{}
	for _, l := range series[0].Labels {
		labels[l.Name] = l.Value
	}
	if labels["__name__"] != "memory" || labels["service_name"] != "node-7" || labels["host"] == "" || labels["kernel"] == "" {
		t.Errorf("series labels %v", labels)
	}
	p, err := profile.ParseData(series[0].Samples[0].RawProfile)
	if err != nil {
		t.Fatal(err)
	}
	if p.SampleType[len(p.SampleType)-1].Type != "inuse_space" && p.DefaultSampleType != "inuse_space" {
		t.Errorf("default sample type %q", p.DefaultSampleType)
	}
	var sawLeak, sawRemoved bool
	for _, s := range p.Sample {
		if strings.Join(s.Label["cache"], "") == "kmalloc-64" && strings.Join(s.Label["comm"], "") == "leaker" {
			sawLeak = true
		}
		if strings.Join(s.Label["memcg_removed"], "") == "true" && strings.Join(s.Label["container"], "") == "docker:3f4e5a6b7c8d" {
			sawRemoved = true
		}
	}
	if !sawLeak || !sawRemoved {
		t.Errorf("pushed profile: leak sample %v, removed-memcg sample with container %v", sawLeak, sawRemoved)
	}
}

// TestAgentServerDown: with the server down the agent keeps sampling,
// retries with backoff, keeps at most --queue snapshots (the others are
// dropped and counted), and pushes again once the server is back.
func TestAgentServerDown(t *testing.T) {
	f := &fakePyroscope{down: true}
	url := startFakePyroscope(t, f)
	o, err := parseAgent([]string{"--pyroscope", url, "--queue", "3"}, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	o.interval, o.backoffMin, o.backoffMax = 50*time.Millisecond, 10*time.Millisecond, 40*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := make(chan *agentMetrics, 1)
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- runAgentLoopWith(ctx, o, &fakeSource{}, &lockedWriter{w: &stderr}, m) }()
	am := <-m
	time.Sleep(600 * time.Millisecond) // about 12 intervals, server down
	p := am.pusher
	if q := p.queued(); q > 3 {
		t.Errorf("queue holds %d snapshots, want at most 3", q)
	}
	if p.dropped.Load() < 5 || p.failed.Load() < 3 || p.pushed.Load() != 0 {
		t.Errorf("server down: dropped %d, failed %d, pushed %d; want drops, retries and no push", p.dropped.Load(), p.failed.Load(), p.pushed.Load())
	}
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for p.pushed.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if p.pushed.Load() < 3 {
		t.Errorf("pushes did not resume: %d", p.pushed.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "pushing to Pyroscope failed") {
		t.Errorf("no note of the failures: %q", stderr.String())
	}
}

// TestAgentMetrics: /metrics exposes the per-cache figures, the removed
// memcgs, every counter with its loss mark, and the agent's own cost; a
// scrape parses with the Prometheus text parser.
func TestAgentMetrics(t *testing.T) {
	o, err := parseAgent([]string{"--metrics", "127.0.0.1:0"}, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	o.interval = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- runAgentLoop(ctx, o, &fakeSource{}, pw) }()
	sc := bufio.NewScanner(pr)
	var addr string
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "metrics at http://"); ok {
			addr = strings.TrimSuffix(a, "/metrics")
			break
		}
	}
	go io.Copy(io.Discard, pr)
	time.Sleep(300 * time.Millisecond)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape does not parse: %v", err)
	}
	cancel()
	<-done
	find := func(name string, labels map[string]string) (float64, bool) {
		fam := fams[name]
		if fam == nil {
			return 0, false
		}
	next:
		for _, m := range fam.Metric {
			for k, v := range labels {
				found := false
				for _, lp := range m.Label {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			}
		}
		return 0, false
	}
	if v, ok := find("kmemprof_outstanding_bytes", map[string]string{"cache": "kmalloc-64"}); !ok || v < 6400 {
		t.Errorf("kmemprof_outstanding_bytes{cache=kmalloc-64} = %v, %v", v, ok)
	}
	if v, ok := find("kmemprof_outstanding_growth_bytes_per_second", map[string]string{"cache": "kmalloc-64"}); !ok || v <= 0 {
		t.Errorf("growth of kmalloc-64 = %v, %v; want positive", v, ok)
	}
	if v, ok := find("kmemprof_removed_memcg_objects", nil); !ok || v != 10 {
		t.Errorf("removed memcg objects = %v, %v", v, ok)
	}
	if v, ok := find("kmemprof_counter_total", map[string]string{"name": "outstanding_map_full", "loss": "true"}); !ok || v != 3 {
		t.Errorf("loss counter outstanding_map_full = %v, %v", v, ok)
	}
	// The self-check's figures are of the last snapshot: gauges, not counters.
	if v, ok := find("kmemprof_figure", map[string]string{"name": tracer.CounterSelfCheckOverKernel, "loss": "true"}); !ok || v != 5 || fams["kmemprof_figure"].GetType().String() != "GAUGE" {
		t.Errorf("kmemprof_figure{name=%s} = %v, %v; want the gauge 5", tracer.CounterSelfCheckOverKernel, v, ok)
	}
	if _, ok := find("kmemprof_counter_total", map[string]string{"name": tracer.CounterSelfCheckOverKernel}); ok {
		t.Errorf("%s exported as a counter", tracer.CounterSelfCheckOverKernel)
	}
	for _, name := range []string{"kmemprof_agent_events_per_second", "kmemprof_agent_snapshot_seconds", "process_cpu_seconds_total", "go_memstats_heap_alloc_bytes"} {
		if _, ok := find(name, nil); !ok {
			t.Errorf("no %s", name)
		}
	}
}

// startAgent starts `kmemprof agent args...` and waits for its metrics
// line; the agent is killed at the end of the test if still running.
func startAgent(t *testing.T, args ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	return startAgentCmd(t, kmemprofCmd(append([]string{"agent"}, args...)...))
}

// startAgentCmd is startAgent of a command made by the caller.
func startAgentCmd(t *testing.T, cmd *exec.Cmd) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	stderr := &lockedBuffer{ch: make(chan struct{}, 1)}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "metrics at"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("agent did not start: %s", stderr.String())
		}
	}
	return cmd, stderr
}

// TestAgentPushesTheLeak: the agent with --continuous, run as root on this kernel, pushes a
// profile in which a process holding eventfds shows with its kernel stack
// and labels, and exits 0 on SIGTERM with its programs detached.
func TestAgentPushesTheLeak(t *testing.T) {
	bpftest.Require(t)
	f := &fakePyroscope{}
	url := startFakePyroscope(t, f)
	cmd, stderr := startAgent(t, "--continuous", "--interval", "1s", "--pyroscope", url, "--metrics", "127.0.0.1:0")
	progs := progIDs(t, cmd.Process.Pid)
	leaker := bpftest.StartLeaker(t, 1000)
	if leak := waitLeakPushed(t, f, leaker.PID, 1000); leak < 1000-64 {
		t.Errorf("pushed profiles hold %d of the leaker's eventfd objects under do_eventfd, want about 1000", leak)
	}
	// Each snapshot carries its self-check, made while the programs run.
	reqs, _ := f.received()
	if p, err := profile.ParseData(reqs[len(reqs)-1].Series[0].Samples[0].RawProfile); err != nil {
		t.Error(err)
	} else if c := strings.Join(p.Comments, "\n"); !strings.Contains(c, tracer.CounterSelfCheckOverKernel+"=") || !strings.Contains(c, "self-check: tracked objects and growth of") {
		t.Errorf("the pushed profile has no self-check:\n%s", c)
	}
	stopAgent(t, cmd, stderr)
	r := &recorder{progs: progs}
	r.checkProgramsGone(t)
}

// waitLeakPushed waits (up to 30 s) until the last profile pushed to f
// holds want objects of pid under do_eventfd, and returns how many it holds.
func waitLeakPushed(t *testing.T, f *fakePyroscope, pid, want int) int64 {
	t.Helper()
	var leak int64
	for deadline := time.Now().Add(30 * time.Second); leak < int64(want) && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		reqs, _ := f.received()
		if len(reqs) == 0 {
			continue
		}
		p, err := profile.ParseData(reqs[len(reqs)-1].Series[0].Samples[0].RawProfile)
		if err != nil {
			t.Fatal(err)
		}
		idx := sampleIndex(t, p, "inuse_objects")
		leak = 0
		for _, s := range p.Sample {
			if strings.Join(s.Label["pid"], "") == strconv.Itoa(pid) && has(funcs(s), "do_eventfd") {
				leak += s.Value[idx]
			}
		}
	}
	return leak
}

// stopAgent sends SIGTERM and expects exit 0 within 30 s.
func stopAgent(t *testing.T, cmd *exec.Cmd, stderr *lockedBuffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("agent exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("agent did not exit on SIGTERM: %s", stderr.String())
	}
}

// rssKB returns a process's resident set size in KB.
func rssKB(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// TestAgentSoak runs the agent for KMEMPROF_SOAK (CI: 10m) with a snapshot
// every 5 s, under a churn of short-lived processes (new pids, comms and
// stacks all the time) and a Pyroscope that is down for a third of the
// time: its memory stays flat. Skipped unless KMEMPROF_SOAK is set.
func TestAgentSoak(t *testing.T) {
	soak, err := time.ParseDuration(os.Getenv("KMEMPROF_SOAK"))
	if err != nil || soak <= 0 {
		t.Skip("set KMEMPROF_SOAK=10m to run the soak")
	}
	bpftest.Require(t)
	f := &fakePyroscope{}
	url := startFakePyroscope(t, f)
	cmd, stderr := startAgent(t, "--continuous", "--interval", "5s", "--pyroscope", url, "--metrics", "127.0.0.1:0", "--queue", "4")
	churn := exec.Command("sh", "-c", `while :; do cat /proc/self/stat > /dev/null; sleep 0.01; done`)
	if err := churn.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { churn.Process.Kill(); churn.Wait() })
	start := time.Now()
	var base int64
	var samples []int64
	for time.Since(start) < soak {
		time.Sleep(10 * time.Second)
		el := time.Since(start)
		// The server is down in the middle third.
		f.mu.Lock()
		f.down = el > soak/3 && el < 2*soak/3
		f.mu.Unlock()
		rss := rssKB(t, cmd.Process.Pid)
		samples = append(samples, rss)
		if base == 0 && el >= soak/5 {
			base = rss // after warming up
		}
	}
	last := samples[len(samples)-1]
	peak := int64(0)
	for _, s := range samples {
		peak = max(peak, s)
	}
	reqs, _ := f.received()
	t.Logf("soak %s: RSS %d KB after warm-up, %d KB at the end, peak %d KB; %d pushes received; samples %v", soak, base, last, peak, len(reqs), samples)
	if last > base*3/2+16<<10 || peak > base*2+32<<10 {
		t.Errorf("memory grew: %d KB after warm-up, %d KB at the end, peak %d KB", base, last, peak)
	}
	if len(reqs) < int(soak/(5*time.Second))/2 {
		t.Errorf("%d pushes in %s", len(reqs), soak)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("agent exit: %v\n%s", err, stderr.String())
	}
}

// TestAgentIntervalSeconds: --interval takes bare seconds, as record's and
// top's durations do.
func TestAgentIntervalSeconds(t *testing.T) {
	o, err := parseAgent([]string{"--metrics", "127.0.0.1:0", "--interval", "60"}, io.Discard, func(string) string { return "" })
	if err != nil || o.interval != time.Minute {
		t.Fatalf("agent --interval 60: %+v, %v", o, err)
	}
}

// TestGrafanaDashboard: every query of the shipped dashboard names series
// the agent exports, and only their labels (and the ones Prometheus adds).
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("deploy/kmemprof-grafana.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct{ Query any }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	// The agent's series and their labels, from its collector.
	labels := map[string]map[string]bool{}
	ch := make(chan *prometheus.Desc, 64)
	(&agentMetrics{}).Describe(ch)
	close(ch)
	descRE := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read %s", d)
		}
		ls := map[string]bool{"instance": true, "job": true}
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				ls[l] = true
			}
		}
		labels[m[1]] = ls
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok && strings.Contains(q, "kmemprof_") {
			exprs = append(exprs, q)
		}
	}
	seriesRE := regexp.MustCompile(`kmemprof_[a-z_]+`)
	labelRE := regexp.MustCompile(`(?:[{,]\s*|by \()([a-z_]+)\s*(?:=~|!=|=|[,)])`)
	used := map[string]bool{}
	for _, e := range exprs {
		names := seriesRE.FindAllString(e, -1)
		if len(names) == 0 {
			t.Errorf("query %q names no kmemprof series", e)
		}
		for _, n := range names {
			used[n] = true
			ls, ok := labels[n]
			if !ok {
				t.Errorf("query %q: the agent exports no series %s", e, n)
				continue
			}
			for _, m := range labelRE.FindAllStringSubmatch(e, -1) {
				if !ls[m[1]] {
					t.Errorf("query %q: %s has no label %q", e, n, m[1])
				}
			}
		}
	}
	for n := range labels {
		if !used[n] {
			t.Errorf("the dashboard shows no panel of %s", n)
		}
	}
}

// eventfds counts the eventfds a process holds.
func eventfds(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && l == "anon_inode:[eventfd]" {
			n++
		}
	}
	return n
}

// waitReadings waits (up to 30 s) until the agent has read the kernel's
// counts n times.
func waitReadings(t *testing.T, stderr *lockedBuffer, n float64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); scrapeValue(t, stderr, "kmemprof_watch_readings_total") < n; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %v readings in 30 s: %s", n, stderr.String())
		}
	}
}

// heldProgs returns the BPF programs a process holds (none is no error).
func heldProgs(t testing.TB, pid int) int {
	t.Helper()
	n := 0
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
	for _, fd := range fds {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name())); err == nil && strings.Contains(string(b), "prog_id:") {
			n++
		}
	}
	return n
}

// scrapeValue reads one series of the agent's /metrics (labels as name, value pairs).
func scrapeValue(t testing.TB, stderr *lockedBuffer, name string, labels ...string) float64 {
	t.Helper()
	addr := regexp.MustCompile(`metrics at http://(\S+)/metrics`).FindStringSubmatch(stderr.String())
	if addr == nil {
		t.Fatalf("no metrics address in %s", stderr.String())
	}
	resp, err := http.Get("http://" + addr[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
next:
	for _, m := range fams[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		if m.Gauge != nil {
			return m.Gauge.GetValue()
		}
		return m.Counter.GetValue()
	}
	return -1
}

// watchArgs are a watch-mode agent's options for tests: readings every 2 s,
// a capture of 6 s when an unreclaimable cache grows 64 KiB in each of 3.
func watchArgs(url string) []string {
	return []string{"--interval", "2s", "--trigger-intervals", "3", "--trigger-growth", "65536", "--capture", "6s", "--backoff", "1h",
		"--pyroscope", url, "--metrics", "127.0.0.1:0"}
}

// TestAgentWatchTriggersCapture: in watch mode (the default) the agent holds
// no BPF program; a steady eventfd leak started while it watches triggers a
// capture within 3 intervals of readings, whose profile, pushed with the
// trigger as a label, holds the leak under do_eventfd with the leaker's pid;
// after it the agent holds no program again.
func TestAgentWatchTriggersCapture(t *testing.T) {
	bpftest.Require(t)
	f := &fakePyroscope{}
	url := startFakePyroscope(t, f)
	cmd, stderr := startAgent(t, watchArgs(url)...)
	waitReadings(t, stderr, 2)
	if n := heldProgs(t, cmd.Process.Pid); n != 0 {
		t.Fatalf("watching, the agent holds %d BPF programs", n)
	}
	if strings.Contains(stderr.String(), "trigger:") {
		t.Fatalf("a trigger before the leak (something else on this machine grows steadily): %s", stderr.String())
	}
	// 800 eventfds (and their files, 200 KiB of filp) every 2 s interval:
	// three times the rule's 64 KiB, so that a guest slowed by emulation
	// that cannot keep the pace still leaks enough in every interval.
	leaker := bpftest.StartSteadyLeaker(t, 12000, 30*time.Second)
	// The leak begins when the child holds its first eventfds (starting
	// it takes a second or more under emulation).
	for deadline := time.Now().Add(30 * time.Second); eventfds(leaker.PID) < 10; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the leaker holds no eventfds after 30 s")
		}
	}
	before := scrapeValue(t, stderr, "kmemprof_watch_readings_total")
	var at float64
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(stderr.String(), "trigger:"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no trigger in 60 s of a steady leak: %s", stderr.String())
		}
		at = scrapeValue(t, stderr, "kmemprof_watch_readings_total")
	}
	// The reading that triggered, and the one in progress when the leak began.
	if n := at - before; n > 4 {
		t.Errorf("the trigger came %v readings after the leak began, want at most 3 intervals (4 readings)", n)
	}
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(stderr.String(), "capture done"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) || strings.Contains(stderr.String(), "capture failed") {
			t.Fatalf("the capture did not end: %s", stderr.String())
		}
	}
	trig := regexp.MustCompile(`trigger: (.*)`).FindStringSubmatch(stderr.String())[1]
	if !strings.Contains(trig, "filp") && !strings.Contains(trig, "kmalloc") && !strings.Contains(trig, "SUnreclaim") {
		t.Errorf("trigger %q names none of the leak's caches", trig)
	}
	time.Sleep(500 * time.Millisecond) // the detach follows the summary
	if n := heldProgs(t, cmd.Process.Pid); n != 0 {
		t.Errorf("after the capture, the agent holds %d BPF programs", n)
	}
	if v := scrapeValue(t, stderr, "kmemprof_watch_captures_total", "result", "ok"); v != 1 {
		t.Errorf("captures ok = %v, want 1", v)
	}
	// The captured profile: labelled, and the leak in it.
	leak, reason := waitCapturedLeak(t, f, leaker.PID)
	if leak < 100 {
		t.Errorf("the captured profile holds %d of the leaker's eventfd objects under do_eventfd, want the ~2400 made while it traced", leak)
	}
	if reason == "" || !strings.Contains(trig, strings.TrimPrefix(reason, "cache:")) {
		t.Errorf("the capture's trigger label %q, the log's trigger %q", reason, trig)
	}
	// The cheap series went too, every reading.
	reqs, _ := f.received()
	var slab int
	for _, r := range reqs {
		for _, l := range r.Series[0].Labels {
			if l.Name == "kmemprof_source" && l.Value == "slabinfo" {
				slab++
			}
		}
	}
	if slab < 2 {
		t.Errorf("%d slabinfo profiles pushed", slab)
	}
	// And the memory cgroups', where the kernel has a memory hierarchy and
	// charged something to it (nothing is charged to cgroup v2's root: a
	// machine without child cgroups has nothing to show).
	ms, src := host.ReadMemcgKernel(memcgDepth)
	charged := slices.IndexFunc(ms, func(m host.MemcgKernel) bool { return max(m.Kernel, m.SlabUnreclaimable) > 0 })
	if charged >= 0 {
		var memcg int
		for _, r := range reqs {
			for _, l := range r.Series[0].Labels {
				if l.Name == "kmemprof_source" && l.Value == "memcg" {
					memcg++
				}
			}
		}
		p := ms[charged].Path
		if k, u := scrapeValue(t, stderr, "kmemprof_kernel_memcg_bytes", "memcg", p), scrapeValue(t, stderr, "kmemprof_kernel_memcg_slab_unreclaimable_bytes", "memcg", p); memcg < 2 || max(k, u) <= 0 {
			t.Errorf("%s: %d memcg profiles pushed, %s's figures %v and %v", src, memcg, p, k, u)
		}
	}
	t.Logf("trigger: %s; %d of the leak's objects in the capture", trig, leak)
	stopAgent(t, cmd, stderr)
}

// waitCapturedLeak waits (up to 20 s) for a captured profile pushed to f
// that holds objects of pid under do_eventfd; it returns how many, and the
// profile's trigger label.
func waitCapturedLeak(t *testing.T, f *fakePyroscope, pid int) (leak int64, reason string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); leak == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		reqs, _ := f.received()
		for _, r := range reqs {
			ls := map[string]string{}
			for _, l := range r.Series[0].Labels {
				ls[l.Name] = l.Value
			}
			if ls["kmemprof_source"] != "capture" {
				continue
			}
			reason = ls["trigger"]
			p, err := profile.ParseData(r.Series[0].Samples[0].RawProfile)
			if err != nil {
				t.Fatal(err)
			}
			idx := sampleIndex(t, p, "inuse_objects")
			for _, s := range p.Sample {
				if strings.Join(s.Label["pid"], "") == strconv.Itoa(pid) && has(funcs(s), "do_eventfd") {
					leak += s.Value[idx]
				}
			}
		}
	}
	return leak, reason
}

// TestAgentWatchIgnoresReclaimable: files made and deleted, and files made
// and kept (dentries and inodes: reclaimable caches), for 10 s (5 intervals)
// and one more interval, trigger no capture.
func TestAgentWatchIgnoresReclaimable(t *testing.T) {
	bpftest.Require(t)
	f := &fakePyroscope{}
	url := startFakePyroscope(t, f)
	cmd, stderr := startAgent(t, watchArgs(url)...)
	waitReadings(t, stderr, 1)
	start := scrapeValue(t, stderr, "kmemprof_watch_readings_total")
	dir := t.TempDir()
	storm := bpftest.StartFileStorm(t, dir, 20000, 10*time.Second)
	// Made and deleted, at the same time.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("%s/gone-%d", dir, i)
			if err := os.WriteFile(name, []byte("x"), 0o600); err == nil {
				os.Remove(name)
			}
		}
	}()
	storm.Wait(t, "made")
	for scrapeValue(t, stderr, "kmemprof_watch_readings_total") < start+6 {
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	<-done
	if strings.Contains(stderr.String(), "trigger:") {
		t.Errorf("reclaimable growth triggered a capture: %s", stderr.String())
	}
	if n := heldProgs(t, cmd.Process.Pid); n != 0 {
		t.Errorf("the agent holds %d BPF programs", n)
	}
	stopAgent(t, cmd, stderr)
}

// TestAgentWatchSoak runs the watch mode for KMEMPROF_WATCH_SOAK (CI: 5m;
// 30m by hand) with a reading every 2 s and a capture triggered about every
// 30 s: every 30 s a child leaks eventfds steadily for 12 s, then exits and
// releases them. The agent's memory stays flat, and between captures it
// holds no BPF program. Skipped unless KMEMPROF_WATCH_SOAK is set.
func TestAgentWatchSoak(t *testing.T) {
	soak, err := time.ParseDuration(os.Getenv("KMEMPROF_WATCH_SOAK"))
	if err != nil || soak <= 0 {
		t.Skip("set KMEMPROF_WATCH_SOAK=30m to run the soak")
	}
	bpftest.Require(t)
	f := &fakePyroscope{}
	url := startFakePyroscope(t, f)
	cmd, stderr := startAgent(t, "--interval", "2s", "--trigger-intervals", "3", "--trigger-growth", "16384", "--capture", "4s", "--backoff", "10s",
		"--pyroscope", url, "--metrics", "127.0.0.1:0", "--queue", "4")
	start := time.Now()
	var base, peak int64
	var samples []int64
	var idleChecks, leakers int
	for time.Since(start) < soak {
		leakers++
		leaker := bpftest.StartSteadyLeaker(t, 1200, 12*time.Second) // 100 files a second
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
			if time.Until(end) < 18*time.Second && leaker != nil {
				leaker.Stdin().Close() // it exits: its eventfds go
				leaker = nil
			}
			// Between captures: no program. The gauge and the count of
			// captures, before and after, say none ran in between.
			c0 := scrapeValue(t, stderr, "kmemprof_watch_capturing")
			n0 := scrapeValue(t, stderr, "kmemprof_watch_captures_total", "result", "ok")
			progs := heldProgs(t, cmd.Process.Pid)
			c1 := scrapeValue(t, stderr, "kmemprof_watch_capturing")
			n1 := scrapeValue(t, stderr, "kmemprof_watch_captures_total", "result", "ok")
			if c0 == 0 && c1 == 0 && n0 == n1 {
				idleChecks++
				if progs != 0 {
					t.Errorf("between captures the agent holds %d BPF programs", progs)
				}
			}
		}
		rss := rssKB(t, cmd.Process.Pid)
		samples = append(samples, rss)
		peak = max(peak, rss)
		if base == 0 && time.Since(start) >= soak/5 {
			base = rss // after warming up
		}
	}
	last := samples[len(samples)-1]
	captures := scrapeValue(t, stderr, "kmemprof_watch_captures_total", "result", "ok")
	failed := scrapeValue(t, stderr, "kmemprof_watch_captures_total", "result", "error")
	t.Logf("watch soak %s: %d leakers, %v captures (%v failed), %d checks between captures; RSS %d KB after warm-up, %d KB at the end, peak %d KB; samples %v",
		soak, leakers, captures, failed, idleChecks, base, last, peak, samples)
	if base == 0 || last > base*3/2+16<<10 || peak > base*2+32<<10 {
		t.Errorf("memory grew: %d KB after warm-up, %d KB at the end, peak %d KB", base, last, peak)
	}
	if captures < float64(leakers)/2 || failed > 0 {
		t.Errorf("%v captures (%v failed) for %d leaks", captures, failed, leakers)
	}
	if idleChecks == 0 {
		t.Error("never checked between captures")
	}
	stopAgent(t, cmd, stderr)
}

// TestMemcgKernelGrows: the watch mode's per-memcg figure of a memory
// cgroup rises by what a process in it holds: 10,000 eventfds (each a
// file, a dentry and an eventfd context, charged to its memcg) in a cgroup
// of its own (v1's memory hierarchy, or v2 where the memory controller is).
func TestMemcgKernelGrows(t *testing.T) {
	bpftest.Require(t) // root, and one kernel test at a time
	ms, src := host.ReadMemcgKernel(memcgDepth)
	if src == "" {
		t.Skip("no memory cgroup hierarchy on this machine")
	}
	mnt := strings.Fields(src)[2]
	dir, rel := bpftest.Cgroup(t, mnt)
	if strings.HasPrefix(src, "cgroup v2") {
		os.WriteFile(filepath.Join(mnt, "cgroup.subtree_control"), []byte("+memory"), 0o644)
	}
	figure := func(ms []host.MemcgKernel) int64 {
		for _, m := range ms {
			if m.Path == rel {
				return max(m.Kernel, m.SlabUnreclaimable)
			}
		}
		return -1
	}
	ms, _ = host.ReadMemcgKernel(memcgDepth)
	before := figure(ms)
	if before < 0 {
		t.Fatalf("%s: no figure for %s in %+v", src, rel, ms)
	}
	const n = 10000
	cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec "$2" -test.run='^$'`, "sh", dir, os.Args[0])
	cmd.Env = append(os.Environ(), bpftest.HoldEnv(n)...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "held ") {
		t.Fatalf("the holder printed %q: %s", sc.Text(), errOut.String())
	}
	ms, _ = host.ReadMemcgKernel(memcgDepth)
	after := figure(ms)
	t.Logf("%s: %s %d -> %d bytes with %d eventfds held", src, rel, before, after, n)
	if after-before < n*200 {
		t.Errorf("%s grew by %d bytes with %d eventfds held in it, want %d at least (a file each)", rel, after-before, n, n*200)
	}
}

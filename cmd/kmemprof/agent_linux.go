package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/symbolize"
	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

type agentOptions struct {
	interval    time.Duration
	pyroscope   string
	serviceName string
	tenant      string
	metrics     string
	allowRemote bool
	queue       int
	bpf         bpf.Config
	user, pass  string
	token       string
	// backoffMin and backoffMax bound the retry delay (0: 1 s and 1 min).
	backoffMin, backoffMax time.Duration
	// continuous traces all the time; otherwise the agent watches the
	// kernel's counts and captures for capture when rule holds, then waits
	// at least backoff before the next capture.
	continuous bool
	rule       watchRule
	capture    time.Duration
	backoff    time.Duration
}

func parseAgent(args []string, stdout io.Writer, getenv func(string) string) (*agentOptions, error) {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := &agentOptions{}
	var interval, mode, kinds, cgrp, memcg, caches, attach string
	var hot, maxOut, depth int
	var help bool
	var capture, backoff, minGrowth string
	fs.BoolVar(&o.continuous, "continuous", false, "")
	fs.IntVar(&o.rule.Intervals, "trigger-intervals", 3, "")
	fs.StringVar(&minGrowth, "trigger-growth", "32768", "")
	fs.StringVar(&capture, "capture", "60s", "")
	fs.StringVar(&backoff, "backoff", "10m", "")
	fs.StringVar(&interval, "interval", "60s", "")
	fs.StringVar(&o.pyroscope, "pyroscope", "", "")
	fs.StringVar(&o.serviceName, "service-name", "kmemprof", "")
	fs.StringVar(&o.tenant, "tenant", "", "")
	fs.StringVar(&o.metrics, "metrics", "", "")
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "")
	fs.IntVar(&o.queue, "queue", 10, "")
	fs.StringVar(&mode, "mode", "adaptive", "")
	fs.IntVar(&hot, "hot-threshold", 64, "")
	fs.StringVar(&kinds, "kinds", "slab", "")
	fs.StringVar(&cgrp, "cgroup", "", "")
	fs.StringVar(&memcg, "memcg", "", "")
	fs.StringVar(&caches, "cache", "", "")
	fs.StringVar(&attach, "attach", "auto", "")
	fs.IntVar(&maxOut, "max-outstanding", 1<<20, "")
	fs.IntVar(&depth, "stack-depth", 64, "")
	fs.BoolVar(&help, "help", false, "")
	fs.BoolVar(&help, "h", false, "")
	if err := fs.Parse(args); err != nil {
		return nil, flagError(err)
	}
	if help {
		fmt.Fprint(stdout, agentUsage)
		return nil, flag.ErrHelp
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	d, err := parseDuration(interval)
	if err != nil || d < time.Second {
		return nil, usagef("bad --interval %q: want a duration of 1s or more, such as 60s or 60", interval)
	}
	o.interval = d
	if o.pyroscope == "" && o.metrics == "" {
		return nil, usagef("nothing to send: give --pyroscope URL, --metrics ADDR, or both")
	}
	if o.pyroscope != "" && !strings.HasPrefix(o.pyroscope, "http://") && !strings.HasPrefix(o.pyroscope, "https://") {
		return nil, usagef("bad --pyroscope %q: want an http:// or https:// URL", o.pyroscope)
	}
	if o.metrics != "" {
		if err := checkMetricsAddr(o.metrics, o.allowRemote); err != nil {
			return nil, err
		}
	}
	if o.rule.Intervals < 1 {
		return nil, usagef("bad --trigger-intervals %d: want 1 or more", o.rule.Intervals)
	}
	if o.rule.MinBytes, err = strconv.ParseUint(minGrowth, 10, 64); err != nil || o.rule.MinBytes == 0 {
		return nil, usagef("bad --trigger-growth %q: want a number of bytes, 1 or more", minGrowth)
	}
	if o.capture, err = parseDuration(capture); err != nil || o.capture < time.Second {
		return nil, usagef("bad --capture %q: want a duration of 1s or more, such as 60s", capture)
	}
	if o.backoff, err = parseDuration(backoff); err != nil || o.backoff < 0 {
		return nil, usagef("bad --backoff %q: want a duration, such as 10m (0: none)", backoff)
	}
	if o.queue < 1 {
		return nil, usagef("bad --queue %d: want 1 or more", o.queue)
	}
	// The same capture options as record, parsed by record's parser.
	rec, err := parseRecord([]string{"--mode", mode, "--hot-threshold", fmt.Sprint(hot), "--kinds", kinds, "--cgroup", cgrp,
		"--memcg", memcg, "--cache", caches, "--attach", attach, "--max-outstanding", fmt.Sprint(maxOut), "--stack-depth", fmt.Sprint(depth)}, io.Discard)
	if err != nil {
		return nil, err
	}
	o.bpf = rec.bpf
	// Read every interval for days: totals per interval, maps trimmed. A
	// watch mode's capture is bounded: record's capture.
	o.bpf.Continuous = o.continuous
	o.user, o.pass, o.token = getenv("KMEMPROF_PYROSCOPE_USER"), getenv("KMEMPROF_PYROSCOPE_PASSWORD"), getenv("KMEMPROF_PYROSCOPE_TOKEN")
	for _, f := range []struct {
		env string
		dst *string
	}{{"KMEMPROF_PYROSCOPE_PASSWORD_FILE", &o.pass}, {"KMEMPROF_PYROSCOPE_TOKEN_FILE", &o.token}} {
		if path := getenv(f.env); path != "" {
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.env, err)
			}
			*f.dst = strings.TrimSpace(string(b))
		}
	}
	if o.token != "" && o.user != "" {
		return nil, usagef("both a bearer token and a user for basic auth are set: give one")
	}
	return o, nil
}

// checkMetricsAddr is checkHTTPAddr for --metrics.
func checkMetricsAddr(addr string, allowRemote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("bad --metrics %q: want HOST:PORT such as 127.0.0.1:9464", addr)
	}
	if allowRemote {
		return nil
	}
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || strings.EqualFold(host, "localhost") {
		return nil
	}
	return usagef("--metrics %s is not a loopback address: use --metrics 127.0.0.1:%s, or add --allow-remote to let other machines scrape it", addr, port)
}

func runAgent(args []string, stdout, stderr io.Writer) int {
	o, err := parseAgent(args, stdout, os.Getenv)
	if err != nil {
		return report(stderr, "agent", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent(ctx, o, stderr); err != nil {
		return report(stderr, "agent", err)
	}
	return exitOK
}

// snapshotSource is what the agent samples: the kernel tracer, or in tests
// anything that makes aggregations.
type snapshotSource interface {
	Collect() (*tracer.Aggregation, error)
	Events() uint64
}

// tracerSource collects from an attached tracer.
type tracerSource struct {
	tr    *bpf.Tracer
	names *hostNames
	gfp   *host.GFPNamer
	// start is the kernel's view read once the tracer was attached, for
	// the self-check's growth comparison (nil: not read).
	start *host.SystemView
	// checkErr is the last self-check error printed, so that a failing
	// check is said once, not every snapshot.
	checkErr string
	stderr   io.Writer
}

func (s *tracerSource) Collect() (*tracer.Aggregation, error) {
	// The self-check first, while the programs run: its counters join the
	// snapshot's (and /metrics), its lines the profile's comments.
	check, err := selfCheck(s.tr, s.start)
	if err != nil && err.Error() != s.checkErr && s.stderr != nil {
		fmt.Fprintf(s.stderr, "note: %v\n", err)
	}
	s.checkErr = ""
	if err != nil {
		s.checkErr = err.Error()
	}
	snap, err := s.tr.Snapshot()
	if err != nil {
		return nil, err
	}
	if check != nil {
		check.check.Apply(snap)
	}
	syms, err := symbolize.LoadKallsyms()
	if err != nil {
		return nil, err
	}
	// A resolver per snapshot: one kept for the agent's life would remember
	// every cgroup ever removed.
	cg, err := s.names.annotate(s.tr, snap)
	if err != nil {
		return nil, err
	}
	return tracer.Aggregate(snap, kallsymsSymbolizer{syms}, tracer.Options{CgroupPath: cg.Path, GFPName: s.gfp.Name, Container: host.Container})
}

func (s *tracerSource) Events() uint64 {
	st, err := s.tr.Stats()
	if err != nil {
		return 0
	}
	return st.Events
}

func agent(ctx context.Context, o *agentOptions, stderr io.Writer) error {
	if err := checkPrivileges(); err != nil {
		return err
	}
	if err := checkKallsyms(); err != nil {
		return err
	}
	if !o.continuous {
		return watchAgent(ctx, o, stderr)
	}
	tr, names, err := openTracer(o.bpf)
	if err != nil {
		return err
	}
	defer tr.Close()
	fmt.Fprintf(stderr, "tracing %s (attach %s), a snapshot every %s\n", strings.Join(tr.Hooks(), ", "), tr.Mode(), o.interval)
	src := &tracerSource{tr: tr, names: names, gfp: host.KernelGFPNamer(), stderr: stderr}
	// The kernel's counts once attached: the self-check's start.
	if v, err := host.ReadKernelCounts(); err == nil {
		src.start = &v
	} else {
		fmt.Fprintf(stderr, "note: %v (the self-check compares no growth)\n", err)
	}
	// The GFP names come from the kernel's BTF, read once, not per snapshot.
	return runAgentLoop(ctx, o, src, stderr)
}

// runAgentLoop samples src every interval, pushes and exposes what it
// finds, until ctx ends.
func runAgentLoop(ctx context.Context, o *agentOptions, src snapshotSource, stderr io.Writer) error {
	return runAgentLoopWith(ctx, o, src, stderr, nil)
}

// runAgentLoopWith is runAgentLoop that hands its metrics to got (tests).
func runAgentLoopWith(ctx context.Context, o *agentOptions, src snapshotSource, stderr io.Writer, got chan<- *agentMetrics) error {
	m := newAgentMetrics()
	p, closeOutputs, err := startOutputs(ctx, o, m, stderr)
	if err != nil {
		return err
	}
	defer closeOutputs()
	if got != nil {
		got <- m
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	lastEvents, lastAt := src.Events(), time.Now()
	for {
		select {
		case <-ctx.Done():
			if p != nil {
				p.drain(5 * time.Second)
			}
			fmt.Fprintln(stderr, "stopping: detaching")
			return nil
		case <-tick.C:
		}
		start := time.Now()
		agg, err := src.Collect()
		if err != nil {
			m.snapshotErrors.Add(1)
			fmt.Fprintf(stderr, "snapshot failed: %v\n", err)
			continue
		}
		prof, err := agg.Profile()
		if err == nil {
			var buf bytes.Buffer
			if err = tracer.EncodeProfile(&buf, prof); err == nil && p != nil {
				p.enqueue(buf.Bytes())
			}
		}
		if err != nil {
			m.snapshotErrors.Add(1)
			fmt.Fprintf(stderr, "encoding the profile failed: %v\n", err)
		}
		events, now := src.Events(), time.Now()
		m.update(agg, now.Sub(start), float64(events-lastEvents)/now.Sub(lastAt).Seconds())
		lastEvents, lastAt = events, now
	}
}

// startOutputs starts what the agent sends to: the Pyroscope pusher (nil
// without --pyroscope) and the metrics server. close stops the server.
func startOutputs(ctx context.Context, o *agentOptions, m *agentMetrics, stderr io.Writer) (p *pusher, close func(), err error) {
	if o.pyroscope != "" {
		host, _ := os.Hostname()
		p = newPusher(o, []*typesv1.LabelPair{
			{Name: "__name__", Value: "memory"},
			{Name: "service_name", Value: o.serviceName},
			{Name: "host", Value: host},
			{Name: "kernel", Value: kernelRelease()},
		}, stderr)
		m.pusher = p
		go p.run(ctx)
	}
	if o.metrics == "" {
		return p, func() {}, nil
	}
	ln, err := net.Listen("tcp", o.metrics)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Fprintf(stderr, "metrics at http://%s/metrics\n", ln.Addr())
	return p, func() { srv.Close() }, nil
}

// pusher pushes profiles to Pyroscope from a bounded queue: when the
// server is down it retries with backoff, and when the queue is full the
// oldest profile goes (counted).
type pusher struct {
	client     pushv1connect.PusherServiceClient
	labels     []*typesv1.LabelPair
	mu         sync.Mutex
	queue      []pushItem
	max        int
	wake       chan struct{}
	backoffMin time.Duration
	backoffMax time.Duration
	pushed     atomic.Uint64
	failed     atomic.Uint64
	dropped    atomic.Uint64
	stderr     io.Writer
	done       chan struct{} // closed when run returns
}

// pushItem is a profile and the labels its series has beyond the pusher's.
type pushItem struct {
	prof  []byte
	extra []*typesv1.LabelPair
}

// authTransport adds the credentials and the tenant to every request.
type authTransport struct {
	base              http.RoundTripper
	user, pass, token string
	tenant            string
}

func (t authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	switch {
	case t.token != "":
		r.Header.Set("Authorization", "Bearer "+t.token)
	case t.user != "":
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(t.user+":"+t.pass)))
	}
	if t.tenant != "" {
		r.Header.Set("X-Scope-OrgID", t.tenant)
	}
	return t.base.RoundTrip(r)
}

func newPusher(o *agentOptions, labels []*typesv1.LabelPair, stderr io.Writer) *pusher {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: authTransport{base: http.DefaultTransport, user: o.user, pass: o.pass, token: o.token, tenant: o.tenant}}
	p := &pusher{
		client:     pushv1connect.NewPusherServiceClient(hc, strings.TrimSuffix(o.pyroscope, "/")),
		labels:     labels,
		max:        o.queue,
		wake:       make(chan struct{}, 1),
		backoffMin: time.Second,
		backoffMax: time.Minute,
		stderr:     stderr,
		done:       make(chan struct{}),
	}
	if o.backoffMin > 0 {
		p.backoffMin, p.backoffMax = o.backoffMin, max(o.backoffMax, o.backoffMin)
	}
	return p
}

// enqueue adds a profile, dropping the oldest when the queue is full;
// extra are labels of its series beyond the pusher's, as name, value pairs.
func (p *pusher) enqueue(prof []byte, extra ...string) {
	it := pushItem{prof: prof}
	for i := 0; i+1 < len(extra); i += 2 {
		it.extra = append(it.extra, &typesv1.LabelPair{Name: extra[i], Value: extra[i+1]})
	}
	p.mu.Lock()
	if len(p.queue) == p.max {
		p.queue = p.queue[1:]
		p.dropped.Add(1)
	}
	p.queue = append(p.queue, it)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pusher) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// run pushes queued profiles, oldest first, until ctx ends.
func (p *pusher) run(ctx context.Context) {
	defer close(p.done)
	backoff := p.backoffMin
	for {
		p.mu.Lock()
		var prof []byte
		var it pushItem
		if len(p.queue) > 0 {
			it = p.queue[0]
			prof = it.prof
		}
		p.mu.Unlock()
		if prof == nil {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
				continue
			}
		}
		if err := p.push(ctx, it); err != nil {
			p.failed.Add(1)
			if p.failed.Load() == 1 || backoff == p.backoffMax {
				fmt.Fprintf(p.stderr, "pushing to Pyroscope failed (retrying in %s): %v\n", backoff, err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, p.backoffMax)
			continue
		}
		backoff = p.backoffMin
		p.pushed.Add(1)
		p.mu.Lock()
		if len(p.queue) > 0 && &p.queue[0].prof[0] == &prof[0] {
			p.queue = p.queue[1:]
		}
		p.mu.Unlock()
	}
}

// drain pushes what is queued, for at most d, once run has returned (the
// agent is stopping: its context ended).
func (p *pusher) drain(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	select {
	case <-p.done:
	case <-ctx.Done(): // what is still queued is counted as dropped below
	}
	for p.queued() > 0 && ctx.Err() == nil {
		p.mu.Lock()
		it := p.queue[0]
		p.mu.Unlock()
		if err := p.push(ctx, it); err != nil {
			break
		}
		p.pushed.Add(1)
		p.mu.Lock()
		p.queue = p.queue[1:]
		p.mu.Unlock()
	}
	if n := p.queued(); n > 0 {
		p.dropped.Add(uint64(n))
		fmt.Fprintf(p.stderr, "%d snapshots not pushed at exit\n", n)
	}
}

func (p *pusher) push(ctx context.Context, it pushItem) error {
	id := make([]byte, 16)
	rand.Read(id)
	labels := p.labels
	if len(it.extra) > 0 {
		labels = append(append([]*typesv1.LabelPair{}, p.labels...), it.extra...)
	}
	_, err := p.client.Push(ctx, connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
		Labels:  labels,
		Samples: []*pushv1.RawSample{{RawProfile: it.prof, ID: hex.EncodeToString(id)}},
	}}}))
	return err
}

// agentMetrics is the Prometheus collector of the agent: the last
// snapshot's figures, and the agent's own.
type agentMetrics struct {
	mu             sync.Mutex
	caches         map[string]cacheFigures
	prevBytes      map[string]uint64
	prevAt         time.Time
	growth         map[string]float64
	counters       []tracer.Counter
	removedMemcgs  int
	removedObjects uint64
	removedBytes   uint64
	snapshotDur    time.Duration
	eventRate      float64
	snapshots      uint64
	snapshotErrors atomic.Uint64
	pusher         *pusher
	// The watch mode's: the kernel's counts at the last reading (kernel
	// nil: not watching), rising streaks, triggers and captures.
	kernel      *host.SystemView
	memcgKernel []host.MemcgKernel
	streaks     map[string]int
	readings    uint64
	triggers    map[string]uint64
	capturing   bool
	captures    map[string]uint64 // by result: ok, error
	heldBack    uint64            // readings at which the rule held in a backoff
	heldNow     uint64            // the same, in the current backoff
	nextAfter   time.Time
	watchSlabs  func(string) bool // reclaimable, for the kernel's caches
}

type cacheFigures struct{ objects, bytes uint64 }

func newAgentMetrics() *agentMetrics {
	return &agentMetrics{caches: map[string]cacheFigures{}, prevBytes: map[string]uint64{}, growth: map[string]float64{},
		streaks: map[string]int{}, triggers: map[string]uint64{}, captures: map[string]uint64{}}
}

// update takes a snapshot's figures.
func (m *agentMetrics) update(agg *tracer.Aggregation, dur time.Duration, eventRate float64) {
	caches := map[string]cacheFigures{}
	memcgs := map[string]bool{}
	var rObj, rBytes uint64
	for i := range agg.Samples {
		s := &agg.Samples[i]
		name := s.Cache
		if name == "" {
			name = s.Kind.String()
		}
		c := caches[name]
		c.objects += s.InuseObjects
		c.bytes += s.InuseSpace
		caches[name] = c
		if s.MemcgRemoved && s.InuseObjects > 0 {
			memcgs[s.MemcgPath] = true
			rObj += s.InuseObjects
			rBytes += s.InuseSpace
		}
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	growth := map[string]float64{}
	if !m.prevAt.IsZero() {
		secs := now.Sub(m.prevAt).Seconds()
		for name, c := range caches {
			growth[name] = (float64(c.bytes) - float64(m.prevBytes[name])) / secs
		}
	}
	m.growth = growth
	m.prevBytes = map[string]uint64{}
	for name, c := range caches {
		m.prevBytes[name] = c.bytes
	}
	m.prevAt = now
	m.caches = caches
	m.counters = agg.Counters
	m.removedMemcgs, m.removedObjects, m.removedBytes = len(memcgs), rObj, rBytes
	m.snapshotDur = dur
	m.eventRate = eventRate
	m.snapshots++
}

var (
	descObjects    = prometheus.NewDesc("kmemprof_outstanding_objects", "Outstanding (allocated, not freed) kernel objects traced, by slab cache (or allocator kind), at the last snapshot.", []string{"cache"}, nil)
	descBytes      = prometheus.NewDesc("kmemprof_outstanding_bytes", "Outstanding kernel memory traced, in bytes, by slab cache (or allocator kind), at the last snapshot.", []string{"cache"}, nil)
	descGrowth     = prometheus.NewDesc("kmemprof_outstanding_growth_bytes_per_second", "Change of kmemprof_outstanding_bytes between the last two snapshots, per second.", []string{"cache"}, nil)
	descRemMemcgs  = prometheus.NewDesc("kmemprof_removed_memcgs", "Memory cgroups removed while objects charged to them live on, at the last snapshot.", nil, nil)
	descRemObjects = prometheus.NewDesc("kmemprof_removed_memcg_objects", "Objects charged to removed memory cgroups that live on.", nil, nil)
	descRemBytes   = prometheus.NewDesc("kmemprof_removed_memcg_bytes", "Bytes of objects charged to removed memory cgroups that live on.", nil, nil)
	descCounter    = prometheus.NewDesc("kmemprof_counter_total", "kmemprof's counters since the agent started (events, outcomes, and losses: loss=\"true\").", []string{"name", "loss"}, nil)
	descFigure     = prometheus.NewDesc("kmemprof_figure", "kmemprof's figures of the last snapshot, not cumulative: the self-check's objects tracked beyond the kernel's counts (selfcheck_over_kernel: frees missed) and growth beyond what is tracked (selfcheck_growth_untracked: allocations missed); losses are loss=\"true\".", []string{"name", "loss"}, nil)
	descSnapDur    = prometheus.NewDesc("kmemprof_agent_snapshot_seconds", "How long the last snapshot took (read, symbolize, aggregate, encode).", nil, nil)
	descEventRate  = prometheus.NewDesc("kmemprof_agent_events_per_second", "Kernel allocation and free events traced per second, between the last two snapshots.", nil, nil)
	descSnapshots  = prometheus.NewDesc("kmemprof_agent_snapshots_total", "Snapshots taken.", nil, nil)
	descSnapErrs   = prometheus.NewDesc("kmemprof_agent_snapshot_errors_total", "Snapshots that failed.", nil, nil)
	descPushes     = prometheus.NewDesc("kmemprof_agent_pushes_total", "Profile pushes to Pyroscope, by result: ok, error (retried), dropped (the queue was full, or the agent stopped).", []string{"result"}, nil)
	descQueue      = prometheus.NewDesc("kmemprof_agent_push_queue", "Snapshots waiting to be pushed.", nil, nil)

	descKSlabObjects = prometheus.NewDesc("kmemprof_kernel_slab_objects", "Active objects of a slab cache, from /proc/slabinfo (watch mode: no tracing).", []string{"cache", "reclaimable"}, nil)
	descKSlabBytes   = prometheus.NewDesc("kmemprof_kernel_slab_bytes", "Active bytes of a slab cache (active objects times object size), from /proc/slabinfo.", []string{"cache", "reclaimable"}, nil)
	descKMemory      = prometheus.NewDesc("kmemprof_kernel_memory_bytes", "Kernel memory by kind, from /proc/meminfo (Slab, SReclaimable, SUnreclaim, KernelStack, PageTables, VmallocUsed, Percpu).", []string{"field"}, nil)
	descKMemcgs      = prometheus.NewDesc("kmemprof_kernel_memcgs", "Memory cgroups the kernel holds (state=\"all\"), and those removed but not freed (state=\"dying\").", []string{"state"}, nil)
	descKMemcgKernel = prometheus.NewDesc("kmemprof_kernel_memcg_bytes", "Kernel memory charged to a memory cgroup and its descendants (memory.stat kernel on cgroup v2, memory.kmem.usage_in_bytes on v1), for the 200 cgroups of most, 3 levels deep at most.", []string{"memcg"}, nil)
	descKMemcgSlab   = prometheus.NewDesc("kmemprof_kernel_memcg_slab_unreclaimable_bytes", "Unreclaimable slab charged to a memory cgroup and its descendants (memory.stat slab_unreclaimable, cgroup v2).", []string{"memcg"}, nil)
	descStreak       = prometheus.NewDesc("kmemprof_watch_rising_intervals", "Intervals in a row an unreclaimable slab cache grew by --trigger-growth or more (only caches that did in the last one); a capture starts at --trigger-intervals.", []string{"cache"}, nil)
	descReadings     = prometheus.NewDesc("kmemprof_watch_readings_total", "Readings of the kernel's counts.", nil, nil)
	descTriggers     = prometheus.NewDesc("kmemprof_watch_triggers_total", "Captures triggered, by reason (the cache that grew most, sunreclaim, or dying_memcgs).", []string{"reason"}, nil)
	descHeldBack     = prometheus.NewDesc("kmemprof_watch_triggers_held_back_total", "Readings at which the rule held during the backoff after a capture.", nil, nil)
	descCapturing    = prometheus.NewDesc("kmemprof_watch_capturing", "1 while a triggered capture runs (programs attached), else 0.", nil, nil)
	descCaptures     = prometheus.NewDesc("kmemprof_watch_captures_total", "Triggered captures, by result: ok, error.", []string{"result"}, nil)
)

func (m *agentMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descObjects, descBytes, descGrowth, descRemMemcgs, descRemObjects, descRemBytes, descCounter, descFigure,
		descSnapDur, descEventRate, descSnapshots, descSnapErrs, descPushes, descQueue,
		descKSlabObjects, descKSlabBytes, descKMemory, descKMemcgs, descKMemcgKernel, descKMemcgSlab, descStreak, descReadings, descTriggers, descHeldBack, descCapturing, descCaptures} {
		ch <- d
	}
}

func (m *agentMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, c := range m.caches {
		ch <- prometheus.MustNewConstMetric(descObjects, prometheus.GaugeValue, float64(c.objects), name)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(c.bytes), name)
	}
	for name, g := range m.growth {
		ch <- prometheus.MustNewConstMetric(descGrowth, prometheus.GaugeValue, g, name)
	}
	ch <- prometheus.MustNewConstMetric(descRemMemcgs, prometheus.GaugeValue, float64(m.removedMemcgs))
	ch <- prometheus.MustNewConstMetric(descRemObjects, prometheus.GaugeValue, float64(m.removedObjects))
	ch <- prometheus.MustNewConstMetric(descRemBytes, prometheus.GaugeValue, float64(m.removedBytes))
	for _, c := range m.counters {
		if c.Gauge {
			ch <- prometheus.MustNewConstMetric(descFigure, prometheus.GaugeValue, float64(c.Value), c.Name, fmt.Sprint(c.Loss))
			continue
		}
		ch <- prometheus.MustNewConstMetric(descCounter, prometheus.CounterValue, float64(c.Value), c.Name, fmt.Sprint(c.Loss))
	}
	ch <- prometheus.MustNewConstMetric(descSnapDur, prometheus.GaugeValue, m.snapshotDur.Seconds())
	ch <- prometheus.MustNewConstMetric(descEventRate, prometheus.GaugeValue, m.eventRate)
	ch <- prometheus.MustNewConstMetric(descSnapshots, prometheus.CounterValue, float64(m.snapshots))
	ch <- prometheus.MustNewConstMetric(descSnapErrs, prometheus.CounterValue, float64(m.snapshotErrors.Load()))
	m.collectWatch(ch)
	if p := m.pusher; p != nil {
		ch <- prometheus.MustNewConstMetric(descPushes, prometheus.CounterValue, float64(p.pushed.Load()), "ok")
		ch <- prometheus.MustNewConstMetric(descPushes, prometheus.CounterValue, float64(p.failed.Load()), "error")
		ch <- prometheus.MustNewConstMetric(descPushes, prometheus.CounterValue, float64(p.dropped.Load()), "dropped")
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(p.queued()))
	}
}

// kernelRelease returns uname -r.
func kernelRelease() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return ""
	}
	b := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

package main

// agentUsage is here, not in agent_linux.go, so that the manual page and
// the completion scripts made on any OS have it.
const agentUsage = `Usage: kmemprof agent [options]

Watch the kernel's own memory counts on every machine of a fleet, at no
tracing cost, and capture where memory goes only when they say it leaks.

Every interval the agent reads /proc/slabinfo, /proc/meminfo, the count
of dying memory cgroups and the kernel memory charged to each memory cgroup
(3 levels deep), with no BPF program attached, exports them as Prometheus
metrics and pushes them to Pyroscope as cheap profiles (one sample per slab
cache, kmemprof_source="slabinfo"; one per memory cgroup under its
ancestors, kmemprof_source="memcg"). When an unreclaimable
slab cache grows by --trigger-growth bytes or more in each of
--trigger-intervals intervals in a row (SUnreclaim as a whole: by that many
times --trigger-growth; or the dying memory cgroups rise in each), it
attaches for one capture of --capture in the default (adaptive) mode,
pushes the outstanding allocations by kernel stack (kmemprof_source="capture",
trigger="cache:NAME", "sunreclaim" or "dying_memcgs"), detaches, and starts
watching afresh; no capture starts again before --backoff has passed. Each
trigger is a log line with the figures that caused it, and a metric.
Reclaimable caches (dentries, inodes: SLAB_RECLAIM_ACCOUNT) never trigger.

With --continuous the agent traces all the time instead, and pushes a
snapshot of what is outstanding every interval (the cost of tracing every
allocation, all the time: see the README).

Runs until SIGTERM or Ctrl-C, then detaches everything and exits 0.

Options:
      --interval D        time between readings (or snapshots) (default 60s)
      --trigger-intervals N  intervals in a row of growth that trigger a
                          capture (default 3)
      --trigger-growth BYTES growth of an unreclaimable slab cache in each
                          of them (default 32768)
      --capture D         how long a triggered capture traces (default 60s);
                          growth is measured six times during it
      --backoff D         no capture before this long after the last one
                          (default 10m; 0: none)
      --continuous        trace all the time (no watching)
      --pyroscope URL     push profiles to this Pyroscope server, e.g.
                          http://pyroscope:4040 (none: no push)
      --service-name NAME the service_name of the series (default kmemprof)
      --tenant ID         X-Scope-OrgID header for multi-tenant servers
      --metrics ADDR      serve Prometheus metrics at http://ADDR/metrics,
                          e.g. 127.0.0.1:9464 (none: no metrics); loopback
                          only unless --allow-remote
      --allow-remote      let --metrics listen on a non-loopback address
      --queue N           snapshots kept while the server is unreachable
                          (default 10); older ones are dropped, and counted
      --mode, --hot-threshold, --kinds, --cgroup, --memcg, --cache,
      --attach, --max-outstanding, --stack-depth   as for 'kmemprof record'
                          (a triggered capture's, or --continuous tracing's)
  -h, --help              show this help

Credentials come from the environment, never the command line:
  KMEMPROF_PYROSCOPE_USER and KMEMPROF_PYROSCOPE_PASSWORD  basic auth
  KMEMPROF_PYROSCOPE_TOKEN                                 bearer token
  (or KMEMPROF_PYROSCOPE_PASSWORD_FILE, KMEMPROF_PYROSCOPE_TOKEN_FILE: read
  from a file, as Kubernetes mounts secrets)

Series: __name__="memory", service_name, host and kernel labels; Pyroscope
shows them as memory profiles (inuse_space by default, inuse_objects too;
with --mode full or sample, alloc_space and alloc_objects count what was
allocated during each interval).
Samples carry kmemprof's labels: cache, kind, cgroup, memcg, memcg_removed,
container, pod, comm, pid.

While the server is down the agent keeps working, retries with backoff
(1 s doubling to 1 min) and keeps at most --queue snapshots.
`

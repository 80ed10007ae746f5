package main

// agentUsage is here, not in agent_linux.go, so that the manual page and
// the completion scripts made on any OS have it.
const agentUsage = `Usage: kmemprof agent [options]

Trace kernel allocations continuously in the default (adaptive) mode and,
every interval, take a snapshot of what is outstanding: push it as a memory
profile to Pyroscope, and expose per-cache figures, losses and the agent's
own cost as Prometheus metrics. Runs until SIGTERM or Ctrl-C, then detaches
everything and exits 0.

Options:
      --interval D        time between snapshots (default 60s)
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

While the server is down the agent keeps tracing, retries with backoff
(1 s doubling to 1 min) and keeps at most --queue snapshots.
`

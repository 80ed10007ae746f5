#!/usr/bin/env bash
# What the agent costs on realistic work, beside the untraced run, in one
# run: a web server under load (nginx and wrk from Debian, short
# connections) and a build (compiling this project's Go packages with an
# empty build cache). Each round runs every mode once, in an order that
# rotates; the table gives medians, the untraced runs' spread (the noise),
# and each mode's ratio to untraced.
#
#   .ci/bench/agent-cost.sh [-r ROUNDS] [-d WRK_SECONDS] [-w web,build] [-i INTERVAL]
#
# Modes: untraced; watch (the agent's default: reads the kernel's counts
# every INTERVAL, no program attached); capture (what a triggered capture
# costs while it runs: record in the default mode); continuous (agent
# --continuous). Needs root, nginx and wrk (installed with apt-get when
# missing), and a kmemprof binary (KMEMPROF, default: built here).
set -Eeuo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
ROUNDS=3 WRK_S=10 WORKLOADS=web,build INTERVAL=10s
while getopts r:d:w:i: o; do
	case $o in
	r) ROUNDS=$OPTARG ;;
	d) WRK_S=$OPTARG ;;
	w) WORKLOADS=$OPTARG ;;
	i) INTERVAL=$OPTARG ;;
	*) sed -n '2,16p' "$0"; exit 2 ;;
	esac
done
export PATH="/usr/local/go/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "agent-cost.sh: run as root" >&2; exit 1; }
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
WORK=$(mktemp -d /tmp/kmemprof-agent-cost.XXXXXX)
KMEMPROF=${KMEMPROF:-$WORK/kmemprof}
[ -x "$KMEMPROF" ] || (cd "$SRC" && CGO_ENABLED=0 go build -o "$KMEMPROF" ./cmd/kmemprof)
PORT=18080
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	[ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
	sleep 1
	rm -rf "$WORK"
}
trap cleanup EXIT

# nginx: a small static page, no access log, on 127.0.0.1:$PORT.
mkdir -p "$WORK/www" "$WORK/nginx"
head -c 612 /dev/zero | tr '\0' x >"$WORK/www/index.html"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
	fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
	server { listen 127.0.0.1:$PORT; root $WORK/www; keepalive_timeout 0; }
}
EOF

# start_mode MODE: starts what MODE runs beside the workload; waits until
# it is ready.
start_mode() {
	local log=$WORK/mode.log
	: >"$log"
	case $1 in
	untraced) return ;;
	watch) "$KMEMPROF" agent --interval "$INTERVAL" --metrics 127.0.0.1:0 2>"$log" & ;;
	continuous) "$KMEMPROF" agent --continuous --interval "$INTERVAL" --metrics 127.0.0.1:0 2>"$log" & ;;
	capture) "$KMEMPROF" record -d 1h -o "$WORK/capture.pb.gz" --top 0 2>"$log" & ;;
	esac
	pids=("$!")
	for _ in $(seq 300); do
		grep -q 'watching the kernel\|tracing ' "$log" && { sleep 1; return; }
		sleep 0.1
	done
	echo "agent-cost.sh: $1 did not start: $(cat "$log")" >&2
	exit 1
}
stop_mode() {
	[ ${#pids[@]} -gt 0 ] || return 0
	kill -INT "${pids[0]}" 2>/dev/null || true
	wait "${pids[0]}" 2>/dev/null || true
	pids=()
	if [ "$1" = watch ] && grep -q 'trigger:' "$WORK/mode.log"; then
		echo "note: the watching agent triggered a capture during this run: $(grep -m1 'trigger:' "$WORK/mode.log")" >&2
		TRIGGERED=$((TRIGGERED + 1))
	fi
}
# progs_now: BPF programs held by the mode's process.
progs_now() {
	[ ${#pids[@]} -gt 0 ] || { echo 0; return; }
	{ grep -l 'prog_id:' /proc/"${pids[0]}"/fdinfo/* 2>/dev/null || true; } | wc -l
}

# Workloads print one number: requests/s (higher is better) or seconds.
run_web() {
	wrk -t2 -c32 -d"${WRK_S}s" -H 'Connection: close' "http://127.0.0.1:$PORT/" 2>/dev/null |
		awk '/Requests\/sec/ { print $2 }'
}
run_build() {
	local cache=$WORK/gocache t0
	rm -rf "$cache"
	t0=$(date +%s.%N)
	(cd "$SRC" && GOCACHE=$cache GOFLAGS=-mod=mod CGO_ENABLED=0 go build -o /dev/null ./tracer/... ./symbolize/... ./bpf/... >/dev/null 2>&1)
	awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f\n", b - a }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

MODES=(untraced watch capture continuous)
TRIGGERED=0
RAW=$WORK/raw.tsv
: >"$RAW"
IFS=, read -r -a wls <<<"$WORKLOADS"
for wl in "${wls[@]}"; do
	if [ "$wl" = web ]; then
		nginx -c "$WORK/nginx.conf" -e "$WORK/nginx/error.log"
		sleep 1
		run_web >/dev/null # warm-up
	else
		run_build >/dev/null
	fi
	for r in $(seq "$ROUNDS"); do
		n=${#MODES[@]}
		for i in $(seq 0 $((n - 1))); do
			m=${MODES[$(((i + r) % n))]}
			start_mode "$m"
			v=$("run_$wl")
			progs=$(progs_now)
			stop_mode "$m"
			printf '%s\t%s\t%s\t%s\t%s\n' "$wl" "$r" "$m" "$v" "$progs" >>"$RAW"
			echo "round $r $wl $m: $v (programs held: $progs)" >&2
		done
	done
	[ "$wl" = web ] && kill "$(cat "$WORK/nginx.pid")" && sleep 1
done

echo
echo "## agent cost ($(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs, $ROUNDS rounds, interval $INTERVAL)"
for wl in "${wls[@]}"; do
	unit="s (build time; lower is better)"
	[ "$wl" = web ] && unit="requests/s (wrk, short connections; higher is better)"
	echo
	echo "### $wl: $unit"
	echo
	echo "| mode | median | min | max | vs untraced | programs held |"
	echo "|------|--------|-----|-----|-------------|---------------|"
	base=$(awk -v w="$wl" '$1 == w && $3 == "untraced" { print $4 }' "$RAW" | median)
	for m in "${MODES[@]}"; do
		vals=$(awk -v w="$wl" -v m="$m" '$1 == w && $3 == m { print $4 }' "$RAW")
		med=$(median <<<"$vals")
		lo=$(sort -g <<<"$vals" | head -n 1)
		hi=$(sort -g <<<"$vals" | tail -n 1)
		held=$(awk -v w="$wl" -v m="$m" '$1 == w && $3 == m { print $5 }' "$RAW" | sort -u | tr '\n' ' ')
		ratio=$(awk -v a="$med" -v b="$base" -v web="$([ "$wl" = web ] && echo 1 || echo 0)" 'BEGIN {
			# the cost as a ratio >= 1 when slower: time ratio, or the inverse of throughput
			if (web) printf "%.3f", b / a; else printf "%.3f", a / b }')
		echo "| $m | $med | $lo | $hi | ${ratio}x | $held|"
	done
	noise=$(awk -v w="$wl" '$1 == w && $3 == "untraced" { print $4 }' "$RAW" | sort -g | awk '{ a[NR] = $1 } END { printf "%.1f", 100 * (a[NR] - a[1]) / a[1] }')
	echo
	echo "Noise: the untraced runs spread over ${noise}% (max - min, of min)."
done
[ "$TRIGGERED" = 0 ] || echo "The watching agent triggered $TRIGGERED capture(s) during these runs (see notes above)."

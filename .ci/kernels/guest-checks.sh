# The checks that run inside each kernel-matrix guest, in order; sourced by
# /init (busybox sh), as root, with KMEMPROF_REQUIRE_BPF=1, a high open-file
# limit, and /kmemprof, /bpf.test, /kmemprof.test at the root.
#
#   check [-C DIR] NAME TIMEOUT_SECONDS COMMAND [ARG...]
#
# runs COMMAND in DIR (default /) and prints "KMEMPROF-CHECK NAME PASS|FAIL
# SECONDS" for the host's table. Test binaries run in their package's
# directory under /src, where its testdata/ is.
# Times are under software emulation (qemu TCG): 10-30x slower than a real
# machine.
# shellcheck shell=sh disable=SC2016

# mode_check MODE: the selftest in one attach mode. When the kernel refuses
# the mode and says why (arm64 6.1 has no BPF trampolines: no fentry), the
# cell is NA with that reason instead of FAIL; any other failure fails.
mode_check() {
	echo "KMEMPROF-BEGIN selftest-$1"
	start=$(uptime_s)
	out=$(timeout -s TERM -k 10 300 /kmemprof selftest --attach "$1" </dev/null 2>&1)
	rc=$?
	echo "$out"
	secs=$(awk -v a="$start" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')
	if [ $rc = 0 ]; then
		echo "KMEMPROF-CHECK selftest-$1 PASS $secs"
	elif why=$(echo "$out" | grep -o 'cannot attach BPF trampolines\|has no kprobe support' | head -n 1) && [ -n "$why" ]; then
		echo "KMEMPROF-CHECK selftest-$1 NA $secs kernel: $why"
	else
		echo "KMEMPROF-CHECK selftest-$1 FAIL $secs exit $rc"
	fi
}

for mode in auto raw_tp tp_btf tracepoint fentry kprobe; do
	mode_check "$mode"
done

# The same under a low open-file limit (hard and soft), as on a default system.
check selftest-lowfd 300 sh -c 'ulimit -n 4096 && echo "ulimit -n: soft $(ulimit -Sn) hard $(ulimit -Hn)" && exec /kmemprof selftest'

# The capture check (TestCaptureCheck of cmd/kmemprof), not the selftest:
# in one attach mode, `kmemprof record --kinds slab,page` while one process
# makes tmpfs files, timerfds and pipes holding a page each and holds them
# to the end, and another makes the same and releases them mid-capture:
# held ones exact (+-3%), released ones absent, /proc/slabinfo agreeing,
# and no Oops, BUG or WARNING in the kernel log. NA where the kernel
# refuses the mode and says why. kprobe mode runs three times: attaching
# kprobes on the allocator while it runs is where trouble would show.
capture_check() { # NAME MODE
	echo "KMEMPROF-BEGIN $1"
	start=$(uptime_s)
	out=$(cd /src/cmd/kmemprof && KMEMPROF_CAPTURE_MODES=$2 timeout -s TERM -k 10 600 /kmemprof.test -test.v -test.run '^TestCaptureCheck$' -test.timeout 9m </dev/null 2>&1)
	rc=$?
	echo "$out"
	secs=$(awk -v a="$start" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')
	if [ $rc = 0 ] && why=$(echo "$out" | grep -o 'NA: the kernel refuses.*' | head -n 1) && [ -n "$why" ]; then
		echo "KMEMPROF-CHECK $1 NA $secs ${why#NA: }"
	elif [ $rc = 0 ]; then
		echo "KMEMPROF-CHECK $1 PASS $secs"
	else
		echo "KMEMPROF-CHECK $1 FAIL $secs exit $rc"
	fi
}

for mode in raw_tp tp_btf tracepoint fentry; do
	capture_check "capture-$mode" "$mode"
done
for i in 1 2 3; do
	capture_check "capture-kprobe-$i" kprobe
done

check -C /src/bpf bpf-tests 1000 /bpf.test -test.v -test.timeout 15m
check -C /src/cmd/kmemprof cmd-tests 1000 /kmemprof.test -test.v -test.run 'TestRecord|TestSelftest' -test.timeout 15m
# The agent's watch mode: no program attached while it watches, a steady
# leak triggers a capture that holds it, reclaimable growth does not.
check -C /src/cmd/kmemprof agent-watch 600 /kmemprof.test -test.v -test.run '^(TestAgentWatch|TestMemcgKernelGrows)' -test.timeout 8m

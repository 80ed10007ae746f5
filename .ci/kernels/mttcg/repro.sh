#!/usr/bin/env bash
# Reproduces, without kmemprof and without BPF, the guest crashes that
# multi-threaded TCG (qemu -accel tcg,thread=multi) causes while the kernel
# patches its own text: two processes hammer the allocator on every vCPU
# while a third, pinned to CPU 0, toggles a trace event (static keys and
# static calls), an ftrace-based kprobe, or the function tracer. See
# README.md beside this file.
#
#   repro.sh KERNEL [MODE] [ACCEL] [SMP] [SECONDS] [QEMU]
#
# KERNEL: a kernel of the matrix, fetched by kernels.sh (5.10 6.1 6.12 sid);
# MODE: tp (default), kprobe, ftrace, all; ACCEL: tcg,thread=multi (default)
# or tcg,thread=single; SMP: 2; SECONDS: 300; QEMU: qemu-system-x86_64.
# Prints one line: SURVIVED after SECONDS, or CRASH with the kernel's first
# report and the guest's uptime; the console log stays in $OUT (default
# /tmp/kmemprof-mttcg).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${KMEMPROF_KERNEL_CACHE:-/var/cache/kmemprof-kernels}
OUT=${OUT:-/tmp/kmemprof-mttcg}
kernel=${1:?usage: repro.sh KERNEL [MODE] [ACCEL] [SMP] [SECONDS] [QEMU]}
mode=${2:-tp} accel=${3:-tcg,thread=multi} smp=${4:-2} secs=${5:-300} qemu=${6:-qemu-system-x86_64}
[ -s "$CACHE/$kernel.current" ] || { echo "no cached kernel $kernel: run .ci/kernels/kernels.sh fetch $kernel" >&2; exit 1; }
dir=$(cat "$CACHE/$kernel.current")
busybox=$CACHE/busybox/amd64/busybox
[ -x "$busybox" ] || { echo "no busybox in $CACHE: run .ci/kernels/kernels.sh fetch $kernel" >&2; exit 1; }
mkdir -p "$OUT"
root=$(mktemp -d "$OUT/root.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$HERE/init" "$root/init"
gcc -O2 -static -o "$root/stress" "$HERE/stress.c"
[ "$(id -u)" = 0 ] && mknod -m 600 "$root/dev/console" c 5 1
(cd "$root" && find . | cpio -o -H newc --quiet) >"$OUT/initrd.cpio"
log="$OUT/$kernel-$mode-${accel//[,=]/-}-smp$smp.log"
timeout -k 5 $((secs + 240)) "$qemu" -accel "$accel" -cpu max -smp "$smp" -m 2G -nographic -no-reboot -nic none \
	-kernel "$dir/vmlinuz" -initrd "$OUT/initrd.cpio" \
	-append "console=ttyS0 rdinit=/init panic=-1 oops=panic loglevel=5 random.trust_cpu=on EMU_MODE=$mode EMU_DUR=$secs" \
	</dev/null 2>&1 | sed -u 's/\r$//' >"$log" || true
if grep -q EMU-SURVIVED "$log"; then
	echo "SURVIVED $kernel $mode $accel smp=$smp ${secs}s ($(grep -o 'EMU-COUNT.*' "$log" | tail -n 1)): $log"
elif first=$(grep -m 1 -E 'Oops|BUG:|Unrecoverable kprobe' "$log"); then
	echo "CRASH $kernel $mode $accel smp=$smp: $first: $log"
	exit 1
else
	echo "NEITHER $kernel $mode $accel smp=$smp (timeout?): $log"
	exit 2
fi

#!/usr/bin/env bash
# The matrix's retry rule on real consoles: a guest whose first oops shows a
# flags word no x86-64 CPU pushes is booted again, the dead console kept and
# listed; any other death is not retried. boot_once is replaced by one that
# replays logs; everything else is kernels.sh's own.
set -Eeuo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export KMEMPROF_KERNEL_RESULTS=$tmp KMEMPROF_KERNEL_CACHE=$tmp/cache
# shellcheck source=kernels.sh
source "$HERE/kernels.sh"
set +e
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

emu=$HERE/evidence/6.12.118-double-fault-panic.log
emu2=$HERE/evidence/6.12.118-stackid-panic.log
mkdir "$tmp/in"
real=$tmp/in/real.log # a genuine-looking oops: sane flags
printf '%s\n' '[  12.000001] BUG: kernel NULL pointer dereference, address: 0000000000000008' \
	'[  12.000002] RIP: 0010:kfree+0x10/0x200' \
	'[  12.000003] RSP: 0018:ffffc90000abbd28 EFLAGS: 00010246' \
	'[  12.000004] Kernel panic - not syncing: Fatal exception' >"$real"
done_log=$tmp/in/done.log
printf '%s\n' 'KMEMPROF-GUEST uname=6.12 uptime=4' 'KMEMPROF-CHECK btf PASS 0.0' 'KMEMPROF-DONE uptime=9' >"$done_log"

# boot_once replays the next log of $REPLAY (space separated).
boot_once() {
	local next
	read -r next REPLAY <<<"$REPLAY"
	cp "$next" "$RESULTS/$1.log"
	if grep -q KMEMPROF-DONE "$next"; then st=DONE; else st="PANIC: $(grep -a -m 1 -o 'Kernel panic.*' "$next")"; fi
	printf 'package=p\nversion=v\nwall=1\nstatus=%s\n' "$st" >"$RESULTS/$1.meta"
	BOOTS=$((BOOTS + 1))
}

run() { # NAME RETRIES LOGS...: boots made, final status
	local name=$1
	EMULATOR_RETRIES=$2
	shift 2
	REPLAY="$*" BOOTS=0
	rm -f "$RESULTS"/*.meta "$RESULTS"/*.log
	boot "$name" x 2>"$tmp/boot.err"
}

run 6.12 2 "$emu" "$done_log"
[ "$BOOTS" = 2 ] && [ "$(meta 6.12 status)" = DONE ] || fail "emulator fault then pass: $BOOTS boots, $(meta 6.12 status)"
[ -s "$RESULTS/6.12.emulator-fault-1.log" ] || fail "the dead console was not kept"
meta 6.12 emulator_faults | grep -q 'EFLAGS 12fec202' || fail "meta does not name the fault: $(cat "$RESULTS/6.12.meta")"
summary 6.12 >"$tmp/summary" 2>&1
grep -q 'booted again after 1 emulator fault' "$tmp/summary" && [ "$STATUS" = 0 ] ||
	fail "summary: STATUS=$STATUS $(cat "$tmp/summary")"

run 6.12 2 "$emu" "$emu2" "$emu"
[ "$BOOTS" = 3 ] && [ "$(meta 6.12 status)" != DONE ] || fail "three emulator faults: $BOOTS boots, $(meta 6.12 status)"
summary 6.12 >"$tmp/summary" 2>&1
[ "$STATUS" = 1 ] || fail "three emulator faults must fail the matrix"

run 6.12 2 "$real" "$done_log"
[ "$BOOTS" = 1 ] && [ "$(meta 6.12 status)" != DONE ] || fail "a real oops was retried: $BOOTS boots"
summary 6.12 >"$tmp/summary" 2>&1
[ "$STATUS" = 1 ] || fail "a real oops must fail the matrix"

run arm64 2 "$emu" "$done_log"
[ "$BOOTS" = 1 ] || fail "arm64 guests are not judged by x86 flags: $BOOTS boots"

[ "$fails" = 0 ] && echo "retry_test: ok" || exit 1

#!/usr/bin/env bash
# Kernel matrix: boots Debian's own kernels under qemu (software emulation,
# TCG) and runs kmemprof's kernel tests and selftests inside each, then prints
# a kernel x check table. See README.md beside this file.
#
#   kernels.sh [all] [KERNEL...]   fetch the newest kernels, then run (default)
#   kernels.sh fetch [KERNEL...]   download and extract kernels into the cache
#   kernels.sh run [KERNEL...]     build, boot each cached kernel, report
#   kernels.sh boot [KERNEL...]    boot-only: busybox, uname -r and BTF, no kmemprof
#   kernels.sh summary             the table of the last run, from its logs
#   kernels.sh list                the kernel names
#
# KERNEL is one of 5.10 6.1 6.12 sid arm64 (default: all, or $KERNELS).
# Environment (defaults):
#   KMEMPROF_KERNEL_CACHE=/var/cache/kmemprof-kernels  kernels, busybox, apt lists
#   KMEMPROF_KERNEL_RESULTS=/tmp/kmemprof-kernels      console logs, binaries, initramfs
#   KMEMPROF_KERNEL_JOBS=2        guests booted at once
#   KMEMPROF_KERNEL_TIMEOUT=1500  seconds per kernel, boot to power-off; then qemu is killed
#   KMEMPROF_KERNEL_MEM=2G KMEMPROF_KERNEL_SMP=2   guest size
#   KMEMPROF_KERNEL_APPEND=       extra kernel command line
#   KMEMPROF_KERNEL_EMULATOR_RETRIES=2   boots again after a guest death whose
#                                 registers prove the emulator at fault (kept, reported)
#   KMEMPROF_KERNEL_ACCEL=tcg,thread=single   qemu -accel (tcg: a host thread per vCPU)
#   KMEMPROF_KERNEL_ARM64_CPU=max,pauth-impdef=on   qemu -cpu for arm64
#   KMEMPROF_BOOT_ONLY=1          same as the boot subcommand
#   KMEMPROF_KERNEL_OFFLINE=1     do not ask the archive: use the kernels cached last time
#   KMEMPROF_SRC=                 the kmemprof tree to build (default: this checkout)
#   KMEMPROF_GUEST_CHECKS=FILE    another check list than guest-checks.sh (e.g. one test)
set -Eeuo pipefail
trap 'echo "kernels.sh: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=${KMEMPROF_SRC:-$(cd "$HERE/../.." && pwd)}
CACHE=${KMEMPROF_KERNEL_CACHE:-/var/cache/kmemprof-kernels}
RESULTS=${KMEMPROF_KERNEL_RESULTS:-/tmp/kmemprof-kernels}
# Two guests at a time, each emulated by one host thread (thread=single):
# the 2 host cores stay busy without oversubscription. Multi-threaded TCG
# (KMEMPROF_KERNEL_ACCEL=tcg) ran single guests no faster overall, and its
# guests crash on the kernel's own text patching, kmemprof or not: QEMU's
# cross-modifying-code race (mttcg/README.md, mttcg/repro.sh).
JOBS=${KMEMPROF_KERNEL_JOBS:-2}
ACCEL=${KMEMPROF_KERNEL_ACCEL:-tcg,thread=single}
TIMEOUT=${KMEMPROF_KERNEL_TIMEOUT:-1500}
MEM=${KMEMPROF_KERNEL_MEM:-2G}
SMP=${KMEMPROF_KERNEL_SMP:-2}
APPEND=${KMEMPROF_KERNEL_APPEND:-}
# Boots again after a guest death the emulator caused (emulator_fault).
EMULATOR_RETRIES=${KMEMPROF_KERNEL_EMULATOR_RETRIES:-2}
# Emulating arm64 pointer authentication's QARMA cipher dominates TCG time
# (the kernel signs every return address); pauth-impdef=on uses QEMU's
# cheap implementation-defined algorithm instead.
ARM64_CPU=${KMEMPROF_KERNEL_ARM64_CPU:-max,pauth-impdef=on}
BOOT_ONLY=${KMEMPROF_BOOT_ONLY:-0}
OFFLINE=${KMEMPROF_KERNEL_OFFLINE:-0}
CHECKS=${KMEMPROF_GUEST_CHECKS:-$HERE/guest-checks.sh}
export PATH="/usr/local/go/bin:$PATH"

# The matrix: name, Debian arch, apt source (below), image package regex. The
# newest package matching the regex is resolved at fetch time.
MATRIX=(
	"5.10  amd64 bullseye          ^linux-image-5\.10\.[0-9]+-[0-9]+-cloud-amd64$"
	"6.1   amd64 bookworm          ^linux-image-6\.1\.[0-9]+-[0-9]+-cloud-amd64$"
	"6.12  amd64 bookworm-security ^linux-image-6\.12\.[0-9]+\+deb[0-9]+-cloud-amd64$"
	"sid   amd64 sid               ^linux-image-[0-9][0-9a-z.+~-]*-cloud-amd64$"
	"arm64 arm64 bookworm          ^linux-image-6\.1\.[0-9]+-[0-9]+-cloud-arm64$"
)
declare -A APT_SOURCE=(
	[bullseye]="http://deb.debian.org/debian bullseye main"
	[bookworm]="http://deb.debian.org/debian bookworm main"
	[bookworm-security]="http://security.debian.org/debian-security bookworm-security main"
	[sid]="http://deb.debian.org/debian sid main"
)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
BUSYBOX_SOURCE=bookworm # busybox-static of the guest's arch comes from here

log() { printf '%s\n' "$*" >&2; }
die() { log "kernels.sh: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# matrix_field NAME FIELD: 1 arch, 2 apt source, 3 regex.
matrix_field() {
	local row n
	for row in "${MATRIX[@]}"; do
		read -r -a n <<<"$row"
		if [ "${n[0]}" = "$1" ]; then
			printf '%s\n' "${n[$2]}"
			return
		fi
	done
	die "unknown kernel '$1' (known: $(all_names))"
}
all_names() {
	local row
	for row in "${MATRIX[@]}"; do printf '%s ' "${row%% *}"; done
}
goarch() { case $1 in amd64) echo amd64 ;; arm64) echo arm64 ;; *) die "no GOARCH for $1" ;; esac; }

# ---------------------------------------------------------------- host tools

# ensure_host_tools ARCH...: apt-get install what is missing (as root).
ensure_host_tools() {
	local need=() a
	command -v cpio >/dev/null || need+=(cpio)
	command -v dpkg-deb >/dev/null || need+=(dpkg)
	for a in "$@"; do
		case $a in
		amd64) command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86) ;;
		arm64) command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm) ;;
		esac
	done
	[ -r "$KEYRING" ] || need+=(debian-archive-keyring)
	[ ${#need[@]} -eq 0 ] && return
	[ "$(id -u)" = 0 ] || die "missing ${need[*]}: run as root or install them"
	log "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# ---------------------------------------------------------------- private apt

# A private apt configuration per source and arch: its own sources.list,
# lists and cache under $CACHE/apt, so the system's apt is left alone.
aptdir() { echo "$CACHE/apt/$1-$2"; }
apt_setup() { # SOURCE ARCH
	local d uri suite comps
	d=$(aptdir "$1" "$2")
	read -r uri suite comps <<<"${APT_SOURCE[$1]}"
	mkdir -p "$d/state/lists/partial" "$d/cache/archives/partial" "$d/preferences.d"
	: >"$d/state/status"
	echo "deb [signed-by=$KEYRING] $uri $suite $comps" >"$d/sources.list"
	cat >"$d/apt.conf" <<-EOF
		Dir::Etc::sourcelist "$d/sources.list";
		Dir::Etc::sourceparts "-";
		Dir::Etc::preferences "$d/preferences";
		Dir::Etc::preferencesparts "$d/preferences.d";
		Dir::State "$d/state";
		Dir::State::status "$d/state/status";
		Dir::Cache "$d/cache";
		APT::Architecture "$2";
		APT::Architectures { "$2"; };
		Acquire::Languages "none";
		APT::Sandbox::User "root";
	EOF
}
apt_private() { # SOURCE ARCH apt-get|apt-cache ARGS...
	local d
	d=$(aptdir "$1" "$2")
	shift 2
	APT_CONFIG="$d/apt.conf" "$@"
}
# apt_update SOURCE ARCH, once per run.
declare -A APT_UPDATED=()
apt_update() {
	[ -n "${APT_UPDATED[$1-$2]:-}" ] && return
	apt_setup "$1" "$2"
	apt_private "$1" "$2" apt-get -qq update || return 1
	APT_UPDATED[$1-$2]=1
}

# newest SOURCE ARCH REGEX: "package version" of the newest package whose name
# matches REGEX (by candidate version).
newest() {
	local names best="" bestv="" p v
	names=$(apt_private "$1" "$2" apt-cache pkgnames | grep -E "$3" || true)
	[ -n "$names" ] || return 1
	# shellcheck disable=SC2086 # names is a word list
	while read -r p v; do
		if [ -z "$bestv" ] || dpkg --compare-versions "$v" gt "$bestv"; then best=$p bestv=$v; fi
	done < <(apt_private "$1" "$2" apt-cache show --no-all-versions $names |
		awk '/^Package:/ { p = $2 } /^Version:/ { print p, $2 }')
	[ -n "$best" ] && echo "$best $bestv"
}

# image_packages SOURCE ARCH PACKAGE: the package and, recursively, its
# dependencies that belong to the same kernel build (newer kernels split the
# image into linux-image, linux-binary and linux-base), without the modules.
image_packages() {
	local abi=${3#linux-image-} todo=("$3") seen=" " p d
	while [ ${#todo[@]} -gt 0 ]; do
		p=${todo[0]}
		todo=("${todo[@]:1}")
		case $seen in *" $p "*) continue ;; esac
		seen+="$p "
		echo "$p"
		for d in $(apt_private "$1" "$2" apt-cache show --no-all-versions "$p" |
			awk -F': ' '/^(Pre-)?Depends:/ { print $2 }' | sed 's/[,|]/\n/g' | awk '{ print $1 }'); do
			case $d in linux-modules-*) ;; linux-*"$abi"*) todo+=("$d") ;; esac
		done
	done
}

# ---------------------------------------------------------------- fetch

# fetch_kernel NAME: resolve the newest image, download and extract its
# /boot into $CACHE/kernels/PACKAGE_VERSION (kept between runs) and record
# it in $CACHE/NAME.current. Offline, or when the archive cannot be reached,
# the kernel fetched last time is used.
fetch_kernel() {
	local name=$1 arch src regex pkg ver dir t0 tmp p
	arch=$(matrix_field "$name" 1)
	src=$(matrix_field "$name" 2)
	regex=$(matrix_field "$name" 3)
	t0=$(now)
	if [ "$OFFLINE" = 1 ] || ! apt_update "$src" "$arch" || ! read -r pkg ver < <(newest "$src" "$arch" "$regex"); then
		[ -s "$CACHE/$name.current" ] || die "$name: cannot resolve $regex in $src/$arch and nothing is cached"
		log "[$name] archive not asked or not reachable: using the cached $(cat "$CACHE/$name.current")"
		return
	fi
	dir="$CACHE/kernels/${pkg}_$ver"
	if [ ! -s "$dir/vmlinuz" ]; then
		log "[$name] downloading $pkg $ver"
		tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
		# shellcheck disable=SC2046 # one word per package
		(cd "$tmp" && apt_private "$src" "$arch" apt-get -qq download $(image_packages "$src" "$arch" "$pkg"))
		mkdir -p "$tmp/x"
		for p in "$tmp"/*.deb; do dpkg-deb -x "$p" "$tmp/x"; done
		rm -rf "$dir" && mkdir -p "$dir"
		# /boot/vmlinuz-ABI, or /usr/lib/modules/ABI/vmlinuz in split packages.
		p=$(find "$tmp/x/boot" "$tmp/x/usr/lib/modules" \( -name 'vmlinuz-*' -o -name vmlinuz \) 2>/dev/null | head -n 1 || true)
		[ -n "$p" ] || die "$name: no vmlinuz in $(cd "$tmp" && echo ./*.deb)"
		cp "$p" "$dir/vmlinuz"
		p=$(find "$tmp/x/boot" "$tmp/x/usr/lib/modules" \( -name 'config-*' -o -name config \) 2>/dev/null | head -n 1 || true)
		if [ -n "$p" ]; then cp "$p" "$dir/config"; else log "[$name] no kernel config in the packages"; fi
		(cd "$tmp" && ls -- *.deb) >"$dir/debs"
		echo "$pkg $ver" >"$dir/package"
		rm -rf "$tmp"
		log "[$name] $pkg $ver fetched in $(since "$t0") s"
	else
		log "[$name] $pkg $ver cached"
	fi
	echo "$dir" >"$CACHE/$name.current"
}

# fetch_busybox ARCH: busybox-static of that arch, into $CACHE/busybox/ARCH.
fetch_busybox() {
	local arch=$1 out="$CACHE/busybox/$1" pkg ver tmp
	if [ "$OFFLINE" = 1 ] || ! apt_update "$BUSYBOX_SOURCE" "$arch" ||
		! read -r pkg ver < <(newest "$BUSYBOX_SOURCE" "$arch" '^busybox-static$'); then
		[ -x "$out/busybox" ] || die "cannot fetch busybox-static:$arch"
		return
	fi
	[ -x "$out/busybox" ] && [ "$(cat "$out/version" 2>/dev/null)" = "$ver" ] && return
	tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
	(cd "$tmp" && apt_private "$BUSYBOX_SOURCE" "$arch" apt-get -qq download "busybox-static=$ver")
	dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
	mkdir -p "$out"
	cp "$tmp/x/bin/busybox" "$out/busybox"
	echo "$ver" >"$out/version"
	rm -rf "$tmp"
	log "busybox-static:$arch $ver fetched"
}

cmd_fetch() {
	local n arches=()
	mkdir -p "$CACHE"
	for n in "$@"; do arches+=("$(matrix_field "$n" 1)"); done
	ensure_host_tools "${arches[@]}"
	for n in "$@"; do fetch_kernel "$n"; done
	while read -r n; do fetch_busybox "$n"; done < <(printf '%s\n' "${arches[@]}" | sort -u)
}

# ---------------------------------------------------------------- build

# build ARCH: the three static binaries into $RESULTS/build/ARCH. On failure
# writes the first error line to $RESULTS/build/ARCH.error and returns 1.
build() {
	local arch=$1 out="$RESULTS/build/$1" goarch ver t0 err
	goarch=$(goarch "$arch")
	command -v go >/dev/null || die "go not found (expected in /usr/local/go/bin)"
	mkdir -p "$out"
	rm -f "$RESULTS/build/$arch.error"
	ver=$(git -C "$SRC" describe --always --dirty 2>/dev/null || echo dev)
	t0=$(now)
	log "building kmemprof, bpf.test, kmemprof.test for linux/$goarch"
	if ! (cd "$SRC" && export CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" &&
		go build -ldflags "-X main.version=$ver" -o "$out/kmemprof" ./cmd/kmemprof &&
		go test -c -o "$out/bpf.test" ./bpf &&
		go test -c -o "$out/kmemprof.test" ./cmd/kmemprof) >"$out.log" 2>&1; then
		err=$(grep -v '^#' "$out.log" | head -n 1)
		echo "${err:-go build failed}" >"$RESULTS/build/$arch.error"
		log "linux/$goarch build failed ($out.log):"
		head -n 20 "$out.log" >&2
		return 1
	fi
	log "linux/$goarch built in $(since "$t0") s"
}

# initramfs ARCH BOOTONLY: the guest's root filesystem, an uncompressed cpio
# (nothing to decompress under emulation): busybox, init, the check list
# and, unless boot-only, the binaries and the packages' testdata.
initramfs() {
	local arch=$1 bootonly=$2 s out
	out="$RESULTS/initramfs-$arch.cpio"
	[ "$bootonly" = 1 ] && out="$RESULTS/initramfs-$arch-bootonly.cpio"
	s="$RESULTS/rootfs-$arch"
	rm -rf "$s"
	mkdir -p "$s"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,etc,src}
	cp "$CACHE/busybox/$arch/busybox" "$s/bin/busybox"
	ln -s busybox "$s/bin/sh" # init's interpreter; init links the other applets
	install -m 0755 "$HERE/init" "$s/init"
	install -m 0644 "$CHECKS" "$s/guest-checks.sh"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$s/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$s/etc/group"
	[ "$(id -u)" = 0 ] && mknod -m 600 "$s/dev/console" c 5 1 # else init reopens it
	if [ "$bootonly" = 1 ]; then
		touch "$s/boot-only"
	else
		cp "$RESULTS/build/$arch/kmemprof" "$RESULTS/build/$arch/bpf.test" "$RESULTS/build/$arch/kmemprof.test" "$s/"
		# Test binaries run in their package's directory, for testdata/.
		mkdir -p "$s/src/bpf" "$s/src/cmd/kmemprof"
		[ -d "$SRC/bpf/testdata" ] && cp -r "$SRC/bpf/testdata" "$s/src/bpf/"
		[ -d "$SRC/cmd/kmemprof/testdata" ] && cp -r "$SRC/cmd/kmemprof/testdata" "$s/src/cmd/kmemprof/"
	fi
	(cd "$s" && find . | cpio -o -H newc --quiet) >"$out"
	rm -rf "$s"
	echo "$out"
}

# ---------------------------------------------------------------- boot

# emulator_fault LOG: when the guest kernel's first oops shows a register
# state no x86-64 CPU can be in, print it. The processor pushes RFLAGS on an
# exception; bits 22-63 are reserved and always pushed as 0, bit 1 always as 1,
# and no instruction (POPF, IRET, SYSRET) can set or clear them. A frame that
# says otherwise was written by the emulator, not by the kernel or by kmemprof
# (evidence/README.md: two such panics on 6.12 under single-threaded TCG).
emulator_fault() {
	local first flags
	first=$(grep -a -n -m 1 -E '^\[ *[0-9]+\.[0-9]+\] .*(Oops|BUG:|WARNING:|Unrecoverable kprobe|Kernel panic)' "$1" | cut -d: -f1)
	[ -n "$first" ] || return 0
	# The first kernel-mode frame (stack segment 0018) after it.
	flags=$(tail -n "+$first" "$1" | grep -a -m 1 -o 'RSP: 0018:[0-9a-f]* EFLAGS: [0-9a-f]*' | sed 's/.*EFLAGS: //')
	[ -n "$flags" ] || return 0
	if [ "${#flags}" -gt 8 ] || (((16#$flags >> 22) != 0)) || (((16#$flags & 2) == 0)); then
		echo "EFLAGS $flags in a kernel-mode exception frame: reserved bits that no x86-64 CPU pushes"
	fi
}

# boot NAME INITRAMFS: boot_once, again (up to $EMULATOR_RETRIES times) when
# the guest died of an emulator fault (emulator_fault). Each such console log
# is kept as NAME.emulator-fault-N.log and named in NAME.meta and the summary:
# a retry is never silent.
boot() {
	local name=$1 initrd=$2 try=0 why status faults=""
	while :; do
		boot_once "$name" "$initrd"
		status=$(meta "$name" status)
		[ "$status" != DONE ] || [ -n "$(kernel_trouble "$RESULTS/$name.log")" ] || break
		[ "$(matrix_field "$name" 1)" = amd64 ] || break
		why=$(emulator_fault "$RESULTS/$name.log")
		[ -n "$why" ] && [ "$try" -lt "$EMULATOR_RETRIES" ] || break
		try=$((try + 1))
		mv "$RESULTS/$name.log" "$RESULTS/$name.emulator-fault-$try.log"
		faults+="${faults:+; }$name.emulator-fault-$try.log: $why (was: $status)"
		log "[$name] emulator fault ($why): booting again ($try of $EMULATOR_RETRIES)"
	done
	[ -z "$faults" ] || printf 'emulator_faults=%s\n' "$faults" >>"$RESULTS/$name.meta"
}

# boot_once NAME INITRAMFS: boot the kernel with the initramfs, serial console to
# $RESULTS/NAME.log, and write $RESULTS/NAME.meta. Progress lines go to
# stderr prefixed with [NAME].
boot_once() {
	local name=$1 initrd=$2 arch dir pkg ver qemu console raw log t0 rc status qpid disk
	arch=$(matrix_field "$name" 1)
	dir=$(cat "$CACHE/$name.current")
	read -r pkg ver <"$dir/package"
	raw="$RESULTS/$name.console"
	log="$RESULTS/$name.log"
	case $arch in
	amd64)
		qemu=(qemu-system-x86_64 -accel "$ACCEL" -cpu max)
		console=ttyS0
		;;
	arm64)
		qemu=(qemu-system-aarch64 -M virt -cpu "$ARM64_CPU" -accel "$ACCEL")
		console=ttyAMA0
		;;
	esac
	# A scratch disk for the guest's TMPDIR: tests need a file system whose
	# dentries and inodes can be dropped and reloaded, which tmpfs is not.
	# NVMe, because the cloud kernels have its driver built in, not virtio-blk's.
	disk="$RESULTS/$name.disk"
	rm -f "$disk" && truncate -s 4G "$disk"
	# shellcheck disable=SC2054 # qemu's option values have commas
	qemu+=(-smp "$SMP" -m "$MEM" -nographic -no-reboot -nic none
		-drive "file=$disk,if=none,id=scratch,format=raw" -device nvme,serial=kmemprof,drive=scratch
		-kernel "$dir/vmlinuz" -initrd "$initrd"
		-append "console=$console rdinit=/init panic=-1 oops=panic loglevel=5 random.trust_cpu=on $APPEND")
	{
		echo "KMEMPROF-HOST kernel=$name package=$pkg version=$ver arch=$arch"
		echo "KMEMPROF-HOST qemu: ${qemu[*]}"
		grep -E '^(# )?CONFIG_(DEBUG_INFO_BTF|KPROBES|KPROBE_EVENTS|FPROBE|FUNCTION_TRACER|DYNAMIC_FTRACE_WITH_DIRECT_CALLS|SLUB|SLAB|SLAB_MERGE_DEFAULT|MEMCG|RANDOMIZE_MEMORY|BPF_EVENTS|ARM64_PTR_AUTH_KERNEL)[ =]' \
			"$dir/config" 2>/dev/null | sed 's/^/KMEMPROF-HOST config: /'
	} >"$log"
	log "[$name] booting $pkg $ver"
	t0=$(now)
	: >"$raw" # before tail opens it
	timeout -k 10 "$TIMEOUT" "${qemu[@]}" </dev/null >"$raw" 2>&1 &
	qpid=$!
	echo "$qpid" >"$RESULTS/$name.pid"
	# Progress: the guest's marker lines, as they come.
	tail -n +1 -s 1 -f --pid="$qpid" "$raw" 2>/dev/null |
		sed -un "s/\r\$//; s/^.*\(KMEMPROF-\(GUEST\|CHECK\|DONE\)\)/[$name] \1/p" >&2 &
	rc=0
	wait "$qpid" || rc=$?
	wait || true # the tail pipeline
	# Without carriage returns and the firmware's terminal escapes.
	sed 's/\r$//; s/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' "$raw" >>"$log"
	rm -f "$raw" "$disk" "$RESULTS/$name.pid"
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		status=TIMEOUT
	elif grep -q 'KMEMPROF-DONE' "$log"; then
		status=DONE
	elif grep -q 'Kernel panic' "$log"; then
		status="PANIC: $(grep -a -m 1 -o 'Kernel panic.*' "$log" | tr '|' '/')"
	else
		status="NO-DONE (qemu exit $rc)"
	fi
	printf 'package=%s\nversion=%s\nwall=%s\nstatus=%s\n' "$pkg" "$ver" "$(since "$t0")" "$status" >"$RESULTS/$name.meta"
	log "[$name] $status after $(since "$t0") s: $log"
}

# On Ctrl-C or TERM: stop the guests still running. timeout(1) runs qemu in a
# process group of its own, which the terminal's signal does not reach;
# timeout passes the TERM on to qemu.
stop_guests() {
	local f
	for f in "$RESULTS"/*.pid; do
		[ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null
		rm -f "$f"
	done
	log "kernels.sh: interrupted"
	exit 130
}

cmd_run() {
	local n arch arches=() initrd built
	declare -A initrd_of=()
	mkdir -p "$RESULTS"
	for n in "$@"; do
		rm -f "$RESULTS/$n.meta" "$RESULTS/$n.log" "$RESULTS/$n".emulator-fault-*.log
		arches+=("$(matrix_field "$n" 1)")
		[ -s "$CACHE/$n.current" ] || fetch_kernel "$n"
	done
	ensure_host_tools "${arches[@]}"
	mkdir -p "$RESULTS/build"
	for arch in $(printf '%s\n' "${arches[@]}" | sort -u); do
		[ -x "$CACHE/busybox/$arch/busybox" ] || fetch_busybox "$arch"
		built=0
		rm -f "$RESULTS/build/$arch.error"
		if [ "$BOOT_ONLY" != 1 ] && build "$arch"; then built=1; fi
		if [ "$built" = 1 ]; then
			initrd_of[$arch]=$(initramfs "$arch" 0)
		else
			# Not built (or boot-only): still prove the boot path.
			initrd_of[$arch]=$(initramfs "$arch" 1)
		fi
	done
	log "booting $* ($JOBS at a time, ${TIMEOUT}s each at most)"
	trap stop_guests INT TERM
	for n in "$@"; do
		while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
		arch=$(matrix_field "$n" 1)
		initrd=${initrd_of[$arch]}
		boot "$n" "$initrd" &
	done
	wait
	summary "$@"
}

# ---------------------------------------------------------------- report

# check_line LOG NAME: "KMEMPROF-CHECK NAME STATUS SECONDS [why]" from the log.
check_line() {
	awk -v c="$2" '{ i = index($0, "KMEMPROF-CHECK " c " ") } i { print substr($0, i); exit }' "$1"
}
# check_output LOG NAME: what the check printed, between its BEGIN and CHECK lines.
check_output() {
	awk -v c="$2" 'index($0, "KMEMPROF-CHECK " c " ") { exit } on; $0 == "KMEMPROF-BEGIN " c { on = 1 }' "$1"
}
meta() { sed -n "s/^$2=//p" "$RESULTS/$1.meta" 2>/dev/null; }
# kernel_trouble LOG: the kernel's own lines reporting an oops, a BUG, a
# WARNING or a broken kprobe.
kernel_trouble() {
	grep -a -E '^\[ *[0-9]+\.[0-9]+\] .*(Oops|BUG:|WARNING:|Unrecoverable kprobe|Kernel panic)' "$1" 2>/dev/null || true
}

# summary NAME...: the table, then why each failure failed; sets STATUS.
summary() {
	local n c log status row uname boot done_at err arch cell faults checks=()
	STATUS=0
	for n in "$@"; do # the columns: every check seen, in order
		[ -f "$RESULTS/$n.log" ] || continue
		while read -r c; do
			case " ${checks[*]} " in *" $c "*) ;; *) checks+=("$c") ;; esac
		done < <(grep -a -o 'KMEMPROF-CHECK [^ ]*' "$RESULTS/$n.log" | cut -d' ' -f2 || true)
	done
	echo
	echo "## kmemprof kernel matrix ($(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo
	row="| kernel | uname -r | package | status | boot s | run s | wall s |"
	for c in "${checks[@]}"; do row+=" $c |"; done
	echo "$row"
	echo "${row//[^|]/-}"
	for n in "$@"; do
		log="$RESULTS/$n.log"
		arch=$(matrix_field "$n" 1)
		if [ ! -f "$RESULTS/$n.meta" ]; then
			echo "| $n | | | not run |"
			STATUS=1
			continue
		fi
		status=$(meta "$n" status)
		err=$(cat "$RESULTS/build/$arch.error" 2>/dev/null || true)
		[ -n "$err" ] && status="not built: $err (boot-only: $status)"
		# Any oops, BUG or WARNING the guest's kernel printed fails the
		# kernel, whatever the checks' exit codes.
		if [ "$status" = DONE ] && [ -n "$(kernel_trouble "$log")" ]; then
			status="KERNEL TROUBLE: $(kernel_trouble "$log" | head -n 1 | cut -c1-120 | tr '|' '/')"
		fi
		[ "$status" = DONE ] || STATUS=1
		uname=$(sed -n 's/^KMEMPROF-GUEST uname=\([^ ]*\).*/\1/p' "$log" | head -n 1)
		boot=$(sed -n 's/^KMEMPROF-GUEST .*uptime=\([^ ]*\).*/\1/p' "$log" | head -n 1)
		done_at=$(sed -n 's/^.*KMEMPROF-DONE uptime=\([^ ]*\).*/\1/p' "$log" | head -n 1)
		faults=$(meta "$n" emulator_faults)
		[ -z "$faults" ] || status+=" (booted again after $(($(grep -o 'emulator-fault-' <<<"$faults" | wc -l))) emulator fault(s))"
		row="| $n | ${uname:-?} | $(meta "$n" package) $(meta "$n" version) | $status | ${boot:-–} |"
		if [ -n "$done_at" ] && [ -n "$boot" ]; then
			row+=" $(awk -v a="$boot" -v b="$done_at" 'BEGIN { printf "%.0f", b - a }') |"
		else
			row+=" – |"
		fi
		row+=" $(meta "$n" wall) |"
		for c in "${checks[@]}"; do
			cell=$(check_line "$log" "$c" | awk '{ printf "%s %.0fs", $3, $4 }')
			row+=" ${cell:-–} |"
		done
		echo "$row"
	done
	# Why: each failing check's output (its tail), each unfinished kernel's log.
	for n in "$@"; do
		log="$RESULTS/$n.log"
		arch=$(matrix_field "$n" 1)
		if [ -s "$RESULTS/build/$arch.error" ]; then
			echo
			echo "### $n: not built (log: $RESULTS/build/$arch.log)"
			echo '```'
			head -n 20 "$RESULTS/build/$arch.log"
			echo '```'
		fi
		[ -f "$log" ] || continue
		for c in $(grep -a -o 'KMEMPROF-CHECK [^ ]* FAIL' "$log" | cut -d' ' -f2 || true); do
			STATUS=1
			echo
			echo "### $n: $(check_line "$log" "$c" | cut -d' ' -f2-) (log: $log)"
			echo '```'
			check_output "$log" "$c" | tail -n 40
			echo '```'
		done
		status=$(meta "$n" status)
		faults=$(meta "$n" emulator_faults)
		if [ -n "$faults" ]; then
			echo
			echo "### $n: the guest died of an emulator fault, and was booted again:"
			echo '```'
			tr ';' '\n' <<<"$faults" | sed 's/^ *//; s|^|'"$RESULTS"'/|'
			echo '```'
		fi
		if [ -n "$(kernel_trouble "$log")" ]; then
			echo
			echo "### $n: the guest's kernel logged (log: $log):"
			echo '```'
			kernel_trouble "$log" | head -n 20
			echo '```'
		fi
		if [ "$status" != DONE ]; then
			echo
			echo "### $n: $status (log: $log), its last lines:"
			echo '```'
			tail -n 30 "$log"
			echo '```'
		fi
	done
}
STATUS=0

# ---------------------------------------------------------------- main

main() {
	local cmd=all
	case ${1:-} in
	all | fetch | run | boot | summary | list) cmd=$1; shift ;;
	-h | --help | help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; return ;;
	esac
	local names=("$@")
	[ $# -gt 0 ] || read -r -a names <<<"${KERNELS:-$(all_names)}"
	for n in "${names[@]}"; do matrix_field "$n" 0 >/dev/null; done
	case $cmd in
	list) all_names; echo ;;
	fetch) cmd_fetch "${names[@]}" ;;
	run) cmd_run "${names[@]}" ;;
	boot) BOOT_ONLY=1 cmd_run "${names[@]}" ;;
	summary) summary "${names[@]}" ;;
	all)
		t0=$(now)
		cmd_fetch "${names[@]}"
		log "fetched in $(since "$t0") s"
		cmd_run "${names[@]}"
		;;
	esac
	exit "$STATUS"
}

# Sourced (retry_test.sh), only the functions.
[ "${BASH_SOURCE[0]}" != "$0" ] || main "$@"

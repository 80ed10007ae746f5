# A check list for kernels.sh (KMEMPROF_GUEST_CHECKS): TestRecordGrowthFileStorm
# ten times in one guest, the test during which 6.12.118 panicked once
# (README.md here). Run two or more at once, each with its own results
# directory, to load the host as it was then:
#   KMEMPROF_KERNEL_RESULTS=/tmp/kk-a KMEMPROF_KERNEL_OFFLINE=1 \
#     KMEMPROF_GUEST_CHECKS=$PWD/.ci/kernels/evidence/storm-loop-checks.sh \
#     bash .ci/kernels/kernels.sh run 6.12 &
#   (the same with /tmp/kk-b)
# shellcheck shell=sh
for i in 1 2 3 4 5 6 7 8 9 10; do
	check -C /src/cmd/kmemprof storm-$i 400 /kmemprof.test -test.v -test.run 'TestRecordGrowthFileStorm' -test.timeout 6m
done

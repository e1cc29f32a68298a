#!/usr/bin/env bash
# Builds in Release and runs every benchmark, printing tables of ratios
# measured side by side in one run (docs/benchmarks.md explains them).
# usage: scripts/bench.sh [BUILD_DIR]   (default: build-bench)
# Set QSYNC_BENCH_REPS (default 3) for more repetitions.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build-bench}
reps=${QSYNC_BENCH_REPS:-3}

"$here/scripts/setup.sh"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null

echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "QEMU: $(qemu-system-x86_64 --version | head -n 1)"
# Other work on the machine skews everything, cross-core figures most.
echo "Load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$build/bin/bench-floor" 50000 "$reps"
echo
"$build/bin/bench-roundtrip" "$build/bin/fake-qemu" 20000 "$reps"
echo
"$build/bin/bench-qemu" "$build/tests/guest/qsync-guest.elf" "$build/guests/linux-amd64" "$reps"
echo
echo "Load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"

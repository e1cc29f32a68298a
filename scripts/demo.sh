#!/usr/bin/env bash
# Installs what is missing, builds, and steps the project's own guest in
# lockstep with qsync-step, printing each run's summary.
# usage: scripts/demo.sh [BUILD_DIR]   (default: build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}

"$here/scripts/setup.sh"
cmake -S "$here" -B "$build" >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null

step=$build/bin/qsync-step
guest=$build/tests/guest/qsync-guest.elf
qemu_args=(qemu-system-x86_64 -M pc -nodefaults -display none -serial stdio -no-reboot
           -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$guest")

echo "== The guest reads its own clocks (HPET, TSC) while QEMU is granted 100 us at a time"
"$step" --quantum 100us --json - -- "${qemu_args[@]}" -append "time 10" || true
echo
echo "== 5 ms of a compute loop in exact 10 us quanta (500 stops, none overshoots)"
"$step" --quantum 10us --until 5ms --json - -- "${qemu_args[@]}" -append "compute 100000000" \
    | grep -v '^qsync-guest'

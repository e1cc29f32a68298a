/*
 * The end of a run, stamped where the guest asked for it.
 *
 * A guest's power-off (ACPI, PSCI, isa-debug-exit on QEMU 10) is a
 * shutdown request: the device sets QEMU's request flag in the vCPU
 * thread and the guest runs on until QEMU's main loop notices it and
 * pauses the vCPUs, a host-dependent while later. Counted to QEMU's exit,
 * the totals differed from run to run, and a deadline the guest reached
 * in that while was reported in one run and not in the next.
 *
 * So, where QEMU exports what it takes (shutdown.c lists it): the plugin
 * checks QEMU's request flag at the start of the blocks that follow an
 * instruction able to make the request (every block where it knows none
 * or QEMU lacks conditional callbacks; shutdown.c), stamps the
 * virtual time and instruction count at the request (what ran after it
 * taken off), sends no REPORT for a stop that comes after it, and EXIT
 * carries the stamp. The check is exact, not merely likely: see
 * shutdown.c for why QEMU's main loop cannot take the flag unseen.
 */
#ifndef QSYNC_PLUGIN_SHUTDOWN_H
#define QSYNC_PLUGIN_SHUTDOWN_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "qemu_abi.h"

/*
 * Looks QEMU's functions up and registers the notifiers, for an engine
 * whose sample() gives the stamp. Does nothing (and the end is counted at
 * QEMU's exit, as before) when QEMU's internals are missing, when this
 * QEMU lacks the functions, or under the test hook
 * QSYNC_PLUGIN_NO_EXIT_STAMP=1. Install thread, after the internals'
 * probe.
 */
void qsync__shutdown_setup(const struct qsync__engine *engine, unsigned shift,
                           const qemu_info_t *info);

/* Instruments a freshly translated block: a check at its start, taken
 * only after a port write or PSCI call where this QEMU and target allow
 * (shutdown.c), and a mark on each such instruction. Does nothing when
 * setup found nothing. vCPU thread, at translation time. */
void qsync__shutdown_instrument_tb(struct qemu_plugin_tb *tb);

/*
 * At a stop: whether a shutdown was requested before it. If so, the stamp
 * is taken (if it was not already), and the stop must report nothing and
 * return: QEMU's main loop is about to pause the vCPUs, and it needs the
 * big lock that a timer stop holds. The thread in a stop.
 */
bool qsync__shutdown_at_stop(void);

/*
 * At QEMU's exit: fills out (virtual_ns, instructions, as the engine's
 * sample does) with the stamp at the shutdown request, or with the
 * engine's sample when no request was seen (QEMU 7.2's isa-debug-exit
 * calls exit() itself; a QEMU without the functions).
 */
void qsync__shutdown_exit_sample(uint64_t deadline_ns, struct qsync__wire_report *out);

#endif

/*
 * Seeing the guest go idle. Under -icount QEMU never calls the plugin
 * API's vCPU idle/resume callbacks, so the plugin finds the guest's
 * halting instructions (x86 hlt, Arm wfi, ...) at translation time and
 * puts a callback on each. The callback runs in the vCPU thread right
 * before the instruction executes, without the big lock; TCG ends a
 * block after a halting instruction, so it is always its block's last.
 */
#ifndef QSYNC_PLUGIN_HALT_H
#define QSYNC_PLUGIN_HALT_H

#include <stdbool.h>

#include "qemu_abi.h"

/*
 * Picks the matcher for info->target_name and the right form of
 * qemu_plugin_insn_data for this QEMU's plugin API. Returns false (and
 * nothing will ever match) if the target has no known halting
 * instruction; the caller then cannot promise idle detection. Install
 * thread.
 */
bool qsync__halt_setup(const qemu_info_t *info);

/* Whether insn is a halting instruction. Translation time, any vCPU
 * thread. */
bool qsync__halt_match(const struct qemu_plugin_insn *insn);

/*
 * The instructions through which a guest of this target asks QEMU to
 * power off or reset (x86 port writes, Arm PSCI calls; shutdown.c). Under
 * -icount each ends its block. Whether the target has such a matcher
 * (setup done); whether insn is one. Translation time, any vCPU thread.
 */
bool qsync__request_insns_known(void);
bool qsync__request_match(const struct qemu_plugin_insn *insn);

#endif

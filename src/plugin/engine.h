/*
 * An engine is the part of the plugin that makes the guest stop at a
 * deadline. The personality (personality.h) does the talking; an engine only
 * instruments the guest, says where it is, and arms the next deadline.
 *
 * Engines: timer (QEMU's own virtual-clock timer; needs QEMU internals),
 * insn (a conditional callback on every instruction; exact in
 * instructions) and block (per-block counting, for QEMU 7.2). Each lives
 * in engine_<name>.c and exports one const struct qsync__engine.
 *
 * The last two members were added after the first three engines were
 * specified; both are optional, so an engine that leaves them NULL keeps
 * the original behaviour.
 */
#ifndef QSYNC_PLUGIN_ENGINE_H
#define QSYNC_PLUGIN_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "options.h"
#include "qemu_abi.h"
#include "wire.h"

struct qsync__engine {
    const char *name;    /* as in engine=NAME                          */
    uint8_t wire_id;     /* QSYNC__WIRE_ENGINE_*, carried in HELLO      */
    uint32_t guarantees; /* QSYNC__WIRE_G_*, carried in HELLO           */

    /*
     * Prepares the engine's state, in a QEMU that usable (below) has
     * accepted: plugin.c asks it first. Returns 0, or -1 after printing a
     * message. Called once from qemu_plugin_install (QEMU's main thread,
     * no vCPU exists yet); info is valid only during the call.
     */
    int (*install)(qemu_plugin_id_t id, const qemu_info_t *info,
                   const struct qsync__options *opt);

    /* Instruments a freshly translated block, or NULL if the engine needs
     * no instrumentation. vCPU thread, at translation time. */
    void (*translate)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

    /*
     * Fills where the guest is now: virtual_ns, instructions, overshoot
     * (instructions past deadline_ns; 0 when exact), flags, n_vcpus and
     * vcpu_insns. Leaves seq and deadline_ns alone. Called at a stop (in
     * the stopped vCPU's thread) and at exit.
     */
    void (*sample)(uint64_t deadline_ns, struct qsync__wire_report *out);

    /*
     * Lets the guest run until deadline_ns, which the channel has checked
     * is not behind the guest. Returns 1 if the guest is already there
     * (nothing may run: the channel reports at once and waits again), 0
     * once armed. Called at a stop, in the stopped vCPU's thread.
     */
    int (*arm)(unsigned int vcpu_index, uint64_t deadline_ns);

    /*
     * Optional (NULL: always usable). Says, without printing, whether this QEMU can run the engine: API
     * version, internals, vCPU count. If not, writes the reason to why
     * (a phrase that fits "engine=NAME cannot run here: WHY"). engine=auto
     * tries the engines in order of preference with it. Install thread,
     * before install; info is valid only during the call.
     */
    bool (*usable)(const qemu_info_t *info, const struct qsync__options *opt, char *why,
                   size_t why_len);

    /*
     * Optional (NULL: the guarantees member). The QSYNC__WIRE_G_* bits this
     * engine can keep in this QEMU, when they depend on what install found
     * (e.g. the insn engine is never ahead when idle only with QEMU's
     * internals). Called after a successful install, for HELLO.
     */
    uint32_t (*actual_guarantees)(void);
};

extern const struct qsync__engine qsync__engine_insn;
extern const struct qsync__engine qsync__engine_timer;
extern const struct qsync__engine qsync__engine_block;

#endif

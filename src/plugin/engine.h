/*
 * An engine is the part of the plugin that makes the guest stop at a
 * deadline. The channel (channel.h) does the talking; an engine only
 * instruments the guest, says where it is, and arms the next deadline.
 *
 * Engines today: insn (a conditional callback on every instruction; exact
 * in instructions). Later: timer (QEMU's own virtual-clock timer) and block
 * (per-block counting, for QEMU 7.2). Each lives in engine_<name>.c and
 * exports one const struct qsync__engine.
 */
#ifndef QSYNC_PLUGIN_ENGINE_H
#define QSYNC_PLUGIN_ENGINE_H

#include <stdint.h>

#include "options.h"
#include "qemu_abi.h"
#include "wire.h"

struct qsync__engine {
    const char *name;    /* as in engine=NAME                          */
    uint8_t wire_id;     /* QSYNC_WIRE_ENGINE_*, carried in HELLO      */
    uint32_t guarantees; /* QSYNC_WIRE_G_*, carried in HELLO           */

    /*
     * Checks that this QEMU can run the engine (API version, functions,
     * vCPU count) and prepares its state. Returns 0, or -1 after printing
     * a message. Called once from qemu_plugin_install (QEMU's main thread,
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
    void (*sample)(uint64_t deadline_ns, struct qsync_wire_report *out);

    /*
     * Lets the guest run until deadline_ns, which the channel has checked
     * is not behind the guest. Returns 1 if the guest is already there
     * (nothing may run: the channel reports at once and waits again), 0
     * once armed. Called at a stop, in the stopped vCPU's thread.
     */
    int (*arm)(unsigned int vcpu_index, uint64_t deadline_ns);
};

extern const struct qsync__engine qsync__engine_insn;

#endif

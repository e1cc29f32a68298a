/*
 * The block engine: stops at block boundaries, with nothing but the plugin
 * API. It is the only engine QEMU 7.2's plugin API (version 1) allows on
 * its own, and the last resort everywhere else.
 *
 * The stop rule: at the start of every block, before it runs, if the
 * instructions started so far (all vCPUs) have reached the target
 * (deadline_ns >> shift), stop there. A stop therefore lands on the first
 * block boundary at or after the target, and its overshoot is 0 to (length
 * of the block before it - 1) instructions. It is measured and reported at
 * every stop (REPORT.overshoot, with R_DEVIATION when it is not 0), never
 * hidden. The count starts at 0 with a target of 0, so the first block
 * stops and waits for the first grant.
 *
 * The count decides how true that overshoot is. Counting whole blocks at
 * their start over-counts every block that exits early, and when QEMU then
 * runs the rest of it as a new block, that part is counted twice. Under
 * -icount QEMU ends a block early at an I/O access that is not its last
 * instruction, and at every fault. The error only grows: against QEMU's own
 * icount (10.0.2, the project's guest) +54 instructions over a compute run,
 * +981 over 10 ms of HPET reads and serial output. So wherever it is safe,
 * the engine counts each instruction with an inline add, as the insn engine
 * does, and then matches QEMU's icount exactly (checked at every stop on
 * 10.0.2, at exit on 7.2); a faulting instruction would be counted each
 * time it starts. Three modes, chosen at install:
 *
 *   insn-count, conditional (plugin API >= 3, QEMU 9.1+, -smp 1): one
 *     per-vCPU scoreboard slot c = executed - target (mod 2^64). Each block
 *     gets a conditional callback "c < 2^63" (that is, executed >= target),
 *     then each instruction an inline add of 1 to c. QEMU runs a block's
 *     ops before its first instruction's, so the condition sees exactly the
 *     instructions started before this block, and blocks that do not stop
 *     call no helper at all.
 *   insn-count, callback (plugin API 1, QEMU up to 8.2, any -smp): each
 *     instruction an inline add of 1 to a global counter (API 1 inline ops
 *     take a plain pointer), each block an exec callback that checks it.
 *     QEMU 7.2 runs a block's exec callbacks before its instructions'
 *     inline ops (and before its own inline ops, whatever the registration
 *     order), so the check sees the same count.
 *   block-count, callback (plugin API >= 2 with -smp > 1): the exec
 *     callback adds the block's length itself, with the drift above. Per-
 *     instruction inline adds on a scoreboard with -smp 2 and single-
 *     threaded TCG crash QEMU 10.0.2 (docs/qemu-internals.md), and API 2
 *     dropped inline ops on a plain pointer, so nothing better is safe here.
 *
 * The engine claims no guarantee in HELLO: not EXACT (block boundaries),
 * not NEVER_AHEAD_IDLE (an idle warp moves QEMU's clock with no block run),
 * not VCLOCK (virtual_ns is instructions << shift, our count, which stays
 * behind QEMU's clock by every idle warp). It never sets R_IDLE: it does
 * not see halts.
 *
 * Threads: the callbacks, the inline ops and the stop run in the vCPU
 * thread. Under -icount every vCPU runs in that one thread, round-robin,
 * so the counters need no atomics and -smp N works in the callback modes.
 * sample() also runs from the atexit callback, in whichever thread exits.
 * Only the stopped vCPU's thread calls arm().
 */
#include "engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime.h"
#include "log.h"
#include "qemu_api.h"
#include "vcpu_count.h"

/* Every API function this engine uses beyond API 1's common core comes
 * from the run-time table (qemu_api.h): one plugin must load on QEMU 7.2
 * and on 10.0. */
static enum { MODE_COND, MODE_INSN_CB, MODE_BLOCK_CB } mode;
static const char *const mode_name[] = {"insn-count conditional", "insn-count callback",
                                        "block-count callback"};

/* "c < 2^63": c = executed - target, read as a signed number, is >= 0. */
#define REACHED_BELOW (UINT64_C(1) << 63)

static unsigned shift;
static uint32_t n_vcpus;
static uint64_t target; /* instructions; 0 until the first grant */

/* MODE_COND: vCPU 0's c = executed - target. */
static qemu_plugin_u64 slot;

/* The callback modes count with vcpu_count.h: MODE_INSN_CB is its
 * INLINE mode, MODE_BLOCK_CB its BLOCKS mode. */

/* Tries MODE_COND; returns 0 when every piece is there. */
static int setup_cond(const qemu_info_t *info)
{
    if (info->version.cur < 3 || info->system.smp_vcpus != 1 || info->system.max_vcpus > 1)
        return -1;
    if (!qsync__qemu_api.tb_cond_cb || !qsync__qemu_api.insn_inline_vcpu || !qsync__qemu_api.num_vcpus || !qsync__qemu_api.scoreboard_new ||
        !qsync__qemu_api.u64_get || !qsync__qemu_api.u64_set)
        return -1;
    /* Never freed: translated code writes to it until the process ends.
     * A new row is 0 (executed 0, target 0), so the first block stops. */
    struct qemu_plugin_scoreboard *board = qsync__qemu_api.scoreboard_new(sizeof(uint64_t));
    if (board == NULL)
        return -1;
    slot = (qemu_plugin_u64){board, 0};
    return 0;
}

/* Every mode falls back on the exec callback, so it alone decides. */
static bool block_usable(const qemu_info_t *info, const struct qsync__options *opt, char *why,
                         size_t len)
{
    (void)opt;
    if (info->system.max_vcpus > (int)QSYNC__WIRE_MAX_VCPUS) {
        snprintf(why, len, "it supports at most %u vCPUs (QEMU runs with maxcpus=%d)",
                 QSYNC__WIRE_MAX_VCPUS, info->system.max_vcpus);
        return false;
    }
    if (qsync__qemu_api.tb_exec_cb == NULL) {
        snprintf(why, len, "this QEMU does not export qemu_plugin_register_vcpu_tb_exec_cb");
        return false;
    }
    return true;
}

static int block_install(qemu_plugin_id_t id, const qemu_info_t *info,
                         const struct qsync__options *opt)
{
    (void)id; /* plugin.c has asked block_usable */
    shift = opt->shift;
    n_vcpus = (uint32_t)info->system.smp_vcpus;
    if (setup_cond(info) == 0) {
        mode = MODE_COND;
    } else if (info->version.cur < 2 && qsync__qemu_api.insn_inline_ptr != NULL) {
        mode = MODE_INSN_CB;
        qsync__count_init(QSYNC__COUNT_INLINE);
    } else {
        mode = MODE_BLOCK_CB; /* block_usable saw the exec callback */
        qsync__count_init(QSYNC__COUNT_BLOCKS);
    }
    /* One line, so a user can tell from QEMU's stderr how exact the
     * reports are (qemu_plugin_outs would need -d plugin). */
    qsync__log("engine=block counts with %s (plugin API %d, -smp %d)", mode_name[mode],
               info->version.cur, info->system.smp_vcpus);
    return 0;
}

/* MODE_INSN_CB and MODE_BLOCK_CB: the start of every block; udata is its
 * length. */
static void on_block(unsigned int vcpu_index, void *udata)
{
    uint64_t len = (uint64_t)(uintptr_t)udata;

    qsync__count_block_start(vcpu_index);
    if (qsync__count_total() >= target)
        qsync__runtime_stop(vcpu_index); /* arms a new target, or never returns */
    qsync__count_block_len(vcpu_index, len);
}

/* MODE_COND: the condition held at the start of a block. */
static void on_reached(unsigned int vcpu_index, void *udata)
{
    (void)udata;
    qsync__runtime_stop(vcpu_index);
}

static void block_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t len = qemu_plugin_tb_n_insns(tb);
    (void)id;
    if (len == 0)
        return;
    switch (mode) {
    case MODE_COND:
        qsync__qemu_api.tb_cond_cb(tb, on_reached, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_COND_LT, slot,
                       REACHED_BELOW, NULL);
        for (size_t i = 0; i < len; i++)
            qsync__qemu_api.insn_inline_vcpu(qemu_plugin_tb_get_insn(tb, i), QEMU_PLUGIN_INLINE_ADD_U64,
                                 slot, 1);
        break;
    case MODE_INSN_CB:
    case MODE_BLOCK_CB:
        qsync__count_instrument(tb, on_block);
        break;
    }
}

/* Instructions started so far, all vCPUs. */
static uint64_t counted(void)
{
    if (mode != MODE_COND)
        return qsync__count_total();
    /* The scoreboard has rows only for the vCPUs created so far. */
    if (qsync__qemu_api.num_vcpus() < 1)
        return 0;
    return qsync__qemu_api.u64_get(slot, 0) + target;
}

static void block_sample(uint64_t deadline_ns, struct qsync__wire_report *out)
{
    uint64_t now = counted();

    out->virtual_ns = now << shift;
    out->instructions = now;
    out->overshoot = (int64_t)(now - (deadline_ns >> shift));
    /* With shift > 0 an exact stop still falls short of a deadline that is
     * not a multiple of 2^shift ns; that is a deviation too. */
    out->flags = (out->overshoot != 0 || out->virtual_ns != deadline_ns) ? QSYNC__WIRE_R_DEVIATION : 0;
    out->n_vcpus = n_vcpus;
    if (mode != MODE_COND) {
        (void)qsync__count_vcpus(out->vcpu_insns, n_vcpus);
        return;
    }
    for (uint32_t i = 0; i < n_vcpus; i++)
        out->vcpu_insns[i] = i == 0 ? now : 0;
}

static int block_arm(unsigned int vcpu_index, uint64_t deadline_ns)
{
    /* Rounded down, like the other engines: deadlines are absolute, so the
     * rounding never accumulates. */
    uint64_t want = deadline_ns >> shift;
    uint64_t now = counted();

    if (want <= now)
        return 1; /* at or past it already: nothing may run */
    if (mode == MODE_COND) {
        uint64_t ahead = want - now;
        /* The condition reads c as signed; a target more than 2^63
         * instructions away (centuries) is brought just inside. */
        if (ahead > (uint64_t)INT64_MAX)
            ahead = (uint64_t)INT64_MAX;
        qsync__qemu_api.u64_set(slot, vcpu_index, (uint64_t)0 - ahead); /* executed - target */
        target = now + ahead;
        return 0;
    }
    target = want;
    return 0;
}

const struct qsync__engine qsync__engine_block = {
    .name = "block",
    .wire_id = QSYNC__WIRE_ENGINE_BLOCK,
    .guarantees = 0, /* bounded: see the top comment */
    .install = block_install,
    .usable = block_usable,
    .translate = block_translate,
    .sample = block_sample,
    .arm = block_arm,
};

/*
 * The timer engine: the guest stops on QEMU's own virtual-clock timer
 * (stop_timer.h), armed at each deadline. It needs QEMU's internals
 * (qemu_internals.h), and no per-instruction work in the common case.
 *
 * Guarantees: EXACT, NEVER_AHEAD_IDLE, VCLOCK.
 * - The stop is in the timer callback, in the vCPU thread with the big
 *   lock held, outside guest execution: no instruction runs past the
 *   deadline and the idle warp cannot jump past it. virtual_ns is QEMU's
 *   QEMU_CLOCK_VIRTUAL there.
 * - With shift=N > 0 a stop lands on D when the guest idles into it,
 *   otherwise on the last instruction boundary before D (less than 2^N ns
 *   short); see stop_timer.h. REPORT then carries R_DEVIATION and a
 *   virtual_ns below the deadline.
 *
 * Instructions:
 * - -smp 1: QEMU's own count (icount_get_raw), read at the stop: free and
 *   exact, and it is the count QEMU's clock is made of.
 * - -smp > 1: the plugin counts each vCPU's instructions itself, and the
 *   total is their sum. QEMU's icount is no use here: with several vCPUs
 *   it counts more than the instructions executed (measured on 10.0.2 at
 *   -smp 2, all during the firmware's start-up of the other vCPUs: 35,274
 *   more at 100 us quanta, 4.8 M at 10 ms, 13.5 M free-running; likely
 *   cause: the INIT that resets a vCPU inside its own execution slice
 *   zeroes its icount decrementer, so the rest of the slice's budget
 *   counts as executed; QEMU 7.2 does the same: 76,998 more at -smp 2
 *   and 176,998 at -smp 4, at 100 us quanta). So QEMU's clock, not the
 *   instruction sum, is the time, and it depends on where timers cut the
 *   slices. Two ways to count, by plugin API:
 *   INLINE (vcpu_count.h; API 1, QEMU up to 8.2): API 1 has no per-vCPU inline
 *     op, only an add to a plain pointer, and translated blocks are
 *     shared by the vCPUs. So, as the block engine does: every
 *     instruction adds 1 to one global counter, and every block gets an
 *     exec callback that hands what ran since the previous block start to
 *     that block's vCPU (under -icount all vCPUs take turns in one thread
 *     and switch only between blocks; 7.2 runs a block's exec callbacks
 *     before its instructions' inline ops). The global adds did not crash
 *     7.2 at -smp 2 or 4. The callback is a helper call per block, yet
 *     it cost only 1-3% on 7.2 (5*10^8 instructions of the compute
 *     guest's 2-instruction loop, one callback per 2 instructions: 1.11 s
 *     without it, 1.12-1.15 s with it, at 100 ms quanta; at 100 us
 *     quanta, pinned, -smp 2 ran in the same time as -smp 1).
 *   BLOCKS (vcpu_count.h; API 2+, QEMU 10): an exec callback per block adds the
 *     block's length to its vCPU. Counting per instruction into per-vCPU
 *     scoreboards was tried and dropped: QEMU 10.0.2 crashes (SIGSEGV in
 *     generated code) with per-instruction per-vCPU inline ops at -smp 2
 *     under single-threaded TCG, and with a never-firing conditional
 *     callback on each instruction to avoid that, Linux faulted on garbage
 *     during start-up (while -icount alone and block callbacks booted it).
 *     So QEMU 10 counts whole blocks: a block that leaves early (I/O not
 *     at its end, a fault) is counted whole. The counts stay
 *     deterministic; they are not QEMU's icount.
 *   Counting per instruction counts an instruction that faults each time
 *   it starts; the project's guests do not fault.
 *
 * Idle: a quantum is idle (R_IDLE) if a halting instruction (halt.h) runs
 * during it, or if QEMU's clock warped during it (the guest sat halted:
 * QEMU's clock minus its instruction count, its "bias", moved). Both are
 * facts of the guest's execution, so the flag is as repeatable as the
 * stop itself; QEMU's all_cpu_threads_idle() is not (work the main loop
 * queues on a vCPU makes it false for a moment). The halting
 * instruction's callback also folds the vCPU's pending instructions into
 * QEMU's count before the vCPU halts, which removes QEMU's idle race; see
 * on_halt.
 */
#include "engine.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "runtime.h"
#include "halt.h"
#include "log.h"
#include "qemu_internals.h"
#include "qemu_api.h"
#include "stop_timer.h"
#include "vcpu_count.h"

static unsigned shift;
static uint32_t n_vcpus;
/* How instructions are counted (see the top comment): by QEMU's icount
 * (QSYNC__COUNT_NONE), or per vCPU by vcpu_count.h. */
static enum qsync__count_mode count_mode;
static bool sync_at_halt; /* the idle race fix is on */

static atomic_bool idle_seen;
static int64_t quantum_bias; /* QEMU's clock bias when the quantum began */

/* Last values read at a stop, for an exit that happens mid-block. */
static uint64_t last_virtual_ns;
static uint64_t last_instructions;

static bool timer_usable(const qemu_info_t *info, const struct qsync__options *opt,
                         char *why, size_t len)
{
    const char *missing = NULL;
    unsigned qemu_shift = QSYNC_SHIFT_UNKNOWN;
    (void)opt;

    if (!qsync__qemu_internals_found()) {
        (void)qsync__qemu_internals_probe(&missing);
        if (missing != NULL) {
            snprintf(why, len, "it needs QEMU's internal timer functions, which this QEMU "
                               "does not export (%s); use engine=insn or engine=auto",
                     missing);
            return false;
        }
    }
    if (qsync__probe_icount(&qemu_shift) != QSYNC_ICOUNT_FIXED) {
        snprintf(why, len, "it needs -icount shift=N,sleep=off");
        return false;
    }
    if (info->system.smp_vcpus > 1 || info->system.max_vcpus > 1) {
        if (info->system.max_vcpus > (int)QSYNC__WIRE_MAX_VCPUS) {
            snprintf(why, len, "it supports at most %u vCPUs (QEMU runs with maxcpus=%d)",
                     QSYNC__WIRE_MAX_VCPUS, info->system.max_vcpus);
            return false;
        }
        if (qsync__count_mode_for(info) == QSYNC__COUNT_NONE) {
            snprintf(why, len, "-smp %d needs per-vCPU counters (plugin API 1, QEMU up to "
                               "8.2, or API %d, QEMU 9.1 or later); this QEMU speaks "
                               "version %d",
                     info->system.smp_vcpus, QSYNC_PLUGIN_API_VERSION, info->version.cur);
            return false;
        }
    }
    return true;
}

static void on_stop(void)
{
    qsync__runtime_stop(0);
}

static int timer_install(qemu_plugin_id_t id, const qemu_info_t *info,
                         const struct qsync__options *opt)
{
    (void)id; /* plugin.c has asked timer_usable */
    shift = opt->shift;
    n_vcpus = (uint32_t)info->system.smp_vcpus;
    count_mode = QSYNC__COUNT_NONE;
    if (info->system.smp_vcpus > 1 || info->system.max_vcpus > 1)
        count_mode = qsync__count_mode_for(info); /* timer_usable: not NONE */
    qsync__count_init(count_mode);

    (void)qsync__halt_setup(info);
    sync_at_halt = qsync__qemu_can_sync_icount();

    if (qsync__stop_timer_init(info, shift, opt->next, on_stop) < 0)
        return -1;
    /* The first stop, before the guest's first instruction: the main
     * timer list exists at install, and virtual time is 0. */
    qsync__stop_timer_arm_first();
    return 0;
}


/*
 * Right before a halting instruction executes. This closes a race in
 * QEMU's idle warp. With sleep=off, QEMU's main loop thread calls
 * icount_start_warp_timer() (util/main-loop.c, main_loop_wait) after every
 * poll; once all_cpu_threads_idle() it adds "earliest virtual timer -
 * clock" to the clock's bias (accel/tcg/icount-common.c). A vCPU counts
 * as idle as soon as the halting instruction's helper sets cpu->halted,
 * but the instructions of its current execution slice reach QEMU's count
 * only when the slice ends (icount_process_data -> icount_update, in
 * accel/tcg/tcg-accel-ops-icount.c, called from the round-robin loop
 * without the big lock). A warp in between reads a clock that lacks
 * them, so the clock lands that many instructions past our timer: the
 * idle race of docs/qemu-internals.md, 24 ns on the project's idle guest.
 * Folding the slice into QEMU's count here, before cpu->halted is set,
 * closes the window; TCG ends the block at the halting instruction, so
 * the count is final. Measured on 10.0.2 (idle guest, 100 us quanta):
 * 6 late stops in 1.37 million without this, none in 1.32 million with
 * it; with QEMU's main loop kept busy, 22 in 70,000 against none.
 */
static void on_halt(unsigned int vcpu_index, void *udata)
{
    (void)udata;
    atomic_store_explicit(&idle_seen, true, memory_order_relaxed);
    if (sync_at_halt)
        (void)qsync__qemu_icount_sync(vcpu_index);
}

/* Counting per vCPU: a block starts, before its instructions' inline
 * adds; udata is its length. */
static void on_block(unsigned int vcpu_index, void *udata)
{
    qsync__count_block_start(vcpu_index);
    qsync__count_block_len(vcpu_index, (uint64_t)(uintptr_t)udata);
}

static void timer_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    qsync__stop_timer_instrument_tb(tb);
    qsync__count_instrument(tb, on_block);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (qsync__halt_match(insn)) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_halt, QEMU_PLUGIN_CB_NO_REGS, NULL);
            qsync__stop_timer_instrument_halt(insn);
        }
    }
}

/* How far idle warps have moved QEMU's clock ahead of its instruction
 * count. Safe points only. */
static int64_t clock_bias(int64_t vclock)
{
    return vclock - (qsync__qemu_icount() << shift);
}

/* Instructions, total and per vCPU. QEMU's own count needs a safe point. */
static uint64_t count_insns(struct qsync__wire_report *out, bool safe)
{
    if (count_mode == QSYNC__COUNT_NONE) {
        uint64_t total = safe ? (uint64_t)qsync__qemu_icount() : last_instructions;
        if (out != NULL)
            out->vcpu_insns[0] = total;
        return total;
    }
    return qsync__count_vcpus(out != NULL ? out->vcpu_insns : NULL, n_vcpus);
}

static void timer_sample(uint64_t deadline_ns, struct qsync__wire_report *out)
{
    /* At a stop we are in the timer callback; at exit, QEMU's main
     * thread, unless a vCPU called exit() (then keep the last stop's
     * clock rather than risk QEMU's "Bad icount read"). */
    bool safe = qsync__stop_timer_safe_point();
    uint64_t v = safe ? (uint64_t)qsync__qemu_vclock_ns() : last_virtual_ns;
    uint64_t total;

    out->n_vcpus = n_vcpus;
    total = count_insns(out, safe);
    if (safe) {
        last_virtual_ns = v;
        last_instructions = total;
    }
    out->virtual_ns = v;
    out->instructions = total;
    /* On the clock: how many instructions' worth of time past (or short
     * of) the deadline, rounded toward zero, so a stop within one
     * instruction of it counts as 0. */
    out->overshoot = ((int64_t)v - (int64_t)deadline_ns) / ((int64_t)1 << shift);
    out->flags = 0;
    if (v != deadline_ns)
        out->flags |= QSYNC__WIRE_R_DEVIATION;
    if (atomic_load_explicit(&idle_seen, memory_order_relaxed) ||
        (safe && clock_bias((int64_t)v) != quantum_bias))
        out->flags |= QSYNC__WIRE_R_IDLE;
}

static int timer_arm(unsigned int vcpu_index, uint64_t deadline_ns)
{
    (void)vcpu_index;
    int64_t now = qsync__qemu_vclock_ns();
    /* A new quantum, for the idle flag. */
    atomic_store_explicit(&idle_seen, false, memory_order_relaxed);
    quantum_bias = clock_bias(now);
    if ((int64_t)deadline_ns <= now)
        return 1;
    qsync__stop_timer_arm(deadline_ns);
    return 0;
}

const struct qsync__engine qsync__engine_timer = {
    .name = "timer",
    .wire_id = QSYNC__WIRE_ENGINE_TIMER,
    .guarantees = QSYNC__WIRE_G_EXACT | QSYNC__WIRE_G_NEVER_AHEAD_IDLE | QSYNC__WIRE_G_VCLOCK,
    .install = timer_install,
    .translate = timer_translate,
    .sample = timer_sample,
    .arm = timer_arm,
    .usable = timer_usable,
};

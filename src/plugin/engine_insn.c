/*
 * The insn engine: exact stops by instrumenting every instruction.
 *
 * The vCPU has a scoreboard counter, remaining. Every instruction gets, in
 * this order:
 *   (a) a conditional callback "remaining == 0" (the stop),
 *   (b) an inline add of -1 to remaining.
 * QEMU runs an instruction's callbacks and inline ops in registration
 * order, before the instruction itself. So once a grant sets remaining to
 * B, exactly B instructions run and the callback fires before the
 * (B+1)th; that instruction then counts as the first of the next quantum.
 * remaining starts at 0, so the first guest instruction stops and waits
 * for the first grant. The callback's immediate (0) is fixed at
 * translation, so translated blocks never need flushing.
 *
 * The instructions executed are counted from remaining too: every
 * instruction started takes exactly one from it, so the count is what
 * was counted when remaining was last set, plus what it was set to, less
 * what is left (executed_now). A second inline add per instruction into a
 * counter of its own gave the same count at a higher price: 2*10^8
 * instructions of the compute guest at 1 ms quanta took 795 ms with it
 * and 717 ms without (free-running icount: 663 ms; median of 8
 * interleaved runs, QEMU 10.0.2).
 *
 * Idle. Under -icount sleep=off, a halted guest makes QEMU jump its clock
 * to the next timer, with no instruction and no callback, so counting
 * alone cannot see idle time. Every halting instruction (halt.h) gets a
 * callback that marks the quantum idle (R_IDLE), and, when QEMU's
 * internals are there, arms the virtual-clock stop timer (stop_timer.h)
 * at the current deadline; a quantum that may begin with the guest still
 * halted (after an idle quantum that ended on the timer) arms it at once.
 * The idle warp then cannot pass the deadline, and if the guest wakes
 * and runs on, the timer stops it there (QEMU's instruction budget ends
 * at it). Busy quanta never arm the timer and keep their cheap countdown
 * stop; a guest that never halts pays nothing (measured: no difference
 * on the busy guest, within noise).
 *
 * Time. The engine keeps offset = QEMU's clock - (executed << shift),
 * which only an idle warp changes. It is read at every stop on the timer,
 * where QEMU's clock may be read; at a countdown stop (inside a
 * translated block, where reading it would end QEMU with "Bad icount
 * read") the clock is executed << shift plus that offset. Without the
 * internals the offset stays 0 and virtual_ns is the count.
 *
 * Guarantees: EXACT; NEVER_AHEAD_IDLE only with the internals (and a
 * target whose halting instructions halt.c knows). Not VCLOCK: at a
 * countdown stop virtual_ns is derived, and an instruction that faults is
 * counted each time it starts where QEMU's icount may count it once.
 *
 * -smp 1 only. A countdown per vCPU cannot see a global budget, and with
 * several vCPUs QEMU's clock is not even the sum of their instructions
 * (see engine_timer.c), so no instruction target maps to a deadline. The
 * timer engine handles -smp N.
 */
#include "engine.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime.h"
#include "halt.h"
#include "log.h"
#include "qemu_internals.h"
#include "qemu_api.h"
#include "stop_timer.h"

static unsigned shift;
static uint32_t n_vcpus;
static qemu_plugin_u64 remaining; /* instructions the vCPU may still run */
/* What executed_now() counts from: the instructions started when
 * remaining was last set, and what it was set to. Written at stops, by
 * the vCPU thread. */
static uint64_t counted_at_set;
static uint64_t set_to;

/*
 * Idle state. All of it is touched by the one vCPU thread (stops, halting
 * instruction callbacks, the stop timer's callback).
 */
static bool guard;           /* the stop timer guards idle quanta   */
static bool sync_at_halt;    /* the idle race fix is on             */
static int64_t offset_ns;    /* QEMU clock - (executed << shift)    */
static int64_t quantum_bias; /* QEMU clock - (icount << shift), at the
                                start of the quantum (see insn_sample) */
static bool may_be_halted;   /* at a stop on the timer: see insn_arm   */
static bool quantum_ran;     /* the last arm let the guest run          */
static uint64_t deadline_ns; /* the deadline being run to           */
static atomic_bool idle_seen;

static bool insn_usable(const qemu_info_t *info, const struct qsync__options *opt,
                        char *why, size_t len)
{
    (void)opt;
    if (info->version.cur < QSYNC_PLUGIN_API_VERSION ||
        qsync__qemu_api.insn_cond_cb == NULL) {
        snprintf(why, len, "it needs conditional callbacks (plugin API version %d, QEMU 9.1 "
                           "or later); this QEMU speaks version %d",
                 QSYNC_PLUGIN_API_VERSION, info->version.cur);
        return false;
    }
    if (info->system.smp_vcpus != 1 || info->system.max_vcpus > 1) {
        snprintf(why, len, "it runs with -smp 1 only (QEMU runs with -smp %d,maxcpus=%d): "
                           "per-vCPU countdowns cannot share one deadline; use engine=timer "
                           "or engine=auto",
                 info->system.smp_vcpus, info->system.max_vcpus);
        return false;
    }
    return true;
}

/* Checks that one API function was found (qemu_api.h); if not, names it. */
#define RESOLVE(field, symbol) \
    QSYNC_NEED("insn", field, symbol, "QEMU 9.1 or later is required")

static void on_guard(void)
{
    qsync__runtime_stop(0);
}

static int insn_install(qemu_plugin_id_t id, const qemu_info_t *info,
                        const struct qsync__options *opt)
{
    (void)id; /* plugin.c has asked insn_usable */
    RESOLVE(num_vcpus, qemu_plugin_num_vcpus);
    RESOLVE(scoreboard_new, qemu_plugin_scoreboard_new);
    RESOLVE(u64_get, qemu_plugin_u64_get);
    RESOLVE(u64_set, qemu_plugin_u64_set);
    RESOLVE(insn_inline_vcpu, qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu);
    RESOLVE(insn_cond_cb, qemu_plugin_register_vcpu_insn_exec_cond_cb);

    n_vcpus = (uint32_t)info->system.smp_vcpus;
    shift = opt->shift;

    /* Never freed: translated code keeps writing to it until the process
     * ends, even while atexit callbacks run in another thread. */
    struct qemu_plugin_scoreboard *board = qsync__qemu_api.scoreboard_new(sizeof(uint64_t));
    if (board == NULL) {
        qsync__log("cannot allocate the per-vCPU counter");
        return -1;
    }
    remaining = (qemu_plugin_u64){board, 0};

    bool halts_known = qsync__halt_setup(info);
    guard = halts_known && qsync__qemu_internals_found();
    sync_at_halt = guard && qsync__qemu_can_sync_icount();
    if (guard && qsync__stop_timer_init(info, shift, opt->next, on_guard) < 0)
        return -1;
    return 0;
}

static uint32_t insn_guarantees(void)
{
    return QSYNC__WIRE_G_EXACT | (guard ? QSYNC__WIRE_G_NEVER_AHEAD_IDLE : 0u);
}

static void on_deadline(unsigned int vcpu_index, void *udata)
{
    (void)udata;
    qsync__runtime_stop(vcpu_index);
}

/* Right before a halting instruction: see the top comment, and on_halt
 * in engine_timer.c for the race that the icount sync closes. */
static void on_halt(unsigned int vcpu_index, void *udata)
{
    (void)udata;
    atomic_store_explicit(&idle_seen, true, memory_order_relaxed);
    if (!guard)
        return;
    if (sync_at_halt)
        (void)qsync__qemu_icount_sync(vcpu_index);
    if (!qsync__stop_timer_armed())
        qsync__stop_timer_arm(deadline_ns);
}

static void insn_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    if (guard)
        qsync__stop_timer_instrument_tb(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        /* The order is the engine's correctness; see the top comment. */
        qsync__qemu_api.insn_cond_cb(insn, on_deadline, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_COND_EQ,
                         remaining, 0, NULL);
        qsync__qemu_api.insn_inline_vcpu(insn, QEMU_PLUGIN_INLINE_ADD_U64, remaining, UINT64_MAX);
        if (qsync__halt_match(insn)) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_halt, QEMU_PLUGIN_CB_NO_REGS, NULL);
            if (guard)
                qsync__stop_timer_instrument_halt(insn);
        }
    }
}

/* Instructions the vCPU started since QEMU started (see the top comment).
 * Before QEMU has made the vCPU, its scoreboard row does not exist yet. */
static uint64_t executed_now(void)
{
    if (qsync__qemu_api.num_vcpus() < 1)
        return counted_at_set;
    return counted_at_set + (set_to - qsync__qemu_api.u64_get(remaining, 0));
}

/* Whether the calling thread may read QEMU's clock now. */
static bool at_safe_point(void)
{
    return guard && qsync__stop_timer_safe_point();
}

/* How far idle warps have moved QEMU's clock ahead of its own
 * instruction count. Safe points only. */
static int64_t clock_bias(void)
{
    return qsync__qemu_vclock_ns() - (qsync__qemu_icount() << shift);
}

/* The guest's virtual time now, given its instruction total. Reads QEMU's
 * clock (and refreshes the offset) where that is safe. */
static int64_t now_ns(uint64_t total)
{
    int64_t counted = (int64_t)(total << shift);
    if (at_safe_point())
        offset_ns = qsync__qemu_vclock_ns() - counted;
    return counted + offset_ns;
}

static void insn_sample(uint64_t deadline, struct qsync__wire_report *out)
{
    uint64_t total = executed_now();
    int64_t now = now_ns(total);

    out->virtual_ns = (uint64_t)now;
    out->instructions = total;
    /* Instructions past the deadline: on the count alone when the clock
     * is the count; otherwise on the clock, as the timer engine does. */
    if (!guard)
        out->overshoot = (int64_t)(total - (deadline >> shift));
    else
        out->overshoot = (now - (int64_t)deadline) / ((int64_t)1 << shift);
    /*
     * Idle: a halting instruction ran, or QEMU's clock warped. A warp can
     * only be seen at a stop on the timer, but it can only happen in a
     * quantum that had a halt or began halted, and every such quantum
     * ends on the timer (the guard is armed by the halt, or from the
     * start after a stop on the timer); and the bias cannot move in a
     * quantum that ends on the countdown, so quantum_bias stays right
     * across those.
     */
    out->flags = 0;
    if (atomic_load_explicit(&idle_seen, memory_order_relaxed) ||
        (at_safe_point() && clock_bias() != quantum_bias))
        out->flags |= QSYNC__WIRE_R_IDLE;
    if (out->virtual_ns != deadline)
        out->flags |= QSYNC__WIRE_R_DEVIATION;
    out->n_vcpus = n_vcpus; /* 1 */
    out->vcpu_insns[0] = total;
}

static int insn_arm(unsigned int vcpu_index, uint64_t deadline)
{
    bool on_timer = guard && qsync__stop_timer_in_callback();
    int64_t now = now_ns(executed_now());
    /* Rounded down: the guest never passes the granted time, and since
     * deadlines are absolute the rounding never accumulates. */
    uint64_t budget = ((int64_t)deadline > now)
                          ? (uint64_t)((int64_t)deadline - now) >> shift
                          : 0;

    /*
     * Whether the guest may still be halted. A countdown stop means it is
     * running. At a stop on the timer it is halted only if the quantum
     * that just ended was idle: either it halted in that quantum, or it
     * was halted all along, and then the clock warped. (It may also have
     * halted, woken and run on; then the guard below costs one quantum
     * ending on the timer instead of the countdown, at the same place.)
     * A grant the guest was already at runs no quantum and changes
     * nothing.
     */
    if (!on_timer) {
        may_be_halted = false;
    } else if (quantum_ran) {
        may_be_halted = atomic_load_explicit(&idle_seen, memory_order_relaxed) ||
                        clock_bias() != quantum_bias;
    }
    atomic_store_explicit(&idle_seen, false, memory_order_relaxed);
    if (at_safe_point())
        quantum_bias = clock_bias();
    deadline_ns = deadline;

    bool runs = budget > 0 || (on_timer && may_be_halted && (int64_t)deadline > now);
    if (guard) {
        /* A halted guest runs no halting instruction that would arm the
         * guard: arm it now. Otherwise its next halt does. */
        if (runs && on_timer && may_be_halted)
            qsync__stop_timer_arm(deadline);
        else
            qsync__stop_timer_cancel();
    }
    quantum_ran = runs;
    if (!runs)
        return 1; /* remaining = 0 would wrap on the next instruction */
    /* Less than one instruction to go but halted: only the guard can
     * end this quantum, so the countdown must not. */
    counted_at_set = executed_now();
    set_to = budget > 0 ? budget : UINT64_MAX / 2;
    qsync__qemu_api.u64_set(remaining, vcpu_index, set_to);
    return 0;
}

const struct qsync__engine qsync__engine_insn = {
    .name = "insn",
    .wire_id = QSYNC__WIRE_ENGINE_INSN,
    .guarantees = QSYNC__WIRE_G_EXACT,
    .install = insn_install,
    .translate = insn_translate,
    .sample = insn_sample,
    .arm = insn_arm,
    .usable = insn_usable,
    .actual_guarantees = insn_guarantees,
};

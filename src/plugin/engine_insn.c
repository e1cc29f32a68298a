/*
 * The insn engine: exact stops by instrumenting every instruction.
 *
 * Each vCPU has two scoreboard counters. Every instruction gets, in this
 * order:
 *   (a) a conditional callback "remaining == 0" (the stop),
 *   (b) an inline add of -1 to remaining,
 *   (c) an inline add of 1 to executed.
 * QEMU runs an instruction's callbacks and inline ops in registration
 * order, before the instruction itself. So once a grant sets remaining to
 * B, exactly B instructions run and the callback fires before the
 * (B+1)th; that instruction then counts as the first of the next quantum.
 * remaining starts at 0, so the first guest instruction stops and waits
 * for the first grant. The callback's immediate (0) is fixed at
 * translation, so translated blocks never need flushing.
 *
 * executed is an independent count: reports, overshoot and the virtual
 * time (executed << shift) come from it, never from remaining.
 *
 * Guarantees: exact in instructions. Not "never ahead" while the guest is
 * idle (under -icount an idle warp moves QEMU's clock with no instruction
 * and no callback), and virtual_ns is our count, not QEMU's clock: besides
 * idle warps, an instruction that faults is counted each time it starts,
 * where QEMU's icount may count it once.
 */
#include "engine.h"

#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "log.h"
#include "qemu_probe.h"

/* One scoreboard element per vCPU; both counters share a cache line. */
struct vcpu_counters {
    uint64_t remaining; /* instructions this vCPU may still run       */
    uint64_t executed;  /* instructions it started since QEMU started */
};

/* The API functions newer than version 1, found at run time. */
static struct {
    __typeof__(&qemu_plugin_num_vcpus) num_vcpus;
    __typeof__(&qemu_plugin_scoreboard_new) scoreboard_new;
    __typeof__(&qemu_plugin_u64_get) u64_get;
    __typeof__(&qemu_plugin_u64_set) u64_set;
    __typeof__(&qemu_plugin_u64_sum) u64_sum;
    __typeof__(&qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu) insn_inline;
    __typeof__(&qemu_plugin_register_vcpu_insn_exec_cond_cb) insn_cond_cb;
} api;

static unsigned shift;
static uint32_t n_vcpus;
static qemu_plugin_u64 remaining;
static qemu_plugin_u64 executed;

/* Resolves one API function; on failure names it. */
#define RESOLVE(field, symbol)                                               \
    do {                                                                     \
        api.field = (__typeof__(api.field))qsync__qemu_sym(#symbol);         \
        if (api.field == NULL) {                                             \
            qsync__log("engine=insn needs %s, which this QEMU does not "     \
                       "export (QEMU 9.1 or later is required)", #symbol);   \
            return -1;                                                       \
        }                                                                    \
    } while (0)

static int insn_install(qemu_plugin_id_t id, const qemu_info_t *info,
                        const struct qsync__options *opt)
{
    (void)id;
    if (info->version.cur < QSYNC_PLUGIN_API_VERSION) {
        qsync__log("engine=insn needs conditional callbacks (plugin API version %d, "
                   "QEMU 9.1 or later); this QEMU speaks version %d",
                   QSYNC_PLUGIN_API_VERSION, info->version.cur);
        return -1;
    }
    RESOLVE(num_vcpus, qemu_plugin_num_vcpus);
    RESOLVE(scoreboard_new, qemu_plugin_scoreboard_new);
    RESOLVE(u64_get, qemu_plugin_u64_get);
    RESOLVE(u64_set, qemu_plugin_u64_set);
    RESOLVE(u64_sum, qemu_plugin_u64_sum);
    RESOLVE(insn_inline, qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu);
    RESOLVE(insn_cond_cb, qemu_plugin_register_vcpu_insn_exec_cond_cb);

    if (info->system.smp_vcpus != 1 || info->system.max_vcpus > 1) {
        qsync__log("engine=insn supports -smp 1 only in this version (QEMU runs with "
                   "-smp %d,maxcpus=%d)", info->system.smp_vcpus, info->system.max_vcpus);
        return -1;
    }
    n_vcpus = (uint32_t)info->system.smp_vcpus;
    shift = opt->shift;

    /* Never freed: translated code keeps writing to it until the process
     * ends, even while atexit callbacks run in another thread. */
    struct qemu_plugin_scoreboard *board =
        api.scoreboard_new(sizeof(struct vcpu_counters));
    if (board == NULL) {
        qsync__log("cannot allocate the per-vCPU counters");
        return -1;
    }
    remaining = (qemu_plugin_u64){board, offsetof(struct vcpu_counters, remaining)};
    executed = (qemu_plugin_u64){board, offsetof(struct vcpu_counters, executed)};
    return 0;
}

static void on_deadline(unsigned int vcpu_index, void *udata)
{
    (void)udata;
    qsync__channel_stop(vcpu_index);
}

static void insn_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        /* The order is the engine's correctness; see the top comment. */
        api.insn_cond_cb(insn, on_deadline, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_COND_EQ,
                         remaining, 0, NULL);
        api.insn_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, remaining, UINT64_MAX);
        api.insn_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, executed, 1);
    }
}

static void insn_sample(uint64_t deadline_ns, struct qsync_wire_report *out)
{
    /* The scoreboard only has rows for vCPUs QEMU has created so far. */
    uint32_t live = (uint32_t)api.num_vcpus();
    uint64_t total = api.u64_sum(executed);

    out->virtual_ns = total << shift;
    out->instructions = total;
    out->overshoot = (int64_t)(total - (deadline_ns >> shift));
    out->flags = 0;
    out->n_vcpus = n_vcpus;
    for (uint32_t i = 0; i < n_vcpus; i++)
        out->vcpu_insns[i] = i < live ? api.u64_get(executed, i) : 0;
}

static int insn_arm(unsigned int vcpu_index, uint64_t deadline_ns)
{
    /* Rounded down: the guest never passes the granted time, and since
     * deadlines are absolute the rounding never accumulates. */
    uint64_t target = deadline_ns >> shift;
    uint64_t total = api.u64_sum(executed);

    if (target <= total)
        return 1; /* remaining = 0 would wrap on the next instruction */
    api.u64_set(remaining, vcpu_index, target - total);
    return 0;
}

const struct qsync__engine qsync__engine_insn = {
    .name = "insn",
    .wire_id = QSYNC_WIRE_ENGINE_INSN,
    .guarantees = QSYNC_WIRE_G_EXACT,
    .install = insn_install,
    .translate = insn_translate,
    .sample = insn_sample,
    .arm = insn_arm,
};

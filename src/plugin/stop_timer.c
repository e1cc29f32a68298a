/*
 * See stop_timer.h.
 *
 * Who may touch what: the state below is written by whichever thread
 * arms, cancels or runs the timer. Under -icount all of those are the one
 * round-robin vCPU thread (stops, halting-instruction callbacks and the
 * timer callback itself), except the first arming, at install, before
 * that thread runs. So plain variables suffice; the QEMU timer functions
 * take their own lock. The "ran" flags are written by translated code.
 */
#include "stop_timer.h"

#include <stddef.h>

#include "log.h"
#include "qemu_internals.h"
#include "qemu_api.h"

static struct qsync__vtimer timer;
static void (*on_stop)(void);
static int64_t slack; /* s - 1, s = 2^shift */

static int64_t deadline;  /* the deadline being approached           */
static bool armed;        /* armed for it                            */
static bool final_leg;    /* re-armed at the deadline itself (idle)  */
static _Thread_local bool in_callback;
static _Thread_local bool in_other_timer; /* qsync__stop_timer_mark_safe */

/* Per-vCPU "ran a block since its last halting instruction" (shift > 0
 * with plugin API 3). */
static bool have_flags;
static qemu_plugin_u64 ran;

/* Whether every vCPU is halted and will stay so until a timer or an
 * external event wakes it. Big lock held. */
static bool guest_halted(void)
{
    if (!have_flags)
        return qsync__qemu_all_vcpus_idle();
    unsigned n = (unsigned)qsync__qemu_api.num_vcpus();
    for (unsigned i = 0; i < n; i++) {
        if (qsync__qemu_api.u64_get(ran, i) != 0)
            return false;
        int work = qsync__qemu_vcpu_has_work(i);
        if (work < 0)
            return qsync__qemu_all_vcpus_idle();
        if (work)
            return false;
    }
    return true;
}

static bool arming;    /* we are arming it: its list's notification is ours */
static int64_t due_at; /* when the armed timer expires */

static void fire(void *opaque);

static void mod(int64_t at)
{
    due_at = at;
    arming = true;
    qsync__vtimer_mod(&timer, at);
    arming = false;
}

/* The timer's own list was notified. A stop is due when the vCPU thread
 * looks at the clock's deadlines (icount_handle_deadline) and ours is
 * reached; every other notification (our own arming, a warp noticed by
 * the main loop, another timer's deadline) is ignored. */
static void notified(void *opaque)
{
    if (arming || in_callback || !armed || !qsync__qemu_in_vcpu_thread())
        return;
    if (qsync__qemu_vclock_ns() < due_at)
        return;
    qsync__vtimer_del(&timer);
    fire(opaque);
}

static void fire(void *opaque)
{
    (void)opaque;
    if (armed && !final_leg && slack > 0) {
        int64_t now = qsync__qemu_vclock_ns();
        if (now < deadline && guest_halted()) {
            /* Our timer is off the list while its callback runs, so this
             * is the next timer of anyone else. */
            int64_t next = qsync__qemu_next_vtimer_ns();
            if (next < 0 || now + next >= deadline) {
                final_leg = true;
                mod(deadline);
                return;
            }
        }
    }
    armed = false;
    in_callback = true;
    on_stop();
    in_callback = false;
}

int qsync__stop_timer_init(const qemu_info_t *info, unsigned shift, bool want_flags,
                           void (*cb)(void))
{
    on_stop = cb;
    slack = ((int64_t)1 << shift) - 1;
    /* Alone in a list of its own (stop_timer.h); where QEMU lacks what
     * that needs, in the main loop's, whose callbacks run it. */
    if (!qsync__vtimer_init_alone(&timer, notified, NULL))
        qsync__vtimer_init(&timer, fire, NULL);

    have_flags = false;
    if ((slack == 0 && !want_flags) || info->version.cur < 3 || qsync__qemu_vcpu_has_work(0) < 0)
        return 0;
    if (qsync__qemu_api.scoreboard_new == NULL || qsync__qemu_api.num_vcpus == NULL || qsync__qemu_api.u64_get == NULL ||
        qsync__qemu_api.tb_inline_vcpu == NULL || qsync__qemu_api.insn_inline_vcpu == NULL)
        return 0;
    /* Never freed: translated code writes to it until the process ends. */
    struct qemu_plugin_scoreboard *board = qsync__qemu_api.scoreboard_new(sizeof(uint64_t));
    if (board == NULL) {
        qsync__log("cannot allocate the per-vCPU halt flags");
        return -1;
    }
    ran = (qemu_plugin_u64){board, 0};
    have_flags = true;
    return 0;
}

void qsync__stop_timer_instrument_tb(struct qemu_plugin_tb *tb)
{
    if (have_flags)
        qsync__qemu_api.tb_inline_vcpu(tb, QEMU_PLUGIN_INLINE_STORE_U64, ran, 1);
}

void qsync__stop_timer_instrument_halt(struct qemu_plugin_insn *insn)
{
    if (have_flags)
        qsync__qemu_api.insn_inline_vcpu(insn, QEMU_PLUGIN_INLINE_STORE_U64, ran, 0);
}

void qsync__stop_timer_arm_first(void)
{
    deadline = 0;
    final_leg = true; /* nothing to approach */
    armed = true;
    mod(0);
}

void qsync__stop_timer_arm(uint64_t deadline_ns)
{
    int64_t d = (int64_t)deadline_ns;
    int64_t first = d - slack;

    deadline = d;
    final_leg = slack == 0;
    armed = true;
    /* A first leg at or before now fires at QEMU's next look at its
     * timers, before another instruction runs. */
    mod(first < 0 ? 0 : first);
}

void qsync__stop_timer_cancel(void)
{
    if (armed) {
        armed = false;
        qsync__vtimer_del(&timer);
    }
}

bool qsync__stop_timer_can_tell_halted(void)
{
    return have_flags;
}

uint64_t qsync__stop_timer_next_event(void)
{
    /* Our own timer must be off the list (it is while its callback runs),
     * or it would be taken for the guest's. */
    if (!have_flags || armed || !guest_halted())
        return 0;
    int64_t now = qsync__qemu_vclock_ns();
    int64_t next = qsync__qemu_next_vtimer_ns();
    if (next < 0)
        return UINT64_MAX;
    return (uint64_t)now + (uint64_t)next;
}

bool qsync__stop_timer_armed(void)
{
    return armed;
}

bool qsync__stop_timer_safe_point(void)
{
    return qsync__stop_timer_in_callback() || in_other_timer || !qsync__qemu_in_vcpu_thread();
}

void qsync__stop_timer_mark_safe(bool on)
{
    in_other_timer = on;
}

bool qsync__stop_timer_in_callback(void)
{
    return in_callback;
}

/*
 * The end of a run, stamped at the guest's shutdown request (shutdown.h).
 *
 * QEMU's functions used, exported by 10.0.2 (nm -D; the prototypes from
 * its include/system/runstate.h, include/qemu/main-loop.h and
 * include/qemu/notify.h). Each is optional: without all three the plugin
 * counts to QEMU's exit, as it always did.
 *   int  qemu_shutdown_requested_get(void);    the request flag (a
 *                                              ShutdownCause, 0: none)
 *   void qemu_register_shutdown_notifier(Notifier *);
 *   void main_loop_poll_add_notifier(Notifier *);
 *   struct Notifier { void (*notify)(Notifier *, void *data);
 *                     QLIST_ENTRY(Notifier) node; };   three pointers
 *
 * How QEMU serves a request (system/runstate.c, util/main-loop.c): the
 * device's write sets the flag in the vCPU thread, with the big lock held
 * (an I/O access takes it), and wakes the main loop. The main loop, at
 * its next turn, exchanges the flag for 0, calls the shutdown notifiers,
 * leaves its loop and pauses the vCPUs, which meanwhile run on. Under
 * -icount, TCG ends a block at an I/O instruction, so the first block
 * that starts after the request is the same in every run: its start is
 * where the request is seen, and what it runs is taken off the stamp.
 *
 * Where the check runs (cheap, exact on the covered paths): a guest asks
 * through an instruction that does I/O, an x86 port write (out, outs) or
 * an Arm PSCI call (hvc, smc; halt.c recognises them). At translation
 * each such instruction gets a callback, before it runs, that sets every
 * vCPU's `pending` entry to 1, and every block gets a conditional
 * callback, taken only when its vCPU's entry is not 0, that runs the
 * check and clears every entry (set_all says why every one). So a block costs one inline compare, and
 * the check runs only at the start of the blocks that follow a port
 * write or a PSCI call: the first block started after the request, on
 * any vCPU, is still the one that sees it. Once it has, the entries stay
 * 1 until the stamp is taken, so the blocks run meanwhile are counted.
 * Every vCPU's entry, not only the caller's: the round-robin thread may
 * switch vCPUs right after the request's block, and the next vCPU's
 * first block is the one that must see it.
 *
 * Other paths (a shutdown device written through MMIO, a triple fault, a
 * request from the host) set no entry at an instruction. For them the
 * poll and shutdown notifiers below set every entry when the main loop
 * sees the request, so the stamp is still taken, before QEMU's exit, at
 * the first block started after that: a point the host's timing picks,
 * so such an end is not the same in every run. A target without a known
 * request instruction (RISC-V: its guests power off through firmware that
 * writes an MMIO device), or a QEMU without conditional callbacks (API 2,
 * QEMU 9.0 and older), or a machine with more than one vCPU (QEMU
 * 10.0.2's per-vCPU scoreboards are broken when one thread runs several
 * vCPUs), keeps the check at the start of every block, which is exact for
 * every path and costs a callback per block.
 *
 * Why the check cannot miss the request, whatever the host's timing:
 * the main loop may take the flag between the request and that block's
 * start. So the check reads the flag, then `seen`, which the main loop
 * sets before it takes the flag: the main loop holds the big lock from
 * its poll notifier (called when it wakes from its poll) until it takes
 * the flag (unless a timer or handler it runs in between drops the
 * lock), so a request made under the lock (every device's) is already
 * set when the notifier looks, and the notifier sets `seen` first. The
 * shutdown notifier sets it too, for a request made elsewhere (a signal,
 * the monitor). The reads and writes are sequentially consistent, and
 * QEMU's exchange is a full barrier. Requests from the host (SIGTERM,
 * monitor "quit") come at a host-dependent moment anyway; they are
 * stamped where the guest sees them.
 *
 * Who touches what: the block check, the stamp timer and the stops run
 * in the one thread that runs every vCPU under -icount; QEMU's exit in
 * the main thread, once the vCPUs are paused (or in the vCPU thread that
 * called exit()). The counters are atomics for that hand-over.
 *
 * TEST HOOKS: QSYNC_PLUGIN_NO_EXIT_STAMP=1 turns all of this off, so that
 * the old behaviour can be measured and the tests shown to fail on it;
 * QSYNC_PLUGIN_EXIT_CHECK=every checks at the start of every block, as on
 * a target without a known request instruction, to compare stamps and
 * cost with.
 */
#include "shutdown.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "halt.h"
#include "qemu_api.h"
#include "qemu_internals.h"
#include "stop_timer.h"

struct qemu_notifier {
    void (*notify)(struct qemu_notifier *n, void *data);
    void *le_next;
    void *le_prev;
};

static int (*requested_get)(void);
static const struct qsync__engine *engine;
static unsigned shift;
static bool active;
static bool at_io;               /* the check after I/O only, not every block */
static qemu_plugin_u64 pending;  /* per vCPU: check at the next block start */

static struct qemu_notifier poll_notifier, shutdown_notifier;
static atomic_bool seen;         /* the main loop saw a request          */
static atomic_bool detected;     /* a block started after the request    */
static atomic_uint_fast64_t after; /* instructions of the blocks since */
static atomic_bool stamped;
static uint64_t stamp_virtual_ns, stamp_instructions; /* once stamped */
static struct qsync__vtimer stamp_timer;

/* Sets every vCPU's entry. Every vCPU's, also to clear: under -icount
 * one thread runs every vCPU, so a check at any block start after the
 * request sees it, and one before it ends every vCPU's wait (no other
 * block starts between a port write's mark and the write). And the
 * vcpu_index is not needed. The main loop's
 * notifiers call this too; a store racing a clear is caught by the
 * fence in on_block. */
static void set_all(uint64_t v)
{
    int n = qsync__qemu_api.num_vcpus();
    for (int k = 0; k < n; k++)
        qsync__qemu_api.u64_set(pending, (unsigned)k, v);
}

/* Every vCPU checks at its next block start. */
static void mark_all(void)
{
    if (at_io)
        set_all(1);
}

/* Main loop, big lock held, before and after each poll. */
static void on_poll(struct qemu_notifier *n, void *data)
{
    (void)n;
    (void)data;
    if (requested_get() != 0 && !atomic_load(&seen)) {
        atomic_store(&seen, true);
        mark_all();
    }
}

/* Main loop, big lock held, right after it took the request. */
static void on_shutdown(struct qemu_notifier *n, void *data)
{
    (void)n;
    (void)data;
    atomic_store(&seen, true);
    mark_all();
}

static bool requested(void)
{
    /* The flag first, then seen: see the top comment. */
    return requested_get() != 0 || atomic_load(&seen);
}

/* Where the guest is now, less what ran after the request. */
static void take_stamp(void)
{
    struct qsync__wire_report now;

    if (atomic_load(&stamped))
        return;
    memset(&now, 0, sizeof now);
    engine->sample(0, &now);
    uint64_t n = atomic_load(&after);
    if (n > now.instructions)
        n = now.instructions;
    stamp_instructions = now.instructions - n;
    stamp_virtual_ns = now.virtual_ns - (n << shift);
    atomic_store(&stamped, true);
}

/* Due at once when the request was seen: runs when that block ends,
 * between two blocks, where QEMU's clock may be read. */
static void on_stamp_timer(void *opaque)
{
    (void)opaque;
    qsync__stop_timer_mark_safe(true);
    take_stamp();
    qsync__stop_timer_mark_safe(false);
}

/* Right before a port write or PSCI call: see the top comment. */
static void on_io(unsigned int vcpu_index, void *udata)
{
    (void)vcpu_index;
    (void)udata;
    mark_all();
}

/* The start of a block (every block, or one whose vCPU's entry is set);
 * udata is its length. */
static void on_block(unsigned int vcpu_index, void *udata)
{
    uint64_t len = (uint64_t)(uintptr_t)udata;
    (void)vcpu_index;

    if (atomic_load_explicit(&detected, memory_order_relaxed)) {
        if (!atomic_load_explicit(&stamped, memory_order_relaxed))
            atomic_fetch_add_explicit(&after, len, memory_order_relaxed);
        else if (at_io)
            set_all(0);
        return;
    }
    if (at_io) {
        /* Cleared before the flags are read: a notifier that sets the
         * entry after seen is then either seen here or leaves it set. */
        set_all(0);
        atomic_thread_fence(memory_order_seq_cst);
    }
    if (!requested())
        return;
    atomic_store(&after, len);
    atomic_store(&detected, true);
    mark_all();
    qsync__vtimer_mod(&stamp_timer, 0);
}

/* Whether this QEMU and target allow the check after I/O only. */
static bool can_check_at_io(const qemu_info_t *info)
{
    const char *hook = getenv("QSYNC_PLUGIN_EXIT_CHECK");
    const struct qsync__qemu_api *api = &qsync__qemu_api;

    if (hook != NULL && strcmp(hook, "every") == 0)
        return false;
    /* QEMU 10.0.2 computes the per-vCPU scoreboard slot wrongly in
     * generated code when one thread runs several vCPUs (qemu-internals.md:
     * a Linux guest at -smp 4 panicked, and a block's conditional callback
     * was passed vcpu_index 24): one vCPU only. */
    if (info->system.max_vcpus > 1 || info->system.smp_vcpus > 1)
        return false;
    if (api->tb_cond_cb == NULL || api->scoreboard_new == NULL || api->u64_set == NULL ||
        api->num_vcpus == NULL)
        return false;
    (void)qsync__halt_setup(info); /* the block engine does not */
    if (!qsync__request_insns_known())
        return false;
    /* Never freed: translated code reads it until the process ends. */
    struct qemu_plugin_scoreboard *board = api->scoreboard_new(sizeof(uint64_t));
    if (board == NULL)
        return false;
    pending = (qemu_plugin_u64){board, 0};
    return true;
}

void qsync__shutdown_setup(const struct qsync__engine *eng, unsigned sh,
                           const qemu_info_t *info)
{
    const char *hook = getenv("QSYNC_PLUGIN_NO_EXIT_STAMP");
    void (*add_shutdown)(struct qemu_notifier *);
    void (*add_poll)(struct qemu_notifier *);

    engine = eng;
    shift = sh;
    active = false;
    if ((hook != NULL && strcmp(hook, "1") == 0) || !qsync__qemu_internals_found() ||
        qsync__qemu_api.tb_exec_cb == NULL)
        return;
    requested_get = (int (*)(void))qsync__qemu_sym("qemu_shutdown_requested_get");
    add_shutdown = (void (*)(struct qemu_notifier *))qsync__qemu_sym(
        "qemu_register_shutdown_notifier");
    add_poll = (void (*)(struct qemu_notifier *))qsync__qemu_sym("main_loop_poll_add_notifier");
    if (requested_get == NULL || add_shutdown == NULL || add_poll == NULL)
        return;
    at_io = can_check_at_io(info);
    qsync__vtimer_init(&stamp_timer, on_stamp_timer, NULL);
    poll_notifier.notify = on_poll;
    shutdown_notifier.notify = on_shutdown;
    add_poll(&poll_notifier);
    add_shutdown(&shutdown_notifier);
    active = true;
}

void qsync__shutdown_instrument_tb(struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (!active || n == 0)
        return;
    if (!at_io) {
        qsync__qemu_api.tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
        return;
    }
    qsync__qemu_api.tb_cond_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_COND_NE,
                               pending, 0, (void *)(uintptr_t)n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (qsync__request_match(insn))
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_io, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
}

bool qsync__shutdown_at_stop(void)
{
    if (!active || !requested())
        return false;
    take_stamp();
    return true;
}

void qsync__shutdown_exit_sample(uint64_t deadline_ns, struct qsync__wire_report *out)
{
    if (!active || !(atomic_load(&stamped) || atomic_load(&detected) || requested())) {
        engine->sample(deadline_ns, out);
        return;
    }
    take_stamp();
    out->virtual_ns = stamp_virtual_ns;
    out->instructions = stamp_instructions;
}

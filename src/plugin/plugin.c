/*
 * The qsync QEMU plugin: the guest-side half of libqsync.
 *
 *   qemu-system-ARCH -icount shift=N,sleep=off \
 *       -plugin .../libqsync-plugin.so,fd_in=R,fd_out=W[,shift=N][,engine=E]
 *               [,quantum_ns=Q]
 *
 * and, in the personalities that speak the two older protocols
 * (personality.h, options.h):
 *
 *   -icount 1,sleep=off -plugin ...,proto=qqq,fd_in=R,fd_out=W[,shift=N]...
 *   -icount shift=0 -plugin ...,HostToGuestPipe=P,GuestToHostPipe=P,
 *                               TimeInMicroSeconds=N[,engine=E]
 *
 * This file is the entry point: it checks the options and the QEMU it runs
 * in, picks the engine and the personality, and lets the personality greet
 * its controller and say goodbye when QEMU exits on its own. The stops live
 * in personality_*.c, the instrumentation in
 * engine_*.c. Only qemu_plugin_version and qemu_plugin_install are
 * exported.
 *
 * Any refusal prints a message on stderr and returns nonzero from
 * qemu_plugin_install, so QEMU refuses to start. QEMU then unloads the
 * plugin, which is why the watcher thread is started last.
 */
#include <stdbool.h>
#include <stdio.h>
#include <signal.h>
#include <string.h>

#include "runtime.h"
#include "shutdown.h"
#include "controller.h"
#include "engine.h"
#include "fdio.h"
#include "log.h"
#include "options.h"
#include "personality.h"
#include "qemu_abi.h"
#include "qemu_internals.h"
#include "qemu_api.h"

QSYNC_PLUGIN_EXPORT int qemu_plugin_version = QSYNC_PLUGIN_API_VERSION;

/*
 * One module loads on QEMU 10 (plugin API 2..4) and on QEMU 7.2 (API 0..1):
 * QEMU reads qemu_plugin_version after dlopen, when this constructor has
 * run, so it can declare version 1 where the newer API is missing. Every
 * function newer than API 1 is therefore resolved at run time, here, into
 * the one table of qemu_api.h, never linked (QEMU binds a plugin's symbols at load: a missing one would fail
 * the load with a linker message instead of ours).
 */
__attribute__((constructor)) static void choose_api_version(void)
{
    qsync__qemu_api_resolve();
    if (qsync__qemu_api.insn_cond_cb == NULL)
        qemu_plugin_version = 1;
}

static const struct qsync__engine *engine;

/* Whether e can run here; if not, why. */
static bool engine_usable(const struct qsync__engine *e, const qemu_info_t *info,
                          const struct qsync__options *opt, char *why, size_t len)
{
    why[0] = '\0';
    return e->usable == NULL || e->usable(info, opt, why, len);
}

/*
 * Below this quantum (a hint from quantum_ns=) engine=auto prefers the
 * insn engine. Measured on QEMU 10.0.2 with 5*10^8 busy instructions
 * (medians of 3): with QEMU and the controller on one core, a stop on the
 * countdown costs about 9 us and one on the timer 17-22 us (QEMU leaves
 * its execution loop for a timer), so insn is 1.8x cheaper at 1 us quanta
 * and 1.4x at 10 us; across two cores the channel's wake-ups dominate
 * (50-75 us a stop): the engines tie at 1 us and the timer engine is
 * 1.3x cheaper at 10 us. From 100 us they cost the same.
 * On the shared-memory channel, where neither side sleeps between quanta,
 * the timer engine's own cost shows (unpinned, docs/benchmarks.md): insn
 * is 1.19x free icount at 1 us against 1.60x, and 1.06x at 10 us against
 * 1.36x; at 100 us they are within noise (1.22x, 1.17x). So there auto
 * takes insn up to and including 10 us.
 */
#define AUTO_INSN_BELOW_NS 10000ull
#define AUTO_INSN_BELOW_NS_SHM 10001ull

/*
 * engine=auto prefers the timer engine (exact, never ahead when idle,
 * QEMU's own clock, any -smp) when QEMU's internals are there, except for
 * quanta below AUTO_INSN_BELOW_NS (..._SHM on shared memory), where the
 * insn engine (which with the
 * internals is never ahead when idle too) goes first; then the insn
 * engine (plugin API 3, -smp 1); then the block engine when this build
 * has one. A named engine is taken or refused with its reason; it never
 * silently becomes another.
 */
static const struct qsync__engine *pick_engine(const qemu_info_t *info,
                                               const struct qsync__options *opt)
{
    const struct qsync__engine *named = NULL;
    char why[512];

    switch (opt->engine) {
    case QSYNC__ENGINE_AUTO: {
        const struct qsync__engine *order[] = {&qsync__engine_timer, &qsync__engine_insn,
                                               &qsync__engine_block};
        uint64_t below = opt->shm_fd >= 0 ? AUTO_INSN_BELOW_NS_SHM : AUTO_INSN_BELOW_NS;
        if (opt->quantum_ns != 0 && opt->quantum_ns < below) {
            order[0] = &qsync__engine_insn;
            order[1] = &qsync__engine_timer;
        }
        char all[1024] = "";
        size_t used = 0;
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
            if (engine_usable(order[i], info, opt, why, sizeof why))
                return order[i];
            int n = snprintf(all + used, sizeof all - used, "%s%s: %s", used ? "; " : "",
                             order[i]->name, why);
            if (n > 0 && (size_t)n < sizeof all - used)
                used += (size_t)n;
        }
        qsync__log("engine=auto found no engine that can run here (%s)", all);
        return NULL;
    }
    case QSYNC__ENGINE_INSN: named = &qsync__engine_insn; break;
    case QSYNC__ENGINE_TIMER: named = &qsync__engine_timer; break;
    case QSYNC__ENGINE_BLOCK: named = &qsync__engine_block; break;
    }
    if (named == NULL)
        return NULL;
    if (!engine_usable(named, info, opt, why, sizeof why)) {
        qsync__log("engine=%s cannot run here: %s", named->name, why);
        return NULL;
    }
    return named;
}

/* Under a fixed -icount shift, instructions are time; anything else makes
 * a lockstep meaningless. Checked only where QEMU lets us see it. */
static int check_icount(const struct qsync__options *opt)
{
    unsigned want = opt->shift;
    unsigned shift = QSYNC_SHIFT_UNKNOWN;
    /* The FIFO personality's rule is the Time Sync Plugin's: say so. */
    const char *who = opt->proto == QSYNC_PROTO_FIFO
                          ? "the FIFO personality (the SIL Kit Time Sync Plugin FIFO protocol, 1 instruction = 1 ns)"
                          : "this plugin";
    switch (qsync__probe_icount(&shift)) {
    case QSYNC_ICOUNT_UNKNOWN:
        return 0; /* this QEMU does not export it: trust the controller */
    case QSYNC_ICOUNT_OFF:
        qsync__log("%s needs -icount shift=%u,sleep=off (QEMU runs without "
                   "-icount, so its clock follows the host)", who, want);
        return -1;
    case QSYNC_ICOUNT_ADAPTIVE:
        qsync__log("%s needs a fixed -icount shift=%u, not shift=auto", who, want);
        return -1;
    case QSYNC_ICOUNT_FIXED:
        if (shift != QSYNC_SHIFT_UNKNOWN && shift != want) {
            if (opt->proto == QSYNC_PROTO_FIFO)
                qsync__log("%s needs -icount shift=0; QEMU runs with -icount shift=%u", who,
                           shift);
            else
                qsync__log("shift=%u does not match QEMU's -icount shift=%u", want, shift);
            return -1;
        }
        return 0;
    }
    return 0;
}

/*
 * The qqq personality's shift defaults to QEMU's own: the adevs -qqq protocol's
 * controller passes only the two descriptors. A QEMU that will not say
 * (or runs without a fixed -icount, which check_icount then reports)
 * needs shift=N.
 */
static int default_shift(struct qsync__options *opt)
{
    unsigned shift = QSYNC_SHIFT_UNKNOWN;
    if (opt->proto != QSYNC_PROTO_QQQ || opt->shift_given)
        return 0;
    switch (qsync__probe_icount(&shift)) {
    case QSYNC_ICOUNT_FIXED:
        if (shift != QSYNC_SHIFT_UNKNOWN) {
            if (shift > QSYNC_MAX_SHIFT) {
                qsync__log("QEMU's -icount shift=%u is above %u, the most this plugin "
                           "supports", shift, QSYNC_MAX_SHIFT);
                return -1;
            }
            opt->shift = shift;
            return 0;
        }
        break;
    case QSYNC_ICOUNT_OFF:
        qsync__log("proto=qqq needs a fixed -icount (the adevs -qqq protocol recommends "
                   "-icount 1,sleep=off); QEMU runs without -icount");
        return -1;
    case QSYNC_ICOUNT_ADAPTIVE:
        qsync__log("proto=qqq needs a fixed -icount shift (the adevs -qqq protocol recommends "
                   "-icount 1,sleep=off), not shift=auto");
        return -1;
    case QSYNC_ICOUNT_UNKNOWN:
        break;
    }
    qsync__log("proto=qqq: this QEMU does not tell the plugin its -icount shift; give it "
               "as shift=N (the N of -icount N)");
    return -1;
}

static const struct qsync__personality *personality_of(enum qsync__proto proto)
{
    switch (proto) {
    case QSYNC_PROTO_QQQ: return &qsync__personality_qqq;
    case QSYNC_PROTO_FIFO: return &qsync__personality_fifo;
    case QSYNC_PROTO_NATIVE: break;
    }
    return &qsync__personality_native;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    if (engine->translate != NULL)
        engine->translate(id, tb);
    qsync__shutdown_instrument_tb(tb);
}

static const struct qsync__personality *personality;

static void at_exit(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
    if (personality->exit != NULL)
        personality->exit();
}

QSYNC_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                            int argc, char **argv)
{
    struct qsync__options opt;

    if (qsync__options_parse(argc, argv, &opt) < 0)
        return 1;
    /* QEMU ignores SIGPIPE; then every report can skip the write guard. */
    struct sigaction pipe_action;
    if (sigaction(SIGPIPE, NULL, &pipe_action) == 0 && pipe_action.sa_handler == SIG_IGN)
        qsync__fdio_sigpipe_ignored();
    /* The controller's death ends QEMU even if the channel's hang-up were
     * missed, or cannot come yet (controller.h). */
    if (opt.proto == QSYNC_PROTO_FIFO && qsync__fifo_cleanup_setup(&opt) < 0)
        return 1;
    if (opt.parent && qsync__controller_check(opt.parent, opt.remove_fifos) < 0)
        return 1;
    personality = personality_of(opt.proto);
    if (!info->system_emulation) {
        qsync__log("needs system emulation (qemu-system-*), not user mode");
        return 1;
    }
    if (default_shift(&opt) < 0 || check_icount(&opt) < 0)
        return 1;
    /* Once, before any engine asks (see qemu_internals.c for the test
     * hook that hides them). */
    const char *missing = NULL;
    (void)qsync__qemu_internals_probe(&missing);
    engine = pick_engine(info, &opt);
    if (engine == NULL)
        return 1;
    if (personality->open(&opt, engine) < 0)
        return 1;
    /* Before the engine can stop (its first stop precedes the guest's
     * first instruction). */
    qsync__runtime_use(personality);
    if (engine->install(id, info, &opt) < 0)
        return 1;
    qsync__shutdown_setup(engine, opt.shift, info);
    if (personality->started != NULL && personality->started(info, &opt) < 0)
        return 1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    if (qsync__term_signals_init() < 0 || personality->watch() < 0)
        return 1;
    return 0;
}

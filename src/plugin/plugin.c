/*
 * The qsync QEMU plugin: the guest-side half of libqsync.
 *
 *   qemu-system-ARCH -icount shift=N,sleep=off \
 *       -plugin .../libqsync-plugin.so,fd_in=R,fd_out=W[,shift=N][,engine=E]
 *
 * This file is the entry point: it checks the options and the QEMU it runs
 * in, picks the engine, says HELLO, and sends EXIT when QEMU exits on its
 * own. The stop itself lives in channel.c, the instrumentation in
 * engine_*.c. Only qemu_plugin_version and qemu_plugin_install are
 * exported.
 *
 * Any refusal prints a message on stderr and returns nonzero from
 * qemu_plugin_install, so QEMU refuses to start. QEMU then unloads the
 * plugin, which is why the watcher thread is started last.
 */
#include <string.h>

#include "channel.h"
#include "engine.h"
#include "log.h"
#include "options.h"
#include "qemu_abi.h"
#include "qemu_probe.h"
#include "qsync/version.h"
#include "wire.h"

QSYNC_PLUGIN_EXPORT int qemu_plugin_version = QSYNC_PLUGIN_API_VERSION;

static const struct qsync__engine *engine;

static const struct qsync__engine *pick_engine(enum qsync__engine_choice choice)
{
    switch (choice) {
    case QSYNC_ENGINE_AUTO:
    case QSYNC_ENGINE_INSN:
        return &qsync__engine_insn;
    case QSYNC_ENGINE_TIMER:
        qsync__log("engine=timer is not available in this build yet (use engine=insn)");
        return NULL;
    case QSYNC_ENGINE_BLOCK:
        qsync__log("engine=block is not available in this build yet (use engine=insn)");
        return NULL;
    }
    return NULL;
}

/* Under a fixed -icount shift, instructions are time; anything else makes
 * a lockstep meaningless. Checked only where QEMU lets us see it. */
static int check_icount(unsigned want_shift)
{
    unsigned shift = QSYNC_SHIFT_UNKNOWN;
    switch (qsync__probe_icount(&shift)) {
    case QSYNC_ICOUNT_UNKNOWN:
        return 0; /* this QEMU does not export it: trust the controller */
    case QSYNC_ICOUNT_OFF:
        qsync__log("this plugin needs -icount shift=%u,sleep=off (QEMU runs without "
                   "-icount, so its clock follows the host)", want_shift);
        return -1;
    case QSYNC_ICOUNT_ADAPTIVE:
        qsync__log("this plugin needs a fixed -icount shift=%u, not shift=auto", want_shift);
        return -1;
    case QSYNC_ICOUNT_FIXED:
        if (shift != QSYNC_SHIFT_UNKNOWN && shift != want_shift) {
            qsync__log("shift=%u does not match QEMU's -icount shift=%u", want_shift, shift);
            return -1;
        }
        return 0;
    }
    return 0;
}

static int say_hello(const qemu_info_t *info, const struct qsync__options *opt)
{
    struct qsync_wire_msg msg;
    struct qsync_wire_hello *h = &msg.u.hello;

    memset(&msg, 0, sizeof msg);
    msg.type = QSYNC_MSG_HELLO;
    h->major = QSYNC_WIRE_MAJOR;
    h->minor = QSYNC_WIRE_MINOR;
    h->plugin_version = QSYNC_VERSION_HEX;
    h->n_vcpus = (uint32_t)info->system.smp_vcpus;
    h->engine = engine->wire_id;
    h->icount_shift = (uint8_t)opt->shift;
    h->api_version = (uint16_t)info->version.cur;
    h->guarantees = engine->guarantees;
    if (info->target_name != NULL)
        strncpy(h->target, info->target_name, sizeof h->target - 1);

    int rc = qsync__channel_send(&msg);
    if (rc < 0) {
        qsync__log("cannot send HELLO on fd_out=%d: %s", opt->fd_out, strerror(-rc));
        return -1;
    }
    return 0;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    engine->translate(id, tb);
}

static void at_exit(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
    qsync__channel_exit();
}

QSYNC_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                            int argc, char **argv)
{
    struct qsync__options opt;

    if (qsync__options_parse(argc, argv, &opt) < 0)
        return 1;
    if (!info->system_emulation) {
        qsync__log("needs system emulation (qemu-system-*), not user mode");
        return 1;
    }
    engine = pick_engine(opt.engine);
    if (engine == NULL)
        return 1;
    if (check_icount(opt.shift) < 0)
        return 1;
    if (qsync__channel_open(opt.fd_in, opt.fd_out, engine) < 0)
        return 1;
    if (engine->install(id, info, &opt) < 0)
        return 1;
    if (say_hello(info, &opt) < 0)
        return 1;
    if (engine->translate != NULL)
        qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    if (qsync__channel_start_watcher() < 0)
        return 1;
    return 0;
}

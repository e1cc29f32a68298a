/*
 * qqq mode: the adevs -qqq protocol, byte for byte. The simulator writes a
 * native int of microseconds that QEMU may advance; QEMU answers with the
 * native int of microseconds it did advance, at least the request. Closing
 * the pipes ends QEMU.
 *
 * The QEMU side is either a QEMU patched with -qqq, or stock QEMU with our
 * plugin in its qqq personality (qsync_options.qqq_use_plugin).
 */
#include "internal.h"
#include "legacy.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The mode's state: the grant in flight, in microseconds. */
struct qqq_state {
    int32_t req_us;
};

static struct qqq_state *state(const qsync_ctx *ctx)
{
    return ctx->mode_state;
}

static int qqq_init(qsync_ctx *ctx)
{
    ctx->mode_state = calloc(1, sizeof(struct qqq_state));
    return ctx->mode_state ? 0 : -ENOMEM;
}

static void qqq_fini(qsync_ctx *ctx)
{
    free(ctx->mode_state);
    ctx->mode_state = NULL;
}

/* The icount shift of the user's own -icount (N or shift=N), or -1. */
static int user_shift(const char *const argv[])
{
    for (size_t i = 0; argv[i]; i++) {
        const char *a = argv[i][0] == '-' && argv[i][1] == '-' ? argv[i] + 1 : argv[i];
        if (strcmp(a, "-icount") != 0 || !argv[i + 1])
            continue;
        const char *v = argv[i + 1];
        const char *s = strstr(v, "shift=");
        if (s)
            v = s + 6;
        if (*v < '0' || *v > '9')
            return -2; /* auto, or something we cannot read */
        return atoi(v);
    }
    return -1;
}

static int qqq_prepare(qsync_ctx *ctx, const char *const argv[], struct qsync__launch *l)
{
    int shift = user_shift(argv);
    int rc;
    if (shift == -2)
        return qsync__set_error(ctx, QSYNC_EARG,
                                "qqq mode: the -icount in argv needs a fixed shift "
                                "(e.g. -icount 1,sleep=off)");
    if (shift > 10)
        return qsync__set_error(ctx, QSYNC_EARG, "qqq mode: -icount shift %d is out of range 0..10",
                                shift);
    if (shift < 0) {
        shift = 1; /* The adevs -qqq protocol's -icount 1,sleep=off */
        if (qsync__launch_add(l, "-icount") || qsync__launch_add(l, "1,sleep=off"))
            return qsync__set_error(ctx, QSYNC_EARG, "too many arguments");
    }
    if (!qsync__argv_has(argv, "-rtc") &&
        (qsync__launch_add(l, "-rtc") || qsync__launch_add(l, "clock=vm")))
        return qsync__set_error(ctx, QSYNC_EARG, "too many arguments");
    if (ctx->opts.qqq_use_plugin) {
        rc = qsync__find_plugin(ctx);
        if (rc)
            return rc;
        char rest[128];
        snprintf(rest, sizeof rest, "proto=qqq,fd_in=%d,fd_out=%d,shift=%d,parent=%d",
                 QSYNC__CHILD_GRANT_FD, QSYNC__CHILD_REPORT_FD, shift, (int)getpid());
        rc = qsync__launch_plugin(ctx, l, rest);
        if (rc)
            return rc;
    } else if (qsync__launch_add(l, "-qqq") ||
               qsync__launch_add(l, "write=%d,read=%d", QSYNC__CHILD_REPORT_FD,
                                 QSYNC__CHILD_GRANT_FD)) {
        return qsync__set_error(ctx, QSYNC_EARG, "too many arguments");
    }
    ctx->hello.icount_shift = (uint8_t)shift;

    return qsync__transport_pipes(ctx, l);
}

static void qqq_started(qsync_ctx *ctx)
{
    /* The protocol has no handshake: QEMU is ready when it reads. */
    qsync__on_ready(ctx);
}

static int qqq_grant(qsync_ctx *ctx, uint64_t seq, uint64_t deadline_ns, uint64_t delta_ns)
{
    (void)seq;
    (void)deadline_ns;
    if (delta_ns == 0 || delta_ns % 1000 != 0)
        return qsync__set_error(ctx, QSYNC_EARG,
                                "qqq mode: an advance must be a positive whole number of "
                                "microseconds (got %llu ns)",
                                (unsigned long long)delta_ns);
    if (delta_ns / 1000 > INT_MAX)
        return qsync__set_error(ctx, QSYNC_ERANGE,
                                "qqq mode: %llu us does not fit the protocol's int (max %d us)",
                                (unsigned long long)(delta_ns / 1000), INT_MAX);
    int us = (int)(delta_ns / 1000);
    int rc = qsync__transport_send(ctx, &us, sizeof us);
    if (rc == 0)
        state(ctx)->req_us = us;
    return rc;
}

static size_t qqq_consume(qsync_ctx *ctx, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (len - off >= sizeof(int) && !qsync__ctx_done(ctx)) {
        int got;
        memcpy(&got, buf + off, sizeof got);
        off += sizeof got;
        enum qsync__qqq_verdict v = qsync__qqq_judge(ctx->pending_seq != 0, state(ctx)->req_us, got);
        if (v == QSYNC__QQQ_UNASKED) {
            qsync__on_failure(ctx, QSYNC_EPROTO,
                              "qqq protocol error: QEMU answered %d us with no advance pending",
                              got);
            break;
        }
        if (v == QSYNC__QQQ_SHORT) {
            qsync__on_failure(ctx, QSYNC_EPROTO,
                              "qqq protocol error: QEMU advanced %d us of the %d requested "
                              "(it must be at least the request)",
                              got, state(ctx)->req_us);
            break;
        }
        uint64_t reached = ctx->now_ns + (uint64_t)got * 1000u;
        qsync_stop stop;
        memset(&stop, 0, sizeof stop);
        stop.seq = ctx->pending_seq;
        stop.deadline_ns = ctx->pending_deadline;
        stop.virtual_ns = reached;
        stop.overshoot_insns = 0; /* the protocol carries no instruction count */
        stop.flags = got != state(ctx)->req_us ? QSYNC_STOP_DEVIATION : 0;
        /* QEMU's clock is where it says; the next request starts there. */
        qsync__on_complete(ctx, &stop, reached);
    }
    return off;
}

const struct qsync__mode qsync__mode_qqq = {
    .name = "qqq",
    .not_ready = "was not ready",
    .ready_moment = "it was ready",
    .ready_at_spawn = 1,
    .prepare = qqq_prepare,
    .started = qqq_started,
    .grant = qqq_grant,
    .consume = qqq_consume,
    .init = qqq_init,
    .fini = qqq_fini,
};

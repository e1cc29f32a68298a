/*
 * Plugin mode: the native protocol with our plugin (docs/protocol.md),
 * encoded and decoded by the codec that the plugin compiles too.
 */
#include "internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int plugin_prepare(qsync_ctx *ctx, const char *const argv[], struct qsync__launch *l)
{
    for (size_t i = 0; argv[i]; i++) {
        const char *a = argv[i][0] == '-' && argv[i][1] == '-' ? argv[i] + 1 : argv[i];
        if (strcmp(a, "-icount") == 0)
            return qsync__set_error(ctx, QSYNC_EARG,
                                    "argv[%zu] '%s': the library sets -icount itself; "
                                    "use qsync_options.icount_shift",
                                    i, argv[i]);
    }
    int rc = qsync__find_plugin(ctx);
    if (rc)
        return rc;
    /* The shared-memory transport where asked for; AUTO falls back to
     * the pipes when the memfd or the eventfd cannot be made. */
    char shm[32] = "";
    if (qsync__transport_shm_wanted(ctx)) {
        rc = qsync__transport_shm_prepare(ctx, l);
        if (rc && ctx->opts.channel == QSYNC_CHANNEL_SHM)
            return rc;
        if (rc)
            ctx->errmsg[0] = '\0';
        else
            snprintf(shm, sizeof shm, ",shm=%d,efd=%d", QSYNC__CHILD_SHM_FD, QSYNC__CHILD_EFD);
    }
    char rest[256];
    int n = snprintf(rest, sizeof rest, "fd_in=%d,fd_out=%d%s,shift=%u,parent=%d", QSYNC__CHILD_GRANT_FD,
                     QSYNC__CHILD_REPORT_FD, shm, ctx->opts.icount_shift, (int)getpid());
    if (ctx->opts.quantum_hint_ns)
        n += snprintf(rest + n, sizeof rest - (size_t)n, ",quantum_ns=%llu",
                      (unsigned long long)ctx->opts.quantum_hint_ns);
    if (ctx->opts.next_event)
        snprintf(rest + n, sizeof rest - (size_t)n, ",next=1");
    rc = qsync__nic_prepare(ctx, argv[0], l, rest, sizeof rest);
    if (rc)
        return rc;
    if (qsync__launch_add(l, "-icount") ||
        qsync__launch_add(l, "shift=%u,sleep=off", ctx->opts.icount_shift))
        return qsync__set_error(ctx, QSYNC_EARG, "too many arguments");
    rc = qsync__launch_plugin(ctx, l, rest);
    if (rc)
        return rc;
    return qsync__transport_pipes(ctx, l);
}

static void plugin_started(qsync_ctx *ctx)
{
    (void)ctx; /* ready comes with the plugin's HELLO */
}

static int plugin_grant(qsync_ctx *ctx, uint64_t seq, uint64_t deadline_ns, uint64_t delta_ns)
{
    struct qsync__wire_msg m;
    uint8_t frame[QSYNC__WIRE_HEADER_SIZE + 16];
    (void)delta_ns;
    /* Only the header and the grant: the whole message is 4 KiB, and this
     * runs at every quantum. */
    memset(&m, 0, offsetof(struct qsync__wire_msg, u) + sizeof m.u.grant);
    m.type = QSYNC__MSG_GRANT;
    m.u.grant.seq = seq;
    m.u.grant.deadline_ns = deadline_ns;
    long n = qsync__wire_encode(&m, frame, sizeof frame);
    if (n < 0)
        return qsync__set_error(ctx, QSYNC_EPROTO, "cannot encode a grant");
    return qsync__transport_send(ctx, frame, (size_t)n);
}

static int plugin_input(qsync_ctx *ctx, const void *data, size_t len)
{
    /* Frames go the grant's way, before it: the plugin reads them while
     * the guest is stopped and feeds them in when the grant lets it run. */
    /* 4 KiB each, and contexts may live on several threads: on the heap. */
    struct qsync__wire_msg *m = malloc(sizeof *m);
    uint8_t *frame = malloc(QSYNC__WIRE_MAX_FRAME);
    const uint8_t *p = data;
    int rc = 0;
    if (!m || !frame)
        rc = qsync__set_error(ctx, -ENOMEM, "qsync_send_input: out of memory");
    while (rc == 0 && len > 0) {
        size_t n = len < QSYNC__WIRE_MAX_INPUT ? len : QSYNC__WIRE_MAX_INPUT;
        memset(m, 0, sizeof *m);
        m->type = QSYNC__MSG_INPUT;
        m->u.input.len = (uint32_t)n;
        memcpy(m->u.input.data, p, n);
        long fl = qsync__wire_encode(m, frame, QSYNC__WIRE_MAX_FRAME);
        if (fl < 0)
            rc = qsync__set_error(ctx, QSYNC_EPROTO, "cannot encode guest input");
        else
            rc = qsync__transport_send(ctx, frame, (size_t)fl);
        p += n;
        len -= n;
    }
    free(m);
    free(frame);
    return rc;
}

static void dispatch(qsync_ctx *ctx, const struct qsync__wire_msg *m)
{
    switch (m->type) {
    case QSYNC__MSG_HELLO:
        qsync__on_hello(ctx, &m->u.hello);
        break;
    case QSYNC__MSG_REPORT:
        qsync__on_report(ctx, &m->u.report);
        break;
    case QSYNC__MSG_EXIT:
        qsync__on_exit_msg(ctx, &m->u.exit);
        break;
    case QSYNC__MSG_ERROR:
        qsync__on_failure(ctx, QSYNC_EPLUGIN, "qsync plugin: %s", m->u.error.text);
        break;
    case QSYNC__MSG_FRAME:
        qsync__nic_on_frame(ctx, &m->u.frame);
        break;
    case QSYNC__MSG_NIC_STATUS:
        qsync__nic_on_status(ctx, &m->u.nic_status);
        break;
    case QSYNC__MSG_NEXT:
        qsync__on_next(ctx, &m->u.next);
        break;
    default: /* GRANT, INPUT: only the library sends them. */
        qsync__on_failure(ctx, QSYNC_EPROTO, "protocol error: the plugin sent a message of type %u, "
                          "which only the library sends", (unsigned)m->type);
        break;
    }
}

static size_t plugin_consume(qsync_ctx *ctx, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (!qsync__ctx_done(ctx)) {
        struct qsync__wire_msg m;
        size_t used = 0;
        int st = qsync__wire_decode(buf + off, len - off, &m, &used);
        if (st == QSYNC__WIRE_NEED_MORE)
            break;
        if (st != QSYNC__WIRE_OK) {
            const uint8_t *b = buf + off;
            size_t have = len - off;
            qsync__on_failure(ctx, QSYNC_EPROTO,
                              "protocol error: %s in a frame from the plugin "
                              "(first bytes %02x %02x %02x %02x)",
                              qsync__wire_status_text(st), have > 0 ? b[0] : 0,
                              have > 1 ? b[1] : 0, have > 2 ? b[2] : 0, have > 3 ? b[3] : 0);
            break;
        }
        off += used;
        dispatch(ctx, &m);
    }
    return off;
}

const struct qsync__mode qsync__mode_plugin = {
    .name = "plugin",
    .not_ready = "sent no handshake",
    .ready_moment = "the plugin's handshake",
    .prepare = plugin_prepare,
    .started = plugin_started,
    .grant = plugin_grant,
    .consume = plugin_consume,
    .input = plugin_input,
};

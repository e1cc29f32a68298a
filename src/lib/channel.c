/*
 * The native protocol on the loop: frames from the plugin are read from a
 * uv pipe and decoded with the shared codec (src/proto/wire.c); grants are
 * encoded with the same codec and written straight to the grant pipe.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "fdio.h"

static void ch_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    qsync_ctx *ctx = h->data;
    (void)suggested;
    buf->base = (char *)ctx->rbuf + ctx->rlen;
    buf->len = sizeof ctx->rbuf - ctx->rlen;
}

static void dispatch(qsync_ctx *ctx, const struct qsync_wire_msg *m)
{
    switch (m->type) {
    case QSYNC_MSG_HELLO:
        qsync__on_hello(ctx, &m->u.hello);
        break;
    case QSYNC_MSG_REPORT:
        qsync__on_report(ctx, &m->u.report);
        break;
    case QSYNC_MSG_EXIT:
        qsync__on_exit_msg(ctx, &m->u.exit);
        break;
    case QSYNC_MSG_ERROR:
        qsync__set_error(ctx, QSYNC_EPLUGIN, "qsync plugin: %s", m->u.error.text);
        qsync__fail(ctx, QSYNC_EPLUGIN);
        break;
    default: /* GRANT: only the library sends it. */
        qsync__set_error(ctx, QSYNC_EPROTO, "protocol error: the plugin sent a GRANT");
        qsync__fail(ctx, QSYNC_EPROTO);
        break;
    }
}

static void ch_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    qsync_ctx *ctx = s->data;
    (void)buf;
    if (n < 0) {
        uv_read_stop(s);
        ctx->ch_eof = 1;
        if (ctx->rlen > 0 && !ctx->fatal) {
            qsync__set_error(ctx, QSYNC_EPROTO,
                             "protocol error: the channel ended inside a frame (%zu bytes)",
                             ctx->rlen);
            qsync__fail(ctx, QSYNC_EPROTO);
        }
        qsync__on_channel_eof(ctx);
        return;
    }
    ctx->rlen += (size_t)n;
    size_t off = 0;
    while (!ctx->fatal && !ctx->closing) {
        struct qsync_wire_msg m;
        size_t used = 0;
        int st = qsync__wire_decode(ctx->rbuf + off, ctx->rlen - off, &m, &used);
        if (st == QSYNC_WIRE_NEED_MORE)
            break;
        if (st != QSYNC_WIRE_OK) {
            const uint8_t *b = ctx->rbuf + off;
            size_t have = ctx->rlen - off;
            qsync__set_error(ctx, QSYNC_EPROTO,
                             "protocol error: %s in a frame from the plugin "
                             "(first bytes %02x %02x %02x %02x)",
                             qsync__wire_status_text(st), have > 0 ? b[0] : 0,
                             have > 1 ? b[1] : 0, have > 2 ? b[2] : 0, have > 3 ? b[3] : 0);
            qsync__fail(ctx, QSYNC_EPROTO);
            break;
        }
        off += used;
        dispatch(ctx, &m);
    }
    if (ctx->fatal || ctx->closing) {
        ctx->rlen = 0;
        return;
    }
    memmove(ctx->rbuf, ctx->rbuf + off, ctx->rlen - off);
    ctx->rlen -= off;
}

int qsync__channel_start(qsync_ctx *ctx, int report_fd)
{
    int rc = uv_pipe_init(ctx->loop, &ctx->ch_in, 0);
    if (rc) {
        close(report_fd);
        return rc;
    }
    ctx->ch_in.data = ctx;
    ctx->ch_in_open = 1;
    ctx->handles_open++;
    rc = uv_pipe_open(&ctx->ch_in, report_fd);
    if (rc) {
        close(report_fd);
        return rc;
    }
    return uv_read_start((uv_stream_t *)&ctx->ch_in, ch_alloc_cb, ch_read_cb);
}

int qsync__send_grant(qsync_ctx *ctx, uint64_t seq, uint64_t deadline_ns)
{
    struct qsync_wire_msg m;
    uint8_t frame[QSYNC_WIRE_HEADER_SIZE + 16];
    memset(&m, 0, sizeof m);
    m.type = QSYNC_MSG_GRANT;
    m.u.grant.seq = seq;
    m.u.grant.deadline_ns = deadline_ns;
    long n = qsync__wire_encode(&m, frame, sizeof frame);
    if (n < 0)
        return qsync__set_error(ctx, QSYNC_EPROTO, "cannot encode a grant");
    if (ctx->grant_fd < 0)
        return qsync__set_error(ctx, QSYNC_EEXITED, "the channel to QEMU is closed");
    int rc = qsync__write_all(ctx->grant_fd, frame, (size_t)n);
    if (rc == -EPIPE)
        return qsync__set_error(ctx, QSYNC_EEXITED, "QEMU closed its end of the channel");
    if (rc == -EAGAIN)
        return qsync__set_error(ctx, QSYNC_EPROTO, "the channel to QEMU is full");
    if (rc)
        return qsync__set_error(ctx, rc, "writing a grant: %s", qsync_strerror(rc));
    return 0;
}

/*
 * The channel on the loop, whatever the mode: what QEMU sends arrives on a
 * uv pipe and is buffered until the mode has whole messages to consume;
 * grants are written straight to the grant descriptor, because they are
 * small and there is never more than one in flight.
 *
 * With the shared-memory transport (shm_channel.c) the frames travel in
 * rings instead and are delivered through qsync__channel_deliver() the
 * same way; the pipes then carry nothing but their ends of file.
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

static void ch_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    qsync_ctx *ctx = s->data;
    (void)buf;
    if (n < 0) {
        uv_read_stop(s);
        /* QEMU is gone: what its plugin put in the ring comes first. */
        if (ctx->shm_base)
            qsync__shm_eof(ctx);
        ctx->ch_eof = 1;
        if (ctx->rlen > 0 && !ctx->fatal) {
            qsync__set_error(ctx, QSYNC_EPROTO,
                             "protocol error: the channel ended inside a message (%zu bytes)",
                             ctx->rlen);
            qsync__fail(ctx, QSYNC_EPROTO);
        }
        qsync__on_channel_eof(ctx);
        return;
    }
    if (ctx->shm_base && n > 0) {
        if (!ctx->fatal && !ctx->closing) {
            qsync__set_error(ctx, QSYNC_EPROTO,
                             "protocol error: %zd bytes on the report pipe, which carries "
                             "nothing when frames travel in shared memory",
                             n);
            qsync__fail(ctx, QSYNC_EPROTO);
        }
        return;
    }
    ctx->rlen += (size_t)n;
    qsync__channel_deliver(ctx);
}

void qsync__channel_deliver(qsync_ctx *ctx)
{
    size_t used = 0;
    if (!ctx->fatal && !ctx->closing)
        used = ctx->mode->consume(ctx, ctx->rbuf, ctx->rlen);
    if (ctx->fatal || ctx->closing) {
        /* Nothing more is believed once the channel has failed. */
        ctx->rlen = 0;
        return;
    }
    memmove(ctx->rbuf, ctx->rbuf + used, ctx->rlen - used);
    ctx->rlen -= used;
}

int qsync__channel_start(qsync_ctx *ctx, int fd)
{
    int rc = uv_pipe_init(ctx->loop, &ctx->ch_in, 0);
    if (rc) {
        close(fd);
        return rc;
    }
    ctx->ch_in.data = ctx;
    ctx->ch_in_open = 1;
    ctx->handles_open++;
    rc = uv_pipe_open(&ctx->ch_in, fd);
    if (rc) {
        close(fd);
        return rc;
    }
    if (ctx->shm_base && (rc = qsync__shm_start(ctx)) != 0)
        return rc;
    return uv_read_start((uv_stream_t *)&ctx->ch_in, ch_alloc_cb, ch_read_cb);
}

int qsync__write_grant(qsync_ctx *ctx, const void *buf, size_t len)
{
    if (ctx->grant_fd < 0)
        return qsync__set_error(ctx, QSYNC_EEXITED, "the channel to QEMU is closed");
    if (ctx->shm_base)
        return qsync__shm_send(ctx, buf, len); /* grant_fd is then the lifeline only */
    int rc = ctx->grant_reader_fd >= 0 ? qsync__write_all_unguarded(ctx->grant_fd, buf, len)
                                       : qsync__write_all(ctx->grant_fd, buf, len);
    if (rc == -EPIPE)
        return qsync__set_error(ctx, QSYNC_EEXITED, "QEMU closed its end of the channel");
    if (rc == -EAGAIN)
        return qsync__set_error(ctx, QSYNC_EPROTO, "the channel to QEMU is full");
    if (rc)
        return qsync__set_error(ctx, rc, "writing a grant: %s", qsync_strerror(rc));
    return 0;
}

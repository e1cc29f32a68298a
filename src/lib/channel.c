/*
 * The framing, whatever the mode and the transport: what QEMU sends is
 * gathered here until the mode has whole messages to consume. The
 * transports (transport_pipe.c, transport_shm.c) put the bytes in
 * qsync__framing_space() and say how many came.
 */
#include "internal.h"

#include <string.h>

uint8_t *qsync__framing_space(qsync_ctx *ctx, size_t *room)
{
    *room = sizeof ctx->framing.buf - ctx->framing.len;
    return ctx->framing.buf + ctx->framing.len;
}

void qsync__framing_received(qsync_ctx *ctx, size_t n)
{
    struct qsync__framing *f = &ctx->framing;
    f->len += n;
    size_t used = 0;
    if (!qsync__ctx_done(ctx))
        used = ctx->mode->consume(ctx, f->buf, f->len);
    if (qsync__ctx_done(ctx)) {
        /* Nothing more is believed once the channel has failed. */
        f->len = 0;
        return;
    }
    memmove(f->buf, f->buf + used, f->len - used);
    f->len -= used;
}

void qsync__framing_ended(qsync_ctx *ctx)
{
    if (ctx->framing.len > 0)
        qsync__on_failure(ctx, QSYNC_EPROTO,
                          "protocol error: the channel ended inside a message (%zu bytes)",
                          ctx->framing.len);
}

/*
 * The transport over pipes (struct qsync__transport, the pipe ops), and
 * the pipes that every transport keeps: what QEMU sends arrives on the
 * report pipe, read on the loop; grants are written straight to the grant
 * descriptor, because they are small and there is never more than one in
 * flight. With the shared-memory transport (transport_shm.c) the frames
 * travel in rings instead, and the pipes carry nothing but their ends of
 * file: closing grant_fd ends QEMU, and the report pipe's end says that
 * QEMU is gone.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "fdio.h"

void qsync__transport_init(qsync_ctx *ctx)
{
    ctx->transport.ops = &qsync__transport_pipe;
    ctx->transport.grant_fd = -1;
    ctx->transport.grant_reader_fd = -1;
}

/* Makes a close-on-exec pipe: [0] read end, [1] write end. */
static int make_pipe(qsync_ctx *ctx, int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) == 0)
        return 0;
    int rc = -errno;
    return qsync__set_error(ctx, rc, "pipe: %s", strerror(errno));
}

int qsync__transport_pipes(qsync_ctx *ctx, struct qsync__launch *l)
{
    int grant[2], report[2];
    int rc = make_pipe(ctx, grant);
    if (rc)
        return rc;
    rc = make_pipe(ctx, report);
    if (rc) {
        close(grant[0]);
        close(grant[1]);
        return rc;
    }
    l->child_in = grant[0];
    l->our_out = grant[1];
    l->our_in = report[0];
    l->child_out = report[1];
    l->keep_reader = 1;
    return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    qsync_ctx *ctx = h->data;
    size_t room;
    (void)suggested;
    buf->base = (char *)qsync__framing_space(ctx, &room);
    buf->len = room;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    qsync_ctx *ctx = s->data;
    (void)buf;
    if (n < 0) {
        uv_read_stop(s);
        /* QEMU is gone: what it left elsewhere (the rings) comes first. */
        ctx->transport.ops->at_eof(ctx);
        ctx->transport.eof = 1;
        qsync__framing_ended(ctx);
        qsync__on_channel_eof(ctx);
        return;
    }
    if (n > 0)
        ctx->transport.ops->pipe_bytes(ctx, (size_t)n);
}

int qsync__transport_start(qsync_ctx *ctx, struct qsync__launch *l)
{
    struct qsync__transport *t = &ctx->transport;
    if (l->keep_reader) {
        t->grant_reader_fd = l->child_in;
        l->child_in = -1;
    }
    t->grant_fd = l->our_out;
    l->our_out = -1;
    if (t->grant_fd >= 0) {
        /* Non-blocking: the loop thread must never block on a write, and a
         * full channel (impossible with one grant in flight) is reported. */
        fcntl(t->grant_fd, F_SETFL, fcntl(t->grant_fd, F_GETFL) | O_NONBLOCK);
    }
    int fd = l->our_in;
    l->our_in = -1;
    int rc = uv_pipe_init(ctx->loop, &t->in, 0);
    if (rc) {
        close(fd);
        return rc;
    }
    qsync__handle_opened(ctx, (uv_handle_t *)&t->in);
    t->in_open = 1;
    rc = uv_pipe_open(&t->in, fd);
    if (rc) {
        close(fd);
        return rc;
    }
    rc = t->ops->start(ctx);
    if (rc)
        return rc;
    return uv_read_start((uv_stream_t *)&t->in, alloc_cb, read_cb);
}

int qsync__transport_send(qsync_ctx *ctx, const void *buf, size_t len)
{
    if (ctx->transport.grant_fd < 0)
        return qsync__set_error(ctx, QSYNC_EEXITED, "the channel to QEMU is closed");
    return ctx->transport.ops->send(ctx, buf, len);
}

int qsync__transport_can_send(const qsync_ctx *ctx)
{
    return ctx->transport.grant_fd >= 0;
}

void qsync__transport_set_grant_fd(qsync_ctx *ctx, int fd)
{
    ctx->transport.grant_fd = fd;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

void qsync__transport_hangup(qsync_ctx *ctx)
{
    close_fd(&ctx->transport.grant_fd);
}

void qsync__transport_close_fds(qsync_ctx *ctx)
{
    close_fd(&ctx->transport.grant_fd);
    close_fd(&ctx->transport.grant_reader_fd);
}

void qsync__transport_end_now(qsync_ctx *ctx)
{
    struct qsync__transport *t = &ctx->transport;
    if (!t->in_open || t->eof)
        return;
    int fd = -1;
    if (uv_fileno((uv_handle_t *)&t->in, &fd) == 0) {
        while (!ctx->fatal) {
            size_t room;
            uint8_t *p = qsync__framing_space(ctx, &room);
            ssize_t n = read(fd, p, room < 64 ? room : 64);
            if (n <= 0)
                break;
            qsync__framing_received(ctx, (size_t)n);
        }
    }
    uv_read_stop((uv_stream_t *)&t->in);
    t->eof = 1;
    qsync__on_channel_eof(ctx);
}

void qsync__transport_spin(qsync_ctx *ctx, const int *flag)
{
    ctx->transport.ops->spin(ctx, flag);
}

void qsync__transport_close(qsync_ctx *ctx)
{
    struct qsync__transport *t = &ctx->transport;
    qsync__transport_close_fds(ctx);
    if (t->in_open) {
        t->in_open = 0;
        qsync__handle_close((uv_handle_t *)&t->in);
    }
    t->ops->release(ctx);
}

void qsync__transport_release(qsync_ctx *ctx)
{
    ctx->transport.ops->release(ctx);
}

/* ---- the pipe ops -------------------------------------------------------- */

static int pipe_start(qsync_ctx *ctx)
{
    (void)ctx; /* the report pipe is all there is to watch */
    return 0;
}

static int pipe_send(qsync_ctx *ctx, const void *buf, size_t len)
{
    const struct qsync__transport *t = &ctx->transport;
    int rc = t->grant_reader_fd >= 0 ? qsync__write_all_unguarded(t->grant_fd, buf, len)
                                     : qsync__write_all(t->grant_fd, buf, len);
    if (rc == -EPIPE)
        return qsync__set_error(ctx, QSYNC_EEXITED, "QEMU closed its end of the channel");
    if (rc == -EAGAIN)
        return qsync__set_error(ctx, QSYNC_EFULL, "the channel to QEMU is full");
    if (rc)
        return qsync__set_error(ctx, rc, "writing a grant: %s", qsync_strerror(rc));
    return 0;
}

static void pipe_bytes(qsync_ctx *ctx, size_t n)
{
    qsync__framing_received(ctx, n);
}

static void pipe_nothing(qsync_ctx *ctx)
{
    (void)ctx;
}

static void pipe_spin(qsync_ctx *ctx, const int *flag)
{
    (void)ctx; /* nothing to poll: the loop waits on the pipe */
    (void)flag;
}

const struct qsync__transport_ops qsync__transport_pipe = {
    .name = "pipe",
    .start = pipe_start,
    .send = pipe_send,
    .pipe_bytes = pipe_bytes,
    .at_eof = pipe_nothing,
    .spin = pipe_spin,
    .release = pipe_nothing,
};

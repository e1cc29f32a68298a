/*
 * The QEMU child: its process, its stdio, its death (struct qsync__child).
 *
 * QEMU gets the grant pipe's read end as fd 3 and the report pipe's write
 * end as fd 4 (and, with the shared-memory transport, the memfd as fd 5
 * and the eventfd as fd 6), and nothing else of ours: every descriptor the
 * library opens is close-on-exec, and libuv dups them into place in the
 * child. QEMU runs in its own session so that a terminal's Ctrl-C reaches
 * the controller, which then ends QEMU through the channel, in order.
 *
 * QEMU's stderr is read continuously: the last stderr_tail_bytes stay in a
 * ring for the exited callback and the error messages, and every chunk is
 * forwarded (forward.c). Its stdout goes to the caller's, nowhere, the
 * output callback, or lines.c.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void qsync__child_init(qsync_ctx *ctx)
{
    uv_timer_init(ctx->loop, &ctx->child.kill_timer);
    qsync__handle_opened(ctx, (uv_handle_t *)&ctx->child.kill_timer);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static __thread char chunk[4096];
    buf->base = chunk;
    buf->len = sizeof chunk;
}

static void tail_append(struct qsync__child *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c->tail[c->tail_pos] = p[i];
        c->tail_pos = (c->tail_pos + 1) % c->tail_cap;
        if (c->tail_len < c->tail_cap)
            c->tail_len++;
    }
}

/* QEMU's stderr: kept in the tail and forwarded as it comes, so the user
 * sees QEMU's own words, to the stderr_output callback or, without ever
 * waiting, to the caller's stderr (forward.c). */
static void err_bytes(qsync_ctx *ctx, const char *p, size_t n)
{
    tail_append(&ctx->child, p, n);
    qsync__forward_stderr(ctx, p, n);
}

static void err_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    qsync_ctx *ctx = s->data;
    if (n > 0) {
        err_bytes(ctx, buf->base, (size_t)n);
        return;
    }
    if (n < 0) {
        /* EOF or a read error: either way nothing more will come. */
        uv_read_stop(s);
        ctx->child.err_eof = 1;
        qsync__on_stdio_eof(ctx);
    }
}

/* The guest's stdout: to the output callback as it comes, or held for
 * delivery by lines at the stops. */
static void out_bytes(qsync_ctx *ctx, const char *data, size_t n)
{
    if (ctx->opts.stdout_mode == QSYNC_OUTPUT_LINES)
        qsync__lines_add(ctx, data, n);
    else
        QSYNC__CALL(ctx, output, data, n);
}

static void out_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    qsync_ctx *ctx = s->data;
    if (n > 0) {
        /* Also while closing: what the guest printed before the close may
         * arrive after it, and is not to be lost. */
        out_bytes(ctx, buf->base, (size_t)n);
        return;
    }
    if (n < 0) {
        uv_read_stop(s);
        /* The last lines wait for the channel's end, which brings the
         * plugin's last word on the time; unless it has come already. */
        if (ctx->opts.stdout_mode == QSYNC_OUTPUT_LINES && (ctx->transport.eof || ctx->exited_fired))
            qsync__lines_at_end(ctx);
    }
}

/* Reads what is waiting in one of QEMU's stdio pipes, outside the loop's
 * own reads, and hands it to sink. libuv reads these pipes with plain
 * read()s into the caller's buffer and keeps nothing back, so reading here
 * keeps the bytes in order. The descriptor is non-blocking (libuv made it
 * so). A bounded number of rounds: a guest that prints without end cannot
 * hold the caller. *open is checked before each read: a sink may close. */
static void drain(qsync_ctx *ctx, uv_handle_t *h, const int *open,
                  void (*sink)(qsync_ctx *, const char *, size_t))
{
    uv_os_fd_t fd;
    if (!*open || uv_fileno(h, &fd) != 0)
        return;
    for (int round = 0; round < 64 && *open; round++) {
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* EAGAIN: all read; EOF and errors: the loop sees them */
        sink(ctx, chunk, (size_t)n);
        if ((size_t)n < sizeof chunk)
            return;
    }
}

void qsync__drain_output(qsync_ctx *ctx)
{
    struct qsync__child *c = &ctx->child;
    drain(ctx, (uv_handle_t *)&c->out_pipe, &c->out_open, out_bytes);
}

void qsync__drain_stderr(qsync_ctx *ctx)
{
    struct qsync__child *c = &ctx->child;
    if (!c->err_eof)
        drain(ctx, (uv_handle_t *)&c->err_pipe, &c->err_open, err_bytes);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig)
{
    qsync__on_proc_exit(p->data, status, sig);
}

/* The stderr ring and the stdio pipes (not yet connected). */
static int stdio_init(qsync_ctx *ctx)
{
    struct qsync__child *c = &ctx->child;
    free(c->tail);
    c->tail = malloc(ctx->opts.stderr_tail_bytes);
    c->tail_len = c->tail_pos = 0;
    if (!c->tail)
        return qsync__nomem(ctx, "qsync_start");
    c->tail_cap = ctx->opts.stderr_tail_bytes;

    uv_pipe_init(ctx->loop, &c->err_pipe, 0);
    qsync__handle_opened(ctx, (uv_handle_t *)&c->err_pipe);
    c->err_open = 1;
    if (ctx->opts.stdout_mode == QSYNC_OUTPUT_LINES) {
        int rc = qsync__lines_init(ctx);
        if (rc)
            return rc;
    }
    if (ctx->opts.stdout_mode == QSYNC_OUTPUT_CALLBACK ||
        ctx->opts.stdout_mode == QSYNC_OUTPUT_LINES) {
        uv_pipe_init(ctx->loop, &c->out_pipe, 0);
        qsync__handle_opened(ctx, (uv_handle_t *)&c->out_pipe);
        c->out_open = 1;
        /* A pipe, not the socket pair libuv would make: QEMU makes its
         * stdout non-blocking, and a UART whose write would block keeps
         * the guest waiting, in virtual time, until QEMU's main loop can
         * retry. A socket pair is full after some 278 one-byte writes, so
         * the guest's timing would follow how soon this process reads;
         * a pipe holds 64 KiB. */
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0) {
            int rc = -errno;
            return qsync__set_error(ctx, rc, "pipe: %s", strerror(errno));
        }
        int rc = uv_pipe_open(&c->out_pipe, fds[0]);
        if (rc) {
            close(fds[0]);
            close(fds[1]);
            return qsync__set_error(ctx, rc, "uv_pipe_open: %s", uv_strerror(rc));
        }
        c->out_child_fd = fds[1];
    }
    return 0;
}

/* QEMU has its copy of its stdout (or failed to start): ours goes. */
static void close_out_child_fd(struct qsync__child *c)
{
    if (c->out_child_fd >= 0) {
        close(c->out_child_fd);
        c->out_child_fd = -1;
    }
}

/* What QEMU's descriptors 0 to 6 are; returns how many are set. */
static int stdio_fill(qsync_ctx *ctx, const struct qsync__launch *l, uv_stdio_container_t stdio[7])
{
    struct qsync__child *c = &ctx->child;
    memset(stdio, 0, 7 * sizeof stdio[0]);
    stdio[0].flags = UV_IGNORE;
    switch (ctx->opts.stdout_mode) {
    case QSYNC_OUTPUT_CALLBACK:
    case QSYNC_OUTPUT_LINES:
        stdio[1].flags = UV_INHERIT_FD;
        stdio[1].data.fd = c->out_child_fd;
        break;
    case QSYNC_OUTPUT_DISCARD:
        stdio[1].flags = UV_IGNORE;
        break;
    default:
        stdio[1].flags = UV_INHERIT_FD;
        stdio[1].data.fd = STDOUT_FILENO;
        break;
    }
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&c->err_pipe;
    int count = 3;
    if (l->child_in >= 0) {
        stdio[QSYNC__CHILD_GRANT_FD].flags = UV_INHERIT_FD;
        stdio[QSYNC__CHILD_GRANT_FD].data.fd = l->child_in;
        stdio[QSYNC__CHILD_REPORT_FD].flags = UV_INHERIT_FD;
        stdio[QSYNC__CHILD_REPORT_FD].data.fd = l->child_out;
        count = 5;
    }
    if (l->child_in >= 0 && l->child_shm >= 0) {
        stdio[QSYNC__CHILD_SHM_FD].flags = UV_INHERIT_FD;
        stdio[QSYNC__CHILD_SHM_FD].data.fd = l->child_shm;
        stdio[QSYNC__CHILD_EFD].flags = UV_INHERIT_FD;
        stdio[QSYNC__CHILD_EFD].data.fd = l->child_efd;
        count = 7;
    }
    return count;
}

/* The child inherits the forking thread's mask: pinning this thread first
 * pins QEMU and every thread it will make, with no race. */
static int pin_cpu(qsync_ctx *ctx)
{
    if (ctx->opts.pin_cpu < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(ctx->opts.pin_cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) == 0)
        return 0;
    int rc = -errno;
    return qsync__set_error(ctx, rc, "pin_cpu %d: %s", ctx->opts.pin_cpu, strerror(errno));
}

int qsync__child_spawn(qsync_ctx *ctx, const char *const args[], struct qsync__launch *l)
{
    struct qsync__child *c = &ctx->child;
    c->out_child_fd = -1;
    int rc = stdio_init(ctx);
    if (rc) {
        close_out_child_fd(c);
        return rc;
    }
    uv_stdio_container_t stdio[7];
    uv_process_options_t po;
    memset(&po, 0, sizeof po);
    po.file = args[0];
    po.args = (char **)args;
    po.exit_cb = exit_cb;
    po.stdio_count = stdio_fill(ctx, l, stdio);
    po.stdio = stdio;
    po.flags = UV_PROCESS_DETACHED;
    rc = pin_cpu(ctx);
    if (rc) {
        close_out_child_fd(c);
        return rc;
    }
    rc = uv_spawn(ctx->loop, &c->proc, &po);
    close_out_child_fd(c);
    /* Whatever happened, the process handle must be closed to be released. */
    qsync__handle_opened(ctx, (uv_handle_t *)&c->proc);
    if (rc) {
        qsync__set_error(ctx, rc, "cannot start '%s': %s", args[0], uv_strerror(rc));
        qsync__handle_close_failed_start((uv_handle_t *)&c->proc);
        return rc;
    }
    c->alive = 1;
    return 0;
}

int qsync__child_read_start(qsync_ctx *ctx)
{
    struct qsync__child *c = &ctx->child;
    int rc = uv_read_start((uv_stream_t *)&c->err_pipe, alloc_cb, err_read_cb);
    if (rc == 0 && c->out_open)
        rc = uv_read_start((uv_stream_t *)&c->out_pipe, alloc_cb, out_read_cb);
    return rc;
}

/* Closes the stdio pipes that are open, with close. */
static void close_stdio(struct qsync__child *c, void (*close)(uv_handle_t *h))
{
    if (c->err_open) {
        c->err_open = 0;
        close((uv_handle_t *)&c->err_pipe);
    }
    if (c->out_open) {
        c->out_open = 0;
        close((uv_handle_t *)&c->out_pipe);
    }
}

void qsync__child_abort_start(qsync_ctx *ctx)
{
    close_stdio(&ctx->child, qsync__handle_close_failed_start);
}

static void kill_cb(uv_timer_t *t)
{
    qsync_ctx *ctx = t->data;
    if (ctx->child.alive && !ctx->child.exited)
        uv_process_kill(&ctx->child.proc, SIGKILL);
}

void qsync__child_kill_later(qsync_ctx *ctx)
{
    if (ctx->child.alive && !ctx->child.exited)
        qsync__timer_start(&ctx->child.kill_timer, kill_cb, ctx->opts.kill_grace_ms, 0);
}

void qsync__child_exited(qsync_ctx *ctx, int64_t status, int signal)
{
    struct qsync__child *c = &ctx->child;
    c->exited = 1;
    c->exit_status = signal ? -1 : status;
    c->term_signal = signal;
    uv_timer_stop(&c->kill_timer);
}

void qsync__child_last_line(const qsync_ctx *ctx, char *out, size_t cap)
{
    const struct qsync__child *c = &ctx->child;
    size_t n = c->tail_len, end = n, len = 0;
    if (cap == 0)
        return;
    out[0] = '\0';
    if (!c->tail)
        return;
    size_t first = (c->tail_pos + c->tail_cap - n) % c->tail_cap;
#define TAIL_AT(i) (c->tail[(first + (i)) % c->tail_cap])
    while (end > 0 && (TAIL_AT(end - 1) == '\n' || TAIL_AT(end - 1) == '\r'))
        end--;
    size_t b = end;
    while (b > 0 && TAIL_AT(b - 1) != '\n')
        b--;
    for (size_t i = b; i < end && len + 1 < cap; i++)
        out[len++] = TAIL_AT(i);
#undef TAIL_AT
    out[len] = '\0';
}

const char *qsync__child_tail_text(qsync_ctx *ctx)
{
    struct qsync__child *c = &ctx->child;
    free(c->tail_text);
    c->tail_text = malloc(c->tail_len + 1);
    if (!c->tail_text)
        return NULL;
    size_t start = (c->tail_pos + c->tail_cap - c->tail_len) % (c->tail_cap ? c->tail_cap : 1);
    for (size_t i = 0; i < c->tail_len; i++)
        c->tail_text[i] = c->tail[(start + i) % c->tail_cap];
    c->tail_text[c->tail_len] = '\0';
    return c->tail_text;
}

void qsync__child_close(qsync_ctx *ctx)
{
    struct qsync__child *c = &ctx->child;
    close_stdio(c, qsync__handle_close);
    if (c->alive) {
        c->alive = 0;
        qsync__handle_close((uv_handle_t *)&c->proc);
    }
    qsync__handle_close((uv_handle_t *)&c->kill_timer);
}

void qsync__child_free(qsync_ctx *ctx)
{
    free(ctx->child.tail);
    free(ctx->child.tail_text);
}

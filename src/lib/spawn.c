/*
 * The QEMU child: its command line, its stdio, its death.
 *
 * QEMU gets the grant pipe's read end as fd 3 and the report pipe's write
 * end as fd 4 (and, with the shared-memory transport, the memfd as fd 5
 * and the eventfd as fd 6), and nothing else of ours: every descriptor the
 * library opens is close-on-exec, and libuv dups them into place in the
 * child. QEMU runs in its own session so that a terminal's Ctrl-C reaches
 * the controller, which then ends QEMU through the channel, in order.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHILD_GRANT_FD 3
#define CHILD_REPORT_FD 4

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static __thread char chunk[4096];
    buf->base = chunk;
    buf->len = sizeof chunk;
}

static void tail_append(qsync_ctx *ctx, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ctx->tail[ctx->tail_pos] = p[i];
        ctx->tail_pos = (ctx->tail_pos + 1) % ctx->tail_cap;
        if (ctx->tail_len < ctx->tail_cap)
            ctx->tail_len++;
    }
}

static void err_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    qsync_ctx *ctx = s->data;
    if (n > 0) {
        tail_append(ctx, buf->base, (size_t)n);
        /* Forwarded as it comes, so the user sees QEMU's own words, to the
         * stderr_output callback or, without ever waiting, to the caller's
         * stderr (forward.c). */
        qsync__forward_stderr(ctx, buf->base, (size_t)n);
        return;
    }
    if (n < 0) {
        /* EOF or a read error: either way nothing more will come. */
        uv_read_stop(s);
        ctx->err_eof = 1;
        qsync__maybe_finish_exit(ctx);
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
        if (ctx->opts.stdout_mode == QSYNC_OUTPUT_LINES && (ctx->ch_eof || ctx->exited_fired))
            qsync__lines_at_end(ctx);
    }
}

void qsync__drain_output(qsync_ctx *ctx)
{
    uv_os_fd_t fd;
    if (!ctx->out_open || uv_fileno((uv_handle_t *)&ctx->out_pipe, &fd) != 0)
        return;
    /* libuv reads this pipe with plain read()s into the caller's buffer and
     * keeps nothing back, so reading it here keeps the bytes in order. The
     * descriptor is non-blocking (libuv made it so). A bounded number of
     * rounds: a guest that prints without end cannot hold the stop. */
    for (int round = 0; round < 64 && ctx->out_open; round++) {
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* EAGAIN: all read; EOF and errors: the loop sees them */
        out_bytes(ctx, chunk, (size_t)n);
        if ((size_t)n < sizeof chunk)
            return;
    }
}

static void exit_cb(uv_process_t *p, int64_t status, int sig)
{
    qsync__on_proc_exit(p->data, status, sig);
}

/* Appends a QEMU option value with commas doubled, as QEMU's parser wants. */
static int append_escaped(char *dst, size_t cap, size_t *len, const char *s)
{
    for (; *s; s++) {
        size_t need = (*s == ',') ? 2 : 1;
        if (*len + need >= cap)
            return -1;
        dst[(*len)++] = *s;
        if (*s == ',')
            dst[(*len)++] = ',';
    }
    dst[*len] = '\0';
    return 0;
}

int qsync__launch_add(struct qsync__launch *l, const char *fmt, ...)
{
    if (l->n_args + 1 >= sizeof l->args / sizeof l->args[0] ||
        l->n_store >= sizeof l->store / sizeof l->store[0])
        return -1;
    char *buf = l->store[l->n_store];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof l->store[0], fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof l->store[0])
        return -1;
    l->n_store++;
    l->args[l->n_args++] = buf;
    return 0;
}

int qsync__launch_plugin(qsync_ctx *ctx, struct qsync__launch *l, const char *rest)
{
    char buf[sizeof l->store[0]];
    size_t len = 0;
    if (append_escaped(buf, sizeof buf, &len, ctx->plugin_path) ||
        qsync__launch_add(l, "-plugin") ||
        qsync__launch_add(l, "file=%s%s%s%s%s", buf, rest[0] ? "," : "", rest,
                          ctx->plugin_args ? "," : "", ctx->plugin_args ? ctx->plugin_args : ""))
        return qsync__set_error(ctx, QSYNC_EARG, "plugin path or plugin_args too long");
    return 0;
}

int qsync__argv_has(const char *const argv[], const char *opt)
{
    for (size_t i = 0; argv[i]; i++) {
        /* QEMU accepts both -opt and --opt. */
        const char *a = argv[i];
        if (a[0] == '-' && a[1] == '-')
            a++;
        if (strcmp(a, opt) == 0)
            return 1;
    }
    return 0;
}

int qsync__pipe(qsync_ctx *ctx, int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) == 0)
        return 0;
    int rc = -errno;
    return qsync__set_error(ctx, rc, "pipe: %s", strerror(errno));
}

/* A failed start's handles: the next qsync_start() may reuse their memory
 * only once libuv is done closing them. */
static void failed_start_closed(uv_handle_t *h)
{
    qsync_ctx *ctx = h->data;
    ctx->start_cleanup--;
    qsync__handle_closed(h);
}

int qsync__launch_pipes(qsync_ctx *ctx, struct qsync__launch *l)
{
    int grant[2], report[2];
    int rc = qsync__pipe(ctx, grant);
    if (rc)
        return rc;
    rc = qsync__pipe(ctx, report);
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

static int check_argv(qsync_ctx *ctx, const char *const argv[], size_t *argc)
{
    if (!argv || !argv[0] || !argv[0][0])
        return qsync__set_error(ctx, QSYNC_EARG, "argv: no QEMU binary given");
    size_t n = 0;
    for (; argv[n]; n++) {
        if (n > 4096)
            return qsync__set_error(ctx, QSYNC_EARG, "argv: more than 4096 arguments");
    }
    *argc = n;
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

int qsync__spawn(qsync_ctx *ctx, const char *const argv[])
{
    size_t argc = 0;
    int rc = check_argv(ctx, argv, &argc);
    if (rc)
        return rc;

    struct qsync__launch *l = calloc(1, sizeof *l);
    const char **args = NULL;
    if (!l)
        return qsync__nomem(ctx, "qsync_start");
    l->child_in = l->child_out = l->our_in = l->our_out = -1;
    l->child_shm = l->child_efd = -1;
    rc = ctx->mode->prepare(ctx, argv, l);
    if (rc)
        goto fail;

    args = calloc(argc + l->n_args + 1, sizeof *args);
    if (!args) {
        rc = qsync__nomem(ctx, "qsync_start");
        goto fail;
    }
    for (size_t i = 0; i < argc; i++)
        args[i] = argv[i];
    for (size_t i = 0; i < l->n_args; i++)
        args[argc + i] = l->args[i];

    free(ctx->tail);
    ctx->tail = malloc(ctx->opts.stderr_tail_bytes);
    ctx->tail_len = ctx->tail_pos = 0;
    if (!ctx->tail) {
        rc = qsync__nomem(ctx, "qsync_start");
        goto fail;
    }
    ctx->tail_cap = ctx->opts.stderr_tail_bytes;

    uv_pipe_init(ctx->loop, &ctx->err_pipe, 0);
    ctx->err_pipe.data = ctx;
    ctx->err_open = 1;
    ctx->handles_open++;
    if (ctx->opts.stdout_mode == QSYNC_OUTPUT_LINES) {
        rc = qsync__lines_init(ctx);
        if (rc)
            goto fail;
    }
    if (ctx->opts.stdout_mode == QSYNC_OUTPUT_CALLBACK ||
        ctx->opts.stdout_mode == QSYNC_OUTPUT_LINES) {
        uv_pipe_init(ctx->loop, &ctx->out_pipe, 0);
        ctx->out_pipe.data = ctx;
        ctx->out_open = 1;
        ctx->handles_open++;
    }

    uv_stdio_container_t stdio[7];
    memset(stdio, 0, sizeof stdio);
    stdio[0].flags = UV_IGNORE;
    switch (ctx->opts.stdout_mode) {
    case QSYNC_OUTPUT_CALLBACK:
    case QSYNC_OUTPUT_LINES:
        stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[1].data.stream = (uv_stream_t *)&ctx->out_pipe;
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
    stdio[2].data.stream = (uv_stream_t *)&ctx->err_pipe;
    int stdio_count = 3;
    if (l->child_in >= 0) {
        stdio[CHILD_GRANT_FD].flags = UV_INHERIT_FD;
        stdio[CHILD_GRANT_FD].data.fd = l->child_in;
        stdio[CHILD_REPORT_FD].flags = UV_INHERIT_FD;
        stdio[CHILD_REPORT_FD].data.fd = l->child_out;
        stdio_count = 5;
    }
    if (l->child_in >= 0 && l->child_shm >= 0) {
        stdio[QSYNC__CHILD_SHM_FD].flags = UV_INHERIT_FD;
        stdio[QSYNC__CHILD_SHM_FD].data.fd = l->child_shm;
        stdio[QSYNC__CHILD_EFD].flags = UV_INHERIT_FD;
        stdio[QSYNC__CHILD_EFD].data.fd = l->child_efd;
        stdio_count = 7;
    }

    uv_process_options_t po;
    memset(&po, 0, sizeof po);
    po.file = args[0];
    po.args = (char **)args;
    po.exit_cb = exit_cb;
    po.stdio_count = stdio_count;
    po.stdio = stdio;
    po.flags = UV_PROCESS_DETACHED;

    if (ctx->opts.pin_cpu >= 0) {
        /* The child inherits the forking thread's mask: pinning this thread
         * first pins QEMU and every thread it will make, with no race. */
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(ctx->opts.pin_cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set)) {
            rc = -errno;
            qsync__set_error(ctx, rc, "pin_cpu %d: %s", ctx->opts.pin_cpu, strerror(errno));
            goto fail;
        }
    }
    ctx->proc.data = ctx;
    rc = uv_spawn(ctx->loop, &ctx->proc, &po);
    /* Whatever happened, the process handle must be closed to be released. */
    ctx->handles_open++;
    if (rc) {
        qsync__set_error(ctx, rc, "cannot start '%s': %s", args[0], uv_strerror(rc));
        ctx->start_cleanup++;
        uv_close((uv_handle_t *)&ctx->proc, failed_start_closed);
        goto fail;
    }
    ctx->proc_alive = 1;
    if (l->keep_reader) {
        ctx->grant_reader_fd = l->child_in;
        l->child_in = -1;
    }
    close_fd(&l->child_in);
    close_fd(&l->child_out);
    close_fd(&l->child_shm); /* our mapping stays; child_efd is ctx->shm_efd */
    ctx->grant_fd = l->our_out;
    l->our_out = -1;
    if (ctx->grant_fd >= 0) {
        /* Non-blocking: the loop thread must never block on a write, and a
         * full channel (impossible with one grant in flight) is reported. */
        fcntl(ctx->grant_fd, F_SETFL, fcntl(ctx->grant_fd, F_GETFL) | O_NONBLOCK);
    }
    rc = qsync__channel_start(ctx, l->our_in);
    l->our_in = -1;
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&ctx->err_pipe, alloc_cb, err_read_cb);
    if (rc == 0 && ctx->out_open)
        rc = uv_read_start((uv_stream_t *)&ctx->out_pipe, alloc_cb, out_read_cb);
    free(args);
    free(l);
    if (rc) {
        /* QEMU is running but we cannot listen to it: end it. */
        qsync__set_error(ctx, rc, "cannot read from QEMU: %s", uv_strerror(rc));
        qsync__terminate(ctx);
        return rc;
    }
    ctx->mode->started(ctx);
    return 0;

fail:
    free(args);
    close_fd(&l->child_in);
    close_fd(&l->child_out);
    close_fd(&l->child_shm);
    close_fd(&l->our_in);
    close_fd(&l->our_out);
    free(l);
    ctx->mode->cleanup(ctx);
    if (ctx->err_open) {
        ctx->err_open = 0;
        ctx->start_cleanup++;
        uv_close((uv_handle_t *)&ctx->err_pipe, failed_start_closed);
    }
    if (ctx->out_open) {
        ctx->out_open = 0;
        ctx->start_cleanup++;
        uv_close((uv_handle_t *)&ctx->out_pipe, failed_start_closed);
    }
    return rc;
}

static void kill_cb(uv_timer_t *t)
{
    qsync_ctx *ctx = t->data;
    if (ctx->proc_alive && !ctx->proc_exited)
        uv_process_kill(&ctx->proc, SIGKILL);
}

/*
 * Ends QEMU: closing the grant pipe makes the plugin exit at once (it
 * watches for the hang-up even mid-quantum). SIGKILL follows after the
 * grace period, for a QEMU that hangs or has no working plugin.
 */
void qsync__terminate(qsync_ctx *ctx)
{
    if (ctx->terminating)
        return;
    ctx->terminating = 1;
    if (ctx->grant_fd >= 0) {
        close(ctx->grant_fd);
        ctx->grant_fd = -1;
    }
    if (ctx->proc_alive && !ctx->proc_exited)
        qsync__timer_start(&ctx->kill_timer, kill_cb, ctx->opts.kill_grace_ms, 0);
}

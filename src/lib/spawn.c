/*
 * The QEMU child: its command line, its stdio, its death.
 *
 * QEMU gets the grant pipe's read end as fd 3 and the report pipe's write
 * end as fd 4, and nothing else of ours: every descriptor the library opens
 * is close-on-exec, and libuv dups the two into place in the child. QEMU
 * runs in its own session so that a terminal's Ctrl-C reaches the
 * controller, which then ends QEMU through the channel, in order.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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
        /* Forwarded as it comes, so the user sees QEMU's own words; but not
         * once the caller has closed the context, when its goodbyes are expected
         * (they stay in the tail). */
        if (!ctx->opts.quiet_stderr && !ctx->closing) {
            ssize_t off = 0;
            while (off < n) {
                ssize_t w = write(STDERR_FILENO, buf->base + off, (size_t)(n - off));
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    break;
                off += w;
            }
        }
        return;
    }
    if (n < 0) {
        /* EOF or a read error: either way nothing more will come. */
        uv_read_stop(s);
        ctx->err_eof = 1;
        qsync__maybe_finish_exit(ctx);
    }
}

static void out_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    qsync_ctx *ctx = s->data;
    if (n > 0) {
        if (!ctx->closing)
            QSYNC__CALL(ctx, output, buf->base, (size_t)n);
        return;
    }
    if (n < 0)
        uv_read_stop(s);
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

static int build_plugin_arg(qsync_ctx *ctx, char *out, size_t cap)
{
    size_t len = 0;
    int n = snprintf(out, cap, "file=");
    if (n < 0 || (size_t)n >= cap)
        return -1;
    len = (size_t)n;
    if (append_escaped(out, cap, &len, ctx->plugin_path))
        return -1;
    n = snprintf(out + len, cap - len, ",fd_in=%d,fd_out=%d,shift=%u%s%s", CHILD_GRANT_FD,
                 CHILD_REPORT_FD, ctx->opts.icount_shift, ctx->plugin_args ? "," : "",
                 ctx->plugin_args ? ctx->plugin_args : "");
    if (n < 0 || (size_t)n >= cap - len)
        return -1;
    return 0;
}

static int check_argv(qsync_ctx *ctx, const char *const argv[], size_t *argc)
{
    if (!argv || !argv[0] || !argv[0][0])
        return qsync__set_error(ctx, QSYNC_EARG, "argv: no QEMU binary given");
    size_t n = 0;
    for (; argv[n]; n++) {
        if (strcmp(argv[n], "-icount") == 0 || strcmp(argv[n], "--icount") == 0)
            return qsync__set_error(ctx, QSYNC_EARG,
                                    "argv[%zu] '%s': the library sets -icount itself; "
                                    "use qsync_options.icount_shift",
                                    n, argv[n]);
        if (n > 4096)
            return qsync__set_error(ctx, QSYNC_EARG, "argv: more than 4096 arguments");
    }
    *argc = n;
    return 0;
}

int qsync__spawn(qsync_ctx *ctx, const char *const argv[])
{
    size_t argc = 0;
    int rc = check_argv(ctx, argv, &argc);
    if (rc)
        return rc;
    rc = qsync__find_plugin(ctx);
    if (rc)
        return rc;

    char icount[64];
    snprintf(icount, sizeof icount, "shift=%u,sleep=off", ctx->opts.icount_shift);
    char plugin[8192];
    if (build_plugin_arg(ctx, plugin, sizeof plugin))
        return qsync__set_error(ctx, QSYNC_EARG, "plugin path or plugin_args too long");

    const char **args = calloc(argc + 5, sizeof *args);
    if (!args)
        return -ENOMEM;
    for (size_t i = 0; i < argc; i++)
        args[i] = argv[i];
    args[argc] = "-icount";
    args[argc + 1] = icount;
    args[argc + 2] = "-plugin";
    args[argc + 3] = plugin;
    args[argc + 4] = NULL;

    int grant[2] = {-1, -1}, report[2] = {-1, -1};
    if (pipe2(grant, O_CLOEXEC) || pipe2(report, O_CLOEXEC)) {
        rc = -errno;
        qsync__set_error(ctx, rc, "pipe: %s", strerror(errno));
        goto fail;
    }

    free(ctx->tail);
    ctx->tail = malloc(ctx->opts.stderr_tail_bytes);
    ctx->tail_len = ctx->tail_pos = 0;
    if (!ctx->tail) {
        rc = -ENOMEM;
        goto fail;
    }
    ctx->tail_cap = ctx->opts.stderr_tail_bytes;

    uv_pipe_init(ctx->loop, &ctx->err_pipe, 0);
    ctx->err_pipe.data = ctx;
    ctx->err_open = 1;
    ctx->handles_open++;
    if (ctx->opts.stdout_mode == QSYNC_OUTPUT_CALLBACK) {
        uv_pipe_init(ctx->loop, &ctx->out_pipe, 0);
        ctx->out_pipe.data = ctx;
        ctx->out_open = 1;
        ctx->handles_open++;
    }

    uv_stdio_container_t stdio[5];
    memset(stdio, 0, sizeof stdio);
    stdio[0].flags = UV_IGNORE;
    switch (ctx->opts.stdout_mode) {
    case QSYNC_OUTPUT_CALLBACK:
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
    stdio[CHILD_GRANT_FD].flags = UV_INHERIT_FD;
    stdio[CHILD_GRANT_FD].data.fd = grant[0];
    stdio[CHILD_REPORT_FD].flags = UV_INHERIT_FD;
    stdio[CHILD_REPORT_FD].data.fd = report[1];

    uv_process_options_t po;
    memset(&po, 0, sizeof po);
    po.file = args[0];
    po.args = (char **)args;
    po.exit_cb = exit_cb;
    po.stdio_count = 5;
    po.stdio = stdio;
    po.flags = UV_PROCESS_DETACHED;

    ctx->proc.data = ctx;
    rc = uv_spawn(ctx->loop, &ctx->proc, &po);
    /* Whatever happened, the process handle must be closed to be released. */
    ctx->handles_open++;
    if (rc) {
        qsync__set_error(ctx, rc, "cannot start '%s': %s", args[0], uv_strerror(rc));
        uv_close((uv_handle_t *)&ctx->proc, qsync__handle_closed);
        goto fail;
    }
    ctx->proc_alive = 1;
    close(grant[0]);
    close(report[1]);
    grant[0] = report[1] = -1;
    ctx->grant_fd = grant[1];
    /* Non-blocking: the loop thread must never block on a write, and a full
     * channel (impossible with one grant in flight) is reported instead. */
    fcntl(ctx->grant_fd, F_SETFL, fcntl(ctx->grant_fd, F_GETFL) | O_NONBLOCK);
    grant[1] = -1;

    rc = qsync__channel_start(ctx, report[0]);
    report[0] = -1;
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&ctx->err_pipe, alloc_cb, err_read_cb);
    if (rc == 0 && ctx->out_open)
        rc = uv_read_start((uv_stream_t *)&ctx->out_pipe, alloc_cb, out_read_cb);
    free(args);
    if (rc) {
        /* QEMU is running but we cannot listen to it: end it. */
        qsync__set_error(ctx, rc, "cannot read from QEMU: %s", uv_strerror(rc));
        qsync__terminate(ctx);
        return rc;
    }
    return 0;

fail:
    free(args);
    for (int i = 0; i < 2; i++) {
        if (grant[i] >= 0)
            close(grant[i]);
        if (report[i] >= 0)
            close(report[i]);
    }
    if (ctx->err_open) {
        ctx->err_open = 0;
        uv_close((uv_handle_t *)&ctx->err_pipe, qsync__handle_closed);
    }
    if (ctx->out_open) {
        ctx->out_open = 0;
        uv_close((uv_handle_t *)&ctx->out_pipe, qsync__handle_closed);
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
        uv_timer_start(&ctx->kill_timer, kill_cb, ctx->opts.kill_grace_ms, 0);
}

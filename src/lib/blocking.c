/*
 * The blocking helpers: a private loop wrapped around the asynchronous API,
 * as curl's easy interface wraps its multi interface. They only ever run
 * the context's private loop, never a caller's.
 *
 * On the shared-memory transport an advance first polls the ring for the
 * plugin's answer for a bounded time (qsync__transport_spin): the calling thread
 * waits anyway, and an answer seen by polling costs no system call and no
 * wake-up of a sleeping thread.
 */
#include "internal.h"

#include <stdlib.h>

static int check_blocking(qsync_ctx *ctx, const char *what)
{
    if (!ctx->has_private_loop)
        return qsync__set_error(ctx, QSYNC_ESTATE,
                                "%s: the context runs on the caller's loop; "
                                "create it with loop == NULL to use the blocking helpers",
                                what);
    if (ctx->in_callback)
        return qsync__set_error(ctx, QSYNC_ERECURSE, "%s: called from inside a callback", what);
    return 0;
}

/* Runs the private loop until *flag is set or nothing is left to run. */
static void run_until_flag(qsync_ctx *ctx, const int *flag)
{
    while (!*flag) {
        if (uv_run(ctx->loop, UV_RUN_ONCE) == 0 && !*flag)
            break;
    }
}

/* Waits for the outcome of the advance made last (wait_owed). */
static int wait_outcome(qsync_ctx *ctx, const char *what, qsync_stop *stop)
{
    if (!ctx->wait_done) {
        /* The watchdog counts from here: the time the caller spent on its
         * own work since the advance is not QEMU's. */
        qsync__watchdog_arm(ctx);
        qsync__transport_spin(ctx, &ctx->wait_done);
        run_until_flag(ctx, &ctx->wait_done);
    }
    ctx->wait_owed = 0;
    if (!ctx->wait_done)
        return qsync__set_error(ctx, QSYNC_ESTATE, "%s: the loop ran dry", what);
    if (ctx->wait_status == QSYNC_EEXITED) {
        /* QEMU is going (the library ends it if it lingers): wait for its
         * exit, so that qsync_last_error() carries its status and the last
         * line it printed, which the caller has no callback to see. */
        run_until_flag(ctx, &ctx->exited_fired);
    }
    if (ctx->wait_status == 0 && stop)
        *stop = ctx->wait_stop;
    return ctx->wait_status;
}

int qsync_wait_reached(qsync_ctx *ctx, qsync_stop *stop)
{
    int rc = check_blocking(ctx, "qsync_wait_reached");
    if (rc)
        return rc;
    if (!ctx->wait_owed)
        return qsync__set_error(ctx, QSYNC_ESTATE,
                                "qsync_wait_reached: no advance to wait for (call "
                                "qsync_advance*() first; each outcome is returned once)");
    return wait_outcome(ctx, "qsync_wait_reached", stop);
}

int qsync_advance_wait_ns(qsync_ctx *ctx, uint64_t ns, qsync_stop *stop)
{
    int rc = check_blocking(ctx, "qsync_advance_wait_ns");
    if (rc)
        return rc;
    rc = qsync_advance_ns(ctx, ns);
    if (rc)
        return rc;
    return wait_outcome(ctx, "qsync_advance_wait_ns", stop);
}

int qsync_run_until_ns(qsync_ctx *ctx, uint64_t deadline_ns, uint64_t quantum_ns, qsync_stop *stop)
{
    int rc = check_blocking(ctx, "qsync_run_until_ns");
    if (rc)
        return rc;
    if (quantum_ns == 0)
        return qsync__set_error(ctx, QSYNC_EARG, "qsync_run_until_ns: quantum_ns must be positive");
    if (deadline_ns < ctx->now_ns)
        return qsync__set_error(ctx, QSYNC_ERANGE,
                                "qsync_run_until_ns: deadline %llu ns is before the current %llu ns",
                                (unsigned long long)deadline_ns,
                                (unsigned long long)ctx->now_ns);
    while (ctx->now_ns < deadline_ns) {
        uint64_t step = deadline_ns - ctx->now_ns;
        if (step > quantum_ns)
            step = quantum_ns;
        rc = qsync_advance_wait_ns(ctx, step, stop);
        if (rc)
            return rc;
    }
    return 0;
}

static void wait_timer_cb(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

int qsync_wait_exit_ms(qsync_ctx *ctx, uint64_t timeout_ms, int64_t *exit_status)
{
    int rc = check_blocking(ctx, "qsync_wait_exit_ms");
    if (rc)
        return rc;
    if (!ctx->started)
        return qsync__set_error(ctx, QSYNC_ESTATE, "qsync_wait_exit_ms: QEMU is not started");
    int expired = 0;
    uv_timer_t timer;
    uv_timer_init(ctx->loop, &timer);
    timer.data = &expired;
    if (timeout_ms)
        qsync__timer_start(&timer, wait_timer_cb, timeout_ms, 0);
    while (!ctx->exited_fired && !expired) {
        if (uv_run(ctx->loop, UV_RUN_ONCE) == 0)
            break;
    }
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(ctx->loop, UV_RUN_NOWAIT);
    if (!ctx->exited_fired)
        return qsync__set_error(ctx, QSYNC_ETIMEDOUT,
                                "qsync_wait_exit_ms: QEMU still running after %llu ms",
                                (unsigned long long)timeout_ms);
    if (exit_status)
        *exit_status = ctx->child.exit_status;
    return 0;
}

int qsync_close_wait(qsync_ctx *ctx)
{
    int rc = check_blocking(ctx, "qsync_close_wait");
    if (rc)
        return rc;
    if (ctx->closing)
        return qsync__set_error(ctx, QSYNC_ESTATE, "qsync_close_wait: already closing");
    ctx->freed_by_waiter = 1;
    rc = qsync__close(ctx, NULL);
    if (rc)
        return rc;
    while (ctx->handles_open > 0)
        uv_run(ctx->loop, UV_RUN_ONCE);
    uv_loop_close(ctx->loop);
    qsync__free_ctx(ctx);
    return 0;
}

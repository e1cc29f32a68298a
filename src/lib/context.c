/*
 * The context: its life cycle and state machine.
 *
 *   new --start--> starting --HELLO--> ready <--REPORT-- running
 *                     |                  |  --advance-->   |
 *                     +------------------+-----------------+--> QEMU gone
 *   any state --close--> closing --(QEMU gone, handles closed)--> freed
 *
 * An advance may be issued while starting: the grant waits in the pipe
 * until the plugin reads it. The rules every path keeps:
 * - a reached callback with status 0 only for a REPORT that matches the
 *   pending grant ("no quantum is reported as done unless it was");
 * - a pending advance always ends in exactly one reached callback;
 * - exited fires once, after the pending advance has been failed;
 * - memory is freed only from a handle's close callback (or by
 *   qsync_close_wait()), never while a user callback is on the stack.
 *
 * This file alone decides that a context has failed: the layers below
 * (child.c, transport_*.c, channel.c, the modes) report what happened
 * through the qsync__on_*() events, with a code and a message, and the
 * failure policy (end QEMU, fail the pending advance or call error) is
 * here. It also keeps the count of open handles, which the close waits for.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long to wait for QEMU's last output once it has exited. */
#define DRAIN_MS 500

static void watchdog_cb(uv_timer_t *t);
static void maybe_finish_exit(qsync_ctx *ctx);

/* Writes a message for qsync_ctx_new()'s caller, who has no context. */
static int new_error(char *errbuf, size_t errbuf_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int new_error(char *errbuf, size_t errbuf_len, int code, const char *fmt, ...)
{
    if (errbuf && errbuf_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errbuf_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* The loop (a private one when loop is NULL) and the mode. */
static int new_loop_and_mode(qsync_ctx *ctx, uv_loop_t *loop, char *errbuf, size_t errbuf_len)
{
    if (!loop) {
        int rc = uv_loop_init(&ctx->private_loop);
        if (rc)
            return new_error(errbuf, errbuf_len, rc, "uv_loop_init: %s", uv_strerror(rc));
        ctx->has_private_loop = 1;
        loop = &ctx->private_loop;
    }
    ctx->loop = loop;
    switch (ctx->opts.mode) {
    case QSYNC_MODE_QQQ:
        ctx->mode = &qsync__mode_qqq;
        break;
    case QSYNC_MODE_FIFO:
        ctx->mode = &qsync__mode_fifo;
        break;
    default:
        ctx->mode = &qsync__mode_plugin;
        break;
    }
    return 0;
}

/* The transport's and the mode's state (the mode's may hold handles, so
 * it comes last), then the context's own timers and the child's. */
static int new_parts(qsync_ctx *ctx, char *errbuf, size_t errbuf_len)
{
    int rc = qsync__transport_new(ctx);
    if (rc == 0 && ctx->mode->init)
        rc = ctx->mode->init(ctx);
    if (rc)
        return new_error(errbuf, errbuf_len, rc, "qsync_ctx_new: out of memory");
    uv_timer_init(ctx->loop, &ctx->watchdog);
    uv_timer_init(ctx->loop, &ctx->drain_timer);
    qsync__handle_opened(ctx, (uv_handle_t *)&ctx->watchdog);
    qsync__handle_opened(ctx, (uv_handle_t *)&ctx->drain_timer);
    qsync__child_init(ctx);
    /* Timers must not keep a caller's loop alive on their own. */
    uv_unref((uv_handle_t *)&ctx->drain_timer);
    return 0;
}

int qsync_ctx_new(uv_loop_t *loop, const qsync_options *opts, const qsync_callbacks *cbs,
                  qsync_ctx **out, char *errbuf, size_t errbuf_len)
{
    if (!out)
        return new_error(errbuf, errbuf_len, QSYNC_EARG, "out: must not be NULL");
    *out = NULL;
    if (cbs && (cbs->size == 0 || cbs->size > sizeof(qsync_callbacks)))
        return new_error(errbuf, errbuf_len, QSYNC_EARG,
                         "qsync_callbacks: size %zu is not from qsync_callbacks_init()",
                         cbs->size);
    qsync_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return new_error(errbuf, errbuf_len, -ENOMEM, "qsync_ctx_new: out of memory");
    qsync__transport_init(ctx);
    ctx->next_seq = 1;
    qsync_callbacks_init(&ctx->cbs);
    if (cbs)
        memcpy(&ctx->cbs, cbs, cbs->size);
    ctx->cbs.size = sizeof ctx->cbs;

    int rc = qsync__options_copy(ctx, opts, errbuf, errbuf_len);
    if (rc == 0)
        rc = new_loop_and_mode(ctx, loop, errbuf, errbuf_len);
    if (rc == 0)
        rc = new_parts(ctx, errbuf, errbuf_len);
    if (rc) {
        if (ctx->has_private_loop)
            uv_loop_close(&ctx->private_loop);
        qsync__free_ctx(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

void qsync_set_data(qsync_ctx *ctx, void *data)
{
    ctx->data = data;
}

void *qsync_get_data(const qsync_ctx *ctx)
{
    return ctx->data;
}

uv_loop_t *qsync_get_loop(const qsync_ctx *ctx)
{
    return ctx->loop;
}

uint64_t qsync_now_ns(const qsync_ctx *ctx)
{
    return ctx->now_ns;
}

int qsync_pid(const qsync_ctx *ctx)
{
    return (ctx->child.alive && !ctx->child.exited) ? ctx->child.proc.pid : 0;
}

int qsync_get_info(const qsync_ctx *ctx, qsync_info *info)
{
    if (!ctx->have_hello)
        return QSYNC_ESTATE;
    const struct qsync__wire_hello *h = &ctx->hello;
    memset(info, 0, sizeof *info);
    info->proto_major = h->major;
    info->proto_minor = h->minor;
    info->plugin_version = h->plugin_version;
    info->plugin_api = h->api_version;
    info->n_vcpus = h->n_vcpus;
    info->icount_shift = h->icount_shift;
    info->engine = qsync__wire_engine_name(h->engine);
    info->target = h->target;
    info->exact = (h->guarantees & QSYNC__WIRE_G_EXACT) != 0;
    info->never_ahead_idle = (h->guarantees & QSYNC__WIRE_G_NEVER_AHEAD_IDLE) != 0;
    info->mode = ctx->mode->name;
    info->vclock = (h->guarantees & QSYNC__WIRE_G_VCLOCK) != 0;
    info->input = ctx->mode->input != NULL && (h->guarantees & QSYNC__WIRE_G_INPUT) != 0;
    info->n_nics = qsync__nic_count(ctx);
    info->nics = qsync__nic_infos(ctx);
    info->next_event = ctx->opts.next_event && (h->guarantees & QSYNC__WIRE_G_NEXT) != 0;
    return 0;
}

/* advance_timeout_ms measures QEMU's answer to a grant, never its start:
 * in a mode without a handshake, the first answer also waits for QEMU to
 * start, which start_timeout_ms covers. */
static uint64_t advance_budget_ms(const qsync_ctx *ctx)
{
    uint64_t ms = ctx->opts.advance_timeout_ms;
    if (ctx->mode->ready_at_spawn && !ctx->answered)
        ms += ctx->opts.start_timeout_ms;
    return ms;
}

/* Arms the one watchdog for whatever the context is waiting for now. */
void qsync__watchdog_arm(qsync_ctx *ctx)
{
    uv_timer_stop(&ctx->watchdog);
    if (ctx->fatal || ctx->closing || !ctx->started)
        return;
    if (!ctx->have_hello)
        qsync__timer_start(&ctx->watchdog, watchdog_cb, ctx->opts.start_timeout_ms, 0);
    else if (ctx->pending_seq && ctx->opts.advance_timeout_ms)
        qsync__timer_start(&ctx->watchdog, watchdog_cb, advance_budget_ms(ctx), 0);
}

static void watchdog_cb(uv_timer_t *t)
{
    qsync_ctx *ctx = t->data;
    if (!ctx->have_hello)
        qsync__on_failure(ctx, QSYNC_ETIMEDOUT,
                          "QEMU %s within %llu ms of its start "
                          "(is the plugin loading? see QEMU's stderr)",
                          ctx->mode->not_ready, (unsigned long long)ctx->opts.start_timeout_ms);
    else
        qsync__on_failure(ctx, QSYNC_ETIMEDOUT,
                          "QEMU did not reach the deadline %llu ns within %llu ms",
                          (unsigned long long)ctx->pending_deadline,
                          (unsigned long long)advance_budget_ms(ctx));
}

static void terminate(qsync_ctx *ctx);

/* A start that failed before QEMU ran: what its steps made is undone. */
static int start_failed(qsync_ctx *ctx, struct qsync__launch *l, int rc)
{
    qsync__launch_free(l);
    if (ctx->mode->cleanup)
        ctx->mode->cleanup(ctx);
    qsync__transport_release(ctx);
    qsync__child_abort_start(ctx);
    return rc;
}

/* The steps of a start: the mode prepares QEMU's arguments and the
 * channel's descriptors, the child is spawned, the transport starts, the
 * child's stdio is read, and the mode is told that QEMU runs. */
static int start_steps(qsync_ctx *ctx, const char *const argv[])
{
    size_t argc = 0;
    int rc = qsync__argv_check(ctx, argv, &argc);
    if (rc)
        return rc;
    struct qsync__launch *l = NULL;
    const char **args = NULL;
    rc = qsync__launch_new(ctx, &l);
    if (rc == 0)
        rc = ctx->mode->prepare(ctx, argv, l);
    if (rc == 0)
        rc = qsync__launch_argv(ctx, argv, argc, l, &args);
    if (rc == 0)
        rc = qsync__child_spawn(ctx, args, l);
    free(args);
    if (rc)
        return start_failed(ctx, l, rc);
    rc = qsync__transport_start(ctx, l);
    if (rc == 0)
        rc = qsync__child_read_start(ctx);
    qsync__launch_free(l);
    if (rc) {
        /* QEMU is running but we cannot listen to it: end it. */
        qsync__set_error(ctx, rc, "cannot read from QEMU: %s", uv_strerror(rc));
        terminate(ctx);
        return rc;
    }
    ctx->mode->started(ctx);
    return 0;
}

int qsync_start(qsync_ctx *ctx, const char *const argv[])
{
    if (ctx->closing)
        return qsync__set_error(ctx, QSYNC_ESTATE, "qsync_start: the context is closing");
    if (ctx->started || ctx->child.alive)
        return qsync__set_error(ctx, QSYNC_ESTATE, "qsync_start: already started");
    if (ctx->start_cleanup)
        return qsync__set_error(ctx, QSYNC_ECLEANUP,
                                "qsync_start: the failed start is still being cleaned up; "
                                "run the loop once, then retry");
    int rc = start_steps(ctx, argv);
    if (rc)
        return rc;
    ctx->started = 1;
    qsync__watchdog_arm(ctx);
    return 0;
}

/* The fatal error, for a call refused because of it. qsync_last_error()
 * keeps the failure's own detail when that is still what it says. */
int qsync__refuse_failed(qsync_ctx *ctx, const char *what)
{
    if (ctx->errcode == ctx->fatal)
        return ctx->fatal;
    return qsync__set_error(ctx, ctx->fatal, "%s: the context has failed (%s: %s); close it",
                            what, qsync_err_name(ctx->fatal), qsync_strerror(ctx->fatal));
}

/* Records the outcome for a blocking waiter, then tells the user. */
static void deliver_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    ctx->wait_done = 1;
    ctx->wait_status = status;
    if (stop) {
        ctx->wait_stop = *stop;
        ctx->wait_stop.vcpu_instructions = NULL;
    }
    /* The group learns the outcome after the member's own callback, even
     * if that callback took the member out of the group. */
    qsync_group *g = qsync__group_take(ctx);
    QSYNC__CALL(ctx, reached, status, stop);
    if (g)
        qsync__group_done(g, status);
}

int qsync_send_input(qsync_ctx *ctx, const void *data, size_t len)
{
    if (!data || len == 0)
        return qsync__set_error(ctx, QSYNC_EARG, "qsync_send_input: no bytes given");
    if (ctx->closing)
        return qsync__set_error(ctx, QSYNC_ESTATE, "qsync_send_input: the context is closing");
    if (ctx->fatal)
        return qsync__refuse_failed(ctx, "qsync_send_input");
    if (!ctx->started || !ctx->have_hello)
        return qsync__set_error(ctx, QSYNC_ESTATE,
                                "qsync_send_input: QEMU is not started or not ready yet");
    if (ctx->mode->input == NULL || !(ctx->hello.guarantees & QSYNC__WIRE_G_INPUT))
        return qsync__set_error(ctx, QSYNC_ENOTSUP,
                                ctx->mode->input == NULL
                                    ? "qsync_send_input: only plugin mode can deliver input"
                                    : "qsync_send_input: this QEMU does not let the plugin feed "
                                      "its serial port (the plugin did not offer it)");
    if (ctx->pending_seq)
        return qsync__set_error(ctx, QSYNC_EBUSY,
                                "qsync_send_input: an advance is pending; send input while "
                                "the guest is stopped");
    if (len > QSYNC_INPUT_MAX_PER_STOP - ctx->input_since_grant)
        return qsync__set_error(ctx, QSYNC_EARG,
                                "qsync_send_input: %zu bytes would pass the %u allowed "
                                "between two advances (%zu sent already)",
                                len, QSYNC_INPUT_MAX_PER_STOP, ctx->input_since_grant);
    int rc = ctx->mode->input(ctx, data, len);
    if (rc)
        return rc;
    ctx->input_since_grant += len;
    return 0;
}

int qsync_failed(const qsync_ctx *ctx)
{
    return ctx->fatal;
}

int qsync__check_advance(qsync_ctx *ctx, uint64_t deadline, const char *what)
{
    if (ctx->closing)
        return qsync__set_error(ctx, QSYNC_ESTATE, "%s: the context is closing", what);
    if (!ctx->started)
        return qsync__set_error(ctx, QSYNC_ESTATE, "%s: QEMU is not started", what);
    if (ctx->fatal)
        return qsync__refuse_failed(ctx, what);
    if (ctx->pending_seq)
        return qsync__set_error(ctx, QSYNC_EBUSY, "%s: the advance to %llu ns is still pending",
                                what, (unsigned long long)ctx->pending_deadline);
    if (deadline < ctx->now_ns)
        return qsync__set_error(ctx, QSYNC_ERANGE, "%s: deadline %llu ns is before the current %llu ns",
                                what, (unsigned long long)deadline,
                                (unsigned long long)ctx->now_ns);
    /* Past the end of QEMU's signed clock an engine would read the
     * deadline as negative, in the past, and stop at once. */
    if (deadline > QSYNC_DEADLINE_MAX)
        return qsync__set_error(ctx, QSYNC_ERANGE,
                                "%s: deadline %llu ns is past QSYNC_DEADLINE_MAX (2^63-1 ns, "
                                "the end of QEMU's clock); advance to QSYNC_DEADLINE_MAX to "
                                "run until the guest ends",
                                what, (unsigned long long)deadline);
    return 0;
}

int qsync__ctx_done(const qsync_ctx *ctx)
{
    return ctx->fatal || ctx->closing;
}

int qsync_advance_to_ns(qsync_ctx *ctx, uint64_t deadline)
{
    int rc = qsync__check_advance(ctx, deadline, "qsync_advance");
    if (rc)
        return rc;
    rc = qsync__nic_before_grant(ctx, deadline);
    if (rc == 0)
        rc = ctx->mode->grant(ctx, ctx->next_seq, deadline, deadline - ctx->now_ns);
    if (rc)
        return rc;
    ctx->pending_seq = ctx->next_seq++;
    ctx->pending_deadline = deadline;
    ctx->input_since_grant = 0;
    ctx->wait_done = 0;
    ctx->wait_owed = 1;
    qsync__watchdog_arm(ctx);
    return 0;
}

int qsync_advance_ns(qsync_ctx *ctx, uint64_t ns)
{
    /* The state checks come first: when they would fail, the (possibly
     * wrapped) sum goes to qsync_advance_to_ns(), which makes them. */
    if (ns > UINT64_MAX - ctx->now_ns && ctx->started && !ctx->closing)
        return qsync__set_error(ctx, QSYNC_ERANGE, "qsync_advance: %llu ns overflows the clock",
                                (unsigned long long)ns);
    return qsync_advance_to_ns(ctx, ctx->now_ns + ns);
}

int qsync_advance(qsync_ctx *ctx, uint64_t us)
{
    if (us > (UINT64_MAX - ctx->now_ns) / 1000 && ctx->started && !ctx->closing)
        return qsync__set_error(ctx, QSYNC_ERANGE, "qsync_advance: %llu us overflows the clock",
                                (unsigned long long)us);
    return qsync_advance_to_ns(ctx, ctx->now_ns + us * 1000);
}

void qsync__on_hello(qsync_ctx *ctx, const struct qsync__wire_hello *h)
{
    if (ctx->have_hello) {
        qsync__on_failure(ctx, QSYNC_EPROTO, "protocol error: a second HELLO from the plugin");
        return;
    }
    if (h->major != QSYNC__WIRE_MAJOR) {
        qsync__on_failure(ctx, QSYNC_EVERSION,
                          "the plugin speaks protocol %u.%u; this library speaks %d.%d",
                          h->major, h->minor, QSYNC__WIRE_MAJOR, QSYNC__WIRE_MINOR);
        return;
    }
    if (h->icount_shift != ctx->opts.icount_shift) {
        qsync__on_failure(ctx, QSYNC_EPROTO, "the plugin runs with shift %u, not the %u asked for",
                          h->icount_shift, ctx->opts.icount_shift);
        return;
    }
    if (qsync__nic_check_hello(ctx, h))
        return;
    ctx->hello = *h;
    qsync__on_ready(ctx);
}

void qsync__on_ready(qsync_ctx *ctx)
{
    ctx->have_hello = 1;
    qsync__watchdog_arm(ctx);
    if (ctx->cbs.ready) {
        qsync_info info;
        qsync_get_info(ctx, &info);
        QSYNC__CALL(ctx, ready, &info);
    }
}

void qsync__on_complete(qsync_ctx *ctx, const qsync_stop *stop, uint64_t next_now)
{
    /* What the guest printed during the quantum is in the output pipe
     * already (QEMU writes it from the vCPU thread before the stop): hand
     * it over first, so that a simulator can read "the bytes of quantum
     * k" before it sees reached(k). The output callback may close. */
    qsync__drain_output(ctx);
    if (ctx->closing || ctx->fatal)
        return;
    qsync__lines_at_stop(ctx, stop->virtual_ns);
    if (ctx->closing || ctx->fatal)
        return; /* the output_line callback closed the context */
    ctx->pending_seq = 0;
    ctx->answered = 1;
    ctx->now_ns = next_now;
    ctx->last_virtual_ns = stop->virtual_ns;
    ctx->last_instructions = stop->instructions;
    qsync__watchdog_arm(ctx);
    deliver_reached(ctx, 0, stop);
}

void qsync__on_report(qsync_ctx *ctx, const struct qsync__wire_report *r)
{
    if (!ctx->have_hello || !ctx->pending_seq || r->seq != ctx->pending_seq ||
        r->deadline_ns != ctx->pending_deadline) {
        qsync__on_failure(ctx, QSYNC_EPROTO,
                          "protocol error: REPORT seq %llu deadline %llu does not match the "
                          "pending grant (seq %llu deadline %llu)",
                          (unsigned long long)r->seq, (unsigned long long)r->deadline_ns,
                          (unsigned long long)ctx->pending_seq,
                          (unsigned long long)ctx->pending_deadline);
        return;
    }
    if (r->n_vcpus != ctx->hello.n_vcpus) {
        qsync__on_failure(ctx, QSYNC_EPROTO, "protocol error: REPORT for %u vCPUs, HELLO said %u",
                          r->n_vcpus, ctx->hello.n_vcpus);
        return;
    }
    /* A stop may fall short of its deadline by rounding only: with shift N
     * the engines stop on the last instruction boundary before it, less
     * than 2^N ns early, and say so with R_DEVIATION. Any other shortfall
     * would report a quantum the guest did not run. */
    if (r->virtual_ns < r->deadline_ns) {
        uint64_t short_by = r->deadline_ns - r->virtual_ns;
        uint64_t rounding = (uint64_t)1 << ctx->hello.icount_shift;
        if (!(r->flags & QSYNC__WIRE_R_DEVIATION) || short_by >= rounding) {
            qsync__on_failure(ctx, QSYNC_EPROTO,
                              "protocol error: REPORT seq %llu claims deadline %llu ns at "
                              "virtual time %llu ns, %llu ns short%s",
                              (unsigned long long)r->seq, (unsigned long long)r->deadline_ns,
                              (unsigned long long)r->virtual_ns, (unsigned long long)short_by,
                              (r->flags & QSYNC__WIRE_R_DEVIATION)
                                  ? ", more than icount rounding can explain"
                                  : " without flagging a deviation");
            return;
        }
    }
    qsync_stop stop;
    stop.seq = r->seq;
    stop.deadline_ns = r->deadline_ns;
    stop.virtual_ns = r->virtual_ns;
    stop.instructions = r->instructions;
    stop.overshoot_insns = r->overshoot;
    stop.flags = 0;
    if (r->flags & QSYNC__WIRE_R_IDLE)
        stop.flags |= QSYNC_STOP_IDLE;
    if ((r->flags & QSYNC__WIRE_R_DEVIATION) || r->virtual_ns != r->deadline_ns)
        stop.flags |= QSYNC_STOP_DEVIATION;
    if (r->flags & QSYNC__WIRE_R_INPUT_WAITING)
        stop.flags |= QSYNC_STOP_INPUT_WAITING;
    /* A NEXT right before this REPORT: every vCPU is halted here. */
    ctx->stop_halted = ctx->next_hint_set;
    ctx->stop_next = ctx->next_hint;
    ctx->next_hint_set = 0;
    if (ctx->stop_halted)
        stop.flags |= QSYNC_STOP_HALTED;
    stop.n_vcpus = r->n_vcpus;
    stop.vcpu_instructions = r->vcpu_insns;
    qsync__on_complete(ctx, &stop, r->deadline_ns);
}

void qsync__on_next(qsync_ctx *ctx, const struct qsync__wire_next *n)
{
    if (!ctx->opts.next_event || !ctx->pending_seq || ctx->next_hint_set) {
        qsync__on_failure(ctx, QSYNC_EPROTO,
                          "protocol error: NEXT %s",
                          !ctx->opts.next_event ? "that the library did not ask for"
                          : !ctx->pending_seq   ? "with no advance pending"
                                                : "twice before one REPORT");
        return;
    }
    ctx->next_hint_set = 1;
    ctx->next_hint = n->timer_ns;
}

uint64_t qsync_next_event_ns(const qsync_ctx *ctx)
{
    if (!ctx->started || !ctx->answered || ctx->pending_seq || qsync__ctx_done(ctx))
        return 0;
    if (!ctx->stop_halted || ctx->input_since_grant)
        return ctx->now_ns;
    uint64_t t = ctx->stop_next;
    uint64_t f = qsync__nic_earliest(ctx);
    if (f < t)
        t = f;
    /* A timer due before the deadline it stopped at has fired already,
     * or the guest would not be halted: never earlier than now. */
    if (t < ctx->now_ns)
        t = ctx->now_ns;
    return t > QSYNC_DEADLINE_MAX ? QSYNC_DEADLINE_MAX : t;
}

void qsync__on_exit_msg(qsync_ctx *ctx, const struct qsync__wire_exit *e)
{
    ctx->exit_msg_seen = 1;
    ctx->last_virtual_ns = e->virtual_ns;
    ctx->last_instructions = e->instructions;
}

/* Fails the pending advance, if any, with code. */
static int fail_pending(qsync_ctx *ctx, int code)
{
    if (!ctx->pending_seq)
        return 0;
    ctx->pending_seq = 0;
    deliver_reached(ctx, code, NULL);
    return 1;
}

/* Ends QEMU: closing the grant pipe makes the plugin exit at once (it
 * watches for the hang-up even mid-quantum). SIGKILL follows after the
 * grace period, for a QEMU that hangs or has no working plugin. */
static void terminate(qsync_ctx *ctx)
{
    if (ctx->terminating)
        return;
    ctx->terminating = 1;
    qsync__transport_hangup(ctx);
    qsync__child_kill_later(ctx);
}

/* The failure policy: the context is broken for good, QEMU is ended, and
 * the user hears of it once, through the pending advance or error. */
static void fail(qsync_ctx *ctx, int code)
{
    if (ctx->fatal)
        return;
    ctx->fatal = code;
    uv_timer_stop(&ctx->watchdog);
    terminate(ctx);
    if (ctx->closing)
        return; /* the close path cancels and reports */
    if (!fail_pending(ctx, code))
        QSYNC__CALL(ctx, error, code, ctx->errmsg);
}

void qsync__on_failure(qsync_ctx *ctx, int code, const char *fmt, ...)
{
    if (ctx->fatal)
        return;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
        va_end(ap);
        ctx->errcode = code;
    }
    fail(ctx, code);
}

/* QEMU is ending: in line mode, the lines of the quantum that no stop
 * ended come before that quantum's failure, stamped with the last virtual
 * time known. */
static void output_at_end(qsync_ctx *ctx)
{
    if (ctx->opts.stdout_mode != QSYNC_OUTPUT_LINES)
        return;
    qsync__drain_output(ctx);
    qsync__lines_at_end(ctx);
}

void qsync__on_channel_eof(qsync_ctx *ctx)
{
    /* QEMU closed the channel: it is exiting, or its plugin is gone. A
     * pending advance cannot complete any more. The exit status comes with
     * the process's own exit. */
    if (!ctx->fatal) {
        ctx->fatal = QSYNC_EEXITED;
        uv_timer_stop(&ctx->watchdog);
        if (!ctx->closing) {
            /* QEMU's reason, if it has given one yet (the exit adds its
             * status and the whole last line). */
            char last[256];
            qsync__child_last_line(ctx, last, sizeof last);
            qsync__set_error(ctx, QSYNC_EEXITED, "QEMU closed the channel%s%s%s%s",
                             ctx->have_hello ? "" : " before ",
                             ctx->have_hello ? "" : ctx->mode->ready_moment,
                             last[0] ? ": " : "", last);
            output_at_end(ctx);
            fail_pending(ctx, QSYNC_EEXITED);
        }
    }
    /* The plugin is gone; make sure QEMU follows (a QEMU whose plugin
     * failed to load may still be running without one). */
    terminate(ctx);
    maybe_finish_exit(ctx);
}

static void drain_cb(uv_timer_t *t)
{
    qsync_ctx *ctx = t->data;
    ctx->transport.eof = ctx->child.err_eof = 1;
    maybe_finish_exit(ctx);
}

void qsync__on_proc_exit(qsync_ctx *ctx, int64_t status, int signal)
{
    qsync__child_exited(ctx, status, signal);
    qsync__transport_close_fds(ctx);
    /* QEMU's pipes normally end with it; do not wait for ever if a
     * grandchild holds them. */
    qsync__timer_start(&ctx->drain_timer, drain_cb, DRAIN_MS, 0);
    if (ctx->mode->exited)
        ctx->mode->exited(ctx);
    maybe_finish_exit(ctx);
}

void qsync__on_stdio_eof(qsync_ctx *ctx)
{
    maybe_finish_exit(ctx);
}

static void close_handles(qsync_ctx *ctx);

/* The plugin's last line in QEMU's stderr, when it is not the last line
 * itself: why the plugin refused to load, say, before QEMU's own "could
 * not load plugin". Written as " (qsync-plugin: ...)" to out, or "". */
static void plugin_line(const char *tail, const char *last, char *out, size_t cap)
{
    static const char tag[] = "qsync-plugin: ";
    const char *p = NULL;
    out[0] = '\0';
    for (const char *q = tail; q && (q = strstr(q, tag)) != NULL; q++)
        if (q == tail || q[-1] == '\n')
            p = q;
    if (!p)
        return;
    size_t len = strcspn(p, "\n");
    if (strncmp(p, last, len) == 0 && last[len] == '\0')
        return;
    snprintf(out, cap, " (%.*s)", (int)(len < cap - 4 ? len : cap - 4), p);
}

static void maybe_finish_exit(qsync_ctx *ctx)
{
    if (ctx->exited_fired || !ctx->child.exited || !ctx->transport.eof || !ctx->child.err_eof)
        return;
    ctx->exited_fired = 1;
    uv_timer_stop(&ctx->drain_timer);
    uv_timer_stop(&ctx->watchdog);
    int code = ctx->closing ? QSYNC_ECANCELED : QSYNC_EEXITED;
    if (!ctx->fatal)
        ctx->fatal = QSYNC_EEXITED;
    const char *tail = qsync__child_tail_text(ctx);
    if (!ctx->closing && ctx->fatal == QSYNC_EEXITED) {
        /* Keep the most useful detail: the last line QEMU printed. */
        char last[QSYNC__ERRMSG_MAX], plugin[QSYNC__ERRMSG_MAX / 2], hint[384];
        qsync__child_last_line(ctx, last, sizeof last);
        plugin_line(tail, last, plugin, sizeof plugin);
        qsync__nic_exit_hint(ctx, last, hint, sizeof hint);
        if (ctx->child.term_signal)
            qsync__set_error(ctx, QSYNC_EEXITED, "QEMU was killed by signal %d%s%s%s%s",
                             ctx->child.term_signal, last[0] ? ": " : "", last, plugin, hint);
        else
            qsync__set_error(ctx, QSYNC_EEXITED, "QEMU exited with status %lld%s%s%s%s",
                             (long long)ctx->child.exit_status, last[0] ? ": " : "", last,
                             plugin, hint);
    }
    output_at_end(ctx);
    fail_pending(ctx, code);
    if (ctx->started) {
        qsync_exit ex;
        ex.exit_status = ctx->child.exit_status;
        ex.term_signal = ctx->child.term_signal;
        ex.by_close = ctx->by_close;
        ex.stderr_tail = tail ? tail : "";
        ex.virtual_ns = ctx->last_virtual_ns;
        ex.instructions = ctx->last_instructions;
        QSYNC__CALL(ctx, exited, &ex);
    }
    if (ctx->closing)
        close_handles(ctx);
}

void qsync__free_ctx(qsync_ctx *ctx)
{
    qsync__group_leave(ctx);
    if (ctx->mode && ctx->mode->fini)
        ctx->mode->fini(ctx);
    qsync__transport_free(ctx);
    qsync__child_free(ctx);
    qsync__lines_free(ctx);
    qsync__nic_free(ctx);
    free(ctx->plugin_path);
    free(ctx->plugin_args);
    free(ctx);
}

static void handle_closed(uv_handle_t *h)
{
    qsync_ctx *ctx = h->data;
    if (--ctx->handles_open > 0 || !ctx->closing)
        return;
    if (ctx->close_cb) {
        ctx->in_callback++;
        ctx->close_cb(ctx);
        ctx->in_callback--;
    }
    if (!ctx->freed_by_waiter)
        qsync__free_ctx(ctx);
}

void qsync__handle_opened(qsync_ctx *ctx, uv_handle_t *h)
{
    h->data = ctx;
    ctx->handles_open++;
}

void qsync__handle_close(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, handle_closed);
}

/* A failed start's handles: the next qsync_start() may reuse their memory
 * only once libuv is done closing them. */
static void failed_start_closed(uv_handle_t *h)
{
    qsync_ctx *ctx = h->data;
    ctx->start_cleanup--;
    handle_closed(h);
}

void qsync__handle_close_failed_start(uv_handle_t *h)
{
    qsync_ctx *ctx = h->data;
    ctx->start_cleanup++;
    uv_close(h, failed_start_closed);
}

static void close_handles(qsync_ctx *ctx)
{
    qsync__transport_close(ctx);
    qsync__child_close(ctx);
    qsync__handle_close((uv_handle_t *)&ctx->watchdog);
    qsync__handle_close((uv_handle_t *)&ctx->drain_timer);
    if (ctx->mode->close)
        ctx->mode->close(ctx);
    if (ctx->mode->cleanup)
        ctx->mode->cleanup(ctx);
}

int qsync__close(qsync_ctx *ctx, qsync_close_cb cb)
{
    if (ctx->closing)
        return qsync__set_error(ctx, QSYNC_ESTATE, "qsync_close: already closing");
    /* What QEMU said before the close is the caller's, even when the loop
     * has not read it yet (a loop that polls the channel reads its pipes
     * less often). */
    qsync__drain_stderr(ctx);
    if (ctx->closing)
        return 0; /* the stderr_output callback closed the context */
    ctx->closing = 1;
    ctx->close_cb = cb;
    uv_timer_stop(&ctx->watchdog);
    if (ctx->child.alive && !ctx->exited_fired) {
        /* QEMU first; the handles close once it is gone and reported. The
         * close ends it only if it was still running: not when it had
         * exited, closed the channel, or said that the guest ends. */
        if (!ctx->child.exited && !ctx->transport.eof && !ctx->exit_msg_seen && !ctx->fatal)
            ctx->by_close = 1;
        terminate(ctx);
        maybe_finish_exit(ctx);
        return 0;
    }
    close_handles(ctx);
    return 0;
}

int qsync_close(qsync_ctx *ctx, qsync_close_cb cb)
{
    if (ctx->has_private_loop)
        return qsync__set_error(ctx, QSYNC_ESTATE,
                                "qsync_close: the context has a private loop; "
                                "use qsync_close_wait()");
    return qsync__close(ctx, cb);
}

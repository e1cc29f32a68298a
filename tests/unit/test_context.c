/*
 * The context's state machine against a fake QEMU peer (fake_qemu.c), which
 * speaks the plugin's side of the protocol and fails on request. Every test
 * counts callbacks and checks the exact counts after the loop has run dry,
 * and every test closes its loop cleanly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <qsync/qsync.h>

#ifndef FAKE_QEMU
#error "FAKE_QEMU must name the fake peer's path"
#endif

#define MAX_EVENTS 64

struct rec {
    int ready, reached, exited, errors, closed, outputs;
    int status[MAX_EVENTS];
    uint64_t deadline[MAX_EVENTS];
    int64_t overshoot[MAX_EVENTS];
    int error_code;
    char error_msg[512];
    int order_exited_after_reached; /* reached count seen when exited fired */
    qsync_exit ex;
    char tail[8192];
    char out[256];
    /* Behaviour knobs. */
    int advance_upto;    /* keep advancing until this many quanta */
    uint64_t step_ns;
    int close_in_reached; /* close from inside the Nth reached callback */
    int recurse_rc;
    int try_recurse;
    int check_stamps; /* out must end with "q<seq>\n" at each reached */
    int close_in_ready; /* a handshake that should have been refused ends the run */
    int close_on_success; /* so does a quantum that should have failed */
    int try_input;    /* call qsync_send_input() in each reached       */
    int input_rc;
    char input_err[256];
    qsync_ctx *ctx;
};

static void on_ready(qsync_ctx *ctx, const qsync_info *info)
{
    struct rec *r = qsync_get_data(ctx);
    r->ready++;
    assert_string_equal(info->engine, "insn");
    assert_string_equal(info->target, "fake");
    assert_int_equal(info->n_vcpus, 1);
    if (r->close_in_ready)
        assert_int_equal(qsync_close(ctx, NULL), 0);
}

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct rec *r = qsync_get_data(ctx);
    int i = r->reached++;
    assert_true(i < MAX_EVENTS);
    r->status[i] = status;
    if (status == 0) {
        assert_non_null(stop);
        r->deadline[i] = stop->deadline_ns;
        r->overshoot[i] = stop->overshoot_insns;
        assert_int_equal(stop->virtual_ns, stop->deadline_ns);
        assert_int_equal(stop->n_vcpus, 1);
        assert_int_equal(stop->vcpu_instructions[0], stop->instructions);
    } else {
        assert_null(stop);
    }
    if (r->check_stamps && status == 0) {
        /* The fake printed this line before its report: it must have
         * been delivered before this callback. */
        char want[32];
        snprintf(want, sizeof want, "q%d\n", i + 1);
        size_t have = strlen(r->out), wl = strlen(want);
        assert_true(have >= wl);
        assert_string_equal(r->out + have - wl, want);
        r->out[0] = '\0';
    }
    if (r->try_input) {
        r->input_rc = qsync_send_input(ctx, "x", 1);
        snprintf(r->input_err, sizeof r->input_err, "%s", qsync_last_error(ctx));
    }
    if (r->try_recurse)
        r->recurse_rc = qsync_advance_wait_ns(ctx, 1000, NULL);
    if (r->close_on_success && status == 0) {
        assert_int_equal(qsync_close(ctx, NULL), 0);
        return;
    }
    if (r->close_in_reached && r->reached == r->close_in_reached) {
        assert_int_equal(qsync_close(ctx, NULL), 0);
        assert_int_equal(qsync_close(ctx, NULL), QSYNC_ESTATE);
        return;
    }
    if (status == 0 && r->reached < r->advance_upto)
        assert_int_equal(qsync_advance_ns(ctx, r->step_ns), 0);
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct rec *r = qsync_get_data(ctx);
    r->exited++;
    r->order_exited_after_reached = r->reached;
    r->ex = *ex;
    snprintf(r->tail, sizeof r->tail, "%s", ex->stderr_tail);
    r->ex.stderr_tail = r->tail;
}

static void on_error(qsync_ctx *ctx, int code, const char *msg)
{
    struct rec *r = qsync_get_data(ctx);
    r->errors++;
    r->error_code = code;
    snprintf(r->error_msg, sizeof r->error_msg, "%s", msg);
}

static void on_output(qsync_ctx *ctx, const char *data, size_t len)
{
    struct rec *r = qsync_get_data(ctx);
    size_t have = strlen(r->out);
    if (have + len < sizeof r->out) {
        memcpy(r->out + have, data, len);
        r->out[have + len] = '\0';
    }
    r->outputs++;
}

static void on_close(qsync_ctx *ctx)
{
    struct rec *r = qsync_get_data(ctx);
    r->closed++;
}

static qsync_callbacks callbacks(void)
{
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.ready = on_ready;
    cb.reached = on_reached;
    cb.exited = on_exited;
    cb.error = on_error;
    cb.output = on_output;
    return cb;
}

static qsync_options options(void)
{
    qsync_options o;
    qsync_options_init(&o);
    /* Any readable file will do: the fake does not load it. */
    o.plugin_path = FAKE_QEMU;
    o.quiet_stderr = 1;
    return o;
}

static qsync_ctx *new_ctx(uv_loop_t *loop, const qsync_options *o, struct rec *r)
{
    qsync_callbacks cb = callbacks();
    qsync_ctx *ctx = NULL;
    char err[256] = "";
    int rc = qsync_ctx_new(loop, o, &cb, &ctx, err, sizeof err);
    if (rc)
        fail_msg("qsync_ctx_new: %s (%s)", qsync_strerror(rc), err);
    qsync_set_data(ctx, r);
    r->ctx = ctx;
    return ctx;
}

static void start(qsync_ctx *ctx, const char *scenario)
{
    const char *argv[] = {FAKE_QEMU, scenario, NULL};
    int rc = qsync_start(ctx, argv);
    if (rc)
        fail_msg("qsync_start: %s: %s", qsync_strerror(rc), qsync_last_error(ctx));
}

static void run_and_close_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Runs one scenario that ends by itself; the context is closed at the end. */
static void run_scenario(const char *scenario, qsync_options *o, struct rec *r, int advances)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_ctx *ctx = new_ctx(&loop, o, r);
    start(ctx, scenario);
    if (advances)
        assert_int_equal(qsync_advance(ctx, 10), 0);
    while (r->exited == 0 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(qsync_close(ctx, on_close), 0);
    run_and_close_loop(&loop);
    assert_int_equal(r->closed, 1);
}

static void test_good_advances_exactly(void **state)
{
    (void)state;
    struct rec r = {0};
    r.advance_upto = 5;
    r.step_ns = 10000;
    r.close_in_reached = 5;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, "good");
    assert_int_equal(qsync_advance(ctx, 10), 0);
    run_and_close_loop(&loop);
    assert_int_equal(r.ready, 1);
    assert_int_equal(r.reached, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r.status[i], 0);
        assert_int_equal(r.deadline[i], 10000u * (unsigned)(i + 1));
        assert_int_equal(r.overshoot[i], 0);
    }
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.ex.by_close, 1);
    assert_int_equal(r.ex.term_signal, 0);
    assert_int_equal(r.errors, 0);
}

static void test_die_mid_quantum(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    run_scenario("die-mid", &o, &r, 1);
    assert_int_equal(r.reached, 1);
    assert_int_equal(r.status[0], QSYNC_EEXITED);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.order_exited_after_reached, 1);
    assert_int_equal(r.ex.term_signal, SIGKILL);
    assert_int_equal(r.ex.exit_status, -1);
    assert_int_equal(r.ex.by_close, 0);
    assert_int_equal(r.errors, 0);
}

static void test_garbage(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    run_scenario("garbage", &o, &r, 1);
    assert_int_equal(r.reached, 1);
    assert_int_equal(r.status[0], QSYNC_EPROTO);
    assert_int_equal(r.exited, 1);
    /* The library ended the fake by closing the channel; it did not need a kill. */
    assert_int_equal(r.ex.term_signal, 0);
}

static void test_bad_version(void **state)
{
    (void)state;
    struct rec r = {0};
    r.close_in_ready = 1; /* were the handshake accepted, nothing would end the run */
    qsync_options o = options();
    run_scenario("bad-version", &o, &r, 0);
    assert_int_equal(r.ready, 0);
    assert_int_equal(r.errors, 1);
    assert_int_equal(r.error_code, QSYNC_EVERSION);
    assert_non_null(strstr(r.error_msg, "protocol 99."));
    assert_int_equal(r.exited, 1);
}

static void test_wrong_seq(void **state)
{
    (void)state;
    struct rec r = {0};
    r.close_on_success = 1; /* were the REPORT accepted, the fake would wait for ever */
    qsync_options o = options();
    run_scenario("wrong-seq", &o, &r, 1);
    assert_int_equal(r.reached, 1);
    assert_int_equal(r.status[0], QSYNC_EPROTO);
    assert_int_equal(r.exited, 1);
}

/* A report short of its deadline is a quantum the guest did not run,
 * unless it is flagged and within the icount rounding (2^shift ns). */
static void check_short_report(const char *scenario, const char *why)
{
    struct rec r = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, scenario);
    assert_int_equal(qsync_advance(ctx, 10), 0);
    while (r.reached == 0 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r.reached, 1);
    assert_int_equal(r.status[0], QSYNC_EPROTO);
    assert_non_null(strstr(qsync_last_error(ctx), "claims deadline 10000 ns"));
    assert_non_null(strstr(qsync_last_error(ctx), why));
    assert_int_equal(qsync_now_ns(ctx), 0);
    assert_int_equal(qsync_close(ctx, on_close), 0);
    run_and_close_loop(&loop);
    assert_int_equal(r.reached, 1);
}

static void test_short_report_refused(void **state)
{
    (void)state;
    check_short_report("short", "1 ns short without flagging a deviation");
    check_short_report("short-far", "more than icount rounding can explain");
}

/* Deadlines past the end of QEMU's clock are refused before any grant:
 * nothing is sent, the context stays usable. */
static void test_deadline_past_clock_end(void **state)
{
    (void)state;
    struct rec r = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, "good");
    assert_int_equal(qsync_advance_ns(ctx, UINT64_MAX), QSYNC_ERANGE);
    assert_non_null(strstr(qsync_last_error(ctx), "past QSYNC_DEADLINE_MAX"));
    assert_int_equal(qsync_advance_to_ns(ctx, (uint64_t)1 << 63), QSYNC_ERANGE);
    assert_int_equal(qsync_advance(ctx, UINT64_MAX / 1000), QSYNC_ERANGE);
    assert_int_equal(qsync_advance(ctx, 10), 0);
    while (r.reached == 0 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r.status[0], 0);
    assert_int_equal(qsync_now_ns(ctx), 10000);
    /* The last deadline is accepted (the fake reports it like any other). */
    assert_int_equal(qsync_advance_to_ns(ctx, QSYNC_DEADLINE_MAX), 0);
    while (r.reached == 1 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r.status[1], 0);
    assert_int_equal(qsync_now_ns(ctx), QSYNC_DEADLINE_MAX);
    assert_int_equal(qsync_close(ctx, on_close), 0);
    run_and_close_loop(&loop);
}

static void test_plugin_error_message(void **state)
{
    (void)state;
    struct rec r = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, "plugin-err");
    assert_int_equal(qsync_advance(ctx, 10), 0);
    while (r.reached == 0 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r.status[0], QSYNC_EPLUGIN);
    assert_non_null(strstr(qsync_last_error(ctx), "grant went backwards"));
    /* A broken context refuses further work with its fatal code. */
    assert_int_equal(qsync_advance(ctx, 10), QSYNC_EPLUGIN);
    assert_true(qsync_is_fatal(QSYNC_EPLUGIN));
    assert_int_equal(qsync_close(ctx, on_close), 0);
    run_and_close_loop(&loop);
    assert_int_equal(r.reached, 1);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.closed, 1);
}

static void test_exit_before_hello_keeps_stderr(void **state)
{
    (void)state;
    struct rec r = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, "stderr-exit");
    assert_int_equal(qsync_advance(ctx, 10), 0);
    while (r.exited == 0 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r.reached, 1);
    assert_int_equal(r.status[0], QSYNC_EEXITED);
    assert_int_equal(r.ex.exit_status, 3);
    assert_non_null(strstr(r.tail, "first line"));
    assert_non_null(strstr(r.tail, "could not load kernel 'nope'"));
    /* The last error names the last line QEMU printed. */
    assert_non_null(strstr(qsync_last_error(ctx), "status 3: qemu-system-x86_64: could not load kernel 'nope'"));
    assert_int_equal(qsync_close(ctx, on_close), 0);
    run_and_close_loop(&loop);
    assert_int_equal(r.exited, 1);
}

static void test_start_timeout(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    o.start_timeout_ms = 200;
    o.kill_grace_ms = 100;
    run_scenario("no-hello", &o, &r, 0);
    assert_int_equal(r.errors, 1);
    assert_int_equal(r.error_code, QSYNC_ETIMEDOUT);
    assert_non_null(strstr(r.error_msg, "no handshake within 200 ms"));
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.ex.term_signal, SIGKILL);
}

static void test_advance_watchdog(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    o.advance_timeout_ms = 200;
    o.kill_grace_ms = 100;
    run_scenario("hang", &o, &r, 1);
    assert_int_equal(r.reached, 1);
    assert_int_equal(r.status[0], QSYNC_ETIMEDOUT);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.exited, 1);
    /* The fake ignores the closed channel, so only SIGKILL ends it. */
    assert_int_equal(r.ex.term_signal, SIGKILL);
}

static void test_guest_powers_off_while_pending(void **state)
{
    (void)state;
    struct rec r = {0};
    r.advance_upto = 10;
    r.step_ns = 10000;
    qsync_options o = options();
    run_scenario("poweroff", &o, &r, 1);
    assert_int_equal(r.reached, 3);
    assert_int_equal(r.status[0], 0);
    assert_int_equal(r.status[1], 0);
    assert_int_equal(r.status[2], QSYNC_EEXITED);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.order_exited_after_reached, 3);
    assert_int_equal(r.ex.exit_status, 7);
    assert_int_equal(r.ex.instructions, 4242);
    assert_int_equal(r.ex.by_close, 0);
}

static void test_truncated_frame(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    run_scenario("truncated", &o, &r, 1);
    assert_int_equal(r.reached, 1);
    assert_int_equal(r.status[0], QSYNC_EPROTO);
    assert_int_equal(r.exited, 1);
}

static void test_advance_twice_is_busy(void **state)
{
    (void)state;
    struct rec r = {0};
    r.close_in_reached = 1;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, "good");
    assert_int_equal(qsync_advance(ctx, 10), 0);
    assert_int_equal(qsync_advance(ctx, 10), QSYNC_EBUSY);
    assert_non_null(strstr(qsync_last_error(ctx), "still pending"));
    run_and_close_loop(&loop);
    assert_int_equal(r.reached, 1);
    assert_int_equal(r.status[0], 0);
    assert_int_equal(r.deadline[0], 10000);
}

static void test_bad_calls(void **state)
{
    (void)state;
    struct rec r = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    qsync_ctx *ctx = NULL;
    qsync_options o = options();

    o.icount_shift = 11;
    assert_int_equal(qsync_ctx_new(&loop, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "icount_shift"));
    o = options();
    o.plugin_args = "engine=insn,fd_in=5";
    assert_int_equal(qsync_ctx_new(&loop, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "'fd_in'"));
    o.plugin_args = "engine";
    assert_int_equal(qsync_ctx_new(&loop, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "not key=value"));
    assert_null(ctx);

    o = options();
    ctx = new_ctx(&loop, &o, &r);
    assert_int_equal(qsync_advance(ctx, 10), QSYNC_ESTATE);
    const char *empty[] = {NULL};
    assert_int_equal(qsync_start(ctx, empty), QSYNC_EARG);
    const char *with_icount[] = {FAKE_QEMU, "good", "-icount", "shift=3", NULL};
    assert_int_equal(qsync_start(ctx, with_icount), QSYNC_EARG);
    assert_non_null(strstr(qsync_last_error(ctx), "argv[2] '-icount'"));
    const char *missing[] = {"/nonexistent/qemu-system-nothing", NULL};
    assert_int_equal(qsync_start(ctx, missing), -ENOENT);
    assert_non_null(strstr(qsync_last_error(ctx), "/nonexistent/qemu-system-nothing"));
    /* libuv releases the failed spawn's handles on the loop: until then a
     * retry gets its own code, not one that means an advance is pending. */
    assert_int_equal(qsync_start(ctx, missing), QSYNC_ECLEANUP);
    assert_non_null(strstr(qsync_last_error(ctx), "cleaned up"));
    assert_false(qsync_is_fatal(QSYNC_ECLEANUP));
    assert_int_equal(qsync_failed(ctx), 0);
    /* Blocking helpers refuse a caller's loop. */
    assert_int_equal(qsync_advance_wait_ns(ctx, 10, NULL), QSYNC_ESTATE);
    assert_int_equal(qsync_close_wait(ctx), QSYNC_ESTATE);
    assert_int_equal(qsync_close(ctx, on_close), 0);
    run_and_close_loop(&loop);
    assert_int_equal(r.closed, 1);
    assert_int_equal(r.exited, 0);
    assert_int_equal(r.reached, 0);

    /* A plugin path that does not exist. */
    struct rec r2 = {0};
    uv_loop_init(&loop);
    o = options();
    o.plugin_path = "/nonexistent/libqsync-plugin.so";
    ctx = new_ctx(&loop, &o, &r2);
    const char *argv[] = {FAKE_QEMU, "good", NULL};
    assert_int_equal(qsync_start(ctx, argv), QSYNC_ENOPLUGIN);
    assert_non_null(strstr(qsync_last_error(ctx), "/nonexistent/libqsync-plugin.so"));
    assert_int_equal(qsync_close(ctx, NULL), 0);
    run_and_close_loop(&loop);
}

static void test_close_with_advance_pending(void **state)
{
    (void)state;
    struct rec r = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    o.kill_grace_ms = 100;
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, "hang");
    assert_int_equal(qsync_advance(ctx, 10), 0);
    assert_int_equal(qsync_close(ctx, on_close), 0);
    assert_int_equal(qsync_advance(ctx, 10), QSYNC_ESTATE);
    /* Nothing is reported synchronously from inside qsync_close(). */
    assert_int_equal(r.reached, 0);
    run_and_close_loop(&loop);
    assert_int_equal(r.reached, 1);
    assert_int_equal(r.status[0], QSYNC_ECANCELED);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.ex.by_close, 1);
    assert_int_equal(r.closed, 1);
}

static void test_blocking_helpers(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(NULL, &o, &r);
    start(ctx, "good");
    qsync_stop stop;
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, &stop), 0);
    assert_int_equal(stop.deadline_ns, 1000);
    assert_int_equal(stop.virtual_ns, 1000);
    assert_int_equal(qsync_run_until_ns(ctx, 1000000, 100000, &stop), 0);
    assert_int_equal(stop.deadline_ns, 1000000);
    assert_int_equal(qsync_now_ns(ctx), 1000000);
    /* 1 + 10 quanta: from 1 us in steps of 100 us, the last one shortened
     * to land on 1 ms exactly. */
    assert_int_equal(r.reached, 11);
    assert_int_equal(qsync_run_until_ns(ctx, 5, 1, NULL), QSYNC_ERANGE);
    assert_int_equal(qsync_run_until_ns(ctx, 2000000, 0, NULL), QSYNC_EARG);
    r.try_recurse = 1;
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), 0);
    assert_int_equal(r.recurse_rc, QSYNC_ERECURSE);
    assert_int_equal(qsync_close_wait(ctx), 0);
    assert_int_equal(r.exited, 1);
}

/*
 * NEXT (qsync_options.next_event): a NEXT before a REPORT marks that stop
 * halted and gives qsync_next_event_ns(); a stop without one is busy (its
 * own time); asked for, the handshake says so.
 */
static void test_next_event_from_next(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    o.next_event = 1;
    qsync_ctx *ctx = new_ctx(NULL, &o, &r);
    start(ctx, "next");
    assert_int_equal(qsync_next_event_ns(ctx), 0); /* nothing known yet */
    qsync_stop stop;
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, &stop), 0); /* seq 1: busy */
    qsync_info info;
    assert_int_equal(qsync_get_info(ctx, &info), 0);
    assert_int_equal(info.next_event, 1);
    assert_false(stop.flags & QSYNC_STOP_HALTED);
    assert_int_equal(qsync_next_event_ns(ctx), 1000);
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, &stop), 0); /* seq 2: halted */
    assert_true(stop.flags & QSYNC_STOP_HALTED);
    assert_int_equal(qsync_next_event_ns(ctx), 3000);
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, &stop), 0); /* seq 3: busy again */
    assert_false(stop.flags & QSYNC_STOP_HALTED);
    assert_int_equal(qsync_next_event_ns(ctx), 3000);
    assert_int_equal(qsync_close_wait(ctx), 0);
    /* Not asked: the handshake offers nothing, the option is not passed. */
    struct rec r2 = {0};
    o.next_event = 0;
    ctx = new_ctx(NULL, &o, &r2);
    start(ctx, "next");
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, &stop), 0);
    assert_int_equal(qsync_get_info(ctx, &info), 0);
    assert_int_equal(info.next_event, 0);
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, &stop), 0);
    assert_false(stop.flags & QSYNC_STOP_HALTED);
    assert_int_equal(qsync_next_event_ns(ctx), 2000);
    assert_int_equal(qsync_close_wait(ctx), 0);
}

/* A NEXT the library did not ask for, or two before one REPORT, is a
 * protocol error that names it. */
static void check_next_refused(const char *scenario, int asked, const char *why)
{
    struct rec r = {0};
    qsync_options o = options();
    o.next_event = asked;
    qsync_ctx *ctx = new_ctx(NULL, &o, &r);
    start(ctx, scenario);
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), 0);
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), QSYNC_EPROTO);
    assert_non_null(strstr(qsync_last_error(ctx), why));
    qsync_close_wait(ctx);
}

static void test_next_refused(void **state)
{
    (void)state;
    check_next_refused("next-unasked", 0, "NEXT that the library did not ask for");
    check_next_refused("next-twice", 1, "NEXT twice before one REPORT");
}

static void test_next_event_option_checked(void **state)
{
    (void)state;
    qsync_options o = options();
    qsync_ctx *ctx = NULL;
    char err[256];
    o.next_event = 2;
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "next_event: 2 is not 0 or 1"));
    o.next_event = 1;
    o.mode = QSYNC_MODE_QQQ;
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "next_event needs mode QSYNC_MODE_PLUGIN"));
    o.mode = QSYNC_MODE_PLUGIN;
    o.plugin_args = "next=1";
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "next"));
}

/* The caller's own model step, between two calls into the library. */
static void model_step_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/*
 * Watchdogs run from the moment they are armed, not from the loop's
 * cached time: a simulator that spends longer than advance_timeout_ms on
 * its own step between two blocking calls still gets its quantum, and
 * qsync_close_wait() after such a pause lets QEMU end by itself (status
 * 0) instead of SIGKILLing it at once.
 */
static void test_blocking_watchdogs_from_now(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    o.start_timeout_ms = 300;
    o.advance_timeout_ms = 300;
    o.kill_grace_ms = 300;
    qsync_ctx *ctx = new_ctx(NULL, &o, &r);
    model_step_ms(500);
    start(ctx, "good");
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), 0);
    model_step_ms(500);
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), 0);
    assert_int_equal(r.reached, 2);
    model_step_ms(500);
    assert_int_equal(qsync_close_wait(ctx), 0);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.ex.term_signal, 0);
    assert_int_equal(r.ex.exit_status, 0);
}

/* The same on the caller's loop, which the caller's own work kept from
 * turning: before the start, and between a stop and the next advance. */
static void test_loop_watchdogs_from_now(void **state)
{
    (void)state;
    struct rec r = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    o.start_timeout_ms = 300;
    o.advance_timeout_ms = 300;
    o.kill_grace_ms = 300;
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    model_step_ms(500);
    start(ctx, "good");
    assert_int_equal(qsync_advance(ctx, 1), 0);
    while (r.reached < 1 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    model_step_ms(500);
    assert_int_equal(qsync_advance(ctx, 1), 0);
    while (r.reached < 2 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r.status[0], 0);
    assert_int_equal(r.status[1], 0);
    assert_int_equal(r.errors, 0);
    model_step_ms(500);
    assert_int_equal(qsync_close(ctx, on_close), 0);
    run_and_close_loop(&loop);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.ex.term_signal, 0);
}

/*
 * The blocking join: grant, run the model's own step while QEMU runs the
 * quantum, then wait. The model's step is longer than the advance
 * watchdog, which counts only from the wait.
 */
static void test_wait_reached(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    o.advance_timeout_ms = 300;
    qsync_ctx *ctx = new_ctx(NULL, &o, &r);
    start(ctx, "good");
    qsync_stop stop;
    assert_int_equal(qsync_wait_reached(ctx, &stop), QSYNC_ESTATE);
    assert_non_null(strstr(qsync_last_error(ctx), "no advance to wait for"));
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(qsync_advance_ns(ctx, 1000), 0);
        model_step_ms(400);
        memset(&stop, 0, sizeof stop);
        assert_int_equal(qsync_wait_reached(ctx, &stop), 0);
        assert_int_equal(stop.deadline_ns, 1000u * (unsigned)i);
        assert_null(stop.vcpu_instructions);
        /* Each outcome is returned once. */
        assert_int_equal(qsync_wait_reached(ctx, &stop), QSYNC_ESTATE);
    }
    assert_int_equal(r.reached, 3);
    /* qsync_advance_wait_ns() is the same join, at once. */
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, &stop), 0);
    assert_int_equal(qsync_wait_reached(ctx, &stop), QSYNC_ESTATE);
    /* QEMU was running: the close ended it. */
    assert_int_equal(qsync_close_wait(ctx), 0);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.ex.by_close, 1);
}

/*
 * A blocking user has no exited callback to read: when QEMU ends, the
 * helper returns once its exit is known, and the last error carries its
 * status and the last line it printed. QEMU ended by itself, so by_close
 * is 0 although the context was then closed.
 */
static void test_blocking_says_why(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(NULL, &o, &r);
    start(ctx, "poweroff");
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), 0);
    assert_int_equal(qsync_advance_ns(ctx, 1000), 0);
    assert_int_equal(qsync_wait_reached(ctx, NULL), 0);
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), QSYNC_EEXITED);
    const char *msg = qsync_last_error(ctx);
    if (!strstr(msg, "status 7") || !strstr(msg, "fake-qemu: the guest powered off"))
        fail_msg("the last error does not say why: '%s'", msg);
    assert_int_equal(r.exited, 1);
    assert_int_equal(qsync_close_wait(ctx), 0);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.ex.by_close, 0);
    assert_int_equal(r.ex.exit_status, 7);
}

/* Closing inside reached(QSYNC_EEXITED), as the docs' examples do, after
 * the guest powered off by itself: by_close stays 0. */
static void test_close_after_poweroff_is_not_by_close(void **state)
{
    (void)state;
    struct rec r = {0};
    r.advance_upto = 10;
    r.step_ns = 10000;
    r.close_in_reached = 3;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, "poweroff");
    assert_int_equal(qsync_advance(ctx, 10), 0);
    run_and_close_loop(&loop);
    assert_int_equal(r.reached, 3);
    assert_int_equal(r.status[2], QSYNC_EEXITED);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.ex.by_close, 0);
    assert_int_equal(r.ex.exit_status, 7);
}

/* Output by lines, each with the virtual time of the stop that ended its
 * quantum, before that stop's reached. */
struct line_rec {
    int n, reached;
    char text[8][64];
    size_t len[8];
    uint64_t v[8];
    int reached_before[8]; /* reached callbacks seen before this line */
};

static void lines_on_line(qsync_ctx *ctx, const char *line, size_t len, uint64_t v)
{
    struct line_rec *l = qsync_get_data(ctx);
    assert_true(l->n < 8);
    assert_int_equal(strlen(line), len);
    snprintf(l->text[l->n], sizeof l->text[0], "%.*s", (int)(len < 60 ? len : 60), line);
    l->len[l->n] = len;
    l->v[l->n] = v;
    l->reached_before[l->n++] = l->reached;
}

static void lines_on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct line_rec *l = qsync_get_data(ctx);
    l->reached++;
    if (status == 0)
        assert_int_equal(qsync_advance_ns(ctx, 10000), 0);
    (void)stop;
}

static void test_output_by_lines(void **state)
{
    (void)state;
    struct line_rec l;
    memset(&l, 0, sizeof l);
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    o.stdout_mode = QSYNC_OUTPUT_LINES;
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.output_line = lines_on_line;
    cb.reached = lines_on_reached;
    qsync_ctx *ctx = NULL;
    assert_int_equal(qsync_ctx_new(&loop, &o, &cb, &ctx, NULL, 0), 0);
    qsync_set_data(ctx, &l);
    start(ctx, "lines");
    assert_int_equal(qsync_advance_ns(ctx, 10000), 0);
    while (l.reached < 7 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(qsync_close(ctx, NULL), 0);
    run_and_close_loop(&loop);
    assert_int_equal(l.n, 6);
    /* Completed at stop 2, before reached(2). */
    assert_string_equal(l.text[0], "x1-x2-");
    assert_int_equal(l.v[0], 20000);
    assert_int_equal(l.reached_before[0], 1);
    assert_string_equal(l.text[1], "x3-x4-");
    assert_int_equal(l.v[1], 40000);
    assert_int_equal(l.reached_before[1], 3);
    /* 5003 bytes: a piece of QSYNC_LINE_MAX, then the rest. */
    assert_int_equal(l.len[2], QSYNC_LINE_MAX);
    assert_int_equal(l.len[3], 5003 - QSYNC_LINE_MAX);
    assert_int_equal(l.v[2], 50000);
    assert_int_equal(l.v[3], 50000);
    assert_string_equal(l.text[4], "x6-");
    assert_int_equal(l.v[4], 60000);
    /* QEMU ended in the 7th quantum: its last line, with no newline, comes
     * with the last time known (the plugin's exit message), before the
     * failed reached. */
    assert_string_equal(l.text[5], "end-without-newline");
    assert_int_equal(l.v[5], 4242);
    assert_int_equal(l.reached_before[5], 6);
    assert_int_equal(l.reached, 7);
}

static void test_blocking_exit_status(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(NULL, &o, &r);
    start(ctx, "poweroff");
    assert_int_equal(qsync_run_until_ns(ctx, 100000, 10000, NULL), QSYNC_EEXITED);
    int64_t status = 0;
    assert_int_equal(qsync_wait_exit_ms(ctx, 5000, &status), 0);
    assert_int_equal(status, 7);
    assert_int_equal(qsync_close_wait(ctx), 0);
    assert_int_equal(r.reached, 3);
    assert_int_equal(r.exited, 1);
}

static void test_wait_exit_timeout(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(NULL, &o, &r);
    start(ctx, "good");
    assert_int_equal(qsync_wait_exit_ms(ctx, 100, NULL), QSYNC_ETIMEDOUT);
    assert_int_equal(qsync_close_wait(ctx), 0);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.ex.by_close, 1);
}

static void test_stdout_to_callback(void **state)
{
    (void)state;
    struct rec r = {0};
    r.close_in_reached = 1;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    o.stdout_mode = QSYNC_OUTPUT_CALLBACK;
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, "stdout");
    assert_int_equal(qsync_advance(ctx, 10), 0);
    run_and_close_loop(&loop);
    assert_string_equal(r.out, "hello from the guest\n");
}

static void test_output_comes_before_its_reached(void **state)
{
    (void)state;
    struct rec r = {0};
    r.advance_upto = 60;
    r.step_ns = 1000;
    r.close_in_reached = 60;
    r.check_stamps = 1;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    o.stdout_mode = QSYNC_OUTPUT_CALLBACK;
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, "stamped");
    assert_int_equal(qsync_advance(ctx, 1), 0);
    run_and_close_loop(&loop);
    assert_int_equal(r.reached, 60);
    assert_int_equal(r.errors, 0);
}

/*
 * The same promise where the loop's own order cannot keep it: a blocking
 * helper on shared memory polls the ring and sees the report before the
 * loop has looked at the stdout pipe, so only the library's drain puts
 * "q<seq>" ahead of its reached.
 */
static void test_output_before_reached_when_polling(void **state)
{
    (void)state;
    struct rec r = {0};
    r.check_stamps = 1;
    qsync_options o = options();
    o.stdout_mode = QSYNC_OUTPUT_CALLBACK;
    o.channel = QSYNC_CHANNEL_SHM;
    o.shm_poll_ns = 100000000; /* the fake answers within it: the ring is polled */
    qsync_ctx *ctx = new_ctx(NULL, &o, &r);
    start(ctx, "stamped");
    qsync_stop stop;
    for (int i = 1; i <= 60; i++) {
        assert_int_equal(qsync_advance_wait_ns(ctx, 1000, &stop), 0);
        assert_int_equal(stop.seq, (uint64_t)i);
    }
    assert_int_equal(r.reached, 60);
    assert_int_equal(qsync_close_wait(ctx), 0);
}

/* The input scenario's reports, read from its stdout. */
struct input_rec {
    int ready, reached, step;
    char out[4096];
    qsync_ctx *ctx;
};

static void input_on_ready(qsync_ctx *ctx, const qsync_info *info)
{
    struct input_rec *r = qsync_get_data(ctx);
    r->ready++;
    assert_int_equal(info->input, 1);
}

static void input_on_output(qsync_ctx *ctx, const char *data, size_t len)
{
    struct input_rec *r = qsync_get_data(ctx);
    size_t have = strlen(r->out);
    assert_true(have + len < sizeof r->out);
    memcpy(r->out + have, data, len);
    r->out[have + len] = '\0';
}

static void input_on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct input_rec *r = qsync_get_data(ctx);
    (void)stop;
    assert_int_equal(status, 0);
    r->reached++;
    static uint8_t big[QSYNC_INPUT_MAX_PER_STOP + 1];
    switch (r->reached) {
    case 1:
        /* Nothing was sent before the first grant. */
        assert_string_equal(r->out, "in 0 0 0\n");
        /* 10000 bytes of 1: three frames; then 6 more in a fourth. */
        memset(big, 1, sizeof big);
        assert_int_equal(qsync_send_input(ctx, big, 10000), 0);
        assert_int_equal(qsync_send_input(ctx, "abcdef", 6), 0);
        /* The per-stop limit counts both calls. */
        assert_int_equal(qsync_send_input(ctx, big, QSYNC_INPUT_MAX_PER_STOP - 10000),
                         QSYNC_EARG);
        assert_non_null(strstr(qsync_last_error(ctx), "allowed between two advances"));
        break;
    case 2: {
        unsigned sum = 10000 + 'a' + 'b' + 'c' + 'd' + 'e' + 'f';
        char want[64];
        snprintf(want, sizeof want, "in 10006 4 %u\n", sum);
        assert_string_equal(r->out, want);
        /* A new stop, a new allowance: the most at once. */
        assert_int_equal(qsync_send_input(ctx, big, QSYNC_INPUT_MAX_PER_STOP), 0);
        break;
    }
    case 3:
        assert_string_equal(r->out, "in 16384 5 16384\n");
        assert_int_equal(qsync_close(ctx, NULL), 0);
        return;
    }
    r->out[0] = '\0';
    assert_int_equal(qsync_advance(ctx, 10), 0);
    /* Pending: input must wait for the stop. */
    assert_int_equal(qsync_send_input(ctx, "x", 1), QSYNC_EBUSY);
}

static void test_send_input(void **state)
{
    (void)state;
    struct input_rec r;
    memset(&r, 0, sizeof r);
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    o.stdout_mode = QSYNC_OUTPUT_CALLBACK;
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.ready = input_on_ready;
    cb.reached = input_on_reached;
    cb.output = input_on_output;
    char err[256];
    qsync_ctx *ctx = NULL;
    assert_int_equal(qsync_ctx_new(&loop, &o, &cb, &ctx, err, sizeof err), 0);
    qsync_set_data(ctx, &r);
    assert_int_equal(qsync_send_input(ctx, "x", 1), QSYNC_ESTATE); /* not started */
    const char *argv[] = {FAKE_QEMU, "input", NULL};
    assert_int_equal(qsync_start(ctx, argv), 0);
    assert_int_equal(qsync_send_input(ctx, "x", 1), QSYNC_ESTATE); /* no handshake yet */
    assert_int_equal(qsync_send_input(ctx, NULL, 1), QSYNC_EARG);
    assert_int_equal(qsync_send_input(ctx, "x", 0), QSYNC_EARG);
    assert_int_equal(qsync_advance(ctx, 10), 0);
    run_and_close_loop(&loop);
    assert_int_equal(r.ready, 1);
    assert_int_equal(r.reached, 3);
}

/* A plugin that does not offer input (HELLO without G_INPUT). */
static void test_send_input_not_offered(void **state)
{
    (void)state;
    struct rec r = {0};
    r.close_in_reached = 1;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    r.try_input = 1;
    start(ctx, "good");
    assert_int_equal(qsync_advance(ctx, 10), 0);
    run_and_close_loop(&loop);
    assert_int_equal(r.reached, 1);
    assert_int_equal(r.input_rc, QSYNC_ENOTSUP);
    assert_non_null(strstr(r.input_err, "does not let the plugin feed"));
    assert_int_equal(qsync_is_fatal(QSYNC_ENOTSUP), 0);
}

static void test_stderr_tail_is_bounded(void **state)
{
    (void)state;
    struct rec r = {0};
    r.close_in_reached = 1;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = options();
    o.stderr_tail_bytes = 1000;
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, "chatty");
    assert_int_equal(qsync_advance(ctx, 10), 0);
    run_and_close_loop(&loop);
    assert_int_equal(strlen(r.tail), 1000);
    const char *end = "fake-qemu: last words\n";
    assert_string_equal(r.tail + 1000 - strlen(end), end);
}

/* Whether a context is broken is its own state (qsync_failed()), not a
 * guess from a code: a refusal leaves it working; after a failure every
 * call that needs QEMU returns the failure, and says so in
 * qsync_last_error() even when another error was set in between. */
static void test_failed_is_the_contexts_state(void **state)
{
    (void)state;
    struct rec r = {0};
    qsync_options o = options();
    qsync_ctx *ctx = new_ctx(NULL, &o, &r);
    start(ctx, "good");
    assert_int_equal(qsync_advance_ns(ctx, 1000), 0);
    assert_int_equal(qsync_advance_ns(ctx, 1000), QSYNC_EBUSY);
    assert_int_equal(qsync_failed(ctx), 0);
    assert_int_equal(qsync_wait_reached(ctx, NULL), 0);
    assert_int_equal(qsync_close_wait(ctx), 0);

    struct rec g = {0};
    ctx = new_ctx(NULL, &o, &g);
    start(ctx, "garbage");
    assert_int_equal(qsync_failed(ctx), 0);
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), QSYNC_EPROTO);
    assert_int_equal(qsync_failed(ctx), QSYNC_EPROTO);
    assert_non_null(strstr(qsync_last_error(ctx), "protocol error"));
    /* Another error in between, then a call the failure refuses. */
    assert_int_equal(qsync_run_until_ns(ctx, 5000, 0, NULL), QSYNC_EARG);
    assert_int_equal(qsync_advance_ns(ctx, 1000), QSYNC_EPROTO);
    const char *msg = qsync_last_error(ctx);
    if (!strstr(msg, "QSYNC_EPROTO") || !strstr(msg, "qsync_advance"))
        fail_msg("the refusal does not say the context has failed: '%s'", msg);
    assert_int_equal(qsync_failed(ctx), QSYNC_EPROTO);
    assert_int_equal(qsync_close_wait(ctx), 0);
}

static void test_errors_have_text(void **state)
{
    (void)state;
    static const int codes[] = {QSYNC_EARG,     QSYNC_ESTATE,    QSYNC_EBUSY,   QSYNC_EPROTO,
                                QSYNC_EVERSION, QSYNC_EEXITED,   QSYNC_ETIMEDOUT, QSYNC_EPLUGIN,
                                QSYNC_ECANCELED, QSYNC_ERECURSE, QSYNC_ENOPLUGIN, QSYNC_ERANGE,
                                QSYNC_ENOTSUP,  QSYNC_EFULL,     QSYNC_ECLEANUP};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_string_not_equal(qsync_strerror(codes[i]), "unknown error");
        assert_memory_equal(qsync_err_name(codes[i]), "QSYNC_E", 7);
    }
    assert_string_equal(qsync_err_name(QSYNC_EBUSY), "QSYNC_EBUSY");
    assert_string_equal(qsync_err_name(-EPIPE), "EPIPE");
    assert_string_equal(qsync_strerror(-ENOENT), "No such file or directory");
    assert_string_equal(qsync_strerror(-99999), "unknown error");
    assert_false(qsync_is_fatal(QSYNC_EBUSY));
    assert_true(qsync_is_fatal(QSYNC_EEXITED));
    /* A code alone cannot say for these: -ENOMEM from qsync_send_input()
     * or qsync_group_add() leaves the context intact (qsync_failed()). */
    assert_false(qsync_is_fatal(-ENOMEM));
    assert_false(qsync_is_fatal(QSYNC_EFULL));
    assert_int_equal(qsync_version(), QSYNC_VERSION_HEX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_advances_exactly),
        cmocka_unit_test(test_die_mid_quantum),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_bad_version),
        cmocka_unit_test(test_wrong_seq),
        cmocka_unit_test(test_short_report_refused),
        cmocka_unit_test(test_deadline_past_clock_end),
        cmocka_unit_test(test_plugin_error_message),
        cmocka_unit_test(test_exit_before_hello_keeps_stderr),
        cmocka_unit_test(test_start_timeout),
        cmocka_unit_test(test_advance_watchdog),
        cmocka_unit_test(test_guest_powers_off_while_pending),
        cmocka_unit_test(test_truncated_frame),
        cmocka_unit_test(test_advance_twice_is_busy),
        cmocka_unit_test(test_bad_calls),
        cmocka_unit_test(test_close_with_advance_pending),
        cmocka_unit_test(test_blocking_helpers),
        cmocka_unit_test(test_next_event_from_next),
        cmocka_unit_test(test_next_refused),
        cmocka_unit_test(test_next_event_option_checked),
        cmocka_unit_test(test_blocking_exit_status),
        cmocka_unit_test(test_output_by_lines),
        cmocka_unit_test(test_wait_reached),
        cmocka_unit_test(test_blocking_says_why),
        cmocka_unit_test(test_close_after_poweroff_is_not_by_close),
        cmocka_unit_test(test_blocking_watchdogs_from_now),
        cmocka_unit_test(test_loop_watchdogs_from_now),
        cmocka_unit_test(test_wait_exit_timeout),
        cmocka_unit_test(test_stdout_to_callback),
        cmocka_unit_test(test_output_comes_before_its_reached),
        cmocka_unit_test(test_output_before_reached_when_polling),
        cmocka_unit_test(test_send_input),
        cmocka_unit_test(test_send_input_not_offered),
        cmocka_unit_test(test_stderr_tail_is_bounded),
        cmocka_unit_test(test_failed_is_the_contexts_state),
        cmocka_unit_test(test_errors_have_text),
    };
    return cmocka_run_group_tests_name("context", tests, NULL, NULL);
}

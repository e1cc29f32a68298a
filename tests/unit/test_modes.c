/*
 * The two older protocols against fake peers (fake_qemu.c): qqq mode (seed
 * 002's native ints over pipes) and legacy FIFO mode (the Time Sync Plugin's named
 * FIFOs). Faults: short reads and writes, end of file at each point of the
 * exchange, garbage, a peer that never opens its FIFO. Each fault must give
 * a clear error callback; nothing may hang, and no directory may be left.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qsync/qsync.h>

#ifndef FAKE_QEMU
#error "FAKE_QEMU must name the fake peer's path"
#endif

#define MAX_EVENTS 32

struct rec {
    int ready, reached, exited, errors;
    int status[MAX_EVENTS];
    uint64_t deadline[MAX_EVENTS], virtual_ns[MAX_EVENTS];
    unsigned flags[MAX_EVENTS];
    int error_code;
    qsync_exit ex;
    char tail[2048];
    char info_mode[16];
    char last_error[512];
    char out[64]; /* the peer's stdout, when delivered to the callback */
    /* Advance plan: steps_us[i] after the i-th reached. */
    uint64_t steps_us[MAX_EVENTS];
    int n_steps;
};

static void on_ready(qsync_ctx *ctx, const qsync_info *info)
{
    struct rec *r = qsync_get_data(ctx);
    r->ready++;
    snprintf(r->info_mode, sizeof r->info_mode, "%s", info->mode);
    assert_string_equal(info->engine, "unknown");
    assert_false(info->exact);
}

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct rec *r = qsync_get_data(ctx);
    int i = r->reached++;
    r->status[i] = status;
    if (status) {
        snprintf(r->last_error, sizeof r->last_error, "%s", qsync_last_error(ctx));
        return;
    }
    r->deadline[i] = stop->deadline_ns;
    r->virtual_ns[i] = stop->virtual_ns;
    r->flags[i] = stop->flags;
    assert_int_equal(stop->n_vcpus, 0);
    assert_null(stop->vcpu_instructions);
    if (r->reached < r->n_steps)
        assert_int_equal(qsync_advance(ctx, r->steps_us[r->reached]), 0);
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct rec *r = qsync_get_data(ctx);
    r->exited++;
    r->ex = *ex;
    snprintf(r->tail, sizeof r->tail, "%s", ex->stderr_tail);
}

static void on_error(qsync_ctx *ctx, int code, const char *msg)
{
    struct rec *r = qsync_get_data(ctx);
    r->errors++;
    r->error_code = code;
    snprintf(r->last_error, sizeof r->last_error, "%s", msg);
}

static void on_output(qsync_ctx *ctx, const char *data, size_t len)
{
    struct rec *r = qsync_get_data(ctx);
    size_t have = strlen(r->out);
    if (have + len < sizeof r->out) {
        memcpy(r->out + have, data, len);
        r->out[have + len] = '\0';
    }
}

static qsync_ctx *new_ctx(uv_loop_t *loop, qsync_options *o, struct rec *r)
{
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.output = on_output;
    cb.ready = on_ready;
    cb.reached = on_reached;
    cb.exited = on_exited;
    cb.error = on_error;
    o->plugin_path = FAKE_QEMU; /* any readable file: the fake loads nothing */
    o->quiet_stderr = 1;
    qsync_ctx *ctx = NULL;
    char err[256] = "";
    int rc = qsync_ctx_new(loop, o, &cb, &ctx, err, sizeof err);
    if (rc)
        fail_msg("qsync_ctx_new: %s", err);
    qsync_set_data(ctx, r);
    return ctx;
}

static void start(qsync_ctx *ctx, const char *scenario)
{
    const char *argv[] = {FAKE_QEMU, scenario, NULL};
    int rc = qsync_start(ctx, argv);
    if (rc)
        fail_msg("qsync_start: %s", qsync_last_error(ctx));
}

/* Runs until QEMU has exited or the plan is done, then closes. */
static void run(uv_loop_t *loop, qsync_ctx *ctx, struct rec *r)
{
    while (r->exited == 0 && r->reached < r->n_steps && uv_run(loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(qsync_close(ctx, NULL), 0);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static qsync_options qqq_options(void)
{
    qsync_options o;
    qsync_options_init(&o);
    o.mode = QSYNC_MODE_QQQ;
    return o;
}

static void qqq_plan(struct rec *r)
{
    r->n_steps = 4;
    for (int i = 0; i < r->n_steps; i++)
        r->steps_us[i] = 100u * (uint64_t)(i + 1);
}

static void check_qqq_plan(const struct rec *r)
{
    uint64_t t = 0;
    for (int i = 0; i < 4; i++) {
        t += 100000u * (uint64_t)(i + 1);
        assert_int_equal(r->status[i], 0);
        assert_int_equal(r->deadline[i], t);
        assert_int_equal(r->virtual_ns[i], t);
        assert_int_equal(r->flags[i], 0);
    }
}

static void qqq_exact(const char *scenario)
{
    struct rec r = {0};
    qqq_plan(&r);
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = qqq_options();
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, scenario);
    /* Bad advances are refused before anything is written. */
    assert_int_equal(qsync_advance(ctx, 0), QSYNC_EARG);
    assert_int_equal(qsync_advance_ns(ctx, 1500), QSYNC_EARG);
    assert_non_null(strstr(qsync_last_error(ctx), "whole number of microseconds"));
    assert_int_equal(qsync_advance(ctx, (uint64_t)INT_MAX + 1), QSYNC_ERANGE);
    assert_non_null(strstr(qsync_last_error(ctx), "does not fit"));
    assert_int_equal(qsync_advance(ctx, r.steps_us[0]), 0);
    run(&loop, ctx, &r);
    assert_int_equal(r.ready, 1);
    assert_string_equal(r.info_mode, "qqq");
    assert_int_equal(r.reached, 4);
    check_qqq_plan(&r);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.ex.by_close, 1);
    /* Closing the pipes ended the fake, as it ends -qqq: no signal needed. */
    assert_int_equal(r.ex.term_signal, 0);
    assert_int_equal(r.errors, 0);
}

static void test_qqq_exact(void **state)
{
    (void)state;
    qqq_exact("qqq-good");
}

/* The qqq protocol has no handshake, so the first answer also waits for
 * QEMU's start: advance_timeout_ms (200 ms) does not count the 400 ms the
 * fake takes to start; start_timeout_ms does. */
static void test_qqq_start_not_counted_as_advance(void **state)
{
    (void)state;
    struct rec r = {0};
    qqq_plan(&r);
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = qqq_options();
    o.advance_timeout_ms = 200;
    o.start_timeout_ms = 5000;
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, "qqq-slow-start");
    assert_int_equal(qsync_advance(ctx, r.steps_us[0]), 0);
    run(&loop, ctx, &r);
    assert_int_equal(r.reached, 4);
    check_qqq_plan(&r);
    assert_int_equal(r.errors, 0);
}

static void test_qqq_short_writes(void **state)
{
    (void)state;
    qqq_exact("qqq-split");
}

static void test_qqq_more_than_asked(void **state)
{
    (void)state;
    struct rec r = {0};
    r.n_steps = 2;
    r.steps_us[0] = r.steps_us[1] = 100;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = qqq_options();
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, "qqq-more");
    assert_int_equal(qsync_advance(ctx, 100), 0);
    run(&loop, ctx, &r);
    assert_int_equal(r.reached, 2);
    /* QEMU advanced 103 us: reported, flagged, and the next grant starts there. */
    assert_int_equal(r.deadline[0], 100000);
    assert_int_equal(r.virtual_ns[0], 103000);
    assert_int_equal(r.flags[0], QSYNC_STOP_DEVIATION);
    assert_int_equal(r.deadline[1], 203000);
    assert_int_equal(r.virtual_ns[1], 206000);
}

static void qqq_fault(const char *scenario, int want, const char *text)
{
    struct rec r = {0};
    r.n_steps = 3;
    r.steps_us[0] = r.steps_us[1] = r.steps_us[2] = 10;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = qqq_options();
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, scenario);
    assert_int_equal(qsync_advance(ctx, 10), 0);
    /* Until QEMU is gone; or until the plan is done without a fault, which
     * the checks below then report (QEMU would live on). */
    while (r.exited == 0 && !(r.reached == r.n_steps && r.status[r.reached - 1] == 0) &&
           uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_true(r.reached >= 1);
    assert_int_equal(r.status[r.reached - 1], want);
    if (text && !strstr(r.last_error, text))
        fail_msg("%s: error '%s' lacks '%s'", scenario, r.last_error, text);
    /* The FIFO protocol has none. */
    if (strstr(r.last_error, "handshake"))
        fail_msg("%s: error '%s' speaks of a handshake", scenario, r.last_error);
    for (int i = 0; i + 1 < r.reached; i++)
        assert_int_equal(r.status[i], 0);
    assert_int_equal(r.exited, 1);
    assert_int_equal(qsync_close(ctx, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_qqq_faults(void **state)
{
    (void)state;
    qqq_fault("qqq-less", QSYNC_EPROTO, "advanced 9 us of the 10 requested");
    qqq_fault("qqq-negative", QSYNC_EPROTO, "advanced -5 us");
    qqq_fault("qqq-half", QSYNC_EPROTO, "ended inside a message");
    qqq_fault("qqq-eof-start", QSYNC_EEXITED, NULL);
    qqq_fault("qqq-eof-mid", QSYNC_EEXITED, NULL);
}

/*
 * A peer that closed its end of the request pipe but lives on: writing the
 * grant must not raise SIGPIPE, which is at its default (death) here, so
 * this process surviving the advance is the check. The library holds a
 * reader of that pipe itself, so the grant is written and the advance
 * waits, as it would for a QEMU that is slow to answer.
 */
static void test_qqq_no_sigpipe(void **state)
{
    (void)state;
    struct rec r = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = qqq_options();
    o.stdout_mode = QSYNC_OUTPUT_CALLBACK;
    o.kill_grace_ms = 100; /* the peer ignores the closed pipes: SIGKILL ends it */
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    start(ctx, "qqq-close-read");
    while (strcmp(r.out, "closed\n") != 0 && r.exited == 0 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_string_equal(r.out, "closed\n");
    assert_int_equal(qsync_advance(ctx, 10), 0);
    assert_int_equal(qsync_advance(ctx, 10), QSYNC_EBUSY);
    assert_int_equal(qsync_close(ctx, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(r.reached, 1);
    assert_int_equal(r.status[0], QSYNC_ECANCELED);
    assert_int_equal(r.exited, 1);
}

/* ---- FIFO mode ---------------------------------------------------------- */

static char tmpdir[PATH_MAX];

static int dir_entries(const char *path)
{
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static int fifo_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "%s/qsync-test-XXXXXX",
             getenv("TMPDIR") && getenv("TMPDIR")[0] == '/' ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    /* The library makes its private FIFO directory under $TMPDIR. */
    return setenv("TMPDIR", tmpdir, 1);
}

static int fifo_teardown(void **state)
{
    (void)state;
    return rmdir(tmpdir);
}

static qsync_options fifo_options(void)
{
    qsync_options o;
    qsync_options_init(&o);
    o.mode = QSYNC_MODE_FIFO;
    o.fifo_quantum_us = 100;
    return o;
}

static void fifo_exact(const char *scenario)
{
    struct rec r = {0};
    r.n_steps = 4;
    r.steps_us[0] = r.steps_us[1] = r.steps_us[2] = 100;
    r.steps_us[3] = 300;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = fifo_options();
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, scenario);
    assert_int_equal(dir_entries(tmpdir), 1); /* the private directory */
    assert_int_equal(qsync_advance(ctx, 150), QSYNC_EARG);
    assert_non_null(strstr(qsync_last_error(ctx), "fixed at start to 100 us"));
    assert_int_equal(qsync_advance(ctx, 100), 0);
    run(&loop, ctx, &r);
    assert_int_equal(r.ready, 1);
    assert_string_equal(r.info_mode, "fifo");
    assert_int_equal(r.reached, 4);
    static const uint64_t want[] = {100000, 200000, 300000, 600000};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r.status[i], 0);
        assert_int_equal(r.deadline[i], want[i]);
        assert_int_equal(r.virtual_ns[i], want[i]);
    }
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.ex.term_signal, 0);
    assert_int_equal(dir_entries(tmpdir), 0);
}

static void test_fifo_one_byte(void **state)
{
    (void)state;
    fifo_exact("fifo-one");
}

static void test_fifo_two_bytes(void **state)
{
    (void)state;
    fifo_exact("fifo-two");
}

static void fifo_fault(const char *scenario, int advance, int steps, int want, const char *text,
                       uint64_t start_timeout_ms)
{
    struct rec r = {0};
    r.n_steps = steps;
    for (int i = 0; i < 5; i++)
        r.steps_us[i] = 100;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = fifo_options();
    if (start_timeout_ms) {
        o.start_timeout_ms = start_timeout_ms;
        o.kill_grace_ms = 100;
    }
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    start(ctx, scenario);
    if (advance)
        assert_int_equal(qsync_advance(ctx, 100), 0);
    while (r.exited == 0 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    /* The fault reaches the user once: through the pending advance's
     * callback, or through the error callback when none was pending. */
    int got = r.reached > 0 && r.status[r.reached - 1] ? r.status[r.reached - 1] : r.error_code;
    assert_int_equal((r.reached > 0 && r.status[r.reached - 1] != 0) + r.errors, 1);
    if (got != want)
        fail_msg("%s: got %s, want %s (%s)", scenario, qsync_err_name(got), qsync_err_name(want),
                 r.last_error);
    if (text && !strstr(r.last_error, text))
        fail_msg("%s: error '%s' lacks '%s'", scenario, r.last_error, text);
    /* The FIFO protocol has none. */
    if (strstr(r.last_error, "handshake"))
        fail_msg("%s: error '%s' speaks of a handshake", scenario, r.last_error);
    assert_int_equal(r.exited, 1);
    assert_int_equal(qsync_close(ctx, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(dir_entries(tmpdir), 0);
}

static void test_fifo_faults(void **state)
{
    (void)state;
    fifo_fault("fifo-garbage", 1, 5, QSYNC_EPROTO, "5 bytes for one quantum", 0);
    /* One advance, then frozen: the fake's extra bytes come while nothing runs. */
    fifo_fault("fifo-extra", 1, 1, QSYNC_EPROTO, "2 unexpected bytes while the guest is frozen", 0);
    fifo_fault("fifo-eof-mid", 1, 5, QSYNC_EEXITED, NULL, 0);
    fifo_fault("fifo-die-before-open", 1, 5, QSYNC_EEXITED,
               "before the plugin opened its end of HostToGuest", 0);
    fifo_fault("fifo-never-open", 0, 5, QSYNC_ETIMEDOUT,
               "did not open its end of the HostToGuest FIFO within 300 ms", 300);
}

/*
 * A FIFO peer that closed its HostToGuest end but lives on: the grant's
 * byte has no reader. The library's write is guarded, so with SIGPIPE at
 * its default this process survives, and the advance fails with a clear
 * code instead of waiting for ever.
 */
static void test_fifo_no_sigpipe(void **state)
{
    (void)state;
    struct rec r = {0};
    r.n_steps = 2;
    r.steps_us[0] = r.steps_us[1] = 100;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o = fifo_options();
    o.kill_grace_ms = 100;
    qsync_ctx *ctx = new_ctx(&loop, &o, &r);
    assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    start(ctx, "fifo-close-read");
    /* The first quantum needs no byte; the second one's byte fails. */
    assert_int_equal(qsync_advance(ctx, 100), 0);
    while (r.reached < 2 && r.exited == 0 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r.reached, 2);
    assert_int_equal(r.status[0], 0);
    assert_int_equal(r.status[1], QSYNC_EEXITED);
    if (!strstr(r.last_error, "QEMU closed its end of the channel"))
        fail_msg("error '%s' does not say that QEMU closed its end", r.last_error);
    assert_int_equal(qsync_close(ctx, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(r.exited, 1);
    assert_int_equal(dir_entries(tmpdir), 0);
}

static void test_fifo_needs_quantum(void **state)
{
    (void)state;
    qsync_options o;
    qsync_options_init(&o);
    o.mode = QSYNC_MODE_FIFO;
    qsync_ctx *ctx = NULL;
    char err[256];
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "fifo_quantum_us"));
    o.mode = (qsync_mode)7;
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "not a qsync_mode"));
    o.mode = QSYNC_MODE_FIFO;
    o.fifo_quantum_us = 100;
    o.plugin_args = "TimeinMicroseconds=5";
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "TimeinMicroseconds"));
    o.plugin_args = "done_bytes=1";
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "'done_bytes' is set by the library"));
    o.plugin_args = NULL;
}

/* The plugin's option names and the done signal's width are the user's
 * to choose; a bad one is refused naming the field. */
static void test_fifo_keys_checked(void **state)
{
    (void)state;
    qsync_options o = fifo_options();
    qsync_ctx *ctx = NULL;
    char err[256];
    o.fifo_quantum_key = "Time,InMicroSeconds";
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "fifo_quantum_key: 'Time,InMicroSeconds' is not an option name"));
    o.fifo_quantum_key = "TimeInMicroSeconds";
    o.fifo_h2g_key = "";
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "fifo_h2g_key: '' is not an option name"));
    o.fifo_h2g_key = NULL;
    o.fifo_g2h_key = "GuestToHost=x";
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "fifo_g2h_key"));
    o.fifo_g2h_key = NULL;
    o.fifo_done_bytes = 3;
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "fifo_done_bytes: 3 is not 0"));

    /* done_bytes= goes only to our plugin: the fake is not (it is seed
     * 000's), so the start is refused and nothing is spawned. */
    struct rec r = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    o = fifo_options();
    o.fifo_done_bytes = 1;
    ctx = new_ctx(&loop, &o, &r);
    const char *argv[] = {FAKE_QEMU, "fifo-one", NULL};
    assert_int_equal(qsync_start(ctx, argv), QSYNC_EARG);
    assert_non_null(strstr(qsync_last_error(ctx), "fifo_done_bytes: plugin_path"));
    assert_int_equal(qsync_pid(ctx), 0);
    assert_int_equal(qsync_close(ctx, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(dir_entries(tmpdir), 0);
}

int main(void)
{
    const struct CMUnitTest qqq[] = {
        cmocka_unit_test(test_qqq_exact),
        cmocka_unit_test(test_qqq_short_writes),
        cmocka_unit_test(test_qqq_start_not_counted_as_advance),
        cmocka_unit_test(test_qqq_more_than_asked),
        cmocka_unit_test(test_qqq_faults),
        cmocka_unit_test(test_qqq_no_sigpipe),
    };
    const struct CMUnitTest fifo[] = {
        cmocka_unit_test(test_fifo_one_byte),
        cmocka_unit_test(test_fifo_two_bytes),
        cmocka_unit_test(test_fifo_faults),
        cmocka_unit_test(test_fifo_no_sigpipe),
        cmocka_unit_test(test_fifo_needs_quantum),
        cmocka_unit_test(test_fifo_keys_checked),
    };
    int fails = cmocka_run_group_tests_name("qqq", qqq, NULL, NULL);
    fails += cmocka_run_group_tests_name("fifo", fifo, fifo_setup, fifo_teardown);
    return fails;
}

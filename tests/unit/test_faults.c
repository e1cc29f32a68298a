/*
 * Faults from the host's side, against the fake QEMU peer: signal storms,
 * running out of descriptors, a loop closed with a context still open, and
 * resource hygiene over many contexts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <qsync/qsync.h>

#include "proc_count.h"

#ifndef FAKE_QEMU
#error "FAKE_QEMU must name the fake peer's path"
#endif

struct counts {
    int reached, failed, exited, closed;
    int left;
};

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct counts *c = qsync_get_data(ctx);
    (void)stop;
    if (status) {
        c->failed++;
        return;
    }
    c->reached++;
    if (--c->left > 0)
        assert_int_equal(qsync_advance(ctx, 1), 0);
    else
        qsync_close(ctx, NULL);
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct counts *c = qsync_get_data(ctx);
    (void)ex;
    c->exited++;
}

static void on_close(qsync_ctx *ctx)
{
    struct counts *c = qsync_get_data(ctx);
    c->closed++;
}

static qsync_ctx *new_ctx(uv_loop_t *loop, struct counts *c)
{
    qsync_options o;
    qsync_options_init(&o);
    o.plugin_path = FAKE_QEMU;
    o.quiet_stderr = 1;
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = on_reached;
    cb.exited = on_exited;
    qsync_ctx *ctx = NULL;
    assert_int_equal(qsync_ctx_new(loop, &o, &cb, &ctx, NULL, 0), 0);
    qsync_set_data(ctx, c);
    return ctx;
}

static const char *good_argv[] = {FAKE_QEMU, "good", NULL};

static volatile sig_atomic_t signals;

static void on_alarm(int sig)
{
    (void)sig;
    signals++;
}

/* A signal every 50 us during 3000 advances: every system call of the
 * library is interrupted again and again, and nothing is lost. */
static void test_eintr_storm(void **state)
{
    (void)state;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: calls fail with EINTR */
    assert_int_equal(sigaction(SIGALRM, &sa, NULL), 0);
    struct itimerval it = {{0, 50}, {0, 50}};
    signals = 0;
    assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct counts c = {0};
    c.left = 3000;
    qsync_ctx *ctx = new_ctx(&loop, &c);
    assert_int_equal(qsync_start(ctx, good_argv), 0);
    assert_int_equal(qsync_advance(ctx, 1), 0);
    uv_run(&loop, UV_RUN_DEFAULT);

    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_DFL);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(c.reached, 3000);
    assert_int_equal(c.failed, 0);
    assert_int_equal(c.exited, 1);
    assert_true(signals > 100);
}

/* The /proc counts (tests/common), which must be readable here. */
static int count_fds_checked(void)
{
    int n = proc_count_fds();
    assert_true(n >= 0);
    return n;
}

static int count_children_checked(void)
{
    int n = proc_count_children();
    assert_true(n >= 0);
    return n;
}

/* 200 contexts opened, advanced and closed: no descriptor and no child
 * process is left behind. */
static void test_no_leaks_over_200_contexts(void **state)
{
    (void)state;
    int fds0 = count_fds_checked(), kids0 = count_children_checked();
    uv_loop_t loop;
    uv_loop_init(&loop);
    for (int round = 0; round < 20; round++) {
        struct counts c[10];
        memset(c, 0, sizeof c);
        for (int i = 0; i < 10; i++) {
            c[i].left = 3;
            qsync_ctx *ctx = new_ctx(&loop, &c[i]);
            assert_int_equal(qsync_start(ctx, good_argv), 0);
            assert_int_equal(qsync_advance(ctx, 1), 0);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        for (int i = 0; i < 10; i++) {
            assert_int_equal(c[i].reached, 3);
            assert_int_equal(c[i].exited, 1);
        }
    }
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(count_fds_checked(), fds0);
    assert_int_equal(count_children_checked(), kids0);
}

/* Out of descriptors: the start fails with -EMFILE and a message, and
 * leaves nothing open; with the limit back, the same context starts. */
static void test_out_of_fds(void **state)
{
    (void)state;
    int fds_before = count_fds_checked();
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct counts c = {0};
    c.left = 1;
    qsync_ctx *ctx = new_ctx(&loop, &c);
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)count_fds_checked() + 1; /* room for one more, not four */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int rc = qsync_start(ctx, good_argv);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(rc, -EMFILE);
    if (!strstr(qsync_last_error(ctx), "open files"))
        fail_msg("message: %s", qsync_last_error(ctx));
    /* The failed attempt's handles are released on the loop. */
    rc = qsync_start(ctx, good_argv);
    if (rc == QSYNC_ECLEANUP) {
        uv_run(&loop, UV_RUN_NOWAIT);
        rc = qsync_start(ctx, good_argv);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(qsync_advance(ctx, 1), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(c.reached, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    /* (Counted with the loop closed: libuv keeps one spare descriptor per
     * loop once a stream exists.) */
    assert_int_equal(count_fds_checked(), fds_before);
}

/* The caller tries to close its loop with a context still open: libuv
 * refuses (the context's handles are alive), QEMU keeps running under our
 * control, and closing the context then lets the loop close. */
static void test_loop_closed_with_open_context(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct counts c = {0};
    c.left = 1000000;
    qsync_ctx *ctx = new_ctx(&loop, &c);
    assert_int_equal(qsync_start(ctx, good_argv), 0);
    int pid = qsync_pid(ctx);
    assert_true(pid > 0);
    assert_int_equal(uv_loop_close(&loop), UV_EBUSY);
    assert_int_equal(kill(pid, 0), 0);
    assert_int_equal(qsync_close(ctx, on_close), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(c.closed, 1);
    assert_int_equal(c.exited, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(kill(pid, 0), -1); /* reaped: gone, not a zombie */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eintr_storm),
        cmocka_unit_test(test_no_leaks_over_200_contexts),
        cmocka_unit_test(test_out_of_fds),
        cmocka_unit_test(test_loop_closed_with_open_context),
    };
    return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}

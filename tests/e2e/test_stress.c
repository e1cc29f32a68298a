/*
 * Stress: 64 QEMUs (the project's tiny guest) on one loop, advanced 1000
 * quanta of 10 us each through one group barrier. Everything completes,
 * every stop is exact, and no descriptor or child process is left.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <qsync/qsync.h>

#include "proc_count.h"

#if !defined(GUEST_ELF) || !defined(PLUGIN_PATH)
#error "GUEST_ELF and PLUGIN_PATH must be defined"
#endif

#define QUANTUM 10000u

struct stress {
    int n, rounds;
    qsync_ctx **ctx;
    uint64_t *stops;
    int bad_stops;
    int group_calls;
    int group_errors;
    int exited;
    int closed;
};

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct stress *s = qsync_get_data(ctx);
    if (status == 0) {
        s->stops[0]++;
        if (stop->virtual_ns != stop->deadline_ns || stop->overshoot_insns != 0)
            s->bad_stops++;
    }
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct stress *s = qsync_get_data(ctx);
    (void)ex;
    s->exited++;
}

static void on_closed(qsync_ctx *ctx)
{
    struct stress *s = qsync_get_data(ctx);
    s->closed++;
}

static void on_group(qsync_group *g, int status, uint64_t deadline_ns)
{
    (void)deadline_ns;
    struct stress *s = qsync_group_get_data(g);
    s->group_calls++;
    if (status) {
        s->group_errors++;
    } else if (s->group_calls < s->rounds) {
        assert_int_equal(qsync_group_advance_ns(g, QUANTUM, on_group), 0);
        return;
    }
    for (int i = 0; i < s->n; i++)
        qsync_close(s->ctx[i], on_closed);
    qsync_group_free(g);
}

static void test_64_qemus_1000_quanta(void **state)
{
    (void)state;
    struct stress s;
    memset(&s, 0, sizeof s);
    const char *n_env = getenv("QSYNC_STRESS_N");
    const char *r_env = getenv("QSYNC_STRESS_ROUNDS");
    s.n = n_env ? atoi(n_env) : 64;
    s.rounds = r_env ? atoi(r_env) : 1000;
    s.ctx = calloc((size_t)s.n, sizeof *s.ctx);
    s.stops = calloc(1, sizeof *s.stops);
    /* libuv makes a process-wide pipe for its signal handling at the
     * first spawn: let that happen before counting. */
    qsync_ctx *warm;
    assert_int_equal(qsync_ctx_new(NULL, NULL, NULL, &warm, NULL, 0), 0);
    const char *no_qemu[] = {"/nonexistent/qemu", NULL};
    assert_int_not_equal(qsync_start(warm, no_qemu), 0);
    assert_int_equal(qsync_close_wait(warm), 0);
    int fds0 = proc_count_fds(), kids0 = proc_count_children();
    assert_true(fds0 >= 0 && kids0 >= 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_group *g;
    assert_int_equal(qsync_group_new(&g), 0);
    qsync_group_set_data(g, &s);
    qsync_options o;
    qsync_options_init(&o);
    o.plugin_path = PLUGIN_PATH;
    o.stdout_mode = QSYNC_OUTPUT_DISCARD;
    o.quiet_stderr = 1;
    o.start_timeout_ms = 120000;
    o.quantum_hint_ns = QUANTUM;
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = on_reached;
    cb.exited = on_exited;
    const char *argv[] = {"qemu-system-x86_64", "-M", "pc", "-m", "32", "-nodefaults",
                          "-display", "none", "-no-reboot", "-kernel", GUEST_ELF,
                          "-append", "compute 1000000000", NULL};
    for (int i = 0; i < s.n; i++) {
        assert_int_equal(qsync_ctx_new(&loop, &o, &cb, &s.ctx[i], NULL, 0), 0);
        qsync_set_data(s.ctx[i], &s);
        if (qsync_start(s.ctx[i], argv))
            fail_msg("start %d: %s", i, qsync_last_error(s.ctx[i]));
        assert_int_equal(qsync_group_add(g, s.ctx[i]), 0);
    }
    assert_int_equal(qsync_group_advance_ns(g, QUANTUM, on_group), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("stress: %d QEMUs x %d quanta of 10 us: %" PRIu64 " stops in %.1f s\n", s.n,
                  s.rounds, s.stops[0], wall);
    assert_int_equal(s.group_errors, 0);
    assert_int_equal(s.group_calls, s.rounds);
    assert_int_equal(s.stops[0], (uint64_t)s.n * (uint64_t)s.rounds);
    assert_int_equal(s.bad_stops, 0);
    assert_int_equal(s.exited, s.n);
    assert_int_equal(s.closed, s.n);
    assert_int_equal(proc_count_fds(), fds0);
    assert_int_equal(proc_count_children(), kids0);
    free(s.ctx);
    free(s.stops);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_64_qemus_1000_quanta),
    };
    return cmocka_run_group_tests_name("stress", tests, NULL, NULL);
}

/* The group barrier against fake QEMU peers (fake_qemu.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <qsync/qsync.h>

#ifndef FAKE_QEMU
#error "FAKE_QEMU must name the fake peer's path"
#endif

#define N 3

struct world {
    uv_loop_t loop;
    qsync_ctx *ctx[N];
    qsync_group *group;
    int reached[N];
    int group_calls;
    int group_status[16];
    int rounds;      /* group advances to make */
    int free_in_cb;  /* free the group from its own callback */
};

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct world *w = qsync_get_data(ctx);
    (void)status;
    (void)stop;
    for (int i = 0; i < N; i++)
        if (w->ctx[i] == ctx)
            w->reached[i]++;
}

static void on_group(qsync_group *g, int status)
{
    struct world *w = qsync_group_get_data(g);
    /* Every member has reported before the group's callback. */
    for (int i = 0; i < N; i++)
        assert_int_equal(w->reached[i], w->group_calls + 1);
    w->group_status[w->group_calls++] = status;
    if (status == 0 && w->group_calls < w->rounds) {
        assert_int_equal(qsync_group_advance_ns(g, 10000, on_group), 0);
        return;
    }
    if (w->free_in_cb) {
        qsync_group_free(g);
        w->group = NULL;
    }
    for (int i = 0; i < N; i++)
        qsync_close(w->ctx[i], NULL);
}

static void setup_world(struct world *w, const char *scenarios[N])
{
    memset(w, 0, sizeof *w);
    uv_loop_init(&w->loop);
    assert_int_equal(qsync_group_new(&w->group), 0);
    qsync_group_set_data(w->group, w);
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = on_reached;
    qsync_options o;
    qsync_options_init(&o);
    o.plugin_path = FAKE_QEMU;
    o.quiet_stderr = 1;
    for (int i = 0; i < N; i++) {
        assert_int_equal(qsync_ctx_new(&w->loop, &o, &cb, &w->ctx[i], NULL, 0), 0);
        qsync_set_data(w->ctx[i], w);
        const char *argv[] = {FAKE_QEMU, scenarios[i], NULL};
        assert_int_equal(qsync_start(w->ctx[i], argv), 0);
        assert_int_equal(qsync_group_add(w->group, w->ctx[i]), 0);
    }
    assert_int_equal(qsync_group_size(w->group), N);
}

static void test_barrier(void **state)
{
    (void)state;
    struct world w;
    const char *sc[N] = {"good", "good", "good"};
    setup_world(&w, sc);
    w.rounds = 5;
    w.free_in_cb = 1;
    /* A member with its own advance pending blocks the group. */
    assert_int_equal(qsync_advance(w.ctx[1], 1), 0);
    assert_int_equal(qsync_group_advance_to_ns(w.group, 5000, on_group), QSYNC_EBUSY);
    while (w.reached[1] == 0)
        uv_run(&w.loop, UV_RUN_ONCE);
    w.reached[1] = 0;
    /* A deadline before a member's current one advances none of them. */
    assert_int_equal(qsync_group_advance_to_ns(w.group, 500, on_group), QSYNC_ERANGE);
    assert_int_equal(qsync_group_advance_to_ns(w.group, 10000, on_group), 0);
    assert_int_equal(qsync_group_advance_to_ns(w.group, 20000, on_group), QSYNC_EBUSY);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&w.loop), 0);
    assert_int_equal(w.group_calls, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(w.group_status[i], 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(w.reached[i], 5);
}

static void test_member_dies(void **state)
{
    (void)state;
    struct world w;
    const char *sc[N] = {"good", "die-mid", "good"};
    setup_world(&w, sc);
    w.rounds = 5;
    assert_int_equal(qsync_group_advance_ns(w.group, 10000, on_group), 0);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    assert_int_equal(w.group_calls, 1);
    assert_int_equal(w.group_status[0], QSYNC_EEXITED);
    qsync_group_free(w.group);
    assert_int_equal(uv_loop_close(&w.loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_barrier),
        cmocka_unit_test(test_member_dies),
    };
    return cmocka_run_group_tests_name("group", tests, NULL, NULL);
}

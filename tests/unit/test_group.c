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

static void on_group(qsync_group *g, int status, uint64_t deadline_ns)
{
    struct world *w = qsync_group_get_data(g);
    /* The callback names the deadline, which is now the group's time. */
    if (status == 0)
        assert_int_equal(deadline_ns, qsync_group_now_ns(g));
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

/* A member whose guest powers off leaves the group from its own reached
 * callback; its failure still counts for that round, and the other two
 * carry on. The group's callback names each deadline. */
struct leave {
    uv_loop_t loop;
    qsync_ctx *ctx[N];
    qsync_group *group;
    int group_calls;
    int status[8];
    uint64_t deadline[8];
    int removed, remove_rc, busy_rc, exited_remove_rc;
};

static void leave_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    (void)stop;
    struct leave *l = qsync_get_data(ctx);
    if (status == QSYNC_EEXITED) {
        l->remove_rc = qsync_group_remove(l->group, ctx);
        l->removed++;
        qsync_close(ctx, NULL);
    }
}

static void leave_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    (void)ex;
    struct leave *l = qsync_get_data(ctx);
    /* Already out: a second removal is refused, not a crash. */
    if (ctx == l->ctx[1])
        l->exited_remove_rc = qsync_group_remove(l->group, ctx);
}

static void leave_group_cb(qsync_group *g, int status, uint64_t deadline_ns)
{
    struct leave *l = qsync_group_get_data(g);
    l->status[l->group_calls] = status;
    l->deadline[l->group_calls++] = deadline_ns;
    if (l->group_calls < 6) {
        assert_int_equal(qsync_group_advance_ns(g, 10000, leave_group_cb), 0);
        /* Pending now: a member cannot leave in the middle. */
        l->busy_rc = qsync_group_remove(g, l->ctx[0]);
        return;
    }
    assert_int_equal(qsync_group_now_ns(g), 60000);
    assert_int_equal(qsync_group_size(g), 2);
    qsync_close(l->ctx[0], NULL);
    qsync_close(l->ctx[2], NULL);
}

static void test_member_leaves(void **state)
{
    (void)state;
    struct leave l;
    memset(&l, 0, sizeof l);
    uv_loop_init(&l.loop);
    assert_int_equal(qsync_group_new(&l.group), 0);
    qsync_group_set_data(l.group, &l);
    assert_int_equal(qsync_group_now_ns(l.group), 0);
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = leave_reached;
    cb.exited = leave_exited;
    qsync_options o;
    qsync_options_init(&o);
    o.plugin_path = FAKE_QEMU;
    o.quiet_stderr = 1;
    const char *sc[N] = {"good", "poweroff", "good"};
    for (int i = 0; i < N; i++) {
        assert_int_equal(qsync_ctx_new(&l.loop, &o, &cb, &l.ctx[i], NULL, 0), 0);
        qsync_set_data(l.ctx[i], &l);
        const char *argv[] = {FAKE_QEMU, sc[i], NULL};
        assert_int_equal(qsync_start(l.ctx[i], argv), 0);
        assert_int_equal(qsync_group_add(l.group, l.ctx[i]), 0);
    }
    assert_int_equal(qsync_group_advance_ns(l.group, 10000, leave_group_cb), 0);
    uv_run(&l.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&l.loop), 0);
    assert_int_equal(l.group_calls, 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(l.deadline[i], 10000u * (unsigned)(i + 1));
        /* The third grant is the one the powered-off guest fails. */
        assert_int_equal(l.status[i], i == 2 ? QSYNC_EEXITED : 0);
    }
    assert_int_equal(l.removed, 1);
    assert_int_equal(l.remove_rc, 0);
    assert_int_equal(l.exited_remove_rc, QSYNC_EARG);
    assert_int_equal(l.busy_rc, QSYNC_EBUSY);
    /* The two that were left went with their close. */
    assert_int_equal(qsync_group_size(l.group), 0);
    qsync_group_free(l.group);
}

/* The window end over idle time: on the grid, never past due + window. */
static void test_skip_to(void **state)
{
    (void)state;
    const uint64_t w = 10000;
    assert_int_equal(qsync_skip_to_ns(50000, w, 50000), 60000);  /* busy: one window */
    assert_int_equal(qsync_skip_to_ns(50000, w, 0), 60000);      /* busy, earlier */
    assert_int_equal(qsync_skip_to_ns(50000, w, 50001), 60000);  /* due within it */
    assert_int_equal(qsync_skip_to_ns(50000, w, 59999), 60000);
    assert_int_equal(qsync_skip_to_ns(50000, w, 60000), 70000);  /* on a grid point */
    assert_int_equal(qsync_skip_to_ns(50000, w, 123456), 130000); /* <= 133456 */
    assert_int_equal(qsync_skip_to_ns(50000, w, QSYNC_DEADLINE_MAX), QSYNC_DEADLINE_MAX);
    assert_int_equal(qsync_skip_to_ns(50000, w, QSYNC_DEADLINE_MAX - w), QSYNC_DEADLINE_MAX);
    assert_int_equal(qsync_skip_to_ns(QSYNC_DEADLINE_MAX - 5, w, QSYNC_DEADLINE_MAX - 5),
                     QSYNC_DEADLINE_MAX);
    assert_int_equal(qsync_skip_to_ns(7, 0, 100), QSYNC_DEADLINE_MAX); /* no window */
    /* An empty group has nothing due ever. */
    qsync_group *g;
    assert_int_equal(qsync_group_new(&g), 0);
    assert_int_equal(qsync_group_next_event_ns(g), QSYNC_DEADLINE_MAX);
    qsync_group_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skip_to),
        cmocka_unit_test(test_barrier),
        cmocka_unit_test(test_member_dies),
        cmocka_unit_test(test_member_leaves),
    };
    return cmocka_run_group_tests_name("group", tests, NULL, NULL);
}

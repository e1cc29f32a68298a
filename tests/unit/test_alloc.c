/*
 * Allocation failures: every library call that allocates is run with its
 * Nth allocation failing, for N = 1, 2, ... until a whole scenario runs
 * without reaching N. The test links the static library with malloc,
 * calloc, realloc, strdup and free wrapped (ld --wrap), so only the
 * library's own allocations (and this file's, of which there are none
 * while a scenario runs) are counted and failed.
 *
 * For each failure:
 * - the call returns -ENOMEM (qsync_ctx_new, which has no context yet,
 *   also says so in errbuf), and qsync_last_error() names the call and
 *   says "out of memory", never an older message;
 * - the context stays usable: the same call, retried with allocations
 *   working again, succeeds, and the scenario goes on;
 * - nothing leaks: every block the library allocated is freed once the
 *   context is closed (counted here; LeakSanitizer checks the same in the
 *   sanitizer build), and no child process is left.
 *
 * The scenario, in each mode (plugin with the fake QEMU's "input" peer,
 * qqq, FIFO): ctx_new, start, advance, send_input (plugin mode), group
 * new, add and advance, close; and the blocking helpers' ctx_new on a
 * private loop with qsync_close_wait().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <qsync/qsync.h>

/* ---- The failing allocator ------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
void __wrap_free(void *p);

static long alloc_count; /* allocations made since the scenario began */
static long fail_at;     /* fail the allocation with this number; 0: none */
static long failures;    /* allocations failed on purpose */
static long live;        /* blocks allocated and not yet freed */

static int should_fail(void)
{
    alloc_count++;
    if (fail_at && alloc_count == fail_at) {
        failures++;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    void *p = __real_malloc(n);
    if (p)
        live++;
    return p;
}

void *__wrap_calloc(size_t n, size_t m)
{
    if (should_fail())
        return NULL;
    void *p = __real_calloc(n, m);
    if (p)
        live++;
    return p;
}

void *__wrap_realloc(void *old, size_t n)
{
    if (should_fail())
        return NULL;
    void *p = __real_realloc(old, n);
    if (p && !old)
        live++;
    return p;
}

char *__wrap_strdup(const char *s)
{
    if (should_fail())
        return NULL;
    char *p = __real_strdup(s);
    if (p)
        live++;
    return p;
}

void __wrap_free(void *p)
{
    if (p)
        live--;
    __real_free(p);
}

/* ---- Checks ---------------------------------------------------------- */

enum mode { M_PLUGIN, M_QQQ, M_FIFO };

static const char *mode_name(enum mode m)
{
    return m == M_PLUGIN ? "plugin" : m == M_QQQ ? "qqq" : "fifo";
}

struct rec {
    int reached, exited, closed;
    int status;
};

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    (void)stop;
    struct rec *r = qsync_get_data(ctx);
    r->reached++;
    r->status = status;
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    (void)ex;
    struct rec *r = qsync_get_data(ctx);
    r->exited++;
}

static void on_close(qsync_ctx *ctx)
{
    struct rec *r = qsync_get_data(ctx);
    r->closed++;
}

static int group_done;
static void on_group(qsync_group *g, int status, uint64_t deadline_ns)
{
    (void)deadline_ns;
    (void)g;
    group_done = status == 0 ? 1 : -1;
}

/*
 * Runs call (a statement setting rc) with the failing allocator armed.
 * When the allocation it failed was this call's, the call must say so and
 * then succeed when retried. Evaluates to the final rc.
 */
#define CALL(what, ctx, stmt)                                                         \
    do {                                                                              \
        long before = failures;                                                       \
        stmt;                                                                         \
        if (failures != before) {                                                     \
            if (rc != -ENOMEM)                                                        \
                fail_msg("%s: %s failed allocation %ld but returned %d (%s)", mode_name(m), \
                         what, fail_at, rc, qsync_err_name(rc));                      \
            if ((ctx) && !strstr(qsync_last_error(ctx), "out of memory"))             \
                fail_msg("%s: %s failed allocation %ld; the last error is stale: '%s'", \
                         mode_name(m), what, fail_at, qsync_last_error(ctx));        \
            if ((ctx) && !strstr(qsync_last_error(ctx), what))                        \
                fail_msg("%s: %s: the last error does not name the call: '%s'",       \
                         mode_name(m), what, qsync_last_error(ctx));                 \
            /* The context is still usable: run the loop once (a failed */          \
            /* start's handles close there), then the same call works. */           \
            uv_run(&loop, UV_RUN_NOWAIT);                                             \
            stmt;                                                                     \
        }                                                                             \
        if (rc != 0)                                                                  \
            fail_msg("%s: %s (fail_at %ld): %s: %s", mode_name(m), what, fail_at,     \
                     qsync_err_name(rc), (ctx) ? qsync_last_error(ctx) : "");        \
    } while (0)

static void wait_reached(uv_loop_t *loop, struct rec *r, int n)
{
    while (r->reached < n && uv_run(loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r->reached, n);
    assert_int_equal(r->status, 0);
}

static qsync_options mode_options(enum mode m)
{
    qsync_options o;
    qsync_options_init(&o);
    o.plugin_path = FAKE_QEMU; /* any readable file: the fake does not load it */
    o.quiet_stderr = 1;
    o.stdout_mode = QSYNC_OUTPUT_DISCARD;
    if (m == M_QQQ) {
        o.mode = QSYNC_MODE_QQQ;
    } else if (m == M_FIFO) {
        o.mode = QSYNC_MODE_FIFO;
        o.fifo_quantum_us = 10;
    }
    return o;
}

static const char *scenario_of(enum mode m)
{
    return m == M_PLUGIN ? "input" : m == M_QQQ ? "qqq-good" : "fifo-one";
}

/* One run of the scenario with allocation number fail_at failing.
 * Returns whether that allocation was reached. */
static int run_once(enum mode m)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct rec r = {0}, r2 = {0};
    qsync_options o = mode_options(m);
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = on_reached;
    cb.exited = on_exited;
    qsync_ctx *ctx = NULL, *ctx2 = NULL;
    qsync_group *g = NULL;
    char err[256];
    int rc;

    alloc_count = 0;
    failures = 0;
    live = 0;

    err[0] = '\0';
    CALL("qsync_ctx_new", (qsync_ctx *)NULL,
         rc = qsync_ctx_new(&loop, &o, &cb, &ctx, err, sizeof err));
    if (failures)
        assert_non_null(strstr(err, "out of memory"));
    qsync_set_data(ctx, &r);
    const char *argv[] = {FAKE_QEMU, scenario_of(m), NULL};
    CALL("qsync_start", ctx, rc = qsync_start(ctx, argv));

    uint64_t q = 10 * 1000;
    CALL("qsync_advance", ctx, rc = qsync_advance_ns(ctx, q));
    wait_reached(&loop, &r, 1);
    if (m == M_PLUGIN) {
        CALL("qsync_send_input", ctx, rc = qsync_send_input(ctx, "abc", 3));
        CALL("qsync_advance", ctx, rc = qsync_advance_ns(ctx, q));
        wait_reached(&loop, &r, 2);
    }

    /* A group of this context and a second one. */
    CALL("qsync_ctx_new", (qsync_ctx *)NULL,
         rc = qsync_ctx_new(&loop, &o, &cb, &ctx2, err, sizeof err));
    qsync_set_data(ctx2, &r2);
    CALL("qsync_start", ctx2, rc = qsync_start(ctx2, argv));
    CALL("qsync_group_new", (qsync_ctx *)NULL, rc = qsync_group_new(&g));
    CALL("qsync_group_add", ctx, rc = qsync_group_add(g, ctx));
    CALL("qsync_group_add", ctx2, rc = qsync_group_add(g, ctx2));
    group_done = 0;
    uint64_t target = qsync_now_ns(ctx) + q;
    CALL("qsync_group_advance", ctx, rc = qsync_group_advance_to_ns(g, target, on_group));
    while (!group_done && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(group_done, 1);
    assert_int_equal(qsync_now_ns(ctx2), target);

    assert_int_equal(qsync_close(ctx, on_close), 0);
    qsync_set_data(ctx2, &r2);
    cb.reached = NULL;
    assert_int_equal(qsync_close(ctx2, on_close), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    qsync_group_free(g);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(r.closed + r2.closed, 1 + 1);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r2.exited, 1);
    /* No fake QEMU is left, reaped or not. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    if (live != 0)
        fail_msg("%s: %ld blocks leaked with allocation %ld failing", mode_name(m), live, fail_at);
    return failures > 0;
}

static void check_mode(enum mode m)
{
    long n;
    for (n = 1; n < 1000; n++) {
        fail_at = n;
        if (!run_once(m))
            break;
    }
    fail_at = 0;
    print_message("%s mode: failed each of %ld allocations in turn\n", mode_name(m), n - 1);
    /* The scenario allocates in every mode (the context, its tail...). */
    assert_true(n > 3);
}

static void test_alloc_plugin_mode(void **state)
{
    (void)state;
    check_mode(M_PLUGIN);
}

static void test_alloc_qqq_mode(void **state)
{
    (void)state;
    check_mode(M_QQQ);
}

static void test_alloc_fifo_mode(void **state)
{
    (void)state;
    check_mode(M_FIFO);
}

/* The blocking helpers: a private loop, closed by qsync_close_wait(). */
static void test_alloc_blocking(void **state)
{
    (void)state;
    enum mode m = M_PLUGIN;
    long n;
    for (n = 1; n < 1000; n++) {
        fail_at = n;
        alloc_count = failures = live = 0;
        uv_loop_t loop; /* for CALL's retry: runs nothing of the context's */
        assert_int_equal(uv_loop_init(&loop), 0);
        qsync_options o = mode_options(m);
        qsync_ctx *ctx = NULL;
        char err[256];
        int rc;
        CALL("qsync_ctx_new", (qsync_ctx *)NULL,
             rc = qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err));
        const char *argv[] = {FAKE_QEMU, "good", NULL};
        /* A failed start's handles close on the private loop, which the
         * blocking helpers run; qsync_close_wait() runs it to the end. */
        long before = failures;
        rc = qsync_start(ctx, argv);
        if (failures != before) {
            assert_int_equal(rc, -ENOMEM);
            assert_non_null(strstr(qsync_last_error(ctx), "out of memory"));
            assert_int_equal(qsync_close_wait(ctx), 0);
        } else {
            assert_int_equal(rc, 0);
            qsync_stop stop;
            assert_int_equal(qsync_advance_wait_ns(ctx, 1000, &stop), 0);
            assert_int_equal(stop.deadline_ns, 1000);
            assert_int_equal(qsync_close_wait(ctx), 0);
        }
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
        if (live != 0)
            fail_msg("blocking: %ld blocks leaked with allocation %ld failing", live, fail_at);
        if (failures == 0)
            break;
    }
    fail_at = 0;
    print_message("blocking helpers: failed each of %ld allocations in turn\n", n - 1);
    assert_true(n > 2);
}

/* NICs: adding one, frames queued and sent ahead of a grant, against the
 * fake QEMU's "net" peer, with each allocation failing in turn. */
static void test_alloc_nics(void **state)
{
    (void)state;
    enum mode m = M_PLUGIN;
    long n;
    for (n = 1; n < 1000; n++) {
        fail_at = n;
        alloc_count = failures = live = 0;
        uv_loop_t loop; /* for CALL's retry: runs nothing of the context's */
        assert_int_equal(uv_loop_init(&loop), 0);
        qsync_options o = mode_options(m);
        qsync_ctx *ctx = NULL;
        char err[256];
        int rc;
        CALL("qsync_ctx_new", (qsync_ctx *)NULL,
             rc = qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err));
        qsync_nic_config nc;
        qsync_nic_config_init(&nc);
        CALL("qsync_nic_add", ctx, rc = qsync_nic_add(ctx, &nc));
        const char *argv[] = {FAKE_QEMU, "net", NULL};
        long failed_before = failures;
        rc = qsync_start(ctx, argv);
        if (failures != failed_before) {
            assert_int_equal(rc, -ENOMEM);
            assert_non_null(strstr(qsync_last_error(ctx), "out of memory"));
            assert_int_equal(qsync_close_wait(ctx), 0);
        } else {
            assert_int_equal(rc, 0);
            CALL("qsync_advance", ctx, rc = qsync_advance_wait_ns(ctx, 1000, NULL));
            uint8_t frame[60] = {0};
            for (int i = 0; i < 3; i++)
                CALL("qsync_send_frame", ctx,
                     rc = qsync_send_frame(ctx, 0, 1000 + (uint64_t)i, frame, sizeof frame));
            CALL("qsync_advance", ctx, rc = qsync_advance_wait_ns(ctx, 1000, NULL));
            qsync_nic_stats st;
            assert_int_equal(qsync_nic_get_stats(ctx, 0, &st), 0);
            assert_int_equal(st.rx_frames, 3); /* each frame reached QEMU once */
            assert_int_equal(qsync_close_wait(ctx), 0);
        }
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
        if (live != 0)
            fail_msg("nics: %ld blocks leaked with allocation %ld failing", live, fail_at);
        if (failures == 0)
            break;
    }
    fail_at = 0;
    print_message("NICs: failed each of %ld allocations in turn\n", n - 1);
    assert_true(n > 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_plugin_mode),
        cmocka_unit_test(test_alloc_qqq_mode),
        cmocka_unit_test(test_alloc_fifo_mode),
        cmocka_unit_test(test_alloc_blocking),
        cmocka_unit_test(test_alloc_nics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

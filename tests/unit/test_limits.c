/*
 * Options the library passes on to the plugin are held to the plugin's own
 * limits when the context is made, so that a bad value is refused naming
 * the option the user set (not, later and inside QEMU, one the library
 * made up from it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <qsync/qsync.h>

static int ctx_new(const qsync_options *o, char *err, size_t len)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_ctx *ctx = NULL;
    err[0] = '\0';
    int rc = qsync_ctx_new(&loop, o, NULL, &ctx, err, len);
    if (rc == 0) {
        assert_int_equal(qsync_close(ctx, NULL), 0);
        uv_run(&loop, UV_RUN_DEFAULT);
    } else {
        assert_null(ctx);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
    return rc;
}

/* The plugin's quantum_ns= takes 1..10^15 (0: the library passes none). */
static void test_quantum_hint_limit(void **state)
{
    (void)state;
    char err[256];
    qsync_options o;
    qsync_options_init(&o);
    o.quantum_hint_ns = QSYNC_QUANTUM_HINT_MAX_NS + 1;
    assert_int_equal(ctx_new(&o, err, sizeof err), QSYNC_EARG);
    assert_string_equal(err, "quantum_hint_ns: 1000000000000001 ns is out of range "
                             "0..1000000000000000 (10^15 ns, the plugin's limit; 0: no hint)");
    o.quantum_hint_ns = 2000000000000000ull; /* qsync-step --quantum 2000000s */
    assert_int_equal(ctx_new(&o, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "quantum_hint_ns: 2000000000000000 ns"));
    o.quantum_hint_ns = UINT64_MAX;
    assert_int_equal(ctx_new(&o, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "quantum_hint_ns: "));
    o.quantum_hint_ns = QSYNC_QUANTUM_HINT_MAX_NS;
    assert_int_equal(ctx_new(&o, err, sizeof err), 0);
    o.quantum_hint_ns = 0;
    assert_int_equal(ctx_new(&o, err, sizeof err), 0);
}

/* The FIFO protocol's quantum, TimeInMicroSeconds: 1..10^9 us. */
static void test_fifo_quantum_limit(void **state)
{
    (void)state;
    char err[256];
    qsync_options o;
    qsync_options_init(&o);
    o.mode = QSYNC_MODE_FIFO;
    o.fifo_quantum_us = 1000000001;
    assert_int_equal(ctx_new(&o, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "fifo_quantum_us: 1000000001 is out of range 1..1000000000"));
    o.fifo_quantum_us = 1000000000;
    assert_int_equal(ctx_new(&o, err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantum_hint_limit),
        cmocka_unit_test(test_fifo_quantum_limit),
    };
    return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}

/*
 * End to end: qsync_send_input() against real QEMU, the real plugin and
 * the project's guest in its "recv" mode, which prints when each frame's
 * first byte reached it by its own clock (the TSC, virtual ns under
 * -icount). Through the blocking helpers, on a private loop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qsync/qsync.h>

#include "e2e_common.h"

#if !defined(GUEST_ELF) || !defined(PLUGIN_PATH)
#error "GUEST_ELF and PLUGIN_PATH must be defined"
#endif

/* The guest's polling loop and the read of its data register take about
 * 10 instructions; anything under this bound is "at once". */
#define SEEN_AT_ONCE_NS 1000u

struct out {
    char text[16384];
    size_t len;
};

static void on_output(qsync_ctx *ctx, const char *data, size_t len)
{
    struct out *o = qsync_get_data(ctx);
    e2e_append(o->text, sizeof o->text, &o->len, data, len);
}

static qsync_ctx *start_guest_on(struct out *o, const char *serial, const char *append,
                                 qsync_mode mode, const char *plugin_args)
{
    qsync_options opts;
    e2e_options(&opts);
    opts.plugin_args = plugin_args;
    opts.advance_timeout_ms = 20000;
    opts.mode = mode;
    opts.qqq_use_plugin = 1;
    qsync_callbacks cbs;
    qsync_callbacks_init(&cbs);
    cbs.output = on_output;
    char err[256];
    qsync_ctx *ctx = NULL;
    assert_int_equal(qsync_ctx_new(NULL, &opts, &cbs, &ctx, err, sizeof err), 0);
    qsync_set_data(ctx, o);
    const char *argv[] = {e2e_qemu_binary(), "-M", "pc", "-nodefaults", "-display", "none",
                          "-serial", serial, "-no-reboot",
                          "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                          "-kernel", GUEST_ELF, "-append", append, NULL};
    assert_int_equal(qsync_start(ctx, argv), 0);
    return ctx;
}

static qsync_ctx *start_guest(struct out *o, const char *serial, const char *append,
                              qsync_mode mode)
{
    return start_guest_on(o, serial, append, mode, NULL);
}

/* The arrival time the guest printed for frame k, or fails. */
static uint64_t arrival(const struct out *o, unsigned k)
{
    char key[48];
    snprintf(key, sizeof key, "qsync-guest: recv %u sent=", k);
    const char *p = strstr(o->text, key);
    if (p == NULL)
        fail_msg("the guest did not report frame %u; its output:\n%s", k, o->text);
    unsigned long long sent, arrived;
    assert_int_equal(sscanf(p + strlen(key), "%llu arrived=%llu", &sent, &arrived), 2);
    assert_int_equal(sent, 100ull * k);
    return arrived;
}

/*
 * Three frames of 7 bytes sent at one stop, T. The UART's FIFO takes 14
 * bytes at once (trigger level 14), so frames 1 and 2 arrive at T and
 * frame 3 waits for the next stop, T + 100 us, where it arrives.
 */
static void test_input_arrives_at_the_stop(void **state)
{
    (void)state;
    struct out o = {0};
    qsync_ctx *ctx = start_guest(&o, "stdio", "recv count=3", QSYNC_MODE_PLUGIN);
    qsync_info info;
    /* Boot: the firmware takes about 5.7 ms of virtual time. */
    assert_int_equal(qsync_run_until_ns(ctx, 8000000, 1000000, NULL), 0);
    assert_int_equal(qsync_get_info(ctx, &info), 0);
    assert_int_equal(info.input, 1);
    assert_non_null(strstr(o.text, "qsync-guest: recv start count=3\n"));

    uint64_t t = qsync_now_ns(ctx);
    const char frames[] = "#1 100\n#2 200\n#3 300\n";
    assert_int_equal(qsync_send_input(ctx, frames, 7), 0);
    assert_int_equal(qsync_send_input(ctx, frames + 7, sizeof frames - 1 - 7), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(qsync_advance_wait_ns(ctx, 100000, NULL), 0);

    uint64_t a1 = arrival(&o, 1), a2 = arrival(&o, 2), a3 = arrival(&o, 3);
    print_message("stop at %llu ns: frame 1 seen at +%llu ns, frame 2 at +%llu ns, "
                  "frame 3 at +%llu ns\n",
                  (unsigned long long)t, (unsigned long long)(a1 - t),
                  (unsigned long long)(a2 - t), (unsigned long long)(a3 - t));
    assert_true(a1 >= t && a1 - t < SEEN_AT_ONCE_NS);
    /* Frame 2 was in the FIFO already; the guest reads it once it has
     * printed frame 1's line. */
    assert_true(a2 > a1 && a2 < t + 100000);
    assert_true(a3 >= t + 100000 && a3 - (t + 100000) < SEEN_AT_ONCE_NS);
    assert_non_null(strstr(o.text, "qsync-guest: recv done count=3\n"));
    assert_int_equal(qsync_close_wait(ctx), 0);
}

/* Two runs put the bytes at the same instruction. */
static void test_input_is_deterministic(void **state)
{
    (void)state;
    uint64_t seen[2][2];
    for (int run = 0; run < 2; run++) {
        struct out o = {0};
        qsync_ctx *ctx = start_guest(&o, "stdio", "recv count=2", QSYNC_MODE_PLUGIN);
        assert_int_equal(qsync_run_until_ns(ctx, 7000000, 1000000, NULL), 0);
        assert_int_equal(qsync_send_input(ctx, "#1 100\n", 7), 0);
        assert_int_equal(qsync_advance_wait_ns(ctx, 12345, NULL), 0);
        assert_int_equal(qsync_send_input(ctx, "#2 200\n", 7), 0);
        assert_int_equal(qsync_advance_wait_ns(ctx, 50000, NULL), 0);
        seen[run][0] = arrival(&o, 1);
        seen[run][1] = arrival(&o, 2);
        assert_int_equal(qsync_close_wait(ctx), 0);
    }
    assert_int_equal(seen[0][0], seen[1][0]);
    assert_int_equal(seen[0][1], seen[1][1]);
    assert_true(seen[0][1] >= 7000000 + 12345);
}

/*
 * Two inputs a few nanoseconds to a few microseconds apart, on each
 * engine: the second stop falls anywhere in the guest's code, in the
 * middle of a translation block included, and the bytes must reach the
 * guest there without upsetting QEMU (which once aborted with "Bad icount
 * read" when the UART read the virtual clock from inside a block). The
 * guest waits for a third frame that never comes, polling, so that no
 * engine meets a guest halted for good (which the block engine, blind to
 * idle time, could not stop).
 */
static const unsigned spacings_ns[] = {1,   2,   3,   5,   8,    13,   21,   34,  55,
                                       89,  144, 233, 377, 610, 987, 1597, 2584, 4181};

/* The plugin API version of the QEMU under test (the insn engine needs
 * version 3, QEMU 9.1), from a short session with engine=auto. */
static unsigned plugin_api(void)
{
    struct out o = {0};
    qsync_info info;
    qsync_ctx *ctx = start_guest_on(&o, "stdio", "compute 1000", QSYNC_MODE_PLUGIN, "engine=auto");
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), 0);
    assert_int_equal(qsync_get_info(ctx, &info), 0);
    unsigned api = info.plugin_api;
    assert_int_equal(qsync_close_wait(ctx), 0);
    return api;
}

static void check_close_inputs(const char *engine)
{
    if (strcmp(engine, "insn") == 0 && plugin_api() < 3) {
        print_message("skipped: the insn engine needs plugin API 3 (QEMU 9.1)\n");
        skip();
    }
    char args[32];
    snprintf(args, sizeof args, "engine=%s", engine);
    for (size_t i = 0; i < sizeof spacings_ns / sizeof spacings_ns[0]; i++) {
        unsigned x = spacings_ns[i];
        struct out o = {0};
        qsync_ctx *ctx = start_guest_on(&o, "stdio", "recv count=3", QSYNC_MODE_PLUGIN, args);
        assert_int_equal(qsync_run_until_ns(ctx, 7000000, 1000000, NULL), 0);
        assert_int_equal(qsync_send_input(ctx, "#1 100\n", 7), 0);
        int rc = qsync_advance_wait_ns(ctx, x, NULL);
        if (rc)
            fail_msg("engine=%s, inputs %u ns apart: the advance between them failed: %s",
                     engine, x, qsync_last_error(ctx));
        assert_int_equal(qsync_send_input(ctx, "#2 200\n", 7), 0);
        rc = qsync_advance_wait_ns(ctx, 100000, NULL);
        if (rc)
            fail_msg("engine=%s, inputs %u ns apart: %s", engine, x, qsync_last_error(ctx));
        uint64_t a1 = arrival(&o, 1), a2 = arrival(&o, 2);
        assert_true(a1 >= 7000000);
        assert_true(a2 >= 7000000 + x);
        assert_true(a2 > a1);
        assert_int_equal(qsync_close_wait(ctx), 0);
    }
}

static void test_close_inputs_timer(void **state)
{
    (void)state;
    check_close_inputs("timer");
}

static void test_close_inputs_insn(void **state)
{
    (void)state;
    check_close_inputs("insn");
}

static void test_close_inputs_block(void **state)
{
    (void)state;
    check_close_inputs("block");
}

/*
 * Input sent before the guest reads its UART is never lost unseen: the
 * UART (FIFO off at power-on) takes one byte, the rest waits in the plugin,
 * and every stop says so with QSYNC_STOP_INPUT_WAITING, until the guest
 * reads; a guest that reads clears it at its next stop.
 */
static void test_input_waiting_is_flagged(void **state)
{
    (void)state;
    struct out o = {0};
    qsync_ctx *ctx = start_guest(&o, "stdio", "compute 100000000", QSYNC_MODE_PLUGIN);
    qsync_stop stop;
    assert_int_equal(qsync_advance_wait_ns(ctx, 100000, &stop), 0);
    assert_int_equal(stop.flags & QSYNC_STOP_INPUT_WAITING, 0);
    assert_int_equal(qsync_send_input(ctx, "#1 100\n", 7), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(qsync_advance_wait_ns(ctx, 100000, &stop), 0);
        assert_true(stop.flags & QSYNC_STOP_INPUT_WAITING);
    }
    assert_int_equal(qsync_close_wait(ctx), 0);

    /* The recv guest reads: once it has, nothing waits. */
    struct out o2 = {0};
    ctx = start_guest(&o2, "stdio", "recv count=1", QSYNC_MODE_PLUGIN);
    assert_int_equal(qsync_run_until_ns(ctx, 8000000, 1000000, NULL), 0);
    assert_non_null(strstr(o2.text, "recv start"));
    assert_int_equal(qsync_send_input(ctx, "#1 100\n", 7), 0);
    assert_int_equal(qsync_advance_wait_ns(ctx, 100000, &stop), 0);
    assert_int_equal(stop.flags & QSYNC_STOP_INPUT_WAITING, 0);
    arrival(&o2, 1);
    assert_int_equal(qsync_close_wait(ctx), 0);
}

/* Input for a QEMU without a serial port ends it with a clear error. */
static void test_input_without_serial0(void **state)
{
    (void)state;
    struct out o = {0};
    qsync_ctx *ctx = start_guest(&o, "none", "compute 100000000", QSYNC_MODE_PLUGIN);
    assert_int_equal(qsync_advance_wait_ns(ctx, 100000, NULL), 0);
    assert_int_equal(qsync_send_input(ctx, "x", 1), 0);
    assert_int_equal(qsync_advance_wait_ns(ctx, 100000, NULL), QSYNC_EPLUGIN);
    const char *msg = qsync_last_error(ctx);
    if (strstr(msg, "no serial0") == NULL)
        fail_msg("unexpected error: %s", msg);
    qsync_close_wait(ctx);
}

/* A guest that never reads: the plugin keeps 64 KiB waiting, then ends
 * QEMU with a message saying so. */
static void test_input_never_read(void **state)
{
    (void)state;
    struct out o = {0};
    static char block[QSYNC_INPUT_MAX_PER_STOP];
    memset(block, 'z', sizeof block);
    qsync_ctx *ctx = start_guest(&o, "stdio", "compute 100000000", QSYNC_MODE_PLUGIN);
    assert_int_equal(qsync_advance_wait_ns(ctx, 100000, NULL), 0);
    int rc = 0, rounds = 0;
    while (rc == 0 && rounds < 10) {
        assert_int_equal(qsync_send_input(ctx, block, sizeof block), 0);
        rc = qsync_advance_wait_ns(ctx, 100000, NULL);
        rounds++;
    }
    /* 4 x 16 KiB fit in the queue (one byte went into the UART); the 5th
     * does not. */
    assert_int_equal(rounds, 5);
    assert_int_equal(rc, QSYNC_EPLUGIN);
    const char *msg = qsync_last_error(ctx);
    if (strstr(msg, "the guest is not reading its serial port") == NULL)
        fail_msg("unexpected error: %s", msg);
    qsync_close_wait(ctx);
}

/* The qqq protocol has no way to carry input. */
static void test_input_not_in_qqq_mode(void **state)
{
    (void)state;
    struct out o = {0};
    qsync_ctx *ctx = start_guest(&o, "stdio", "compute 100000000", QSYNC_MODE_QQQ);
    assert_int_equal(qsync_advance_wait_ns(ctx, 100000, NULL), 0);
    assert_int_equal(qsync_send_input(ctx, "x", 1), QSYNC_ENOTSUP);
    assert_non_null(strstr(qsync_last_error(ctx), "only plugin mode"));
    /* Not fatal: the context goes on. */
    assert_int_equal(qsync_advance_wait_ns(ctx, 100000, NULL), 0);
    assert_int_equal(qsync_close_wait(ctx), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_input_arrives_at_the_stop),
        cmocka_unit_test(test_input_is_deterministic),
        cmocka_unit_test(test_input_without_serial0),
        cmocka_unit_test(test_input_never_read),
        cmocka_unit_test(test_input_not_in_qqq_mode),
        cmocka_unit_test(test_input_waiting_is_flagged),
        cmocka_unit_test(test_close_inputs_timer),
        cmocka_unit_test(test_close_inputs_insn),
        cmocka_unit_test(test_close_inputs_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

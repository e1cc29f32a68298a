/*
 * End to end: qsync_options.next_event and qsync_next_event_ns() against
 * real QEMU, the real plugin and the project's guest. The idle guest
 * ("idle ticks=T period_us=P") halts between the PIT's ticks, so at a stop
 * between two ticks every vCPU is halted and the next thing the guest can
 * do is the next tick, a timer of its clock. The compute guest never
 * halts. Through the blocking helpers, on a private loop.
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

#include <qsync/qsync.h>

#include "e2e_common.h"

#if !defined(GUEST_ELF) || !defined(PLUGIN_PATH)
#error "GUEST_ELF and PLUGIN_PATH must be defined"
#endif

#define US 1000ull
#define MS 1000000ull
#define IDLE_GUEST "idle ticks=40 period_us=1000"
/* The firmware takes about 5.7 ms of virtual time; the ticks start after. */
#define BOOT_NS (8 * MS)

struct out {
    char text[16384];
    size_t len;
};

static void on_output(qsync_ctx *ctx, const char *data, size_t len)
{
    struct out *o = qsync_get_data(ctx);
    e2e_append(o->text, sizeof o->text, &o->len, data, len);
}

static int smp = 1; /* the guests' -smp */

static qsync_ctx *start(struct out *o, const char *engine, const char *append, int next_event,
                        int nic)
{
    qsync_options opts;
    e2e_options(&opts);
    opts.advance_timeout_ms = 20000;
    opts.next_event = next_event;
    char args[32];
    snprintf(args, sizeof args, "engine=%s", engine);
    opts.plugin_args = args;
    qsync_callbacks cbs;
    qsync_callbacks_init(&cbs);
    cbs.output = on_output;
    char err[256];
    qsync_ctx *ctx = NULL;
    assert_int_equal(qsync_ctx_new(NULL, &opts, &cbs, &ctx, err, sizeof err), 0);
    qsync_set_data(ctx, o);
    if (nic) {
        qsync_nic_config nc;
        qsync_nic_config_init(&nc);
        assert_int_equal(qsync_nic_add(ctx, &nc), 0);
    }
    char smp_arg[16];
    snprintf(smp_arg, sizeof smp_arg, "%d", smp);
    const char *argv[] = {e2e_qemu_binary(), "-M", "pc", "-smp", smp_arg, "-nodefaults",
                          "-display", "none", "-serial", "stdio", "-no-reboot",
                          "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                          "-kernel", GUEST_ELF, "-append", append, NULL};
    assert_int_equal(qsync_start(ctx, argv), 0);
    return ctx;
}

/* The plugin API the handshake reported (needs the first stop). */
static int can_tell(qsync_ctx *ctx)
{
    qsync_info info;
    assert_int_equal(qsync_get_info(ctx, &info), 0);
    return info.next_event;
}

static void advance(qsync_ctx *ctx, uint64_t to, qsync_stop *stop)
{
    int rc = qsync_advance_wait_ns(ctx, to - qsync_now_ns(ctx), stop);
    if (rc)
        fail_msg("advance to %" PRIu64 " ns: %s (%s)", to, qsync_strerror(rc),
                 qsync_last_error(ctx));
}

/* Runs through the firmware, to where the guest's ticks have begun. */
static void boot(qsync_ctx *ctx, qsync_stop *stop)
{
    int rc = qsync_run_until_ns(ctx, BOOT_NS, 100 * US, stop);
    if (rc && strstr(qsync_last_error(ctx), "needs conditional callbacks (plugin API version 3")) {
        qsync_close_wait(ctx);
        skip(); /* engine=insn on QEMU before 9.1 */
    }
    if (rc)
        fail_msg("boot: %s (%s)", qsync_strerror(rc), qsync_last_error(ctx));
}

/*
 * Between two ticks the guest is halted and its next event is the next
 * tick: advancing to 1 ns before it runs nothing; advancing past it wakes
 * the guest (instructions run, a tick line is printed).
 */
static void check_next_is_the_tick(const char *engine)
{
    struct out o = {0};
    qsync_ctx *ctx = start(&o, engine, IDLE_GUEST, 1, 0);
    qsync_stop stop;
    boot(ctx, &stop);
    if (!can_tell(ctx)) {
        qsync_close_wait(ctx);
        skip(); /* QEMU before 9.1: plugin API 1 cannot tell */
    }
    assert_non_null(strstr(o.text, "idle start"));
    int checked = 0;
    for (int round = 0; round < 5; round++) {
        /* Step until a stop finds the guest halted. */
        int guard = 0;
        do {
            advance(ctx, qsync_now_ns(ctx) + 10 * US, &stop);
            assert_true(++guard < 1000);
        } while (!(stop.flags & QSYNC_STOP_HALTED));
        uint64_t now = qsync_now_ns(ctx), next = qsync_next_event_ns(ctx);
        uint64_t insns = stop.instructions;
        assert_true(next > now);
        assert_true(next - now <= 1000 * US); /* within a tick period */
        /* Nothing runs up to 1 ns before it, whatever the deadlines. */
        if (next - now > 2) {
            advance(ctx, now + (next - now) / 2, &stop);
            assert_true(stop.flags & QSYNC_STOP_HALTED);
            assert_int_equal(stop.instructions, insns);
            assert_int_equal(qsync_next_event_ns(ctx), next);
        }
        advance(ctx, next - 1, &stop);
        assert_true(stop.flags & QSYNC_STOP_HALTED);
        assert_int_equal(stop.instructions, insns);
        assert_int_equal(qsync_next_event_ns(ctx), next);
        /* The tick wakes the guest at next: shortly after, it has run. */
        size_t printed = o.len;
        advance(ctx, next + 50 * US, &stop);
        assert_true(stop.instructions > insns);
        assert_true(o.len > printed);
        checked++;
    }
    assert_int_equal(checked, 5);
    qsync_close_wait(ctx);
}

static void test_timer_next_is_the_tick(void **state)
{
    (void)state;
    check_next_is_the_tick("timer");
}

static void test_insn_next_is_the_tick(void **state)
{
    (void)state;
    check_next_is_the_tick("insn");
}

/* Runs the idle guest to until_ns in quanta of q, or, with skip, as a
 * simulator that skips idle stretches would: straight to the last grid
 * point (multiples of q) not past next + q. Returns the number of stops;
 * the guest's output is in *o. */
static int run_grid(struct out *o, int skip, uint64_t q, uint64_t until_ns, int *told)
{
    qsync_ctx *ctx = start(o, "timer", IDLE_GUEST, skip, 0);
    qsync_stop stop;
    int stops = 0;
    uint64_t now = 0;
    *told = -1;
    while (now < until_ns) {
        uint64_t end = now + q;
        if (skip && now >= BOOT_NS) {
            uint64_t next = qsync_next_event_ns(ctx);
            if (next > now && next < QSYNC_DEADLINE_MAX)
                end = now + (next + q - now) / q * q;
        }
        if (end > until_ns)
            end = until_ns;
        advance(ctx, end, &stop);
        now = qsync_now_ns(ctx);
        stops++;
        if (*told < 0)
            *told = can_tell(ctx);
    }
    qsync_close_wait(ctx);
    return stops;
}

/*
 * Skipping the idle stretches changes nothing the guest sees: its output
 * (every tick's HPET and TSC readings) is byte-identical to the run that
 * stops at every quantum, with far fewer stops.
 */
static void test_skipping_changes_nothing(void **state)
{
    (void)state;
    static struct out every, skipped;
    memset(&every, 0, sizeof every);
    memset(&skipped, 0, sizeof skipped);
    const uint64_t q = 20 * US, until = 30 * MS;
    int told_every, told_skipped;
    int n_every = run_grid(&every, 0, q, until, &told_every);
    int n_skipped = run_grid(&skipped, 1, q, until, &told_skipped);
    assert_int_equal(told_every, 0);
    assert_int_equal(n_every, (int)(until / q));
    assert_non_null(strstr(every.text, "tick 20 "));
    assert_string_equal(skipped.text, every.text);
    /* Without plugin API 3 nothing is skipped; with it, the 22 ms after
     * the boot take a few stops per tick (the tick's own work, then one
     * stop to the next), not 50. */
    int after_boot = n_skipped - (int)(BOOT_NS / q);
    print_message("stops: %d every quantum, %d skipping (%d after the boot)\n", n_every,
                  n_skipped, after_boot);
    if (told_skipped)
        assert_true(after_boot <= 22 * 4);
    else
        assert_int_equal(n_skipped, n_every);
}

/* With several vCPUs the plugin does not tell (qsync_info.next_event 0):
 * nothing is skipped, and the output is the same. */
static void test_smp2_cannot_tell(void **state)
{
    (void)state;
    smp = 2;
    test_skipping_changes_nothing(state);
}

static int one_vcpu(void **state)
{
    (void)state;
    smp = 1;
    return 0;
}

/* A guest that never halts is never reported halted: its next event is
 * always now. */
static void test_busy_guest_is_now(void **state)
{
    (void)state;
    struct out o = {0};
    qsync_ctx *ctx = start(&o, "timer", "compute 3000000", 1, 0);
    qsync_stop stop;
    boot(ctx, &stop);
    int busy = 0;
    while (!strstr(o.text, "compute done") && busy < 200) {
        advance(ctx, qsync_now_ns(ctx) + 10 * US, &stop);
        if (strstr(o.text, "compute done"))
            break;
        assert_false(stop.flags & QSYNC_STOP_HALTED);
        assert_int_equal(qsync_next_event_ns(ctx), qsync_now_ns(ctx));
        busy++;
    }
    assert_true(busy > 10);
    qsync_close_wait(ctx);
}

/* Without the option nothing is told: never HALTED, next is now. */
static void test_off_by_default(void **state)
{
    (void)state;
    struct out o = {0};
    qsync_ctx *ctx = start(&o, "timer", IDLE_GUEST, 0, 0);
    qsync_stop stop;
    boot(ctx, &stop);
    assert_int_equal(can_tell(ctx), 0);
    for (int i = 0; i < 30; i++) {
        advance(ctx, qsync_now_ns(ctx) + 100 * US, &stop);
        assert_false(stop.flags & QSYNC_STOP_HALTED);
        assert_int_equal(qsync_next_event_ns(ctx), qsync_now_ns(ctx));
    }
    qsync_close_wait(ctx);
}

/* The block engine cannot tell: the handshake says so, and the next event
 * is always now. */
static void test_block_cannot_tell(void **state)
{
    (void)state;
    struct out o = {0};
    qsync_ctx *ctx = start(&o, "block", "compute 30000000", 1, 0);
    qsync_stop stop;
    boot(ctx, &stop);
    assert_int_equal(can_tell(ctx), 0);
    advance(ctx, qsync_now_ns(ctx) + 100 * US, &stop);
    assert_false(stop.flags & QSYNC_STOP_HALTED);
    assert_int_equal(qsync_next_event_ns(ctx), qsync_now_ns(ctx));
    qsync_close_wait(ctx);
}

/*
 * A frame queued for the guest (qsync_send_frame) is something due: the
 * next event is the earlier of the frame and the tick. Also input: a
 * guest given input since the stop is due now.
 */
static void test_frames_and_input_are_due(void **state)
{
    (void)state;
    struct out o = {0};
    qsync_ctx *ctx = start(&o, "timer", IDLE_GUEST, 1, 1);
    qsync_stop stop;
    boot(ctx, &stop);
    if (!can_tell(ctx)) {
        qsync_close_wait(ctx);
        skip();
    }
    int guard = 0;
    do {
        advance(ctx, qsync_now_ns(ctx) + 10 * US, &stop);
        assert_true(++guard < 1000);
    } while (!(stop.flags & QSYNC_STOP_HALTED) || qsync_next_event_ns(ctx) - qsync_now_ns(ctx) < 100 * US);
    uint64_t now = qsync_now_ns(ctx), tick = qsync_next_event_ns(ctx);
    uint8_t frame[60];
    memset(frame, 0xff, sizeof frame);
    assert_int_equal(qsync_send_frame(ctx, 0, tick + 10 * US, frame, sizeof frame), 0);
    assert_int_equal(qsync_next_event_ns(ctx), tick);
    assert_int_equal(qsync_send_frame(ctx, 0, now + 7 * US, frame, sizeof frame), 0);
    assert_int_equal(qsync_next_event_ns(ctx), now + 7 * US);
    assert_int_equal(qsync_send_input(ctx, "x", 1), 0);
    assert_int_equal(qsync_next_event_ns(ctx), now);
    /* While an advance is pending nothing is known. */
    assert_int_equal(qsync_advance_ns(ctx, 10 * US), 0);
    assert_int_equal(qsync_next_event_ns(ctx), 0);
    assert_int_equal(qsync_wait_reached(ctx, &stop), 0);
    qsync_close_wait(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_timer_next_is_the_tick, one_vcpu),
        cmocka_unit_test_setup(test_insn_next_is_the_tick, one_vcpu),
        cmocka_unit_test_setup(test_skipping_changes_nothing, one_vcpu),
        cmocka_unit_test_setup(test_smp2_cannot_tell, one_vcpu),
        cmocka_unit_test_setup(test_busy_guest_is_now, one_vcpu),
        cmocka_unit_test_setup(test_off_by_default, one_vcpu),
        cmocka_unit_test_setup(test_block_cannot_tell, one_vcpu),
        cmocka_unit_test_setup(test_frames_and_input_are_due, one_vcpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * End to end, per engine: the plugin's engines (timer, insn, auto) against
 * real QEMU and the project's guest. Each test drives one or more
 * sessions through the library and checks the stop log (deadline,
 * virtual ns, instructions, flags, per-vCPU counts) and what the guest
 * itself printed.
 *
 * QSYNC_TEST_QEMU picks another QEMU binary (CI also runs these tests on
 * Debian's QEMU 7.2, plugin API 1). What a test expects follows the plugin
 * API version QEMU reports in the handshake (qemu_plugin_api). A test is
 * skipped only when its engine cannot exist on this QEMU: the insn engine
 * needs plugin API 3 (QEMU 9.1); the timer and block engines run on both.
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

struct stop_rec {
    uint64_t deadline, virtual_ns, insns;
    int64_t overshoot;
    unsigned flags;
    unsigned n_vcpus;
    uint64_t vcpu[4];
};

struct session {
    /* what to run */
    const char *engine;
    unsigned shift;
    int smp;
    const char *append;
    uint64_t quantum_ns, until_ns;
    int to_end; /* after the first stop, advance to QSYNC_DEADLINE_MAX */
    int relative; /* advance with qsync_advance_ns(), not to absolute deadlines */

    /* what happened */
    int ready;
    qsync_info info;
    char engine_name[16];
    struct stop_rec *stops;
    int n_stops, cap;
    int reached_errors;
    int first_error;
    int exited;
    int closed; /* qsync_close() was called: the context may be freed */
    qsync_exit ex;
    char tail[4096];
    char out[65536];
    size_t out_len;
};

static void on_ready(qsync_ctx *ctx, const qsync_info *info)
{
    struct session *s = qsync_get_data(ctx);
    s->ready++;
    s->info = *info;
    snprintf(s->engine_name, sizeof s->engine_name, "%s", info->engine);
    s->info.engine = s->engine_name;
}

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct session *s = qsync_get_data(ctx);
    if (status) {
        s->reached_errors++;
        if (!s->first_error)
            s->first_error = status;
        return;
    }
    if (s->n_stops == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->stops = realloc(s->stops, (size_t)s->cap * sizeof *s->stops);
        assert_non_null(s->stops);
    }
    struct stop_rec *r = &s->stops[s->n_stops++];
    memset(r, 0, sizeof *r);
    r->deadline = stop->deadline_ns;
    r->virtual_ns = stop->virtual_ns;
    r->insns = stop->instructions;
    r->overshoot = stop->overshoot_insns;
    r->flags = stop->flags;
    r->n_vcpus = stop->n_vcpus;
    uint64_t sum = 0;
    for (unsigned v = 0; v < stop->n_vcpus; v++) {
        sum += stop->vcpu_instructions[v];
        if (v < 4)
            r->vcpu[v] = stop->vcpu_instructions[v];
    }
    assert_int_equal(sum, stop->instructions);

    if (s->to_end) {
        /* "Run until the guest exits", as a user may first write it: a
         * deadline past the end of QEMU's clock, refused; then the last
         * deadline there is, which only the guest's exit ends. */
        uint64_t now = qsync_now_ns(ctx);
        assert_int_equal(qsync_advance_ns(ctx, UINT64_MAX - now), QSYNC_ERANGE);
        assert_non_null(strstr(qsync_last_error(ctx), "QSYNC_DEADLINE_MAX"));
        assert_int_equal(qsync_advance_to_ns(ctx, QSYNC_DEADLINE_MAX + 1), QSYNC_ERANGE);
        assert_int_equal(qsync_advance_to_ns(ctx, QSYNC_DEADLINE_MAX), 0);
        return;
    }
    if (stop->deadline_ns >= s->until_ns) {
        s->closed = 1;
        qsync_close(ctx, NULL);
        return;
    }
    uint64_t next = stop->deadline_ns + s->quantum_ns;
    if (next > s->until_ns)
        next = s->until_ns;
    if (s->relative)
        assert_int_equal(qsync_advance_ns(ctx, next - stop->deadline_ns), 0);
    else
        assert_int_equal(qsync_advance_to_ns(ctx, next), 0);
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct session *s = qsync_get_data(ctx);
    s->exited++;
    s->ex = *ex;
    snprintf(s->tail, sizeof s->tail, "%s", ex->stderr_tail ? ex->stderr_tail : "");
    s->ex.stderr_tail = s->tail;
}

static void on_error(qsync_ctx *ctx, int code, const char *msg)
{
    struct session *s = qsync_get_data(ctx);
    if (!s->first_error)
        s->first_error = code;
    (void)msg;
}

static void on_output(qsync_ctx *ctx, const char *data, size_t len)
{
    struct session *s = qsync_get_data(ctx);
    if (s->out_len + len < sizeof s->out) {
        memcpy(s->out + s->out_len, data, len);
        s->out_len += len;
        s->out[s->out_len] = '\0';
    }
}

/* Runs one session to s->until_ns (or until QEMU ends) and closes it. */
static void run(struct session *s)
{
    uv_loop_t loop;
    char args[64], smp[16];
    assert_int_equal(uv_loop_init(&loop), 0);

    qsync_options o;
    e2e_options(&o);
    o.icount_shift = s->shift;
    snprintf(args, sizeof args, "engine=%s", s->engine);
    o.plugin_args = args;
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.ready = on_ready;
    cb.reached = on_reached;
    cb.exited = on_exited;
    cb.error = on_error;
    cb.output = on_output;

    qsync_ctx *ctx = NULL;
    char err[256];
    if (qsync_ctx_new(&loop, &o, &cb, &ctx, err, sizeof err))
        fail_msg("qsync_ctx_new: %s", err);
    qsync_set_data(ctx, s);
    snprintf(smp, sizeof smp, "%d", s->smp > 0 ? s->smp : 1);
    const char *argv[] = {e2e_qemu_binary(), "-M", "pc", "-nodefaults", "-display", "none",
                          "-serial", "stdio", "-no-reboot", "-device",
                          "isa-debug-exit,iobase=0xf4,iosize=0x04", "-smp", smp,
                          "-kernel", GUEST_ELF, "-append", s->append, NULL};
    if (qsync_start(ctx, argv))
        fail_msg("qsync_start: %s", qsync_last_error(ctx));
    e2e_check_channel(ctx);
    uint64_t first = s->quantum_ns < s->until_ns ? s->quantum_ns : s->until_ns;
    assert_int_equal(qsync_advance_to_ns(ctx, first), 0);
    while (!s->exited && uv_run(&loop, UV_RUN_ONCE)) {
    }
    /* A closed context is freed once its handles close: never touch it
     * again after qsync_close(). */
    if (!s->closed)
        qsync_close(ctx, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static struct session *session_new(const char *engine, const char *append, uint64_t quantum,
                                   uint64_t until)
{
    struct session *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->engine = engine;
    s->append = append;
    s->quantum_ns = quantum;
    s->until_ns = until;
    s->smp = 1;
    return s;
}

static void session_free(struct session *s)
{
    free(s->stops);
    free(s);
}

/*
 * The plugin API version of the QEMU under test, from a short session's
 * handshake (engine=auto always finds an engine), asked once. The tests
 * that expect a refusal get no handshake of their own.
 */
static unsigned qemu_plugin_api(void)
{
    static unsigned api;
    if (api == 0) {
        struct session *s = session_new("auto", "compute 1000", 100 * US, 100 * US);
        run(s);
        if (!s->ready)
            fail_msg("no handshake from engine=auto (QEMU said: %s)", s->tail);
        api = s->info.plugin_api;
        session_free(s);
    }
    return api;
}

/* Plugin API 3 (QEMU 9.1): conditional callbacks, which the insn engine
 * is made of. */
#define API_COND_CB 3u

/* Skips the calling test when its engine cannot exist on this QEMU: the
 * insn engine on plugin API < 3. The plugin must have refused it, for
 * that reason. Any other refusal fails in assert_completed. */
static void skip_if_refused(struct session *s)
{
    if (strcmp(s->engine, "insn") != 0 || qemu_plugin_api() >= API_COND_CB)
        return;
    assert_int_equal(s->ready, 0);
    if (strstr(s->tail, "engine=insn cannot run here") == NULL ||
        strstr(s->tail, "conditional callbacks") == NULL)
        fail_msg("engine=insn on plugin API %u: not refused for the API (QEMU said: %s)",
                 qemu_plugin_api(), s->tail);
    print_message("skipped: the insn engine needs plugin API %u; QEMU said: %s", API_COND_CB,
                  s->tail);
    session_free(s);
    skip();
}

/* The run reached until_ns with every quantum reported, and closing the
 * channel while the guest was stopped ended QEMU by itself (the plugin's
 * _exit(0); the library's SIGKILL after kill_grace_ms would show as a
 * signal). */
static void assert_completed(struct session *s)
{
    if (!s->ready || s->first_error)
        fail_msg("engine=%s: %s (QEMU said: %s)", s->engine,
                 s->first_error ? qsync_err_name(s->first_error) : "no handshake", s->tail);
    assert_int_equal(s->reached_errors, 0);
    assert_true(s->n_stops > 0);
    assert_int_equal(s->stops[s->n_stops - 1].deadline, s->until_ns);
    assert_int_equal(s->exited, 1);
    assert_int_equal(s->ex.by_close, 1);
    assert_int_equal(s->ex.term_signal, 0);
    assert_int_equal(s->ex.exit_status, 0);
}

/* Every stop is on its deadline, and the deadlines are the grants. */
static void assert_exact(const struct session *s)
{
    for (int i = 0; i < s->n_stops; i++) {
        const struct stop_rec *r = &s->stops[i];
        uint64_t want = (uint64_t)(i + 1) * s->quantum_ns;
        if (want > s->until_ns)
            want = s->until_ns;
        if (r->deadline != want || r->virtual_ns != r->deadline ||
            (r->flags & QSYNC_STOP_DEVIATION) || r->overshoot != 0)
            fail_msg("engine=%s stop %d: deadline %" PRIu64 " (want %" PRIu64 "), virtual %" PRIu64
                     ", overshoot %" PRId64 ", flags %#x",
                     s->engine, i + 1, r->deadline, want, r->virtual_ns, r->overshoot, r->flags);
    }
}

/* Two runs gave the same stop log. */
static void assert_same_log(const struct session *a, const struct session *b)
{
    assert_int_equal(a->n_stops, b->n_stops);
    for (int i = 0; i < a->n_stops; i++) {
        const struct stop_rec *x = &a->stops[i], *y = &b->stops[i];
        if (memcmp(x, y, sizeof *x) != 0)
            fail_msg("stop %d differs: virtual %" PRIu64 "/%" PRIu64 ", insns %" PRIu64 "/%" PRIu64
                     ", flags %#x/%#x, vcpu0 %" PRIu64 "/%" PRIu64,
                     i + 1, x->virtual_ns, y->virtual_ns, x->insns, y->insns, x->flags,
                     y->flags, x->vcpu[0], y->vcpu[0]);
    }
}

/*
 * What the block engine guarantees (shift 0): it claims neither exactness
 * nor never-ahead-when-idle; every stop is at or past its deadline, by
 * less than a block (the guest's blocks are well under 1000 instructions),
 * with the overshoot reported: virtual_ns = deadline + overshoot =
 * instructions, flagged as a deviation exactly when it is not 0; and the
 * deadlines stay the absolute grants. Returns how many stops were late.
 */
static int assert_bounded(const struct session *s)
{
    int late = 0;
    assert_string_equal(s->info.engine, "block");
    assert_false(s->info.exact);
    assert_false(s->info.never_ahead_idle);
    for (int i = 0; i < s->n_stops; i++) {
        const struct stop_rec *r = &s->stops[i];
        uint64_t want = (uint64_t)(i + 1) * s->quantum_ns;
        if (want > s->until_ns)
            want = s->until_ns;
        assert_int_equal(r->deadline, want);
        assert_true(r->overshoot >= 0);
        assert_true(r->overshoot < 1000);
        assert_int_equal(r->virtual_ns, r->deadline + (uint64_t)r->overshoot);
        assert_int_equal(r->insns, r->virtual_ns);
        assert_int_equal((r->flags & QSYNC_STOP_DEVIATION) != 0, r->overshoot != 0);
        late += r->overshoot > 0;
    }
    return late;
}

/* ---------------------------------------------------------------------- */
/* Never ahead, and exact, on the idle guest                               */

#define IDLE_GUEST "idle ticks=1000 period_us=1000"

/* Reads a "key=N" field from a guest line. */
static uint64_t field(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    assert_non_null(p);
    return strtoull(p + strlen(key), NULL, 10);
}

/*
 * The idle guest under 100 us quanta until 50 ms (100 ms at shift 3):
 * the guest never saw a time past that (it prints its HPET and TSC only
 * after waking), it saw as many ticks as that allows, and every stop is
 * exact, flagged idle where the guest sat halted.
 *
 * With shift > 0 (2^shift ns an instruction) a stop is at its deadline
 * when the guest idles into it, and otherwise on the last instruction
 * boundary before it (idle warps to the PIT's deadlines move the clock's
 * phase off multiples of 2^shift): never past the deadline, less than an
 * instruction short, and flagged as a deviation exactly when short.
 */
static void check_idle_run_shift(const char *engine, const char *want_engine, unsigned shift)
{
    /* At shift 3 the firmware alone takes ~45 ms. */
    struct session *s = session_new(engine, IDLE_GUEST, 100 * US, shift ? 100 * MS : 50 * MS);
    s->shift = shift;
    run(s);
    skip_if_refused(s);
    assert_completed(s);
    assert_string_equal(s->info.engine, want_engine);
    assert_true(s->info.exact);
    assert_true(s->info.never_ahead_idle);
    if (shift == 0) {
        assert_exact(s);
    } else {
        int idle_on_deadline = 0;
        for (int i = 0; i < s->n_stops; i++) {
            const struct stop_rec *r = &s->stops[i];
            if (r->virtual_ns > r->deadline || r->deadline - r->virtual_ns >= (1u << shift))
                fail_msg("stop %d: virtual_ns %" PRIu64 " for deadline %" PRIu64
                         " at shift %u",
                         i + 1, r->virtual_ns, r->deadline, shift);
            assert_int_equal((r->flags & QSYNC_STOP_DEVIATION) != 0,
                             r->virtual_ns != r->deadline);
            idle_on_deadline += (r->flags & QSYNC_STOP_IDLE) && r->virtual_ns == r->deadline;
        }
        /* The idle stops are the ones the final leg makes. */
        assert_true(idle_on_deadline > 0);
    }

    /* The guest's own view. tsc counts ns of virtual time from reset;
     * hpet_ns from the guest's start (the firmware runs ~5.7 ms first). */
    const char *start = strstr(s->out, "idle start");
    assert_non_null(start);
    uint64_t period = field(start, "period_ns=");
    int ticks = 0;
    uint64_t first_tsc = 0, last_tsc = 0;
    for (const char *p = strstr(s->out, "tick "); p != NULL; p = strstr(p + 1, "tick ")) {
        uint64_t hpet = field(p, "hpet_ns="), tsc = field(p, "tsc=");
        assert_true(hpet <= s->until_ns);
        assert_true(tsc <= s->until_ns);
        assert_true(tsc >= last_tsc);
        if (ticks == 0)
            first_tsc = tsc;
        last_tsc = tsc;
        ticks++;
        assert_int_equal(field(p, "tick "), (uint64_t)ticks);
    }
    /* Tick k is printed about (k-1) periods after tick 1. */
    assert_true(ticks > 10);
    int64_t expect = (int64_t)((s->until_ns - first_tsc) / period) + 1;
    assert_in_range(ticks, expect - 1, expect + 1);

    /* A quantum in which time passed with fewer instructions than its
     * length (less one, for the stops short of their deadlines) can only
     * have been spent (partly) halted. */
    uint64_t prev_insns = 0;
    int idle = 0;
    for (int i = 0; i < s->n_stops; i++) {
        const struct stop_rec *r = &s->stops[i];
        if (((r->insns - prev_insns) << shift) + (1u << shift) <= s->quantum_ns)
            assert_true(r->flags & QSYNC_STOP_IDLE);
        idle += (r->flags & QSYNC_STOP_IDLE) != 0;
        prev_insns = r->insns;
    }
    assert_true(idle > s->n_stops / 2);
    session_free(s);
}

static void check_idle_run(const char *engine, const char *want_engine)
{
    check_idle_run_shift(engine, want_engine, 0);
}

static void test_timer_idle_never_ahead_shift3(void **state)
{
    (void)state;
    check_idle_run_shift("timer", "timer", 3);
}

static void test_insn_idle_never_ahead_shift3(void **state)
{
    (void)state;
    check_idle_run_shift("insn", "insn", 3);
}

static void test_timer_idle_never_ahead(void **state)
{
    (void)state;
    check_idle_run("timer", "timer");
}

static void test_insn_idle_never_ahead(void **state)
{
    (void)state;
    check_idle_run("insn", "insn");
}

static void test_auto_idle_never_ahead(void **state)
{
    (void)state;
    check_idle_run("auto", "timer");
}

/* ---------------------------------------------------------------------- */
/* Exact on the compute guest                                              */

/* 1000 quanta of 10 us: the firmware, then the guest's busy loop. With
 * shift 0 a busy guest's instructions are its virtual time. */
static void check_compute_exact(const char *engine)
{
    struct session *s = session_new(engine, "compute 100000000", 10 * US, 10 * MS);
    run(s);
    skip_if_refused(s);
    assert_completed(s);
    assert_string_equal(s->info.engine, engine);
    assert_exact(s);
    for (int i = 0; i < s->n_stops; i++) {
        assert_int_equal(s->stops[i].insns, s->stops[i].deadline);
        assert_int_equal(s->stops[i].flags & QSYNC_STOP_IDLE, 0);
    }
    assert_non_null(strstr(s->out, "compute start"));
    session_free(s);
}

static void test_timer_compute_exact(void **state)
{
    (void)state;
    check_compute_exact("timer");
}

static void test_insn_compute_exact(void **state)
{
    (void)state;
    check_compute_exact("insn");
}

/* ---------------------------------------------------------------------- */
/* Deterministic                                                           */

#define RUNS 5

/* RUNS runs of the compute guest at -smp N give one stop log. */
static void check_deterministic_smp(int smp)
{
    struct session *runs[RUNS];
    for (int k = 0; k < RUNS; k++) {
        runs[k] = session_new("timer", "compute 10000000", 100 * US, 12 * MS);
        runs[k]->smp = smp;
        run(runs[k]);
        assert_completed(runs[k]);
        assert_int_equal(runs[k]->info.n_vcpus, (unsigned)smp);
        assert_exact(runs[k]);
        assert_int_equal(runs[k]->stops[0].n_vcpus, (unsigned)smp);
    }
    /* The guest's loop ran, on vCPU 0. The firmware's start-up code ran
     * on the other vCPUs, a few hundred instructions, counted as theirs
     * (QEMU 7.2's SeaBIOS runs 930 on each; 10.0.2's runs some on vCPU 1
     * only). */
    const struct stop_rec *last = &runs[0]->stops[runs[0]->n_stops - 1];
    assert_true(last->vcpu[0] > 5 * MS);
    uint64_t others = 0;
    for (int v = 1; v < smp; v++)
        others += last->vcpu[v];
    if (smp > 1 && (others == 0 || others >= 100 * US))
        fail_msg("-smp %d: vCPUs 1..%d ran %" PRIu64 " instructions (vCPU 0: %" PRIu64 ")", smp,
                 smp - 1, others, last->vcpu[0]);
    for (int k = 1; k < RUNS; k++) {
        assert_same_log(runs[0], runs[k]);
        assert_string_equal(runs[0]->out, runs[k]->out);
    }
    for (int k = 0; k < RUNS; k++)
        session_free(runs[k]);
}

static void test_timer_deterministic_smp1(void **state)
{
    (void)state;
    check_deterministic_smp(1);
}

static void test_timer_deterministic_smp2(void **state)
{
    (void)state;
    check_deterministic_smp(2);
}

static void test_timer_deterministic_smp4(void **state)
{
    (void)state;
    check_deterministic_smp(4);
}

/*
 * The idle guest: QEMU's idle race (its warp reading a clock that lacks a
 * vCPU's last instructions) is closed by the plugin, so runs are byte for
 * byte the same, stop logs and guest output alike.
 */
static void test_timer_idle_deterministic(void **state)
{
    (void)state;
    struct session *runs[RUNS];
    for (int k = 0; k < RUNS; k++) {
        runs[k] = session_new("timer", IDLE_GUEST, 100 * US, 50 * MS);
        run(runs[k]);
        assert_completed(runs[k]);
        assert_exact(runs[k]);
    }
    for (int k = 1; k < RUNS; k++) {
        assert_same_log(runs[0], runs[k]);
        assert_string_equal(runs[0]->out, runs[k]->out);
    }
    for (int k = 0; k < RUNS; k++)
        session_free(runs[k]);
}

/* ---------------------------------------------------------------------- */
/* Fallbacks                                                               */

/* A run that the plugin refuses: QEMU exits before HELLO. */
static void assert_refused(struct session *s, const char *text)
{
    assert_int_equal(s->ready, 0);
    assert_int_equal(s->n_stops, 0);
    assert_int_equal(s->exited, 1);
    assert_int_equal(s->ex.by_close, 0);
    assert_true(s->ex.exit_status != 0);
    if (strstr(s->tail, text) == NULL)
        fail_msg("stderr tail lacks \"%s\": %s", text, s->tail);
}

/* The test hook makes the plugin see a QEMU without internals. */
static void test_timer_refused_without_internals(void **state)
{
    (void)state;
    assert_int_equal(setenv("QSYNC_PLUGIN_NO_INTERNALS", "1", 1), 0);
    struct session *s = session_new("timer", "compute 1000", 100 * US, 1 * MS);
    run(s);
    unsetenv("QSYNC_PLUGIN_NO_INTERNALS");
    assert_refused(s, "engine=timer cannot run here");
    assert_non_null(strstr(s->tail, "QSYNC_PLUGIN_NO_INTERNALS"));
    session_free(s);
}

/*
 * auto falls back to the best engine the plugin API allows: insn (plugin
 * API 3), which then does not claim never-ahead-idle, or, on QEMU 7.2
 * (API 1), block, with its bounded stops.
 */
static void test_auto_without_internals(void **state)
{
    (void)state;
    assert_int_equal(setenv("QSYNC_PLUGIN_NO_INTERNALS", "1", 1), 0);
    struct session *s = session_new("auto", "compute 100000000", 100 * US, 7 * MS);
    run(s);
    unsetenv("QSYNC_PLUGIN_NO_INTERNALS");
    assert_completed(s);
    if (s->info.plugin_api >= API_COND_CB) {
        assert_string_equal(s->info.engine, "insn");
        assert_true(s->info.exact);
        assert_false(s->info.never_ahead_idle);
        assert_exact(s);
    } else {
        (void)assert_bounded(s);
    }
    session_free(s);
}

/* The insn engine refuses -smp > 1: on plugin API 3 because of -smp, and
 * it says what to use; on API 1 because it cannot run at all. */
static void test_insn_refuses_smp2(void **state)
{
    (void)state;
    struct session *s = session_new("insn", "compute 1000", 100 * US, 1 * MS);
    s->smp = 2;
    run(s);
    assert_refused(s, "engine=insn cannot run here");
    if (qemu_plugin_api() >= API_COND_CB) {
        assert_non_null(strstr(s->tail, "-smp 1 only"));
        assert_non_null(strstr(s->tail, "engine=timer"));
    } else {
        assert_non_null(strstr(s->tail, "conditional callbacks"));
    }
    session_free(s);
}

/* ---------------------------------------------------------------------- */
/* icount shift 3                                                          */

/*
 * 1000 quanta of 10 us + 1 ns, shift 3 (8 ns an instruction), on the busy
 * guest: every stop is on the last instruction boundary at or before its
 * deadline (deadline rounded down to a multiple of 8), flagged as a
 * deviation when that is not the deadline itself, and the rounding never
 * adds up: the 1000th deadline, 10,001,000 ns, is a multiple of 8 and is
 * met exactly. With relative true the test advances by 10,001 ns each
 * time (qsync_advance_ns()): the library counts from the last deadline,
 * never from where the guest stopped, so the deadlines are the same.
 */
static void check_shift3(const char *engine, int relative)
{
    struct session *s = session_new(engine, "compute 100000000", 10 * US + 1, 10001 * US);
    s->shift = 3;
    s->relative = relative;
    run(s);
    skip_if_refused(s);
    assert_completed(s);
    assert_int_equal(s->info.icount_shift, 3);
    assert_int_equal(s->n_stops, 1000);
    for (int i = 0; i < s->n_stops; i++) {
        const struct stop_rec *r = &s->stops[i];
        uint64_t d = (uint64_t)(i + 1) * (10 * US + 1);
        assert_int_equal(r->deadline, d);
        assert_int_equal(r->virtual_ns, d & ~(uint64_t)7);
        assert_int_equal(r->insns, r->virtual_ns >> 3);
        assert_int_equal(r->overshoot, 0);
        assert_int_equal((r->flags & QSYNC_STOP_DEVIATION) != 0, r->virtual_ns != d);
    }
    assert_int_equal(s->stops[999].virtual_ns, 10001 * US);
    session_free(s);
}

static void test_timer_shift3(void **state)
{
    (void)state;
    check_shift3("timer", 1);
}

static void test_insn_shift3(void **state)
{
    (void)state;
    check_shift3("insn", 0);
}

/* ---------------------------------------------------------------------- */
/* The last deadline: run until the guest ends                             */

/*
 * A deadline past QSYNC_DEADLINE_MAX (2^63-1 ns) is refused; an advance to
 * it runs the guest to its own end on every engine. The guest executes
 * its whole program (2,000,000 instructions of its loop), exits with its
 * own status, and the advance fails with QSYNC_EEXITED: it is never
 * reported reached. (Engines that read the deadline as a signed value saw
 * 2^64-1 as in the past and reported it reached at once, status 0, with
 * nothing run.)
 */
static void check_run_to_end(const char *engine)
{
    struct session *s = session_new(engine, "compute 1000000", 100 * US, 100 * US);
    s->to_end = 1;
    run(s);
    skip_if_refused(s);
    if (!s->ready)
        fail_msg("engine=%s: no handshake (QEMU said: %s)", engine, s->tail);
    assert_int_equal(s->n_stops, 1);
    assert_int_equal(s->reached_errors, 1);
    assert_int_equal(s->first_error, QSYNC_EEXITED);
    assert_int_equal(s->exited, 1);
    /* isa-debug-exit: status (code << 1) | 1, the guest's code 0 -> 1. */
    assert_int_equal(s->ex.exit_status, 1);
    assert_int_equal(s->ex.term_signal, 0);
    assert_int_equal(s->ex.by_close, 0);
    /* The guest ran its whole loop: it says so itself. */
    assert_non_null(strstr(s->out, "compute done loops=1000000"));
    session_free(s);
}

static void test_timer_run_to_end(void **state)
{
    (void)state;
    check_run_to_end("timer");
}

static void test_insn_run_to_end(void **state)
{
    (void)state;
    check_run_to_end("insn");
}

static void test_block_run_to_end(void **state)
{
    (void)state;
    check_run_to_end("block");
}

/* ---------------------------------------------------------------------- */
/* The per-block engine: bounded, and honest about it                      */

/*
 * Forced engine=block on the time-mode guest (whose blocks are longer than
 * the compute loop's): it claims no exactness, and its overshoot is in
 * every report: some stops land past their deadline, flagged as
 * deviations, with virtual_ns = deadline + overshoot (shift 0), never
 * before the deadline, and deadlines stay absolute.
 */
static void test_block_reports_overshoot(void **state)
{
    (void)state;
    struct session *s = session_new("block", "time 1000", 10 * US, 2 * MS);
    run(s);
    assert_completed(s);
    assert_true(assert_bounded(s) > 0);
    session_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_idle_never_ahead),
        cmocka_unit_test(test_insn_idle_never_ahead),
        cmocka_unit_test(test_auto_idle_never_ahead),
        cmocka_unit_test(test_timer_idle_never_ahead_shift3),
        cmocka_unit_test(test_insn_idle_never_ahead_shift3),
        cmocka_unit_test(test_timer_compute_exact),
        cmocka_unit_test(test_insn_compute_exact),
        cmocka_unit_test(test_timer_deterministic_smp1),
        cmocka_unit_test(test_timer_deterministic_smp2),
        cmocka_unit_test(test_timer_deterministic_smp4),
        cmocka_unit_test(test_timer_idle_deterministic),
        cmocka_unit_test(test_timer_refused_without_internals),
        cmocka_unit_test(test_auto_without_internals),
        cmocka_unit_test(test_insn_refuses_smp2),
        cmocka_unit_test(test_timer_shift3),
        cmocka_unit_test(test_insn_shift3),
        cmocka_unit_test(test_block_reports_overshoot),
        cmocka_unit_test(test_timer_run_to_end),
        cmocka_unit_test(test_insn_run_to_end),
        cmocka_unit_test(test_block_run_to_end),
    };
    return cmocka_run_group_tests_name("engines", tests, NULL, NULL);
}

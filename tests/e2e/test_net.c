/*
 * End to end: Ethernet frames at exact virtual times, through the
 * library's NIC API (qsync_nic_add(), qsync_send_frame(), the frame
 * callback), against real QEMU, the real plugin and the project's guest in
 * its e1000 modes (tests/guest/README.md, "Ethernet"), which stamp every
 * frame with the guest's own clock (the TSC: virtual ns under -icount):
 *
 * - a frame sent for time t inside a quantum is seen by the guest at t,
 *   within the few instructions of its polling loop, on the timer and insn
 *   engines, at shift 0 and 3; frames due at one time come in call order;
 * - a transmit's stamp is the guest's clock at its TDT write, within one
 *   instruction, and frames come before their quantum's reached callback;
 * - two runs give the same stamps, both ways;
 * - bad frames, times, models and a QEMU without e1000 are refused, and
 *   frames for a guest without a driver are dropped and counted, and
 *   QSYNC_ENODRIVER says so once.
 *
 * Through the blocking helpers, on a private loop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <qsync/qsync.h>

#include "e2e_common.h"

#if !defined(GUEST_ELF) || !defined(PLUGIN_PATH)
#error "GUEST_ELF and PLUGIN_PATH must be defined"
#endif

#define QUANTUM_NS 100000u
/* The guest's receive loop (tests/guest/README.md): "1: testb; jz 1b",
 * then rdtsc. */
#define POLL_LOOP_INSNS 2u
#define ETHERTYPE 0x88b5u
#define MAX_FRAMES 64

struct frame {
    unsigned nic;
    uint64_t ns;
    size_t len;
    uint8_t data[64];
};

struct net_run {
    char text[65536];
    size_t len;
    struct frame frames[MAX_FRAMES];
    unsigned n_frames;
    uint64_t quantum_start; /* the deadline of the last stop */
    unsigned early;         /* frames stamped at or before the last stop */
    unsigned unreported;    /* frames of a quantum after its reached */
    unsigned checked;       /* frames checked by a reached callback */
    unsigned errors;        /* error callbacks */
    unsigned no_driver;     /* of them, QSYNC_ENODRIVER */
    char error_text[512];   /* the last one's message */
};

static void on_output(qsync_ctx *ctx, const char *data, size_t len)
{
    struct net_run *r = qsync_get_data(ctx);
    e2e_append(r->text, sizeof r->text, &r->len, data, len);
}

static void on_frame(qsync_ctx *ctx, unsigned nic, uint64_t virtual_ns, const void *data,
                     size_t len)
{
    struct net_run *r = qsync_get_data(ctx);
    assert_true(r->n_frames < MAX_FRAMES);
    struct frame *f = &r->frames[r->n_frames++];
    f->nic = nic;
    f->ns = virtual_ns;
    f->len = len;
    memcpy(f->data, data, len < sizeof f->data ? len : sizeof f->data);
    /* It belongs to the quantum running now: after the last stop. */
    if (virtual_ns <= r->quantum_start)
        r->early++;
}

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct net_run *r = qsync_get_data(ctx);
    if (status != 0)
        return;
    /* Every frame sent up to this stop has come already. */
    for (; r->checked < r->n_frames; r->checked++)
        if (r->frames[r->checked].ns > stop->deadline_ns)
            r->unreported++;
    r->quantum_start = stop->deadline_ns;
}

static void on_error(qsync_ctx *ctx, int code, const char *message)
{
    struct net_run *r = qsync_get_data(ctx);
    r->errors++;
    if (code == QSYNC_ENODRIVER)
        r->no_driver++;
    snprintf(r->error_text, sizeof r->error_text, "%s", message);
}

/* Starts the guest with one NIC (cfg NULL: the default e1000). */
static qsync_ctx *start_net(struct net_run *r, const char *append, const char *plugin_args,
                            unsigned shift, const qsync_nic_config *cfg)
{
    qsync_options opts;
    e2e_options(&opts);
    opts.plugin_args = plugin_args;
    opts.icount_shift = shift;
    opts.advance_timeout_ms = 20000;
    qsync_callbacks cbs;
    qsync_callbacks_init(&cbs);
    cbs.output = on_output;
    cbs.frame = on_frame;
    cbs.reached = on_reached;
    cbs.error = on_error;
    char err[256];
    qsync_ctx *ctx = NULL;
    assert_int_equal(qsync_ctx_new(NULL, &opts, &cbs, &ctx, err, sizeof err), 0);
    qsync_set_data(ctx, r);
    qsync_nic_config def;
    qsync_nic_config_init(&def);
    int nic = qsync_nic_add(ctx, cfg ? cfg : &def);
    if (nic != 0)
        fail_msg("qsync_nic_add: %s (%s)", qsync_strerror(nic), qsync_last_error(ctx));
    const char *argv[] = {e2e_qemu_binary(), "-M", "pc", "-nodefaults", "-display", "none",
                          "-serial", "stdio", "-no-reboot",
                          "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                          "-kernel", GUEST_ELF, "-append", append, NULL};
    assert_int_equal(qsync_start(ctx, argv), 0);
    return ctx;
}

/* The value after key in the line that starts with prefix, or fails. */
static uint64_t field(const struct net_run *r, const char *prefix, const char *key)
{
    const char *p = strstr(r->text, prefix);
    if (p == NULL)
        fail_msg("the guest printed no '%s'; its output:\n%s", prefix, r->text);
    const char *eol = strchr(p, '\n');
    const char *k = strstr(p, key);
    if (k == NULL || (eol && k > eol))
        fail_msg("no %s in the guest's line '%.*s'", key, eol ? (int)(eol - p) : 80, p);
    return strtoull(k + strlen(key), NULL, 10);
}

/* Advances by ns; returns 1 when the guest has ended by itself (its
 * modes exit once they have handled their frames), 0 when it is stopped
 * at the new deadline; fails on anything else. */
static int advance(qsync_ctx *ctx, const struct net_run *r, uint64_t ns)
{
    int rc = qsync_advance_wait_ns(ctx, ns, NULL);
    if (rc == QSYNC_EEXITED && strstr(r->text, "qsync-guest: exit code=0\n") != NULL)
        return 1;
    if (rc != 0)
        fail_msg("advance: %s (%s); the guest's output:\n%s", qsync_strerror(rc),
                 qsync_last_error(ctx), r->text);
    return 0;
}

/* Advances in quanta until the guest has ended by itself. */
static void run_to_end(qsync_ctx *ctx, const struct net_run *r)
{
    for (int i = 0; i < 1000; i++)
        if (advance(ctx, r, QUANTUM_NS))
            return;
    fail_msg("the guest did not end; its output:\n%s", r->text);
}

/* Advances in 10 ms quanta until the guest says "net ready" (it sleeps
 * out the e1000's 1 s receive hold first); returns its time. */
static uint64_t run_until_ready(qsync_ctx *ctx, struct net_run *r)
{
    for (int i = 0; i < 200 && strstr(r->text, "qsync-guest: net ready ") == NULL; i++) {
        assert_int_equal(advance(ctx, r, 10000000), 0);
    }
    uint64_t t = field(r, "qsync-guest: net ready ", "t=");
    assert_int_equal(field(r, "qsync-guest: net ready ", "link="), 1);
    assert_true(t <= qsync_now_ns(ctx));
    return t;
}

/* A 60-byte frame to the NIC (dst) carrying num. */
static void make_frame(uint8_t *f, size_t len, const uint8_t *dst, unsigned num)
{
    static const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x01};
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    f[12] = ETHERTYPE >> 8;
    f[13] = ETHERTYPE & 0xff;
    f[14] = (uint8_t)(num >> 24);
    f[15] = (uint8_t)(num >> 16);
    f[16] = (uint8_t)(num >> 8);
    f[17] = (uint8_t)num;
    for (size_t i = 18; i < len; i++)
        f[i] = (uint8_t)(0xa0 + i);
}

static const uint8_t *nic_mac(qsync_ctx *ctx)
{
    qsync_info info;
    assert_int_equal(qsync_get_info(ctx, &info), 0);
    assert_int_equal(info.n_nics, 1);
    assert_string_equal(info.nics[0].model, "e1000");
    assert_int_equal(info.nics[0].tx_stamp, QSYNC_STAMP_EXACT);
    assert_int_equal(info.nics[0].rx_time, QSYNC_STAMP_EXACT);
    return info.nics[0].mac;
}

/* The plugin API version of the QEMU under test (the insn engine needs
 * version 3, QEMU 9.1), from a short session with engine=auto. */
static unsigned plugin_api(void)
{
    qsync_options opts;
    e2e_options(&opts);
    qsync_ctx *ctx = NULL;
    assert_int_equal(qsync_ctx_new(NULL, &opts, NULL, &ctx, NULL, 0), 0);
    const char *argv[] = {e2e_qemu_binary(), "-M", "pc", "-nodefaults", "-display", "none",
                          "-no-reboot", "-kernel", GUEST_ELF, "-append", "compute 1000", NULL};
    assert_int_equal(qsync_start(ctx, argv), 0);
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), 0);
    qsync_info info;
    assert_int_equal(qsync_get_info(ctx, &info), 0);
    unsigned api = info.plugin_api;
    assert_int_equal(qsync_close_wait(ctx), 0);
    return api;
}

/* ---- receive: a frame sent for t is seen at t ------------------------- */

static const uint64_t rx_offsets_ns[] = {1, 17, 333, QUANTUM_NS / 2};
#define N_RX (sizeof rx_offsets_ns / sizeof rx_offsets_ns[0])

static void check_rx_times(const char *engine, unsigned shift)
{
    if (strcmp(engine, "insn") == 0 && plugin_api() < 3) {
        print_message("skipped: the insn engine needs plugin API 3 (QEMU 9.1)\n");
        skip();
    }
    char args[32], append[32];
    snprintf(args, sizeof args, "engine=%s", engine);
    snprintf(append, sizeof append, "receive count=%u", (unsigned)N_RX);
    struct net_run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    qsync_ctx *ctx = start_net(r, append, args, shift, NULL);
    run_until_ready(ctx, r);
    const uint8_t *mac = nic_mac(ctx);
    const uint64_t insn = 1ull << shift;
    uint64_t at[N_RX];

    for (unsigned i = 0; i < N_RX; i++) {
        uint8_t f[60];
        make_frame(f, sizeof f, mac, 100 + i);
        at[i] = qsync_now_ns(ctx) + rx_offsets_ns[i];
        int rc = qsync_send_frame(ctx, 0, at[i], f, sizeof f);
        if (rc != 0)
            fail_msg("qsync_send_frame: %s (%s)", qsync_strerror(rc), qsync_last_error(ctx));
        /* The frame's quantum, then one where the guest prints and polls
         * again; it ends after the last frame. */
        if (advance(ctx, r, QUANTUM_NS) || advance(ctx, r, QUANTUM_NS)) {
            assert_int_equal(i, N_RX - 1);
            break;
        }
    }
    if (strstr(r->text, "qsync-guest: exit code=0\n") == NULL)
        run_to_end(ctx, r);
    for (unsigned i = 0; i < N_RX; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "qsync-guest: rx %u ", i + 1);
        assert_int_equal(field(r, prefix, "num="), 100 + i);
        assert_int_equal(field(r, prefix, "len="), 60);
        uint64_t from = field(r, prefix, "from="), t = field(r, prefix, "t=");
        /*
         * The NIC takes the frame at the first instruction boundary at or
         * after at (a boundary every 2^shift ns), between two instructions
         * of the poll loop ("1: testb; jz 1b", then rdtsc). From there the
         * guest executes at least one whole iteration and the rdtsc, at
         * most also the rest of the iteration it was in (the jz); QEMU
         * counts the rdtsc before it reads the clock (as the transmit
         * stamps show: the store after an rdtsc is stamped one instruction
         * later). So the guest's stamp is the arrival plus 3 or 4
         * instructions: POLL_LOOP_INSNS + 1 at least, + 2 at most.
         */
        uint64_t arrival = (at[i] + insn - 1) / insn * insn;
        uint64_t lo = arrival + (POLL_LOOP_INSNS + 1) * insn;
        uint64_t hi = arrival + (POLL_LOOP_INSNS + 2) * insn;
        uint64_t base = at[i] - rx_offsets_ns[i];
        print_message("engine=%s shift=%u: frame for +%llu ns seen at +%llu ns "
                      "(bounds +%llu..+%llu)\n",
                      engine, shift, (unsigned long long)rx_offsets_ns[i],
                      (unsigned long long)(t - base), (unsigned long long)(lo - base),
                      (unsigned long long)(hi - base));
        if (from >= at[i])
            fail_msg("frame %u: the guest started polling at %llu, after the frame's "
                     "time %llu", i + 1, (unsigned long long)from,
                     (unsigned long long)at[i]);
        if (t < at[i] || t < lo || t > hi)
            fail_msg("engine=%s shift=%u: frame %u sent for %llu was seen at %llu, "
                     "outside [%llu, %llu]", engine, shift, i + 1,
                     (unsigned long long)at[i], (unsigned long long)t,
                     (unsigned long long)lo, (unsigned long long)hi);
    }
    qsync_nic_stats st;
    assert_int_equal(qsync_nic_get_stats(ctx, 0, &st), 0);
    assert_int_equal(st.rx_frames, N_RX);
    assert_int_equal(st.rx_dropped, 0);
    assert_int_equal(st.receiver_on, 1);
    assert_int_equal(st.receiver_ever_on, 1);
    assert_int_equal(r->errors, 0);
    assert_int_equal(qsync_close_wait(ctx), 0);
    free(r);
}

static void test_rx_timer_shift0(void **state)
{
    (void)state;
    check_rx_times("timer", 0);
}

static void test_rx_insn_shift0(void **state)
{
    (void)state;
    check_rx_times("insn", 0);
}

static void test_rx_timer_shift3(void **state)
{
    (void)state;
    check_rx_times("timer", 3);
}

static void test_rx_insn_shift3(void **state)
{
    (void)state;
    check_rx_times("insn", 3);
}

/* Frames due at one time reach the guest in the order of the calls; an
 * earlier time sent later still comes first. */
static void test_same_time_in_call_order(void **state)
{
    (void)state;
    struct net_run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    qsync_ctx *ctx = start_net(r, "receive count=4", NULL, 0, NULL);
    run_until_ready(ctx, r);
    const uint8_t *mac = nic_mac(ctx);
    uint64_t t = qsync_now_ns(ctx);
    static const struct {
        unsigned num;
        uint64_t off;
    } sent[] = {{1, 500}, {2, 500}, {3, 200}, {4, 500}};
    for (unsigned i = 0; i < 4; i++) {
        uint8_t f[60];
        make_frame(f, sizeof f, mac, sent[i].num);
        assert_int_equal(qsync_send_frame(ctx, 0, t + sent[i].off, f, sizeof f), 0);
    }
    run_to_end(ctx, r);
    static const unsigned want[] = {3, 1, 2, 4};
    for (unsigned k = 1; k <= 4; k++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "qsync-guest: rx %u ", k);
        assert_int_equal(field(r, prefix, "num="), want[k - 1]);
    }
    /* The first one at its time (the others wait while the guest prints). */
    uint64_t seen = field(r, "qsync-guest: rx 1 ", "t=");
    assert_true(seen >= t + 200 + (POLL_LOOP_INSNS + 1) && seen <= t + 200 + POLL_LOOP_INSNS + 2);
    assert_int_equal(qsync_close_wait(ctx), 0);
    free(r);
}

/* ---- transmit: the stamp is the guest's clock at its doorbell --------- */

#define N_TX 6

static void check_tx_stamps(unsigned shift)
{
    struct net_run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    /* A gap that is no multiple of the quantum: the doorbells fall at
     * different points of it. */
    qsync_ctx *ctx = start_net(r, "transmit count=6 gap=37013", NULL, shift, NULL);
    run_to_end(ctx, r);
    const uint8_t *mac = nic_mac(ctx);
    const uint64_t insn = 1ull << shift;
    assert_int_equal(r->n_frames, N_TX);
    for (unsigned k = 1; k <= N_TX; k++) {
        const struct frame *f = &r->frames[k - 1];
        char prefix[32];
        snprintf(prefix, sizeof prefix, "qsync-guest: tx %u ", k);
        uint64_t t = field(r, prefix, "t=");
        print_message("shift=%u: frame %u stamped %llu, the guest's clock before its "
                      "doorbell %llu (+%lld ns)\n",
                      shift, k, (unsigned long long)f->ns, (unsigned long long)t,
                      (long long)(f->ns - t));
        /* rdtsc, then the TDT store: one instruction apart. */
        if (f->ns < t || f->ns - t > insn)
            fail_msg("shift=%u frame %u: stamp %llu, guest clock %llu: more than one "
                     "instruction (%llu ns) apart", shift, k, (unsigned long long)f->ns,
                     (unsigned long long)t, (unsigned long long)insn);
        assert_int_equal(f->nic, 0);
        assert_int_equal(f->len, 60);
        static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        assert_memory_equal(f->data, bcast, 6);
        assert_memory_equal(f->data + 6, mac, 6);
        assert_int_equal(f->data[12] << 8 | f->data[13], ETHERTYPE);
        assert_int_equal((unsigned)f->data[14] << 24 | f->data[15] << 16 | f->data[16] << 8 |
                             f->data[17],
                         k);
        for (unsigned i = 18; i < 60; i++)
            assert_int_equal(f->data[i], i);
    }
    /* Each came in its own quantum: after the stop before it, and before
     * the stop after it (the last ones may come after the last stop, before
     * exited). */
    assert_int_equal(r->early, 0);
    assert_int_equal(r->unreported, 0);
    assert_true(r->checked > 0);
    qsync_nic_stats st;
    assert_int_equal(qsync_nic_get_stats(ctx, 0, &st), 0);
    assert_int_equal(st.tx_frames, N_TX);
    qsync_close_wait(ctx);
    free(r);
}

static void test_tx_stamps_shift0(void **state)
{
    (void)state;
    check_tx_stamps(0);
}

static void test_tx_stamps_shift3(void **state)
{
    (void)state;
    check_tx_stamps(3);
}

/* ---- determinism: two runs, the same stamps both ways ----------------- */

#define N_ECHO 4

struct echo_times {
    uint64_t guest_rx[N_ECHO], guest_tx[N_ECHO], frame_ns[N_ECHO];
};

static void echo_run(struct echo_times *out)
{
    struct net_run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    char append[32];
    snprintf(append, sizeof append, "echo count=%u", N_ECHO);
    qsync_ctx *ctx = start_net(r, append, NULL, 0, NULL);
    run_until_ready(ctx, r);
    const uint8_t *mac = nic_mac(ctx);
    for (unsigned i = 0; i < N_ECHO; i++) {
        uint8_t f[60];
        make_frame(f, sizeof f, mac, i + 1);
        assert_int_equal(qsync_send_frame(ctx, 0, qsync_now_ns(ctx) + 7 + 1000 * i, f, sizeof f),
                         0);
        if (advance(ctx, r, QUANTUM_NS) || advance(ctx, r, QUANTUM_NS)) {
            assert_int_equal(i, N_ECHO - 1);
            break;
        }
    }
    if (strstr(r->text, "qsync-guest: exit code=0\n") == NULL)
        run_to_end(ctx, r);
    assert_int_equal(r->n_frames, N_ECHO);
    assert_int_equal(r->early, 0);
    assert_int_equal(r->unreported, 0);
    for (unsigned i = 0; i < N_ECHO; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "qsync-guest: echo %u ", i + 1);
        out->guest_rx[i] = field(r, prefix, "rx=");
        out->guest_tx[i] = field(r, prefix, "tx=");
        out->frame_ns[i] = r->frames[i].ns;
        /* The echo came back with the MACs swapped. */
        assert_memory_equal(r->frames[i].data + 6, mac, 6);
        assert_int_equal(r->frames[i].data[17], i + 1);
        assert_true(out->frame_ns[i] - out->guest_tx[i] <= 1);
    }
    assert_int_equal(qsync_close_wait(ctx), 0);
    free(r);
}

static void test_two_runs_same_stamps(void **state)
{
    (void)state;
    struct echo_times a, b;
    echo_run(&a);
    echo_run(&b);
    for (unsigned i = 0; i < N_ECHO; i++) {
        print_message("frame %u: guest rx %llu, tx %llu, stamp %llu\n", i + 1,
                      (unsigned long long)a.guest_rx[i], (unsigned long long)a.guest_tx[i],
                      (unsigned long long)a.frame_ns[i]);
        assert_int_equal(a.guest_rx[i], b.guest_rx[i]);
        assert_int_equal(a.guest_tx[i], b.guest_tx[i]);
        assert_int_equal(a.frame_ns[i], b.frame_ns[i]);
    }
}

/* ---- bad input -------------------------------------------------------- */

static void test_bad_frames_refused(void **state)
{
    (void)state;
    struct net_run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    qsync_ctx *ctx = start_net(r, "compute 100000000", NULL, 0, NULL);
    assert_int_equal(advance(ctx, r, QUANTUM_NS), 0);
    static uint8_t big[QSYNC_FRAME_MAX + 1];
    const uint8_t *mac = nic_mac(ctx);
    make_frame(big, sizeof big, mac, 1);
    uint64_t t = qsync_now_ns(ctx);

    assert_int_equal(qsync_send_frame(ctx, 0, t, big, QSYNC_FRAME_MAX + 1), QSYNC_EARG);
    print_message("oversized: %s\n", qsync_last_error(ctx));
    assert_int_equal(qsync_send_frame(ctx, 0, t, big, 13), QSYNC_EARG);
    print_message("runt: %s\n", qsync_last_error(ctx));
    assert_int_equal(qsync_send_frame(ctx, 0, t, NULL, 60), QSYNC_EARG);
    assert_int_equal(qsync_send_frame(ctx, 1, t, big, 60), QSYNC_EARG);
    print_message("no such NIC: %s\n", qsync_last_error(ctx));
    assert_int_equal(qsync_send_frame(ctx, 0, t - 1, big, 60), QSYNC_ERANGE);
    print_message("in the past: %s\n", qsync_last_error(ctx));
    assert_int_equal(qsync_send_frame(ctx, 0, QSYNC_DEADLINE_MAX + 1, big, 60), QSYNC_ERANGE);
    /* The bounds themselves are taken, and nothing was fatal. */
    assert_int_equal(qsync_send_frame(ctx, 0, t, big, QSYNC_FRAME_MAX), 0);
    assert_int_equal(qsync_send_frame(ctx, 0, t, big, QSYNC_FRAME_MIN), 0);
    assert_int_equal(qsync_failed(ctx), 0);
    assert_int_equal(advance(ctx, r, QUANTUM_NS), 0);
    assert_int_equal(qsync_close_wait(ctx), 0);
    free(r);
}

static void test_unknown_model_refused(void **state)
{
    (void)state;
    qsync_options opts;
    e2e_options(&opts);
    qsync_ctx *ctx = NULL;
    assert_int_equal(qsync_ctx_new(NULL, &opts, NULL, &ctx, NULL, 0), 0);
    qsync_nic_config cfg;
    qsync_nic_config_init(&cfg);
    cfg.model = "rtl8139";
    assert_int_equal(qsync_nic_add(ctx, &cfg), QSYNC_EARG);
    const char *msg = qsync_last_error(ctx);
    print_message("%s\n", msg);
    if (strstr(msg, "rtl8139") == NULL)
        fail_msg("the message does not name the model: %s", msg);
    /* The context is still usable: a good NIC is added as number 0. */
    cfg.model = "e1000";
    assert_int_equal(qsync_nic_add(ctx, &cfg), 0);
    assert_int_equal(qsync_close_wait(ctx), 0);
}

/* A guest with no driver never turns its receiver on: past the bound,
 * frames are dropped and counted. */
static void test_rx_dropped_without_driver(void **state)
{
    (void)state;
    enum { BOUND = 4, SENT = 11 };
    struct net_run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    qsync_nic_config cfg;
    qsync_nic_config_init(&cfg);
    cfg.rx_queue_frames = BOUND;
    qsync_ctx *ctx = start_net(r, "compute 100000000", NULL, 0, &cfg);
    assert_int_equal(advance(ctx, r, QUANTUM_NS), 0);
    const uint8_t *mac = nic_mac(ctx);
    for (unsigned i = 0; i < SENT; i++) {
        uint8_t f[60];
        make_frame(f, sizeof f, mac, i);
        assert_int_equal(qsync_send_frame(ctx, 0, qsync_now_ns(ctx) + 10 * i + 1, f, sizeof f),
                         0);
    }
    assert_int_equal(advance(ctx, r, QUANTUM_NS), 0);
    assert_int_equal(advance(ctx, r, QUANTUM_NS), 0);
    qsync_nic_stats st;
    assert_int_equal(qsync_nic_get_stats(ctx, 0, &st), 0);
    print_message("rx_frames=%llu rx_dropped=%llu rx_waiting=%llu rx_pending=%llu "
                  "receiver_on=%d receiver_ever_on=%d\n",
                  (unsigned long long)st.rx_frames, (unsigned long long)st.rx_dropped,
                  (unsigned long long)st.rx_waiting, (unsigned long long)st.rx_pending,
                  st.receiver_on, st.receiver_ever_on);
    assert_int_equal(st.rx_dropped, SENT - BOUND);
    assert_int_equal(st.rx_waiting, BOUND);
    assert_int_equal(st.rx_frames, 0);
    assert_int_equal(st.rx_pending, 0);
    assert_int_equal(st.receiver_on, 0);
    assert_int_equal(st.receiver_ever_on, 0);
    /* Said once, as a warning that names the NIC and its model. */
    print_message("error callback: %s\n", r->error_text);
    assert_int_equal(r->errors, 1);
    assert_int_equal(r->no_driver, 1);
    if (strstr(r->error_text, "NIC 0") == NULL || strstr(r->error_text, "e1000") == NULL)
        fail_msg("the warning does not name the NIC and its model: %s", r->error_text);
    assert_int_equal(qsync_failed(ctx), 0);
    /* More drops later: counted, not said again. */
    for (unsigned i = 0; i < 2; i++) {
        uint8_t f[60];
        make_frame(f, sizeof f, mac, SENT + i);
        assert_int_equal(qsync_send_frame(ctx, 0, qsync_now_ns(ctx) + 5, f, sizeof f), 0);
    }
    assert_int_equal(advance(ctx, r, QUANTUM_NS), 0);
    assert_int_equal(advance(ctx, r, QUANTUM_NS), 0);
    assert_int_equal(qsync_nic_get_stats(ctx, 0, &st), 0);
    assert_int_equal(st.rx_dropped, SENT + 2 - BOUND);
    assert_int_equal(r->errors, 1);
    assert_int_equal(qsync_close_wait(ctx), 0);
    free(r);
}

/*
 * A QEMU without e1000 (a script that answers as QEMU does when it lacks a
 * device model, and exits 1): the start fails with QSYNC_EEXITED and the
 * error carries QEMU's complaint, which names the model.
 */
static void test_qemu_without_e1000(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/qsync-test-net-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    char qemu[sizeof dir + 32];
    snprintf(qemu, sizeof qemu, "%s/qemu-no-e1000", dir);
    FILE *f = fopen(qemu, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\n"
          "for a; do\n"
          "  case $prev in -device) case $a in e1000*)\n"
          "    echo \"qemu-system-x86_64: -device $a: 'e1000' is not a valid device model "
          "name\" >&2; exit 1;; esac;; esac\n"
          "  prev=$a\n"
          "done\n"
          "echo 'qemu-system-x86_64: no -device e1000 on the command line' >&2\n"
          "exit 1\n",
          f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(qemu, 0700), 0);

    qsync_options opts;
    e2e_options(&opts);
    qsync_ctx *ctx = NULL;
    assert_int_equal(qsync_ctx_new(NULL, &opts, NULL, &ctx, NULL, 0), 0);
    qsync_nic_config cfg;
    qsync_nic_config_init(&cfg);
    assert_int_equal(qsync_nic_add(ctx, &cfg), 0);
    const char *argv[] = {qemu, "-M", "pc", "-kernel", GUEST_ELF, NULL};
    int rc = qsync_start(ctx, argv);
    if (rc == 0)
        rc = qsync_advance_wait_ns(ctx, QUANTUM_NS, NULL);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", qsync_last_error(ctx));
    print_message("%s: %s\n", qsync_strerror(rc), msg);
    qsync_close_wait(ctx);
    unlink(qemu);
    rmdir(dir);
    assert_int_equal(rc, QSYNC_EEXITED);
    if (strstr(msg, "-device e1000,netdev=qsync-nic0,mac=52:54:00:51:") == NULL ||
        strstr(msg, "'e1000' is not a valid device model name") == NULL)
        fail_msg("the error does not carry QEMU's complaint about the NIC's device: %s", msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rx_timer_shift0),
        cmocka_unit_test(test_rx_insn_shift0),
        cmocka_unit_test(test_rx_timer_shift3),
        cmocka_unit_test(test_rx_insn_shift3),
        cmocka_unit_test(test_same_time_in_call_order),
        cmocka_unit_test(test_tx_stamps_shift0),
        cmocka_unit_test(test_tx_stamps_shift3),
        cmocka_unit_test(test_two_runs_same_stamps),
        cmocka_unit_test(test_bad_frames_refused),
        cmocka_unit_test(test_unknown_model_refused),
        cmocka_unit_test(test_rx_dropped_without_driver),
        cmocka_unit_test(test_qemu_without_e1000),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * NICs and frames against the fake QEMU peer (fake_qemu.c, scenarios net,
 * net-old and net-badnic): what qsync_nic_add() refuses and puts on QEMU's
 * command line, what qsync_send_frame() refuses, that frames go to the
 * plugin ahead of the grant whose quantum they fall in and in (time, call)
 * order, that frames from the guest come before the quantum's reached
 * callback, the counters, and an older or broken plugin.
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

#ifndef FAKE_QEMU
#error "FAKE_QEMU must name the fake peer's path"
#endif

struct rec {
    char out[8192]; /* the fake's stdout */
    size_t out_len;
    char events[256]; /* 'F' per frame, 'R' per reached, in order */
    size_t n_events;
    uint64_t frame_time[64];
    unsigned frame_first[64];
    unsigned frame_nic[64];
    size_t n_frames;
    int errors, error_code;
    char error_msg[256];
};

static void on_error(qsync_ctx *ctx, int code, const char *msg)
{
    struct rec *r = qsync_get_data(ctx);
    r->errors++;
    r->error_code = code;
    snprintf(r->error_msg, sizeof r->error_msg, "%s", msg);
}

static void on_output(qsync_ctx *ctx, const char *data, size_t len)
{
    struct rec *r = qsync_get_data(ctx);
    if (len > sizeof r->out - 1 - r->out_len)
        len = sizeof r->out - 1 - r->out_len;
    memcpy(r->out + r->out_len, data, len);
    r->out_len += len;
    r->out[r->out_len] = '\0';
}

static void on_frame(qsync_ctx *ctx, unsigned nic, uint64_t t, const void *data, size_t len)
{
    struct rec *r = qsync_get_data(ctx);
    assert_int_equal(len, 60);
    if (r->n_frames < 64) {
        r->frame_time[r->n_frames] = t;
        r->frame_first[r->n_frames] = ((const uint8_t *)data)[0];
        r->frame_nic[r->n_frames] = nic;
        r->n_frames++;
    }
    if (r->n_events < sizeof r->events - 1)
        r->events[r->n_events++] = 'F';
}

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct rec *r = qsync_get_data(ctx);
    (void)status;
    (void)stop;
    if (r->n_events < sizeof r->events - 1)
        r->events[r->n_events++] = 'R';
}

static qsync_ctx *new_ctx(struct rec *r, qsync_mode mode)
{
    qsync_options o;
    qsync_options_init(&o);
    o.mode = mode;
    o.stdout_mode = QSYNC_OUTPUT_CALLBACK;
    o.quiet_stderr = 1;
    o.plugin_path = "/dev/null"; /* the fake does not load it */
    qsync_callbacks c;
    qsync_callbacks_init(&c);
    c.output = on_output;
    c.frame = on_frame;
    c.reached = on_reached;
    c.error = on_error;
    qsync_ctx *ctx = NULL;
    char err[256];
    assert_int_equal(qsync_ctx_new(NULL, &o, &c, &ctx, err, sizeof err), 0);
    memset(r, 0, sizeof *r);
    qsync_set_data(ctx, r);
    return ctx;
}

static int add(qsync_ctx *ctx, const char *model, const uint8_t *mac, unsigned rxq)
{
    qsync_nic_config c;
    qsync_nic_config_init(&c);
    c.model = model;
    if (mac) {
        c.has_mac = 1;
        memcpy(c.mac, mac, 6);
    }
    c.rx_queue_frames = rxq;
    return qsync_nic_add(ctx, &c);
}

static void start(qsync_ctx *ctx, const char *scenario)
{
    const char *argv[] = {FAKE_QEMU, scenario, NULL};
    assert_int_equal(qsync_start(ctx, argv), 0);
}

static void test_add_refusals(void **state)
{
    (void)state;
    struct rec r;
    qsync_ctx *ctx = new_ctx(&r, QSYNC_MODE_PLUGIN);
    assert_int_equal(qsync_nic_add(ctx, NULL), QSYNC_EARG);
    assert_int_equal(add(ctx, "rtl8139", NULL, 0), QSYNC_EARG);
    assert_non_null(strstr(qsync_last_error(ctx), "unknown NIC model 'rtl8139'"));
    static const uint8_t mcast[6] = {0x01, 0, 0x5e, 0, 0, 1};
    assert_int_equal(add(ctx, NULL, mcast, 0), QSYNC_EARG);
    assert_non_null(strstr(qsync_last_error(ctx), "multicast"));
    assert_int_equal(add(ctx, "e1000", NULL, QSYNC_NIC_RX_QUEUE_MAX + 1), QSYNC_EARG);
    assert_non_null(strstr(qsync_last_error(ctx), "rx_queue_frames"));
    for (unsigned i = 0; i < QSYNC_NIC_MAX; i++)
        assert_int_equal(add(ctx, i % 2 ? "virtio" : "", NULL, 0), (int)i);
    assert_int_equal(add(ctx, NULL, NULL, 0), QSYNC_ERANGE);
    assert_int_equal(qsync_close_wait(ctx), 0);

    /* Other modes carry no frames. */
    ctx = new_ctx(&r, QSYNC_MODE_QQQ);
    assert_int_equal(add(ctx, NULL, NULL, 0), QSYNC_ENOTSUP);
    assert_non_null(strstr(qsync_last_error(ctx), "plugin mode"));
    assert_int_equal(qsync_close_wait(ctx), 0);
}

/* What QEMU is given, the refusals once it runs, and frames both ways. */
static void test_frames(void **state)
{
    (void)state;
    struct rec r;
    qsync_ctx *ctx = new_ctx(&r, QSYNC_MODE_PLUGIN);
    static const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
    assert_int_equal(add(ctx, NULL, mac, 16), 0);
    assert_int_equal(add(ctx, "virtio", NULL, 0), 1);
    uint8_t frame[60] = {0};
    /* Before start there is no guest to send to. */
    assert_int_equal(qsync_send_frame(ctx, 0, 0, frame, sizeof frame), QSYNC_ESTATE);
    start(ctx, "net");
    assert_int_equal(add(ctx, NULL, NULL, 0), QSYNC_ESTATE);
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), 0);
    assert_non_null(strstr(r.out, "argv -nic none\n"));
    assert_non_null(strstr(r.out, "argv -device e1000,netdev=qsync-nic0,mac=02:11:22:33:44:55\n"));
    assert_non_null(strstr(r.out, "argv -device virtio-net-pci,netdev=qsync-nic1,mac=52:54:00:51:"));
    assert_non_null(strstr(r.out, ",ioeventfd=off,tx=timer\n"));
    assert_non_null(strstr(r.out, "nics 16:256\n"));

    qsync_info info;
    assert_int_equal(qsync_get_info(ctx, &info), 0);
    assert_int_equal(info.n_nics, 2);
    assert_string_equal(info.nics[0].model, "e1000");
    assert_string_equal(info.nics[1].model, "virtio");
    assert_string_equal(info.nics[1].netdev, "qsync-nic1");
    assert_memory_equal(info.nics[0].mac, mac, 6);
    assert_int_equal(info.nics[0].tx_stamp, QSYNC_STAMP_EXACT);

    /* Refusals: sizes, NIC, time. The guest stands at 1000 ns. */
    assert_int_equal(qsync_send_frame(ctx, 0, 2000, frame, QSYNC_FRAME_MIN - 1), QSYNC_EARG);
    assert_non_null(strstr(qsync_last_error(ctx), "13 bytes"));
    static uint8_t big[QSYNC_FRAME_MAX + 1];
    assert_int_equal(qsync_send_frame(ctx, 0, 2000, big, sizeof big), QSYNC_EARG);
    assert_int_equal(qsync_send_frame(ctx, 0, 2000, big, QSYNC_FRAME_MAX), 0);
    assert_int_equal(qsync_send_frame(ctx, 0, 2000, NULL, 60), QSYNC_EARG);
    assert_int_equal(qsync_send_frame(ctx, 2, 2000, frame, sizeof frame), QSYNC_EARG);
    assert_non_null(strstr(qsync_last_error(ctx), "no NIC 2"));
    assert_int_equal(qsync_send_frame(ctx, 0, 999, frame, sizeof frame), QSYNC_ERANGE);
    assert_non_null(strstr(qsync_last_error(ctx), "in the past"));
    assert_int_equal(qsync_send_frame(ctx, 0, QSYNC_DEADLINE_MAX + 1, frame, sizeof frame),
                     QSYNC_ERANGE);

    /* Out of order, equal times, two NICs, one beyond the next quantum:
     * the plugin gets those due before 3000 ahead of that grant, in time
     * order, equal times in call order; the one at 3000 waits. */
    struct { unsigned nic; uint64_t t; uint8_t first; } sends[] = {
        {0, 2500, 1}, {1, 1500, 2}, {0, 1500, 3}, {0, 3000, 4}, {0, 1000, 5},
    };
    for (size_t i = 0; i < sizeof sends / sizeof sends[0]; i++) {
        frame[0] = sends[i].first;
        assert_int_equal(qsync_send_frame(ctx, sends[i].nic, sends[i].t, frame, sizeof frame), 0);
    }
    qsync_nic_stats st;
    assert_int_equal(qsync_nic_get_stats(ctx, 0, &st), 0);
    assert_int_equal(st.rx_pending, 5); /* the big one and four of these */
    r.out[0] = '\0';
    r.out_len = 0;
    assert_int_equal(qsync_advance_wait_ns(ctx, 2000, NULL), 0);
    assert_string_equal(r.out, "rx 0 1000 60 5\n"
                               "rx 1 1500 60 2\n"
                               "rx 0 1500 60 3\n"
                               "rx 0 2000 16384 0\n"
                               "rx 0 2500 60 1\n"
                               "grant 2 3000\n");
    r.out[0] = '\0';
    r.out_len = 0;
    assert_int_equal(qsync_advance_wait_ns(ctx, 1, NULL), 0);
    assert_string_equal(r.out, "rx 0 3000 60 4\n"
                               "grant 3 3001\n");

    /* The guest's frames: each before its quantum's reached, stamped. */
    assert_string_equal(r.events, "FRFRFR");
    assert_int_equal(r.n_frames, 3);
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(r.frame_first[i], i + 1);
        assert_int_equal(r.frame_nic[i], 0);
    }
    assert_int_equal(r.frame_time[0], 999);
    assert_int_equal(r.frame_time[1], 2999);
    assert_int_equal(r.frame_time[2], 3000);

    /* Counters: NIC_STATUS as of the last stop, and what is pending. */
    assert_int_equal(qsync_nic_get_stats(ctx, 0, &st), 0);
    assert_int_equal(st.tx_frames, 3);
    assert_int_equal(st.rx_frames, 6); /* the fake counts both NICs' */
    assert_int_equal(st.receiver_ever_on, 1);
    assert_int_equal(st.receiver_on, 0);
    assert_int_equal(qsync_nic_get_stats(ctx, 1, &st), 0);
    assert_int_equal(st.tx_frames, 0);
    assert_int_equal(qsync_nic_get_stats(ctx, 2, &st), QSYNC_EARG);
    assert_int_equal(qsync_close_wait(ctx), 0);
}

/* A plugin that does not serve NICs, and one that sends a frame from a NIC
 * it was not given: both break the context with a message that says so. */
static void test_bad_plugins(void **state)
{
    (void)state;
    struct rec r;
    qsync_ctx *ctx = new_ctx(&r, QSYNC_MODE_PLUGIN);
    assert_int_equal(add(ctx, NULL, NULL, 0), 0);
    start(ctx, "net-old");
    int rc = qsync_advance_wait_ns(ctx, 1000, NULL);
    assert_int_equal(qsync_failed(ctx), QSYNC_EVERSION);
    assert_true(rc < 0);
    assert_non_null(strstr(qsync_last_error(ctx), "does not serve NICs"));
    assert_int_equal(qsync_close_wait(ctx), 0);

    ctx = new_ctx(&r, QSYNC_MODE_PLUGIN);
    assert_int_equal(add(ctx, NULL, NULL, 0), 0);
    start(ctx, "net-badnic");
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), QSYNC_EPROTO);
    assert_non_null(strstr(qsync_last_error(ctx), "a frame from NIC 5"));
    assert_int_equal(r.n_frames, 0);
    assert_int_equal(qsync_close_wait(ctx), 0);
}

/* Frames dropped for a NIC whose receiver was never on: one warning, and
 * the context goes on. */
static void test_no_driver(void **state)
{
    (void)state;
    struct rec r;
    qsync_ctx *ctx = new_ctx(&r, QSYNC_MODE_PLUGIN);
    assert_int_equal(add(ctx, "virtio", NULL, 0), 0);
    start(ctx, "net-nodriver");
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), 0);
    assert_int_equal(r.errors, 0);
    uint8_t frame[60] = {0};
    for (int i = 0; i < 3; i++)
        assert_int_equal(qsync_send_frame(ctx, 0, 1000 + (uint64_t)i, frame, sizeof frame), 0);
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), 0);
    assert_int_equal(r.errors, 1);
    assert_int_equal(r.error_code, QSYNC_ENODRIVER);
    assert_non_null(strstr(r.error_msg, "NIC 0 (virtio): 3 frame(s) dropped"));
    assert_int_equal(qsync_failed(ctx), 0);
    assert_false(qsync_is_fatal(QSYNC_ENODRIVER));
    assert_int_equal(qsync_send_frame(ctx, 0, 2000, frame, sizeof frame), 0);
    assert_int_equal(qsync_advance_wait_ns(ctx, 1000, NULL), 0);
    assert_int_equal(r.errors, 1); /* once */
    qsync_nic_stats st;
    assert_int_equal(qsync_nic_get_stats(ctx, 0, &st), 0);
    assert_int_equal(st.rx_dropped, 4);
    assert_int_equal(st.receiver_ever_on, 0);
    assert_int_equal(qsync_close_wait(ctx), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_refusals),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_bad_plugins),
        cmocka_unit_test(test_no_driver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

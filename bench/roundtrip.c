/*
 * The library's own round trip, against the floor: libqsync advancing a
 * fake QEMU (tests/unit/fake_qemu.c, which answers every grant at once) in
 * each mode and, in plugin mode, on each channel, against a raw ping-pong
 * between two processes over the same kind of channel (pingpong.c: pipes,
 * or the shm channel's own rings), measured side by side in this run. The
 * ratio is what the library adds on top of the channel: encoding, the
 * libuv loop, the callbacks.
 *
 * Two ways of driving it: "loop", the asynchronous API on the caller's
 * libuv loop (the next advance from the reached callback), and "blocking",
 * qsync_advance_wait_ns() on a private loop, which may poll the shm ring
 * before it sleeps.
 * usage: bench-roundtrip FAKE_QEMU [ROUNDS [REPS]]
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qsync/qsync.h>

#include "bench_util.h"
#include "pingpong.h"

struct lib_run {
    long left;
    int failed;
};

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct lib_run *r = qsync_get_data(ctx);
    (void)stop;
    if (status || --r->left <= 0) {
        r->failed = status;
        qsync_close(ctx, NULL);
        return;
    }
    qsync_advance(ctx, 1);
}

/* ns per advance of the library against the fake peer, or -1. */
static void unpin(void)
{
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int i = 0; i < CPU_SETSIZE; i++)
        CPU_SET(i, &all);
    sched_setaffinity(0, sizeof all, &all);
}

/* ns per advance with qsync_advance_wait_ns() on a private loop, or -1. */
static double lib_roundtrip_blocking(const char *fake, qsync_channel channel, long rounds,
                                     int pin)
{
    qsync_options o;
    qsync_options_init(&o);
    o.plugin_path = fake;
    o.pin_cpu = pin ? 0 : -1;
    o.channel = channel;
    qsync_ctx *ctx;
    if (qsync_ctx_new(NULL, &o, NULL, &ctx, NULL, 0))
        return -1;
    const char *argv[] = {fake, "good", NULL};
    int rc = qsync_start(ctx, argv);
    if (rc == 0)
        rc = qsync_advance_wait_ns(ctx, 1000, NULL);
    uint64_t t0 = qsync_bench_now_ns();
    for (long i = 0; i < rounds && rc == 0; i++)
        rc = qsync_advance_wait_ns(ctx, 1000, NULL);
    uint64_t t1 = qsync_bench_now_ns();
    qsync_close_wait(ctx);
    if (pin)
        unpin();
    return rc ? -1 : (double)(t1 - t0) / (double)rounds;
}

static double lib_roundtrip(const char *fake, qsync_mode mode, qsync_channel channel, long rounds,
                            int pin)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o;
    qsync_options_init(&o);
    o.mode = mode;
    o.plugin_path = fake; /* any readable file: the fake loads nothing */
    o.fifo_quantum_us = 1;
    o.pin_cpu = pin ? 0 : -1;
    o.channel = channel;
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = on_reached;
    qsync_ctx *ctx;
    if (qsync_ctx_new(&loop, &o, &cb, &ctx, NULL, 0))
        return -1;
    struct lib_run r = {rounds, 0};
    qsync_set_data(ctx, &r);
    const char *scenario = mode == QSYNC_MODE_QQQ ? "qqq-good" : mode == QSYNC_MODE_FIFO ? "fifo-two" : "good";
    const char *argv[] = {fake, scenario, NULL};
    if (qsync_start(ctx, argv) || qsync_advance(ctx, 1)) {
        qsync_close(ctx, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return -1;
    }
    /* Time from the first completed advance on: start-up is not a round trip. */
    uint64_t t0 = qsync_bench_now_ns();
    uv_run(&loop, UV_RUN_DEFAULT);
    uint64_t t1 = qsync_bench_now_ns();
    uv_loop_close(&loop);
    if (pin)
        unpin();
    return r.failed || r.left > 0 ? -1 : (double)(t1 - t0) / (double)rounds;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-roundtrip FAKE_QEMU [ROUNDS [REPS]]\n");
        return 2;
    }
    const char *fake = argv[1];
    long rounds = argc > 2 ? atol(argv[2]) : 20000;
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    if (rounds <= 0 || reps <= 0 || reps > QSYNC_BENCH_MAX_REPS) {
        fprintf(stderr, "bench-roundtrip: bad ROUNDS or REPS\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const struct {
        const char *name;
        qsync_mode mode;
        qsync_channel channel;
        int blocking;
    } rows[] = {{"plugin (native)", QSYNC_MODE_PLUGIN, QSYNC_CHANNEL_PIPE, 0},
                {"plugin (native)", QSYNC_MODE_PLUGIN, QSYNC_CHANNEL_SHM, 0},
                {"plugin (native)", QSYNC_MODE_PLUGIN, QSYNC_CHANNEL_PIPE, 1},
                {"plugin (native)", QSYNC_MODE_PLUGIN, QSYNC_CHANNEL_SHM, 1},
                {"qqq", QSYNC_MODE_QQQ, QSYNC_CHANNEL_PIPE, 0},
                {"fifo", QSYNC_MODE_FIFO, QSYNC_CHANNEL_PIPE, 0}};
    printf("libqsync's round trip against a fake QEMU, and the raw ping-pong over the same "
           "channel (median of %d runs of %ld)\n",
           reps, rounds);
    printf("| placement | mode | channel | API | library (us) | floor (us) | library / floor |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (int pin = 0; pin <= 1; pin++) {
        double floor_pipe[QSYNC_BENCH_MAX_REPS], floor_shm[QSYNC_BENCH_MAX_REPS];
        for (int r = 0; r < reps; r++) {
            floor_pipe[r] = qsync_bench_pingpong(QSYNC_BENCH_PIPE, rounds, pin);
            floor_shm[r] = qsync_bench_pingpong(QSYNC_BENCH_SHM, rounds, pin);
        }
        double fl_pipe = qsync_bench_median(floor_pipe, reps);
        double fl_shm = qsync_bench_median(floor_shm, reps);
        for (size_t m = 0; m < sizeof rows / sizeof rows[0]; m++) {
            double v[QSYNC_BENCH_MAX_REPS];
            for (int r = 0; r < reps; r++)
                v[r] = rows[m].blocking
                           ? lib_roundtrip_blocking(fake, rows[m].channel, rounds, pin)
                           : lib_roundtrip(fake, rows[m].mode, rows[m].channel, rounds, pin);
            double med = qsync_bench_median(v, reps);
            int shm = rows[m].channel == QSYNC_CHANNEL_SHM;
            double fl = shm ? fl_shm : fl_pipe;
            printf("| %s | %s | %s | %s |", pin ? "one core" : "cross-core", rows[m].name,
                   shm ? "shm" : "pipe", rows[m].blocking ? "blocking" : "loop");
            if (med < 0)
                printf(" failed | %.2f | - |\n", fl / 1000);
            else
                printf(" %.2f | %.2f | %.2f |\n", med / 1000, fl / 1000, med / fl);
        }
    }
    return 0;
}

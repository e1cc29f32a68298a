/*
 * What networking costs, measured side by side in one run: two aarch64
 * Linux demo guests in one group barrier on one loop, as qsync-net runs
 * them, with the frames of each quantum carried to the other guest at the
 * barrier, LATENCY after their send time.
 *
 *   flood:  both guests with an e1000 NIC; guest 1 runs `ping -A -c N`
 *           (the next request as soon as the reply is in) to guest 2,
 *           which stays up. The window is from the barrier that brings
 *           ping's first line to the one that brings its statistics:
 *           frames through the segment per second of wall time, frames
 *           per quantum, and wall time per quantum in the window, against
 *           the wall time per quantum of the boot (the same guests, before
 *           they use their NICs).
 *   boot:   the same two guests from QEMU's start to the kernel's boot
 *           marker (qsync-linux: booted), which comes before the init
 *           touches the NIC, with the NICs and without: what a NIC costs
 *           a guest that does not use it (the plugin's work at each stop).
 *
 * At 10 us and 100 us quanta (the latency is 100 us, the most a quantum
 * may be). Every figure is the median of REPS runs.
 *
 * usage: bench-net GUEST_DIR [REPS] [--pings N]
 *   GUEST_DIR: the aarch64 demo guest (build/guests/linux-arm64)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qsync/qsync.h>

#include "bench_util.h"

#define LATENCY_NS 100000u

enum { MARK_BOOTED, MARK_PING, MARK_STATS, N_MARKS };
static const char *const marks[N_MARKS] = {"qsync-linux: booted", "PING 10.0.0.2",
                                           "packets transmitted"};

struct held {
    uint64_t t;
    int from;
    size_t len;
    unsigned char data[QSYNC_FRAME_MAX];
};

struct run {
    qsync_group *group;
    qsync_ctx *ctx[2];
    uint64_t quantum_ns;
    int nic, failed, live, done;
    uint64_t t0, frames;
    /* A mark seen in a quantum is dated at its barrier. */
    int seen[N_MARKS];
    uint64_t wall[N_MARKS], virt[N_MARKS], frames_at[N_MARKS], quanta_at[N_MARKS];
    uint64_t quanta;
    int stop_at; /* the mark that ends the run */
    struct held *q;
    size_t nq, capq;
};

static void on_line(qsync_ctx *ctx, const char *line, size_t len, uint64_t v)
{
    (void)len;
    (void)v;
    struct run *r = qsync_get_data(ctx);
    for (int m = 0; m < N_MARKS; m++)
        if (!r->seen[m] && strstr(line, marks[m]))
            r->seen[m] = -1; /* dated at the barrier */
}

static void on_frame(qsync_ctx *ctx, unsigned nic, uint64_t t, const void *data, size_t len)
{
    (void)nic;
    struct run *r = qsync_get_data(ctx);
    if (r->nq == r->capq) {
        r->capq = r->capq ? r->capq * 2 : 64;
        r->q = realloc(r->q, r->capq * sizeof *r->q);
        if (!r->q)
            abort();
    }
    struct held *h = &r->q[r->nq++];
    h->t = t;
    h->from = ctx == r->ctx[1];
    h->len = len < QSYNC_FRAME_MAX ? len : QSYNC_FRAME_MAX;
    memcpy(h->data, data, h->len);
}

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    (void)stop;
    struct run *r = qsync_get_data(ctx);
    if (status == 0)
        return;
    if (status != QSYNC_EEXITED && status != QSYNC_ECANCELED)
        r->failed = 1;
    qsync_group_remove(r->group, ctx);
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    (void)ex;
    struct run *r = qsync_get_data(ctx);
    r->live--;
    if (!r->done && !r->seen[r->stop_at])
        r->failed = 1; /* a guest ended before the run's mark */
    for (int i = 0; i < 2; i++)
        if (r->ctx[i] == ctx)
            r->ctx[i] = NULL;
    qsync_close(ctx, NULL);
}

static void finish(struct run *r)
{
    r->done = 1;
    for (int i = 0; i < 2; i++)
        if (r->ctx[i])
            qsync_close(r->ctx[i], NULL);
}

static void on_barrier(qsync_group *group, int status, uint64_t deadline_ns)
{
    (void)status;
    struct run *r = qsync_group_get_data(group);
    if (r->done)
        return;
    r->quanta++;
    uint64_t now = qsync_bench_now_ns();
    /* Two guests: each frame goes to the other one (what qsync-net's
     * switch does once both addresses are learned). */
    for (size_t i = 0; i < r->nq; i++) {
        struct held *h = &r->q[i];
        qsync_ctx *to = r->ctx[!h->from];
        if (to && qsync_send_frame(to, 0, h->t + LATENCY_NS, h->data, h->len) != 0)
            r->failed = 1;
    }
    r->frames += r->nq;
    r->nq = 0;
    for (int m = 0; m < N_MARKS; m++)
        if (r->seen[m] == -1) {
            r->seen[m] = 1;
            r->wall[m] = now - r->t0;
            r->virt[m] = deadline_ns;
            r->frames_at[m] = r->frames;
            r->quanta_at[m] = r->quanta;
        }
    if (r->failed || r->seen[r->stop_at] || qsync_group_size(group) < 2 ||
        qsync_group_advance_ns(group, r->quantum_ns, on_barrier) != 0)
        finish(r);
}

/* One run: two guests to the stop_at mark. Returns 0, or -1. */
static int run_once(const char *dir, uint64_t quantum_ns, int nic, int pings, int stop_at,
                    struct run *r)
{
    char kernel[4096], initrd[4096], app[2][512];
    snprintf(kernel, sizeof kernel, "%s/vmlinuz", dir);
    snprintf(initrd, sizeof initrd, "%s/initramfs.cpio.gz", dir);
    if (nic) {
        snprintf(app[0], sizeof app[0],
                 "console=ttyAMA0 quiet panic=-1 qsync.ip=10.0.0.1/24 "
                 "qsync.run=\"ping -A -q -c %d 10.0.0.2\"",
                 pings);
        snprintf(app[1], sizeof app[1], "console=ttyAMA0 quiet panic=-1 qsync.ip=10.0.0.2/24");
    } else {
        /* No NIC: the guests power off after the marker. */
        snprintf(app[0], sizeof app[0], "console=ttyAMA0 quiet panic=-1");
        snprintf(app[1], sizeof app[1], "console=ttyAMA0 quiet panic=-1");
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    memset(r, 0, sizeof *r);
    r->quantum_ns = quantum_ns;
    r->nic = nic;
    r->stop_at = stop_at;
    qsync_group_new(&r->group);
    qsync_group_set_data(r->group, r);
    qsync_options o;
    qsync_options_init(&o);
    o.stdout_mode = QSYNC_OUTPUT_LINES;
    o.quiet_stderr = 1;
    o.quantum_hint_ns = quantum_ns;
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = on_reached;
    cb.exited = on_exited;
    cb.output_line = on_line;
    cb.frame = on_frame;
    r->t0 = qsync_bench_now_ns();
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {"qemu-system-aarch64", "-M", "virt,dtb-randomness=off", "-cpu",
                              "cortex-a57", "-m", "256", "-nodefaults", "-display", "none",
                              "-serial", "stdio", "-no-reboot", "-rtc",
                              "base=2020-01-01T00:00:00,clock=vm", "-kernel", kernel, "-initrd",
                              initrd, "-append", app[i], NULL};
        char err[256];
        qsync_nic_config nc;
        qsync_nic_config_init(&nc);
        nc.has_mac = 1;
        const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x00, 0x00, (uint8_t)(i + 1)};
        memcpy(nc.mac, mac, 6);
        if (qsync_ctx_new(&loop, &o, &cb, &r->ctx[i], err, sizeof err) ||
            (nic && qsync_nic_add(r->ctx[i], &nc) < 0) || qsync_start(r->ctx[i], argv)) {
            fprintf(stderr, "bench-net: cannot start guest %d: %s\n", i + 1,
                    r->ctx[i] ? qsync_last_error(r->ctx[i]) : err);
            exit(1);
        }
        qsync_set_data(r->ctx[i], r);
        qsync_group_add(r->group, r->ctx[i]);
        r->live++;
    }
    if (qsync_group_advance_ns(r->group, quantum_ns, on_barrier))
        r->failed = 1;
    uv_run(&loop, UV_RUN_DEFAULT);
    qsync_group_free(r->group);
    uv_loop_close(&loop);
    free(r->q);
    r->q = NULL;
    return r->failed || !r->seen[stop_at] ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-net GUEST_DIR [REPS] [--pings N]\n");
        return 2;
    }
    const char *dir = argv[1];
    int reps = 3, pings = 1000;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--pings") == 0 && i + 1 < argc)
            pings = atoi(argv[++i]);
        else
            reps = atoi(argv[i]);
    }
    if (reps < 1 || reps > QSYNC_BENCH_MAX_REPS || pings < 1) {
        fprintf(stderr, "bench-net: REPS must be 1..%d, --pings positive\n",
                QSYNC_BENCH_MAX_REPS);
        return 2;
    }
    static const uint64_t qs[] = {10000, 100000};
    printf("Two aarch64 Linux guests in one group, e1000, latency 100 us; guest 1 runs "
           "ping -A -c %d to guest 2 (median of %d)\n",
           pings, reps);
    printf("| quantum | flood: frames | virtual | wall | frames/s (wall) | frames/quantum | "
           "wall/quantum | boot: wall/quantum | boot, no NIC | boot, NIC | NIC cost |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++) {
        double fps[QSYNC_BENCH_MAX_REPS], wall[QSYNC_BENCH_MAX_REPS], perq[QSYNC_BENCH_MAX_REPS];
        double boot_nic[QSYNC_BENCH_MAX_REPS], boot_bare[QSYNC_BENCH_MAX_REPS];
        double boot_perq[QSYNC_BENCH_MAX_REPS];
        uint64_t frames = 0, virt = 0;
        int ok = 1;
        for (int k = 0; k < reps && ok; k++) {
            struct run r;
            ok = run_once(dir, qs[qi], 1, pings, MARK_STATS, &r) == 0 && r.seen[MARK_PING];
            if (!ok)
                break;
            frames = r.frames_at[MARK_STATS] - r.frames_at[MARK_PING];
            virt = r.virt[MARK_STATS] - r.virt[MARK_PING];
            double w = (double)(r.wall[MARK_STATS] - r.wall[MARK_PING]) / 1e9;
            wall[k] = w;
            fps[k] = (double)frames / w;
            perq[k] = w * 1e6 / (double)(r.quanta_at[MARK_STATS] - r.quanta_at[MARK_PING]);
            boot_nic[k] = (double)r.wall[MARK_BOOTED] / 1e9;
            boot_perq[k] = (double)r.wall[MARK_BOOTED] / 1e3 / (double)r.quanta_at[MARK_BOOTED];
            struct run b;
            ok = run_once(dir, qs[qi], 0, pings, MARK_BOOTED, &b) == 0;
            boot_bare[k] = (double)b.wall[MARK_BOOTED] / 1e9;
        }
        if (!ok) {
            printf("| %llu us | failed |\n", (unsigned long long)(qs[qi] / 1000));
            continue;
        }
        double bn = qsync_bench_median(boot_nic, reps), bb = qsync_bench_median(boot_bare, reps);
        printf("| %llu us | %llu | %.3f s | %.2f s | %.0f | %.2f | %.1f us | %.1f us | %.2f s | "
               "%.2f s | %.2fx |\n",
               (unsigned long long)(qs[qi] / 1000), (unsigned long long)frames,
               (double)virt / 1e9, qsync_bench_median(wall, reps), qsync_bench_median(fps, reps),
               (double)frames / ((double)virt / (double)qs[qi]), qsync_bench_median(perq, reps),
               qsync_bench_median(boot_perq, reps), bb, bn, bn / bb);
        fflush(stdout);
    }
    return 0;
}

/*
 * bench-mpi: what a libqsync-mpi window costs (docs/benchmarks.md, "MPI").
 *
 *   mpirun -np N bench-mpi window WINDOW_NS WINDOWS [FRAME_BYTES]
 *     no guests: WINDOWS steps; with FRAME_BYTES, every rank sends one
 *     message of that size to the next rank (a ring) in every window.
 *     Rank 0 prints the mean, median and p90 wall time of a step.
 *   mpirun -np N bench-mpi guests WINDOW_NS SPAN_NS G [plain]
 *     G compute guests of the test guest, round-robin over the ranks,
 *     booted to 10 ms, then stepped in windows of WINDOW_NS for SPAN_NS
 *     more; "plain" (one rank
 *     only) steps the same group with qsync_group_advance_to_ns() and no
 *     MPI step: the single-process run. Rank 0 prints the wall time.
 *   mpirun -np N bench-mpi idle WINDOW_NS SPAN_NS G
 *     G idle guests (the test guest halted between PIT ticks, guest i's
 *     period 1000 + 37 i us, so that the ticks never line up), booted to
 *     10 ms, then SPAN_NS more in windows of WINDOW_NS: once with
 *     skip_idle off, then on fresh guests with it on (qsync_options
 *     .next_event in both, so that only the skipping differs). Rank 0
 *     prints both runs' windows and wall times and their ratio.
 *   mpirun -np N bench-mpi raw [COUNT]
 *     the floor: MPI's own 8-byte MIN allreduce, and a 1514-byte ring
 *     exchange plus that allreduce, without the library.
 * Environment: QSYNC_PLUGIN and QSYNC_GUEST_ELF for the guests mode;
 * BENCH_SPIN_NS sets qsync_mpi_config.spin_ns.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qsync/mpi.h>

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts t[0..n) and gives its mean, median and 90th percentile, in us. */
struct spread {
    double mean_us, median_us, p90_us;
};

static struct spread spread_of(uint64_t *t, long n)
{
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += (double)t[i];
    qsort(t, (size_t)n, sizeof *t, cmp_u64);
    return (struct spread){sum / (double)n / 1e3, (double)t[n / 2] / 1e3,
                           (double)t[n * 9 / 10] / 1e3};
}

static void on_recv(qsync_mpi *m, int src, uint64_t at_ns, const void *data, size_t len)
{
    (void)m;
    (void)src;
    (void)at_ns;
    (void)data;
    (void)len;
}

static int bench_window(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    uint64_t window = strtoull(argv[2], NULL, 10);
    long windows = strtol(argv[3], NULL, 10);
    size_t frame = argc > 4 ? (size_t)strtoul(argv[4], NULL, 10) : 0;
    uv_loop_t *loop = uv_default_loop();
    qsync_group *g;
    qsync_group_new(&g);
    qsync_mpi_config c;
    qsync_mpi_config_init(&c);
    c.lookahead_ns = window;
    c.recv = on_recv;
    if (getenv("BENCH_SPIN_NS"))
        c.spin_ns = strtoull(getenv("BENCH_SPIN_NS"), NULL, 10);
    qsync_mpi *m;
    char err[256];
    if (qsync_mpi_new(loop, g, &c, &m, err, sizeof err)) {
        fprintf(stderr, "bench-mpi: %s\n", err);
        return 1;
    }
    int rank = qsync_mpi_rank(m), size = qsync_mpi_size(m);
    unsigned char *buf = calloc(1, frame ? frame : 1);
    uint64_t *t = calloc((size_t)windows, sizeof *t);
    for (long i = -100; i < windows; i++) { /* 100 to warm up */
        uint64_t t0 = uv_hrtime();
        if (frame)
            qsync_mpi_send(m, (rank + 1) % size, qsync_mpi_horizon_ns(m), buf, frame);
        qsync_mpi_step(m, QSYNC_DEADLINE_MAX, NULL);
        if (i >= 0)
            t[i] = uv_hrtime() - t0;
    }
    if (rank == 0) {
        struct spread sp = spread_of(t, windows);
        printf("ranks %d window %" PRIu64 " ns frame %zu B: step mean %.1f us median %.1f us p90 "
               "%.1f us\n",
               size, window, frame, sp.mean_us, sp.median_us, sp.p90_us);
    }
    qsync_mpi_free(m);
    qsync_group_free(g);
    free(t);
    free(buf);
    return 0;
}

/* The floor: a bare 8-byte MIN allreduce, and a 1514-byte ring exchange
 * plus that allreduce, as MPI gives them. */
static int bench_raw(int argc, char **argv)
{
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 20000;
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    uint64_t *t = calloc((size_t)n, sizeof *t);
    unsigned char out[1514] = {0}, in[1514];
    for (int ring = 0; ring < 2; ring++) {
        for (long i = -100; i < n; i++) {
            uint64_t x = (uint64_t)rank, y, t0 = uv_hrtime();
            if (ring)
                MPI_Sendrecv(out, sizeof out, MPI_BYTE, (rank + 1) % size, 0, in, sizeof in,
                             MPI_BYTE, (rank + size - 1) % size, 0, MPI_COMM_WORLD,
                             MPI_STATUS_IGNORE);
            MPI_Allreduce(&x, &y, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
            if (i >= 0)
                t[i] = uv_hrtime() - t0;
        }
        if (rank == 0) {
            struct spread sp = spread_of(t, n);
            printf("ranks %d raw %s: mean %.1f us median %.1f us p90 %.1f us\n", size,
                   ring ? "1514-byte ring + 8-byte MIN allreduce" : "8-byte MIN allreduce",
                   sp.mean_us, sp.median_us, sp.p90_us);
        }
    }
    free(t);
    return 0;
}

static int plain_done;

static void on_group(qsync_group *g, int status, uint64_t deadline)
{
    (void)g;
    (void)status;
    (void)deadline;
    plain_done = 1;
}

/* The guests of a run: G contexts of the test guest, round-robin over the
 * ranks (this rank's in the group), guest i's command line from
 * append(i), then every group run to 10 ms (start-up and the firmware out
 * of the figure: the guest's work starts at 5.7 ms). */
#define WARM_NS 10000000ull

struct guests {
    uv_loop_t *loop;
    qsync_group *group;
    qsync_ctx **ctx;
    int n;
};

static void guests_start(struct guests *gs, const char *elf, int n, const qsync_options *o,
                         void (*append)(int i, char *out, size_t len))
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    gs->loop = uv_default_loop();
    gs->n = n;
    qsync_group_new(&gs->group);
    gs->ctx = calloc((size_t)n, sizeof *gs->ctx);
    char err[256];
    for (int i = 0; i < n; i++) {
        if (i % size != rank)
            continue;
        char cmdline[64];
        append(i, cmdline, sizeof cmdline);
        const char *a[] = {"qemu-system-x86_64", "-M", "pc", "-nodefaults", "-display", "none",
                           "-kernel", elf, "-append", cmdline, NULL};
        if (qsync_ctx_new(gs->loop, o, NULL, &gs->ctx[i], err, sizeof err) ||
            qsync_start(gs->ctx[i], a) || qsync_group_add(gs->group, gs->ctx[i])) {
            fprintf(stderr, "bench-mpi: guest %d: %s\n", i,
                    gs->ctx[i] ? qsync_last_error(gs->ctx[i]) : err);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    if (qsync_group_size(gs->group)) {
        plain_done = 0;
        qsync_group_advance_to_ns(gs->group, WARM_NS, on_group);
        while (!plain_done)
            uv_run(gs->loop, UV_RUN_ONCE);
    }
}

/* Closes the guests and frees the driver and the group. */
static void guests_end(struct guests *gs, qsync_mpi *m)
{
    for (int i = 0; i < gs->n; i++)
        if (gs->ctx[i])
            qsync_close(gs->ctx[i], NULL);
    uv_run(gs->loop, UV_RUN_DEFAULT);
    qsync_mpi_free(m);
    qsync_group_free(gs->group);
    free(gs->ctx);
}

static void compute_append(int i, char *out, size_t len)
{
    (void)i;
    snprintf(out, len, "compute 2000000000");
}

static int bench_guests(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    uint64_t window = strtoull(argv[2], NULL, 10), until = strtoull(argv[3], NULL, 10);
    int n = atoi(argv[4]);
    int plain = argc > 5 && strcmp(argv[5], "plain") == 0;
    const char *elf = getenv("QSYNC_GUEST_ELF");
    if (!elf) {
        fprintf(stderr, "bench-mpi: set QSYNC_GUEST_ELF (and QSYNC_PLUGIN)\n");
        return 2;
    }
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char err[256];
    qsync_options o;
    qsync_options_init(&o);
    o.stdout_mode = QSYNC_OUTPUT_DISCARD;
    o.quantum_hint_ns = window;
    struct guests gs;
    guests_start(&gs, elf, n, &o, compute_append);
    uv_loop_t *loop = gs.loop;
    qsync_group *g = gs.group;
    const uint64_t warm = WARM_NS;
    qsync_mpi_config c;
    qsync_mpi_config_init(&c);
    c.lookahead_ns = window;
    c.start_ns = warm;
    if (getenv("BENCH_SPIN_NS"))
        c.spin_ns = strtoull(getenv("BENCH_SPIN_NS"), NULL, 10);
    qsync_mpi *m;
    if (qsync_mpi_new(loop, g, &c, &m, err, sizeof err)) {
        fprintf(stderr, "bench-mpi: %s\n", err);
        return 1;
    }
    until += warm;
    MPI_Barrier(MPI_COMM_WORLD);
    uint64_t t0 = uv_hrtime(), steps = 0;
    if (plain) {
        for (uint64_t now = qsync_mpi_now_ns(m); now < until; now += window, steps++) {
            plain_done = 0;
            qsync_group_advance_to_ns(g, now + window, on_group);
            while (!plain_done)
                uv_run(loop, UV_RUN_ONCE);
        }
    } else {
        while (qsync_mpi_now_ns(m) < until) {
            qsync_mpi_step(m, until, NULL);
            steps++;
        }
    }
    double wall = (double)(uv_hrtime() - t0) / 1e9;
    if (rank == 0)
        printf("guests %d ranks %d window %" PRIu64 " ns %s: %" PRIu64 " windows in %.3f s, "
               "%.1f us a window\n",
               n, size, window, plain ? "plain group" : "mpi", steps, wall,
               wall * 1e6 / (double)steps);
    guests_end(&gs, m);
    return 0;
}

/* Guest i idles between PIT ticks every 1000 + 37 i us. */
static void idle_append(int i, char *out, size_t len)
{
    snprintf(out, len, "idle ticks=1000000 period_us=%d", 1000 + 37 * i);
}

/* One run of bench_idle: G idle guests round-robin over the ranks, from
 * 10 ms to 10 ms + span; the windows made and the wall time go out. */
static void idle_run(const char *elf, uint64_t window, uint64_t span, int n, int skip,
                     uint64_t *steps, double *wall)
{
    qsync_options o;
    qsync_options_init(&o);
    o.stdout_mode = QSYNC_OUTPUT_DISCARD;
    o.quantum_hint_ns = window;
    o.next_event = 1;
    struct guests gs;
    guests_start(&gs, elf, n, &o, idle_append);
    qsync_mpi_config c;
    qsync_mpi_config_init(&c);
    c.lookahead_ns = window;
    c.start_ns = WARM_NS;
    c.skip_idle = skip;
    qsync_mpi *m;
    char err[256];
    if (qsync_mpi_new(gs.loop, gs.group, &c, &m, err, sizeof err)) {
        fprintf(stderr, "bench-mpi: %s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    uint64_t t0 = uv_hrtime();
    *steps = 0;
    while (qsync_mpi_now_ns(m) < WARM_NS + span) {
        qsync_mpi_step(m, WARM_NS + span, NULL);
        (*steps)++;
    }
    *wall = (double)(uv_hrtime() - t0) / 1e9;
    guests_end(&gs, m);
}

/* Idle guests with and without skip_idle, side by side. */
static int bench_idle(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    uint64_t window = strtoull(argv[2], NULL, 10), span = strtoull(argv[3], NULL, 10);
    int n = atoi(argv[4]);
    const char *elf = getenv("QSYNC_GUEST_ELF");
    if (!elf || window == 0 || n < 1) {
        fprintf(stderr, "bench-mpi: set QSYNC_GUEST_ELF (and QSYNC_PLUGIN); WINDOW_NS and G > 0\n");
        return 2;
    }
    uint64_t steps[2];
    double wall[2];
    for (int skip = 0; skip < 2; skip++)
        idle_run(elf, window, span, n, skip, &steps[skip], &wall[skip]);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0)
        printf("idle guests %d ranks %d window %" PRIu64 " ns, %.3f s of virtual time: "
               "%" PRIu64 " windows in %.3f s without skip_idle, %" PRIu64 " in %.3f s with it "
               "(%.2fx faster)\n",
               n, size, window, (double)span / 1e9, steps[0], wall[0], steps[1], wall[1],
               wall[0] / wall[1]);
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rc = 2;
    if (argc > 1 && strcmp(argv[1], "window") == 0)
        rc = bench_window(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "raw") == 0)
        rc = bench_raw(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "guests") == 0)
        rc = bench_guests(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "idle") == 0)
        rc = bench_idle(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: bench-mpi window WINDOW_NS WINDOWS [FRAME_BYTES]\n"
                        "       bench-mpi guests WINDOW_NS UNTIL_NS G [plain]\n"
                        "       bench-mpi idle WINDOW_NS SPAN_NS G\n"
                        "       bench-mpi raw [COUNT]\n");
    MPI_Finalize();
    return rc;
}

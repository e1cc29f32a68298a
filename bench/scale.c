/*
 * How the cost of lockstep grows, measured side by side in one run:
 *
 *   1. with the number of guests in one group barrier (1, 2, 4, ... 64) at
 *      10 us and 100 us quanta: N QEMUs running the project's compute
 *      guest to its end, in lockstep on one loop (qsync_group_*), against
 *      the same N QEMUs free-running with -icount shift=0,sleep=off, all at
 *      once;
 *   2. with the quantum (1 us to 1 ms), one guest, the blocking helpers;
 *   3. with the number of e1000 NICs the guest never uses (0, 1, 2, 4, 8;
 *      the compute guest has no driver for them) at 10 us and 100 us
 *      quanta: one guest, the blocking helpers, the NICs added with
 *      qsync_nic_add(), against the same guest free-running with as many
 *      e1000s, each on a hub port of its own (its frames go nowhere);
 *   4. with the frames a guest sends: the guest's transmit mode sending
 *      60-byte frames for about 50 ms of virtual time, 1 ms to 2 us apart
 *      (0.1 to 50 frames per 100 us quantum), at 10 us and 100 us quanta,
 *      one NIC from qsync_nic_add() whose frame callback counts them (a
 *      run that does not see them all fails), against the same e1000 on a
 *      hub port free-running; and frames per second of the wall time the
 *      sending added in lockstep.
 *
 * Every figure is the median of REPS runs. Each cell also runs the guest
 * with no work ("compute 0", with the same NICs; for the frames one
 * frame and no wait, "transmit count=1 gap=0"), and the net ratio
 * (T - T_empty) / (T_free - T_free_empty) leaves out QEMU's start and
 * exit and the firmware, which do not depend on the work. The spread of a
 * figure is max/min over its REPS runs; a ratio whose inputs spread more
 * than SPREAD_LIMIT is flagged "unjudgeable" rather than quoted as a
 * result.
 *
 * With --data DIR it also writes DIR/scale-group.dat,
 * DIR/scale-quantum.dat, DIR/scale-nics.dat and DIR/scale-frames.dat for
 * gnuplot (scripts/bench.sh draws them). With --only SERIES it runs that
 * series alone.
 *
 * usage: bench-scale GUEST_ELF [REPS] [--max-guests N] [--data DIR]
 *                   [--only group|quantum|nics|frames]
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <qsync/qsync.h>

#include "bench_util.h"

#define MAX_GUESTS 64
#define SPREAD_LIMIT 1.25
/* 25,000,000 loops of 2 instructions: 50 ms of virtual time at shift 0,
 * long enough for the work to outweigh QEMU's start. */
#define WORK "compute 25000000"
#define NO_WORK "compute 0"
/* The frames series sends for this long (virtual time). */
#define FRAMES_NS 50000000u
/* QEMU's arguments with the most NICs. */
#define ARGV_MAX (16 + 4 * QSYNC_NIC_MAX)

static const char *guest;

/* What a guest runs: its -append text and its e1000 NICs (the library's
 * in lockstep; free-running, each on a hub of its own, so its frames go
 * nowhere). A lockstep run fails unless its guest sent `frames` frames. */
struct work {
    const char *append;
    int nics;
    uint64_t frames;
};

/* The free-running command for w; names holds the NICs' arguments. */
static void free_argv(const char **argv, const struct work *w, char (*names)[2][48])
{
    int n = qsync_bench_guest_argv(argv, guest, w->append, 1);
    for (int k = 0; k < w->nics; k++) {
        snprintf(names[k][0], sizeof names[k][0], "hubport,id=n%d,hubid=%d", k, k);
        snprintf(names[k][1], sizeof names[k][1], "e1000,netdev=n%d", k);
        argv[n++] = "-netdev";
        argv[n++] = names[k][0];
        argv[n++] = "-device";
        argv[n++] = names[k][1];
    }
    argv[n] = NULL;
}

/* Seconds for n free-running QEMUs started together, all to their end. */
static double free_run(int n, const struct work *w)
{
    const char *argv[ARGV_MAX];
    char names[QSYNC_NIC_MAX][2][48];
    free_argv(argv, w, names);
    pid_t pids[MAX_GUESTS];
    uint64_t t0 = qsync_bench_now_ns();
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            execvp(argv[0], (char **)argv);
            _exit(127);
        }
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        int st;
        if (pids[i] < 0 || waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) ||
            WEXITSTATUS(st) == 127)
            failed = 1;
    }
    uint64_t t1 = qsync_bench_now_ns();
    return failed ? -1 : (double)(t1 - t0) / 1e9;
}

/* The options of every lockstep run. */
static void lockstep_options(qsync_options *o, uint64_t quantum_ns)
{
    qsync_options_init(o);
    o->stdout_mode = QSYNC_OUTPUT_DISCARD;
    o->quiet_stderr = 1;
    o->quantum_hint_ns = quantum_ns;
    o->advance_timeout_ms = 60000;
}

/* Creates a context on loop (NULL: a private one) with data as its
 * pointer, adds w's NICs and starts w's guest. Returns 0, or -1 with a
 * message (*ctx is then the context to close, or NULL). */
static int start_lockstep(uv_loop_t *loop, const qsync_options *o, const qsync_callbacks *cb,
                          const struct work *w, void *data, qsync_ctx **ctx)
{
    const char *argv[ARGV_MAX];
    qsync_bench_guest_argv(argv, guest, w->append, 0);
    char err[256];
    *ctx = NULL;
    int rc = qsync_ctx_new(loop, o, cb, ctx, err, sizeof err);
    if (rc == 0)
        qsync_set_data(*ctx, data);
    qsync_nic_config nc;
    qsync_nic_config_init(&nc);
    for (int k = 0; rc == 0 && k < w->nics; k++)
        rc = qsync_nic_add(*ctx, &nc) < 0;
    if (rc == 0)
        rc = qsync_start(*ctx, argv);
    if (rc != 0)
        fprintf(stderr, "bench-scale: cannot start a guest: %s\n",
                *ctx ? qsync_last_error(*ctx) : err);
    return rc ? -1 : 0;
}

/* The lockstep group: every member advances to each barrier; a member
 * whose guest ends leaves the group; the run ends when all have. */
struct grun {
    qsync_group *group;
    uint64_t quantum_ns;
    int live, failed;
    qsync_ctx *ctx[MAX_GUESTS];
};

static void g_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    (void)stop;
    struct grun *g = qsync_get_data(ctx);
    if (status == 0)
        return;
    if (status != QSYNC_EEXITED)
        g->failed = 1;
    qsync_group_remove(g->group, ctx);
}

static void g_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct grun *g = qsync_get_data(ctx);
    if (ex->exit_status != 1) /* isa-debug-exit: the guest's code 0 */
        g->failed = 1;
    g->live--;
    qsync_close(ctx, NULL);
}

static void g_barrier(qsync_group *group, int status, uint64_t deadline_ns)
{
    (void)status;
    (void)deadline_ns;
    struct grun *g = qsync_group_get_data(group);
    if (qsync_group_size(group) > 0 && !g->failed &&
        qsync_group_advance_ns(group, g->quantum_ns, g_barrier) != 0)
        g->failed = 1;
}

/* Seconds for n QEMUs in lockstep through one group, to their end (w
 * without NICs). */
static double group_run(int n, const struct work *w, uint64_t quantum_ns)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct grun g;
    memset(&g, 0, sizeof g);
    g.quantum_ns = quantum_ns;
    qsync_group_new(&g.group);
    qsync_group_set_data(g.group, &g);
    qsync_options o;
    lockstep_options(&o, quantum_ns);
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = g_reached;
    cb.exited = g_exited;
    uint64_t t0 = qsync_bench_now_ns();
    for (int i = 0; i < n; i++) {
        if (start_lockstep(&loop, &o, &cb, w, &g, &g.ctx[i]) != 0)
            exit(1);
        qsync_group_add(g.group, g.ctx[i]);
        g.live++;
    }
    if (qsync_group_advance_ns(g.group, quantum_ns, g_barrier))
        g.failed = 1;
    uv_run(&loop, UV_RUN_DEFAULT);
    uint64_t t1 = qsync_bench_now_ns();
    qsync_group_free(g.group);
    uv_loop_close(&loop);
    return g.failed || g.live ? -1 : (double)(t1 - t0) / 1e9;
}

static void count_frame(qsync_ctx *ctx, unsigned nic, uint64_t virtual_ns, const void *data,
                        size_t len)
{
    (void)nic;
    (void)virtual_ns;
    (void)data;
    (void)len;
    uint64_t *frames = qsync_get_data(ctx);
    (*frames)++;
}

/* Seconds for one guest in lockstep through the blocking helpers. */
static double single_run(const struct work *w, uint64_t quantum_ns)
{
    qsync_options o;
    lockstep_options(&o, quantum_ns);
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.frame = count_frame;
    uint64_t frames = 0;
    qsync_ctx *ctx;
    uint64_t t0 = qsync_bench_now_ns();
    if (start_lockstep(NULL, &o, &cb, w, &frames, &ctx) != 0) {
        if (ctx)
            qsync_close_wait(ctx);
        return -1;
    }
    int rc;
    while ((rc = qsync_advance_wait_ns(ctx, quantum_ns, NULL)) == 0) {
    }
    uint64_t t1 = qsync_bench_now_ns();
    qsync_close_wait(ctx); /* the frames sent after the last stop come by then */
    if (frames != w->frames)
        fprintf(stderr, "bench-scale: '%s' sent %llu frames, not %llu\n", w->append,
                (unsigned long long)frames, (unsigned long long)w->frames);
    return rc == QSYNC_EEXITED && frames == w->frames ? (double)(t1 - t0) / 1e9 : -1;
}

/* A median and its spread over reps runs. */
struct fig {
    double median, spread;
};

enum kind { FREE, GROUP, SINGLE };

static struct fig measure(enum kind k, int n, const struct work *w, uint64_t q, int reps)
{
    double v[QSYNC_BENCH_MAX_REPS];
    struct fig f = {-1, 0};
    for (int r = 0; r < reps; r++) {
        v[r] = k == FREE ? free_run(n, w) : k == GROUP ? group_run(n, w, q) : single_run(w, q);
        if (v[r] <= 0)
            return f;
    }
    f.median = qsync_bench_median(v, reps);
    f.spread = v[reps - 1] / v[0]; /* sorted by the median */
    return f;
}

/* A lockstep cell: the work and its empty baseline against the free runs
 * b and b0 of the same. */
struct cell {
    struct fig t, t0;
    double net; /* NAN when a run failed */
};

/* Runs a cell (kind k, n guests, quantum q) and prints
 * " lockstep | net ratio |", the ratio flagged '?' when its figures
 * spread more than SPREAD_LIMIT. */
static struct cell lockstep_cell(enum kind k, int n, const struct work *work,
                                 const struct work *empty, uint64_t q, struct fig b, struct fig b0,
                                 int reps)
{
    struct cell c = {measure(k, n, work, q, reps), measure(k, n, empty, q, reps), NAN};
    if (c.t.median < 0 || c.t0.median < 0 || b.median < 0 || b0.median < 0) {
        printf(" failed | - |");
        return c;
    }
    int bad = c.t.spread > SPREAD_LIMIT || c.t0.spread > SPREAD_LIMIT ||
              b.spread > SPREAD_LIMIT || b0.spread > SPREAD_LIMIT;
    c.net = (c.t.median - c.t0.median) / (b.median - b0.median);
    printf(" %.2f s | %.2fx%s |", c.t.median, c.net, bad ? " ?" : "");
    return c;
}

/* The lockstep quanta of the series that compare two. */
static const uint64_t two_q[2] = {10000, 100000};

/* A row at both quanta: prints " free |" and the two cells into c. */
static void two_quanta_row(enum kind k, int n, const struct work *work,
                           const struct work *empty, int reps, struct cell c[2])
{
    struct fig b = measure(FREE, n, work, 0, reps), b0 = measure(FREE, n, empty, 0, reps);
    if (b.median < 0)
        printf(" failed |");
    else
        printf(" %.2f s |", b.median);
    for (int qi = 0; qi < 2; qi++)
        c[qi] = lockstep_cell(k, n, work, empty, two_q[qi], b, b0, reps);
}

static FILE *data_file(const char *dir, const char *name, const char *header)
{
    if (!dir)
        return NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "we");
    if (!f) {
        fprintf(stderr, "bench-scale: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fprintf(f, "%s\n", header);
    return f;
}

/* What every series is given. */
struct setup {
    int reps, max_guests;
    const char *data_dir;
};

/* The compute guest, and its empty baseline, without NICs. */
static const struct work compute = {WORK, 0, 0}, no_compute = {NO_WORK, 0, 0};

static void series_group(const struct setup *s)
{
    printf("Guests in one group barrier: %s to its end, lockstep against the same number of "
           "free-running -icount QEMUs at once (median of %d; net ratio; '?' marks a spread "
           "over %.2fx)\n",
           WORK, s->reps, SPREAD_LIMIT);
    printf("| guests | free | lockstep 10 us | net 10 us | lockstep 100 us | net 100 us |\n"
           "|---|---|---|---|---|---|\n");
    FILE *gd =
        data_file(s->data_dir, "scale-group.dat", "# guests net_ratio_10us net_ratio_100us");
    for (int n = 1; n <= s->max_guests; n *= 2) {
        struct cell c[2];
        printf("| %d |", n);
        two_quanta_row(GROUP, n, &compute, &no_compute, s->reps, c);
        printf("\n");
        fflush(stdout);
        if (gd)
            fprintf(gd, "%d %.4f %.4f\n", n, c[0].net, c[1].net);
    }
    if (gd)
        fclose(gd);
}

static void series_quantum(const struct setup *s)
{
    static const uint64_t sweep_us[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
    printf("The quantum: one guest, %s to its end, lockstep through qsync_advance_wait_ns() "
           "against free-running -icount (median of %d)\n",
           WORK, s->reps);
    printf("| quantum | lockstep | net ratio |\n|---|---|---|\n");
    struct fig b = measure(FREE, 1, &compute, 0, s->reps);
    struct fig b0 = measure(FREE, 1, &no_compute, 0, s->reps);
    FILE *qd = data_file(s->data_dir, "scale-quantum.dat", "# quantum_us net_ratio");
    for (size_t i = 0; i < sizeof sweep_us / sizeof sweep_us[0]; i++) {
        printf("| %llu us |", (unsigned long long)sweep_us[i]);
        struct cell c =
            lockstep_cell(SINGLE, 1, &compute, &no_compute, sweep_us[i] * 1000u, b, b0, s->reps);
        printf("\n");
        fflush(stdout);
        if (qd)
            fprintf(qd, "%llu %.4f\n", (unsigned long long)sweep_us[i], c.net);
    }
    printf("(free-running: %.2f s, empty %.2f s)\n", b.median, b0.median);
    if (qd)
        fclose(qd);
}

static void series_nics(const struct setup *s)
{
    static const int counts[] = {0, 1, 2, 4, 8};
    printf("NICs the guest never uses: one guest, %s to its end, with N e1000s, lockstep "
           "(qsync_nic_add(), the blocking helpers) against free-running -icount with N e1000s "
           "on hubs of their own (median of %d; net ratio against %s with the same NICs)\n",
           WORK, s->reps, NO_WORK);
    printf("| NICs | free | lockstep 10 us | net 10 us | lockstep 100 us | net 100 us |\n"
           "|---|---|---|---|---|---|\n");
    FILE *d = data_file(s->data_dir, "scale-nics.dat", "# nics net_ratio_10us net_ratio_100us");
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        struct work w = {WORK, counts[i], 0}, w0 = {NO_WORK, counts[i], 0};
        struct cell c[2];
        printf("| %d |", counts[i]);
        two_quanta_row(SINGLE, 1, &w, &w0, s->reps, c);
        printf("\n");
        fflush(stdout);
        if (d)
            fprintf(d, "%d %.4f %.4f\n", counts[i], c[0].net, c[1].net);
    }
    if (d)
        fclose(d);
}

/* Frames per second of wall time that a cell's sending added, or NAN. */
static double frame_rate(uint64_t frames, struct cell c)
{
    double wall = c.t.median - c.t0.median;
    return isnan(c.net) || wall <= 0 ? NAN : (double)frames / wall;
}

static void series_frames(const struct setup *s)
{
    static const uint64_t gaps_ns[] = {1000000, 100000, 10000, 2000};
    static const struct work one = {"transmit count=1 gap=0 size=60", 1, 1};
    printf("Frames: one guest in transmit mode, 60-byte broadcast frames GAP apart for about "
           "%llu ms of virtual time, one e1000 (lockstep: qsync_nic_add(), its frame callback "
           "counts them; free-running -icount: on a hub of its own) (median of %d; net ratio "
           "against '%s'; frames/s: the frames over the wall time they added in lockstep)\n",
           (unsigned long long)(FRAMES_NS / 1000000), s->reps, one.append);
    printf("| gap | frames | per 100 us | free | lockstep 10 us | net 10 us | lockstep 100 us | "
           "net 100 us | frames/s 10 us | frames/s 100 us |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    FILE *d = data_file(s->data_dir, "scale-frames.dat",
                        "# frames_per_100us net_ratio_10us net_ratio_100us gap_ns frames "
                        "frames_per_s_10us frames_per_s_100us");
    for (size_t i = 0; i < sizeof gaps_ns / sizeof gaps_ns[0]; i++) {
        uint64_t n = FRAMES_NS / gaps_ns[i];
        char append[96];
        snprintf(append, sizeof append, "transmit count=%llu gap=%llu size=60",
                 (unsigned long long)n, (unsigned long long)gaps_ns[i]);
        struct work w = {append, 1, n};
        struct cell c[2];
        double per_q = 100000.0 / (double)gaps_ns[i];
        printf("| %llu us | %llu | %g |", (unsigned long long)(gaps_ns[i] / 1000),
               (unsigned long long)n, per_q);
        two_quanta_row(SINGLE, 1, &w, &one, s->reps, c);
        double fps[2] = {frame_rate(n, c[0]), frame_rate(n, c[1])};
        printf(" %.0f | %.0f |\n", fps[0], fps[1]);
        fflush(stdout);
        if (d)
            fprintf(d, "%g %.4f %.4f %llu %llu %.0f %.0f\n", per_q, c[0].net, c[1].net,
                    (unsigned long long)gaps_ns[i], (unsigned long long)n, fps[0], fps[1]);
    }
    if (d)
        fclose(d);
}

static const struct {
    const char *name;
    void (*run)(const struct setup *s);
} series[] = {{"group", series_group}, {"quantum", series_quantum}, {"nics", series_nics},
                {"frames", series_frames}};
#define N_SERIES (sizeof series / sizeof series[0])

#define USAGE                                                                                  \
    "usage: bench-scale GUEST_ELF [REPS] [--max-guests N] [--data DIR] "                      \
    "[--only group|quantum|nics|frames]\n"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, USAGE);
        return 2;
    }
    guest = argv[1];
    struct setup s = {3, MAX_GUESTS, NULL};
    const char *only = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--max-guests") == 0 && i + 1 < argc)
            s.max_guests = atoi(argv[++i]);
        else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            s.data_dir = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else
            s.reps = atoi(argv[i]);
    }
    size_t known = 0;
    for (size_t i = 0; i < N_SERIES; i++)
        known += !only || strcmp(only, series[i].name) == 0;
    if (s.reps < 1 || s.reps > QSYNC_BENCH_MAX_REPS || s.max_guests < 1 ||
        s.max_guests > MAX_GUESTS || known == 0) {
        fprintf(stderr,
                "bench-scale: REPS must be 1..%d, --max-guests 1..%d, --only a series\n" USAGE,
                QSYNC_BENCH_MAX_REPS, MAX_GUESTS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int first = 1;
    for (size_t i = 0; i < N_SERIES; i++) {
        if (only && strcmp(only, series[i].name) != 0)
            continue;
        if (!first)
            printf("\n");
        first = 0;
        series[i].run(&s);
    }
    return 0;
}

/*
 * Lockstep on real QEMU against free-running -icount, side by side in one
 * run: the project's compute guest run to its end, free (no plugin) and in
 * lockstep at quanta of 1 us, 10 us, 100 us and 1 ms, for each engine on
 * each channel (pipes, shared memory), with the controller and QEMU left
 * to the scheduler and pinned to one core. Then the Linux guest's boot,
 * free against lockstep at 100 us with the default engine on each channel.
 * The controller is the blocking helper qsync_advance_wait_ns(), the way a
 * simulator without a loop of its own steps QEMU.
 * Every figure is the median of REPS runs; ratios are against the free run
 * of the same work in the same placement. Each compute cell shows two: the
 * raw ratio of the whole runs, and the net ratio, which leaves out what
 * does not depend on the work (QEMU's start and exit, the firmware): each
 * configuration also runs the guest with no work ("compute 0"), and the
 * net ratio is (T - T_empty) / (T_free - T_free_empty).
 * usage: bench-qemu GUEST_ELF [LINUX_DIR [REPS]]
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <qsync/qsync.h>

#include "bench_util.h"

static const char *guest;
static const char *linux_dir;

/* The QEMU command for a workload, without -icount and -plugin. */
static void workload_argv(const char **argv, const char *append, int is_linux, char *kernel,
                          char *initrd, size_t cap)
{
    if (!is_linux) {
        qsync_bench_guest_argv(argv, guest, append, 0);
        return;
    }
    int n = 0;
    argv[n++] = "qemu-system-x86_64";
    argv[n++] = "-M";
    argv[n++] = "pc";
    argv[n++] = "-nodefaults";
    argv[n++] = "-display";
    argv[n++] = "none";
    argv[n++] = "-no-reboot";
    snprintf(kernel, cap, "%s/vmlinuz", linux_dir);
    snprintf(initrd, cap, "%s/initramfs.cpio.gz", linux_dir);
    argv[n++] = "-m";
    argv[n++] = "256";
    argv[n++] = "-kernel";
    argv[n++] = kernel;
    argv[n++] = "-initrd";
    argv[n++] = initrd;
    argv[n++] = "-append";
    argv[n++] = "console=ttyS0 quiet panic=-1";
    argv[n] = NULL;
}

static void pin_self(int pin)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (pin)
        CPU_SET(0, &set);
    else
        for (int i = 0; i < CPU_SETSIZE; i++)
            CPU_SET(i, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* Seconds for a free-running -icount run of the workload, or -1. */
static double free_run(const char *append, int is_linux, int pin)
{
    const char *argv[40];
    char kernel[4096], initrd[4096];
    workload_argv(argv, append, is_linux, kernel, initrd, sizeof kernel);
    int n = 0;
    while (argv[n])
        n++;
    argv[n++] = "-icount";
    argv[n++] = "shift=0,sleep=off";
    argv[n] = NULL;
    pin_self(pin);
    uint64_t t0 = qsync_bench_now_ns();
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execvp(argv[0], (char **)argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    uint64_t t1 = qsync_bench_now_ns();
    pin_self(0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) == 127)
        return -1;
    return (double)(t1 - t0) / 1e9;
}

/* Seconds for the same workload in lockstep, granted quantum_ns at a time
 * until the guest ends, or -1. */
static double lockstep_run(const char *append, int is_linux, const char *engine,
                           qsync_channel channel, uint64_t poll_ns, uint64_t quantum_ns, int pin)
{
    const char *argv[40];
    char kernel[4096], initrd[4096];
    workload_argv(argv, append, is_linux, kernel, initrd, sizeof kernel);
    char args[64];
    snprintf(args, sizeof args, "engine=%s", engine);
    qsync_options o;
    qsync_options_init(&o);
    o.plugin_args = args;
    o.stdout_mode = QSYNC_OUTPUT_DISCARD;
    o.quiet_stderr = 1;
    o.quantum_hint_ns = quantum_ns;
    o.pin_cpu = pin ? 0 : -1;
    o.channel = channel;
    if (poll_ns)
        o.shm_poll_ns = poll_ns;
    qsync_ctx *ctx;
    char err[256];
    if (qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err)) {
        fprintf(stderr, "bench-qemu: %s\n", err);
        return -1;
    }
    uint64_t t0 = qsync_bench_now_ns();
    int rc = qsync_start(ctx, argv);
    while (rc == 0)
        rc = qsync_advance_wait_ns(ctx, quantum_ns, NULL);
    int64_t status = -1;
    if (rc == QSYNC_EEXITED)
        rc = qsync_wait_exit_ms(ctx, 0, &status);
    uint64_t t1 = qsync_bench_now_ns();
    if (rc)
        fprintf(stderr, "bench-qemu: engine=%s: %s\n", engine, qsync_last_error(ctx));
    qsync_close_wait(ctx);
    pin_self(0);
    return rc ? -1 : (double)(t1 - t0) / 1e9;
}

static double median_of(double (*fn)(void *), void *arg, int reps)
{
    double v[QSYNC_BENCH_MAX_REPS];
    for (int r = 0; r < reps; r++) {
        v[r] = fn(arg);
        if (v[r] < 0)
            return -1;
    }
    return qsync_bench_median(v, reps);
}

struct job {
    const char *append;
    int is_linux;
    const char *engine; /* NULL: free run */
    qsync_channel channel;
    uint64_t quantum_ns;
    int pin;
    uint64_t poll_ns; /* 0: the default */
};

static double job_run(void *p)
{
    struct job *j = p;
    return j->engine ? lockstep_run(j->append, j->is_linux, j->engine, j->channel, j->poll_ns,
                                    j->quantum_ns, j->pin)
                     : free_run(j->append, j->is_linux, j->pin);
}

static const struct {
    qsync_channel id;
    const char *name;
} channels[] = {{QSYNC_CHANNEL_PIPE, "pipe"}, {QSYNC_CHANNEL_SHM, "shm"}};
#define N_CHANNELS (sizeof channels / sizeof channels[0])

static void cell(double v, double base)
{
    if (v < 0)
        printf(" failed |");
    else
        printf(" %.2f s (%.2fx) |", v, v / base);
}

/* A compute cell: the run, its raw ratio, and its net ratio (see the top). */
static void cell_net(double v, double v_empty, double base, double base_empty)
{
    if (v < 0 || v_empty < 0 || base - base_empty <= 0)
        printf(" failed |");
    else
        printf(" %.2f s (%.2fx; net %.2fx) |", v, v / base, (v - v_empty) / (base - base_empty));
}

/* The median of a job, and of the same job with no work. */
static void job_pair(struct job *j, int reps, double *full, double *empty)
{
    const char *append = j->append;
    *full = median_of(job_run, j, reps);
    j->append = "compute 0";
    *empty = median_of(job_run, j, reps);
    j->append = append;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-qemu GUEST_ELF [LINUX_DIR [REPS]]\n");
        return 2;
    }
    guest = argv[1];
    linux_dir = argc > 2 && argv[2][0] ? argv[2] : NULL;
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    if (reps <= 0 || reps > QSYNC_BENCH_MAX_REPS)
        reps = 3;
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* The work per quantum size: enough stops to measure, few enough to
     * finish (a stop costs 10-75 us; the guest runs 2 instructions a loop). */
    static const struct {
        uint64_t quantum_ns;
        const char *append;
        const char *label;
    } rows[] = {{1000, "compute 20000000", "1 us"},
                {10000, "compute 50000000", "10 us"},
                {100000, "compute 250000000", "100 us"},
                {1000000, "compute 250000000", "1 ms"}};
    static const char *engines[] = {"timer", "insn", "block"};

    printf("Compute guest to its end: free-running -icount against lockstep, each engine "
           "on each channel (median of %d)\n",
           reps);
    for (int pin = 0; pin <= 1; pin++) {
        printf("\n%s\n", pin ? "Pinned: QEMU and the controller on one core"
                             : "Unpinned: placement left to the scheduler");
        printf("| quantum | free icount |");
        for (size_t e = 0; e < sizeof engines / sizeof engines[0]; e++)
            for (size_t c = 0; c < N_CHANNELS; c++)
                printf(" %s %s |", engines[e], channels[c].name);
        printf("\n|---|---|");
        for (size_t i = 0; i < N_CHANNELS * sizeof engines / sizeof engines[0]; i++)
            printf("---|");
        printf("\n");
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            struct job j = {rows[r].append, 0, NULL, QSYNC_CHANNEL_AUTO, rows[r].quantum_ns, pin, 0};
            double base, base0, t, t0;
            job_pair(&j, reps, &base, &base0);
            printf("| %s | %.2f s (empty %.2f s) |", rows[r].label, base, base0);
            for (size_t e = 0; e < sizeof engines / sizeof engines[0]; e++) {
                for (size_t c = 0; c < N_CHANNELS; c++) {
                    j.engine = engines[e];
                    j.channel = channels[c].id;
                    job_pair(&j, reps, &t, &t0);
                    cell_net(t, t0, base, base0);
                }
            }
            printf("\n");
        }
    }

    /* The controller may poll longer than a quantum lasts: a core busy
     * with the controller, against a cross-core wake-up at every stop.
     * Not at 1 ms: a quantum then lasts longer than the 1 ms of polling. */
    printf("\nUnpinned, shm, the blocking helpers polling up to 1 ms (shm_poll_ns = 1000000)\n");
    printf("| quantum | free icount | timer shm | insn shm | block shm |\n|---|---|---|---|---|\n");
    for (size_t r = 0; r + 1 < sizeof rows / sizeof rows[0]; r++) {
        struct job j = {rows[r].append, 0, NULL, QSYNC_CHANNEL_SHM, rows[r].quantum_ns, 0, 0};
        double base, base0, t, t0;
        job_pair(&j, reps, &base, &base0);
        printf("| %s | %.2f s (empty %.2f s) |", rows[r].label, base, base0);
        j.poll_ns = 1000000;
        for (size_t e = 0; e < sizeof engines / sizeof engines[0]; e++) {
            j.engine = engines[e];
            job_pair(&j, reps, &t, &t0);
            cell_net(t, t0, base, base0);
        }
        printf("\n");
    }

    if (linux_dir) {
        /* The default engine only (auto takes timer at 100 us): a boot is
         * 6*10^9 instructions, and the engines' costs on it are known
         * (docs/benchmarks.md); this table is about the channels. */
        printf("\nLinux boot to power-off: free-running -icount against lockstep at 100 us, "
               "engine auto, each channel (median of %d)\n",
               reps);
        printf("| placement | free icount |");
        for (size_t c = 0; c < N_CHANNELS; c++)
            printf(" %s |", channels[c].name);
        printf("\n|---|---|");
        for (size_t c = 0; c < N_CHANNELS; c++)
            printf("---|");
        printf("\n");
        for (int pin = 0; pin <= 1; pin++) {
            struct job j = {NULL, 1, NULL, QSYNC_CHANNEL_AUTO, 100000, pin, 0};
            double base = median_of(job_run, &j, reps);
            printf("| %s | %.2f s |", pin ? "one core" : "unpinned", base);
            for (size_t c = 0; c < N_CHANNELS; c++) {
                j.engine = "auto";
                j.channel = channels[c].id;
                cell(median_of(job_run, &j, reps), base);
            }
            printf("\n");
        }
    }
    return 0;
}

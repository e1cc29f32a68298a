/*
 * qsync-step as a user runs it, against free-running -icount, side by side
 * in one run: the project's compute guest (2*10^8 instructions) run to its
 * end by QEMU alone with -icount shift=0,sleep=off, and by
 * `qsync-step --quantum Q` with its default options, unpinned, then the
 * same with `--poll 0` (the loop sleeps until QEMU's answer wakes it, as
 * qsync-step did before it polled). The runs alternate (free, lockstep,
 * lockstep --poll 0), REPS times per quantum; each cell is the median of
 * the REPS ratios of a lockstep run to the free run next to it. Also
 * printed: the cores each kept busy (CPU time of the process and its
 * children over the wall time), and QEMU's start-up as qsync-step reports
 * it (--json's startup_s).
 * usage: bench-step QSYNC_STEP GUEST_ELF [REPS]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

#define WORK "compute 100000000" /* 2*10^8 instructions */

struct run {
    double wall_s;
    double cpu_s;     /* user + system, the process and what it waited for */
    double startup_s; /* qsync-step's startup_s, or -1 */
};

/* The targets and goals: quantum, at most, goal. */
static const struct {
    const char *quantum;
    double target, goal;
} rows[] = {{"1us", 1.6, 1.2}, {"10us", 1.2, 1.05}, {"100us", 1.08, 1.03}};

static void print_load(const char *when)
{
    char buf[128] = "";
    FILE *f = fopen("/proc/loadavg", "re");
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            buf[0] = '\0';
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = '\0';
    printf("load average %s: %s\n", when, buf);
}

/* Reads what the child writes to stdout and picks startup_s from it. */
static double read_startup(int fd)
{
    static char text[1 << 16];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fd, text + len, sizeof text - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
        if (len == sizeof text - 1)
            len = 0; /* only the end, where the summary is, matters */
    }
    text[len] = '\0';
    const char *p = strstr(text, "\"startup_s\": ");
    return p ? strtod(p + strlen("\"startup_s\": "), NULL) : -1;
}

/* Runs argv to its end; the guest's success is QEMU's status 1. Returns
 * 0, or -1 with a message. */
static int run_one(const char *const *argv, struct run *out)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    uint64_t t0 = qsync_bench_now_ns();
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(fds[1], 1);
        dup2(null, 2);
        execvp(argv[0], (char **)argv);
        _exit(127);
    }
    close(fds[1]);
    out->startup_s = read_startup(fds[0]);
    close(fds[0]);
    int st;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &st, 0, &ru) < 0)
        return -1;
    out->wall_s = (double)(qsync_bench_now_ns() - t0) / 1e9;
    out->cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 1) {
        fprintf(stderr, "bench-step: %s ... did not end with the guest's success (status %d)\n",
                argv[0], WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return -1;
    }
    return 0;
}

/* qsync-step's command for quantum q; poll0 adds --poll 0. */
static void step_argv(const char **argv, const char *step, const char *guest, const char *q,
                      int poll0)
{
    int n = 0;
    argv[n++] = step;
    argv[n++] = "--quantum";
    argv[n++] = q;
    argv[n++] = "--json";
    argv[n++] = "-";
    if (poll0) {
        argv[n++] = "--poll";
        argv[n++] = "0";
    }
    argv[n++] = "--";
    qsync_bench_guest_argv(argv + n, guest, WORK, 0);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench-step QSYNC_STEP GUEST_ELF [REPS]\n");
        return 2;
    }
    const char *step = argv[1], *guest = argv[2];
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    if (reps < 1 || reps > QSYNC_BENCH_MAX_REPS) {
        fprintf(stderr, "bench-step: REPS is 1..%d\n", QSYNC_BENCH_MAX_REPS);
        return 2;
    }
    print_load("at the start");
    printf("\nqsync-step --quantum Q against free-running -icount shift=0,sleep=off: the compute "
           "guest, 2*10^8 instructions, unpinned, median of %d interleaved runs\n",
           reps);
    printf("| quantum | free icount | qsync-step | ratio | target | goal | met | "
           "start-up | cores busy (free, step) | --poll 0 | ratio --poll 0 |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        double tf[QSYNC_BENCH_MAX_REPS], ts[QSYNC_BENCH_MAX_REPS], tz[QSYNC_BENCH_MAX_REPS];
        double rs[QSYNC_BENCH_MAX_REPS], rz[QSYNC_BENCH_MAX_REPS], su[QSYNC_BENCH_MAX_REPS];
        double bf[QSYNC_BENCH_MAX_REPS], bs[QSYNC_BENCH_MAX_REPS];
        for (int i = 0; i < reps; i++) {
            const char *free_argv[20], *step_args[30], *zero_args[30];
            qsync_bench_guest_argv(free_argv, guest, WORK, 1);
            step_argv(step_args, step, guest, rows[r].quantum, 0);
            step_argv(zero_args, step, guest, rows[r].quantum, 1);
            struct run f, s, z;
            if (run_one(free_argv, &f) || run_one(step_args, &s) || run_one(zero_args, &z))
                return 1;
            tf[i] = f.wall_s;
            ts[i] = s.wall_s;
            tz[i] = z.wall_s;
            rs[i] = s.wall_s / f.wall_s;
            rz[i] = z.wall_s / f.wall_s;
            su[i] = s.startup_s;
            bf[i] = f.cpu_s / f.wall_s;
            bs[i] = s.cpu_s / s.wall_s;
        }
        double ratio = qsync_bench_median(rs, reps);
        printf("| %s | %.3f s | %.3f s | %.2fx | <= %.2fx | %.2fx | %s | %.3f s | %.2f, %.2f | "
               "%.3f s | %.2fx |\n",
               rows[r].quantum, qsync_bench_median(tf, reps), qsync_bench_median(ts, reps), ratio,
               rows[r].target, rows[r].goal,
               ratio <= rows[r].goal ? "goal" : ratio <= rows[r].target ? "target" : "no",
               qsync_bench_median(su, reps), qsync_bench_median(bf, reps),
               qsync_bench_median(bs, reps), qsync_bench_median(tz, reps),
               qsync_bench_median(rz, reps));
        fflush(stdout);
    }
    print_load("at the end");
    return 0;
}

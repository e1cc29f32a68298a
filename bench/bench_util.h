/* Small helpers shared by the benchmark programs: a clock and medians. */
#ifndef QSYNC_BENCH_UTIL_H
#define QSYNC_BENCH_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define QSYNC_BENCH_MAX_REPS 31

static inline uint64_t qsync_bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int qsync_bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n values (sorts them in place). */
static inline double qsync_bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, qsync_bench_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Fills argv (room for 16) with QEMU's command for the project's guest,
 * ELF at elf, with -append text; -icount shift=0,sleep=off when icount
 * (a free run; lockstep adds its own). Returns the count. */
static inline int qsync_bench_guest_argv(const char **argv, const char *elf, const char *append,
                                         int icount)
{
    static const char *const head[] = {"qemu-system-x86_64", "-M", "pc", "-nodefaults",
                                       "-display", "none", "-no-reboot", "-device",
                                       "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel"};
    int n = 0;
    for (size_t i = 0; i < sizeof head / sizeof head[0]; i++)
        argv[n++] = head[i];
    argv[n++] = elf;
    argv[n++] = "-append";
    argv[n++] = append;
    if (icount) {
        argv[n++] = "-icount";
        argv[n++] = "shift=0,sleep=off";
    }
    argv[n] = NULL;
    return n;
}

#endif

/*
 * qsync-blocking-join: a simulator that uses the blocking helpers and still
 * runs in parallel with QEMU. Each window it grants QEMU a quantum with
 * qsync_advance_ns() (which returns at once), runs its own model's step
 * for the same window while QEMU runs the guest's, and then joins with
 * qsync_wait_reached(). It checks that every stop is exact, and prints how
 * long the model and the wait for QEMU took, per window.
 *
 * The model here is a damped oscillator integrated with a fixed step; its
 * cost per window is set with --model-iters. One window, --slow-window,
 * takes a long pause (--slow-ms) on top, longer than the advance watchdog:
 * the watchdog counts from the join, so QEMU is not blamed for it.
 *
 * usage: qsync-blocking-join QEMU GUEST_ELF [--windows N] [--quantum-us Q]
 *                            [--model-iters K] [--slow-window W] [--slow-ms MS]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <qsync/qsync.h>

#define WATCHDOG_MS 500

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The model: x'' = -x - 0.1 x', integrated for one window. */
struct model {
    double x, v;
    uint64_t steps;
};

static void model_step(struct model *m, unsigned iters)
{
    const double dt = 1e-6;
    for (unsigned i = 0; i < iters; i++) {
        double a = -m->x - 0.1 * m->v;
        m->v += a * dt;
        m->x += m->v * dt;
    }
    m->steps += iters;
}

static void pause_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static unsigned long arg_num(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "qsync-blocking-join: %s needs a number\n", argv[*i]);
        exit(2);
    }
    char *end;
    unsigned long v = strtoul(argv[++*i], &end, 10);
    if (*end || end == argv[*i]) {
        fprintf(stderr, "qsync-blocking-join: %s: '%s' is not a number\n", argv[*i - 1],
                argv[*i]);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: qsync-blocking-join QEMU GUEST_ELF [--windows N] "
                        "[--quantum-us Q] [--model-iters K] [--slow-window W] [--slow-ms MS]\n");
        return 2;
    }
    unsigned long windows = 200, quantum_us = 100, iters = 20000, slow_window = 50,
                  slow_ms = WATCHDOG_MS + 300;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--windows") == 0)
            windows = arg_num(argc, argv, &i);
        else if (strcmp(argv[i], "--quantum-us") == 0)
            quantum_us = arg_num(argc, argv, &i);
        else if (strcmp(argv[i], "--model-iters") == 0)
            iters = arg_num(argc, argv, &i);
        else if (strcmp(argv[i], "--slow-window") == 0)
            slow_window = arg_num(argc, argv, &i);
        else if (strcmp(argv[i], "--slow-ms") == 0)
            slow_ms = arg_num(argc, argv, &i);
        else {
            fprintf(stderr, "qsync-blocking-join: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (windows == 0 || quantum_us == 0) {
        fprintf(stderr, "qsync-blocking-join: --windows and --quantum-us must be positive\n");
        return 2;
    }

    qsync_options opts;
    qsync_options_init(&opts);
    opts.advance_timeout_ms = WATCHDOG_MS;
    opts.stdout_mode = QSYNC_OUTPUT_DISCARD;
    qsync_ctx *ctx = NULL;
    char err[256];
    int rc = qsync_ctx_new(NULL, &opts, NULL, &ctx, err, sizeof err); /* private loop */
    if (rc) {
        fprintf(stderr, "qsync-blocking-join: %s\n", err);
        return 1;
    }
    const char *qemu_argv[] = {argv[1], "-M", "pc", "-nodefaults", "-display", "none",
                               "-serial", "stdio", "-device",
                               "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", argv[2],
                               "-append", "compute 1000000000", NULL};
    rc = qsync_start(ctx, qemu_argv);
    if (rc) {
        fprintf(stderr, "qsync-blocking-join: %s\n", qsync_last_error(ctx));
        qsync_close_wait(ctx);
        return 1;
    }

    struct model m = {1.0, 0.0, 0};
    uint64_t q_ns = quantum_us * 1000u, model_total = 0, join_total = 0, window_total = 0;
    unsigned long exact = 0;
    printf("window  deadline_ns  model_us  join_us\n");
    for (unsigned long k = 1; k <= windows; k++) {
        uint64_t t0 = wall_ns();
        rc = qsync_advance_ns(ctx, q_ns); /* QEMU runs the quantum ... */
        if (rc)
            break;
        model_step(&m, (unsigned)iters); /* ... while the model runs its own */
        if (k == slow_window)
            pause_ms((unsigned)slow_ms);
        uint64_t t1 = wall_ns();
        qsync_stop stop;
        rc = qsync_wait_reached(ctx, &stop); /* then join */
        uint64_t t2 = wall_ns();
        if (rc)
            break;
        if (stop.deadline_ns == k * q_ns && stop.virtual_ns == stop.deadline_ns &&
            stop.overshoot_insns == 0)
            exact++;
        else
            printf("NOT EXACT: window %lu deadline %llu virtual %llu overshoot %lld\n", k,
                   (unsigned long long)stop.deadline_ns, (unsigned long long)stop.virtual_ns,
                   (long long)stop.overshoot_insns);
        if (k == slow_window)
            printf("%6lu  %11llu  %8.1f  %7.1f   <- a %lu ms model step, longer than the "
                   "%d ms watchdog: not held against QEMU\n",
                   k, (unsigned long long)stop.deadline_ns, (double)(t1 - t0) / 1e3,
                   (double)(t2 - t1) / 1e3, slow_ms, WATCHDOG_MS);
        else {
            model_total += t1 - t0;
            join_total += t2 - t1;
            window_total += t2 - t0;
            if (k % 50 == 0 || k == 1)
                printf("%6lu  %11llu  %8.1f  %7.1f\n", k, (unsigned long long)stop.deadline_ns,
                       (double)(t1 - t0) / 1e3, (double)(t2 - t1) / 1e3);
        }
    }
    if (rc) {
        fprintf(stderr, "qsync-blocking-join: %s: %s\n", qsync_err_name(rc),
                qsync_last_error(ctx));
        qsync_close_wait(ctx);
        return 1;
    }
    unsigned long timed = windows - (slow_window >= 1 && slow_window <= windows);
    if (timed > 0)
        printf("mean of %lu windows: %.1f us of wall time each; the model took %.1f us, "
               "then the join waited %.1f us for QEMU\n",
               timed, (double)window_total / 1e3 / (double)timed,
               (double)model_total / 1e3 / (double)timed, (double)join_total / 1e3 / (double)timed);
    printf("model state after %llu steps: x=%.6f\n", (unsigned long long)m.steps, m.x);
    printf("%lu windows, %lu stops exact\n", windows, exact);
    rc = qsync_close_wait(ctx);
    if (rc || exact != windows) {
        printf("FAIL\n");
        return 1;
    }
    printf("PASS: every stop exact; the model ran in parallel with QEMU\n");
    return 0;
}

/*
 * The physical floor: what one round trip between two processes costs on
 * this machine over each kind of channel, measured side by side in one run.
 * A lockstep quantum can never be cheaper than this.
 *
 *   pipe   a byte each way over two pipes (the pipe channel)
 *   futex  a sequence number each way on a shared page, sleeping in futex
 *   spin   a sequence number each way on a shared cache line, busy-waiting
 *   shm    a frame each way in the shm channel's rings: poll for at most
 *          50 us, then sleep on the futex (the shm channel)
 *
 * Each is run REPS times of ROUNDS round trips, both unpinned and with both
 * ends pinned to one core; the median per round trip is printed, and each
 * channel's ratio to the pipe.
 * usage: bench-floor [ROUNDS [REPS]]
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "pingpong.h"

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 100000;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    static const char *names[] = {"pipe", "futex", "spin", "shm"};
    if (rounds <= 0 || reps <= 0 || reps > QSYNC_BENCH_MAX_REPS) {
        fprintf(stderr, "usage: bench-floor [ROUNDS [REPS<=%d]]\n", QSYNC_BENCH_MAX_REPS);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("Round trip between two processes, median of %d runs of %ld round trips\n", reps,
           rounds);
    printf("| channel | cross-core (us) | one core (us) | cross-core / pipe |\n");
    printf("|---|---|---|---|\n");
    double pipe_cross = 0;
    for (int k = QSYNC_BENCH_PIPE; k <= QSYNC_BENCH_SHM; k++) {
        double cross[QSYNC_BENCH_MAX_REPS], one[QSYNC_BENCH_MAX_REPS];
        for (int r = 0; r < reps; r++) {
            cross[r] = qsync_bench_pingpong((enum qsync_bench_kind)k, rounds, 0);
            /* Spinning with both ends on one core only makes progress when
             * the spinner yields: fewer rounds show it. */
            one[r] = qsync_bench_pingpong((enum qsync_bench_kind)k, k == QSYNC_BENCH_SPIN ? rounds / 10 + 1 : rounds, 1);
        }
        double c = qsync_bench_median(cross, reps), o = qsync_bench_median(one, reps);
        if (k == QSYNC_BENCH_PIPE)
            pipe_cross = c;
        printf("| %s | %.2f | %.2f | %.3f |\n", names[k], c / 1000, o / 1000, c / pipe_cross);
    }
    return 0;
}

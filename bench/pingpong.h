/* Ping-pong between two processes: the floor under a lockstep round trip. */
#ifndef QSYNC_BENCH_PINGPONG_H
#define QSYNC_BENCH_PINGPONG_H

enum qsync_bench_kind { QSYNC_BENCH_PIPE, QSYNC_BENCH_FUTEX, QSYNC_BENCH_SPIN };

/* ns per round trip over rounds round trips (-1 on failure); one_core pins
 * both ends to CPU 0. */
double qsync_bench_pingpong(enum qsync_bench_kind k, long rounds, int one_core);

#endif

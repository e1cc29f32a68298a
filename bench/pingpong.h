/* Ping-pong between two processes: the floor under a lockstep round trip. */
#ifndef QSYNC_BENCH_PINGPONG_H
#define QSYNC_BENCH_PINGPONG_H

/*
 * pipe   a byte each way over two pipes
 * futex  a sequence number each way on a shared page, sleeping in futex
 * spin   a sequence number each way on a shared cache line, busy-waiting
 * shm    a frame each way in the shared-memory channel's rings
 *        (src/proto/shm.c), each side polling for at most 50 us (adapted
 *        as the channel adapts it; 0 on one core), then sleeping on the
 *        futex: the floor under the shm channel
 */
enum qsync_bench_kind { QSYNC_BENCH_PIPE, QSYNC_BENCH_FUTEX, QSYNC_BENCH_SPIN, QSYNC_BENCH_SHM };

/* The shm floor's polling budget: the channel's default. */
#define QSYNC_BENCH_SHM_SPIN_NS 50000u

/* ns per round trip over rounds round trips (-1 on failure); one_core pins
 * both ends to CPU 0. */
double qsync_bench_pingpong(enum qsync_bench_kind k, long rounds, int one_core);

#endif

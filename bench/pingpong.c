/* Ping-pong between two processes over pipes, a futex, a spun-on cache
 * line, or the shm channel's rings: the floor under any lockstep round
 * trip. See pingpong.h. */
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "pingpong.h"
#include "shm.h"

struct shared {
    _Alignas(64) atomic_uint ping;
    _Alignas(64) atomic_uint pong;
};

static long futex(atomic_uint *addr, int op, unsigned val)
{
    return syscall(SYS_futex, (unsigned *)addr, op, val, NULL, NULL, 0);
}

static void wait_value(atomic_uint *a, unsigned want, int spin)
{
    for (unsigned n = 0;; n++) {
        unsigned v = atomic_load_explicit(a, memory_order_acquire);
        if (v == want)
            return;
        if (!spin)
            futex(a, FUTEX_WAIT, v);
        else if (n % 4096 == 4095)
            sched_yield(); /* the other end may share this core */
    }
}

static void post(atomic_uint *a, unsigned v, int spin)
{
    atomic_store_explicit(a, v, memory_order_release);
    if (!spin)
        futex(a, FUTEX_WAKE, 1);
}

/* One side of the shm floor: sends a 24-byte frame (a GRANT's size) on
 * out, waits for one on in, as the channel's two ends do. */
static int ring_send(const struct qsync__shm_ring *out, long i)
{
    uint8_t frame[24] = {0};
    memcpy(frame, &i, sizeof i);
    int rc = qsync__shm_write(out, frame, sizeof frame);
    if (rc == 1)
        qsync__shm_futex_wake(out);
    return rc < 0 ? -1 : 0;
}

static int ring_recv(const struct qsync__shm_ring *in, struct qsync__shm_spinner *sp)
{
    uint8_t frame[24];
    if (qsync__shm_wait(in, sizeof frame, sp, 0, NULL, NULL))
        return -1;
    return qsync__shm_read(in, frame, sizeof frame) == sizeof frame ? 0 : -1;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* Returns ns per round trip, or -1. */
double qsync_bench_pingpong(enum qsync_bench_kind k, long rounds, int one_core)
{
    int a[2], b[2];
    struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                             -1, 0);
    size_t rsize = qsync__shm_region_size();
    void *region = mmap(NULL, rsize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || region == MAP_FAILED || pipe(a) || pipe(b))
        return -1;
    qsync__shm_init(region);
    struct qsync__shm_ring to_child, to_parent;
    qsync__shm_ring(region, QSYNC__SHM_TO_PLUGIN, &to_child);
    qsync__shm_ring(region, QSYNC__SHM_TO_LIBRARY, &to_parent);
    qsync__shm_disarm(&to_parent); /* both sides sleep on the futex here */
    struct qsync__shm_spinner spinner;
    qsync__shm_spinner_init(&spinner, one_core ? 0 : QSYNC_BENCH_SHM_SPIN_NS);
    atomic_store(&sh->ping, 0);
    atomic_store(&sh->pong, 0);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (one_core)
            pin(0);
        char c;
        for (long i = 1; i <= rounds; i++) {
            if (k == QSYNC_BENCH_PIPE) {
                if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1)
                    _exit(1);
            } else if (k == QSYNC_BENCH_SHM) {
                if (ring_recv(&to_child, &spinner) || ring_send(&to_parent, i))
                    _exit(1);
            } else {
                wait_value(&sh->ping, (unsigned)i, k == QSYNC_BENCH_SPIN);
                post(&sh->pong, (unsigned)i, k == QSYNC_BENCH_SPIN);
            }
        }
        _exit(0);
    }
    if (one_core)
        pin(0);
    uint64_t t0 = qsync_bench_now_ns();
    char c = 'x';
    for (long i = 1; i <= rounds; i++) {
        if (k == QSYNC_BENCH_PIPE) {
            if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1)
                break;
        } else if (k == QSYNC_BENCH_SHM) {
            if (ring_send(&to_child, i) || ring_recv(&to_parent, &spinner))
                break;
        } else {
            post(&sh->ping, (unsigned)i, k == QSYNC_BENCH_SPIN);
            wait_value(&sh->pong, (unsigned)i, k == QSYNC_BENCH_SPIN);
        }
    }
    uint64_t t1 = qsync_bench_now_ns();
    int st;
    waitpid(pid, &st, 0);
    if (one_core) {
        /* Undo the pin for the next measurement. */
        cpu_set_t all;
        CPU_ZERO(&all);
        for (int i = 0; i < CPU_SETSIZE; i++)
            CPU_SET(i, &all);
        sched_setaffinity(0, sizeof all, &all);
    }
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    munmap(sh, sizeof *sh);
    munmap(region, rsize);
    return (double)(t1 - t0) / (double)rounds;
}


/*
 * The shared-memory rings (src/proto/shm.c): layout checks, wraparound, a
 * full ring, and the sleep protocol under two threads and two processes,
 * where a lost wake-up would show as a sleeper that only its time-out
 * slice wakes (counted, and required to be zero).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm.h"

/* Far longer than any wake-up takes, even on a loaded 2-core VM: a sleeper
 * that reaches the end of a slice was not woken. */
#define SLICE_NS 2000000000ull

static void *new_region(void)
{
    size_t size = qsync__shm_region_size();
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(base != MAP_FAILED);
    qsync__shm_init(base);
    return base;
}

static void free_region(void *base)
{
    munmap(base, qsync__shm_region_size());
}

static void test_layout_checks(void **state)
{
    (void)state;
    char why[256];
    size_t size = qsync__shm_region_size();
    void *base = new_region();
    struct qsync__shm_header *h = base;
    assert_int_equal(qsync__shm_check(base, size, why, sizeof why), 0);

    assert_int_equal(qsync__shm_check(base, size - 1, why, sizeof why), -1);
    assert_non_null(strstr(why, "bytes"));
    assert_int_equal(qsync__shm_check(base, 16, why, sizeof why), -1);

    h->magic ^= 1;
    assert_int_equal(qsync__shm_check(base, size, why, sizeof why), -1);
    assert_non_null(strstr(why, "magic"));
    h->magic ^= 1;

    h->version = 7;
    assert_int_equal(qsync__shm_check(base, size, why, sizeof why), -1);
    assert_non_null(strstr(why, "version 7"));
    h->version = QSYNC__SHM_VERSION;

    h->ring_bytes = 5000;
    assert_int_equal(qsync__shm_check(base, size, why, sizeof why), -1);
    assert_non_null(strstr(why, "power of two"));
    h->ring_bytes = QSYNC__SHM_RING_BYTES;

    uint32_t off = h->data_off[1];
    h->data_off[1] = (uint32_t)size - 100;
    assert_int_equal(qsync__shm_check(base, size, why, sizeof why), -1);
    assert_non_null(strstr(why, "outside"));
    h->data_off[1] = h->data_off[0] + 100;
    assert_int_equal(qsync__shm_check(base, size, why, sizeof why), -1);
    assert_non_null(strstr(why, "overlap"));
    h->data_off[1] = off;

    assert_int_equal(qsync__shm_check(base, size, why, sizeof why), 0);
    /* Who waits at the start: the library, in its loop. */
    assert_int_equal(atomic_load(&h->ctl[QSYNC__SHM_TO_LIBRARY].waiting), 1);
    assert_int_equal(atomic_load(&h->ctl[QSYNC__SHM_TO_PLUGIN].waiting), 0);
    free_region(base);
}

/* Bytes round the end of the ring, a full ring, a frame too big. */
static void test_wrap_and_full(void **state)
{
    (void)state;
    void *base = new_region();
    struct qsync__shm_ring r;
    qsync__shm_ring(base, QSYNC__SHM_TO_PLUGIN, &r);
    uint8_t in[1000], out[4000];
    uint8_t next_in = 0, next_out = 0;

    /* 300 frames of 1000 bytes: the position wraps four times. */
    for (int f = 0; f < 300; f++) {
        for (size_t i = 0; i < sizeof in; i++)
            in[i] = next_in++;
        assert_int_equal(qsync__shm_write(&r, in, sizeof in), 0); /* nobody waits */
        assert_int_equal(qsync__shm_avail(&r), sizeof in);
        assert_int_equal(qsync__shm_read(&r, out, sizeof out), sizeof in);
        for (size_t i = 0; i < sizeof in; i++)
            assert_int_equal(out[i], next_out++);
    }
    assert_int_equal(qsync__shm_read(&r, out, sizeof out), 0);

    /* Fill it: 65 frames of 1000 bytes fit in 64 KiB, the 66th does not. */
    int fitted = 0;
    while (qsync__shm_write(&r, in, sizeof in) == 0)
        fitted++;
    assert_int_equal(fitted, QSYNC__SHM_RING_BYTES / sizeof in);
    assert_int_equal(qsync__shm_write(&r, in, sizeof in), -EAGAIN);
    assert_true(qsync__shm_room(&r) < sizeof in);
    /* Exactly the rest fits. */
    uint32_t room = qsync__shm_room(&r);
    assert_int_equal(qsync__shm_write(&r, in, room), 0);
    assert_int_equal(qsync__shm_room(&r), 0);
    assert_int_equal(qsync__shm_write(&r, in, 1), -EAGAIN);
    /* A short read frees just that much. */
    assert_int_equal(qsync__shm_read(&r, out, 10), 10);
    assert_int_equal(qsync__shm_room(&r), 10);
    assert_int_equal(qsync__shm_avail(&r), QSYNC__SHM_RING_BYTES - 10);

    static uint8_t big[QSYNC__SHM_RING_BYTES + 1];
    assert_int_equal(qsync__shm_write(&r, big, sizeof big), -EMSGSIZE);
    free_region(base);
}

/* The byte counters are modulo 2^32: nothing changes when they wrap. */
static void test_counter_wrap(void **state)
{
    (void)state;
    void *base = new_region();
    struct qsync__shm_header *h = base;
    struct qsync__shm_ring r;
    qsync__shm_ring(base, QSYNC__SHM_TO_LIBRARY, &r);
    atomic_store(&h->ctl[1].head, 0xffffff00u);
    atomic_store(&h->ctl[1].tail, 0xffffff00u);
    uint8_t in[600], out[600];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)(i * 7);
    assert_int_equal(qsync__shm_room(&r), QSYNC__SHM_RING_BYTES);
    assert_int_equal(qsync__shm_write(&r, in, sizeof in), 1); /* the library waits */
    assert_true(atomic_load(&h->ctl[1].head) < 0x1000u);    /* wrapped */
    assert_int_equal(qsync__shm_avail(&r), sizeof in);
    assert_int_equal(qsync__shm_read(&r, out, sizeof out), sizeof in);
    assert_memory_equal(in, out, sizeof in);
    free_region(base);
}

/* A corrupt peer can garble the counters; the other side still never
 * reads or writes out of bounds. */
static void test_corrupt_counters(void **state)
{
    (void)state;
    void *base = new_region();
    struct qsync__shm_header *h = base;
    struct qsync__shm_ring r;
    qsync__shm_ring(base, QSYNC__SHM_TO_PLUGIN, &r);
    atomic_store(&h->ctl[0].head, 12345678u);
    static uint8_t out[2 * QSYNC__SHM_RING_BYTES];
    assert_int_equal(qsync__shm_avail(&r), QSYNC__SHM_RING_BYTES);
    assert_int_equal(qsync__shm_read(&r, out, sizeof out), QSYNC__SHM_RING_BYTES);
    atomic_store(&h->ctl[0].tail, 999u); /* "behind" the head by far more than a ring */
    assert_int_equal(qsync__shm_room(&r), 0);
    assert_int_equal(qsync__shm_write(&r, out, 1), -EAGAIN);
    free_region(base);
}

/* ---- Two threads ------------------------------------------------------ */

struct pair {
    struct qsync__shm_ring to_b, to_a;
    long rounds;
    uint64_t spin_ns;
    int timeouts; /* slices that ended without a wake */
    int failed;
};

/* One wait's start, for its stop() callback. */
struct waiter {
    struct pair *p;
    uint64_t t0;
};

/* Called when a wait wakes without its bytes. A wake can be spurious (a
 * producer that saw a `waiting` flag left from the consumer's previous
 * sleep wakes it for nothing); only a slice that ran out means a lost
 * wake-up. */
static int count_timeout(void *arg)
{
    struct waiter *w = arg;
    if (qsync__shm_now_ns() - w->t0 >= SLICE_NS)
        __atomic_add_fetch(&w->p->timeouts, 1, __ATOMIC_SEQ_CST);
    w->t0 = qsync__shm_now_ns();
    return 0; /* keep waiting */
}

static void send_frame(const struct qsync__shm_ring *r, const uint8_t *buf, size_t len)
{
    int rc;
    while ((rc = qsync__shm_write(r, buf, len)) == -EAGAIN)
        qsync__shm_cpu_relax();
    assert_true(rc >= 0);
    if (rc == 1)
        assert_int_equal(qsync__shm_futex_wake(r), 0);
}

/* Frames of 4 + n bytes: a 32-bit count, then n bytes derived from it. */
static size_t make_frame(uint8_t *buf, uint32_t k)
{
    size_t n = (k * 37u) % 300u;
    memcpy(buf, &k, 4);
    for (size_t i = 0; i < n; i++)
        buf[4 + i] = (uint8_t)(k + i);
    return 4 + n;
}

static int check_frame(const struct qsync__shm_ring *r, uint32_t k, uint64_t spin_ns,
                       struct pair *p)
{
    uint8_t want[400], got[400];
    size_t len = make_frame(want, k);
    struct waiter w = {p, qsync__shm_now_ns()};
    struct qsync__shm_spinner sp;
    qsync__shm_spinner_init(&sp, spin_ns);
    if (qsync__shm_wait(r, 4, &sp, SLICE_NS, count_timeout, &w) != 0)
        return -1;
    /* Whole frames are published at once: the rest is there too. */
    if (qsync__shm_avail(r) < len)
        return -1;
    if (qsync__shm_read(r, got, len) != len || memcmp(got, want, len) != 0)
        return -1;
    return 0;
}

/* B answers every frame from A with the same frame. */
static void *peer_b(void *arg)
{
    struct pair *p = arg;
    uint8_t buf[400];
    for (long i = 0; i < p->rounds; i++) {
        if (check_frame(&p->to_b, (uint32_t)i, p->spin_ns, p)) {
            p->failed = 1;
            return NULL;
        }
        send_frame(&p->to_a, buf, make_frame(buf, (uint32_t)i));
    }
    return NULL;
}

/* A ping-pong like the protocol's: each side sends one frame and sleeps
 * until the answer. With spin_ns 0 every wait goes to the futex, the
 * case where a lost wake-up would hang. */
static void ping_pong_threads(long rounds, uint64_t spin_ns)
{
    void *base = new_region();
    struct pair *p = calloc(1, sizeof *p);
    qsync__shm_ring(base, QSYNC__SHM_TO_PLUGIN, &p->to_b);
    qsync__shm_ring(base, QSYNC__SHM_TO_LIBRARY, &p->to_a);
    qsync__shm_disarm(&p->to_a); /* in this test A sleeps on the futex too */
    p->rounds = rounds;
    p->spin_ns = spin_ns;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, peer_b, p), 0);
    uint8_t buf[400];
    for (long i = 0; i < rounds && !p->failed; i++) {
        send_frame(&p->to_b, buf, make_frame(buf, (uint32_t)i));
        if (check_frame(&p->to_a, (uint32_t)i, spin_ns, p)) {
            p->failed = 1;
            break;
        }
    }
    pthread_join(t, NULL);
    assert_int_equal(p->failed, 0);
    assert_int_equal(p->timeouts, 0);
    free(p);
    free_region(base);
}

static void test_threads_sleeping(void **state)
{
    (void)state;
    ping_pong_threads(20000, 0);
}

static void test_threads_spinning(void **state)
{
    (void)state;
    ping_pong_threads(20000, 20000);
}

/* A streaming producer that outruns its consumer: the ring fills, wraps,
 * and the consumer sleeps whenever it catches up. */
static void *stream_consumer(void *arg)
{
    struct pair *p = arg;
    for (long i = 0; i < p->rounds; i++) {
        if (check_frame(&p->to_b, (uint32_t)i, 0, p)) {
            p->failed = 1;
            return NULL;
        }
    }
    return NULL;
}

static void test_stream_full_ring(void **state)
{
    (void)state;
    void *base = new_region();
    struct pair *p = calloc(1, sizeof *p);
    qsync__shm_ring(base, QSYNC__SHM_TO_PLUGIN, &p->to_b);
    p->rounds = 200000;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stream_consumer, p), 0);
    uint8_t buf[400];
    for (long i = 0; i < p->rounds && !p->failed; i++) {
        if (i % 50000 == 0)
            usleep(2000); /* let the consumer fall asleep now and then */
        send_frame(&p->to_b, buf, make_frame(buf, (uint32_t)i));
    }
    pthread_join(t, NULL);
    assert_int_equal(p->failed, 0);
    assert_int_equal(p->timeouts, 0);
    free(p);
    free_region(base);
}

/* A wake with no data calls stop(), whose value ends the wait: how the
 * plugin's watcher ends a stop when the controller hangs up. */
static int stop_when_flag(void *arg)
{
    return __atomic_load_n((int *)arg, __ATOMIC_SEQ_CST) ? -EPIPE : 0;
}

struct hangup {
    struct qsync__shm_ring r;
    int flag;
};

static void *hang_up_later(void *arg)
{
    struct hangup *h = arg;
    usleep(50000);
    __atomic_store_n(&h->flag, 1, __ATOMIC_SEQ_CST);
    qsync__shm_futex_wake(&h->r);
    return NULL;
}

static void test_stop_on_wake(void **state)
{
    (void)state;
    void *base = new_region();
    struct hangup h = {.flag = 0};
    qsync__shm_ring(base, QSYNC__SHM_TO_PLUGIN, &h.r);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hang_up_later, &h), 0);
    uint64_t t0 = qsync__shm_now_ns();
    struct qsync__shm_spinner sp;
    qsync__shm_spinner_init(&sp, 10000);
    assert_int_equal(qsync__shm_wait(&h.r, 8, &sp, SLICE_NS, stop_when_flag, &h.flag), -EPIPE);
    /* Woken by the wake, not by the end of the slice. */
    assert_true(qsync__shm_now_ns() - t0 < SLICE_NS / 2);
    assert_int_equal(atomic_load(&h.r.ctl->waiting), 0);
    pthread_join(t, NULL);

    /* Data already there: no stop, no sleep. */
    assert_int_equal(qsync__shm_write(&h.r, "12345678", 8), 0);
    assert_int_equal(qsync__shm_wait(&h.r, 8, NULL, SLICE_NS, stop_when_flag, &h.flag), 0);
    /* A short slice times out and asks stop(). */
    uint8_t b[8];
    assert_int_equal(qsync__shm_read(&h.r, b, 8), 8);
    assert_int_equal(qsync__shm_wait(&h.r, 8, NULL, 1000000, stop_when_flag, &h.flag), -EPIPE);
    free_region(base);
}

/* The spinner polls at every wait while polling pays, and backs off
 * exponentially while it does not. */
static void test_spinner(void **state)
{
    (void)state;
    struct qsync__shm_spinner s;
    qsync__shm_spinner_init(&s, 5000);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(qsync__shm_spin_budget(&s), 5000);
        qsync__shm_spin_result(&s, 1);
    }
    /* One isolated miss costs nothing. */
    assert_int_equal(qsync__shm_spin_budget(&s), 5000);
    qsync__shm_spin_result(&s, 0);
    assert_int_equal(qsync__shm_spin_budget(&s), 5000);
    qsync__shm_spin_result(&s, 1);
    /* Misses in a row: then 0, 1, 2, 4, ... waits skipped between polls. */
    static const unsigned want[] = {0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1024};
    for (size_t round = 0; round < sizeof want / sizeof want[0]; round++) {
        unsigned skipped = 0;
        uint64_t b;
        while ((b = qsync__shm_spin_budget(&s)) == 0)
            skipped++;
        assert_int_equal(b, 5000);
        assert_int_equal(skipped, want[round]);
        qsync__shm_spin_result(&s, 0);
    }
    /* A hit brings polling back at once (after the skips in progress). */
    while (qsync__shm_spin_budget(&s) == 0) {
    }
    qsync__shm_spin_result(&s, 1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(qsync__shm_spin_budget(&s), 5000);
    /* Never polls with no budget. */
    qsync__shm_spinner_init(&s, 0);
    assert_int_equal(qsync__shm_spin_budget(&s), 0);
}

/* Two processes on one memfd, as the library and QEMU: the futex is a
 * shared one. */
static void test_two_processes(void **state)
{
    (void)state;
    int fd = memfd_create("qsync-test-shm", MFD_CLOEXEC);
    assert_true(fd >= 0);
    size_t size = qsync__shm_region_size();
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(base != MAP_FAILED);
    qsync__shm_init(base);
    const long rounds = 5000;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A fresh mapping of the same memfd, as QEMU makes. */
        void *mine = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        char why[128];
        if (mine == MAP_FAILED || qsync__shm_check(mine, size, why, sizeof why))
            _exit(2);
        struct pair p = {.rounds = rounds};
        qsync__shm_ring(mine, QSYNC__SHM_TO_PLUGIN, &p.to_b);
        qsync__shm_ring(mine, QSYNC__SHM_TO_LIBRARY, &p.to_a);
        peer_b(&p);
        _exit(p.failed ? 3 : p.timeouts ? 4 : 0);
    }
    struct pair p = {.rounds = rounds};
    qsync__shm_ring(base, QSYNC__SHM_TO_PLUGIN, &p.to_b);
    qsync__shm_ring(base, QSYNC__SHM_TO_LIBRARY, &p.to_a);
    qsync__shm_disarm(&p.to_a);
    uint8_t buf[400];
    for (long i = 0; i < rounds && !p.failed; i++) {
        send_frame(&p.to_b, buf, make_frame(buf, (uint32_t)i));
        if (check_frame(&p.to_a, (uint32_t)i, 0, &p))
            p.failed = 1;
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(p.failed, 0);
    assert_int_equal(p.timeouts, 0);
    munmap(base, size);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_checks),
        cmocka_unit_test(test_wrap_and_full),
        cmocka_unit_test(test_counter_wrap),
        cmocka_unit_test(test_corrupt_counters),
        cmocka_unit_test(test_threads_sleeping),
        cmocka_unit_test(test_threads_spinning),
        cmocka_unit_test(test_stream_full_ring),
        cmocka_unit_test(test_stop_on_wake),
        cmocka_unit_test(test_spinner),
        cmocka_unit_test(test_two_processes),
    };
    return cmocka_run_group_tests_name("shm", tests, NULL, NULL);
}

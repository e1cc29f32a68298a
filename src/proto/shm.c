/* See shm.h. */
#include "shm.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The control words are shared between processes: they must be real
 * lock-free atomics, never a library's hidden lock. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
_Static_assert(sizeof(_Atomic uint32_t) == sizeof(uint32_t), "a futex word is 32 bits");
_Static_assert(offsetof(struct qsync__shm_header, ctl) == 64, "header layout");
_Static_assert(sizeof(struct qsync__shm_ctl) == 128, "ring control layout");

/* The data start on the page after the header. */
#define DATA_START 4096u
_Static_assert(sizeof(struct qsync__shm_header) <= DATA_START, "header fits its page");

size_t qsync__shm_region_size(void)
{
    return DATA_START + 2 * (size_t)QSYNC__SHM_RING_BYTES;
}

void qsync__shm_init(void *base)
{
    struct qsync__shm_header *h = base;
    memset(h, 0, sizeof *h);
    h->magic = QSYNC__SHM_MAGIC;
    h->version = QSYNC__SHM_VERSION;
    h->region_bytes = (uint32_t)qsync__shm_region_size();
    h->ring_bytes = QSYNC__SHM_RING_BYTES;
    h->data_off[QSYNC__SHM_TO_PLUGIN] = DATA_START;
    h->data_off[QSYNC__SHM_TO_LIBRARY] = DATA_START + QSYNC__SHM_RING_BYTES;
    for (int i = 0; i < 2; i++) {
        atomic_init(&h->ctl[i].head, 0);
        atomic_init(&h->ctl[i].tail, 0);
        atomic_init(&h->ctl[i].waiting, 0);
    }
    /* The library waits for the plugin in its loop (epoll on the eventfd)
     * until it says otherwise. */
    atomic_store(&h->ctl[QSYNC__SHM_TO_LIBRARY].waiting, 1);
}

int qsync__shm_check(const void *base, size_t size, char *why, size_t why_len)
{
    const struct qsync__shm_header *h = base;
    if (size < sizeof *h) {
        snprintf(why, why_len, "the region is %zu bytes, too small for a header", size);
        return -1;
    }
    if (h->magic != QSYNC__SHM_MAGIC) {
        snprintf(why, why_len, "no qsync shared-memory header (magic %#x)", (unsigned)h->magic);
        return -1;
    }
    if (h->version != QSYNC__SHM_VERSION) {
        snprintf(why, why_len, "layout version %u; this plugin knows version %u",
                 (unsigned)h->version, QSYNC__SHM_VERSION);
        return -1;
    }
    uint32_t rb = h->ring_bytes;
    if (rb < 4096 || (rb & (rb - 1)) != 0 || rb > (1u << 30)) {
        snprintf(why, why_len, "ring size %u is not a power of two from 4096 to 2^30",
                 (unsigned)rb);
        return -1;
    }
    if (h->region_bytes != size) {
        snprintf(why, why_len, "the header says %u bytes, the region has %zu",
                 (unsigned)h->region_bytes, size);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        uint64_t off = h->data_off[i];
        if (off < sizeof *h || off + rb > size) {
            snprintf(why, why_len, "ring %d's data (offset %llu) lies outside the region", i,
                     (unsigned long long)off);
            return -1;
        }
    }
    uint64_t a = h->data_off[0], b = h->data_off[1];
    if (a < b ? a + rb > b : b + rb > a) {
        snprintf(why, why_len, "the two rings overlap");
        return -1;
    }
    return 0;
}

void qsync__shm_ring(void *base, int which, struct qsync__shm_ring *out)
{
    struct qsync__shm_header *h = base;
    out->ctl = &h->ctl[which];
    out->data = (uint8_t *)base + h->data_off[which];
    out->size = h->ring_bytes;
}

/* ---- Producer -------------------------------------------------------- */

uint32_t qsync__shm_room(const struct qsync__shm_ring *r)
{
    uint32_t head = atomic_load_explicit(&r->ctl->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&r->ctl->tail, memory_order_acquire);
    uint32_t used = head - tail;
    return used > r->size ? 0 : r->size - used; /* a corrupt tail: no room */
}

int qsync__shm_write(const struct qsync__shm_ring *r, const void *buf, size_t len)
{
    if (len > r->size)
        return -EMSGSIZE;
    if (qsync__shm_room(r) < len)
        return -EAGAIN;
    uint32_t head = atomic_load_explicit(&r->ctl->head, memory_order_relaxed);
    uint32_t at = head & (r->size - 1);
    size_t first = r->size - at < len ? r->size - at : len;
    memcpy(r->data + at, buf, first);
    memcpy(r->data, (const uint8_t *)buf + first, len - first);
    /*
     * Publish, then look at the consumer's flag: the Dekker pair described
     * in shm.h. Both are seq_cst, so this load cannot be ordered before the
     * store (on x86 the store is an xchg, a full barrier).
     */
    atomic_store_explicit(&r->ctl->head, head + (uint32_t)len, memory_order_seq_cst);
    return atomic_load_explicit(&r->ctl->waiting, memory_order_seq_cst) != 0;
}

int qsync__shm_futex_wake(const struct qsync__shm_ring *r)
{
    /* Not FUTEX_PRIVATE_FLAG: the waiter is another process. */
    if (syscall(SYS_futex, (uint32_t *)&r->ctl->head, FUTEX_WAKE, 1, NULL, NULL, 0) < 0)
        return -errno;
    return 0;
}

/* ---- Consumer -------------------------------------------------------- */

static uint32_t load_head(const struct qsync__shm_ring *r)
{
    return atomic_load_explicit(&r->ctl->head, memory_order_acquire);
}

uint32_t qsync__shm_avail(const struct qsync__shm_ring *r)
{
    uint32_t tail = atomic_load_explicit(&r->ctl->tail, memory_order_relaxed);
    uint32_t used = load_head(r) - tail;
    /* A producer never publishes more than the ring holds; if a corrupt
     * one did, hand out at most a ring's worth (the decoder rejects it). */
    return used > r->size ? r->size : used;
}

size_t qsync__shm_read(const struct qsync__shm_ring *r, void *buf, size_t cap)
{
    uint32_t n = qsync__shm_avail(r);
    if (n > cap)
        n = (uint32_t)cap;
    if (n == 0)
        return 0;
    uint32_t tail = atomic_load_explicit(&r->ctl->tail, memory_order_relaxed);
    uint32_t at = tail & (r->size - 1);
    uint32_t first = r->size - at < n ? r->size - at : n;
    memcpy(buf, r->data + at, first);
    memcpy((uint8_t *)buf + first, r->data, n - first);
    /* Release: the producer may reuse the bytes only after they are copied. */
    atomic_store_explicit(&r->ctl->tail, tail + n, memory_order_release);
    return n;
}

uint32_t qsync__shm_arm(const struct qsync__shm_ring *r)
{
    /* The consumer's half of the Dekker pair (shm.h): store, then load,
     * both seq_cst. */
    atomic_store_explicit(&r->ctl->waiting, 1, memory_order_seq_cst);
    uint32_t tail = atomic_load_explicit(&r->ctl->tail, memory_order_relaxed);
    uint32_t used = atomic_load_explicit(&r->ctl->head, memory_order_seq_cst) - tail;
    return used > r->size ? r->size : used;
}

void qsync__shm_disarm(const struct qsync__shm_ring *r)
{
    atomic_store_explicit(&r->ctl->waiting, 0, memory_order_relaxed);
}

static int futex_wait(const struct qsync__shm_ring *r, uint32_t seen_head, uint64_t timeout_ns)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ns) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000u);
        ts.tv_nsec = (long)(timeout_ns % 1000000000u);
        tp = &ts;
    }
    if (syscall(SYS_futex, (uint32_t *)&r->ctl->head, FUTEX_WAIT, seen_head, tp, NULL, 0) < 0)
        return -errno;
    return 0;
}

uint64_t qsync__shm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void qsync__shm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

void qsync__shm_spinner_init(struct qsync__shm_spinner *s, uint64_t max_ns)
{
    s->max_ns = max_ns;
    s->skip = 0;
    s->backoff = 0;
}

uint64_t qsync__shm_spin_budget(struct qsync__shm_spinner *s)
{
    if (s->skip > 0) {
        s->skip--;
        return 0;
    }
    return s->max_ns;
}

void qsync__shm_spin_result(struct qsync__shm_spinner *s, int hit)
{
    if (hit) {
        s->backoff = 0;
        return;
    }
    s->skip = s->backoff;
    s->backoff = s->backoff == 0 ? 1 : s->backoff * 2;
    if (s->backoff > QSYNC__SHM_MAX_SKIP)
        s->backoff = QSYNC__SHM_MAX_SKIP;
}

static int poll_ring(const struct qsync__shm_ring *r, uint32_t need, uint64_t budget_ns)
{
    if (qsync__shm_avail(r) >= need)
        return 1;
    if (budget_ns == 0)
        return 0;
    /* The clock is read every 64 rounds: a pause is some tens of ns. */
    uint64_t end = qsync__shm_now_ns() + budget_ns;
    for (unsigned n = 1;; n++) {
        qsync__shm_cpu_relax();
        if (qsync__shm_avail(r) >= need)
            return 1;
        if (n % 64 == 0 && qsync__shm_now_ns() >= end)
            return 0;
    }
}

int qsync__shm_wait(const struct qsync__shm_ring *r, uint32_t need,
                    struct qsync__shm_spinner *sp, uint64_t slice_ns, int (*stop)(void *arg),
                    void *arg)
{
    if (qsync__shm_avail(r) >= need)
        return 0;
    uint64_t budget = sp ? qsync__shm_spin_budget(sp) : 0;
    if (budget) {
        int hit = poll_ring(r, need, budget);
        qsync__shm_spin_result(sp, hit);
        if (hit)
            return 0;
    }
    for (;;) {
        uint32_t seen = load_head(r);
        if (qsync__shm_arm(r) >= need)
            break;
        int rc = futex_wait(r, seen, slice_ns);
        if (qsync__shm_avail(r) >= need)
            break;
        /* Woken without the bytes: time out, signal, a third party's wake,
         * or a producer that published less than we need (then head moved
         * and the wait returned -EAGAIN: simply wait again). */
        if (rc != -EAGAIN && stop) {
            int st = stop(arg);
            if (st) {
                qsync__shm_disarm(r);
                return st;
            }
        }
    }
    qsync__shm_disarm(r);
    return 0;
}

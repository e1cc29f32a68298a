/*
 * The shared-memory transport (docs/protocol.md, "Shared-memory
 * transport"): one memfd region, created by the library and inherited by
 * QEMU, holding two single-producer single-consumer byte rings. They carry
 * exactly the frames that the pipes carry (wire.h encodes and decodes
 * them); only the way the bytes travel changes.
 *
 *   ring 0  library -> plugin  GRANT (and ERROR)        the plugin sleeps on a futex
 *   ring 1  plugin -> library  HELLO, REPORT, ERROR, EXIT  the library is woken
 *                                                          through an eventfd
 *
 * Both the library and the plugin (and the fake QEMU of the unit tests)
 * compile this file, so the two ends agree on the layout by construction.
 *
 * Rules
 * -----
 * - One producer and one consumer per ring. The producer alone writes
 *   `head` and the data; the consumer alone writes `tail` and `waiting`.
 * - `head` and `tail` count bytes since the start, modulo 2^32; the ring
 *   size is a power of two, so `head - tail` is always the number of bytes
 *   waiting. A frame is published by one store of `head` after all its
 *   bytes are copied, so a consumer never sees part of a frame.
 * - Sleeping: a consumer that has found the ring empty sets `waiting`,
 *   reads `head` again, and sleeps only if it is unchanged (on a futex on
 *   `head` itself, or in whatever the consumer uses to sleep). A producer
 *   stores `head`, then reads `waiting`, and wakes the consumer when it is
 *   set. Both pairs of accesses are sequentially consistent: of the two
 *   stores (head, waiting), one is first in the single total order, so at
 *   least one side sees the other's store. Either the producer sees
 *   `waiting` and wakes, or the consumer sees the new `head` and does not
 *   sleep. FUTEX_WAIT compares `head` with the value seen under the
 *   futex's own lock, so a wake that comes before the wait starts is not
 *   lost either: the wait then returns at once. No wake-up is lost.
 * - Nothing in the region is trusted beyond what a corrupt peer could do
 *   to itself: positions are taken modulo the ring size and lengths are
 *   checked, so a peer that scribbles on the region can garble frames
 *   (which the decoder rejects) but never make this side read or write
 *   outside the region.
 */
#ifndef QSYNC_PROTO_SHM_H
#define QSYNC_PROTO_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define QSYNC__SHM_MAGIC 0x4d485351u /* "QSHM" in memory order */
#define QSYNC__SHM_VERSION 1u
/* Each ring holds 64 KiB, as much as a Linux pipe buffers by default. */
#define QSYNC__SHM_RING_BYTES 65536u
/* Ring indices. */
#define QSYNC__SHM_TO_PLUGIN 0
#define QSYNC__SHM_TO_LIBRARY 1

/* The control words of one ring: each on its own cache line, grouped by
 * writer, so that the two sides do not bounce a line they both write. */
struct qsync__shm_ctl {
    _Alignas(64) _Atomic uint32_t head; /* producer; bytes written, mod 2^32; the futex word */
    _Alignas(64) _Atomic uint32_t tail; /* consumer; bytes read, mod 2^32        */
    _Atomic uint32_t waiting;           /* consumer: 1 = may sleep, wake me       */
};

/* The start of the region. The data of ring i is at data_off[i], size
 * ring_bytes each. Written by the library before QEMU starts, read-only
 * afterwards. */
struct qsync__shm_header {
    uint32_t magic;
    uint32_t version;
    uint32_t region_bytes;
    uint32_t ring_bytes;
    uint32_t data_off[2];
    uint32_t reserved[10];
    struct qsync__shm_ctl ctl[2];
};

/* One ring as seen by one side: pointers into its own mapping. */
struct qsync__shm_ring {
    struct qsync__shm_ctl *ctl;
    uint8_t *data;
    uint32_t size; /* a power of two */
};

/* The size of the region the library creates. */
size_t qsync__shm_region_size(void);

/* Library: lays out a fresh, zeroed region of qsync__shm_region_size()
 * bytes. The consumer of the ring to the library starts with `waiting`
 * set, since the library sleeps in its loop until told otherwise. */
void qsync__shm_init(void *base);

/*
 * Plugin: checks that the region of `size` bytes at base is one the
 * library laid out (magic, version, sizes, offsets). Returns 0, or -1 with
 * the reason in why.
 */
int qsync__shm_check(const void *base, size_t size, char *why, size_t why_len);

/* The view of ring `which` (QSYNC__SHM_TO_*) of a checked region. */
void qsync__shm_ring(void *base, int which, struct qsync__shm_ring *out);

/* ---- Producer -------------------------------------------------------- */

/*
 * Copies len bytes in and publishes them at once. Returns 1 when the
 * consumer asked to be woken (it may be asleep or about to sleep: wake it
 * with qsync__shm_futex_wake() or its eventfd), 0 when it needs no wake,
 * -EAGAIN when there is not room for all len bytes right now (nothing is
 * written), -EMSGSIZE when len can never fit.
 */
int qsync__shm_write(const struct qsync__shm_ring *r, const void *buf, size_t len);

/* Bytes free for the producer. */
uint32_t qsync__shm_room(const struct qsync__shm_ring *r);

/* Wakes a consumer sleeping on the ring's futex (shared between
 * processes; qsync__shm_wait() sleeps there). Returns 0 or -errno. */
int qsync__shm_futex_wake(const struct qsync__shm_ring *r);

/* ---- Consumer -------------------------------------------------------- */

/* Bytes waiting. */
uint32_t qsync__shm_avail(const struct qsync__shm_ring *r);

/* Copies up to cap waiting bytes out and frees them. Returns the count. */
size_t qsync__shm_read(const struct qsync__shm_ring *r, void *buf, size_t cap);

/*
 * The consumer's half of the sleep protocol. arm() sets `waiting` and
 * returns the bytes waiting, read after the store: sleep only if it is
 * still less than you need. disarm() clears `waiting` (a producer then
 * stops waking this side; spin instead).
 */
uint32_t qsync__shm_arm(const struct qsync__shm_ring *r);
void qsync__shm_disarm(const struct qsync__shm_ring *r);

/*
 * How long a waiter polls before it sleeps, adapted to whether polling
 * pays. Polling saves a sleep and a wake-up (a system call each side, and
 * tens of microseconds when a VM must wake an idle core), but only when
 * the answer comes within the budget; when it does not (long quanta, a
 * peer that is not running because the cores are busy, many QEMUs on one
 * controller), every poll is a budget of CPU thrown away, taken from
 * whoever needs that core. So: after a poll that missed, the next one is
 * skipped, and each further miss doubles the number of waits that go
 * straight to sleep (up to QSYNC__SHM_MAX_SKIP), until a poll that hits
 * brings polling back at every wait. One isolated miss costs nothing.
 */
#define QSYNC__SHM_MAX_SKIP 1024u
struct qsync__shm_spinner {
    uint64_t max_ns; /* the budget; 0: never poll                */
    unsigned skip;   /* waits left that go straight to sleep    */
    unsigned backoff; /* the skip after the next miss            */
};

/* A spinner that polls for at most max_ns. */
void qsync__shm_spinner_init(struct qsync__shm_spinner *s, uint64_t max_ns);

/* The budget for the next wait: max_ns, or 0 while backing off. */
uint64_t qsync__shm_spin_budget(struct qsync__shm_spinner *s);

/* After a wait that polled (a nonzero budget): whether the poll saw the
 * answer. */
void qsync__shm_spin_result(struct qsync__shm_spinner *s, int hit);

/*
 * Waits until at least need bytes are waiting: polls for the spinner's
 * budget (sp may be NULL: no polling), then arms and sleeps on the futex
 * in slices of at most slice_ns. Whenever it wakes without the bytes (a
 * timeout, a signal, a wake from a third party), it calls stop(arg), if
 * given, and returns its value when that is nonzero. Returns 0 when the
 * bytes are there. `waiting` is clear again on return. Used by the plugin
 * (whose watcher wakes the futex when the controller hangs up) and by the
 * fake QEMU.
 */
int qsync__shm_wait(const struct qsync__shm_ring *r, uint32_t need,
                    struct qsync__shm_spinner *sp, uint64_t slice_ns, int (*stop)(void *arg),
                    void *arg);

/* A monotonic clock in ns, and one pause of a spin loop. */
uint64_t qsync__shm_now_ns(void);
void qsync__shm_cpu_relax(void);

#endif

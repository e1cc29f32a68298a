/*
 * libqsync-mpi: the guests of every MPI rank advanced in one conservative
 * window (docs/scale.md).
 *
 * Each rank steps its own guests with a group barrier (qsync_group_*);
 * at each window boundary the ranks exchange the messages that cross
 * them (Ethernet frames, lines of output, whatever the program sends
 * with qsync_mpi_send()) and agree on the next window. A window is at
 * most the smallest cross-rank latency (the lookahead): a message sent
 * at t inside a window is due at t + latency, which is never before the
 * window's end, so it can still be delivered exactly on the receiving
 * rank. This is the scheme of conservative parallel simulators (ns-3's
 * distributed simulator, SST-core, dist-gem5), and it composes with
 * one: a simulator that already uses MPI calls qsync_mpi_step() between
 * its own windows.
 *
 * Conventions are libqsync's (qsync.h): errors are negative, a function
 * whose comment names no error cannot fail, the object comes first in a
 * callback. Collective calls must be made by every rank of the
 * communicator, in the same order, with the same values where a comment
 * says so. Threads: one, the thread that runs the contexts' loop and
 * calls MPI.
 */
#ifndef QSYNC_MPI_H
#define QSYNC_MPI_H

#include <mpi.h>

#include "qsync/qsync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qsync_mpi qsync_mpi;

/* The largest message qsync_mpi_send() takes. */
#define QSYNC_MPI_MSG_MAX (1u << 20)

/*
 * A message another rank sent with qsync_mpi_send(), delivered at the end
 * of the window it was sent in, before qsync_mpi_step() returns. Messages
 * come in a fixed order: by sending rank, then in the order that rank
 * sent them; so every run, with any number of ranks and any host timing,
 * sees them in the same order. data is valid only during the call.
 */
typedef void (*qsync_mpi_recv_cb)(qsync_mpi *m, int src_rank, uint64_t at_ns, const void *data,
                                  size_t len);

/* How the window is set up. Fill with qsync_mpi_config_init() first. */
typedef struct qsync_mpi_config {
    size_t size; /* set by qsync_mpi_config_init(); do not change */

    /* The ranks; duplicated, so the library's messages never meet the
     * program's. Default MPI_COMM_WORLD. */
    MPI_Comm comm;

    /* The smallest latency of anything that crosses ranks, in ns: the
     * lookahead. Required (> 0), the same on every rank. */
    uint64_t lookahead_ns;

    /* The window: the virtual time between two boundaries. 0 (default):
     * the lookahead. Longer than the lookahead is refused (QSYNC_EARG):
     * a message sent at a window's start would be due before its end. */
    uint64_t window_ns;

    /* Where the messages of other ranks go (may be NULL). */
    qsync_mpi_recv_cb recv;

    /* Reserved (0 or any value): a rank waits for the others in MPI's
     * own blocking collectives, which yield the CPU when ranks outnumber
     * cores (Open MPI's mpi_yield_when_idle). */
    uint64_t spin_ns;

    /* Optional: whether this rank's part of the window is complete once
     * its group's barrier has fired. qsync_mpi_step() runs the loop until
     * it returns nonzero: a program that waits for a member that ended
     * in the window to report its exit (its last frames and lines come
     * with it) says so here. */
    int (*settled)(qsync_mpi *m);

    /* The caller's pointer (qsync_mpi_get_data()). */
    void *data;

    /* The time the windows start from: where the group's members are
     * when the driver is made (0, the default, for fresh contexts). The
     * same on every rank. */
    uint64_t start_ns;

    /* Skip idle time, as SST-core does (1, the default; 0: never). When
     * no guest on any rank can do anything before some time E (every
     * member halted until its next timer or frame, qsync_next_event_ns(),
     * which needs contexts made with qsync_options.next_event), the window
     * stretches to the last point of its grid (start_ns + k * window) at
     * or before E + window, in one step; never past a limit_ns, nor past
     * the last grid point before a message queued between steps is due.
     * Nothing any guest sees changes: the windows that are skipped are
     * those in which nothing happens. The same on every rank. */
    int skip_idle;
} qsync_mpi_config;

/* Fills cfg with the defaults. Thread-safe. */
QSYNC_EXPORT void qsync_mpi_config_init(qsync_mpi_config *cfg);

/*
 * Collective. Creates the rank's window driver for group, whose members
 * (this rank's contexts, none at all included) run on loop; MPI must be
 * initialised. The group is the caller's: add and remove members freely
 * between steps, free it after qsync_mpi_free(). Checks that every rank
 * has the same lookahead, window and start_ns.
 * Returns 0 and sets *out; QSYNC_EARG (NULL group or loop, no lookahead,
 * a window longer than the lookahead, ranks that disagree, MPI not
 * initialised: the message, written to errbuf when it is not NULL, names
 * it); -ENOMEM.
 */
QSYNC_EXPORT int qsync_mpi_new(uv_loop_t *loop, qsync_group *group, const qsync_mpi_config *cfg,
                               qsync_mpi **out, char *errbuf, size_t errbuf_len);

/* The caller's pointer (set from qsync_mpi_config.data, or here). */
QSYNC_EXPORT void qsync_mpi_set_data(qsync_mpi *m, void *data);
QSYNC_EXPORT void *qsync_mpi_get_data(const qsync_mpi *m);

/* This rank's number and the number of ranks. */
QSYNC_EXPORT int qsync_mpi_rank(const qsync_mpi *m);
QSYNC_EXPORT int qsync_mpi_size(const qsync_mpi *m);

/* The end of the last window (start_ns before the first). The same on
 * every rank. */
QSYNC_EXPORT uint64_t qsync_mpi_now_ns(const qsync_mpi *m);

/* The earliest time a message may be due at now (qsync_mpi_send()): the
 * end of the window under way during a step, else now + window, the
 * latest the next window may end. */
QSYNC_EXPORT uint64_t qsync_mpi_horizon_ns(const qsync_mpi *m);

/* What a window did, as qsync_mpi_step() reports it. */
typedef struct qsync_mpi_window {
    uint64_t start_ns, end_ns;
    int local_status;     /* this rank's group barrier: 0, or its first
                             member's failure (QSYNC_EEXITED, ...)      */
    unsigned ranks_failed; /* ranks that called qsync_mpi_fail() since
                              the last step                             */
    uint64_t members;     /* group members on every rank, after it      */
    uint64_t messages_in; /* messages delivered to this rank            */
    uint64_t bytes_out;   /* bytes this rank sent to others             */
} qsync_mpi_window;

/*
 * Collective. Runs one window: the ranks agree on its end, the earliest
 * of (now + window, or later when skip_idle finds every rank idle) and
 * every rank's limit_ns; this rank's group is
 * advanced there (the loop runs until the group's callback has fired,
 * and while waiting for the other ranks); the messages sent during the
 * window cross; recv fires for each. *win (may be NULL) says what
 * happened. limit_ns may differ between ranks (a simulator's own next
 * window); the window is never longer than the shortest.
 * A rank with no members takes part all the same. The loop is run here
 * (while this rank's guests run; not while it waits for other ranks):
 * the one call of the library that runs the caller's loop, as a blocking
 * helper does; do not call it from a callback of that loop.
 * Returns 0 (also when local members failed: see win), QSYNC_ERANGE
 * (limit_ns is now or earlier on this rank; the other ranks then get it
 * too, and every rank returns QSYNC_ERANGE), QSYNC_ERECURSE (from inside a
 * step's callback). A group whose advance the caller left pending cannot
 * take part while the other ranks run theirs: qsync_mpi_abort() ends every
 * rank, saying so. So do a failed collective, and a launcher (mpirun,
 * orted) found gone after a step.
 */
QSYNC_EXPORT int qsync_mpi_step(qsync_mpi *m, uint64_t limit_ns, qsync_mpi_window *win);

/*
 * Queues a message for rank dst (another rank, or this one), to be
 * delivered at the end of the window under way, tagged with at_ns, the
 * virtual time it is due at: it must not be before the window's end
 * (that is what the lookahead guarantees; an earlier one would reach the
 * other guests late). Call it from the contexts' callbacks during a step
 * (a frame callback, say), from recv, or between two steps; outside a
 * window (between steps, and from recv) the message goes with the next
 * window and at_ns must not be before now + window, the latest that one
 * may end. The data is copied.
 * Returns 0, QSYNC_EARG (NULL data, len over QSYNC_MPI_MSG_MAX, no such
 * rank), QSYNC_ERANGE (at_ns before the window's end: the message says
 * by how much), -ENOMEM.
 */
QSYNC_EXPORT int qsync_mpi_send(qsync_mpi *m, int dst, uint64_t at_ns, const void *data,
                                size_t len);

/*
 * Marks this rank as failed: at the next step every rank learns it
 * (qsync_mpi_window.ranks_failed), so that all of them can end together
 * and in order. For a failure that cannot wait for a step, qsync_mpi_abort().
 */
QSYNC_EXPORT void qsync_mpi_fail(qsync_mpi *m);

/*
 * Ends every rank now: prints "qsync-mpi: rank R: <message>; ending every
 * rank" on stderr and calls MPI_Abort(code). Every rank's contexts end
 * their QEMUs as their processes die (the plugin watches its controller),
 * so no QEMU is left on any host. m may be NULL (no driver yet): the
 * rank is then MPI_COMM_WORLD's. Does not return.
 */
QSYNC_EXPORT void qsync_mpi_abort(qsync_mpi *m, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

/* The detail of the last error (never NULL). */
QSYNC_EXPORT const char *qsync_mpi_last_error(const qsync_mpi *m);

/* Collective (it frees the duplicated communicator, which MPI requires
 * before MPI_Finalize()). Frees the driver, not the group. */
QSYNC_EXPORT void qsync_mpi_free(qsync_mpi *m);

#ifdef __cplusplus
}
#endif

#endif

/*
 * The qqq personality: the adevs -qqq protocol, spoken by the plugin on
 * stock QEMU, byte for byte:
 *
 *   controller -> QEMU   a native int: the microseconds QEMU may advance
 *   QEMU -> controller   a native int: the microseconds it did advance,
 *                        at least the request
 *
 * and nothing else: no greeting, no counts. Closing the pipes ends QEMU;
 * QEMU's end closes them.
 *
 * Time. The protocol is relative, in whole microseconds, so this file
 * keeps one absolute figure: clock_us, the guest's virtual time in whole
 * microseconds (rounded down) at the last stop. It starts as the time of
 * the first stop (0: before the guest's first instruction) and grows by
 * exactly each answer, so it is also the sum of the answers: the
 * controller's clock and the guest's never drift apart, whatever an
 * engine's rounding or overshoot. A request of r us ends at the absolute
 * time T = (clock_us + r) us, and the answer is the guest's time at the
 * stop, rounded down to a microsecond, minus clock_us.
 *
 * The answer must be at least r, so the stop must not land before T. The
 * engine is armed at T, where an exact engine stops exactly as it would
 * for the native protocol. With shift > 0 it may stop short: on the last
 * instruction boundary before T, when T is not on one (the adevs -qqq protocol's shift 1
 * puts every microsecond on one, until an idle warp to a device timer
 * shifts the clock's phase; shift 4 and up do not). The plugin then lets
 * the guest on to the next boundary (arms T + 2^shift - 1), which lies in
 * (T, T + 2^shift). Either way an exact engine stops in [T, T + 2^shift),
 * within T's microsecond for shift <= 9, so it answers exactly r; with
 * shift 10 it may answer r + 1. The block engine may run past T by part
 * of a block, and answers what it ran (its surplus counts towards the
 * next request, which starts where the guest is).
 */
#include "personality.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"
#include "fdio.h"
#include "log.h"

#define GONE "proto=qqq: the controller closed its pipes; ending QEMU"

static int fd_in = -1;  /* requests, -qqq's read=   */
static int fd_out = -1; /* answers, -qqq's write=   */
static const struct qsync__engine *engine;
static unsigned shift;

/* Stop state: belongs to the thread in a stop (runtime.c). */
static bool started;      /* the first stop has happened             */
static uint64_t clock_us; /* see the top comment                     */
static uint64_t target_ns; /* T: where the current request ends       */

static bool same_pipe(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/*
 * The adevs -qqq protocol's controller forks QEMU right after pipe(), and its text only
 * has the parent close the ends it gives away. A child that execs QEMU
 * without closing its copies of the controller's ends keeps a writer on
 * the request pipe, so QEMU would never see the controller close it (and
 * a reader on the answer pipe, so the controller's own close would never
 * make QEMU's writes fail). QEMU has no use for those ends: close every
 * descriptor that is a write end of fd_in's pipe or a read end of
 * fd_out's.
 */
static void close_controller_ends(void)
{
    struct stat in_st, out_st;
    int leaked[64];
    size_t n;

    if (fstat(fd_in, &in_st) < 0 || fstat(fd_out, &out_st) < 0)
        return;
    if (!S_ISFIFO(in_st.st_mode) && !S_ISFIFO(out_st.st_mode))
        return;
    do {
        DIR *dir = opendir("/proc/self/fd");
        struct dirent *e;
        if (dir == NULL)
            return;
        n = 0;
        while (n < sizeof leaked / sizeof leaked[0] && (e = readdir(dir)) != NULL) {
            char *end;
            long fd = strtol(e->d_name, &end, 10);
            struct stat st;
            if (*end != '\0' || end == e->d_name || fd <= STDERR_FILENO || fd == fd_in ||
                fd == fd_out || fd == dirfd(dir) || fd > INT_MAX)
                continue;
            if (fstat((int)fd, &st) < 0 || !S_ISFIFO(st.st_mode))
                continue;
            int mode = fcntl((int)fd, F_GETFL) & O_ACCMODE;
            if ((same_pipe(&st, &in_st) && mode != O_RDONLY) ||
                (same_pipe(&st, &out_st) && mode != O_WRONLY))
                leaked[n++] = (int)fd;
        }
        closedir(dir);
        for (size_t i = 0; i < n; i++)
            close(leaked[i]);
    } while (n == sizeof leaked / sizeof leaked[0]);
}

static int qqq_open(const struct qsync__options *opt, const struct qsync__engine *eng)
{
    if (qsync__inherited_pipes(opt->fd_in, opt->fd_out) < 0)
        return -1;
    fd_in = opt->fd_in;
    fd_out = opt->fd_out;
    engine = eng;
    shift = opt->shift;
    close_controller_ends();
    return 0;
}

/* Reads the next request: a positive native int. */
static int read_request(void)
{
    int us;
    size_t got = 0;
    qsync__runtime_reading(true);
    int rc = qsync__read_full(fd_in, &us, sizeof us, &got);
    /* Until the request is known good the flag stays up: a failure below
     * ends QEMU with its exact reason, and the watcher, which saw the same
     * end of file, waits for it. */
    if (rc == -EPIPE && got == 0)
        qsync__end_qemu(0, GONE);
    if (rc == -EPIPE)
        qsync__end_qemu(1, "proto=qqq: the controller closed fd_in=%d after %zu of the %zu "
                           "bytes of a request; ending QEMU",
                        fd_in, got, sizeof us);
    if (rc < 0)
        qsync__end_qemu(1, "proto=qqq: cannot read a request from fd_in=%d: %s; ending QEMU",
                        fd_in, strerror(-rc));
    if (us <= 0)
        qsync__end_qemu(1, "proto=qqq: the controller asked to advance by %d us; the adevs -qqq "
                           "protocol needs a positive number of microseconds; ending QEMU",
                        us);
    qsync__runtime_reading(false);
    return us;
}

/* Answers with how far the guest went since the last answer, and makes
 * that the new starting point. */
static void answer(uint64_t virtual_ns)
{
    uint64_t reached_us = virtual_ns / 1000u;
    uint64_t advanced = reached_us > clock_us ? reached_us - clock_us : 0;
    /* More than an int holds (a block engine's overshoot on a request
     * near INT_MAX): the rest is answered with the next request. */
    if (advanced > INT_MAX)
        advanced = INT_MAX;
    int us = (int)advanced;
    int rc = qsync__write_all(fd_out, &us, sizeof us);
    if (rc == -EPIPE)
        qsync__end_qemu(0, GONE);
    if (rc < 0)
        qsync__end_qemu(1, "proto=qqq: cannot write an answer to fd_out=%d: %s; ending QEMU",
                        fd_out, strerror(-rc));
    clock_us += advanced;
}

/*
 * At a stop within the current request: true when the guest is at T or
 * past it (answer now, *virtual_ns says where). Otherwise it is short of T
 * by less than an instruction: the engine is sent on to the next
 * instruction boundary, past T (see the top comment), and false returned.
 */
static bool at_target(unsigned int vcpu_index, uint64_t *virtual_ns)
{
    struct qsync__wire_report now;
    engine->sample(target_ns, &now);
    *virtual_ns = now.virtual_ns;
    if (now.virtual_ns >= target_ns)
        return true;
    return engine->arm(vcpu_index, target_ns + (((uint64_t)1 << shift) - 1)) != 0;
}

static void qqq_stop(unsigned int vcpu_index)
{
    uint64_t virtual_ns;

    if (!started) {
        /* Before the guest's first instruction: nothing to answer. */
        struct qsync__wire_report now;
        engine->sample(0, &now);
        clock_us = now.virtual_ns / 1000u;
        started = true;
    } else {
        if (!at_target(vcpu_index, &virtual_ns))
            return;
        answer(virtual_ns);
    }
    for (;;) {
        int us = read_request();
        target_ns = (clock_us + (uint64_t)us) * 1000u;
        if (engine->arm(vcpu_index, target_ns) == 0)
            return;
        /* The engine says the guest is there already: a block engine that
         * ran past T, or an instruction boundary just short of it. */
        if (!at_target(vcpu_index, &virtual_ns))
            return;
        answer(virtual_ns);
    }
}

static int qqq_watch(void)
{
    return qsync__watch_hangup(fd_in, "fd_in", GONE, NULL);
}

const struct qsync__personality qsync__personality_qqq = {
    .name = "qqq",
    .open = qqq_open,
    .started = NULL, /* the protocol has no greeting */
    .stop = qqq_stop,
    .exit = NULL, /* nor a goodbye: QEMU's end closes the pipes */
    .watch = qqq_watch,
};

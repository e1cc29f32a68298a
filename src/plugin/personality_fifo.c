/*
 * The FIFO personality: the SIL Kit Time Sync Plugin FIFO protocol, spoken by
 * our plugin, with the Time Sync Plugin's option names:
 *
 *   HostToGuestPipe=PATH,GuestToHostPipe=PATH,TimeInMicroSeconds=N
 *
 * The guest runs in quanta of N us of virtual time (-icount shift=0: one
 * instruction is one ns). The first quantum runs at once. After each one
 * the plugin writes two bytes, in one write(), to GuestToHost (the Time Sync Plugin's
 * code writes one, its README has the controller read two: two in one
 * write satisfy both), and waits for one byte on HostToGuest before it
 * runs the next. Quanta are absolute: quantum k ends at k * N us, so an
 * engine's rounding or overshoot never accumulates.
 *
 * Opening. The Time Sync Plugin opens the two FIFOs in its install with
 * blocking opens, which wait for the controller's ends. A controller that
 * opens them in the other order than the plugin then deadlocks with it
 * (each waits in an open of a different FIFO), and QEMU hangs in its
 * install. We open both at install without ever blocking:
 *   - HostToGuest is opened for reading with O_NONBLOCK, which succeeds
 *     at once. Linux then reports no hang-up on it until a writer has come
 *     (and gone), so the watcher and the wait for a byte simply wait for
 *     the controller; a controller's blocking open for writing succeeds
 *     at once, since we are a reader.
 *   - GuestToHost is opened read-write, which on Linux never blocks and
 *     makes us a reader too, so a controller's blocking open for reading
 *     succeeds at once, and our two bytes wait in the FIFO until the
 *     controller reads them. We never read from it.
 * Any opening order on the controller's side then works: the Time Sync Plugin's
 * README order, the reverse, and the library's (GuestToHost read-write at
 * once, HostToGuest retried without blocking until we are its reader).
 * The first quantum may run before the controller has opened anything; in
 * virtual time nothing changes, since the guest stops at N us and waits
 * there for its byte. A controller that never opens HostToGuest leaves
 * QEMU waiting at that first stop (Linux gives no hang-up for a writer
 * that never came), as the Time Sync Plugin leaves it waiting in its
 * install.
 *
 * Ending. The controller going away is end of file on HostToGuest (every
 * writer closed): QEMU ends at once, with status 0, whether the guest is
 * waiting for its byte or running mid-quantum (the watcher). It never
 * runs free. QEMU ending by itself closes both FIFOs; the protocol has
 * nothing to say then.
 */
#include "personality.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"
#include "fdio.h"
#include "legacy.h"
#include "log.h"

#define GONE "FIFO: the controller closed HostToGuestPipe; ending QEMU"

static int h2g = -1; /* HostToGuest: one byte a quantum from the controller */
static int g2h = -1; /* GuestToHost: two bytes a quantum from us            */
static char *h2g_path;
static char *g2h_path;
static const struct qsync__engine *engine;
static uint64_t quantum_ns;
static unsigned done_bytes = 2; /* done_bytes=: 1 (the Time Sync Plugin's code) or 2 */
static bool remove_fifos;       /* remove_fifos=1: the names are private  */
static atomic_flag removed = ATOMIC_FLAG_INIT;

/* Tells the library that this plugin takes the keys (legacy.h). */
__attribute__((used)) static const char keys_marker[] = QSYNC__FIFO_KEYS_MARKER;

/* Stop state: belongs to the thread in a stop (runtime.c). Quantum k
 * (from 1) ends at k * quantum_ns; this is the last k begun. */
static uint64_t quanta_begun;

static int open_fifo(const char *key, const char *path, int flags, int *out)
{
    struct stat st;
    int fd = open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        qsync__log("%s=%s: cannot open it: %s%s", key, path, strerror(e),
                   e == ENOENT ? " (the controller creates both FIFOs with mkfifo before it "
                                 "starts QEMU)"
                               : "");
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
        qsync__log("%s=%s is not a FIFO (make it with mkfifo)", key, path);
        close(fd);
        return -1;
    }
    *out = fd;
    return 0;
}

/*
 * remove_fifos=1: unlinks both FIFOs and removes their directory when it
 * is then empty (libqsync's private one). Once; any thread (the stop, the
 * watcher ending QEMU, QEMU's exit). What is open stays open.
 */
static void remove_names(void)
{
    if (!remove_fifos || atomic_flag_test_and_set(&removed))
        return;
    (void)unlink(h2g_path);
    (void)unlink(g2h_path);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", h2g_path);
    (void)rmdir(dirname(dir));
}

int qsync__fifo_cleanup_setup(const struct qsync__options *opt)
{
    /* QEMU frees its copy of the options after the install. */
    if (h2g_path == NULL) {
        h2g_path = strdup(opt->host_to_guest);
        g2h_path = strdup(opt->guest_to_host);
        if (h2g_path == NULL || g2h_path == NULL) {
            qsync__log("out of memory");
            return -1;
        }
    }
    remove_fifos = opt->remove_fifos;
    if (remove_fifos)
        qsync__runtime_on_end(remove_names);
    return 0;
}

static int fifo_open(const struct qsync__options *opt, const struct qsync__engine *eng)
{
    if (qsync__fifo_cleanup_setup(opt) < 0)
        return -1;
    if (open_fifo("HostToGuestPipe", h2g_path, O_RDONLY, &h2g) < 0)
        return -1;
    if (open_fifo("GuestToHostPipe", g2h_path, O_RDWR, &g2h) < 0)
        return -1;
    /* Our two bytes are written whole, waiting if the FIFO is full. */
    int fl = fcntl(g2h, F_GETFL);
    if (fl < 0 || fcntl(g2h, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        qsync__log("GuestToHostPipe=%s: cannot set its flags: %s", g2h_path, strerror(errno));
        return -1;
    }
    engine = eng;
    quantum_ns = opt->fifo_quantum_us * 1000u;
    done_bytes = opt->done_bytes;
    return 0;
}

/* "Quantum done": by default two bytes in one write, so a controller that
 * reads one (the Time Sync Plugin's code) or two (its README) at a time and waits for
 * the next sees one signal; done_bytes=1 writes one, as the Time Sync Plugin
 * did, for a controller that counts bytes. */
static void signal_done(void)
{
    static const char done[2] = {'f', 'f'};
    int rc = qsync__write_all(g2h, done, done_bytes);
    if (rc < 0)
        qsync__end_qemu(1, "FIFO: cannot write to GuestToHostPipe=%s: %s; ending QEMU",
                        g2h_path, strerror(-rc));
}

/* Waits for the controller's one byte. HostToGuest is non-blocking: a
 * read before any writer has come would say end of file, poll does not. */
static void wait_go(void)
{
    qsync__runtime_reading(true);
    for (;;) {
        struct pollfd p = {.fd = h2g, .events = POLLIN};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            qsync__end_qemu(1, "FIFO: cannot wait on HostToGuestPipe=%s: %s; ending QEMU",
                            h2g_path, strerror(errno));
        }
        char byte;
        ssize_t n = read(h2g, &byte, 1);
        if (n == 1) {
            qsync__runtime_reading(false);
            /* The controller has both its ends open now: the names have
             * done their work. */
            remove_names();
            return; /* any byte lets the guest run one quantum */
        }
        if (n == 0)
            qsync__end_qemu(0, GONE);
        if (errno != EINTR && errno != EAGAIN)
            qsync__end_qemu(1, "FIFO: cannot read HostToGuestPipe=%s: %s; ending QEMU",
                            h2g_path, strerror(errno));
    }
}

static void fifo_stop(unsigned int vcpu_index)
{
    for (;;) {
        /* The first stop precedes the first instruction: the first
         * quantum runs at once, without a byte. */
        if (quanta_begun > 0) {
            signal_done();
            wait_go();
        }
        if (quanta_begun + 1 > UINT64_MAX / quantum_ns)
            qsync__end_qemu(1, "FIFO: virtual time would overflow 2^64 ns; ending QEMU");
        quanta_begun++;
        if (engine->arm(vcpu_index, quanta_begun * quantum_ns) == 0)
            return;
        /* Already there (a block engine ran past it): that quantum is
         * done too. */
    }
}

static int fifo_watch(void)
{
    return qsync__watch_hangup(h2g, "HostToGuestPipe fd", GONE, NULL);
}

const struct qsync__personality qsync__personality_fifo = {
    .name = "FIFO",
    .open = fifo_open,
    .started = NULL, /* the protocol has no greeting */
    .stop = fifo_stop,
    .exit = remove_names, /* nor a goodbye: QEMU's end closes the FIFOs */
    .watch = fifo_watch,
};

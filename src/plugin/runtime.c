/*
 * The stop runtime (runtime.h).
 *
 * The rules below hold for every personality (personality.h): the qqq and
 * FIFO personalities read their own descriptor only in a stop, write only
 * in a stop, end QEMU only through qsync__end_qemu, and are watched by the
 * same watcher thread. The native personality is personality_native.c.
 *
 * Who may touch what
 * ------------------
 * - fd_in is read only by the vCPU thread that is inside a stop. The
 *   watcher thread polls it with events = 0, so it is woken only by
 *   POLLHUP/POLLERR/POLLNVAL and never consumes a byte.
 * - reading is set by the thread in a stop around its blocking reads, and
 *   stays set on a failed read until that thread has ended QEMU: on a
 *   hang-up during such a read the watcher lets the reader, which gets the
 *   end of file at once, end QEMU with the exact reason (see
 *   qsync__runtime_reading). It drops only when the read brought what the
 *   guest runs on.
 * - fd_out is written by the install (HELLO, QEMU's main thread, before
 *   any vCPU exists), by the vCPU thread in a stop (REPORT, ERROR) and by
 *   the atexit callback (EXIT, in whichever thread called exit()).
 *   personality_native.c's send_lock keeps whole frames from
 *   interleaving.
 * - The stop state (last_seq, deadline_ns) belongs to the thread in a
 *   stop. Stops never overlap, at any -smp: the plugin runs only under
 *   -icount, where QEMU runs every vCPU round-robin in one thread, and
 *   only that thread stops (the insn engine from a callback in translated
 *   code, the timer engine from a QEMU_CLOCK_VIRTUAL timer callback, which
 *   under -icount runs in that same thread). The insn engine refuses
 *   -smp > 1 anyway (engine_insn.c says why). A multi-threaded TCG
 *   (no -icount) is refused at install, where QEMU lets the plugin see
 *   it; were it ever allowed, two vCPUs could stop at once and this state
 *   would need a lock and a per-vCPU notion of "reached".
 * - The big QEMU lock: the insn engine calls the stop from a conditional
 *   callback in translated code, which TCG runs without the BQL, so the
 *   main loop and the monitor keep working while a vCPU waits for a grant.
 *   The timer engine (and the insn engine's idle guard) calls it from a
 *   timer callback with the BQL held: the main loop and the monitor then
 *   wait for the next grant (docs/qemu-internals.md: they answer right
 *   after it). This file neither takes nor assumes the BQL.
 * - Ending QEMU: any thread may call qsync__end_qemu(). The first caller
 *   prints its message and _exit()s; a later one parks, so the message is
 *   never cut off. _exit() (not exit()) because exit() would run QEMU's cleanup,
 *   which waits for the vCPUs, and one of them may be the thread blocked
 *   here; and because the guest must not run one more instruction.
 * - The watcher thread blocks every signal, so QEMU's signals (SIGTERM,
 *   its vCPU kicks) keep going to QEMU's own threads.
 * - While a vCPU waits here, QEMU cannot finish a shutdown of its own
 *   (SIGTERM, monitor "quit"): its cleanup waits for the vCPUs. For the
 *   termination signals (SIGTERM, SIGINT, SIGHUP) the watcher steps in
 *   (controller.h): it ends QEMU with status 0 once the guest waits at a
 *   stop. A monitor "quit" still completes only at the next grant (QEMU
 *   then exits with EXIT, without reporting that quantum) or when the
 *   controller closes the channel.
 */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "controller.h"
#include "log.h"
#include "personality.h"
#include "shutdown.h"
#include "wire.h"

static atomic_flag ending = ATOMIC_FLAG_INIT;
static atomic_bool reading; /* a stop is blocked reading the controller */
static const struct qsync__personality *active = &qsync__personality_native;
static void (*end_hook)(void); /* run by qsync__end_qemu before _exit */

/* The watcher's descriptor, what to say when its peer is gone, and whom
 * to wake then. */
static int watch_fd = -1;
static char watch_name[64];
static const char *watch_gone;
static void (*watch_wake)(void);

void qsync__runtime_use(const struct qsync__personality *p)
{
    active = p;
}

void qsync__runtime_stop(unsigned int vcpu_index)
{
    /* QEMU has set its signal handlers before any vCPU runs. */
    qsync__term_signals_catch();
    /* After the guest's shutdown request nothing is reported: whether the
     * guest reaches this stop before QEMU pauses it is host timing. */
    if (qsync__shutdown_at_stop())
        return;
    active->stop(vcpu_index);
}

void qsync__runtime_on_end(void (*hook)(void))
{
    end_hook = hook;
}

void qsync__runtime_reading(bool on)
{
    atomic_store(&reading, on);
}

_Noreturn void qsync__end_qemu(int status, const char *fmt, ...)
{
    if (atomic_flag_test_and_set(&ending)) {
        /* Another thread is already ending QEMU. */
        for (;;)
            pause();
    }
    char text[QSYNC__WIRE_MAX_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (end_hook != NULL)
        end_hook();
    qsync__log("%s", text);
    _exit(status);
}

static int inherited_fd(const char *key, int fd, int want_write)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0) {
        qsync__log("%s=%d is not an open file descriptor in QEMU (did the controller "
                   "pass it down?)", key, fd);
        return -1;
    }
    int status = fcntl(fd, F_GETFL);
    int mode = status & O_ACCMODE;
    if (status < 0 || (want_write ? mode == O_RDONLY : mode == O_WRONLY)) {
        qsync__log("%s=%d is not open for %s", key, fd, want_write ? "writing" : "reading");
        return -1;
    }
    /* QEMU may start helpers (network scripts...): they must not hold the
     * controller's pipes open. And the stop relies on blocking reads. */
    if (fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0 ||
        ((status & O_NONBLOCK) && fcntl(fd, F_SETFL, status & ~O_NONBLOCK) < 0)) {
        qsync__log("%s=%d: cannot set its flags: %s", key, fd, strerror(errno));
        return -1;
    }
    return 0;
}

int qsync__inherited_pipes(int fd_in, int fd_out)
{
    if (inherited_fd("fd_in", fd_in, 0) < 0 || inherited_fd("fd_out", fd_out, 1) < 0)
        return -1;
    return 0;
}

/* A termination signal came (QEMU's handler has asked for a shutdown):
 * QEMU's shutdown waits for every vCPU, so a guest waiting at a stop, now
 * or later, is ended here; until then QEMU's own shutdown may finish. */
static _Noreturn void end_when_stopped(int sig, struct pollfd *p)
{
    for (;;) {
        if (atomic_load(&reading))
            qsync__end_qemu(0, "terminating on signal %d (%s) while the guest waits at a "
                               "stop for its controller; ending QEMU",
                            sig, strsignal(sig));
        p[0].revents = p[1].revents = 0;
        if (poll(p, 2, 5) <= 0)
            continue;
        if (p[0].revents & (POLLHUP | POLLERR | POLLNVAL))
            qsync__end_qemu(0, "%s", watch_gone);
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
            qsync__end_qemu(0, "the controller (pid %d) has died; ending QEMU",
                            qsync__controller_pid());
    }
}

static void *watch(void *arg)
{
    /* [0] the channel: hang-up only; [1] the controller's pidfd;
     * [2] the termination signals' pipe. A negative fd is skipped. */
    struct pollfd p[3] = {{.fd = watch_fd, .events = 0},
                          {.fd = qsync__controller_pidfd(), .events = POLLIN},
                          {.fd = qsync__term_signals_fd(), .events = POLLIN}};
    (void)arg;
    for (;;) {
        for (int i = 0; i < 3; i++)
            p[i].revents = 0;
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            qsync__end_qemu(1, "cannot watch %s: %s; ending QEMU", watch_name, strerror(errno));
        }
        if (p[0].revents & POLLNVAL)
            qsync__end_qemu(1, "%s was closed inside QEMU; ending QEMU", watch_name);
        if (p[0].revents & (POLLHUP | POLLERR)) {
            /* A stop blocked reading sees the end of file too, at once,
             * and knows whether it came in the middle of a message: let
             * it end QEMU. If its read returns data instead (the
             * controller's last message), the flag drops before the
             * guest runs on, and QEMU ends here. */
            const struct timespec ms = {0, 1000000};
            /* A stop asleep on the shared-memory futex sees no end of
             * file: wake it, and it ends QEMU as a reader of fd_in would. */
            if (watch_wake != NULL)
                watch_wake();
            while (atomic_load(&reading))
                nanosleep(&ms, NULL);
            qsync__end_qemu(0, "%s", watch_gone);
        }
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
            qsync__end_qemu(0, "the controller (pid %d) has died; ending QEMU",
                            qsync__controller_pid());
        if (p[1].revents & POLLNVAL)
            p[1].fd = -1;
        if (p[2].revents & POLLIN) {
            unsigned char sig = 0;
            if (read(p[2].fd, &sig, 1) == 1)
                end_when_stopped(sig, p);
        }
        if (p[2].revents & (POLLNVAL | POLLHUP | POLLERR))
            p[2].fd = -1;
    }
    return NULL;
}

int qsync__watch_hangup(int fd, const char *key, const char *gone, void (*wake)(void))
{
    pthread_attr_t attr;
    pthread_t tid;
    sigset_t all, old;
    int rc;

    watch_fd = fd;
    snprintf(watch_name, sizeof watch_name, "%s=%d", key, fd);
    watch_gone = gone;
    watch_wake = wake;
    /* The thread inherits this mask: it must never take QEMU's signals. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    rc = pthread_create(&tid, &attr, watch, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        qsync__log("cannot start the channel watcher thread: %s", strerror(rc));
        return -1;
    }
    return 0;
}

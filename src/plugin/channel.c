/*
 * See channel.h.
 *
 * The rules below hold for every personality (personality.h): the qqq and
 * FIFO personalities read their own descriptor only in a stop, write only
 * in a stop, end QEMU only through qsync__end_qemu, and are watched by the
 * same watcher thread.
 *
 * Who may touch what
 * ------------------
 * - fd_in is read only by the vCPU thread that is inside a stop. The
 *   watcher thread polls it with events = 0, so it is woken only by
 *   POLLHUP/POLLERR/POLLNVAL and never consumes a byte.
 * - reading is set by the thread in a stop around its blocking reads,
 *   and read by the watcher: on a hang-up during such a read the watcher
 *   lets the reader, which gets the end of file at once, end QEMU with the
 *   exact reason (see qsync__channel_reading).
 * - fd_out is written by the install (HELLO, QEMU's main thread, before
 *   any vCPU exists), by the vCPU thread in a stop (REPORT, ERROR) and by
 *   the atexit callback (EXIT, in whichever thread called exit()).
 *   send_lock keeps whole frames from interleaving.
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
#include "channel.h"

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
#include "fdio.h"
#include "input.h"
#include "log.h"
#include "personality.h"
#include "qemu_internals.h"
#include "stop_timer.h"
#include "qsync/version.h"
#include "transport_shm.h"

/* Codes carried in the ERROR messages this plugin sends (errno values). */
#define ERR_PROTOCOL EPROTO /* a frame that is not a valid next GRANT    */
#define ERR_DEADLINE ERANGE /* a deadline behind the guest's time        */
#define ERR_IO EIO          /* reading the channel failed                */
#define ERR_INPUT ENOBUFS   /* guest input the guest never reads         */
#define ERR_NODEV ENODEV    /* guest input but no serial0 to take it     */

static int fd_in = -1;
static int fd_out = -1;
static const struct qsync__engine *engine;
static pthread_mutex_t send_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_flag ending = ATOMIC_FLAG_INIT;
static atomic_bool reading; /* a stop is blocked reading the controller */
static const struct qsync__personality *active = &qsync__personality_native;
static void (*end_hook)(void); /* run by qsync__end_qemu before _exit */

/* The watcher's descriptor and what to say when its peer is gone. */
static int watch_fd = -1;
static char watch_name[64];
static const char *watch_gone;

/* Stop state; see the header comment. last_seq == 0: no grant yet. */
static uint64_t last_seq;
static uint64_t deadline_ns;

void qsync__channel_use(const struct qsync__personality *p)
{
    active = p;
}

void qsync__channel_stop(unsigned int vcpu_index)
{
    /* QEMU has set its signal handlers before any vCPU runs. */
    qsync__term_signals_catch();
    active->stop(vcpu_index);
}

void qsync__channel_on_end(void (*hook)(void))
{
    end_hook = hook;
}

void qsync__channel_reading(bool on)
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

int qsync__inherited_fd(const char *key, int fd, int want_write)
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

int qsync__channel_open(int in, int out, const struct qsync__engine *eng)
{
    if (qsync__inherited_fd("fd_in", in, 0) < 0 || qsync__inherited_fd("fd_out", out, 1) < 0)
        return -1;
    fd_in = in;
    fd_out = out;
    engine = eng;
    return 0;
}

int qsync__channel_send(const struct qsync__wire_msg *msg)
{
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    long n = qsync__wire_encode(msg, buf, sizeof buf);
    if (n < 0)
        return -EINVAL;
    pthread_mutex_lock(&send_lock);
    /* With shm=, frames travel in shared memory; fd_out carries only its
     * end of file (transport_shm.h). */
    int rc = qsync__shm_transport_active() ? qsync__shm_transport_send(buf, (size_t)n)
                                           : qsync__write_all(fd_out, buf, (size_t)n);
    pthread_mutex_unlock(&send_lock);
    return rc;
}

/* Tells the controller why we stop, then ends QEMU with status 1. */
static _Noreturn void fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static _Noreturn void fail(int code, const char *fmt, ...)
{
    struct qsync__wire_msg msg;
    va_list ap;

    memset(&msg, 0, sizeof msg);
    msg.type = QSYNC__MSG_ERROR;
    msg.u.error.code = code;
    va_start(ap, fmt);
    vsnprintf(msg.u.error.text, sizeof msg.u.error.text, fmt, ap);
    va_end(ap);
    (void)qsync__channel_send(&msg); /* the controller may be gone */
    qsync__end_qemu(1, "%s; ending QEMU", msg.u.error.text);
}

static _Noreturn void controller_gone(void)
{
    qsync__end_qemu(0, "controller closed the channel; ending QEMU");
}

/* Reads exactly len bytes of a frame. EOF before the first byte of a frame
 * is the controller going away; EOF inside one is a broken frame. */
static void read_frame_bytes(uint8_t *buf, size_t len, int frame_start)
{
    size_t got = 0;
    qsync__channel_reading(true);
    int rc = qsync__shm_transport_active() ? qsync__shm_transport_read(buf, len, &got)
                                           : qsync__read_full(fd_in, buf, len, &got);
    qsync__channel_reading(false);
    if (rc == 0)
        return;
    if (rc == -EPIPE && got == 0 && frame_start)
        controller_gone();
    if (rc == -EPIPE)
        fail(ERR_PROTOCOL, "controller closed the channel in the middle of a message");
    fail(ERR_IO, "cannot read from fd_in=%d: %s", fd_in, strerror(-rc));
}

static void read_message(struct qsync__wire_msg *msg)
{
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    size_t used = 0;

    read_frame_bytes(buf, QSYNC__WIRE_HEADER_SIZE, 1);
    /* The decoder checks type and length from the header alone. */
    int st = qsync__wire_decode(buf, QSYNC__WIRE_HEADER_SIZE, msg, &used);
    if (st < 0)
        fail(ERR_PROTOCOL, "bad frame from the controller: %s", qsync__wire_status_text(st));
    uint32_t plen = (uint32_t)buf[4] | (uint32_t)buf[5] << 8 | (uint32_t)buf[6] << 16 |
                    (uint32_t)buf[7] << 24;
    if (plen > 0)
        read_frame_bytes(buf + QSYNC__WIRE_HEADER_SIZE, plen, 0);
    st = qsync__wire_decode(buf, QSYNC__WIRE_HEADER_SIZE + plen, msg, &used);
    if (st != QSYNC__WIRE_OK)
        fail(ERR_PROTOCOL, "bad frame from the controller: %s", qsync__wire_status_text(st));
}

static void send_report(void)
{
    struct qsync__wire_msg msg;
    msg.type = QSYNC__MSG_REPORT;
    engine->sample(deadline_ns, &msg.u.report);
    msg.u.report.seq = last_seq;
    msg.u.report.deadline_ns = deadline_ns;
    if (qsync__input_pending() > 0)
        msg.u.report.flags |= QSYNC__WIRE_R_INPUT_WAITING;
    int rc = qsync__channel_send(&msg);
    if (rc == -EPIPE)
        controller_gone();
    if (rc < 0)
        qsync__end_qemu(1, "cannot write a report to fd_out=%d: %s; ending QEMU", fd_out,
                 strerror(-rc));
}

#define NO_SERIAL0 \
    "guest input: QEMU has no serial0 to deliver it to (add -serial stdio, or -serial null)"

/* Whether QEMU's clock may be read here (qemu_internals.h): outside a
 * vCPU thread, or in the stop timer's callback between two blocks. A stop
 * inside a block (the insn and block engines' callbacks) is not. */
static bool at_safe_point(void)
{
    return !qsync__qemu_in_vcpu_thread() || qsync__stop_timer_in_callback();
}

/* Waits for the next grant, validates it and makes it the current one. */
static void wait_grant(void)
{
    static struct qsync__wire_msg msg; /* 4 KiB: off the vCPU's stack */
    struct qsync__wire_report now;

    /* INPUT frames come first, while the guest is stopped, then the
     * GRANT that lets it run on. */
    for (;;) {
        read_message(&msg);
        if (msg.type != QSYNC__MSG_INPUT)
            break;
        if (!qsync__input_supported())
            fail(ERR_PROTOCOL, "INPUT received, but this QEMU does not let the plugin "
                               "feed a serial port (HELLO did not offer it)");
        if (!qsync__input_has_port())
            fail(ERR_NODEV, NO_SERIAL0);
        if (qsync__input_queue(msg.u.input.data, msg.u.input.len) < 0)
            fail(ERR_INPUT, "guest input: more than %u bytes waiting; the guest is not "
                            "reading its serial port", QSYNC_INPUT_QUEUE_MAX);
    }
    if (msg.type == QSYNC__MSG_ERROR)
        qsync__end_qemu(1, "the controller reported an error (code %d): %s; ending QEMU",
                 (int)msg.u.error.code, msg.u.error.text);
    if (msg.type != QSYNC__MSG_GRANT)
        fail(ERR_PROTOCOL, "expected a GRANT from the controller, got message type %u",
             (unsigned)msg.type);
    if (msg.u.grant.seq != last_seq + 1)
        fail(ERR_PROTOCOL, "GRANT seq %llu out of order (expected %llu)",
             (unsigned long long)msg.u.grant.seq, (unsigned long long)last_seq + 1);

    /*
     * Deadlines never go backwards. An exact engine is never past its last
     * deadline, so a grant behind the guest is a controller's bug. The
     * block engine may have overshot the last deadline by part of a block:
     * a short grant that the guest has already passed is then reached at
     * once (its arm() says so) and reported with its overshoot.
     */
    /* QEMU's clock is a signed count of nanoseconds: an engine would read
     * a later deadline as negative, in the past, and stop at once. */
    if (msg.u.grant.deadline_ns > (uint64_t)INT64_MAX)
        fail(ERR_DEADLINE, "GRANT seq %llu: deadline %llu ns is past the end of QEMU's clock "
                           "(2^63-1 ns)",
             (unsigned long long)msg.u.grant.seq, (unsigned long long)msg.u.grant.deadline_ns);
    if (last_seq != 0 && msg.u.grant.deadline_ns < deadline_ns)
        fail(ERR_DEADLINE, "GRANT seq %llu: deadline %llu ns is before the previous one (%llu ns)",
             (unsigned long long)msg.u.grant.seq, (unsigned long long)msg.u.grant.deadline_ns,
             (unsigned long long)deadline_ns);
    engine->sample(msg.u.grant.deadline_ns, &now);
    if (msg.u.grant.deadline_ns < now.virtual_ns && (engine->guarantees & QSYNC__WIRE_G_EXACT))
        fail(ERR_DEADLINE, "GRANT seq %llu: deadline %llu ns is behind the guest (%llu ns)",
             (unsigned long long)msg.u.grant.seq,
             (unsigned long long)msg.u.grant.deadline_ns,
             (unsigned long long)now.virtual_ns);

    last_seq = msg.u.grant.seq;
    deadline_ns = msg.u.grant.deadline_ns;
}

static void native_stop(unsigned int vcpu_index)
{
    /* The very first stop happens before the first instruction: there is
     * nothing to report yet, the controller is waiting to grant. */
    if (last_seq != 0)
        send_report();
    for (;;) {
        wait_grant();
        if (engine->arm(vcpu_index, deadline_ns) == 0) {
            /* The guest is about to run on from this stop: this is the
             * moment input arrives, at the stop's exact virtual time. */
            if (qsync__input_deliver(at_safe_point()) < 0)
                fail(ERR_NODEV, NO_SERIAL0);
            return;
        }
        /* A grant equal to where the guest is: nothing may run. Report
         * it as reached and wait for the next one. */
        send_report();
    }
}

void qsync__channel_exit(void)
{
    struct qsync__wire_msg msg;
    struct qsync__wire_report now;

    engine->sample(deadline_ns, &now);
    memset(&msg, 0, sizeof msg);
    msg.type = QSYNC__MSG_EXIT;
    msg.u.exit.virtual_ns = now.virtual_ns;
    msg.u.exit.instructions = now.instructions;
    (void)qsync__channel_send(&msg);
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
            qsync__shm_transport_hangup();
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

int qsync__channel_start_watcher(void)
{
    return qsync__watch_hangup(fd_in, "fd_in", "controller closed the channel; ending QEMU");
}

int qsync__watch_hangup(int fd, const char *key, const char *gone)
{
    pthread_attr_t attr;
    pthread_t tid;
    sigset_t all, old;
    int rc;

    watch_fd = fd;
    snprintf(watch_name, sizeof watch_name, "%s=%d", key, fd);
    watch_gone = gone;
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

/* ---- The native personality ------------------------------------------ */

static int native_open(const struct qsync__options *opt, const struct qsync__engine *eng)
{
    if (qsync__channel_open(opt->fd_in, opt->fd_out, eng) < 0)
        return -1;
    return opt->shm_fd >= 0 ? qsync__shm_transport_open(opt->shm_fd, opt->efd, opt->spin_ns) : 0;
}

/* HELLO, from the install thread once the engine is installed. */
static int native_hello(const qemu_info_t *info, const struct qsync__options *opt)
{
    struct qsync__wire_msg msg;
    struct qsync__wire_hello *h = &msg.u.hello;

    memset(&msg, 0, sizeof msg);
    msg.type = QSYNC__MSG_HELLO;
    h->major = QSYNC__WIRE_MAJOR;
    h->minor = QSYNC__WIRE_MINOR;
    h->plugin_version = QSYNC_VERSION_HEX;
    h->n_vcpus = (uint32_t)info->system.smp_vcpus;
    h->engine = engine->wire_id;
    h->icount_shift = (uint8_t)opt->shift;
    h->api_version = (uint16_t)info->version.cur;
    h->guarantees = engine->actual_guarantees != NULL ? engine->actual_guarantees()
                                                      : engine->guarantees;
    if (qsync__input_supported())
        h->guarantees |= QSYNC__WIRE_G_INPUT;
    if (info->target_name != NULL)
        strncpy(h->target, info->target_name, sizeof h->target - 1);

    int rc = qsync__channel_send(&msg);
    if (rc < 0) {
        qsync__log("cannot send HELLO on fd_out=%d: %s", opt->fd_out, strerror(-rc));
        return -1;
    }
    return 0;
}

const struct qsync__personality qsync__personality_native = {
    .name = "native",
    .open = native_open,
    .started = native_hello,
    .stop = native_stop,
    .exit = qsync__channel_exit,
    .watch = qsync__channel_start_watcher,
};

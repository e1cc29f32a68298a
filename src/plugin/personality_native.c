/*
 * The native personality: our protocol (src/proto/wire.h,
 * docs/protocol.md) on the stop runtime (runtime.h). HELLO at install, a
 * blocking stop at every deadline (REPORT, then wait for the next GRANT,
 * with the INPUT frames before it), EXIT when QEMU exits by itself. The
 * frames travel on a transport (transport.h): the pipes fd_in and fd_out,
 * or shared memory. runtime.c says who may touch what; the stop state
 * (last_seq, deadline_ns) belongs to the thread in a stop, and send_lock
 * keeps whole frames from different threads apart.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "input.h"
#include "log.h"
#include "net.h"
#include "personality.h"
#include "qemu_internals.h"
#include "qsync/version.h"
#include "runtime.h"
#include "shutdown.h"
#include "stop_timer.h"
#include "transport.h"
#include "wire.h"

/* Codes carried in the ERROR messages this plugin sends (errno values). */
#define ERR_PROTOCOL EPROTO /* a frame that is not a valid next GRANT    */
#define ERR_DEADLINE ERANGE /* a deadline behind the guest's time        */
#define ERR_IO EIO          /* reading the channel failed                */
#define ERR_INPUT ENOBUFS   /* guest input the guest never reads         */
#define ERR_NODEV ENODEV    /* guest input but no serial0 to take it     */

static int fd_in = -1;
static int fd_out = -1;
static const struct qsync__transport *transport;
static const struct qsync__engine *engine;
static pthread_mutex_t send_lock = PTHREAD_MUTEX_INITIALIZER;
static bool send_next; /* next=1, and the engine can tell a halted guest */

/* Stop state; see runtime.c. last_seq == 0: no grant yet. */
static uint64_t last_seq;
static uint64_t deadline_ns;

/* Sends one message; frames from different threads never interleave.
 * Returns 0 or -errno (-EPIPE when the controller is gone). Any thread. */
static int send_msg(const struct qsync__wire_msg *msg)
{
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    long n = qsync__wire_encode(msg, buf, sizeof buf);
    if (n < 0)
        return -EINVAL;
    pthread_mutex_lock(&send_lock);
    int rc = transport->send(buf, (size_t)n);
    pthread_mutex_unlock(&send_lock);
    return rc;
}

/* Sends bytes that hold whole frames, as send_msg() does (the NICs'). */
static int send_bytes(const void *buf, size_t len)
{
    pthread_mutex_lock(&send_lock);
    int rc = transport->send(buf, len);
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
    (void)send_msg(&msg); /* the controller may be gone */
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
    qsync__runtime_reading(true);
    int rc = transport->read(buf, len, &got);
    if (rc == 0) {
        qsync__runtime_reading(false);
        return;
    }
    /* The flag stays up: this thread ends QEMU with the exact reason, and
     * the watcher, which saw the same end of file, waits for it. */
    if (rc == -EPIPE && got == 0 && frame_start)
        controller_gone();
    if (rc == -EPIPE)
        fail(ERR_PROTOCOL, "controller closed the channel in the middle of a message");
    fail(ERR_IO, "cannot read from fd_in=%d: %s", fd_in, strerror(-rc));
}

static void read_message(struct qsync__wire_msg *msg)
{
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    size_t used = 0, frame = 0;

    read_frame_bytes(buf, QSYNC__WIRE_HEADER_SIZE, 1);
    /* The codec checks type and length from the header alone. */
    int st = qsync__wire_frame_len(buf, QSYNC__WIRE_HEADER_SIZE, &frame);
    if (st < 0)
        fail(ERR_PROTOCOL, "bad frame from the controller: %s", qsync__wire_status_text(st));
    if (frame > QSYNC__WIRE_HEADER_SIZE)
        read_frame_bytes(buf + QSYNC__WIRE_HEADER_SIZE, frame - QSYNC__WIRE_HEADER_SIZE, 0);
    st = qsync__wire_decode(buf, frame, msg, &used);
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
    /* What the NICs sent during the quantum goes first, then whether the
     * guest is halted and until when. */
    int rc = qsync__net_flush(true);
    uint64_t next = send_next ? qsync__stop_timer_next_event() : 0;
    if (rc == 0 && next != 0) {
        struct qsync__wire_msg nm;
        memset(&nm, 0, sizeof nm);
        nm.type = QSYNC__MSG_NEXT;
        nm.u.next.timer_ns = next;
        rc = send_msg(&nm);
    }
    if (rc == 0)
        rc = send_msg(&msg);
    if (rc == -EPIPE)
        controller_gone();
    if (rc < 0)
        qsync__end_qemu(1, "cannot write a report to fd_out=%d: %s; ending QEMU", fd_out,
                 strerror(-rc));
}

#define NO_SERIAL0 \
    "guest input: QEMU has no serial0 to deliver it to (add -serial stdio, or -serial null)"


/* Waits for the next grant, validates it and makes it the current one. */
static void wait_grant(void)
{
    static struct qsync__wire_msg msg; /* 16 KiB: off the vCPU's stack */
    struct qsync__wire_report now;

    /* INPUT and FRAME messages come first, while the guest is stopped,
     * then the GRANT that lets it run on. */
    for (;;) {
        read_message(&msg);
        if (msg.type == QSYNC__MSG_FRAME) {
            const char *why = NULL;
            if (qsync__net_frame_in(&msg.u.frame, &why) < 0)
                fail(ERR_PROTOCOL, "FRAME for NIC %u: %s", (unsigned)msg.u.frame.nic, why);
            continue;
        }
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
            if (qsync__input_deliver(qsync__stop_timer_safe_point()) < 0)
                fail(ERR_NODEV, NO_SERIAL0);
            qsync__net_resume();
            return;
        }
        /* A grant equal to where the guest is: nothing may run. Report
         * it as reached and wait for the next one. */
        send_report();
    }
}

static void native_exit(void)
{
    struct qsync__wire_msg msg;
    struct qsync__wire_report now;

    /* Stamped at the guest's shutdown request where QEMU lets us see it. */
    qsync__shutdown_exit_sample(deadline_ns, &now);
    (void)qsync__net_flush(true); /* what the NICs sent since the last stop */
    memset(&msg, 0, sizeof msg);
    msg.type = QSYNC__MSG_EXIT;
    msg.u.exit.virtual_ns = now.virtual_ns;
    msg.u.exit.instructions = now.instructions;
    (void)send_msg(&msg);
}

/* ---- The native personality ------------------------------------------ */

/* Checks that fd_in is open for reading and fd_out for writing, and picks
 * the transport: shared memory with shm=, else the pipes. */
static int native_open(const struct qsync__options *opt, const struct qsync__engine *eng)
{
    if (qsync__inherited_pipes(opt->fd_in, opt->fd_out) < 0)
        return -1;
    fd_in = opt->fd_in;
    fd_out = opt->fd_out;
    engine = eng;
    send_next = opt->next;
    transport = opt->shm_fd >= 0 ? qsync__transport_shm_open(opt->shm_fd, opt->efd, opt->spin_ns)
                                 : qsync__transport_pipe_open(fd_in, fd_out);
    if (transport == NULL)
        return -1;
    /* The block engine's clock runs ahead of its deadlines while the guest
     * idles (it cannot see idle time), so frames would reach the guest
     * late, at the deadline after their time. */
    if (opt->n_nics > 0 && eng->wire_id == QSYNC__WIRE_ENGINE_BLOCK) {
        qsync__log("NICs need the timer or insn engine: engine=block lets an idle guest's "
                   "clock run past its deadlines, so frames could not arrive at their time");
        return -1;
    }
    /* The NICs' backends must exist before QEMU makes its devices, which
     * it does after installing the plugins. */
    return qsync__net_install(opt, send_bytes);
}

static int native_watch(void)
{
    return qsync__watch_hangup(fd_in, "fd_in", "controller closed the channel; ending QEMU",
                               transport->hangup);
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
    if (qsync__net_active())
        h->guarantees |= QSYNC__WIRE_G_FRAMES;
    /* The engine is installed by now: its stop timer knows whether it can
     * tell a halted guest (the block engine has none). One vCPU only: with
     * several, QEMU 10.0.2 runs them all in one thread and its per-vCPU
     * flags did not tell (at -smp 2, with the second vCPU halted in the
     * firmware throughout, no stop ever looked halted), and a stop wrongly
     * called halted would let a simulator skip a running guest's frames. */
    send_next = send_next && qsync__stop_timer_can_tell_halted() &&
                info->system.smp_vcpus == 1 && info->system.max_vcpus <= 1;
    if (send_next)
        h->guarantees |= QSYNC__WIRE_G_NEXT;
    if (info->target_name != NULL)
        strncpy(h->target, info->target_name, sizeof h->target - 1);

    int rc = send_msg(&msg);
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
    .exit = native_exit,
    .watch = native_watch,
};

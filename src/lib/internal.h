/*
 * libqsync's private definitions, shared by the files of src/lib/.
 *
 * Each piece of state has one owner, the file that writes it; the others
 * read it, or ask the owner through the functions declared next to it.
 * docs/design.md ("Layering") draws who owns what and who may call whom.
 * In short: context.c owns the context's life cycle and decides alone that
 * a context has failed; the lower layers (the child, the transport, the
 * framing, the modes) report upward through the qsync__on_*() events
 * declared at the end of this file, with a code and a message.
 */
#ifndef QSYNC_LIB_INTERNAL_H
#define QSYNC_LIB_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>

#include "qsync/qsync.h"
#include "wire.h"

#define QSYNC__ERRMSG_MAX 1536

/* QEMU's descriptors: what the child inherits where. */
#define QSYNC__CHILD_GRANT_FD 3  /* it reads grants                      */
#define QSYNC__CHILD_REPORT_FD 4 /* it writes reports                    */
#define QSYNC__CHILD_SHM_FD 5    /* the shared-memory region             */
#define QSYNC__CHILD_EFD 6       /* the eventfd it writes to wake us     */

/*
 * child.c: QEMU's process and its stdio. The stderr tail is a ring of the
 * last stderr_tail_bytes; forward.c counts what the caller's stderr could
 * not take.
 */
struct qsync__child {
    uv_process_t proc;
    int alive;  /* spawned: the process handle is open       */
    int exited; /* its exit has been seen                    */
    int64_t exit_status;
    int term_signal;
    uv_timer_t kill_timer; /* SIGKILL after the grace period    */

    uv_pipe_t err_pipe;
    int err_open;
    int err_eof;
    char *tail;      /* ring of the last stderr bytes */
    size_t tail_cap; /* opts.stderr_tail_bytes        */
    size_t tail_len;
    size_t tail_pos;
    char *tail_text; /* linearised copy for the exited callback */
    uint64_t stderr_dropped;        /* forward.c: bytes the caller's stderr could not take */
    uint64_t stderr_dropped_unsaid; /* of those, not yet mentioned there                   */

    uv_pipe_t out_pipe; /* the guest's stdout, when it goes to a callback */
    int out_open;
    int out_child_fd;   /* the pipe's write end, QEMU's stdout, until spawned; -1 */
};

/*
 * A transport carries frames between the library and QEMU. Its state is
 * struct qsync__transport; its behaviour, one of two ops tables:
 * - the pipes (transport_pipe.c): grants are written to grant_fd, what
 *   QEMU sends arrives on the report pipe `in`, read on the loop;
 * - shared memory (transport_shm.c): frames travel in two rings in a memfd
 *   mapping (state behind `shm`). The pipes stay, for their ends of file
 *   only: closing grant_fd still ends QEMU, and the report pipe's end of
 *   file still says QEMU is gone.
 * The pipes' fields belong to transport_pipe.c in both cases.
 */
struct qsync__transport_ops {
    const char *name;
    /* QEMU runs: watch what comes back on the loop (the pipe is watched
     * already). */
    int (*start)(qsync_ctx *ctx);
    /* Writes one frame to QEMU (grant_fd is known to be open). */
    int (*send)(qsync_ctx *ctx, const void *buf, size_t len);
    /* n bytes arrived on the report pipe, at the framing's free space. */
    void (*pipe_bytes)(qsync_ctx *ctx, size_t n);
    /* The report pipe ended: take what is left before the end is told. */
    void (*at_eof)(qsync_ctx *ctx);
    /* Blocking helpers: polls for a bounded time until *flag is set. */
    void (*spin)(qsync_ctx *ctx, const int *flag);
    /* Releases what the transport made. Any path, more than once. */
    void (*release)(qsync_ctx *ctx);
};

struct qsync__shm; /* transport_shm.c */

struct qsync__transport {
    const struct qsync__transport_ops *ops;
    uv_pipe_t in; /* the report pipe, read on the loop  */
    int in_open;
    int eof;
    int grant_fd;
    /* Our copy of the grant pipe's read end, kept open so that a grant
     * can never raise SIGPIPE (QEMU's death is learnt from the report
     * pipe and the exit instead), which spares the signal-mask system
     * calls on every grant. -1 in FIFO mode. */
    int grant_reader_fd;
    struct qsync__shm *shm; /* NULL on the pipes */
};

/* channel.c: the framing, what has arrived and is not a whole message yet. */
struct qsync__framing {
    uint8_t buf[QSYNC__WIRE_MAX_FRAME * 2];
    size_t len;
};

/* lines.c: stdout_mode LINES, the bytes held until their stop. */
struct qsync__lines {
    char *buf;
    size_t len;
};

struct qsync_ctx {
    uv_loop_t *loop;
    uv_loop_t private_loop;
    int has_private_loop;
    void *data;

    qsync_options opts; /* strings below are our own copies */
    const struct qsync__mode *mode;
    void *mode_state; /* the mode's own, behind its pointer */
    char *plugin_path;
    char *plugin_args;
    char fifo_keys[3][64]; /* the FIFO plugin's option names: HostToGuest,
                              GuestToHost, the quantum */
    qsync_callbacks cbs;

    /* Life cycle (context.c). */
    int started;      /* qsync_start() succeeded                           */
    int closing;      /* qsync_close() called                              */
    int fatal;        /* the error that broke the context, or 0            */
    int terminating;  /* the channel was closed to end QEMU                */
    int in_callback;  /* depth of user callbacks on the stack              */
    qsync_close_cb close_cb;
    int handles_open; /* uv handles whose close callback is still due      */
    int start_cleanup; /* handles of a failed start still being closed     */
    int freed_by_waiter; /* qsync_close_wait() frees, not the close callback */
    int exited_fired;
    int by_close;     /* the library's close ended a QEMU still running   */
    int exit_msg_seen; /* the plugin said the guest is ending (EXIT)      */

    /* Timers (context.c): the start and advance watchdog, and the wait
     * for the last output after exit. */
    uv_timer_t watchdog;
    uv_timer_t drain_timer;

    struct qsync__child child;         /* child.c               */
    struct qsync__transport transport; /* transport_*.c         */
    struct qsync__framing framing;     /* channel.c             */
    struct qsync__lines lines;         /* lines.c               */

    /* Handshake (plugin mode), or the facts a mode knows without one. */
    int have_hello;
    struct qsync__wire_hello hello;

    /* Guest input sent since the last grant (qsync_send_input). */
    size_t input_since_grant;

    /* Halted stops (qsync_options.next_event): a NEXT waiting for its
     * REPORT, and what the last stop said (qsync_next_event_ns). */
    int next_hint_set;
    uint64_t next_hint;
    int stop_halted;
    uint64_t stop_next;

    /* Time. */
    uint64_t now_ns;      /* deadline of the last completed advance */
    uint64_t pending_seq; /* 0 when no advance is pending           */
    uint64_t pending_deadline;
    uint64_t next_seq;
    uint64_t last_virtual_ns;
    uint64_t last_instructions;
    int answered; /* an advance has completed: QEMU is up and answering */

    /* NICs and the frames waiting for their grant (nic.c); NULL until
     * the first qsync_nic_add(). */
    struct qsync__nics *nics;

    /* The group this context belongs to (written by group.c only). */
    struct qsync_group *group;

    /* Blocking helpers. wait_owed: an advance was made whose outcome no
     * blocking call has returned yet (qsync_wait_reached). */
    int wait_owed;
    int wait_done;
    int wait_status;
    qsync_stop wait_stop;

    char errmsg[QSYNC__ERRMSG_MAX];
    int errcode; /* the code errmsg was written for */
};

/*
 * What a mode's prepare gives the spawn: the arguments appended to the
 * user's argv (argv.c builds them) and the descriptors of the channel.
 */
struct qsync__launch {
    const char *args[40]; /* appended to the user's argv                   */
    size_t n_args;
    char store[24][8192]; /* storage for args that are built               */
    size_t n_store;
    int child_in;  /* becomes QEMU's fd 3 (it reads grants), or -1          */
    int child_out; /* becomes QEMU's fd 4 (it writes reports), or -1        */
    int our_in;    /* where QEMU's messages arrive, read on the loop        */
    int our_out;   /* where grants go (grant_fd), or -1                     */
    int keep_reader; /* keep child_in open on our side (grant_reader_fd)    */
    int child_shm; /* becomes QEMU's fd 5: the shared-memory region, or -1  */
    int child_efd; /* becomes QEMU's fd 6: the eventfd (kept by us), or -1  */
};

/*
 * A mode is the protocol spoken with QEMU: the native one with our plugin,
 * The adevs -qqq protocol's pipes, or the SIL Kit Time Sync Plugin FIFO
 * protocol. The context's state machine is the same for all three; a mode
 * adds QEMU's arguments, encodes grants and decodes what comes back. Its
 * own state hangs from ctx->mode_state.
 */
struct qsync__mode {
    const char *name;
    /* For messages about a QEMU that is not ready yet: what it has not
     * done ("sent no handshake"), and the moment ("the plugin's
     * handshake"). The FIFO protocol has no handshake: it never says so. */
    const char *not_ready;
    const char *ready_moment;
    /* Ready as soon as QEMU is spawned (no handshake: qqq): the first
     * answer then also waits for QEMU's start-up. */
    int ready_at_spawn;
    /* Makes ctx->mode_state, at qsync_ctx_new() (optional); -ENOMEM. */
    int (*init)(qsync_ctx *ctx);
    /* Adds QEMU arguments and creates the channel's descriptors. */
    int (*prepare)(qsync_ctx *ctx, const char *const argv[], struct qsync__launch *l);
    /* QEMU runs; the channel is being read. */
    void (*started)(qsync_ctx *ctx);
    /* Checks and sends a grant; the pending state is set by the caller. */
    int (*grant)(qsync_ctx *ctx, uint64_t seq, uint64_t deadline_ns, uint64_t delta_ns);
    /* Consumes whole messages from buf; returns the bytes used. */
    size_t (*consume)(qsync_ctx *ctx, const uint8_t *buf, size_t len);
    /* Releases what prepare made (a FIFO directory). Any path, any time. */
    void (*cleanup)(qsync_ctx *ctx);
    /* QEMU's process has exited (optional). */
    void (*exited)(qsync_ctx *ctx);
    /* Sends guest input for the current stop (optional: NULL where the
     * mode cannot). */
    int (*input)(qsync_ctx *ctx, const void *data, size_t len);
    /* The context closes: close the mode's handles (optional). */
    void (*close)(qsync_ctx *ctx);
    /* Frees ctx->mode_state; its handles are closed (optional). */
    void (*fini)(qsync_ctx *ctx);
};

extern const struct qsync__mode qsync__mode_plugin;
extern const struct qsync__mode qsync__mode_qqq;
extern const struct qsync__mode qsync__mode_fifo;

/* ---- errors.c ------------------------------------------------------------ */
/* Sets qsync_last_error()'s text and returns code. */
int qsync__set_error(qsync_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sets "<what>: out of memory" and returns -ENOMEM. */
int qsync__nomem(qsync_ctx *ctx, const char *what);

/* ---- nic.c: NICs and frames --------------------------------------------- */
unsigned qsync__nic_count(const qsync_ctx *ctx);
const qsync_nic_info *qsync__nic_infos(const qsync_ctx *ctx);
/* Adds the NICs' devices to QEMU's arguments and nics= to the plugin's
 * options (plugin_opts, a string of cap bytes). */
int qsync__nic_prepare(qsync_ctx *ctx, const char *qemu, struct qsync__launch *l,
                       char *plugin_opts, size_t cap);
/* A hint for an early exit whose last line is about a NIC's device. */
void qsync__nic_exit_hint(const qsync_ctx *ctx, const char *last, char *out, size_t cap);
/* Fails the context (and returns -1) when NICs were asked for and the
 * plugin's HELLO does not offer them. */
int qsync__nic_check_hello(qsync_ctx *ctx, const struct qsync__wire_hello *h);
/* Sends the frames due before deadline_ns, ahead of its grant. */
int qsync__nic_before_grant(qsync_ctx *ctx, uint64_t deadline_ns);
void qsync__nic_on_frame(qsync_ctx *ctx, const struct qsync__wire_frame *f);
void qsync__nic_on_status(qsync_ctx *ctx, const struct qsync__wire_nic_status *s);
/* The earliest time of the frames qsync_send_frame() has queued and not
 * yet handed to the plugin; UINT64_MAX when none. */
uint64_t qsync__nic_earliest(const qsync_ctx *ctx);
void qsync__nic_free(qsync_ctx *ctx);
/* context.c: the fatal error, for a call refused because of it. */
int qsync__refuse_failed(qsync_ctx *ctx, const char *what);

/* ---- options.c ----------------------------------------------------------- */
int qsync__options_copy(qsync_ctx *ctx, const qsync_options *opts, char *errbuf,
                        size_t errbuf_len);
int qsync__find_plugin(qsync_ctx *ctx);

/* ---- argv.c: QEMU's command line ---------------------------------------- */
/* QSYNC_EARG unless argv names a binary and is of a sane length. */
int qsync__argv_check(qsync_ctx *ctx, const char *const argv[], size_t *argc);
/* Whether argv holds opt (as -opt or --opt). */
int qsync__argv_has(const char *const argv[], const char *opt);
/* Appends an argument built with printf; -1 when it does not fit. */
int qsync__launch_add(struct qsync__launch *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends "-plugin file=PATH,<rest>" with the path's commas doubled. */
int qsync__launch_plugin(qsync_ctx *ctx, struct qsync__launch *l, const char *rest);
/* A launch with no descriptors; -ENOMEM (message set). */
int qsync__launch_new(qsync_ctx *ctx, struct qsync__launch **out);
/* Closes the descriptors still held by l and frees it. */
void qsync__launch_free(struct qsync__launch *l);
/* The user's argv followed by the mode's arguments (a NULL-ended array to
 * free; the strings stay argv's and l's); -ENOMEM (message set). */
int qsync__launch_argv(qsync_ctx *ctx, const char *const argv[], size_t argc,
                       const struct qsync__launch *l, const char ***out);

/* ---- child.c: QEMU's process --------------------------------------------- */
void qsync__child_init(qsync_ctx *ctx); /* at qsync_ctx_new: its timer */
/* Starts QEMU with args and the descriptors of l (those given to the
 * child are closed on our side after the spawn). Error set. */
int qsync__child_spawn(qsync_ctx *ctx, const char *const args[], struct qsync__launch *l);
/* Reads QEMU's stderr and stdout on the loop (after the spawn). */
int qsync__child_read_start(qsync_ctx *ctx);
/* Closes the stdio handles of a start that failed. */
void qsync__child_abort_start(qsync_ctx *ctx);
/* SIGKILL after kill_grace_ms, if QEMU is still running. */
void qsync__child_kill_later(qsync_ctx *ctx);
/* QEMU's process has exited: the kill is off. */
void qsync__child_exited(qsync_ctx *ctx, int64_t status, int signal);
/* The last non-empty line of QEMU's stderr read so far, into out. */
/* Forwards what QEMU has written to its stderr and the loop has not read
 * yet (before a close, which stops the forwarding). */
void qsync__drain_stderr(qsync_ctx *ctx);
void qsync__child_last_line(const qsync_ctx *ctx, char *out, size_t cap);
/* The whole tail as one string (owned by the child), or NULL. */
const char *qsync__child_tail_text(qsync_ctx *ctx);
void qsync__child_close(qsync_ctx *ctx); /* closes its handles */
void qsync__child_free(qsync_ctx *ctx);
/* Reads what is waiting in the output pipe (stdout_mode CALLBACK or
 * LINES) without blocking and hands it over, in order with what the loop
 * reads. */
void qsync__drain_output(qsync_ctx *ctx);

/* forward.c: hands a chunk of QEMU's stderr to the stderr_output callback,
 * or writes what the caller's stderr takes at once and counts the rest. */
void qsync__forward_stderr(qsync_ctx *ctx, const char *p, size_t n);

/* ---- lines.c: guest output by lines (stdout_mode QSYNC_OUTPUT_LINES) ----- */
int qsync__lines_init(qsync_ctx *ctx); /* at start; -ENOMEM (message set) */
void qsync__lines_free(qsync_ctx *ctx);
void qsync__lines_add(qsync_ctx *ctx, const char *data, size_t len);
void qsync__lines_at_stop(qsync_ctx *ctx, uint64_t virtual_ns);
void qsync__lines_at_end(qsync_ctx *ctx); /* QEMU is gone: all that is held */

/* ---- transport_pipe.c and transport_shm.c --------------------------------- */
extern const struct qsync__transport_ops qsync__transport_pipe;
extern const struct qsync__transport_ops qsync__transport_shm;
void qsync__transport_init(qsync_ctx *ctx); /* at qsync_ctx_new */
/* The grant and report pipes of the plugin and qqq modes, set in l: QEMU
 * gets child_in (fd 3) and child_out (fd 4). */
int qsync__transport_pipes(qsync_ctx *ctx, struct qsync__launch *l);
/* Whether this start asks for shared memory: channel SHM or AUTO. */
int qsync__transport_shm_wanted(const qsync_ctx *ctx);
/* Makes the shared memory, sets child_shm and child_efd, and selects the
 * shared-memory ops. Error set. */
int qsync__transport_shm_prepare(qsync_ctx *ctx, struct qsync__launch *l);
/* Takes l's our_in and our_out, and watches our_in on the loop. */
int qsync__transport_start(qsync_ctx *ctx, struct qsync__launch *l);
/* Writes a frame: QSYNC_EEXITED when the channel is closed. */
int qsync__transport_send(qsync_ctx *ctx, const void *buf, size_t len);
int qsync__transport_can_send(const qsync_ctx *ctx);
/* FIFO mode opens its grant descriptor late. */
void qsync__transport_set_grant_fd(qsync_ctx *ctx, int fd);
/* Closes grant_fd: the plugin ends QEMU. */
void qsync__transport_hangup(qsync_ctx *ctx);
/* Closes both ends of the grant pipe that the library holds. */
void qsync__transport_close_fds(qsync_ctx *ctx);
/* Reads what waits on the report pipe now, then ends it (FIFO mode, where
 * no end of file comes). */
void qsync__transport_end_now(qsync_ctx *ctx);
/* The blocking helpers' bounded polling (shared memory only). */
void qsync__transport_spin(qsync_ctx *ctx, const int *flag);
void qsync__transport_close(qsync_ctx *ctx); /* closes its handles */
void qsync__transport_release(qsync_ctx *ctx);
/* The transport's state, at qsync_ctx_new() once the options are known;
 * -ENOMEM. Freed with the context. */
int qsync__transport_new(qsync_ctx *ctx);
void qsync__transport_free(qsync_ctx *ctx);

/* ---- channel.c: the framing ---------------------------------------------- */
/* The free space where a transport puts what arrives. */
uint8_t *qsync__framing_space(qsync_ctx *ctx, size_t *room);
/* n bytes were put there: hands whole messages to the mode. */
void qsync__framing_received(qsync_ctx *ctx, size_t n);
/* The stream ended: a partial message is a protocol error. */
void qsync__framing_ended(qsync_ctx *ctx);

/* ---- context.c: the life cycle, and the events from the layers below ---- */
int qsync__close(qsync_ctx *ctx, qsync_close_cb cb); /* any loop */
/* The one check of an advance, for qsync_advance_to_ns() and groups:
 * QSYNC_ESTATE, QSYNC_EBUSY, the fatal error, or QSYNC_ERANGE (message
 * set, prefixed with what). */
int qsync__check_advance(qsync_ctx *ctx, uint64_t deadline, const char *what);
/* Whether the context takes no more messages (failed or closing). */
int qsync__ctx_done(const qsync_ctx *ctx);
void qsync__on_hello(qsync_ctx *ctx, const struct qsync__wire_hello *h);
void qsync__on_report(qsync_ctx *ctx, const struct qsync__wire_report *r);
void qsync__on_next(qsync_ctx *ctx, const struct qsync__wire_next *n);
void qsync__on_exit_msg(qsync_ctx *ctx, const struct qsync__wire_exit *e);
/* The pending advance is done: stop describes it; now_ns moves to next_now. */
void qsync__on_complete(qsync_ctx *ctx, const qsync_stop *stop, uint64_t next_now);
/* The channel is up (no handshake in qqq and FIFO modes). */
void qsync__on_ready(qsync_ctx *ctx);
/* Something broke: code, and the message (printf; NULL when the call that
 * returned code has set it). The context decides what follows: it fails,
 * ends QEMU and tells the user. Ignored once the context has failed. */
void qsync__on_failure(qsync_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void qsync__on_channel_eof(qsync_ctx *ctx);
void qsync__on_proc_exit(qsync_ctx *ctx, int64_t status, int signal);
void qsync__on_stdio_eof(qsync_ctx *ctx);
/* Arms the one watchdog afresh for what the context waits for now. */
void qsync__watchdog_arm(qsync_ctx *ctx);
/* The open-handle count: every uv handle of the context is opened with
 * qsync__handle_opened() and closed with qsync__handle_close(), or, in a
 * start that failed, qsync__handle_close_failed_start(). */
void qsync__handle_opened(qsync_ctx *ctx, uv_handle_t *h);
void qsync__handle_close(uv_handle_t *h);
void qsync__handle_close_failed_start(uv_handle_t *h);
/* Frees the context's memory; its handles must all be closed. */
void qsync__free_ctx(qsync_ctx *ctx);

/* ---- group.c: membership, as the context sees it ------------------------- */
/* The member's reached is due: returns its group if the group's advance is
 * the one that completed (to be told with qsync__group_done() after the
 * member's own callback), else NULL. */
qsync_group *qsync__group_take(qsync_ctx *ctx);
void qsync__group_done(qsync_group *g, int status);
/* The context leaves its group (it is being freed). */
void qsync__group_leave(qsync_ctx *ctx);

/*
 * Starts a library timer measured from now. A loop's cached time is that
 * of its last iteration's start: a caller that spent a while on its own
 * work since (between two blocking calls, or inside a callback on its own
 * loop) would otherwise have every watchdog fire at once. Every timer the
 * library arms goes through here.
 */
static inline int qsync__timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t timeout_ms,
                                     uint64_t repeat_ms)
{
    uv_update_time(t->loop);
    return uv_timer_start(t, cb, timeout_ms, repeat_ms);
}

/* Calls a user callback with the in-callback depth raised. */
#define QSYNC__CALL(ctx, cb, ...)            \
    do {                                     \
        if ((ctx)->cbs.cb) {                 \
            (ctx)->in_callback++;            \
            (ctx)->cbs.cb((ctx), __VA_ARGS__); \
            (ctx)->in_callback--;            \
        }                                    \
    } while (0)

#endif

/*
 * libqsync's private definitions, shared by the files of src/lib/.
 *
 * Files: context.c (life cycle, state, advance, close), spawn.c (the QEMU
 * command line and the child process), forward.c (QEMU's stderr to the
 * caller's), channel.c (reading and writing the native protocol on the
 * loop), blocking.c (the private-loop helpers), errors.c (codes and text),
 * options.c (defaults, validation, the plugin's location), shm_channel.c
 * (the shared-memory transport).
 */
#ifndef QSYNC_LIB_INTERNAL_H
#define QSYNC_LIB_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>

#include "qsync/qsync.h"
#include "shm.h"
#include "wire.h"

#define QSYNC__ERRMSG_MAX 1536

struct qsync_ctx {
    uv_loop_t *loop;
    uv_loop_t private_loop;
    int has_private_loop;
    void *data;

    qsync_options opts; /* strings below are our own copies */
    const struct qsync__mode *mode;
    char *plugin_path;
    char *plugin_args;
    qsync_callbacks cbs;

    /* Life cycle. */
    int started;      /* qsync_start() succeeded                           */
    int closing;      /* qsync_close() called                              */
    int fatal;        /* the error that broke the context, or 0            */
    int terminating;  /* the channel was closed to end QEMU                */
    int in_callback;  /* depth of user callbacks on the stack              */
    qsync_close_cb close_cb;
    int handles_open; /* uv handles whose close callback is still due      */
    int start_cleanup; /* handles of a failed start still being closed     */
    int freed_by_waiter; /* qsync_close_wait() frees, not the close callback */

    /* QEMU. */
    uv_process_t proc;
    int proc_alive;
    int proc_exited;
    int64_t exit_status;
    int term_signal;
    int exited_fired;
    int by_close;     /* the library's close ended a QEMU still running   */
    int exit_msg_seen; /* the plugin said the guest is ending (EXIT)      */

    /* The channel: reports arrive on ch_in (a uv pipe); grants are written
     * to grant_fd directly, because they are small and there is never more
     * than one in flight. */
    uv_pipe_t ch_in;
    int ch_in_open;
    int ch_eof;
    int grant_fd;
    /* Our copy of the grant pipe's read end, kept open so that a grant
     * can never raise SIGPIPE (QEMU's death is learnt from the report
     * pipe and the exit instead), which spares the signal-mask system
     * calls on every grant. -1 in FIFO mode. */
    int grant_reader_fd;
    uint8_t rbuf[QSYNC__WIRE_MAX_FRAME * 2];
    size_t rlen;

    /* QEMU's stderr (always) and stdout (when delivered to a callback). */
    uv_pipe_t err_pipe;
    int err_open;
    int err_eof;
    char *tail;      /* ring of the last stderr bytes */
    size_t tail_cap; /* opts.stderr_tail_bytes        */
    size_t tail_len;
    size_t tail_pos;
    char *tail_text; /* linearised copy for the exited callback */
    uint64_t stderr_dropped;        /* bytes the caller's stderr could not take */
    uint64_t stderr_dropped_unsaid; /* of those, not yet mentioned there        */
    uv_pipe_t out_pipe;
    int out_open;
    /* stdout_mode LINES (lines.c): the bytes held until their stop. */
    char *lines;
    size_t lines_len;

    /* Timers: the start and advance watchdog, the kill grace after the
     * channel is closed, and the wait for the last output after exit. */
    uv_timer_t watchdog;
    uv_timer_t kill_timer;
    uv_timer_t drain_timer;

    /* Handshake (plugin mode), or the facts a mode knows without one. */
    int have_hello;
    struct qsync__wire_hello hello;

    /* Guest input sent since the last grant (qsync_send_input). */
    size_t input_since_grant;

    /* qqq mode: the grant in flight, in microseconds. */
    int32_t qqq_req_us;

    /* Legacy FIFO mode. */
    char *fifo_dir;   /* private 0700 directory, removed on every path */
    char *fifo_h2g;   /* HostToGuest: we write one byte per quantum    */
    char *fifo_g2h;   /* GuestToHost: one or two bytes per quantum done */
    uv_timer_t fifo_open_timer;
    int fifo_timer_open;
    uint64_t fifo_quanta_done; /* quanta the guest has finished        */
    uint64_t fifo_target;      /* quanta the pending advance ends at   */
    int fifo_running;          /* the guest is inside a quantum        */
    int fifo_signal_bytes;     /* bytes of the last done signal        */
    char fifo_keys[3][64];     /* the plugin's option names: HostToGuest,
                                  GuestToHost, the quantum              */

    /* Time. */
    uint64_t now_ns;      /* deadline of the last completed advance */
    uint64_t pending_seq; /* 0 when no advance is pending           */
    uint64_t pending_deadline;
    uint64_t next_seq;
    uint64_t last_virtual_ns;
    uint64_t last_instructions;
    int answered; /* an advance has completed: QEMU is up and answering */

    /* The group this context belongs to, and whether the group's advance
     * is the one pending on it. */
    struct qsync_group *group;
    int group_pending;

    /* Blocking helpers. wait_owed: an advance was made whose outcome no
     * blocking call has returned yet (qsync_wait_reached). */
    int wait_owed;
    int wait_done;
    int wait_status;
    qsync_stop wait_stop;

    /*
     * The shared-memory transport (plugin mode with channel SHM or AUTO;
     * shm_channel.c, src/proto/shm.h). Frames travel in two rings in a
     * memfd mapping; the pipes stay, for their ends of file only: closing
     * grant_fd still ends QEMU, and ch_in's end of file still says QEMU is
     * gone. The plugin writes shm_efd when the library waits for a frame;
     * shm_poll watches it on the loop. shm_base is NULL on pipes, and the
     * other fields mean something only while it is set.
     */
    void *shm_base;
    struct qsync__shm_ring shm_out; /* to the plugin: GRANT            */
    struct qsync__shm_ring shm_in;  /* to the library: HELLO, REPORT... */
    int shm_efd;
    uv_poll_t shm_poll;
    int shm_poll_open;
    struct qsync__shm_spinner shm_spinner; /* how long the blocking helpers poll */
    unsigned shm_streak;   /* advances completed by polling in a row       */

    char errmsg[QSYNC__ERRMSG_MAX];
};

/*
 * A mode is the protocol spoken with QEMU: the native one with our plugin,
 * seed 002's -qqq pipes, or seed 000's legacy FIFOs. The context's state
 * machine is the same for all three; a mode adds QEMU's arguments, encodes
 * grants and decodes what comes back.
 */
struct qsync__launch {
    const char *args[12]; /* appended to the user's argv                   */
    size_t n_args;
    char store[6][8192];  /* storage for args that are built                */
    size_t n_store;
    int child_in;  /* becomes QEMU's fd 3 (it reads grants), or -1          */
    int child_out; /* becomes QEMU's fd 4 (it writes reports), or -1        */
    int our_in;    /* where QEMU's messages arrive, read on the loop        */
    int our_out;   /* where grants go (ctx->grant_fd), or -1                */
    int keep_reader; /* keep child_in open on our side (see grant_reader_fd) */
    int child_shm; /* becomes QEMU's fd 5: the shared-memory region, or -1  */
    int child_efd; /* becomes QEMU's fd 6: ctx->shm_efd (kept), or -1       */
};

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
};

extern const struct qsync__mode qsync__mode_plugin;
extern const struct qsync__mode qsync__mode_qqq;
extern const struct qsync__mode qsync__mode_fifo;

/* errors.c */
int qsync__set_error(qsync_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets "<what>: out of memory" and returns -ENOMEM. */
int qsync__nomem(qsync_ctx *ctx, const char *what);

/* options.c */
int qsync__options_copy(qsync_ctx *ctx, const qsync_options *opts, char *errbuf,
                        size_t errbuf_len);
int qsync__find_plugin(qsync_ctx *ctx);

/* spawn.c */
int qsync__spawn(qsync_ctx *ctx, const char *const argv[]);
void qsync__terminate(qsync_ctx *ctx);
int qsync__argv_has(const char *const argv[], const char *opt);
/* Appends an argument built with printf; -1 when it does not fit. */
int qsync__launch_add(struct qsync__launch *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends "-plugin file=PATH,<rest>" with the path's commas doubled. */
int qsync__launch_plugin(qsync_ctx *ctx, struct qsync__launch *l, const char *rest);
/* Makes a close-on-exec pipe: [0] read end, [1] write end. */
int qsync__pipe(qsync_ctx *ctx, int fds[2]);
/* The grant and report pipes of the plugin and qqq modes, set in l: QEMU
 * gets child_in (fd 3) and child_out (fd 4). */
int qsync__launch_pipes(qsync_ctx *ctx, struct qsync__launch *l);

/* forward.c: hands a chunk of QEMU's stderr to the stderr_output callback,
 * or writes what the caller's stderr takes at once and counts the rest. */
void qsync__forward_stderr(qsync_ctx *ctx, const char *p, size_t n);

/* Reads what is waiting in the output pipe (stdout_mode CALLBACK) without
 * blocking and hands it to the output callback, in order with what the
 * loop reads. */
void qsync__drain_output(qsync_ctx *ctx);

/* lines.c: guest output by lines (stdout_mode QSYNC_OUTPUT_LINES). */
int qsync__lines_init(qsync_ctx *ctx); /* at start; -ENOMEM (message set) */
void qsync__lines_free(qsync_ctx *ctx);
void qsync__lines_add(qsync_ctx *ctx, const char *data, size_t len);
void qsync__lines_at_stop(qsync_ctx *ctx, uint64_t virtual_ns);
void qsync__lines_at_end(qsync_ctx *ctx); /* QEMU is gone: all that is held */

/* channel.c */
int qsync__channel_start(qsync_ctx *ctx, int fd);
int qsync__write_grant(qsync_ctx *ctx, const void *buf, size_t len);
/* Hands the bytes gathered in rbuf to the mode; keeps a partial frame. */
void qsync__channel_deliver(qsync_ctx *ctx);

/* shm_channel.c: the shared-memory transport (see the fields above). */
#define QSYNC__CHILD_SHM_FD 5
#define QSYNC__CHILD_EFD 6
/* Whether this start uses it: channel SHM, or AUTO where it can be made. */
int qsync__shm_wanted(const qsync_ctx *ctx);
/* Creates the region and the eventfd, and sets child_shm and child_efd.
 * Returns 0 or an error (already set on ctx). */
int qsync__shm_launch(qsync_ctx *ctx, struct qsync__launch *l);
/* Watches the eventfd on the loop (after the spawn). */
int qsync__shm_start(qsync_ctx *ctx);
/* Reads what the plugin has put in the ring and delivers it. */
void qsync__shm_drain(qsync_ctx *ctx);
/* The end of the report pipe: last frames are drained, the watch stops. */
void qsync__shm_eof(qsync_ctx *ctx);
/* Writes a frame to the plugin and wakes it if it sleeps. */
int qsync__shm_send(qsync_ctx *ctx, const void *buf, size_t len);
/* Blocking helpers: polls the ring for a bounded time until *flag is set,
 * before the caller runs the loop. */
void qsync__shm_spin(qsync_ctx *ctx, const int *flag);
/* Unmaps, closes the eventfd and its watch. Any path, more than once. */
void qsync__shm_release(qsync_ctx *ctx);

/* context.c: events from the other files. */
int qsync__close(qsync_ctx *ctx, qsync_close_cb cb); /* any loop */
/* QSYNC_ERANGE (message set, prefixed with what) unless the deadline is
 * at or after the context's time and at most QSYNC_DEADLINE_MAX. */
int qsync__check_deadline(qsync_ctx *ctx, uint64_t deadline, const char *what);
void qsync__on_hello(qsync_ctx *ctx, const struct qsync__wire_hello *h);
void qsync__on_report(qsync_ctx *ctx, const struct qsync__wire_report *r);
void qsync__on_exit_msg(qsync_ctx *ctx, const struct qsync__wire_exit *e);
/* The pending advance is done: stop describes it; now_ns moves to next_now. */
void qsync__complete(qsync_ctx *ctx, const qsync_stop *stop, uint64_t next_now);
/* The channel is up (no handshake in qqq and FIFO modes). */
void qsync__ready(qsync_ctx *ctx);
void qsync__fail(qsync_ctx *ctx, int code); /* fatal: ends QEMU, tells the user */
/* Arms the one watchdog afresh for what the context waits for now. */
void qsync__watchdog_arm(qsync_ctx *ctx);
void qsync__on_channel_eof(qsync_ctx *ctx);
void qsync__on_proc_exit(qsync_ctx *ctx, int64_t status, int signal);
void qsync__maybe_finish_exit(qsync_ctx *ctx);
void qsync__handle_closed(uv_handle_t *h);
/* Frees the context's memory; its handles must all be closed. */
void qsync__free_ctx(qsync_ctx *ctx);

/* group.c */
void qsync__group_done(qsync_group *g, int status);
void qsync__group_remove(qsync_ctx *ctx);

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

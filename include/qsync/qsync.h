/*
 * libqsync: step QEMU in lockstep with a simulator's clock.
 *
 * This is the one header a user includes. The library spawns QEMU with the
 * qsync plugin, owns the channel to it, and lets the caller grant virtual
 * time in quanta: qsync_advance(ctx, us) returns at once, QEMU runs the
 * quantum while the caller does its own work, and the reached callback
 * arrives on the caller's libuv loop when the guest is frozen exactly at the
 * deadline.
 *
 * Conventions that hold for every function below:
 * - Errors are negative: -errno for system failures, QSYNC_E* for the
 *   library's own. qsync_strerror() turns any of them into text, and
 *   qsync_last_error() gives the detail of the context's most recent one.
 * - Threads: a context belongs to the thread that runs its loop. Call every
 *   function that takes a context, and qsync_ctx_new() itself, from that
 *   thread (for a context on a private loop, the thread that created it).
 *   The other functions that take no context are thread-safe.
 * - Ownership: strings and arrays passed in are copied before the call
 *   returns; pointers handed to callbacks are valid only during the callback.
 * - Callbacks: the object comes first, then the status. If a call returns an
 *   error, the callback it would have caused never fires.
 * - Every call on a context that returns an error sets qsync_last_error()
 *   (qsync_get_info(), which takes a const context, excepted); whether
 *   the context still works is qsync_failed(). A function whose comment
 *   names no error code cannot fail.
 * This header is the reference for every function; docs/api.md is the
 * guide (concepts, patterns, examples).
 */
#ifndef QSYNC_QSYNC_H
#define QSYNC_QSYNC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "qsync/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(QSYNC_STATIC)
#define QSYNC_EXPORT
#elif defined(__GNUC__)
#define QSYNC_EXPORT __attribute__((visibility("default")))
#else
#define QSYNC_EXPORT
#endif

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */

/*
 * The library's own error codes. One table makes the enum, qsync_strerror()
 * and qsync_err_name(). The values sit far below any -errno.
 */
#define QSYNC_ERRNO_MAP(XX)                                                          \
    XX(ARG, -30001, "invalid argument")                                              \
    XX(STATE, -30002, "not allowed in the context's current state")                 \
    XX(BUSY, -30003, "an advance is already pending")                               \
    XX(PROTO, -30004, "protocol error on the channel to QEMU")                      \
    XX(VERSION, -30005, "the plugin speaks an incompatible protocol version")       \
    XX(EXITED, -30006, "QEMU has exited")                                           \
    XX(TIMEDOUT, -30007, "QEMU did not answer in time")                             \
    XX(PLUGIN, -30008, "the qsync plugin reported an error")                        \
    XX(CANCELED, -30009, "cancelled: the context was closed")                       \
    XX(RECURSE, -30010, "not allowed from inside a callback")                       \
    XX(NOPLUGIN, -30011, "the qsync plugin module was not found")                   \
    XX(RANGE, -30012, "the deadline is out of range")                               \
    XX(NOTSUP, -30013, "not supported by this mode or this QEMU")                   \
    XX(FULL, -30014, "the channel to QEMU is full")                                 \
    XX(CLEANUP, -30015, "a failed start is still being cleaned up; run the loop")        \
    XX(NODRIVER, -30016, "the guest never turned its NIC's receiver on (no driver?)")

typedef enum {
#define QSYNC_ERR_ENUM_(name, value, text) QSYNC_E##name = value,
    QSYNC_ERRNO_MAP(QSYNC_ERR_ENUM_)
#undef QSYNC_ERR_ENUM_
    QSYNC_E_MAX_ = -30000
} qsync_errno;

/*
 * Text for any error code: a QSYNC_E* code, or a negative errno.
 * Thread-safe; the string is static. Unknown codes give "unknown error".
 */
QSYNC_EXPORT const char *qsync_strerror(int code);

/* The code's name, e.g. "QSYNC_EBUSY" or "EPIPE". Thread-safe; static. */
QSYNC_EXPORT const char *qsync_err_name(int code);

/*
 * Whether a code always means a broken context: QSYNC_EPROTO,
 * QSYNC_EVERSION, QSYNC_EEXITED, QSYNC_ETIMEDOUT, QSYNC_EPLUGIN and
 * QSYNC_ECANCELED. Every other code, a -errno included, is 0 here: a code
 * alone cannot say (-ENOMEM from qsync_send_input() leaves the context
 * intact; -EPIPE from a FIFO grant breaks it). The context itself is the
 * authority: qsync_failed(). Two returns of the codes above do not break
 * the context either: a failed qsync_start() (fix the cause and call it
 * again) and qsync_wait_exit_ms()'s QSYNC_ETIMEDOUT (QEMU still runs).
 * Thread-safe.
 */
QSYNC_EXPORT int qsync_is_fatal(int code);

/* ---------------------------------------------------------------------- */
/* Options                                                                 */

/* Which protocol the library speaks with QEMU (see docs/modes.md). */
typedef enum {
    QSYNC_MODE_PLUGIN = 0, /* our plugin, the native protocol: exact, reports
                              instructions per stop (the default)          */
    QSYNC_MODE_QQQ = 1,    /* The adevs -qqq protocol's pipes: native int microseconds */
    QSYNC_MODE_FIFO = 2    /* The Time Sync Plugin's two named FIFOs, a fixed quantum    */
} qsync_mode;

/* Where the guest's standard output (QEMU's stdout) goes. */
typedef enum {
    QSYNC_OUTPUT_INHERIT = 0, /* QEMU writes to the caller's stdout         */
    QSYNC_OUTPUT_CALLBACK = 1, /* delivered to callbacks.output              */
    QSYNC_OUTPUT_DISCARD = 2,  /* /dev/null                                  */
    QSYNC_OUTPUT_LINES = 3     /* whole lines to callbacks.output_line, each
                                * with the virtual time of the stop that
                                * ended its quantum                         */
} qsync_output_mode;

/* The longest line callbacks.output_line gets; longer ones come in pieces. */
#define QSYNC_LINE_MAX 4096u

/* How frames travel between the library and the plugin (plugin mode;
 * docs/protocol.md, "Shared-memory transport"). */
typedef enum {
    QSYNC_CHANNEL_AUTO = 0, /* shared memory where it can be set up, else pipes
                               (the default; docs/benchmarks.md says why)     */
    QSYNC_CHANNEL_PIPE = 1, /* two pipes: every frame a read() and a write()   */
    QSYNC_CHANNEL_SHM = 2   /* rings in a shared memfd: each side polls briefly,
                               then sleeps (a futex, an eventfd)              */
} qsync_channel;

/* The largest quantum_hint_ns the plugin takes: 10^15 ns (11.6 days). */
#define QSYNC_QUANTUM_HINT_MAX_NS 1000000000000000ull

/*
 * Options. Always fill with qsync_options_init() first, then set fields:
 * the init function records the struct's size, so that later versions can
 * add fields without breaking callers built against this one.
 */
typedef struct qsync_options {
    size_t size; /* set by qsync_options_init(); do not change */

    /* icount shift N: one guest instruction lasts 2^N ns. 0..10, default 0. */
    unsigned icount_shift;

    /* Path of libqsync-plugin.so. NULL (default): $QSYNC_PLUGIN, then
     * qsync/libqsync-plugin.so beside the shared library, then
     * ../lib/qsync/ beside the executable, then the installed one. */
    const char *plugin_path;

    /* Extra comma-separated key=value options for the plugin, e.g.
     * "engine=insn". NULL for none. Every item must be key=value, and the
     * keys the library sets itself are refused (QSYNC_EARG at
     * qsync_ctx_new()): fd_in, fd_out, shift, proto, quantum_ns, parent,
     * shm, efd, HostToGuestPipe, GuestToHostPipe, TimeInMicroSeconds,
     * TimeinMicroseconds, done_bytes and remove_fifos. */
    const char *plugin_args;

    /* QEMU's stdout; its stderr is always captured (see exited's tail) and
     * also forwarded to the caller's stderr unless quiet_stderr is set or
     * callbacks.stderr_output takes it. The forwarding never waits: what
     * the caller's stderr cannot take at once (a full pipe, a reader that
     * is gone) is dropped and counted (qsync_stderr_dropped()), and it
     * never raises SIGPIPE. */
    qsync_output_mode stdout_mode;
    int quiet_stderr;

    /* Bytes of QEMU's stderr kept for the exited callback. Default 4096. */
    size_t stderr_tail_bytes;

    /* Watchdog: fail an advance with QSYNC_ETIMEDOUT when QEMU has not
     * reached the deadline after this many wall-clock ms. 0 (default): none. */
    uint64_t advance_timeout_ms;

    /* Time QEMU has to start and load the plugin. Default 30000 ms. */
    uint64_t start_timeout_ms;

    /* On close: how long QEMU has to exit after its channel is closed
     * before it is sent SIGKILL. Default 1000 ms. */
    uint64_t kill_grace_ms;

    /* The protocol; default QSYNC_MODE_PLUGIN. */
    qsync_mode mode;

    /* QSYNC_MODE_QQQ: 0 (default) passes -qqq write=FD,read=FD to a QEMU
     * that has that option; 1 speaks the same protocol through our plugin
     * (-plugin ...,proto=qqq) on a stock QEMU. Either way the library adds
     * -icount 1,sleep=off and -rtc clock=vm unless argv has its own. */
    int qqq_use_plugin;

    /* QSYNC_MODE_FIFO: the quantum, fixed at start, passed to the plugin
     * as TimeinMicroseconds (fifo_quantum_key). Required in that mode (1..10^9). The plugin is
     * plugin_path (the Time Sync Plugin's own, or ours, the default); the library adds
     * -icount shift=0,sleep=off unless argv has its own -icount. */
    uint64_t fifo_quantum_us;

    /* Plugin mode: the quantum you expect to grant, in ns (0: unknown;
     * at most QSYNC_QUANTUM_HINT_MAX_NS). Passed to the plugin as
     * quantum_ns=, it lets engine=auto take the engine that is cheapest at
     * that size (docs/engines.md). */
    uint64_t quantum_hint_ns;

    /* Same-core placement: -1 (default) leaves placement to the kernel.
     * A CPU number pins the calling thread (the loop's) and QEMU, all its
     * threads, to that one core, where a round trip costs a quarter of a
     * cross-core one (docs/benchmarks.md). The pin is made at
     * qsync_start() and the calling thread keeps it. */
    int pin_cpu;

    /* The channel's transport in plugin mode: QSYNC_CHANNEL_AUTO (default),
     * _PIPE or _SHM. The qqq and FIFO modes always use their pipes or
     * FIFOs: _SHM there is refused (QSYNC_EARG). With _SHM, a failure to
     * create the shared memory fails qsync_start(); _AUTO then uses pipes. */
    qsync_channel channel;

    /* Shared-memory channel: how long qsync_advance_wait_ns() and
     * qsync_run_until_ns() poll for QEMU's answer before they sleep in the
     * loop, in ns. Polling spares a wake-up (tens of microseconds across
     * cores on a VM) but keeps a core busy; it is cut back by itself while
     * answers come later than this. Default 50000 (50 us); 0 never polls;
     * at most 10^9. Set it above a quantum's wall time (e.g. 1000000) to
     * dedicate a core to the controller. Never polls with pin_cpu. */
    uint64_t shm_poll_ns;

    /* QSYNC_MODE_FIFO: the plugin's option names for the FIFO it reads
     * (HostToGuest), the FIFO it writes (GuestToHost) and the quantum.
     * NULL (default): the Time Sync Plugin README's spelling,
     * "HostToGuestPipe", "GuestToHostPipe" and "TimeinMicroseconds". A
     * plugin built from its code reads "TimeInMicroSeconds" instead: set
     * fifo_quantum_key to that. Our plugin takes both spellings. Letters,
     * digits and '_', 1 to 63 of them. */
    const char *fifo_h2g_key;
    const char *fifo_g2h_key;
    const char *fifo_quantum_key;

    /* QSYNC_MODE_FIFO, our plugin: the bytes it writes after each quantum.
     * 0 (default) leaves its default, 2, which a controller that reads 1
     * or 2 bytes per quantum takes as one signal; 1 is what the Time Sync
     * Plugin itself wrote, for a controller that counts bytes
     * (docs/modes.md). The library takes either. Another plugin (one
     * without our FIFO keys) only with 0. */
    int fifo_done_bytes;

    /* Shared-memory channel, a context on the caller's loop: how long the
     * loop polls the channel for QEMU's answer after each advance, in ns,
     * before it sleeps again. 0 (default): never; the answer then wakes
     * the loop like any other event, which costs tens of microseconds
     * across cores on a VM. While it polls, the library holds the caller's
     * loop and keeps its core busy: the answer's callbacks run from inside
     * the poll, the advance they make is polled for in turn, and the
     * loop's other handles run only between polls, at least once every 64
     * answers. Set it above a quantum's wall time (e.g. 1000000) to trade a
     * core for the shortest stops. Cut back by itself while answers come
     * later than this, like shm_poll_ns; not used with pin_cpu, on a
     * private loop (the blocking helpers poll by shm_poll_ns) or on the
     * pipes. At most 10^9. */
    uint64_t async_poll_ns;

    /* Ask the plugin, at every stop, whether each vCPU is halted, and if
     * so when its clock's next timer is due, so that qsync_next_event_ns()
     * can tell when the guest can next do anything and a simulator can
     * skip the stretches in which no guest can (docs/api.md "Idle
     * guests"). Plugin mode with the timer or insn engine on QEMU 9.1 or
     * later (qsync_info.next_event says whether the plugin can); costs a
     * store per translated block executed. 0 (default) or 1. */
    int next_event;
} qsync_options;

/* Fills opts with the defaults. Thread-safe. */
QSYNC_EXPORT void qsync_options_init(qsync_options *opts);

/* ---------------------------------------------------------------------- */
/* Events                                                                  */

typedef struct qsync_ctx qsync_ctx;

/* Stop flags. */
#define QSYNC_STOP_IDLE 0x1u      /* the guest was halted during the quantum  */
#define QSYNC_STOP_DEVIATION 0x2u /* virtual_ns differs from the deadline     */
/* Input sent with qsync_send_input() is still waiting: the guest's UART
 * has not taken all of it (its receive FIFO is full, or off and holding an
 * unread byte, as before the guest sets the UART up). */
#define QSYNC_STOP_INPUT_WAITING 0x4u
/* Every vCPU is halted at this stop, and only a timer of the guest's clock
 * or a frame can wake it (qsync_options.next_event; never set without it). */
#define QSYNC_STOP_HALTED 0x8u

/* Where the guest stopped. Valid only during the callback. In qqq and
 * FIFO modes the protocols carry no counts: instructions, overshoot_insns
 * and n_vcpus are 0, and vcpu_instructions is NULL. */
typedef struct qsync_stop {
    uint64_t seq;          /* 1 for the first advance, then 2, 3, ...       */
    uint64_t deadline_ns;  /* the absolute deadline that was granted         */
    uint64_t virtual_ns;   /* the virtual time reached                       */
    uint64_t instructions; /* executed since start, all vCPUs               */
    int64_t overshoot_insns; /* instructions past the deadline; 0 = exact    */
    unsigned flags;        /* QSYNC_STOP_*                                    */
    unsigned n_vcpus;
    const uint64_t *vcpu_instructions; /* n_vcpus entries                   */
} qsync_stop;

/* How QEMU ended. Valid only during the callback. */
typedef struct qsync_exit {
    int64_t exit_status; /* QEMU's exit status, or -1 if a signal ended it */
    int term_signal;     /* the signal, or 0                               */
    int by_close;        /* 1 if the context's close ended a QEMU that was
                          * still running (0 when QEMU was already ending) */
    const char *stderr_tail; /* last bytes of QEMU's stderr, NUL-terminated */
    uint64_t virtual_ns;     /* last known virtual time                     */
    uint64_t instructions;   /* last known instruction total                */
} qsync_exit;

/* What the plugin said in its handshake. In qqq and FIFO modes, which have
 * no handshake, engine is "unknown", the counts are 0 and nothing is
 * guaranteed. */
struct qsync_nic_info;
typedef struct qsync_info {
    unsigned proto_major, proto_minor;
    unsigned plugin_version; /* (major << 16) | (minor << 8) | patch   */
    unsigned plugin_api;     /* QEMU's plugin API version              */
    unsigned n_vcpus;
    unsigned icount_shift;
    const char *engine;     /* "insn", "timer" or "block"              */
    const char *target;     /* e.g. "x86_64"                           */
    int exact;              /* every stop lands on the deadline        */
    int never_ahead_idle;   /* idle warps never pass a deadline        */
    const char *mode;       /* "plugin", "qqq" or "fifo"                */
    int vclock;             /* virtual_ns is QEMU's own clock, not a
                               count of instructions                   */
    int input;              /* qsync_send_input() works                */
    unsigned n_nics;        /* NICs added with qsync_nic_add()          */
    const struct qsync_nic_info *nics; /* n_nics entries, by index      */
    int next_event;         /* halted stops are told apart
                               (qsync_options.next_event, and an engine
                               and QEMU that can)                      */
} qsync_info;

/*
 * Callbacks. Any may be NULL. Filled with qsync_callbacks_init() so that the
 * struct can grow. Every callback runs on the context's loop thread, and may
 * call any function of the asynchronous API, qsync_close() included; the
 * blocking helpers refuse with QSYNC_ERECURSE there.
 */
typedef struct qsync_callbacks {
    size_t size; /* set by qsync_callbacks_init() */

    /* The plugin's handshake arrived; qsync_get_info() now works. */
    void (*ready)(qsync_ctx *ctx, const qsync_info *info);

    /* An advance finished. status 0: the guest is frozen at stop. Negative:
     * the advance failed (QSYNC_EEXITED, QSYNC_ETIMEDOUT, QSYNC_EPROTO,
     * QSYNC_ECANCELED, ...) and stop is NULL: no quantum is reported as done
     * unless it was. */
    void (*reached)(qsync_ctx *ctx, int status, const qsync_stop *stop);

    /* QEMU is gone. Fires once per started context, after any pending
     * advance has been failed. */
    void (*exited)(qsync_ctx *ctx, const qsync_exit *info);

    /* An error not tied to a pending advance (garbage on the channel while
     * idle, a plugin error message, a failed handshake), or a warning that
     * leaves the context working: QSYNC_ENODRIVER, once per NIC, when the
     * first frame for it is dropped and the guest has never turned its
     * receiver on (no driver for the model, or the interface never up);
     * the message names the NIC and its model. qsync_failed() tells the
     * two kinds apart. */
    void (*error)(qsync_ctx *ctx, int code, const char *message);

    /* QEMU's stdout, when stdout_mode is QSYNC_OUTPUT_CALLBACK; also after
     * qsync_close(), until QEMU is gone, so that nothing printed is lost.
     * What the guest printed during a quantum is delivered before that
     * quantum's reached callback. */
    void (*output)(qsync_ctx *ctx, const char *data, size_t len);

    /* QEMU's stderr, every byte, as it arrives (also after qsync_close(),
     * until QEMU is gone, and whatever quiet_stderr says). When set, the
     * bytes go here instead of to the caller's stderr; the stderr tail
     * (exited) is kept either way. */
    void (*stderr_output)(qsync_ctx *ctx, const char *data, size_t len);

    /* QEMU's stdout by lines, when stdout_mode is QSYNC_OUTPUT_LINES. Each
     * line the guest completed during a quantum comes at that quantum's
     * stop, before its reached callback, with virtual_ns = the stop's
     * virtual time (the moment the library knows the line was complete by).
     * line is NUL-terminated, without its newline; len excludes both. A
     * line longer than QSYNC_LINE_MAX comes in pieces; what is left
     * without a newline when QEMU ends comes last, with the last virtual
     * time known. The pointer is valid only during the call. */
    void (*output_line)(qsync_ctx *ctx, const char *line, size_t len, uint64_t virtual_ns);

    /* An Ethernet frame the guest sent on NIC nic (qsync_nic_add()), with
     * the virtual time of its transmit (qsync_nic_info.tx_stamp says how
     * exact). Frames sent during a quantum all come before that quantum's
     * reached callback, in the order the guest sent them; those sent after
     * the last stop come before exited. data is valid only during the
     * call; len is 1..QSYNC_FRAME_MAX, without the FCS. */
    void (*frame)(qsync_ctx *ctx, unsigned nic, uint64_t virtual_ns, const void *data,
                  size_t len);
} qsync_callbacks;

/* Fills cbs with NULL callbacks. Thread-safe. */
QSYNC_EXPORT void qsync_callbacks_init(qsync_callbacks *cbs);

typedef void (*qsync_close_cb)(qsync_ctx *ctx);

/* ---------------------------------------------------------------------- */
/* The asynchronous API                                                    */

/*
 * Creates a context on loop. The library never runs loop; the caller does.
 * loop may be NULL: the context then owns a private loop, and only the
 * blocking helpers below drive it.
 * opts and cbs may be NULL for the defaults; both are copied (the strings
 * in opts too).
 * Returns 0 and sets *out; QSYNC_EARG for a bad option (no context exists
 * to keep the detail, so a message naming the option is written to errbuf
 * when errbuf is not NULL); -ENOMEM; or -errno from creating the private
 * loop.
 */
QSYNC_EXPORT int qsync_ctx_new(uv_loop_t *loop, const qsync_options *opts,
                               const qsync_callbacks *cbs, qsync_ctx **out,
                               char *errbuf, size_t errbuf_len);

/* The caller's pointer, for use in callbacks. */
QSYNC_EXPORT void qsync_set_data(qsync_ctx *ctx, void *data);
QSYNC_EXPORT void *qsync_get_data(const qsync_ctx *ctx);

/* The loop the context runs on (the private one when created with NULL). */
QSYNC_EXPORT uv_loop_t *qsync_get_loop(const qsync_ctx *ctx);

/*
 * Spawns QEMU. argv[0] is the QEMU binary (searched in PATH), the rest are
 * the guest's arguments; the array ends with NULL. It is never passed
 * through a shell. In plugin mode the library appends -icount
 * shift=N,sleep=off and the -plugin argument with the channel's
 * descriptors, so argv must not contain -icount; the other modes append
 * their own arguments (see qsync_options.mode).
 * After a failed start, fix the cause and call it again; if the failure
 * came from the spawn itself, run the loop once first (QSYNC_ECLEANUP
 * until libuv has released the failed attempt's handles).
 * Returns 0, QSYNC_EARG (argv empty, or containing -icount in plugin mode:
 * the message names it), QSYNC_ESTATE (already started, or closing),
 * QSYNC_ECLEANUP (the failed start is still being cleaned up),
 * QSYNC_ENOPLUGIN, or -errno from pipe, mkdtemp, mkfifo, memfd_create or
 * eventfd (channel QSYNC_CHANNEL_SHM only; AUTO then uses the pipes) or
 * spawn (-ENOENT: no such QEMU binary).
 */
QSYNC_EXPORT int qsync_start(qsync_ctx *ctx, const char *const argv[]);

/*
 * Grants QEMU `us` microseconds past the current deadline and returns at
 * once; callbacks.reached fires when the guest is frozen there. The caller
 * runs its own work meanwhile. Deadlines are absolute inside the library,
 * so rounding never accumulates. Allowed right after qsync_start() (the
 * grant waits in the channel until QEMU is up). us may be 0 in plugin mode.
 * qqq mode needs 1..INT_MAX whole microseconds (QSYNC_EARG, QSYNC_ERANGE);
 * FIFO mode a positive multiple of fifo_quantum_us (QSYNC_EARG).
 * Returns 0, QSYNC_EBUSY (an advance is pending), QSYNC_ESTATE (not started,
 * or closing), QSYNC_EEXITED (QEMU is gone or closed the channel),
 * QSYNC_ERANGE (the deadline overflows, or is past QSYNC_DEADLINE_MAX),
 * QSYNC_EFULL (the channel cannot take the grant now; not expected, with
 * one grant in flight), -errno from writing the grant, or the fatal error
 * that broke the context (qsync_failed()).
 */
QSYNC_EXPORT int qsync_advance(qsync_ctx *ctx, uint64_t us);

/* As qsync_advance(), in nanoseconds. (qsync_advance() is the one function
 * that takes microseconds; every other time says its unit in its name.) */
QSYNC_EXPORT int qsync_advance_ns(qsync_ctx *ctx, uint64_t ns);

/* As qsync_advance(), to an absolute deadline, which must not be before the
 * current one, nor past QSYNC_DEADLINE_MAX (QSYNC_ERANGE). */
QSYNC_EXPORT int qsync_advance_to_ns(qsync_ctx *ctx, uint64_t deadline_ns);

/*
 * The latest deadline any advance may name: 2^63 - 1 ns (about 292 years),
 * the end of QEMU's virtual clock, which is a signed 64-bit count of
 * nanoseconds. Advancing to it means "run until the guest ends": no guest
 * reaches it by running, so the advance ends with the guest's exit
 * (QSYNC_EEXITED), or is reached only by a guest that idles for ever
 * (plugin mode; qqq and FIFO grants are counts of microseconds or quanta
 * and cannot name it). Later deadlines are refused with QSYNC_ERANGE on
 * every engine and in every mode, so that no engine can mistake one for a
 * time in the past.
 */
#define QSYNC_DEADLINE_MAX ((uint64_t)INT64_MAX)

/* The most bytes qsync_send_input() takes between two advances. */
#define QSYNC_INPUT_MAX_PER_STOP 16384u

/*
 * Sends bytes to the guest's first serial port (serial0), as if they had
 * arrived on its character device, at exactly the virtual time where the
 * guest is stopped now: the device gets them when the next advance starts,
 * before the guest's next instruction. Call it while the guest is stopped
 * (after ready or a reached callback, with no advance pending). What the
 * device cannot take at once (its receive FIFO is full) waits, in order,
 * and is offered again at each later stop; QEMU ends with an error if more
 * than 64 KiB wait unread.
 * Plugin mode only, with a QEMU that lets the plugin do it (qsync_info's
 * input; QEMU 7.2 and 10.0 from Debian do).
 * Returns 0, QSYNC_EARG (NULL data, len 0, or more than
 * QSYNC_INPUT_MAX_PER_STOP bytes since the last advance), QSYNC_ESTATE (not
 * started or no handshake yet, closing), QSYNC_EBUSY (an advance is
 * pending), QSYNC_ENOTSUP (another mode, or a QEMU without the functions),
 * or the fatal error that broke the context.
 */
QSYNC_EXPORT int qsync_send_input(qsync_ctx *ctx, const void *data, size_t len);

/* The deadline of the last completed advance (0 before the first). */
QSYNC_EXPORT uint64_t qsync_now_ns(const qsync_ctx *ctx);

/* Bytes of QEMU's stderr that the caller's stderr could not take at once
 * and that were therefore dropped rather than waited for (the tail still
 * has them). Bytes handed to stderr_output, or held back by quiet_stderr or
 * after qsync_close(), are not counted. */
QSYNC_EXPORT uint64_t qsync_stderr_dropped(const qsync_ctx *ctx);

/* QEMU's pid, or 0 when it is not running. */
QSYNC_EXPORT int qsync_pid(const qsync_ctx *ctx);

/*
 * The earliest virtual time at which the guest can do anything, as known
 * at its last stop: between an advance's reached callback (or the return
 * of a blocking advance) and the next advance. It is that stop's time
 * (qsync_now_ns()) when a vCPU was running there, or when the plugin
 * cannot tell (qsync_options.next_event off; qsync_info.next_event 0), or
 * when guest input was sent since. When every vCPU was halted
 * (QSYNC_STOP_HALTED) it is the earliest of the guest clock's next timer
 * and the frames queued for its NICs (qsync_send_frame()); nothing runs in
 * the guest before then, whatever the deadlines in between, so a caller
 * may advance straight past them. QSYNC_DEADLINE_MAX when nothing at all
 * is due. 0 while an advance is pending, before the first advance has
 * completed, and once the context has failed or is closing.
 */
QSYNC_EXPORT uint64_t qsync_next_event_ns(const qsync_ctx *ctx);

/* Copies the handshake's facts to *info. The strings stay valid until the
 * context is freed. Returns 0, or QSYNC_ESTATE before the handshake. */
QSYNC_EXPORT int qsync_get_info(const qsync_ctx *ctx, qsync_info *info);

/*
 * The detail of the context's most recent error, e.g. the plugin's message
 * or the tail of QEMU's stderr. Never NULL. Valid until the next call on ctx.
 */
QSYNC_EXPORT const char *qsync_last_error(const qsync_ctx *ctx);

/*
 * The error that broke the context, or 0 while it works. Once it is set,
 * QEMU is gone or being ended, every call that needs QEMU returns it, and
 * the only useful call is qsync_close() (qsync_close_wait()). This, not
 * the code a call returned, says whether the context is still usable: a
 * refused call (QSYNC_EBUSY, QSYNC_EARG, -ENOMEM from qsync_send_input()
 * or qsync_group_add(), ...) leaves it as it was. Thread: the loop's.
 */
QSYNC_EXPORT int qsync_failed(const qsync_ctx *ctx);

/*
 * Closes the context: closes the channel (which ends QEMU at once), sends
 * SIGKILL if QEMU is still alive after kill_grace_ms, fails a pending
 * advance with QSYNC_ECANCELED, fires exited if QEMU was running, then
 * calls cb (may be NULL) and frees the context. Safe from inside any
 * callback; the memory is freed only after cb returns, and only once the
 * callback that was running has returned. Calling it twice is harmless (the
 * second call returns QSYNC_ESTATE). Returns 0 or QSYNC_ESTATE (already
 * closing, or the context has a private loop: close it with
 * qsync_close_wait(), since nothing else runs that loop).
 */
QSYNC_EXPORT int qsync_close(qsync_ctx *ctx, qsync_close_cb cb);

/* ---------------------------------------------------------------------- */
/* Ethernet: NICs whose frames go through the simulator (docs/network.md)  */

/* At most this many NICs per context. */
#define QSYNC_NIC_MAX 8u
/* Frame sizes qsync_send_frame() takes: an Ethernet header at least, a
 * jumbo frame at most (e1000's largest, 16,128 bytes, fits), no FCS. */
#define QSYNC_FRAME_MIN 14u
#define QSYNC_FRAME_MAX 16384u
/* Frames that may wait for a guest whose receive ring is full (the
 * default of qsync_nic_config.rx_queue_frames) and the most it takes. */
#define QSYNC_NIC_RX_QUEUE_DEFAULT 256u
#define QSYNC_NIC_RX_QUEUE_MAX 8192u

/* How a NIC is made. Fill with qsync_nic_config_init() first. */
typedef struct qsync_nic_config {
    size_t size; /* set by qsync_nic_config_init(); do not change */

    /* "e1000" (NULL or "": the default) or "virtio" (virtio-net-pci with
     * ioeventfd=off,tx=timer, the one virtio set-up whose transmits happen
     * at a deterministic virtual time: 150 us after the guest's first
     * doorbell). Anything else is refused with QSYNC_EARG. */
    const char *model;

    /* The MAC address when has_mac is set; otherwise a deterministic one,
     * 52:54:00:51:HH:LL, where HHLL counts the NICs this process has added
     * without a MAC of their own, from 1 (so the same program gets the
     * same addresses, run after run). A multicast address is refused. */
    int has_mac;
    uint8_t mac[6];

    /* How many frames sent with qsync_send_frame() may wait, due, while
     * the guest's receive ring is full or its receiver off; past that they
     * are dropped and counted (qsync_nic_stats.rx_dropped), as a real NIC
     * drops what its buffer cannot hold. 0: QSYNC_NIC_RX_QUEUE_DEFAULT;
     * at most QSYNC_NIC_RX_QUEUE_MAX. */
    unsigned rx_queue_frames;
} qsync_nic_config;

/* Fills cfg with the defaults. Thread-safe. */
QSYNC_EXPORT void qsync_nic_config_init(qsync_nic_config *cfg);

/* How exact a NIC's times are. */
typedef enum {
    QSYNC_STAMP_EXACT = 0,  /* the virtual time of the event itself          */
    QSYNC_STAMP_QUANTUM = 1 /* only the end of the quantum it happened in    */
} qsync_stamp;

/* A NIC, as qsync_info lists it. */
typedef struct qsync_nic_info {
    const char *model;  /* "e1000" or "virtio"                           */
    uint8_t mac[6];
    const char *netdev; /* QEMU's id of its backend, e.g. "qsync-nic0"    */
    qsync_stamp tx_stamp; /* transmit times given to callbacks.frame      */
    qsync_stamp rx_time;  /* when a frame sent with qsync_send_frame() is
                             offered to the NIC                           */
} qsync_nic_info;

/* A NIC's counters (qsync_nic_get_stats()). */
typedef struct qsync_nic_stats {
    uint64_t tx_frames;  /* frames the guest sent (callbacks.frame)           */
    uint64_t rx_frames;  /* frames the NIC took (delivered into the guest)    */
    uint64_t rx_dropped; /* frames dropped: the wait queue was full           */
    uint64_t rx_waiting; /* due frames waiting for the NIC now                */
    uint64_t rx_pending; /* frames sent with qsync_send_frame() and not yet
                            due, or not yet handed to QEMU                   */
    int receiver_on;     /* the NIC could receive at the last stop            */
    int receiver_ever_on; /* it ever could: 0 with frames dropped usually
                             means the guest has no driver for this model    */
} qsync_nic_stats;

/*
 * Gives the guest a NIC, before qsync_start(); returns its index (0, 1,
 * ...). The library adds what QEMU needs to argv (-nic none, so that QEMU
 * adds no NIC of its own, and a -device with the plugin's backend): pass
 * no -netdev or -nic of your own for it. The NIC has no host side: every
 * frame the guest sends comes to callbacks.frame, and only frames given to
 * qsync_send_frame() reach it. Plugin mode only, on the timer or insn
 * engine (the plugin refuses engine=block, whose clock runs past its
 * deadlines while the guest idles: QEMU then does not start). The frame and
 * qsync_nic_get_stats() calls work once the handshake has come.
 * Returns the index, QSYNC_EARG (NULL or unknown model, multicast MAC,
 * rx_queue_frames too large: the message names it), QSYNC_ERANGE (already
 * QSYNC_NIC_MAX NICs), QSYNC_ESTATE (started or closing), QSYNC_ENOTSUP
 * (not plugin mode), -ENOMEM.
 */
QSYNC_EXPORT int qsync_nic_add(qsync_ctx *ctx, const qsync_nic_config *cfg);

/*
 * Queues a frame for the guest's NIC nic, to be received when the guest's
 * clock reads at_ns: neither earlier nor later, inside a quantum too (see
 * qsync_nic_info.rx_time). at_ns must not be before the current deadline
 * (the one the guest is stopped at, or running to). Frames due at the same
 * time are received in the order of these calls. A NIC that cannot receive
 * at at_ns (its ring full, its receiver off) gets the frame when it can,
 * as QEMU's own queue does, up to rx_queue_frames waiting; past that the
 * frame is dropped and counted. Allowed any time after qsync_start() and
 * the handshake, also while an advance is pending; the frame is copied.
 * Returns 0, QSYNC_EARG (NULL data, len outside
 * QSYNC_FRAME_MIN..QSYNC_FRAME_MAX, no such NIC: the message says which),
 * QSYNC_ERANGE (at_ns before the current deadline, or past
 * QSYNC_DEADLINE_MAX), QSYNC_ESTATE (no handshake yet, or closing),
 * -ENOMEM, or the fatal error that broke the context.
 */
QSYNC_EXPORT int qsync_send_frame(qsync_ctx *ctx, unsigned nic, uint64_t at_ns,
                                  const void *data, size_t len);

/* Copies NIC nic's counters, as of the last stop, to *stats. Returns 0,
 * QSYNC_EARG (no such NIC, NULL stats) or QSYNC_ESTATE (not started). */
QSYNC_EXPORT int qsync_nic_get_stats(const qsync_ctx *ctx, unsigned nic, qsync_nic_stats *stats);

/* ---------------------------------------------------------------------- */
/* Groups: several QEMUs advanced to one deadline (a barrier)              */

typedef struct qsync_group qsync_group;

/* Fires once, when every member has finished the group's advance. status is
 * 0 when all reached the deadline, else the first member's failure (each
 * member's own reached callback says which). deadline_ns is the advance's
 * deadline. Runs on the loop thread; may call the asynchronous API,
 * qsync_group_free() and qsync_group_remove() included (the blocking
 * helpers refuse with QSYNC_ERECURSE). */
typedef void (*qsync_group_cb)(qsync_group *group, int status, uint64_t deadline_ns);

/* Creates an empty group. Returns 0, QSYNC_EARG or -ENOMEM. */
QSYNC_EXPORT int qsync_group_new(qsync_group **out);

/*
 * Adds ctx (on the same loop as the group's other members; a context is in
 * one group at most, and leaves it when it is freed). The group does not
 * own its members: close them yourself. Returns 0 (also when ctx is
 * already a member), QSYNC_ESTATE (in another group, or closing),
 * QSYNC_EBUSY (the group's advance is pending), QSYNC_EARG (another loop),
 * -ENOMEM. Thread: the loop's.
 */
QSYNC_EXPORT int qsync_group_add(qsync_group *group, qsync_ctx *ctx);

/* The number of members. */
QSYNC_EXPORT size_t qsync_group_size(const qsync_group *group);

/*
 * Takes ctx out of the group, so that the others carry on without it (a
 * member whose guest has exited, say). Allowed inside callbacks, the
 * member's own reached and exited included: removed inside its reached
 * callback, its outcome still counts for the group advance that callback
 * ends. Returns 0, QSYNC_EARG (ctx is not a member), or QSYNC_EBUSY (its
 * part of the group's advance is still pending: remove it from its reached
 * callback, or once the group's callback has fired). Thread: the loop's.
 */
QSYNC_EXPORT int qsync_group_remove(qsync_group *group, qsync_ctx *ctx);

/* The group's current time: the latest current time of its members (after
 * a group advance, the deadline they all reached), or 0 with no members. */
QSYNC_EXPORT uint64_t qsync_group_now_ns(const qsync_group *group);

/*
 * Advances every member to deadline_ns and returns at once; each member's
 * reached callback fires as usual, and cb (may be NULL) once after the
 * last of them. Every member is checked first, so a refusal advances none.
 * Returns 0, QSYNC_ESTATE (no members, or one not started or closing),
 * QSYNC_EBUSY (the group's or a member's advance is pending), QSYNC_ERANGE
 * (the deadline is before a member's current one), or a member's fatal
 * error. Thread: the loop's.
 */
QSYNC_EXPORT int qsync_group_advance_to_ns(qsync_group *group, uint64_t deadline_ns,
                                           qsync_group_cb cb);

/* As qsync_group_advance_to_ns(), ns past the latest member's current
 * deadline (members that are behind catch up to the same deadline). */
QSYNC_EXPORT int qsync_group_advance_ns(qsync_group *group, uint64_t ns, qsync_group_cb cb);

/* The earliest qsync_next_event_ns() of the members (a member with
 * nothing known counts as its current time; one whose context has failed,
 * its QEMU gone, is left out): the group's current time while any member
 * is busy; QSYNC_DEADLINE_MAX when no member can do anything ever. */
QSYNC_EXPORT uint64_t qsync_group_next_event_ns(const qsync_group *group);

/*
 * The end of the next window of window_ns (> 0) after now_ns, stretched
 * over idle time (docs/api.md "Idle guests"): when nothing can happen
 * before due_ns > now_ns (qsync_group_next_event_ns(), or the earlier of
 * it and the caller's own next event), the last point now_ns + k *
 * window_ns (k >= 1) at or before due_ns + window_ns; else now_ns +
 * window_ns. Staying on the grid keeps the window ends, and so what a
 * simulator does at them, those of a run that never skips. Saturates at
 * QSYNC_DEADLINE_MAX, which it also returns when due_ns is that far.
 * Thread-safe.
 */
QSYNC_EXPORT uint64_t qsync_skip_to_ns(uint64_t now_ns, uint64_t window_ns, uint64_t due_ns);

/* The caller's pointer. */
QSYNC_EXPORT void qsync_group_set_data(qsync_group *group, void *data);
QSYNC_EXPORT void *qsync_group_get_data(const qsync_group *group);

/* Frees the group (not its members). Safe from inside any callback; with
 * an advance pending, the group is freed after its callback has fired. */
QSYNC_EXPORT void qsync_group_free(qsync_group *group);

/* ---------------------------------------------------------------------- */
/* The blocking helpers (contexts created with loop == NULL)              */

/*
 * Advances by ns and waits until the guest is there, QEMU exits, or an
 * error occurs; copies the stop to *stop when stop is not NULL (the copy's
 * vcpu_instructions is always NULL: that array lives only during the
 * callback). The user's callbacks also fire.
 * Returns 0, QSYNC_ESTATE (the context has a caller's loop), QSYNC_ERECURSE
 * (called from a callback), or any code of qsync_advance_ns() or of the
 * reached callback.
 */
QSYNC_EXPORT int qsync_advance_wait_ns(qsync_ctx *ctx, uint64_t ns, qsync_stop *stop);

/*
 * Waits for the advance already made with qsync_advance*(): the join of
 * "grant a quantum, run my own model's step while QEMU runs it, then wait
 * for QEMU". Polls the channel as qsync_advance_wait_ns() does. The advance
 * watchdog (advance_timeout_ms) counts from this call, so the time spent
 * on the caller's own step does not count against QEMU. Each advance's
 * outcome is returned once; *stop as for qsync_advance_wait_ns(). When QEMU
 * has ended (QSYNC_EEXITED), it returns once QEMU's exit is known, with
 * its status and last line of stderr in qsync_last_error().
 * Returns 0, QSYNC_ESTATE (the context has a caller's loop, or no advance
 * is waiting to be joined), QSYNC_ERECURSE (called from a callback), or any
 * code of the reached callback.
 */
QSYNC_EXPORT int qsync_wait_reached(qsync_ctx *ctx, qsync_stop *stop);

/*
 * Advances in quanta of quantum_ns until deadline_ns (or until QEMU exits)
 * and waits. The last quantum is shortened to land on deadline_ns.
 * *stop gets the last stop (it is left alone when deadline_ns is already the
 * current time). Returns 0 when deadline_ns was reached, QSYNC_EEXITED when
 * QEMU ended first, QSYNC_EARG (quantum_ns is 0), QSYNC_ERANGE (deadline_ns
 * is in the past), or the codes of qsync_advance_wait_ns().
 */
QSYNC_EXPORT int qsync_run_until_ns(qsync_ctx *ctx, uint64_t deadline_ns, uint64_t quantum_ns,
                                 qsync_stop *stop);

/*
 * Waits until QEMU exits by itself, for at most timeout_ms (0: forever),
 * without granting time. Returns 0 (and the exit status in *exit_status,
 * -1 for a signal), QSYNC_ETIMEDOUT, QSYNC_ESTATE or QSYNC_ERECURSE.
 */
QSYNC_EXPORT int qsync_wait_exit_ms(qsync_ctx *ctx, uint64_t timeout_ms, int64_t *exit_status);

/*
 * Closes a context with a private loop and frees it before returning: QEMU
 * is ended as qsync_close() says. Returns 0, QSYNC_ESTATE (the context has a
 * caller's loop) or QSYNC_ERECURSE.
 */
QSYNC_EXPORT int qsync_close_wait(qsync_ctx *ctx);

/* The library's version, as QSYNC_VERSION_HEX and as text ("0.1.0"). */
QSYNC_EXPORT unsigned qsync_version(void);
QSYNC_EXPORT const char *qsync_version_string(void);

#ifdef __cplusplus
}
#endif

#endif

/*
 * The plugin's options, as QEMU passes them: one "key=value" per argv
 * entry (from "-plugin lib.so,key=value,...").
 *
 * The personality (the protocol the plugin speaks) comes first:
 *
 *   native (default): our protocol, docs/protocol.md
 *     fd_in=N     required  the fd to read GRANTs from (inherited from the library)
 *     fd_out=N    required  the fd to write HELLO/REPORT/ERROR/EXIT to
 *     shift=N     0..10, default 0: the -icount shift; 1 instruction = 2^N ns
 *     shm=N       optional, with efd=: a memfd holding the shared-memory rings
 *                 (src/proto/shm.h); frames then travel there, and fd_in and
 *                 fd_out carry nothing but the hang-ups
 *     efd=N       with shm=: the eventfd that wakes the controller
 *     spin_ns=N   with shm=, 0..10^9: how long a stop polls for the next
 *                 grant before it sleeps on the futex (default: 50000, or
 *                 0 when QEMU may run on one CPU only)
 *     nics=Q0:Q1:...  optional, 1 to 8 entries: serve that many NICs, whose
 *                 backends are the netdevs qsync-nic0, qsync-nic1, ...
 *                 (net.h); Qi (1..8192) frames may wait for NIC i while
 *                 it cannot receive
 *     next=1      optional: at each stop where every vCPU is halted, send
 *                 NEXT (the time of the guest clock's next timer) before
 *                 the REPORT, when the engine can tell (HELLO's G_NEXT);
 *                 costs a store per translated block
 *
 *   proto=qqq: the adevs -qqq protocol (native ints of microseconds)
 *     fd_in=N     required  the fd to read requests from (-qqq's read=)
 *     fd_out=N    required  the fd to write answers to (-qqq's write=)
 *     shift=N     0..10, default: QEMU's own -icount shift
 *
 *   the FIFO personality: the SIL Kit Time Sync Plugin FIFO protocol (named FIFOs, single bytes),
 *   chosen by its own option names (proto=fifo may say so explicitly):
 *     HostToGuestPipe=PATH   required  the FIFO the controller writes to
 *     GuestToHostPipe=PATH   required  the FIFO the plugin writes to
 *     TimeInMicroSeconds=N   required, 1..10^9: the fixed quantum; the
 *                            README's spelling TimeinMicroseconds is the
 *                            same key (exactly one of the two)
 *     shift=0     the only shift the Time Sync Plugin knows (-icount shift=0)
 *     done_bytes=N 1 or 2 (default): the bytes written to GuestToHost after
 *                 each quantum; the Time Sync Plugin wrote 1, its README has
 *                 the controller read 2
 *     remove_fifos=1 the FIFOs are private to this run (libqsync's): the
 *                 plugin removes both and their directory (if empty) once
 *                 the controller's first byte has come, and whenever it
 *                 ends QEMU or QEMU exits, so that nothing stays behind a
 *                 controller that was killed
 *
 * Every personality also takes:
 *   engine=E    auto (default) | timer | insn | block; plugin.c says how
 *               auto chooses
 *   quantum_ns=N a hint: the quantum the controller expects to grant, in
 *               ns (1..10^15); engine=auto uses it to pick the cheaper
 *               engine. It never changes where the guest stops. The FIFO
 *               personality sets it from TimeInMicroSeconds and refuses it.
 *   parent=PID  the controller's process id (1 included: a controller that
 *               is PID 1 of its container). PID must be QEMU's parent or
 *               an ancestor (a launcher that forks, like timeout, sh -c,
 *               strace -f or sudo, may stand between); the plugin watches
 *               it (a pidfd) and ends QEMU when it dies, and, when it is
 *               the parent, also arms PR_SET_PDEATHSIG. A second line of
 *               defence behind the channel's hang-up, and the only one
 *               before a FIFO controller has opened HostToGuest; libqsync
 *               passes it (controller.c).
 */
#ifndef QSYNC_PLUGIN_OPTIONS_H
#define QSYNC_PLUGIN_OPTIONS_H

#include <stdbool.h>

enum qsync__engine_choice {
    QSYNC__ENGINE_AUTO,
    QSYNC__ENGINE_INSN,
    QSYNC__ENGINE_TIMER,
    QSYNC__ENGINE_BLOCK
};

enum qsync__proto {
    QSYNC_PROTO_NATIVE,
    QSYNC_PROTO_QQQ,
    QSYNC_PROTO_FIFO
};

#define QSYNC_MAX_SHIFT 10u
#define QSYNC__FIFO_MAX_QUANTUM_US 1000000000ull

struct qsync__options {
    enum qsync__proto proto;
    int fd_in;  /* native, qqq */
    int fd_out; /* native, qqq */
    unsigned shift;
    bool shift_given; /* shift= was on the command line */
    enum qsync__engine_choice engine;
    unsigned long long quantum_ns; /* 0: no hint */
    int parent;                    /* 0: none; else the controller's pid */
    /* Native: the shared-memory transport (-1: pipes only). */
    int shm_fd;
    int efd;
    long long spin_ns; /* -1: the default */
    /* FIFO personality; the paths point into QEMU's argv. */
    const char *host_to_guest;
    const char *guest_to_host;
    unsigned long long fifo_quantum_us;
    unsigned done_bytes; /* 1 or 2 (default) */
    bool remove_fifos;   /* remove_fifos=1 */
    /* Native: NICs to serve (nics=), and each one's receive queue bound. */
    unsigned n_nics;
    unsigned nic_rx_queue[8];
    bool next; /* next=1: NEXT at halted stops */
};

/*
 * Parses argv into *opt. Returns 0, or -1 after printing a message that
 * names the offending key or value (unknown key, malformed or
 * out-of-range value, a key given twice, a required key missing, a key
 * that the chosen personality does not take). Syntax only: whether the
 * fds are open, the FIFOs exist, or the shift matches QEMU's is checked
 * at install.
 */
int qsync__options_parse(int argc, char **argv, struct qsync__options *opt);

#endif

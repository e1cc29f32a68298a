/*
 * The stop runtime: what every personality (personality.h) shares. The
 * entry point of the engines' stops, which passes each stop to the active
 * personality; the one way of ending QEMU; the watcher thread, which ends
 * QEMU when the controller goes; and the check of an inherited
 * descriptor. runtime.c says who may touch what.
 */
#ifndef QSYNC_PLUGIN_RUNTIME_H
#define QSYNC_PLUGIN_RUNTIME_H

#include <stdbool.h>

struct qsync__personality;

/*
 * Makes p the personality whose stop qsync__runtime_stop runs (the native
 * one until then). Install thread, before the engine can stop.
 */
void qsync__runtime_use(const struct qsync__personality *p);

/*
 * The stop. Called by the engine in the vCPU thread that reached the
 * deadline, and once before the guest's first instruction. The active
 * personality talks to its controller, then arms the engine with the next
 * deadline and returns. Never returns if the controller is gone or
 * misbehaves: QEMU ends there.
 */
void qsync__runtime_stop(unsigned int vcpu_index);

/*
 * Ends QEMU at once with _exit(status), after printing the message on
 * stderr. Any thread; the first caller wins, a later one parks so the
 * message is never cut off.
 */
_Noreturn void qsync__end_qemu(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * hook runs in qsync__end_qemu just before QEMU ends (any thread; it must
 * not block or end QEMU itself). NULL: none. Install thread.
 */
void qsync__runtime_on_end(void (*hook)(void));

/*
 * Starts the watcher thread: it polls fd for hang-up only (never reads)
 * and ends QEMU with status 0 and the message gone as soon as the
 * controller's end is closed, even while the guest runs mid-quantum. key
 * names the descriptor in messages ("fd_in"). wake (may be NULL) is called
 * on the hang-up first, for a stop that waits where no end of file
 * reaches it (the shared-memory transport). It also watches the
 * controller's process and the termination signals (controller.h): QEMU
 * ends when the controller dies, and when a SIGTERM, SIGINT or SIGHUP
 * comes while the guest waits at a stop.
 * Returns 0, or -1 after printing a message. Call last in install: once it
 * runs, QEMU must not unload the plugin. At most once.
 */
int qsync__watch_hangup(int fd, const char *key, const char *gone, void (*wake)(void));

/*
 * A stop calls this with true before it blocks reading its controller's
 * descriptor, and with false once the read has returned. A hang-up seen
 * by the watcher meanwhile is left to the reader, which sees the end of
 * file at once and can tell a controller that left between two messages
 * (exit 0) from one that left in the middle of one (exit 1, with a
 * message saying so). Any other time the watcher ends QEMU itself. The
 * thread in a stop only.
 */
void qsync__runtime_reading(bool reading);

/*
 * Checks that the controller's pipes are inherited: fd_in open for
 * reading, fd_out for writing; and makes them blocking and close-on-exec
 * (so nothing QEMU spawns keeps the controller's pipes alive). Returns 0,
 * or -1 after printing a message that names the option. Install thread.
 */
int qsync__inherited_pipes(int fd_in, int fd_out);

#endif

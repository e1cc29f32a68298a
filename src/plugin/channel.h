/*
 * The plugin's end of the native protocol (src/proto/wire.h): HELLO at
 * install, a blocking stop at every deadline (REPORT, then wait for the
 * next GRANT), EXIT when QEMU exits by itself, and the rule that QEMU
 * never outlives its controller.
 */
#ifndef QSYNC_PLUGIN_CHANNEL_H
#define QSYNC_PLUGIN_CHANNEL_H

#include "engine.h"
#include "wire.h"

/*
 * Checks that fd_in is open for reading and fd_out for writing, makes both
 * blocking and close-on-exec (so nothing QEMU spawns keeps the controller's
 * pipes alive), and remembers the engine whose stops this channel serves.
 * Returns 0, or -1 after printing a message that names the option.
 * Install thread only.
 */
int qsync__channel_open(int fd_in, int fd_out, const struct qsync__engine *engine);

/* Sends one message; frames from different threads never interleave.
 * Returns 0 or -errno (-EPIPE when the controller is gone). Any thread. */
int qsync__channel_send(const struct qsync_wire_msg *msg);

/*
 * Starts the watcher thread, which ends QEMU as soon as the controller's
 * end of fd_in is closed, even while the guest runs mid-quantum. Returns 0,
 * or -1 after printing a message. Call last in install: once it runs,
 * QEMU must not unload the plugin.
 */
int qsync__channel_start_watcher(void);

/*
 * The stop. Called by the engine in the vCPU thread that reached the
 * deadline: reports (except at the very first stop, which precedes any
 * grant), then blocks until the next valid GRANT and arms the engine
 * with it. Never returns if the controller is gone or misbehaves: QEMU
 * ends there.
 */
void qsync__channel_stop(unsigned int vcpu_index);

/* Sends EXIT with the engine's final position, ignoring errors (the
 * controller may be gone). From the atexit callback. */
void qsync__channel_exit(void);

#endif

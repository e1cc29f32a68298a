/*
 * The plugin's end of the shared-memory transport (src/proto/shm.h,
 * docs/protocol.md "Shared-memory transport"). When the controller passes
 * shm=N,efd=N, the native channel (channel.c) moves its frames here:
 *
 * - receiving: a stop polls the ring to the plugin for spin_ns, then
 *   sleeps on its futex; the watcher thread wakes it when the controller
 *   hangs up (qsync__shm_transport_hangup);
 * - sending: a frame goes into the ring to the library, and the eventfd
 *   is written only when the library has said it is waiting.
 *
 * fd_in and fd_out stay open: fd_in's hang-up is still how the plugin
 * learns that the controller is gone, and fd_out's end of file is how the
 * controller learns that QEMU is.
 */
#ifndef QSYNC_PLUGIN_TRANSPORT_SHM_H
#define QSYNC_PLUGIN_TRANSPORT_SHM_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Maps the memfd shm_fd, checks its layout and closes it (the mapping
 * stays), checks that efd is an eventfd and makes it close-on-exec.
 * spin_ns < 0 takes the default. Returns 0, or -1 after printing a message
 * that names the option. Install thread, once.
 */
int qsync__shm_transport_open(int shm_fd, int efd, long long spin_ns);

/* Whether the frames travel over shared memory. */
bool qsync__shm_transport_active(void);

/* Sends one whole frame; the caller keeps frames from different threads
 * apart. Returns 0 or -EPIPE when the controller is gone (its hang-up was
 * seen while the ring was full). */
int qsync__shm_transport_send(const void *buf, size_t len);

/* Reads exactly len bytes (the caller asks for a header, then its
 * payload). Returns 0, or -EPIPE when the controller hung up before they
 * came (*got is then 0: frames arrive whole). The thread in a stop only. */
int qsync__shm_transport_read(void *buf, size_t len, size_t *got);

/* The watcher saw the controller hang up: wakes a stop sleeping on the
 * futex so that it can end QEMU. Any thread. */
void qsync__shm_transport_hangup(void);

#endif

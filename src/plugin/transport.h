/*
 * The seam between the native personality and the bytes: a transport
 * carries whole frames to and from the controller. Two implementations,
 * as in the library (src/lib/internal.h): the pipes fd_in and fd_out
 * (transport_pipe.c), and rings in shared memory (transport_shm.c), where
 * fd_in and fd_out stay open for their hang-up and end of file only.
 */
#ifndef QSYNC_PLUGIN_TRANSPORT_H
#define QSYNC_PLUGIN_TRANSPORT_H

#include <stddef.h>

struct qsync__transport {
    const char *name;
    /* Sends one whole frame; the caller keeps frames from different
     * threads apart. Returns 0 or -errno (-EPIPE: the controller is
     * gone). Any thread. */
    int (*send)(const void *buf, size_t len);
    /* Reads exactly len bytes (the caller asks for a header, then its
     * payload). Returns 0, -EPIPE when the controller hung up first (*got
     * says how many bytes came before), or -errno. The thread in a stop. */
    int (*read)(void *buf, size_t len, size_t *got);
    /* The watcher saw the controller hang up: wakes a stop that waits
     * where no end of file reaches it. Any thread. */
    void (*hangup)(void);
};

/* The pipes: fd_in (read) and fd_out (written). Install thread, once. */
const struct qsync__transport *qsync__transport_pipe_open(int fd_in, int fd_out);

/*
 * Shared memory: maps the memfd shm_fd, checks its layout and closes it
 * (the mapping stays), checks that efd is an eventfd and makes it
 * close-on-exec. spin_ns < 0 takes the default. Returns the transport, or
 * NULL after printing a message that names the option. Install thread,
 * once.
 */
const struct qsync__transport *qsync__transport_shm_open(int shm_fd, int efd, long long spin_ns);

#endif

/*
 * Blocking and non-blocking fd I/O shared by the library and the plugin:
 * EINTR is retried, and a write to a pipe whose reader is gone returns
 * -EPIPE instead of killing the process with SIGPIPE.
 */
#ifndef QSYNC_PROTO_FDIO_H
#define QSYNC_PROTO_FDIO_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * SIGPIPE held off in this thread around writes that may meet a closed
 * reader, without touching the process's disposition: block() masks it;
 * unblock() consumes a SIGPIPE that the writes raised (when maybe_raised,
 * and none was pending before) and restores the mask.
 */
struct qsync__sigpipe_guard {
    sigset_t old;
    int was_pending;
};
void qsync__sigpipe_block(struct qsync__sigpipe_guard *g);
void qsync__sigpipe_unblock(struct qsync__sigpipe_guard *g, int maybe_raised);

/* Writes all of buf. Returns 0, or -errno (-EPIPE when the reader is gone,
 * -EAGAIN when a non-blocking fd is full). Never raises SIGPIPE. */
int qsync__write_all(int fd, const void *buf, size_t len);

/*
 * Tells qsync__write_all() that this process ignores SIGPIPE (QEMU does),
 * so that it can skip the three system calls of its guard. Call it only
 * after checking the disposition; call it before any writing thread runs.
 */
void qsync__fdio_sigpipe_ignored(void);

/* As qsync__write_all(), without guarding against SIGPIPE: three system
 * calls cheaper, for when SIGPIPE cannot be raised (the writer also holds
 * a read end of the pipe, or the process ignores SIGPIPE). */
int qsync__write_all_unguarded(int fd, const void *buf, size_t len);

/* Reads exactly len bytes. Returns 0, -EPIPE at end of file (with *got set
 * to the bytes read before it), or -errno. */
int qsync__read_full(int fd, void *buf, size_t len, size_t *got);

#endif

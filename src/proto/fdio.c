/* See fdio.h. */
#include "fdio.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/*
 * SIGPIPE is blocked in this thread for the duration of the write, and a
 * SIGPIPE that the write itself raised is consumed before the mask is
 * restored. This leaves the process's disposition alone: a library must
 * not change how its host handles signals.
 */
static int sigpipe_ignored;

void qsync__fdio_sigpipe_ignored(void)
{
    sigpipe_ignored = 1;
}

void qsync__sigpipe_block(struct qsync__sigpipe_guard *g)
{
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old);
}

void qsync__sigpipe_unblock(struct qsync__sigpipe_guard *g, int maybe_raised)
{
    if (maybe_raised && !g->was_pending) {
        sigset_t pipe_set, pending;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE)) {
            const struct timespec zero = {0, 0};
            while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
            }
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

int qsync__write_all(int fd, const void *buf, size_t len)
{
    if (sigpipe_ignored)
        return qsync__write_all_unguarded(fd, buf, len);
    struct qsync__sigpipe_guard guard;
    const char *p = buf;
    int rc = 0;

    qsync__sigpipe_block(&guard);

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        p += n;
        len -= (size_t)n;
    }

    qsync__sigpipe_unblock(&guard, rc == -EPIPE);
    return rc;
}

int qsync__write_all_unguarded(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int qsync__read_full(int fd, void *buf, size_t len, size_t *got)
{
    char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, p + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (got)
                *got = done;
            return -errno;
        }
        if (n == 0) {
            if (got)
                *got = done;
            return -EPIPE;
        }
        done += (size_t)n;
    }
    if (got)
        *got = done;
    return 0;
}

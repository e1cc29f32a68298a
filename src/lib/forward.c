/*
 * QEMU's stderr, forwarded to the caller's stderr without ever blocking the
 * loop thread or raising SIGPIPE.
 *
 * The caller's stderr may be anything: a terminal, a file, a pipe to a
 * logger that stopped reading or died, a socket. The loop thread serves
 * every context on the loop, so a write that waits for a reader would stall
 * them all and their watchdogs with them. Every write here therefore
 * returns at once, with what fitted; the rest is dropped and counted
 * (qsync_stderr_dropped()), and the next write that finds room first says
 * how much was lost. The tail kept for exited sees every byte regardless.
 *
 * How a write is kept from waiting, without touching state the caller
 * shares with other processes (setting O_NONBLOCK on fd 2 would change the
 * open file description that a shell, a parent or a sibling also uses):
 * - a pipe, a FIFO or a terminal: fd 2 is reopened through /proc/self/fd/2
 *   with O_NONBLOCK, which makes a private description of the same pipe or
 *   terminal, and written there. Opening a pipe whose reader is gone fails
 *   with ENXIO, so a dead logger is seen before any write. Without /proc,
 *   poll(POLLOUT) with no timeout says whether a write of PIPE_BUF bytes,
 *   atomic on a pipe, fits; only a second writer racing us into the same
 *   pipe between the two calls could then make it wait.
 * - a socket: send() with MSG_DONTWAIT and MSG_NOSIGNAL.
 * - anything else (a regular file, /dev/null): a plain write, which does
 *   not wait for a reader.
 * SIGPIPE is blocked in this thread around the writes, and one they raised
 * is consumed before the mask is restored (fdio.h's guard, which
 * qsync__write_all() uses too); the process's disposition is never
 * changed.
 */
#include "internal.h"
#include "fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes p to fd until fd would make us wait or fails; returns the bytes
 * written. sock: send() on a socket; by_poll: ask poll() first, and write at
 * most PIPE_BUF bytes at a time. */
static size_t write_nowait(int fd, const char *p, size_t n, int sock, int by_poll)
{
    size_t done = 0;
    while (done < n) {
        size_t len = n - done;
        if (by_poll) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int r = poll(&pfd, 1, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0 || !(pfd.revents & POLLOUT) ||
                (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)))
                break; /* full, or the reader is gone */
            if (len > PIPE_BUF)
                len = PIPE_BUF;
        }
        ssize_t w = sock ? send(fd, p + done, len, MSG_DONTWAIT | MSG_NOSIGNAL)
                         : write(fd, p + done, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* EAGAIN: full; EPIPE, EBADF, EIO...: nothing goes */
        done += (size_t)w;
    }
    return done;
}

/* Writes what fits of p to the caller's stderr, now; returns the bytes
 * written. */
static size_t write_stderr(const char *p, size_t n)
{
    struct stat st;
    if (fstat(STDERR_FILENO, &st) != 0)
        return 0; /* closed */
    if (S_ISSOCK(st.st_mode))
        return write_nowait(STDERR_FILENO, p, n, 1, 0);
    if (!S_ISFIFO(st.st_mode) && !(S_ISCHR(st.st_mode) && isatty(STDERR_FILENO)))
        return write_nowait(STDERR_FILENO, p, n, 0, 0);
    int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 && errno == ENXIO)
        return 0; /* a FIFO without a reader */
    if (fd < 0)
        return write_nowait(STDERR_FILENO, p, n, 0, 1);
    size_t done = write_nowait(fd, p, n, 0, 0);
    close(fd);
    return done;
}

void qsync__forward_stderr(qsync_ctx *ctx, const char *p, size_t n)
{
    if (ctx->cbs.stderr_output) {
        QSYNC__CALL(ctx, stderr_output, p, n);
        return;
    }
    /* Not once the caller has closed the context, when QEMU's goodbyes are
     * expected (they stay in the tail); nor when asked to keep quiet. */
    if (ctx->opts.quiet_stderr || ctx->closing)
        return;

    struct qsync__sigpipe_guard guard;
    qsync__sigpipe_block(&guard);

    int ok = 1;
    if (ctx->child.stderr_dropped_unsaid) {
        /* Room again: say what was lost before going on. */
        char note[160];
        int len = snprintf(note, sizeof note,
                           "libqsync: %llu bytes of QEMU's stderr were dropped here "
                           "(this stderr was full or closed)\n",
                           (unsigned long long)ctx->child.stderr_dropped_unsaid);
        ok = write_stderr(note, (size_t)len) > 0;
        if (ok)
            ctx->child.stderr_dropped_unsaid = 0;
    }
    size_t written = 0;
    if (ok)
        written = write_stderr(p, n);
    ctx->child.stderr_dropped += n - written;
    ctx->child.stderr_dropped_unsaid += n - written;

    qsync__sigpipe_unblock(&guard, 1);
}

uint64_t qsync_stderr_dropped(const qsync_ctx *ctx)
{
    return ctx->child.stderr_dropped;
}

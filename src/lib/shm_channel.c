/*
 * The library's end of the shared-memory transport (src/proto/shm.h,
 * docs/protocol.md "Shared-memory transport", docs/design.md).
 *
 * - A memfd region holds two rings. QEMU inherits it as fd 5, and an
 *   eventfd as fd 6; both are close-on-exec on our side, like the pipes.
 *   The region is sealed against shrinking and growing, so that QEMU
 *   cannot truncate it under our mapping (which would raise SIGBUS here).
 * - Grants go into the ring to the plugin. The plugin polls it for a
 *   while after each report, then sleeps on a futex on the ring's head;
 *   a grant wakes that futex only when the plugin says it is asleep.
 * - Frames from the plugin arrive in the other ring. The loop watches the
 *   eventfd, which the plugin writes only when the ring's `waiting` flag
 *   says the library is asleep; it is set except while a blocking helper
 *   polls the ring itself (qsync__shm_spin).
 * - The pipes stay, for their ends of file: the plugin ends QEMU when
 *   grant_fd closes, and the report pipe's end of file tells us QEMU has
 *   gone (we then drain what it left in the ring first).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

/* A helper that keeps completing advances by polling runs the loop once
 * without waiting this often, so that QEMU's stderr and the timers are
 * still served. */
#define NOWAIT_EVERY 64u

int qsync__shm_wanted(const qsync_ctx *ctx)
{
    if (ctx->opts.mode != QSYNC_MODE_PLUGIN)
        return 0;
    return ctx->opts.channel != QSYNC_CHANNEL_PIPE;
}

/* Whether the controller's loop thread and QEMU may share one CPU only:
 * polling would then take the CPU the other side needs. pin_cpu pins
 * both at the spawn, just after this is asked. */
static int one_cpu(const qsync_ctx *ctx)
{
    cpu_set_t set;
    if (ctx->opts.pin_cpu >= 0 || sysconf(_SC_NPROCESSORS_ONLN) == 1)
        return 1;
    return sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1;
}

/* The region and the eventfd; -errno and what failed, or 0. */
static int make_region(int *memfd_out, void **base_out, int *efd_out, const char **what)
{
    size_t size = qsync__shm_region_size();
    int memfd = memfd_create("qsync-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (memfd < 0) {
        *what = "memfd_create";
        return -errno;
    }
    int rc = 0;
    void *base = MAP_FAILED;
    if (ftruncate(memfd, (off_t)size) < 0) {
        *what = "ftruncate";
        rc = -errno;
    } else if (fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        *what = "sealing the memfd";
        rc = -errno;
    } else if ((base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0)) ==
               MAP_FAILED) {
        *what = "mmap";
        rc = -errno;
    }
    if (rc) {
        close(memfd);
        return rc;
    }
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) {
        *what = "eventfd";
        rc = -errno;
        munmap(base, size);
        close(memfd);
        return rc;
    }
    qsync__shm_init(base);
    *memfd_out = memfd;
    *base_out = base;
    *efd_out = efd;
    return 0;
}

int qsync__shm_launch(qsync_ctx *ctx, struct qsync__launch *l)
{
    const char *what = "";
    int memfd = -1, efd = -1;
    void *base = NULL;
    qsync__shm_release(ctx); /* a previous, failed start's */
    int rc = make_region(&memfd, &base, &efd, &what);
    if (rc)
        return qsync__set_error(ctx, rc, "channel: cannot set up the shared memory (%s: %s)",
                                what, strerror(-rc));
    ctx->shm_base = base;
    qsync__shm_ring(base, QSYNC__SHM_TO_PLUGIN, &ctx->shm_out);
    qsync__shm_ring(base, QSYNC__SHM_TO_LIBRARY, &ctx->shm_in);
    ctx->shm_efd = efd;
    ctx->shm_poll_open = 0;
    ctx->shm_streak = 0;
    /* The blocking helpers' polling budget (qsync_options.shm_poll_ns),
     * which the spinner cuts back while it does not pay (shm.h). */
    qsync__shm_spinner_init(&ctx->shm_spinner, one_cpu(ctx) ? 0 : ctx->opts.shm_poll_ns);
    l->child_shm = memfd;
    l->child_efd = efd;
    return 0;
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    qsync_ctx *ctx = h->data;
    uint64_t count;
    (void)status; /* an error on an eventfd: nothing to do but look at the ring */
    (void)events;
    while (read(ctx->shm_efd, &count, sizeof count) < 0 && errno == EINTR) {
    }
    qsync__shm_drain(ctx);
}

int qsync__shm_start(qsync_ctx *ctx)
{
    int rc = uv_poll_init(ctx->loop, &ctx->shm_poll, ctx->shm_efd);
    if (rc)
        return rc;
    ctx->shm_poll.data = ctx;
    ctx->shm_poll_open = 1;
    ctx->handles_open++;
    /* A HELLO may be waiting already; the eventfd says so too. */
    return uv_poll_start(&ctx->shm_poll, UV_READABLE, poll_cb);
}

void qsync__shm_drain(qsync_ctx *ctx)
{
    /* A callback may close the context, and a close may unmap the region:
     * look again before every read. */
    while (ctx->shm_base && !ctx->fatal && !ctx->closing) {
        size_t n = qsync__shm_read(&ctx->shm_in, ctx->rbuf + ctx->rlen,
                                   sizeof ctx->rbuf - ctx->rlen);
        if (n == 0)
            return;
        ctx->rlen += n;
        qsync__channel_deliver(ctx);
    }
}

void qsync__shm_eof(qsync_ctx *ctx)
{
    qsync__shm_drain(ctx);
    if (ctx->shm_base && ctx->shm_poll_open)
        uv_poll_stop(&ctx->shm_poll);
}

int qsync__shm_send(qsync_ctx *ctx, const void *buf, size_t len)
{
    int rc = qsync__shm_write(&ctx->shm_out, buf, len);
    if (rc == -EAGAIN)
        return qsync__set_error(ctx, QSYNC_EPROTO, "the channel to QEMU is full");
    if (rc < 0)
        return qsync__set_error(ctx, QSYNC_EPROTO,
                                "a frame of %zu bytes does not fit the shared-memory ring", len);
    if (rc == 1) {
        /* The plugin sleeps, or is about to: wake it. */
        rc = qsync__shm_futex_wake(&ctx->shm_out);
        if (rc)
            return qsync__set_error(ctx, rc, "waking the plugin: %s", strerror(-rc));
    }
    return 0;
}

void qsync__shm_spin(qsync_ctx *ctx, const int *flag)
{
    if (!ctx->shm_base || *flag)
        return;
    uint64_t budget = qsync__shm_spin_budget(&ctx->shm_spinner);
    if (!budget) {
        ctx->shm_streak = 0;
        return;
    }
    const struct qsync__shm_ring *r = &ctx->shm_in;
    /* While we poll, the plugin need not write the eventfd. */
    qsync__shm_disarm(r);
    uint64_t end = qsync__shm_now_ns() + budget;
    for (unsigned n = 1; ctx->shm_base && !*flag && !ctx->fatal && !ctx->closing; n++) {
        if (qsync__shm_avail(r) > 0) {
            qsync__shm_drain(ctx);
            continue;
        }
        if (n % 64 == 0 && qsync__shm_now_ns() >= end)
            break;
        qsync__shm_cpu_relax();
    }
    /* Asleep again from here on: the plugin writes the eventfd. Anything
     * it published before it could see the flag is read now (shm.h's
     * Dekker pair); an eventfd count left by a frame read here only makes
     * the loop look at an empty ring once. */
    qsync__shm_spin_result(&ctx->shm_spinner, *flag);
    if (ctx->shm_base && qsync__shm_arm(r) > 0)
        qsync__shm_drain(ctx);
    if (!*flag) {
        ctx->shm_streak = 0;
        return;
    }
    if (++ctx->shm_streak % NOWAIT_EVERY == 0)
        uv_run(ctx->loop, UV_RUN_NOWAIT);
}

void qsync__shm_release(qsync_ctx *ctx)
{
    if (!ctx->shm_base)
        return;
    if (ctx->shm_poll_open) {
        ctx->shm_poll_open = 0;
        uv_close((uv_handle_t *)&ctx->shm_poll, qsync__handle_closed);
    }
    close(ctx->shm_efd);
    munmap(ctx->shm_base, qsync__shm_region_size());
    ctx->shm_base = NULL;
}

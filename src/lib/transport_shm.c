/*
 * The shared-memory transport (the shm ops of struct qsync__transport;
 * src/proto/shm.h, docs/protocol.md "Shared-memory transport",
 * docs/design.md).
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
 *   polls the ring itself (shm_spin), or, when the caller opted in with
 *   async_poll_ns, while the loop polls it after an advance (async_cb).
 * - The pipes stay (transport_pipe.c), for their ends of file: the plugin
 *   ends QEMU when grant_fd closes, and the report pipe's end of file
 *   tells us QEMU has gone (we then drain what it left in the ring first).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm.h"

/* A helper that keeps completing advances by polling runs the loop once
 * without waiting this often, so that QEMU's stderr and the timers are
 * still served. */
#define NOWAIT_EVERY 64u

struct qsync__shm {
    void *base;                     /* NULL when not mapped               */
    struct qsync__shm_ring out;     /* to the plugin: GRANT, INPUT        */
    struct qsync__shm_ring in;      /* to the library: HELLO, REPORT...   */
    int efd;
    uv_poll_t poll;
    int poll_open;
    struct qsync__shm_spinner spinner; /* how long the blocking helpers poll */
    unsigned streak;   /* advances completed by polling in a row          */

    /* async_poll_ns: the loop polls after each advance (async_cb). */
    uv_idle_t idle;
    int idle_open;
    struct qsync__shm_spinner async_spinner;
};

/* The transport's state while the region is mapped, else NULL. */
static struct qsync__shm *live(const qsync_ctx *ctx)
{
    struct qsync__shm *s = ctx->transport.shm;
    return s && s->base ? s : NULL;
}

int qsync__transport_shm_wanted(const qsync_ctx *ctx)
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

int qsync__transport_shm_prepare(qsync_ctx *ctx, struct qsync__launch *l)
{
    const char *what = "";
    int memfd = -1, efd = -1;
    void *base = NULL;
    qsync__transport_release(ctx); /* a previous, failed start's */
    struct qsync__shm *s = ctx->transport.shm;
    int rc = make_region(&memfd, &base, &efd, &what);
    if (rc)
        return qsync__set_error(ctx, rc, "channel: cannot set up the shared memory (%s: %s)",
                                what, strerror(-rc));
    s->base = base;
    qsync__shm_ring(base, QSYNC__SHM_TO_PLUGIN, &s->out);
    qsync__shm_ring(base, QSYNC__SHM_TO_LIBRARY, &s->in);
    s->efd = efd;
    s->poll_open = 0;
    s->streak = 0;
    /* The blocking helpers' polling budget (qsync_options.shm_poll_ns),
     * which the spinner cuts back while it does not pay (shm.h). */
    qsync__shm_spinner_init(&s->spinner, one_cpu(ctx) ? 0 : ctx->opts.shm_poll_ns);
    /* The asynchronous API's (async_poll_ns), on the caller's loop only:
     * a private loop is the blocking helpers', which poll by themselves. */
    s->idle_open = 0;
    qsync__shm_spinner_init(&s->async_spinner, one_cpu(ctx) || ctx->has_private_loop
                                                   ? 0
                                                   : ctx->opts.async_poll_ns);
    ctx->transport.ops = &qsync__transport_shm;
    l->child_shm = memfd;
    l->child_efd = efd;
    return 0;
}

/*
 * Reads what the plugin has put in the ring and delivers it, until the
 * ring is empty. When the loop polls (async_poll_ns), it stops once an
 * advance has completed and its callback has made the next: a plugin that
 * answers at once would otherwise keep this loop, and the caller's, going
 * for as long as the run lasts. The poll (async_cb, which that advance
 * started) reads the rest; what the plugin writes later while the ring is
 * armed also writes the eventfd.
 */
static void shm_drain(qsync_ctx *ctx)
{
    /* A callback may close the context, and a close may unmap the region:
     * look again before every read. */
    struct qsync__shm *s;
    uint64_t seq = ctx->pending_seq;
    while ((s = live(ctx)) != NULL && !qsync__ctx_done(ctx)) {
        size_t room;
        uint8_t *p = qsync__framing_space(ctx, &room);
        size_t n = qsync__shm_read(&s->in, p, room);
        if (n == 0)
            return;
        qsync__framing_received(ctx, n);
        if (s->idle_open && ctx->pending_seq && ctx->pending_seq != seq)
            return;
    }
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    qsync_ctx *ctx = h->data;
    uint64_t count;
    (void)status; /* an error on an eventfd: nothing to do but look at the ring */
    (void)events;
    while (read(ctx->transport.shm->efd, &count, sizeof count) < 0 && errno == EINTR) {
    }
    shm_drain(ctx);
}

static int shm_start(qsync_ctx *ctx)
{
    struct qsync__shm *s = ctx->transport.shm;
    int rc = uv_poll_init(ctx->loop, &s->poll, s->efd);
    if (rc)
        return rc;
    qsync__handle_opened(ctx, (uv_handle_t *)&s->poll);
    s->poll_open = 1;
    if (s->async_spinner.max_ns) {
        rc = uv_idle_init(ctx->loop, &s->idle);
        if (rc)
            return rc;
        qsync__handle_opened(ctx, (uv_handle_t *)&s->idle);
        s->idle_open = 1;
    }
    /* A HELLO may be waiting already; the eventfd says so too. */
    return uv_poll_start(&s->poll, UV_READABLE, poll_cb);
}

/* The end of the report pipe: last frames are drained, the watch stops. */
static void shm_at_eof(qsync_ctx *ctx)
{
    shm_drain(ctx);
    struct qsync__shm *s = live(ctx);
    if (s && s->poll_open)
        uv_poll_stop(&s->poll);
    if (s && s->idle_open)
        uv_idle_stop(&s->idle);
}

static void shm_pipe_bytes(qsync_ctx *ctx, size_t n)
{
    if (!qsync__ctx_done(ctx))
        qsync__on_failure(ctx, QSYNC_EPROTO,
                          "protocol error: %zu bytes on the report pipe, which carries "
                          "nothing when frames travel in shared memory",
                          n);
}

static void async_cb(uv_idle_t *h);

/* Writes a frame to the plugin and wakes it if it sleeps. */
static int shm_send(qsync_ctx *ctx, const void *buf, size_t len)
{
    struct qsync__shm *s = ctx->transport.shm;
    int rc = qsync__shm_write(&s->out, buf, len);
    if (rc == -EAGAIN)
        return qsync__set_error(ctx, QSYNC_EFULL, "the channel to QEMU is full");
    if (rc < 0)
        return qsync__set_error(ctx, QSYNC_EPROTO,
                                "a frame of %zu bytes does not fit the shared-memory ring", len);
    if (rc == 1) {
        /* The plugin sleeps, or is about to: wake it. */
        rc = qsync__shm_futex_wake(&s->out);
        if (rc)
            return qsync__set_error(ctx, rc, "waking the plugin: %s", strerror(-rc));
    }
    if (s->idle_open) {
        /* An advance may be pending from now: the loop polls for its
         * answer (async_cb, which stops at once if none is). */
        uv_idle_start(&s->idle, async_cb);
    }
    return 0;
}

/* What a poll waits for: a blocking helper's flag, or the answer to the
 * advance with sequence number seq (the loop's poll). */
struct poll_goal {
    const int *flag;
    uint64_t seq;
};

static int goal_met(const qsync_ctx *ctx, const struct poll_goal *g)
{
    return g->flag ? *g->flag : ctx->pending_seq != g->seq;
}

/*
 * Polls the ring until the goal is met or budget ns have passed, reading
 * what arrives (which may run the user's callbacks); the plugin need not
 * write the eventfd meanwhile. Returns whether the goal was met. Asleep
 * again on return: the plugin writes the eventfd; anything it published
 * before it could see the flag is read now (shm.h's Dekker pair), and an
 * eventfd count left by a frame read here only makes the loop look at an
 * empty ring once.
 */
static int poll_ring(qsync_ctx *ctx, struct qsync__shm *s, struct qsync__shm_spinner *sp,
                     uint64_t budget, const struct poll_goal *g)
{
    const struct qsync__shm_ring *r = &s->in;
    qsync__shm_disarm(r);
    uint64_t end = qsync__shm_now_ns() + budget;
    for (unsigned n = 1; s->base && !goal_met(ctx, g) && !qsync__ctx_done(ctx); n++) {
        if (qsync__shm_avail(r) > 0) {
            shm_drain(ctx);
            continue;
        }
        if (n % 64 == 0 && qsync__shm_now_ns() >= end)
            break;
        qsync__shm_cpu_relax();
    }
    int met = goal_met(ctx, g);
    qsync__shm_spin_result(sp, met);
    /* The loop's poll leaves what came after its goal to its next round
     * (async_cb), one answer per round. */
    if (s->base && qsync__shm_arm(r) > 0 && !(met && s->idle_open))
        shm_drain(ctx);
    return goal_met(ctx, g);
}

/* Blocking helpers: polls the ring for a bounded time until *flag is set,
 * before the caller runs the loop. */
static void shm_spin(qsync_ctx *ctx, const int *flag)
{
    struct qsync__shm *s = live(ctx);
    if (!s || *flag)
        return;
    uint64_t budget = qsync__shm_spin_budget(&s->spinner);
    const struct poll_goal g = {flag, 0};
    if (!budget || !poll_ring(ctx, s, &s->spinner, budget, &g)) {
        s->streak = 0;
        return;
    }
    if (++s->streak % NOWAIT_EVERY == 0)
        uv_run(ctx->loop, UV_RUN_NOWAIT);
}

/*
 * The asynchronous API's opt-in polling (qsync_options.async_poll_ns): an
 * idle handle, started by every frame sent while an advance may follow,
 * polls the ring on the caller's loop for the pending advance's answer.
 * The answer's callbacks run from here, and the advance they make is
 * polled for in turn, NOWAIT_EVERY of them at most before the loop gets
 * one turn (the idle handle keeps that turn from blocking: signals, timers
 * and QEMU's output are still served). A poll that misses leaves the
 * answer to the eventfd, as without the option, and stops the handle.
 */
static void async_cb(uv_idle_t *h)
{
    qsync_ctx *ctx = h->data;
    struct qsync__shm *s = live(ctx);
    for (unsigned n = 0; s && !qsync__ctx_done(ctx); n++, s = live(ctx)) {
        if (n == NOWAIT_EVERY)
            return; /* the handle stays on: one turn of the loop, then on */
        if (qsync__shm_avail(&s->in) > 0) {
            shm_drain(ctx); /* what a drain left for the poll */
            continue;
        }
        /* The ring is empty and armed from here: the handle may stop. */
        if (!ctx->pending_seq)
            break;
        uint64_t budget = qsync__shm_spin_budget(&s->async_spinner);
        if (!budget)
            break;
        const struct poll_goal g = {NULL, ctx->pending_seq};
        if (!poll_ring(ctx, s, &s->async_spinner, budget, &g))
            break;
    }
    s = live(ctx);
    if (s && s->idle_open)
        uv_idle_stop(&s->idle);
}

/* Unmaps, closes the eventfd and its watch; back to the pipe ops. Any
 * path, more than once. The state itself lives as long as the context:
 * the watch's memory is in it. */
static void shm_release(qsync_ctx *ctx)
{
    struct qsync__shm *s = live(ctx);
    ctx->transport.ops = &qsync__transport_pipe;
    if (!s)
        return;
    if (s->poll_open) {
        s->poll_open = 0;
        qsync__handle_close((uv_handle_t *)&s->poll);
    }
    if (s->idle_open) {
        s->idle_open = 0;
        qsync__handle_close((uv_handle_t *)&s->idle);
    }
    close(s->efd);
    munmap(s->base, qsync__shm_region_size());
    s->base = NULL;
}

int qsync__transport_new(qsync_ctx *ctx)
{
    if (!qsync__transport_shm_wanted(ctx))
        return 0;
    ctx->transport.shm = calloc(1, sizeof *ctx->transport.shm);
    return ctx->transport.shm ? 0 : -ENOMEM;
}

void qsync__transport_free(qsync_ctx *ctx)
{
    free(ctx->transport.shm);
    ctx->transport.shm = NULL;
}

const struct qsync__transport_ops qsync__transport_shm = {
    .name = "shm",
    .start = shm_start,
    .send = shm_send,
    .pipe_bytes = shm_pipe_bytes,
    .at_eof = shm_at_eof,
    .spin = shm_spin,
    .release = shm_release,
};

/*
 * Legacy FIFO mode: the SIL Kit Time Sync Plugin FIFO protocol, as its
 * code behaves. Two named FIFOs: after each quantum of TimeInMicroSeconds the
 * plugin writes one or two bytes to GuestToHost; one byte written to
 * HostToGuest lets the guest run the next quantum. The first quantum runs
 * as soon as QEMU starts, without waiting for a byte.
 *
 * The FIFOs live in a private directory made by mkdtemp (mode 0700) and
 * are removed on every path: as soon as both ends are known to be open,
 * when QEMU exits, when the start fails, and at close.
 *
 * Opening never blocks the loop: our GuestToHost end is opened read-write
 * and non-blocking (a FIFO opened that way never sees end-of-file, so
 * QEMU's death is learnt from its exit, and the FIFO drained then); our
 * HostToGuest end is opened write-only and non-blocking, which fails until
 * the plugin has opened its read end, so it is retried on a timer until it
 * works or QEMU is gone.
 */
#include "internal.h"
#include "legacy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETRY_MS 5

/* The mode's state (ctx->mode_state). */
struct fifo_state {
    char *dir;   /* private 0700 directory, removed on every path */
    char *h2g;   /* HostToGuest: we write one byte per quantum    */
    char *g2h;   /* GuestToHost: one or two bytes per quantum done */
    uv_timer_t open_timer;
    uint64_t quanta_done; /* quanta the guest has finished        */
    uint64_t target;      /* quanta the pending advance ends at   */
    int running;          /* the guest is inside a quantum        */
    int signal_bytes;     /* bytes of the last done signal        */
};

static struct fifo_state *state(const qsync_ctx *ctx)
{
    return ctx->mode_state;
}

static int fifo_init(qsync_ctx *ctx)
{
    struct fifo_state *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    ctx->mode_state = f;
    uv_timer_init(ctx->loop, &f->open_timer);
    qsync__handle_opened(ctx, (uv_handle_t *)&f->open_timer);
    return 0;
}

static void fifo_close(qsync_ctx *ctx)
{
    qsync__handle_close((uv_handle_t *)&state(ctx)->open_timer);
}

static void fifo_fini(qsync_ctx *ctx)
{
    free(ctx->mode_state);
    ctx->mode_state = NULL;
}

static void fifo_remove_names(qsync_ctx *ctx)
{
    struct fifo_state *f = state(ctx);
    if (f->h2g) {
        unlink(f->h2g);
        free(f->h2g);
        f->h2g = NULL;
    }
    if (f->g2h) {
        unlink(f->g2h);
        free(f->g2h);
        f->g2h = NULL;
    }
    if (f->dir) {
        rmdir(f->dir);
        free(f->dir);
        f->dir = NULL;
    }
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Whether the plugin at path is ours: its file holds the marker of our
 * FIFO keys (legacy.h). Read, never loaded. */
static int plugin_takes_our_keys(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat st;
    int found = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        (uint64_t)st.st_size <= (1u << 30)) {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map != MAP_FAILED) {
            found = memmem(map, (size_t)st.st_size, QSYNC__FIFO_KEYS_MARKER,
                           sizeof QSYNC__FIFO_KEYS_MARKER - 1) != NULL;
            munmap(map, (size_t)st.st_size);
        }
    }
    close(fd);
    return found;
}

/* The private directory with the two FIFOs, and our non-blocking
 * read-write end of GuestToHost; returns it, or an error (set). */
static int make_fifos(qsync_ctx *ctx, int *fd_out)
{
    struct fifo_state *f = state(ctx);
    int rc;
    /* QEMU's option parser splits on commas, so the directory must not
     * contain any: fall back to /tmp when $TMPDIR does. */
    const char *base = getenv("TMPDIR");
    if (!base || base[0] != '/' || strchr(base, ','))
        base = "/tmp";
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/qsync-fifo-XXXXXX", base);
    if (!mkdtemp(tmpl)) {
        rc = -errno;
        return qsync__set_error(ctx, rc, "fifo mode: mkdtemp in %s: %s", base, strerror(errno));
    }
    f->dir = strdup(tmpl);
    f->h2g = join(tmpl, "HostToGuest");
    f->g2h = join(tmpl, "GuestToHost");
    if (!f->dir || !f->h2g || !f->g2h) {
        rmdir(tmpl);
        fifo_remove_names(ctx);
        return qsync__nomem(ctx, "qsync_start");
    }
    if (mkfifo(f->h2g, 0600) || mkfifo(f->g2h, 0600)) {
        rc = -errno;
        qsync__set_error(ctx, rc, "fifo mode: mkfifo in %s: %s", tmpl, strerror(errno));
        fifo_remove_names(ctx);
        return rc;
    }
    int fd = open(f->g2h, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        qsync__set_error(ctx, rc, "fifo mode: open %s: %s", f->g2h, strerror(errno));
        fifo_remove_names(ctx);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* The plugin's options: the Time Sync Plugin's keys, with the names the
 * user chose; and to our plugin (ours) also the controller to watch (it
 * ends QEMU when we die, even before we have opened HostToGuest), that
 * the FIFOs are private (so that it removes them if we die), and the done
 * signal's width. */
static void plugin_keys(const qsync_ctx *ctx, int ours, char *rest, size_t cap)
{
    const struct fifo_state *f = state(ctx);
    int n = snprintf(rest, cap, "%s=%s,%s=%s,%s=%llu", ctx->fifo_keys[0], f->h2g,
                     ctx->fifo_keys[1], f->g2h, ctx->fifo_keys[2],
                     (unsigned long long)ctx->opts.fifo_quantum_us);
    if (ours && n > 0 && (size_t)n < cap)
        n += snprintf(rest + n, cap - (size_t)n, ",parent=%d,remove_fifos=1", (int)getpid());
    if (ours && ctx->opts.fifo_done_bytes && n > 0 && (size_t)n < cap)
        snprintf(rest + n, cap - (size_t)n, ",done_bytes=%d", ctx->opts.fifo_done_bytes);
}

static int fifo_prepare(qsync_ctx *ctx, const char *const argv[], struct qsync__launch *l)
{
    int rc = qsync__find_plugin(ctx);
    if (rc)
        return rc;
    int ours = plugin_takes_our_keys(ctx->plugin_path);
    if (!ours && ctx->opts.fifo_done_bytes)
        return qsync__set_error(ctx, QSYNC_EARG,
                                "fifo_done_bytes: plugin_path '%s' is not our plugin (it does "
                                "not take done_bytes=); leave fifo_done_bytes at 0",
                                ctx->plugin_path);
    int fd = -1;
    rc = make_fifos(ctx, &fd);
    if (rc)
        return rc;
    l->our_in = fd;
    char rest[8192];
    plugin_keys(ctx, ours, rest, sizeof rest);
    rc = qsync__launch_plugin(ctx, l, rest);
    if (rc == 0 && !qsync__argv_has(argv, "-icount") &&
        (qsync__launch_add(l, "-icount") || qsync__launch_add(l, "shift=0,sleep=off")))
        rc = qsync__set_error(ctx, QSYNC_EARG, "too many arguments");
    if (rc) {
        close(fd);
        l->our_in = -1;
        fifo_remove_names(ctx);
        return rc;
    }
    return 0;
}

/* Makes progress on the pending advance: completes it, or lets the guest
 * run the next quantum. */
static void fifo_progress(qsync_ctx *ctx)
{
    struct fifo_state *f = state(ctx);
    if (!ctx->pending_seq || f->running || qsync__ctx_done(ctx))
        return;
    uint64_t q_ns = ctx->opts.fifo_quantum_us * 1000u;
    if (f->quanta_done >= f->target) {
        qsync_stop stop;
        memset(&stop, 0, sizeof stop);
        stop.seq = ctx->pending_seq;
        stop.deadline_ns = ctx->pending_deadline;
        stop.virtual_ns = f->target * q_ns;
        qsync__on_complete(ctx, &stop, stop.deadline_ns);
        return;
    }
    if (!qsync__transport_can_send(ctx))
        return; /* HostToGuest is not open yet; the retry timer comes back */
    static const char go = 'g';
    int rc = qsync__transport_send(ctx, &go, 1);
    if (rc) {
        qsync__on_failure(ctx, rc, NULL);
        return;
    }
    f->running = 1;
}

static int try_open_h2g(qsync_ctx *ctx)
{
    struct fifo_state *f = state(ctx);
    if (qsync__transport_can_send(ctx))
        return 1;
    if (!f->h2g)
        return 0;
    int fd = open(f->h2g, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENXIO) { /* ENXIO: the plugin has not opened it yet */
            qsync__on_failure(ctx, -errno, "fifo mode: open %s: %s", f->h2g, strerror(errno));
        }
        return 0;
    }
    qsync__transport_set_grant_fd(ctx, fd);
    qsync__on_ready(ctx);
    return 1;
}

static void fifo_tick(uv_timer_t *t)
{
    qsync_ctx *ctx = t->data;
    if (qsync__ctx_done(ctx) || ctx->child.exited) {
        uv_timer_stop(t);
        return;
    }
    if (try_open_h2g(ctx)) {
        uv_timer_stop(t);
        fifo_progress(ctx);
    } else if (!uv_is_active((uv_handle_t *)t)) {
        qsync__timer_start(t, fifo_tick, RETRY_MS, RETRY_MS);
    }
}

static void fifo_started(qsync_ctx *ctx)
{
    struct fifo_state *f = state(ctx);
    f->running = 1; /* The Time Sync Plugin runs the first quantum at once */
    qsync__timer_start(&f->open_timer, fifo_tick, 0, RETRY_MS);
}

static int fifo_grant(qsync_ctx *ctx, uint64_t seq, uint64_t deadline_ns, uint64_t delta_ns)
{
    struct fifo_state *f = state(ctx);
    (void)seq;
    uint64_t q_ns = ctx->opts.fifo_quantum_us * 1000u;
    if (delta_ns == 0 || delta_ns % q_ns != 0)
        return qsync__set_error(ctx, QSYNC_EARG,
                                "fifo mode: the quantum is fixed at start to %llu us; an advance "
                                "must be a positive multiple of it (got %llu ns)",
                                (unsigned long long)ctx->opts.fifo_quantum_us,
                                (unsigned long long)delta_ns);
    f->target = deadline_ns / q_ns;
    /* From the loop, never from inside this call: the callback of an
     * advance must not run before qsync_advance() returns. */
    qsync__timer_start(&f->open_timer, fifo_tick, 0, RETRY_MS);
    return 0;
}

static size_t fifo_consume(qsync_ctx *ctx, const uint8_t *buf, size_t len)
{
    struct fifo_state *f = state(ctx);
    (void)buf;
    if (len == 0)
        return 0;
    /* One done signal arrives whole: a pipe write of two bytes is atomic. */
    switch (qsync__fifo_classify(f->running, f->signal_bytes, len)) {
    case QSYNC__FIFO_TOO_MANY:
        qsync__on_failure(ctx, QSYNC_EPROTO,
                          "fifo protocol error: %zu bytes for one quantum (1 or 2 expected)", len);
        break;
    case QSYNC__FIFO_DONE:
        f->running = 0;
        f->signal_bytes = (int)len;
        f->quanta_done++;
        /* Both ends are open now; the names have done their work. */
        if (qsync__transport_can_send(ctx))
            fifo_remove_names(ctx);
        fifo_progress(ctx);
        break;
    case QSYNC__FIFO_SECOND:
        f->signal_bytes = 2; /* the second byte of a late two-byte signal */
        break;
    case QSYNC__FIFO_UNEXPECTED:
        qsync__on_failure(ctx, QSYNC_EPROTO,
                          "fifo protocol error: %zu unexpected bytes while the guest is frozen",
                          len);
        break;
    }
    return len;
}

static void fifo_cleanup(qsync_ctx *ctx)
{
    fifo_remove_names(ctx);
}

static void fifo_exited(qsync_ctx *ctx)
{
    struct fifo_state *f = state(ctx);
    /* Our read end is also a writer, so no end-of-file comes: read what
     * QEMU wrote before it died, then call the channel closed. */
    qsync__transport_end_now(ctx);
    uv_timer_stop(&f->open_timer);
    fifo_remove_names(ctx);
}

const struct qsync__mode qsync__mode_fifo = {
    .name = "fifo",
    .not_ready = "did not open its end of the HostToGuest FIFO",
    .ready_moment = "the plugin opened its end of HostToGuest",
    .prepare = fifo_prepare,
    .started = fifo_started,
    .grant = fifo_grant,
    .consume = fifo_consume,
    .cleanup = fifo_cleanup,
    .exited = fifo_exited,
    .init = fifo_init,
    .close = fifo_close,
    .fini = fifo_fini,
};

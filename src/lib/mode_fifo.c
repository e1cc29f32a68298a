/*
 * Legacy FIFO mode: seed 000's Time Sync Plugin protocol, as its code
 * behaves. Two named FIFOs: after each quantum of TimeInMicroSeconds the
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

static void fifo_remove_names(qsync_ctx *ctx)
{
    if (ctx->fifo_h2g) {
        unlink(ctx->fifo_h2g);
        free(ctx->fifo_h2g);
        ctx->fifo_h2g = NULL;
    }
    if (ctx->fifo_g2h) {
        unlink(ctx->fifo_g2h);
        free(ctx->fifo_g2h);
        ctx->fifo_g2h = NULL;
    }
    if (ctx->fifo_dir) {
        rmdir(ctx->fifo_dir);
        free(ctx->fifo_dir);
        ctx->fifo_dir = NULL;
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
    ctx->fifo_dir = strdup(tmpl);
    ctx->fifo_h2g = join(tmpl, "HostToGuest");
    ctx->fifo_g2h = join(tmpl, "GuestToHost");
    if (!ctx->fifo_dir || !ctx->fifo_h2g || !ctx->fifo_g2h) {
        rmdir(tmpl);
        fifo_remove_names(ctx);
        return qsync__nomem(ctx, "qsync_start");
    }
    if (mkfifo(ctx->fifo_h2g, 0600) || mkfifo(ctx->fifo_g2h, 0600)) {
        rc = -errno;
        qsync__set_error(ctx, rc, "fifo mode: mkfifo in %s: %s", tmpl, strerror(errno));
        fifo_remove_names(ctx);
        return rc;
    }
    int fd = open(ctx->fifo_g2h, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        qsync__set_error(ctx, rc, "fifo mode: open %s: %s", ctx->fifo_g2h, strerror(errno));
        fifo_remove_names(ctx);
        return rc;
    }
    l->our_in = fd;

    /* Seed 000's keys, with the names the user chose; and to our plugin
     * also the controller to watch (it ends QEMU when we die, even before
     * we have opened HostToGuest), that the FIFOs are private (so that
     * it removes them if we die), and the done signal's width. */
    char rest[8192];
    int n = snprintf(rest, sizeof rest, "%s=%s,%s=%s,%s=%llu", ctx->fifo_keys[0], ctx->fifo_h2g,
                     ctx->fifo_keys[1], ctx->fifo_g2h, ctx->fifo_keys[2],
                     (unsigned long long)ctx->opts.fifo_quantum_us);
    if (ours && n > 0 && (size_t)n < sizeof rest)
        n += snprintf(rest + n, sizeof rest - (size_t)n, ",parent=%d,remove_fifos=1",
                      (int)getpid());
    if (ours && ctx->opts.fifo_done_bytes && n > 0 && (size_t)n < sizeof rest)
        snprintf(rest + n, sizeof rest - (size_t)n, ",done_bytes=%d", ctx->opts.fifo_done_bytes);
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
    if (!ctx->pending_seq || ctx->fifo_running || ctx->fatal || ctx->closing)
        return;
    uint64_t q_ns = ctx->opts.fifo_quantum_us * 1000u;
    if (ctx->fifo_quanta_done >= ctx->fifo_target) {
        qsync_stop stop;
        memset(&stop, 0, sizeof stop);
        stop.seq = ctx->pending_seq;
        stop.deadline_ns = ctx->pending_deadline;
        stop.virtual_ns = ctx->fifo_target * q_ns;
        qsync__complete(ctx, &stop, stop.deadline_ns);
        return;
    }
    if (ctx->grant_fd < 0)
        return; /* HostToGuest is not open yet; the retry timer comes back */
    static const char go = 'g';
    int rc = qsync__write_grant(ctx, &go, 1);
    if (rc) {
        qsync__fail(ctx, rc);
        return;
    }
    ctx->fifo_running = 1;
}

static int try_open_h2g(qsync_ctx *ctx)
{
    if (ctx->grant_fd >= 0)
        return 1;
    if (!ctx->fifo_h2g)
        return 0;
    int fd = open(ctx->fifo_h2g, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENXIO) { /* ENXIO: the plugin has not opened it yet */
            int rc = -errno;
            qsync__set_error(ctx, rc, "fifo mode: open %s: %s", ctx->fifo_h2g, strerror(errno));
            qsync__fail(ctx, rc);
        }
        return 0;
    }
    ctx->grant_fd = fd;
    qsync__ready(ctx);
    return 1;
}

static void fifo_tick(uv_timer_t *t)
{
    qsync_ctx *ctx = t->data;
    if (ctx->fatal || ctx->closing || ctx->proc_exited) {
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
    ctx->fifo_running = 1; /* seed 000's plugin runs the first quantum at once */
    qsync__timer_start(&ctx->fifo_open_timer, fifo_tick, 0, RETRY_MS);
}

static int fifo_grant(qsync_ctx *ctx, uint64_t seq, uint64_t deadline_ns, uint64_t delta_ns)
{
    (void)seq;
    uint64_t q_ns = ctx->opts.fifo_quantum_us * 1000u;
    if (delta_ns == 0 || delta_ns % q_ns != 0)
        return qsync__set_error(ctx, QSYNC_EARG,
                                "fifo mode: the quantum is fixed at start to %llu us; an advance "
                                "must be a positive multiple of it (got %llu ns)",
                                (unsigned long long)ctx->opts.fifo_quantum_us,
                                (unsigned long long)delta_ns);
    ctx->fifo_target = deadline_ns / q_ns;
    /* From the loop, never from inside this call: the callback of an
     * advance must not run before qsync_advance() returns. */
    qsync__timer_start(&ctx->fifo_open_timer, fifo_tick, 0, RETRY_MS);
    return 0;
}

static size_t fifo_consume(qsync_ctx *ctx, const uint8_t *buf, size_t len)
{
    (void)buf;
    if (len == 0)
        return 0;
    /* One done signal arrives whole: a pipe write of two bytes is atomic. */
    switch (qsync__fifo_classify(ctx->fifo_running, ctx->fifo_signal_bytes, len)) {
    case QSYNC__FIFO_TOO_MANY:
        qsync__set_error(ctx, QSYNC_EPROTO,
                         "fifo protocol error: %zu bytes for one quantum (1 or 2 expected)", len);
        qsync__fail(ctx, QSYNC_EPROTO);
        break;
    case QSYNC__FIFO_DONE:
        ctx->fifo_running = 0;
        ctx->fifo_signal_bytes = (int)len;
        ctx->fifo_quanta_done++;
        /* Both ends are open now; the names have done their work. */
        if (ctx->grant_fd >= 0)
            fifo_remove_names(ctx);
        fifo_progress(ctx);
        break;
    case QSYNC__FIFO_SECOND:
        ctx->fifo_signal_bytes = 2; /* the second byte of a late two-byte signal */
        break;
    case QSYNC__FIFO_UNEXPECTED:
        qsync__set_error(ctx, QSYNC_EPROTO,
                         "fifo protocol error: %zu unexpected bytes while the guest is frozen", len);
        qsync__fail(ctx, QSYNC_EPROTO);
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
    /* Our read end is also a writer, so no end-of-file comes: read what
     * QEMU wrote before it died, then call the channel closed. */
    if (ctx->ch_in_open && !ctx->ch_eof) {
        int fd = -1;
        if (uv_fileno((uv_handle_t *)&ctx->ch_in, &fd) == 0) {
            uint8_t b[64];
            ssize_t n;
            while (!ctx->fatal && (n = read(fd, b, sizeof b)) > 0)
                fifo_consume(ctx, b, (size_t)n);
        }
        uv_read_stop((uv_stream_t *)&ctx->ch_in);
        ctx->ch_eof = 1;
        qsync__on_channel_eof(ctx);
    }
    uv_timer_stop(&ctx->fifo_open_timer);
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
};

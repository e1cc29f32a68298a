/*
 * qsync-net: runs a network of guests in lockstep. Every guest gets one NIC
 * on one simulated Ethernet segment, a learning switch, and each frame
 * reaches the other guests exactly --latency after the virtual time it was
 * sent. All guests advance together through one group barrier, quantum by
 * quantum; at each barrier the quantum's frames and output lines are put
 * in a canonical order, so that two runs print the same bytes and write
 * the same pcap (docs/qsync-net.md).
 */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef QSYNC_HAVE_PCAP
#include <pcap/pcap.h>
#endif

#include <qsync/qsync.h>
#ifdef QSYNC_HAVE_MPI
#include <qsync/mpi.h>
#endif

#include "args.h"
#include "duration.h"
#include "progress.h"
#include "segment.h"

#define EXIT_USAGE 2
/* Guest N's MAC is 52:54:00:00:00:NN. */
#define MAX_GUESTS 254u
#define DEFAULT_LATENCY_NS 100000u
/* The longest unfinished line of QEMU's stderr held for its prefix. */
#define ERR_LINE_MAX 4096u

struct buf {
    char *p;
    size_t len, cap;
};

struct net;

struct held_line {
    uint64_t v; /* the library's time for it */
    size_t len;
};

struct guest {
    struct net *net;
    unsigned n; /* 1, 2, ... */
    const char *const *argv;
    qsync_ctx *ctx; /* NULL once closed */
    int nic;
    uint8_t mac[6];
    int have_info;
    int ended;  /* its QEMU is gone (an advance failed with EEXITED, or exited) */
    int exited; /* the exited callback came */
    int by_close;
    int64_t exit_status;
    int term_signal;
    uint64_t ended_at; /* the deadline of the quantum it ended in */
    uint64_t instructions;
    uint64_t frames_sent;
    uint64_t routed;         /* frames handed to its NIC (qsync_send_frame) */
    uint64_t dropped_exited; /* frames for it after it had ended */
    uint64_t lost;           /* frames handed to its NIC and never taken */
    uint64_t in_flight;      /* frames for it not yet due when the run ended */
    qsync_nic_stats stats;
    int have_stats;
    struct buf out; /* the quantum's lines until the barrier: each a struct
                       held_line, then its bytes */
    struct buf err; /* QEMU's stderr: the unfinished line */
};

struct net {
    /* Flags. */
    uint64_t quantum_ns, latency_ns, until_ns;
    const char *quantum_arg, *latency_arg;
    const char *nic_model; /* "e1000" or "virtio" */
    const char *pcap_path;
    const char *json_path;
    int timestamps;
    int quiet;
    int use_mpi; /* --mpi */
    int skip_idle; /* --skip-idle */

    /* The run. */
    struct guest *g;
    unsigned n;
    uv_loop_t *loop;
    qsync_group *group;
    uv_signal_t sigint, sigterm;
    int signals_on;
    struct qsync__progress prog;
    struct qsync__segment seg;
    unsigned *ports; /* n entries: a frame's destinations */
    FILE *out;       /* the guests' lines: stdout, or stderr with --json - */
    FILE *json;      /* --json's, opened before any QEMU starts */
#ifdef QSYNC_HAVE_PCAP
    pcap_t *pcap;
    pcap_dumper_t *dumper;
#endif
    uint64_t deadline; /* of the group advance under way */
    int barrier_waiting;
    int finishing;

#ifdef QSYNC_HAVE_MPI
    qsync_mpi *mpi; /* --mpi: guest N runs on rank (N - 1) % size */
#endif
    int rank, size; /* 0 and 1 without --mpi */

    /* Results. */
    uint64_t quanta;
    uint64_t virtual_ns;
    int64_t max_overshoot;
    uint64_t frames;
    uint64_t runts; /* shorter than an Ethernet header: dropped */
    int interrupted;
    int setup_error;
    int run_error;
    uint64_t t0;
    double wall_s;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qsync-net [OPTIONS] -- QEMU_BINARY [QEMU_ARGS...] -- QEMU_BINARY [QEMU_ARGS...]\n"
            "                 [-- QEMU_BINARY [QEMU_ARGS...] ...]\n"
            "Runs two or more guests in lockstep on one simulated Ethernet segment.\n"
            "Each '--' starts the next guest's QEMU command.\n"
            "\n"
            "  --quantum DUR   virtual time between barriers, at most --latency\n"
            "                  (default: --latency)\n"
            "  --latency DUR   a frame reaches the other guests this long after it was\n"
            "                  sent (default 100us)\n"
            "  --until DUR     end the run at this virtual time (default: when every\n"
            "                  guest has exited)\n"
            "  --nic MODEL     each guest's NIC: e1000 (default) or virtio\n"
            "  --pcap FILE     write every frame that enters the segment to FILE\n"
            "                  (nanosecond pcap, stamped with the virtual send time)\n"
            "  --json FILE     write a summary as JSON to FILE ('-': stdout, and the\n"
            "                  guests' lines go to stderr)\n"
            "  --timestamps    put the virtual time of the quantum's end after each\n"
            "                  line's [N]: [1] [    6.100000000] ...\n"
            "  --quiet         print nothing of our own but errors (no progress line,\n"
            "                  no warnings)\n"
            "  --mpi           under mpirun: guest N runs on rank (N - 1) %% ranks, rank 0\n"
            "                  prints the lines and writes the pcap and the JSON, the\n"
            "                  same bytes as one process (docs/scale.md)\n"
            "  --skip-idle     when every guest is halted until a later time (its next\n"
            "                  timer or frame), go there in one quantum: the same\n"
            "                  lines, frames and pcap, fewer barriers (docs/qsync-net.md)\n"
            "  --help, --version\n"
            "\n"
            "Guest N's lines are printed as '[N] line', a quantum at a time, guest 1's\n"
            "first. Exit status: 0 when every guest ended with 0 or --until ended\n"
            "the run; else the status of the first guest that failed; 128 + N after\n"
            "signal N; 1 for a run error; 2 for usage or set-up errors.\n");
}

/* ---- small helpers ----------------------------------------------------- */

static int buf_add(struct buf *b, const char *p, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, len);
    b->len += len;
    return 0;
}

/* A message of our own on stderr, on a line of its own. */
static void say(struct net *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct net *n, const char *fmt, ...)
{
    va_list ap;
    qsync__progress_clear(&n->prog);
    fputs("qsync-net: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static const char *model_name(const struct net *n)
{
    return strcmp(n->nic_model, "virtio") == 0 ? "virtio-net" : "e1000";
}

/* Whether guest g runs here (on this rank). */
static int is_local(const struct net *n, const struct guest *g)
{
    return (int)((g->n - 1) % (unsigned)n->size) == n->rank;
}

/* ---- the end ----------------------------------------------------------- */

/* Copies guest g's NIC counters, while its context is there. */
static void take_stats(struct guest *g)
{
    if (g->ctx && qsync_nic_get_stats(g->ctx, (unsigned)g->nic, &g->stats) == 0)
        g->have_stats = 1;
}

static void close_guest(struct guest *g)
{
    if (g->ctx) {
        take_stats(g);
        qsync_close(g->ctx, NULL);
        g->ctx = NULL;
    }
}

/* Ends every QEMU (closing a context ends its QEMU, see qsync_close()),
 * the progress line and the signal watchers; the loop then runs dry. */
static void finish(struct net *n)
{
    n->finishing = 1;
    qsync__progress_stop(&n->prog);
    for (unsigned i = 0; i < n->n; i++)
        close_guest(&n->g[i]);
    if (n->signals_on) {
        n->signals_on = 0;
        uv_close((uv_handle_t *)&n->sigint, NULL);
        uv_close((uv_handle_t *)&n->sigterm, NULL);
    }
}

/* ---- the barrier: frames and lines of a quantum, in canonical order ----- */

static void write_pcap(struct net *n, const struct qsync__seg_frame *f)
{
#ifdef QSYNC_HAVE_PCAP
    if (!n->dumper)
        return;
    struct pcap_pkthdr h;
    memset(&h, 0, sizeof h);
    /* A nanosecond-precision dump takes nanoseconds in tv_usec. */
    h.ts.tv_sec = (time_t)(f->t / 1000000000u);
    h.ts.tv_usec = (suseconds_t)(f->t % 1000000000u);
    h.len = (bpf_u_int32)f->len;
    h.caplen = f->len < 65535u ? (bpf_u_int32)f->len : 65535u;
    pcap_dump((u_char *)n->dumper, &h, f->data);
#else
    (void)n;
    (void)f;
#endif
}

/* Hands the frame to guest to's NIC, latency after it was sent. */
static void deliver(struct net *n, struct guest *to, const struct qsync__seg_frame *f)
{
    if (!is_local(n, to))
        return; /* its rank delivers it, from the same canonical order */
    if (to->ended || !to->ctx) {
        to->dropped_exited++;
        return;
    }
    int rc = qsync_send_frame(to->ctx, (unsigned)to->nic, f->t + n->latency_ns, f->data, f->len);
    if (rc) {
        say(n, "[%u] cannot deliver a frame: %s", to->n, qsync_last_error(to->ctx));
        n->run_error = 1;
        finish(n);
        return;
    }
    to->routed++;
}

/* Every held frame, in canonical order: into the pcap, then through the
 * switch (route: 0 at the end of the run, when nobody receives any more). */
static void flush_frames(struct net *n, int route)
{
    qsync__segment_sort(&n->seg);
    for (size_t i = 0; i < n->seg.n_frames; i++) {
        const struct qsync__seg_frame *f = &n->seg.frames[i];
        n->frames++;
        write_pcap(n, f);
        if (f->len < 14)
            n->runts++;
        if (!route || n->finishing)
            continue;
        unsigned k = qsync__segment_route(&n->seg, f, n->ports);
        for (unsigned j = 0; j < k && !n->finishing; j++)
            deliver(n, &n->g[n->ports[j]], f);
    }
    qsync__segment_clear(&n->seg);
}

/* Prints guest g's held lines, each after "[N] " (and with --timestamps
 * the time: stamp, or the library's own when stamp is 0). */
static void print_lines(struct net *n, struct guest *g, uint64_t stamp)
{
    size_t at = 0;
    while (at < g->out.len) {
        struct held_line h;
        memcpy(&h, g->out.p + at, sizeof h);
        at += sizeof h;
        uint64_t v = stamp ? stamp : h.v;
        if (n->timestamps)
            fprintf(n->out, "[%u] [%5" PRIu64 ".%09" PRIu64 "] ", g->n, v / 1000000000u,
                    v % 1000000000u);
        else
            fprintf(n->out, "[%u] ", g->n);
        fwrite(g->out.p + at, 1, h.len, n->out);
        fputc('\n', n->out);
        at += h.len;
    }
    g->out.len = 0;
}

/*
 * Every guest's held lines, guest 1's first. At a barrier every line is
 * stamped with the barrier's time, the end of the quantum in which it
 * was completed: the library stamps the lines of a guest that exits
 * mid-quantum with the time QEMU reported at its exit, which is not
 * reproducible (it may read the quantum's deadline instead).
 */
static void flush_lines(struct net *n, uint64_t stamp)
{
    int any = 0;
    for (unsigned i = 0; i < n->n; i++) {
        struct guest *g = &n->g[i];
        if (g->out.len == 0)
            continue;
        if (!any)
            qsync__progress_clear(&n->prog);
        any = 1;
        print_lines(n, g, stamp);
    }
    if (any)
        fflush(n->out);
}

static void on_barrier(qsync_group *group, int status, uint64_t deadline_ns);

static void advance(struct net *n)
{
    uint64_t now = n->virtual_ns;
    /* --skip-idle: as libqsync-mpi's windows do, so that --mpi prints
     * the same (frames in flight are queued in their receivers' NICs). */
    uint64_t next = qsync_skip_to_ns(now, n->quantum_ns,
                                      n->skip_idle ? qsync_group_next_event_ns(n->group) : now);
    if (n->until_ns && next > n->until_ns)
        next = n->until_ns;
    /* Nothing due ever, no --until: one quantum, not the end of the clock. */
    if (next == QSYNC_DEADLINE_MAX)
        next = now + n->quantum_ns;
    n->deadline = next;
    int rc = qsync_group_advance_to_ns(n->group, next, on_barrier);
    if (rc) {
        say(n, "advance failed: %s", qsync_strerror(rc));
        n->run_error = 1;
        finish(n);
    }
}

/* The barrier's work, once every guest that ended in the quantum has also
 * exited (its last frames and lines come before its exited callback), so
 * that what is printed and routed here never depends on host timing. */
static void try_barrier(struct net *n)
{
    if (!n->barrier_waiting || n->finishing || n->use_mpi)
        return;
    for (unsigned i = 0; i < n->n; i++)
        if (n->g[i].ended && !n->g[i].exited)
            return;
    n->barrier_waiting = 0;
    n->quanta++;
    n->virtual_ns = n->deadline;
    flush_frames(n, 1);
    flush_lines(n, n->virtual_ns);
    if (n->finishing)
        return;
    if (qsync_group_size(n->group) == 0 || (n->until_ns && n->virtual_ns >= n->until_ns)) {
        finish(n);
        return;
    }
    advance(n);
}

static void on_barrier(qsync_group *group, int status, uint64_t deadline_ns)
{
    (void)status; /* each member's reached callback has said what failed */
    (void)deadline_ns;
    struct net *n = qsync_group_get_data(group);
    n->barrier_waiting = 1;
    try_barrier(n);
}

/* ---- the guests' callbacks --------------------------------------------- */

static void on_ready(qsync_ctx *ctx, const qsync_info *info)
{
    (void)info;
    struct guest *g = qsync_get_data(ctx);
    g->have_info = 1;
}

/* Guest g's QEMU is gone: it leaves the group, the others carry on. */
static void guest_ended(struct guest *g)
{
    struct net *n = g->net;
    if (g->ended)
        return;
    g->ended = 1;
#ifdef QSYNC_HAVE_MPI
    /* Under --mpi the window's end is agreed inside the step. */
    if (n->mpi)
        n->deadline = qsync_mpi_horizon_ns(n->mpi);
#endif
    g->ended_at = n->deadline;
    qsync_group_remove(n->group, g->ctx); /* QSYNC_EARG if it already left */
}

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct guest *g = qsync_get_data(ctx);
    struct net *n = g->net;
    if (status == 0) {
        g->instructions = stop->instructions;
        if (stop->overshoot_insns > n->max_overshoot)
            n->max_overshoot = stop->overshoot_insns;
        return;
    }
    if (status == QSYNC_ECANCELED)
        return; /* we closed it */
    guest_ended(g);
    if (status != QSYNC_EEXITED && !n->finishing) {
        say(n, "[%u] %s", g->n, qsync_last_error(ctx));
        n->run_error = 1;
        finish(n);
    }
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct guest *g = qsync_get_data(ctx);
    struct net *n = g->net;
    g->exited = 1;
    g->by_close = ex->by_close;
    /* Not QEMU's count at its exit: that one varies by a few instructions
     * from run to run (isa-debug-exit, a power-off); the JSON's is the
     * count at the last barrier the guest reached. */
    if (!ex->by_close) {
        g->exit_status = ex->exit_status;
        g->term_signal = ex->term_signal;
        guest_ended(g);
        if (!g->have_info && !n->finishing) {
            say(n, "[%u] QEMU ended before the plugin's handshake: %s", g->n,
                qsync_last_error(ctx));
            n->setup_error = 1;
        } else if (g->term_signal && !n->finishing) {
            say(n, "[%u] %s", g->n, qsync_last_error(ctx));
#ifdef QSYNC_HAVE_MPI
            if (n->mpi)
                qsync_mpi_abort(n->mpi, 128 + g->term_signal,
                                "guest %u: QEMU was killed by signal %d", g->n, g->term_signal);
#endif
        }
    }
    /* Its unfinished line of stderr, if any. */
    if (g->err.len) {
        qsync__progress_clear(&n->prog);
        fprintf(stderr, "[%u] %.*s\n", g->n, (int)g->err.len, g->err.p);
        g->err.len = 0;
    }
    close_guest(g);
    if (n->setup_error)
        finish(n);
    else
        try_barrier(n);
}

static void on_error(qsync_ctx *ctx, int code, const char *msg)
{
    struct guest *g = qsync_get_data(ctx);
    struct net *n = g->net;
    if (n->finishing)
        return;
    if (!qsync_failed(ctx)) {
        /* A warning; the guest carries on. The one about a NIC without a
         * driver is ours to give, at the end, with the count. */
        if (code != QSYNC_ENODRIVER && !n->quiet)
            say(n, "[%u] warning: %s", g->n, msg);
        return;
    }
    say(n, "[%u] %s: %s", g->n, qsync_err_name(code), msg);
    if (g->have_info)
        n->run_error = 1;
    else
        n->setup_error = 1;
    finish(n);
}

/* A line the guest completed in the quantum: held until the barrier. */
static void mpi_send(struct net *n, int dst, char kind, unsigned port, uint64_t at, const void *a,
                     size_t alen, const void *b, size_t blen);

static void on_output_line(qsync_ctx *ctx, const char *line, size_t len, uint64_t v)
{
    struct guest *g = qsync_get_data(ctx);
    if (g->net->use_mpi) {
        /* To rank 0, which prints every guest's lines in guest order. */
        mpi_send(g->net, 0, 'L', g->n - 1, 0, &v, sizeof v, line, len);
        return;
    }
    struct held_line h = {v, len};
    if (buf_add(&g->out, (const char *)&h, sizeof h) || buf_add(&g->out, line, len)) {
        say(g->net, "out of memory for guest %u's output", g->n);
        g->net->run_error = 1;
        finish(g->net);
    }
}

/* QEMU's stderr, by lines, each after its guest's [N] (not held: stderr is
 * not part of the deterministic output). */
static void on_stderr(qsync_ctx *ctx, const char *data, size_t len)
{
    struct guest *g = qsync_get_data(ctx);
    for (size_t i = 0; i < len; i++) {
        int full = g->err.len == ERR_LINE_MAX;
        if (data[i] == '\n' || full) {
            qsync__progress_clear(&g->net->prog);
            fprintf(stderr, "[%u] %.*s\n", g->n, (int)g->err.len, g->err.p ? g->err.p : "");
            g->err.len = 0;
        }
        if (data[i] != '\n')
            buf_add(&g->err, &data[i], 1); /* out of memory: the byte is lost */
    }
}

/* A frame the guest sent: held until the barrier. */
static void on_frame(qsync_ctx *ctx, unsigned nic, uint64_t virtual_ns, const void *data,
                     size_t len)
{
    (void)nic;
    struct guest *g = qsync_get_data(ctx);
    g->frames_sent++;
    if (g->net->use_mpi) {
        /* To every rank, this one included: each runs the same switch
         * on the same frames in the same order. */
        for (int r = 0; r < g->net->size; r++)
            mpi_send(g->net, r, 'F', g->n - 1, virtual_ns, data, len, NULL, 0);
        return;
    }
    if (qsync__segment_push(&g->net->seg, g->n - 1, virtual_ns, data, len)) {
        say(g->net, "out of memory for guest %u's frames", g->n);
        g->net->run_error = 1;
        finish(g->net);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct net *n = h->data;
    say(n, "%s, ending the guests", strsignal(signum));
#ifdef QSYNC_HAVE_MPI
    if (n->mpi)
        qsync_mpi_abort(n->mpi, 128 + signum, "%s", strsignal(signum));
#endif
    n->interrupted = signum;
    finish(n);
}

/* ---- --mpi: the guests on every rank, one window per quantum ----------- */

#ifdef QSYNC_HAVE_MPI
/* A message between ranks: kind ('F' a frame, 'L' a line), the guest's
 * port, then a and b. */
static void mpi_send(struct net *n, int dst, char kind, unsigned port, uint64_t at, const void *a,
                     size_t alen, const void *b, size_t blen)
{
    size_t len = 1 + 4 + alen + blen;
    unsigned char stackbuf[2048];
    unsigned char *msg = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (!msg)
        qsync_mpi_abort(n->mpi, 1, "out of memory for a message");
    uint32_t p32 = port;
    msg[0] = (unsigned char)kind;
    memcpy(msg + 1, &p32, 4);
    memcpy(msg + 5, a, alen);
    if (blen)
        memcpy(msg + 5 + alen, b, blen);
    /* A frame is due latency after it was sent; a line has no time of
     * its own: it goes with the window. */
    uint64_t due = kind == 'F' ? at + n->latency_ns : qsync_mpi_horizon_ns(n->mpi);
    int rc = qsync_mpi_send(n->mpi, dst, due, msg, len);
    if (msg != stackbuf)
        free(msg);
    if (rc)
        qsync_mpi_abort(n->mpi, 1, "%s", qsync_mpi_last_error(n->mpi));
}

/* Another rank's frame (to the segment, in its sender's order) or line
 * (rank 0: held with its guest's, printed at the barrier). */
static void on_mpi_recv(qsync_mpi *m, int src, uint64_t at_ns, const void *data, size_t len)
{
    (void)src;
    struct net *n = qsync_mpi_get_data(m);
    const unsigned char *p = data;
    uint32_t port;
    if (len < 5)
        qsync_mpi_abort(m, 1, "a message of %zu bytes from rank %d", len, src);
    memcpy(&port, p + 1, 4);
    if (port >= n->n)
        qsync_mpi_abort(m, 1, "a message for guest %u from rank %d", port + 1, src);
    if (p[0] == 'F') {
        if (qsync__segment_push(&n->seg, port, at_ns - n->latency_ns, p + 5, len - 5))
            qsync_mpi_abort(m, 1, "out of memory for guest %u's frames", port + 1);
    } else if (p[0] == 'L' && len >= 5 + 8) {
        struct guest *g = &n->g[port];
        struct held_line h;
        memcpy(&h.v, p + 5, 8);
        h.len = len - 13;
        if (buf_add(&g->out, (const char *)&h, sizeof h) ||
            buf_add(&g->out, (const char *)p + 13, h.len))
            qsync_mpi_abort(m, 1, "out of memory for guest %u's output", port + 1);
    }
}

/* This rank's part of the window is done once every local guest that
 * ended in it has also exited (its last frames and lines come first). */
static int mpi_settled(qsync_mpi *m)
{
    struct net *n = qsync_mpi_get_data(m);
    for (unsigned i = 0; i < n->n; i++)
        if (n->g[i].ended && !n->g[i].exited)
            return 0;
    return 1;
}

/* The run under --mpi: one window per quantum, then the barrier's work
 * (frames through the switch on every rank, lines printed by rank 0). */
static void mpi_windows(struct net *n)
{
    while (!n->finishing) {
        uint64_t limit = n->until_ns ? n->until_ns : QSYNC_DEADLINE_MAX;
        qsync_mpi_window w;
        int rc = qsync_mpi_step(n->mpi, limit, &w);
        if (rc)
            qsync_mpi_abort(n->mpi, 1, "%s", qsync_mpi_last_error(n->mpi));
        n->quanta++;
        n->virtual_ns = w.end_ns;
        flush_frames(n, 1);
        flush_lines(n, n->virtual_ns);
        if (w.ranks_failed || w.members == 0 || (n->until_ns && n->virtual_ns >= n->until_ns))
            finish(n);
    }
}

/* What rank 0 needs of another rank's guest for the report. */
struct guest_summary {
    int64_t exit_status;
    int term_signal, exited, by_close, have_stats, have_info;
    uint64_t ended_at, instructions, frames_sent, routed, dropped_exited;
    qsync_nic_stats stats;
};

/* Rank 0 gets every guest's results from its rank, and the counters
 * only ranks know. Collective. */
static void mpi_gather(struct net *n)
{
    size_t one = sizeof(struct guest_summary);
    struct guest_summary *mine = calloc(n->n, one), *all = NULL;
    if (n->rank == 0)
        all = calloc((size_t)n->size * n->n, one);
    if (!mine || (n->rank == 0 && !all))
        qsync_mpi_abort(n->mpi, 1, "out of memory for the report");
    for (unsigned i = 0; i < n->n; i++) {
        const struct guest *g = &n->g[i];
        mine[i] = (struct guest_summary){g->exit_status, g->term_signal, g->exited, g->by_close,
                                         g->have_stats, g->have_info, g->ended_at,
                                         g->instructions, g->frames_sent, g->routed,
                                         g->dropped_exited, g->stats};
    }
    MPI_Gather(mine, (int)(n->n * one), MPI_BYTE, all, (int)(n->n * one), MPI_BYTE, 0,
               MPI_COMM_WORLD);
    int64_t flags[4] = {n->max_overshoot, n->run_error, n->setup_error, n->interrupted}, out[4];
    MPI_Reduce(flags, out, 4, MPI_INT64_T, MPI_MAX, 0, MPI_COMM_WORLD);
    if (n->rank == 0) {
        for (unsigned i = 0; i < n->n; i++) {
            struct guest *g = &n->g[i];
            const struct guest_summary *s = &all[(size_t)((i % (unsigned)n->size) * n->n + i)];
            g->exit_status = s->exit_status;
            g->term_signal = s->term_signal;
            g->exited = s->exited;
            g->by_close = s->by_close;
            g->have_stats = s->have_stats;
            g->have_info = s->have_info;
            g->ended_at = s->ended_at;
            g->instructions = s->instructions;
            g->frames_sent = s->frames_sent;
            g->routed = s->routed;
            g->dropped_exited = s->dropped_exited;
            g->stats = s->stats;
        }
        n->max_overshoot = out[0];
        n->run_error = (int)out[1];
        n->setup_error = (int)out[2];
        n->interrupted = (int)out[3];
    }
    free(mine);
    free(all);
}
#else
static void mpi_send(struct net *n, int dst, char kind, unsigned port, uint64_t at, const void *a,
                     size_t alen, const void *b, size_t blen)
{
    (void)n, (void)dst, (void)kind, (void)port, (void)at, (void)a, (void)alen, (void)b, (void)blen;
}
#endif

/* ---- parse: the command line ------------------------------------------- */

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = qsync__cli_usage_verror("qsync-net", fmt, ap);
    va_end(ap);
    return rc;
}

static int parse_positive_duration(const char *flag, const char *arg, uint64_t *out)
{
    return qsync__cli_positive_duration("qsync-net", flag, arg, out);
}

static int parse_flag(struct net *n, int c, const char *arg)
{
    switch (c) {
    case 'q':
        n->quantum_arg = arg;
        return parse_positive_duration("quantum", arg, &n->quantum_ns);
    case 'l':
        n->latency_arg = arg;
        return parse_positive_duration("latency", arg, &n->latency_ns);
    case 'u': return parse_positive_duration("until", arg, &n->until_ns);
    case 'n':
        if (strcmp(arg, "e1000") && strcmp(arg, "virtio"))
            return usage_error("--nic '%s': expected e1000 or virtio", arg);
        n->nic_model = arg;
        return 0;
    case 'p': n->pcap_path = arg; return 0;
    case 'j': n->json_path = arg; return 0;
    case 'T': n->timestamps = 1; return 0;
    case 'Q': n->quiet = 1; return 0;
    case 'M': n->use_mpi = 1; return 0;
    case 'S': n->skip_idle = 1; return 0;
    case 'h':
        usage(stdout);
        return -1;
    case 'V':
#ifdef QSYNC_HAVE_PCAP
        printf("qsync-net %s (%s)\n", qsync_version_string(), pcap_lib_version());
#else
        printf("qsync-net %s (built without libpcap: no --pcap)\n", qsync_version_string());
#endif
        return -1;
    default:
        usage(stderr);
        return EXIT_USAGE;
    }
}

/* The guests' commands: argv[first..] split at each "--" (each "--" is
 * replaced by the NULL that ends the command before it). */
static int split_guests(struct net *n, int argc, char **argv, int first)
{
    unsigned count = 1;
    for (int i = first; i < argc; i++)
        count += strcmp(argv[i], "--") == 0;
    if (count > MAX_GUESTS)
        return usage_error("%u guests: at most %u", count, MAX_GUESTS);
    n->g = calloc(count, sizeof *n->g);
    if (!n->g)
        return usage_error("out of memory");
    n->n = count;
    unsigned k = 0;
    int start = first;
    for (int i = first; i <= argc; i++) {
        if (i < argc && strcmp(argv[i], "--") != 0)
            continue;
        if (i == start)
            return usage_error("guest %u's QEMU command is empty (nothing between its '--' "
                               "and the %s)",
                               k + 1, i < argc ? "next '--'" : "end of the line");
        n->g[k++].argv = (const char *const *)(argv + start);
        argv[i] = NULL; /* argv[argc] is NULL already */
        start = i + 1;
    }
    if (count < 2)
        return usage_error("one guest given: a network needs at least two, each guest's "
                           "QEMU command after a '--' of its own");
    return 0;
}

static int parse_args(struct net *n, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"quantum", required_argument, NULL, 'q'}, {"latency", required_argument, NULL, 'l'},
        {"until", required_argument, NULL, 'u'},   {"nic", required_argument, NULL, 'n'},
        {"pcap", required_argument, NULL, 'p'},    {"json", required_argument, NULL, 'j'},
        {"timestamps", no_argument, NULL, 'T'},    {"quiet", no_argument, NULL, 'Q'},
        {"mpi", no_argument, NULL, 'M'},          {"skip-idle", no_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    int c;
    /* '+' stops at the first non-option, so QEMU's own options are left alone. */
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        int rc = parse_flag(n, c, optarg);
        if (rc)
            return rc;
    }
    /* getopt_long consumes the first "--"; it must be there. */
    if (optind >= argc || optind == 0 || strcmp(argv[optind - 1], "--") != 0) {
        if (optind < argc)
            usage_error("'%s': give each guest's QEMU command after a '--'", argv[optind]);
        else
            usage_error("no guests given: each guest's QEMU command goes after a '--'");
        usage(stderr);
        return EXIT_USAGE;
    }
    return split_guests(n, argc, argv, optind);
}

static int validate(struct net *n)
{
    if (!n->quantum_ns) {
        n->quantum_ns = n->latency_ns;
        n->quantum_arg = n->latency_arg;
    }
    if (n->quantum_ns > n->latency_ns)
        return usage_error("--quantum %s is longer than --latency %s: the latency is the "
                           "lookahead (a frame sent at a quantum's start must not be due "
                           "before the quantum's end, where it is routed), so the quantum "
                           "may be at most the latency",
                           n->quantum_arg, n->latency_arg);
    if (n->quantum_ns > QSYNC_QUANTUM_HINT_MAX_NS)
        return usage_error("--quantum '%s': at most 1000000s (10^15 ns, the plugin's limit)",
                           n->quantum_arg);
#ifndef QSYNC_HAVE_MPI
    if (n->use_mpi)
        return usage_error("--mpi: this qsync-net was built without MPI (install openmpi-bin and "
                           "libopenmpi-dev and build it again)");
#endif
#ifndef QSYNC_HAVE_PCAP
    if (n->pcap_path)
        return usage_error("--pcap: this qsync-net was built without libpcap (install "
                           "libpcap-dev and build it again)");
#endif
    return 0;
}

/* ---- run: the guests on the default loop -------------------------------- */

static int open_pcap(struct net *n)
{
    if (!n->pcap_path)
        return 0;
#ifdef QSYNC_HAVE_PCAP
    /* Our own FILE, opened close-on-exec ("e"), so that no QEMU holds it. */
    FILE *f = fopen(n->pcap_path, "we");
    if (!f)
        return usage_error("--pcap '%s': %s", n->pcap_path, strerror(errno));
    n->pcap = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 65535, PCAP_TSTAMP_PRECISION_NANO);
    if (n->pcap)
        n->dumper = pcap_dump_fopen(n->pcap, f);
    if (!n->dumper) {
        usage_error("--pcap '%s': %s", n->pcap_path,
                    n->pcap ? pcap_geterr(n->pcap) : "libpcap failed");
        fclose(f);
        return EXIT_USAGE;
    }
#endif
    return 0;
}

static int close_pcap(struct net *n)
{
    int bad = 0;
#ifdef QSYNC_HAVE_PCAP
    if (n->dumper) {
        bad = pcap_dump_flush(n->dumper) != 0 || ferror(pcap_dump_file(n->dumper));
        pcap_dump_close(n->dumper);
        n->dumper = NULL;
        if (bad)
            fprintf(stderr, "qsync-net: --pcap '%s': write failed\n", n->pcap_path);
    }
    if (n->pcap)
        pcap_close(n->pcap);
    n->pcap = NULL;
#else
    (void)n;
#endif
    return bad;
}

static void make_options(const struct net *n, qsync_options *o)
{
    qsync_options_init(o);
    o->stdout_mode = QSYNC_OUTPUT_LINES;
    o->quantum_hint_ns = n->quantum_ns;
    o->next_event = n->skip_idle;
}

/* Creates guest g's context with its NIC and starts its QEMU. Returns 0,
 * or EXIT_USAGE after saying why. */
static int start_guest(struct net *n, struct guest *g, const qsync_options *o,
                       const qsync_callbacks *cb)
{
    char err[256];
    if (qsync_ctx_new(n->loop, o, cb, &g->ctx, err, sizeof err)) {
        g->ctx = NULL;
        return usage_error("[%u] %s", g->n, err);
    }
    qsync_set_data(g->ctx, g);
    qsync_nic_config cfg;
    qsync_nic_config_init(&cfg);
    cfg.model = n->nic_model;
    cfg.has_mac = 1;
    memcpy(cfg.mac, g->mac, 6);
    g->nic = qsync_nic_add(g->ctx, &cfg);
    if (g->nic < 0)
        return usage_error("[%u] cannot give the guest a NIC: %s", g->n, qsync_last_error(g->ctx));
    if (qsync_start(g->ctx, g->argv))
        return usage_error("[%u] %s", g->n, qsync_last_error(g->ctx));
    int rc = qsync_group_add(n->group, g->ctx);
    if (rc)
        return usage_error("[%u] %s", g->n, qsync_strerror(rc));
    return 0;
}

static void watch_signals(struct net *n)
{
    uv_signal_init(n->loop, &n->sigint);
    uv_signal_init(n->loop, &n->sigterm);
    n->sigint.data = n->sigterm.data = n;
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    n->signals_on = 1;
}

/* Starts every guest and runs the loop until all is done. Returns 0, or
 * EXIT_USAGE when the run could not be set up. */
static int run(struct net *n)
{
    qsync_options o;
    qsync_callbacks cb;
    make_options(n, &o);
    qsync_callbacks_init(&cb);
    cb.ready = on_ready;
    cb.reached = on_reached;
    cb.exited = on_exited;
    cb.error = on_error;
    cb.output_line = on_output_line;
    cb.stderr_output = on_stderr;
    cb.frame = on_frame;
    n->out = n->json_path && strcmp(n->json_path, "-") == 0 ? stderr : stdout;
    n->ports = calloc(n->n, sizeof *n->ports);
    if (!n->ports || qsync__segment_init(&n->seg, n->n) || qsync_group_new(&n->group))
        return usage_error("out of memory");
    qsync_group_set_data(n->group, n);
    /* Under --mpi rank 0 alone writes the pcap, the JSON and the lines. */
    int rc = n->rank == 0 ? open_pcap(n) : 0;
    if (rc)
        return rc;
    if (n->json_path && n->rank == 0) {
        /* "e": close-on-exec, like every descriptor of ours. */
        n->json = strcmp(n->json_path, "-") == 0 ? stdout : fopen(n->json_path, "we");
        if (!n->json)
            return usage_error("--json '%s': %s", n->json_path, strerror(errno));
    }
    n->loop = uv_default_loop();
    watch_signals(n);
    if (n->rank == 0 && qsync__progress_wanted(-1, n->quiet))
        qsync__progress_start(&n->prog, n->loop, "qsync-net", &n->virtual_ns, &n->quanta,
                              &n->frames);
    n->t0 = uv_hrtime();
    for (unsigned i = 0; i < n->n && rc == 0; i++)
        if (is_local(n, &n->g[i]))
            rc = start_guest(n, &n->g[i], &o, &cb);
#ifdef QSYNC_HAVE_MPI
    if (n->use_mpi) {
        /* A rank that could not start its guests cannot take part in the
         * windows: every rank ends, saying which guest. */
        if (rc)
            qsync_mpi_abort(NULL, EXIT_USAGE, "a guest could not be started (see above)");
        qsync_mpi_config mc;
        qsync_mpi_config_init(&mc);
        mc.lookahead_ns = n->latency_ns;
        mc.window_ns = n->quantum_ns;
        mc.skip_idle = n->skip_idle;
        mc.recv = on_mpi_recv;
        mc.settled = mpi_settled;
        mc.data = n;
        char err[512];
        if (qsync_mpi_new(n->loop, n->group, &mc, &n->mpi, err, sizeof err))
            qsync_mpi_abort(NULL, EXIT_USAGE, "%s", err);
        mpi_windows(n);
    } else
#endif
    if (rc == 0)
        advance(n);
    else
        finish(n);
    uv_run(n->loop, UV_RUN_DEFAULT);
    n->wall_s = (double)(uv_hrtime() - n->t0) / 1e9;
    uv_loop_close(n->loop);
    return rc;
}

/* ---- report: counts, warnings, the files, the exit code ----------------- */

/* Where the frames handed to each NIC went. */
static void account(struct net *n)
{
    for (unsigned i = 0; i < n->n; i++) {
        struct guest *g = &n->g[i];
        const qsync_nic_stats *s = &g->stats;
        if (!g->have_stats)
            continue;
        if (g->exited && !g->by_close) {
            /* What it had not taken when its QEMU ended is lost. */
            g->lost = g->routed > s->rx_frames ? g->routed - s->rx_frames : 0;
        } else {
            /* Dropped at a full queue, or due and never taken. */
            g->lost = s->rx_dropped + s->rx_waiting;
            g->in_flight = s->rx_pending;
        }
    }
}

static void warn(const struct net *n)
{
    for (unsigned i = 0; i < n->n && !n->quiet; i++) {
        const struct guest *g = &n->g[i];
        if (g->have_stats && g->lost && !g->stats.receiver_ever_on)
            fprintf(stderr,
                    "[%u] warning: %" PRIu64 " frames dropped: the guest never turned its "
                    "%s receiver on (no driver for it?)\n",
                    g->n, g->lost, model_name(n));
    }
}

static void json_int_or_null(FILE *f, const char *key, int present, int64_t v, const char *sep)
{
    if (present)
        fprintf(f, "\"%s\": %" PRId64 "%s", key, v, sep);
    else
        fprintf(f, "\"%s\": null%s", key, sep);
}

static uint64_t dropped_total(const struct net *n)
{
    uint64_t d = n->runts;
    for (unsigned i = 0; i < n->n; i++)
        d += n->g[i].dropped_exited + n->g[i].lost;
    return d;
}

static void json_guest(FILE *f, const struct guest *g, const char *sep)
{
    int ended_by_itself = g->exited && !g->by_close;
    fprintf(f, "    {");
    json_int_or_null(f, "exit_status", ended_by_itself && !g->term_signal, g->exit_status, ", ");
    json_int_or_null(f, "term_signal", ended_by_itself && g->term_signal, g->term_signal, ", ");
    fprintf(f,
            "\"instructions\": %" PRIu64 ", \"frames_sent\": %" PRIu64
            ", \"frames_received\": %" PRIu64 ", \"frames_dropped\": %" PRIu64
            ", \"mac\": \"%02x:%02x:%02x:%02x:%02x:%02x\"}%s\n",
            g->instructions, g->frames_sent, g->have_stats ? g->stats.rx_frames : 0,
            g->dropped_exited + g->lost, g->mac[0], g->mac[1], g->mac[2], g->mac[3], g->mac[4],
            g->mac[5], sep);
}

static int write_json(struct net *n)
{
    FILE *f = n->json;
    n->json = NULL;
    uint64_t in_flight = 0;
    for (unsigned i = 0; i < n->n; i++)
        in_flight += n->g[i].in_flight;
    fprintf(f, "{\n");
    fprintf(f, "  \"quanta\": %" PRIu64 ",\n", n->quanta);
    fprintf(f, "  \"virtual_ns\": %" PRIu64 ",\n", n->virtual_ns);
    fprintf(f, "  \"quantum_ns\": %" PRIu64 ",\n", n->quantum_ns);
    fprintf(f, "  \"latency_ns\": %" PRIu64 ",\n", n->latency_ns);
    fprintf(f, "  ");
    json_int_or_null(f, "until_ns", n->until_ns != 0, (int64_t)n->until_ns, ",\n");
    fprintf(f, "  \"nic\": \"%s\",\n", n->nic_model);
    fprintf(f, "  \"max_overshoot_insns\": %" PRId64 ",\n", n->max_overshoot);
    fprintf(f, "  \"frames\": %" PRIu64 ",\n", n->frames);
    fprintf(f, "  \"frames_dropped\": %" PRIu64 ",\n", dropped_total(n));
    fprintf(f, "  \"frames_in_flight\": %" PRIu64 ",\n", in_flight);
    fprintf(f, "  \"wall_s\": %.6f,\n", n->wall_s);
    fprintf(f, "  \"guests\": [\n");
    for (unsigned i = 0; i < n->n; i++)
        json_guest(f, &n->g[i], i + 1 < n->n ? "," : "");
    fprintf(f, "  ]\n}\n");
    int bad = ferror(f);
    bad |= (f == stdout ? fflush(f) : fclose(f)) != 0;
    if (bad) {
        fprintf(stderr, "qsync-net: --json '%s': write failed: %s\n", n->json_path,
                strerror(errno));
        return -1;
    }
    return 0;
}

/* The guest that failed first: the earliest quantum, then the lowest
 * number (both deterministic, unlike the order of the exit callbacks). */
static const struct guest *first_failure(const struct net *n)
{
    const struct guest *first = NULL;
    for (unsigned i = 0; i < n->n; i++) {
        const struct guest *g = &n->g[i];
        if (!g->exited || g->by_close || (g->exit_status == 0 && !g->term_signal))
            continue;
        if (!first || g->ended_at < first->ended_at)
            first = g;
    }
    return first;
}

static int exit_code(const struct net *n)
{
    if (n->setup_error)
        return EXIT_USAGE;
    if (n->run_error)
        return 1;
    if (n->interrupted)
        return 128 + n->interrupted;
    const struct guest *g = first_failure(n);
    if (g)
        return g->term_signal ? 128 + g->term_signal : (int)g->exit_status;
    return 0;
}

static int report(struct net *n)
{
#ifdef QSYNC_HAVE_MPI
    if (n->mpi)
        mpi_gather(n);
    if (n->rank != 0)
        return 0; /* rank 0's status is every rank's (main) */
#endif
    int code = exit_code(n);
    /* What is still held: frames and lines of a quantum no barrier ended
     * (a signal, an error), and lines that came as QEMU ended. */
    flush_frames(n, 0);
    flush_lines(n, 0);
    account(n);
    if (close_pcap(n) && code == 0)
        code = 1;
    warn(n);
    if (n->json && write_json(n) && code == 0)
        code = 1;
    return code;
}

static void free_all(struct net *n)
{
    if (n->json && n->json != stdout)
        fclose(n->json);
    if (n->group)
        qsync_group_free(n->group);
    for (unsigned i = 0; i < n->n; i++) {
        free(n->g[i].out.p);
        free(n->g[i].err.p);
    }
    qsync__segment_free(&n->seg);
    free(n->ports);
    free(n->g);
}

int main(int argc, char **argv)
{
    struct net n;
    memset(&n, 0, sizeof n);
    n.latency_ns = DEFAULT_LATENCY_NS;
    n.latency_arg = "100us";
    n.nic_model = "e1000";
    int rc = parse_args(&n, argc, argv);
    if (rc == 0)
        rc = validate(&n);
    for (unsigned i = 0; rc == 0 && i < n.n; i++) {
        struct guest *g = &n.g[i];
        g->net = &n;
        g->n = i + 1;
        const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x00, 0x00, (uint8_t)(i + 1)};
        memcpy(g->mac, mac, 6);
    }
    n.size = 1;
#ifdef QSYNC_HAVE_MPI
    if (rc == 0 && n.use_mpi) {
        MPI_Init(&argc, &argv);
        MPI_Comm_rank(MPI_COMM_WORLD, &n.rank);
        MPI_Comm_size(MPI_COMM_WORLD, &n.size);
    }
#endif
    if (rc == 0) {
        /* A guest that could not be started ends the run like one that
         * ended before its handshake: with the pcap and JSON written. */
        if (run(&n) == EXIT_USAGE)
            n.setup_error = 1;
        rc = report(&n);
    }
#ifdef QSYNC_HAVE_MPI
    if (n.mpi) {
        MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
        qsync_mpi_free(n.mpi);
    }
    if (n.use_mpi && rc >= 0)
        MPI_Finalize();
#endif
    free_all(&n);
    return rc < 0 ? 0 : rc;
}

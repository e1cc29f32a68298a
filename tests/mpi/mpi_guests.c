/*
 * mpi_guests: the test guest on every rank through libqsync-mpi, printing
 * one log that must not depend on the number of ranks.
 *
 *   mpi_guests PLUGIN GUEST_ELF WINDOW_NS LATENCY_NS APPEND1 [APPEND2 ...]
 *
 * Guest i (from 0) runs on rank i % size with -append APPENDi; guests in
 * an Ethernet mode (transmit, receive, echo) get an e1000. Every frame a
 * guest sends reaches every other guest with a NIC LATENCY_NS after its
 * transmit, in the order (time, sending guest, its sequence), whatever
 * rank it came from. Rank 0 prints, window by window and guest by guest:
 * each stop ("stop g=I seq=S deadline=D virtual=V insns=N overshoot=O"),
 * the guest's lines, and its exit. The run ends when every guest has
 * exited. Exit status: 0, or 1 after a message.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qsync/mpi.h>

#define MAX_GUESTS 16

struct guest {
    int i;
    qsync_ctx *ctx;
    int nic; /* -1: none */
    int ended, exited;
    uint64_t tx_seq;
};

/* A frame for a guest of this rank, held until the window's end. */
struct rxf {
    uint64_t at;
    int src;
    uint64_t seq;
    int dst;
    size_t len;
    unsigned char data[1600];
};

/* A line of the log, held by rank 0 until the window's end. */
struct logline {
    int g;
    unsigned order;
    char text[512];
};

static int rank, size, n_guests;
static uint64_t latency;
static struct guest guests[MAX_GUESTS];
static qsync_mpi *mpi;
static struct rxf *rx;
static size_t n_rx, cap_rx;
static struct logline *lines;
static size_t n_lines, cap_lines;
static unsigned line_order;
static int errors;

/* Message kinds: the first byte. */
enum { MSG_LOG = 'L', MSG_FRAME = 'F' };

static void on_recv(qsync_mpi *m, int src, uint64_t at_ns, const void *data, size_t len)
{
    (void)m;
    (void)src;
    const unsigned char *p = data;
    if (len >= 5 && p[0] == MSG_FRAME) {
        /* 'F', dst, src guest, seq, then the frame */
        struct rxf f;
        memset(&f, 0, sizeof f);
        f.at = at_ns;
        f.dst = p[1];
        f.src = p[2];
        memcpy(&f.seq, p + 3, 8);
        f.len = len - 11;
        if (f.len > sizeof f.data)
            f.len = sizeof f.data;
        memcpy(f.data, p + 11, f.len);
        if (n_rx == cap_rx) {
            cap_rx = cap_rx ? cap_rx * 2 : 64;
            rx = realloc(rx, cap_rx * sizeof *rx);
        }
        rx[n_rx++] = f;
        return;
    }
    if (len >= 6 && p[0] == MSG_LOG) {
        if (n_lines == cap_lines) {
            cap_lines = cap_lines ? cap_lines * 2 : 64;
            lines = realloc(lines, cap_lines * sizeof *lines);
        }
        struct logline *l = &lines[n_lines++];
        memcpy(&l->g, p + 1, 4);
        l->order = line_order++;
        snprintf(l->text, sizeof l->text, "%.*s", (int)(len - 5), (const char *)p + 5);
    }
}

static void send_log(int g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void send_log(int g, const char *fmt, ...)
{
    char msg[600];
    msg[0] = MSG_LOG;
    memcpy(msg + 1, &g, 4);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg + 5, sizeof msg - 5, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof msg - 6)
        n = (int)(sizeof msg - 6);
    if (qsync_mpi_send(mpi, 0, qsync_mpi_horizon_ns(mpi), msg, 5 + (size_t)n)) {
        fprintf(stderr, "mpi_guests: %s\n", qsync_mpi_last_error(mpi));
        errors++;
    }
}

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *st)
{
    struct guest *g = qsync_get_data(ctx);
    if (status == 0) {
        send_log(g->i, "stop g=%d seq=%" PRIu64 " deadline=%" PRIu64 " virtual=%" PRIu64
                       " insns=%" PRIu64 " overshoot=%" PRId64,
                 g->i, st->seq, st->deadline_ns, st->virtual_ns, st->instructions,
                 st->overshoot_insns);
        return;
    }
    if (!g->ended) {
        g->ended = 1;
        qsync_group_remove(qsync_mpi_get_data(mpi), ctx);
    }
    if (status != QSYNC_EEXITED) {
        fprintf(stderr, "mpi_guests: guest %d: %s\n", g->i, qsync_last_error(ctx));
        errors++;
    }
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct guest *g = qsync_get_data(ctx);
    g->exited = 1;
    if (!g->ended) {
        g->ended = 1;
        qsync_group_remove(qsync_mpi_get_data(mpi), ctx);
    }
    /* A QEMU killed under a rank ends every rank, as qsync-net --mpi
     * does: the others could only wait for it. */
    if (!ex->by_close && ex->term_signal)
        qsync_mpi_abort(mpi, 1, "guest %d: QEMU was killed by signal %d", g->i, ex->term_signal);
    if (!ex->by_close)
        /* Not its instructions or time: QEMU reports them at its exit
         * irreproducibly (a few instructions either way). */
        send_log(g->i, "exit g=%d status=%" PRId64 " signal=%d", g->i, ex->exit_status,
                 ex->term_signal);
    qsync_close(ctx, NULL);
    g->ctx = NULL;
}

static void on_line(qsync_ctx *ctx, const char *line, size_t len, uint64_t v)
{
    (void)v; /* the window's end is printed instead: see the header */
    struct guest *g = qsync_get_data(ctx);
    send_log(g->i, "line g=%d %.*s", g->i, (int)len, line);
}

static void on_frame(qsync_ctx *ctx, unsigned nic, uint64_t t, const void *data, size_t len)
{
    (void)nic;
    struct guest *g = qsync_get_data(ctx);
    send_log(g->i, "tx g=%d t=%" PRIu64 " len=%zu", g->i, t, len);
    for (int j = 0; j < n_guests; j++) {
        if (j == g->i || guests[j].nic < 0)
            continue;
        unsigned char msg[11 + 1600];
        if (len > 1600)
            len = 1600;
        msg[0] = MSG_FRAME;
        msg[1] = (unsigned char)j;
        msg[2] = (unsigned char)g->i;
        memcpy(msg + 3, &g->tx_seq, 8);
        memcpy(msg + 11, data, len);
        if (qsync_mpi_send(mpi, j % size, t + latency, msg, 11 + len)) {
            fprintf(stderr, "mpi_guests: %s\n", qsync_mpi_last_error(mpi));
            errors++;
        }
    }
    g->tx_seq++;
}

static int settled(qsync_mpi *m)
{
    (void)m;
    for (int i = 0; i < n_guests; i++)
        if (i % size == rank && guests[i].ended && !guests[i].exited)
            return 0;
    return 1;
}

static int by_frame(const void *a, const void *b)
{
    const struct rxf *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    if (x->src != y->src)
        return x->src < y->src ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int by_guest(const void *a, const void *b)
{
    const struct logline *x = a, *y = b;
    if (x->g != y->g)
        return x->g < y->g ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 6 || argc - 5 > MAX_GUESTS) {
        fprintf(stderr, "usage: mpi_guests PLUGIN GUEST_ELF WINDOW_NS LATENCY_NS APPEND...\n");
        MPI_Finalize();
        return 2;
    }
    const char *plugin = argv[1], *elf = argv[2];
    uint64_t window = strtoull(argv[3], NULL, 10);
    latency = strtoull(argv[4], NULL, 10);
    n_guests = argc - 5;
    uv_loop_t *loop = uv_default_loop();
    qsync_group *group;
    qsync_group_new(&group);

    qsync_mpi_config mc;
    qsync_mpi_config_init(&mc);
    mc.lookahead_ns = latency;
    mc.window_ns = window;
    mc.recv = on_recv;
    mc.settled = settled;
    mc.data = group;
    char err[512];
    int rc = qsync_mpi_new(loop, group, &mc, &mpi, err, sizeof err);
    if (rc) {
        fprintf(stderr, "mpi_guests: rank %d: %s\n", rank, err);
        MPI_Finalize();
        return 2;
    }

    qsync_options o;
    qsync_options_init(&o);
    o.plugin_path = plugin;
    o.stdout_mode = QSYNC_OUTPUT_LINES;
    o.quantum_hint_ns = window;
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = on_reached;
    cb.exited = on_exited;
    cb.output_line = on_line;
    cb.frame = on_frame;
    for (int i = 0; i < n_guests; i++) {
        struct guest *g = &guests[i];
        g->i = i;
        const char *a = argv[5 + i];
        g->nic = (strncmp(a, "transmit", 8) == 0 || strncmp(a, "receive", 7) == 0 ||
                  strncmp(a, "echo", 4) == 0)
                     ? 0
                     : -1;
        if (i % size != rank)
            continue;
        if (qsync_ctx_new(loop, &o, &cb, &g->ctx, err, sizeof err))
            qsync_mpi_abort(mpi, 2, "guest %d: %s", i, err);
        qsync_set_data(g->ctx, g);
        if (g->nic == 0) {
            qsync_nic_config nc;
            qsync_nic_config_init(&nc);
            nc.has_mac = 1;
            const uint8_t mac[6] = {0x52, 0x54, 0, 0, 0, (uint8_t)(i + 1)};
            memcpy(nc.mac, mac, 6);
            if (qsync_nic_add(g->ctx, &nc) < 0)
                qsync_mpi_abort(mpi, 2, "guest %d: %s", i, qsync_last_error(g->ctx));
        }
        const char *qargv[] = {"qemu-system-x86_64", "-M", "pc", "-nodefaults", "-display", "none",
                               "-serial", "stdio", "-device",
                               "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", elf,
                               "-append", a, NULL};
        if (qsync_start(g->ctx, qargv) || qsync_group_add(group, g->ctx))
            qsync_mpi_abort(mpi, 2, "guest %d: %s", i, qsync_last_error(g->ctx));
    }

    qsync_mpi_window w;
    do {
        n_rx = 0;
        rc = qsync_mpi_step(mpi, QSYNC_DEADLINE_MAX, &w);
        if (rc)
            qsync_mpi_abort(mpi, 1, "%s", qsync_mpi_last_error(mpi));
        /* Frames for this rank's guests, in canonical order. */
        if (n_rx > 1)
            qsort(rx, n_rx, sizeof *rx, by_frame);
        for (size_t k = 0; k < n_rx; k++) {
            struct guest *g = &guests[rx[k].dst];
            if (g->ctx && !g->ended &&
                qsync_send_frame(g->ctx, 0, rx[k].at, rx[k].data, rx[k].len)) {
                fprintf(stderr, "mpi_guests: guest %d: %s\n", g->i, qsync_last_error(g->ctx));
                errors++;
            }
        }
        if (rank == 0) {
            if (n_lines > 1)
                qsort(lines, n_lines, sizeof *lines, by_guest);
            for (size_t k = 0; k < n_lines; k++)
                printf("[%" PRIu64 "] %s\n", w.end_ns, lines[k].text);
            n_lines = 0;
        }
        if (errors)
            qsync_mpi_fail(mpi);
        if (w.ranks_failed)
            break;
    } while (w.members > 0);
    fflush(stdout);

    for (int i = 0; i < n_guests; i++)
        if (guests[i].ctx)
            qsync_close(guests[i].ctx, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    qsync_mpi_free(mpi);
    qsync_group_free(group);
    uv_loop_close(loop);
    MPI_Finalize();
    free(rx);
    free(lines);
    return w.ranks_failed || errors ? 1 : 0;
}

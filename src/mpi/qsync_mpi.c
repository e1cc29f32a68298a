/*
 * libqsync-mpi: one conservative window over the guests of every rank
 * (include/qsync/mpi.h, docs/scale.md).
 *
 * A step is three collectives at most:
 *  1. an allreduce (MIN) that agrees on the window's end: each rank offers
 *     the end of a normal window, or, when none of its guests can act
 *     before some later time E (halted until their next timers or frames:
 *     skip_idle), the last point of the windows' grid at or before
 *     E + window, as SST skips idle time (never past a message it has
 *     queued); the earliest offer wins;
 *  2. the window itself: this rank's group advanced to that end, the loop
 *     run until its callback (and the program's settled()) say so;
 *  3. an allreduce (SUM) of the bytes to exchange, the failed ranks and
 *     the members left, then, only when some rank has messages, an
 *     all-to-all of the sizes and an all-to-all of the bytes.
 * The collectives are MPI's blocking ones (see allreduce()). After each
 * step a rank checks its launcher: a rank whose mpirun (or orted) is
 * gone ends itself rather than run on with nobody to report to.
 */
#include "qsync/mpi.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ERRMSG_MAX 512
#define DEFAULT_SPIN_NS 100000u

/* A message on the wire: this header, then len bytes. */
struct msg_head {
    uint64_t at_ns;
    uint64_t len;
};

struct outbox {
    unsigned char *p;
    size_t len, cap;
};

struct qsync_mpi {
    MPI_Comm comm;
    int rank, size;
    uv_loop_t *loop;
    qsync_group *group;
    qsync_mpi_config cfg;
    pid_t launcher; /* our parent when we started */

    uint64_t now;     /* the end of the last window */
    uint64_t horizon; /* messages queued now must be due at or after it */
    int in_step;
    int barrier_done;
    int barrier_status;
    int failed;

    struct outbox *out; /* per destination rank */
    int *counts, *displs, *rcounts, *rdispls;
    unsigned char *in;
    size_t in_cap;

    struct qsync_mpi *next_live; /* the drivers alive, to find one by group */
    char err[ERRMSG_MAX];
};

static struct qsync_mpi *live;

static int set_err(qsync_mpi *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int set_err(qsync_mpi *m, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    return code;
}

static int new_err(char *buf, size_t len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int new_err(char *buf, size_t len, int code, const char *fmt, ...)
{
    if (buf && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
    }
    return code;
}

void qsync_mpi_config_init(qsync_mpi_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->size = sizeof *cfg;
    cfg->comm = MPI_COMM_WORLD;
    cfg->spin_ns = DEFAULT_SPIN_NS;
    cfg->skip_idle = 1;
}

int qsync_mpi_rank(const qsync_mpi *m)
{
    return m->rank;
}

int qsync_mpi_size(const qsync_mpi *m)
{
    return m->size;
}

uint64_t qsync_mpi_now_ns(const qsync_mpi *m)
{
    return m->now;
}

uint64_t qsync_mpi_horizon_ns(const qsync_mpi *m)
{
    return m->horizon;
}

const char *qsync_mpi_last_error(const qsync_mpi *m)
{
    return m->err;
}

void qsync_mpi_set_data(qsync_mpi *m, void *data)
{
    m->cfg.data = data;
}

void *qsync_mpi_get_data(const qsync_mpi *m)
{
    return m->cfg.data;
}

void qsync_mpi_fail(qsync_mpi *m)
{
    m->failed = 1;
}

void qsync_mpi_abort(qsync_mpi *m, int code, const char *fmt, ...)
{
    va_list ap;
    int rank = 0;
    if (m)
        rank = m->rank;
    else
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    fprintf(stderr, "qsync-mpi: rank %d: ", rank);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("; ending every rank\n", stderr);
    fflush(stderr);
    MPI_Abort(m ? m->comm : MPI_COMM_WORLD, code ? code : 1);
    _exit(code ? code : 1); /* MPI_Abort does not return; in case it does */
}

/* ---- waiting for a collective ------------------------------------------ */

static void check_launcher(qsync_mpi *m)
{
    if (m->launcher > 1 && getppid() != m->launcher)
        qsync_mpi_abort(m, 1, "its launcher (pid %d, mpirun or orted) is gone: was mpirun killed?",
                        (int)m->launcher);
}

/* The collectives are Open MPI's blocking ones, which wait in its own
 * progress loop (yielding the CPU when ranks outnumber cores). A wait of
 * our own around the non-blocking ones (test, run the loop, yield, nap)
 * was tried first: two ranks then hung for good in the same MPI_Iallreduce
 * in the middle of a Linux ping run, both testing it every 50 us. */
static void allreduce(qsync_mpi *m, const uint64_t *in, uint64_t *out, int n, MPI_Op op)
{
    int rc = MPI_Allreduce(in, out, n, MPI_UINT64_T, op, m->comm);
    if (rc != MPI_SUCCESS)
        qsync_mpi_abort(m, 1, "MPI_Allreduce failed (error %d)", rc);
}

/* ---- set-up -------------------------------------------------------------- */

static void free_bufs(qsync_mpi *m)
{
    if (m->out)
        for (int i = 0; i < m->size; i++)
            free(m->out[i].p);
    free(m->out);
    free(m->counts);
    free(m->displs);
    free(m->rcounts);
    free(m->rdispls);
    free(m->in);
}

int qsync_mpi_new(uv_loop_t *loop, qsync_group *group, const qsync_mpi_config *cfg,
                  qsync_mpi **out, char *errbuf, size_t errbuf_len)
{
    int inited = 0;
    if (!out)
        return new_err(errbuf, errbuf_len, QSYNC_EARG, "qsync_mpi_new: out must not be NULL");
    *out = NULL;
    if (!loop || !group)
        return new_err(errbuf, errbuf_len, QSYNC_EARG, "qsync_mpi_new: %s must not be NULL",
                       loop ? "group" : "loop");
    if (!cfg || cfg->size != sizeof *cfg)
        return new_err(errbuf, errbuf_len, QSYNC_EARG,
                       "qsync_mpi_new: cfg must be filled by qsync_mpi_config_init()");
    if (MPI_Initialized(&inited) != MPI_SUCCESS || !inited)
        return new_err(errbuf, errbuf_len, QSYNC_EARG,
                       "qsync_mpi_new: MPI is not initialised (call MPI_Init first)");
    if (cfg->lookahead_ns == 0)
        return new_err(errbuf, errbuf_len, QSYNC_EARG,
                       "lookahead_ns: required (the smallest latency between ranks)");
    uint64_t window = cfg->window_ns ? cfg->window_ns : cfg->lookahead_ns;
    if (window > cfg->lookahead_ns)
        return new_err(errbuf, errbuf_len, QSYNC_EARG,
                       "window_ns %llu is longer than lookahead_ns %llu, the smallest latency "
                       "between ranks: a message sent at a window's start would be due before "
                       "the window's end, after its receiver's guests had passed that time",
                       (unsigned long long)window, (unsigned long long)cfg->lookahead_ns);
    if (window > QSYNC_DEADLINE_MAX || cfg->start_ns > QSYNC_DEADLINE_MAX - window)
        return new_err(errbuf, errbuf_len, QSYNC_EARG,
                       "window_ns and start_ns: their sum is past QSYNC_DEADLINE_MAX");

    qsync_mpi *m = calloc(1, sizeof *m);
    if (!m)
        return new_err(errbuf, errbuf_len, -ENOMEM, "qsync_mpi_new: out of memory");
    m->cfg = *cfg;
    m->cfg.window_ns = window;
    m->loop = loop;
    m->group = group;
    m->launcher = getppid();
    m->comm = MPI_COMM_NULL;
    if (MPI_Comm_dup(cfg->comm, &m->comm) != MPI_SUCCESS) {
        free(m);
        return new_err(errbuf, errbuf_len, QSYNC_EARG, "qsync_mpi_new: MPI_Comm_dup failed");
    }
    MPI_Comm_rank(m->comm, &m->rank);
    MPI_Comm_size(m->comm, &m->size);
    size_t n = (size_t)m->size;
    m->out = calloc(n, sizeof *m->out);
    m->counts = calloc(n, sizeof(int));
    m->displs = calloc(n, sizeof(int));
    m->rcounts = calloc(n, sizeof(int));
    m->rdispls = calloc(n, sizeof(int));
    int nomem = !m->out || !m->counts || !m->displs || !m->rcounts || !m->rdispls;

    /* Every rank the same lookahead and window: MIN of each, and of each
     * one's complement (the MAX), must agree. nomem is shared too, so
     * that all ranks fail together. */
    uint64_t skip = cfg->skip_idle != 0;
    uint64_t v[9] = {cfg->lookahead_ns, UINT64_MAX - cfg->lookahead_ns, window,
                     UINT64_MAX - window, (uint64_t)!nomem, cfg->start_ns,
                     UINT64_MAX - cfg->start_ns, skip, 1 - skip}, r[9];
    allreduce(m, v, r, 9, MPI_MIN);
    const char *what = NULL;
    int code = 0;
    if (r[4] == 0) {
        code = -ENOMEM;
        what = "qsync_mpi_new: out of memory (on this rank or another)";
    } else if (r[0] != UINT64_MAX - r[1]) {
        code = QSYNC_EARG;
        what = "lookahead_ns differs between ranks: every rank must give the same";
    } else if (r[2] != UINT64_MAX - r[3]) {
        code = QSYNC_EARG;
        what = "window_ns differs between ranks: every rank must give the same";
    } else if (r[5] != UINT64_MAX - r[6]) {
        code = QSYNC_EARG;
        what = "start_ns differs between ranks: every rank must give the same";
    } else if (r[7] != 1 - r[8]) {
        code = QSYNC_EARG;
        what = "skip_idle differs between ranks: every rank must give the same";
    }
    if (code) {
        free_bufs(m);
        MPI_Comm_free(&m->comm);
        free(m);
        return new_err(errbuf, errbuf_len, code, "%s", what);
    }
    m->now = cfg->start_ns;
    m->horizon = cfg->start_ns + window;
    m->next_live = live;
    live = m;
    *out = m;
    return 0;
}

void qsync_mpi_free(qsync_mpi *m)
{
    if (!m)
        return;
    for (qsync_mpi **p = &live; *p; p = &(*p)->next_live)
        if (*p == m) {
            *p = m->next_live;
            break;
        }
    free_bufs(m);
    if (m->comm != MPI_COMM_NULL)
        MPI_Comm_free(&m->comm);
    free(m);
}

/* ---- messages ----------------------------------------------------------- */

static int outbox_add(struct outbox *b, const void *p, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len)
            cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q)
            return -ENOMEM;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, len);
    b->len += len;
    return 0;
}

int qsync_mpi_send(qsync_mpi *m, int dst, uint64_t at_ns, const void *data, size_t len)
{
    if (dst < 0 || dst >= m->size)
        return set_err(m, QSYNC_EARG, "qsync_mpi_send: no rank %d (%d ranks)", dst, m->size);
    if (!data && len)
        return set_err(m, QSYNC_EARG, "qsync_mpi_send: data is NULL");
    if (len > QSYNC_MPI_MSG_MAX)
        return set_err(m, QSYNC_EARG, "qsync_mpi_send: %zu bytes, more than QSYNC_MPI_MSG_MAX (%u)",
                       len, QSYNC_MPI_MSG_MAX);
    if (at_ns < m->horizon)
        return set_err(m, QSYNC_ERANGE,
                       "qsync_mpi_send: due at %llu ns, %llu ns before the end of the window "
                       "(%llu ns): it would reach rank %d's guests late; the lookahead is broken",
                       (unsigned long long)at_ns, (unsigned long long)(m->horizon - at_ns),
                       (unsigned long long)m->horizon, dst);
    struct outbox *b = &m->out[dst];
    size_t old = b->len;
    if ((size_t)INT32_MAX - b->len < sizeof(struct msg_head) + len)
        return set_err(m, -ENOMEM, "qsync_mpi_send: more than 2 GiB for rank %d in one window", dst);
    struct msg_head h = {at_ns, len};
    if (outbox_add(b, &h, sizeof h) || outbox_add(b, data, len)) {
        b->len = old;
        return set_err(m, -ENOMEM, "qsync_mpi_send: out of memory");
    }
    return 0;
}

/* ---- a step -------------------------------------------------------------- */

/* The earliest time a message this rank has queued is due; UINT64_MAX
 * when none. */
static uint64_t earliest_queued(const qsync_mpi *m)
{
    uint64_t t = UINT64_MAX;
    for (int d = 0; d < m->size; d++) {
        const struct outbox *b = &m->out[d];
        for (size_t off = 0; off < b->len;) {
            struct msg_head h;
            memcpy(&h, b->p + off, sizeof h);
            if (h.at_ns < t)
                t = h.at_ns;
            off += sizeof h + (size_t)h.len;
        }
    }
    return t;
}

/*
 * This rank's offer for the window's end, before the limit: now + window;
 * or, with skip_idle, when no member can act before E > now (the group's
 * next event), the last grid point now + k * window (k >= 1) at or before
 * E + window (qsync_skip_to_ns()): messages sent from E on are due at
 * E + lookahead or later, after such an end; staying on the grid keeps
 * the windows, and so what is printed at their ends, those of a run that
 * never skips. No later than the last grid point before a queued message
 * is due. QSYNC_DEADLINE_MAX when nothing is due here at all
 * (qsync_mpi_step() falls back to one window when every rank says so).
 */
static uint64_t offer(const qsync_mpi *m)
{
    uint64_t now = m->now, w = m->cfg.window_ns;
    if (!m->cfg.skip_idle)
        return qsync_skip_to_ns(now, w, now); /* one window */
    uint64_t end = qsync_skip_to_ns(now, w, qsync_group_next_event_ns(m->group));
    /* A message queued between steps is delivered at the next window's
     * end, which must not be after it is due: the last grid point at or
     * before that (qsync_mpi_send() took it only from now + window on). */
    uint64_t q = earliest_queued(m);
    if (q < end) {
        uint64_t k = q > now ? (q - now) / w : 1;
        end = now + (k ? k : 1) * w;
    }
    return end;
}

static void on_barrier(qsync_group *group, int status, uint64_t deadline_ns)
{
    (void)deadline_ns;
    for (qsync_mpi *m = live; m; m = m->next_live)
        if (m->group == group) {
            m->barrier_done = 1;
            m->barrier_status = status;
            return;
        }
}

/* This rank's part of the window: its group to end_ns. */
static int run_window(qsync_mpi *m, uint64_t end_ns)
{
    m->barrier_done = 0;
    m->barrier_status = 0;
    if (qsync_group_size(m->group) > 0) {
        int rc = qsync_group_advance_to_ns(m->group, end_ns, on_barrier);
        if (rc == QSYNC_EBUSY)
            return rc;
        if (rc) {
            /* Refused: every member has failed (a broken context refuses
             * at once); the window goes on without them. */
            m->barrier_status = rc;
            m->barrier_done = 1;
        }
    } else {
        m->barrier_done = 1;
    }
    while (!m->barrier_done || (m->cfg.settled && !m->cfg.settled(m)))
        uv_run(m->loop, UV_RUN_ONCE);
    return 0;
}

/* The messages cross: sizes, then bytes; recv for each, by sending rank. */
static int exchange(qsync_mpi *m, qsync_mpi_window *w)
{
    for (int i = 0; i < m->size; i++)
        m->counts[i] = (int)m->out[i].len;
    if (MPI_Alltoall(m->counts, 1, MPI_INT, m->rcounts, 1, MPI_INT, m->comm) != MPI_SUCCESS)
        qsync_mpi_abort(m, 1, "MPI_Alltoall failed");
    size_t total = 0, sent = 0;
    for (int i = 0; i < m->size; i++) {
        m->rdispls[i] = (int)total;
        total += (size_t)m->rcounts[i];
        m->displs[i] = (int)sent;
        sent += (size_t)m->counts[i];
    }
    if (total > (size_t)INT32_MAX || sent > (size_t)INT32_MAX)
        qsync_mpi_abort(m, 1, "more than 2 GiB of messages in one window");
    unsigned char *send = NULL;
    if (sent) {
        send = malloc(sent);
        if (!send)
            qsync_mpi_abort(m, 1, "out of memory for %zu bytes of messages", sent);
        for (int i = 0; i < m->size; i++)
            if (m->counts[i])
                memcpy(send + m->displs[i], m->out[i].p, (size_t)m->counts[i]);
    }
    /* What is sent from here on (recv) goes with the next window. */
    for (int i = 0; i < m->size; i++)
        m->out[i].len = 0;
    if (total > m->in_cap) {
        unsigned char *p = realloc(m->in, total);
        if (!p)
            qsync_mpi_abort(m, 1, "out of memory for %zu bytes of messages", total);
        m->in = p;
        m->in_cap = total;
    }
    if (MPI_Alltoallv(send ? send : m->in, m->counts, m->displs, MPI_BYTE, m->in, m->rcounts,
                      m->rdispls, MPI_BYTE, m->comm) != MPI_SUCCESS)
        qsync_mpi_abort(m, 1, "MPI_Alltoallv failed");
    free(send);
    w->bytes_out = sent;
    for (int src = 0; src < m->size; src++) {
        size_t at = (size_t)m->rdispls[src], end = at + (size_t)m->rcounts[src];
        while (at < end) {
            struct msg_head h;
            if (end - at < sizeof h)
                qsync_mpi_abort(m, 1, "a message from rank %d is cut short", src);
            memcpy(&h, m->in + at, sizeof h);
            at += sizeof h;
            if (h.len > end - at)
                qsync_mpi_abort(m, 1, "a message from rank %d is cut short", src);
            w->messages_in++;
            if (m->cfg.recv)
                m->cfg.recv(m, src, h.at_ns, m->in + at, (size_t)h.len);
            at += (size_t)h.len;
        }
    }
    return 0;
}

int qsync_mpi_step(qsync_mpi *m, uint64_t limit_ns, qsync_mpi_window *win)
{
    qsync_mpi_window w;
    memset(&w, 0, sizeof w);
    if (m->in_step)
        return set_err(m, QSYNC_ERECURSE, "qsync_mpi_step: called from inside a step");
    uint64_t end = offer(m);
    int bad = limit_ns <= m->now;
    if (!bad && limit_ns < end)
        end = limit_ns;

    /* 1. The window's end: the earliest any rank will go to. */
    uint64_t v[2] = {end, (uint64_t)!bad}, r[2];
    allreduce(m, v, r, 2, MPI_MIN);
    if (r[1] == 0) {
        if (bad)
            return set_err(m, QSYNC_ERANGE,
                           "qsync_mpi_step: limit_ns %llu is not after now (%llu ns)",
                           (unsigned long long)limit_ns, (unsigned long long)m->now);
        return set_err(m, QSYNC_ERANGE,
                       "qsync_mpi_step: another rank gave a limit that is not after now");
    }
    w.start_ns = m->now;
    w.end_ns = r[0];
    /* Nothing due anywhere, ever, and no limit: one window, not a jump to
     * the end of the clock. */
    if (w.end_ns == QSYNC_DEADLINE_MAX && m->now <= QSYNC_DEADLINE_MAX - m->cfg.window_ns)
        w.end_ns = m->now + m->cfg.window_ns;

    /* 2. This rank's guests run the window. */
    m->in_step = 1;
    m->horizon = w.end_ns;
    int rc = run_window(m, w.end_ns);
    if (rc) {
        /* The other ranks are already running theirs: this one cannot
         * take part, so they must all end. */
        qsync_mpi_abort(m, 1, "qsync_mpi_step: the group's advance was already pending");
    }
    w.local_status = m->barrier_status;

    /* 3. What crosses, who failed, who is left. */
    uint64_t bytes = 0;
    for (int i = 0; i < m->size; i++)
        bytes += m->out[i].len;
    uint64_t s[3] = {bytes, (uint64_t)m->failed, qsync_group_size(m->group)}, t[3];
    allreduce(m, s, t, 3, MPI_SUM);
    m->failed = 0;
    w.ranks_failed = (unsigned)t[1];
    w.members = t[2];
    m->now = w.end_ns;
    m->horizon = m->now + m->cfg.window_ns;
    if (m->horizon < m->now || m->horizon > QSYNC_DEADLINE_MAX)
        m->horizon = QSYNC_DEADLINE_MAX;
    if (t[0])
        exchange(m, &w);
    m->in_step = 0;
    check_launcher(m);
    if (win)
        *win = w;
    return 0;
}

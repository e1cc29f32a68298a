/*
 * mpi.api: libqsync-mpi's contract without QEMU, under mpirun (3 ranks
 * or more): refusals (a window longer than the lookahead, ranks that
 * disagree, a message due before the window's end, a limit in the past),
 * the agreement on each window's end, failed ranks counted everywhere,
 * and messages delivered by sending rank, then in send order, with their
 * times. Every rank checks; any failure fails the test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qsync/mpi.h>

static int rank, size, failures;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "mpi_api: rank %d: line %d: check failed: %s\n", rank, __LINE__, \
                    #cond);                                                               \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

/* What recv saw: (src, at, first payload int). */
struct seen {
    int src;
    uint64_t at;
    int v;
};
static struct seen seen[1024];
static int n_seen;

static void on_recv(qsync_mpi *m, int src, uint64_t at_ns, const void *data, size_t len)
{
    (void)m;
    int v = -1;
    if (len >= sizeof v)
        memcpy(&v, data, sizeof v);
    if (n_seen < 1024)
        seen[n_seen++] = (struct seen){src, at_ns, v};
}

static qsync_mpi *make(qsync_group *g, uint64_t lookahead, uint64_t window, int *rc, char *err,
                       size_t errlen)
{
    qsync_mpi_config cfg;
    qsync_mpi_config_init(&cfg);
    cfg.lookahead_ns = lookahead;
    cfg.window_ns = window;
    cfg.recv = on_recv;
    qsync_mpi *m = NULL;
    *rc = qsync_mpi_new(uv_default_loop(), g, &cfg, &m, err, errlen);
    return m;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    qsync_group *g;
    CHECK(qsync_group_new(&g) == 0);
    char err[512];
    int rc;

    /* A window longer than the lookahead: refused on every rank, before
     * any collective, with the reason. */
    err[0] = 0;
    qsync_mpi *m = make(g, 10000, 10001, &rc, err, sizeof err);
    CHECK(rc == QSYNC_EARG && m == NULL);
    CHECK(strstr(err, "window_ns 10001 is longer than lookahead_ns 10000") != NULL);

    /* No lookahead. */
    m = make(g, 0, 0, &rc, err, sizeof err);
    CHECK(rc == QSYNC_EARG && strstr(err, "lookahead_ns: required") != NULL);

    /* Ranks that disagree on the lookahead: every rank refuses. */
    m = make(g, rank == size - 1 ? 20000 : 10000, 5000, &rc, err, sizeof err);
    CHECK(rc == QSYNC_EARG && m == NULL);
    CHECK(strstr(err, "lookahead_ns differs between ranks") != NULL);
    m = make(g, 10000, rank == 0 ? 4000 : 5000, &rc, err, sizeof err);
    CHECK(rc == QSYNC_EARG && strstr(err, "window_ns differs between ranks") != NULL);

    /* Ranks that start at different times: refused. */
    {
        qsync_mpi_config cfg;
        qsync_mpi_config_init(&cfg);
        cfg.lookahead_ns = 10000;
        cfg.start_ns = rank == 1 ? 5 : 0;
        rc = qsync_mpi_new(uv_default_loop(), g, &cfg, &m, err, sizeof err);
        CHECK(rc == QSYNC_EARG && strstr(err, "start_ns differs between ranks") != NULL);
        /* And one that starts later: now is there. */
        cfg.start_ns = 7000;
        rc = qsync_mpi_new(uv_default_loop(), g, &cfg, &m, err, sizeof err);
        CHECK(rc == 0 && qsync_mpi_now_ns(m) == 7000 && qsync_mpi_horizon_ns(m) == 17000);
        qsync_mpi_window w0;
        CHECK(qsync_mpi_step(m, QSYNC_DEADLINE_MAX, &w0) == 0 && w0.end_ns == 17000);
        qsync_mpi_free(m);

        /* skip_idle must agree too. */
        cfg.start_ns = 0;
        cfg.skip_idle = rank == 0;
        rc = qsync_mpi_new(uv_default_loop(), g, &cfg, &m, err, sizeof err);
        CHECK(rc == QSYNC_EARG && strstr(err, "skip_idle differs between ranks") != NULL);

        /* Skipping with no guests anywhere: nothing is ever due, so one
         * window at a time (not a jump to the end of the clock), unless a
         * limit says where; a message queued between steps at 45 us,
         * due at 100 us, bounds the next window to the last grid point
         * before it (95 us), where it is delivered. */
        cfg.skip_idle = 1;
        cfg.recv = on_recv;
        rc = qsync_mpi_new(uv_default_loop(), g, &cfg, &m, err, sizeof err);
        CHECK(rc == 0);
        CHECK(qsync_mpi_step(m, QSYNC_DEADLINE_MAX, &w0) == 0 && w0.end_ns == 10000);
        CHECK(qsync_mpi_step(m, 35000, &w0) == 0 && w0.end_ns == 35000);
        CHECK(qsync_mpi_step(m, QSYNC_DEADLINE_MAX, &w0) == 0 && w0.end_ns == 45000);
        int before = n_seen, v = 77;
        if (rank == 0)
            CHECK(qsync_mpi_send(m, size - 1, 100000, &v, sizeof v) == 0);
        CHECK(qsync_mpi_step(m, QSYNC_DEADLINE_MAX, &w0) == 0 && w0.end_ns == 95000);
        CHECK(n_seen == before + (rank == size - 1));
        if (rank == size - 1)
            CHECK(seen[n_seen - 1].at == 100000 && seen[n_seen - 1].v == 77);
        CHECK(qsync_mpi_step(m, QSYNC_DEADLINE_MAX, &w0) == 0 && w0.end_ns == 105000);
        qsync_mpi_free(m);
    }

    /* The real one: lookahead 10 us, window 10 us (0: the lookahead). */
    m = make(g, 10000, 0, &rc, err, sizeof err);
    CHECK(rc == 0 && m != NULL);
    if (!m) {
        MPI_Finalize();
        return 1;
    }
    CHECK(qsync_mpi_rank(m) == rank && qsync_mpi_size(m) == size);
    CHECK(qsync_mpi_now_ns(m) == 0);

    /* A window with no members anywhere: now moves by the window. */
    qsync_mpi_window w;
    CHECK(qsync_mpi_step(m, QSYNC_DEADLINE_MAX, &w) == 0);
    CHECK(w.start_ns == 0 && w.end_ns == 10000 && w.members == 0 && w.local_status == 0);
    CHECK(qsync_mpi_now_ns(m) == 10000);

    /* The earliest limit of any rank ends the window, on every rank. */
    CHECK(qsync_mpi_step(m, rank == 1 ? 13000 : QSYNC_DEADLINE_MAX, &w) == 0);
    CHECK(w.end_ns == 13000 && qsync_mpi_now_ns(m) == 13000);

    /* A limit that is not after now: every rank gets QSYNC_ERANGE, time
     * stays. */
    rc = qsync_mpi_step(m, rank == 2 ? 13000 : QSYNC_DEADLINE_MAX, &w);
    CHECK(rc == QSYNC_ERANGE);
    CHECK(qsync_mpi_now_ns(m) == 13000);
    if (rank == 2)
        CHECK(strstr(qsync_mpi_last_error(m), "not after now") != NULL);
    else
        CHECK(strstr(qsync_mpi_last_error(m), "another rank") != NULL);

    /* Between steps a message must be due at now + window at the
     * earliest: 23000 here. */
    int v = 0;
    CHECK(qsync_mpi_send(m, 0, 22999, &v, sizeof v) == QSYNC_ERANGE);
    CHECK(strstr(qsync_mpi_last_error(m), "1 ns before the end of the window") != NULL);
    CHECK(qsync_mpi_send(m, size, 23000, &v, sizeof v) == QSYNC_EARG);
    CHECK(qsync_mpi_send(m, -1, 23000, &v, sizeof v) == QSYNC_EARG);
    CHECK(qsync_mpi_send(m, 0, 23000, NULL, 4) == QSYNC_EARG);
    CHECK(qsync_mpi_send(m, 0, 23000, &v, QSYNC_MPI_MSG_MAX + 1u) == QSYNC_EARG);

    /* Every rank sends three messages to every rank, itself included,
     * their payload rank * 100 + k, due at 23000 + k. */
    for (int dst = size - 1; dst >= 0; dst--)
        for (int k = 0; k < 3; k++) {
            v = rank * 100 + k;
            CHECK(qsync_mpi_send(m, dst, 23000u + (unsigned)k, &v, sizeof v) == 0);
        }
    /* An empty message too, to rank 0. */
    CHECK(qsync_mpi_send(m, 0, 30000, "", 0) == 0);
    n_seen = 0;
    CHECK(qsync_mpi_step(m, QSYNC_DEADLINE_MAX, &w) == 0);
    CHECK(w.end_ns == 23000);
    CHECK(w.messages_in == (uint64_t)(size * 3 + (rank == 0 ? size : 0)));
    int i = 0;
    for (int src = 0; src < size; src++) {
        for (int k = 0; k < 3; k++, i++) {
            CHECK(i < n_seen && seen[i].src == src && seen[i].v == src * 100 + k &&
                  seen[i].at == 23000u + (unsigned)k);
        }
        if (rank == 0) {
            CHECK(i < n_seen && seen[i].src == src && seen[i].at == 30000 && seen[i].v == -1);
            i++;
        }
    }
    CHECK(i == n_seen);

    /* A window where nothing is sent delivers nothing. */
    n_seen = 0;
    CHECK(qsync_mpi_step(m, QSYNC_DEADLINE_MAX, &w) == 0);
    CHECK(n_seen == 0 && w.messages_in == 0 && w.bytes_out == 0);

    /* A failed rank is known to all at the next step, once. */
    if (rank == size - 1)
        qsync_mpi_fail(m);
    CHECK(qsync_mpi_step(m, QSYNC_DEADLINE_MAX, &w) == 0);
    CHECK(w.ranks_failed == 1);
    CHECK(qsync_mpi_step(m, QSYNC_DEADLINE_MAX, &w) == 0);
    CHECK(w.ranks_failed == 0);

    qsync_mpi_free(m);
    qsync_group_free(g);
    int all = 0;
    MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf(all ? "mpi_api: %d checks failed\n" : "mpi_api: ok\n", all);
    uv_loop_close(uv_default_loop());
    MPI_Finalize();
    return all ? 1 : 0;
}

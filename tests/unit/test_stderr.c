/*
 * QEMU's stderr against a host stderr that cannot take it, with the fake
 * QEMU peer (fake_qemu.c): a pipe whose reader is gone (SIGPIPE at its
 * default disposition, which kills), a pipe nobody reads, room that comes
 * back, and the stderr_output callback. The test's own fd 2 is swapped for
 * the pipe while a context runs, and restored before anything is checked.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qsync/qsync.h>

#ifndef FAKE_QEMU
#error "FAKE_QEMU must name the fake peer's path"
#endif

/* What the fake's "chatty" scenarios print: 1024 lines of 100 bytes, then
 * its last words. */
#define CHATTY_LINES 1024
#define CHATTY_LAST "fake-qemu: last words\n"
#define CHATTY_BYTES (CHATTY_LINES * 100 + sizeof CHATTY_LAST - 1)

/* Generous liveness bound: a loop thread blocked in write() never gets
 * out, and the alarm's default action then ends the test as a failure. */
#define LIVENESS_S 60

struct run {
    qsync_ctx *ctx;
    int reached_ok, reached_failed, last_status, exited;
    int advance_rc;
    uint64_t dropped_at_exit;
    int advance_on; /* advance again from each successful reached */
    int close_in_reached;
    /* stderr_output */
    char *got;
    size_t got_len, got_cap;
    int closed;
    char tail[8192];
};

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct run *r = qsync_get_data(ctx);
    (void)stop;
    r->last_status = status;
    if (status) {
        r->reached_failed++;
        return;
    }
    r->reached_ok++;
    if (r->close_in_reached) {
        qsync_close(ctx, NULL);
        r->closed = 1;
        return;
    }
    if (r->advance_on && r->advance_rc == 0)
        r->advance_rc = qsync_advance(ctx, 10);
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct run *r = qsync_get_data(ctx);
    r->exited++;
    r->dropped_at_exit = qsync_stderr_dropped(ctx);
    snprintf(r->tail, sizeof r->tail, "%s", ex->stderr_tail);
}

static void on_stderr(qsync_ctx *ctx, const char *data, size_t len)
{
    struct run *r = qsync_get_data(ctx);
    if (r->got_len + len > r->got_cap) {
        r->got_cap = (r->got_len + len) * 2;
        r->got = realloc(r->got, r->got_cap);
        assert_non_null(r->got);
    }
    memcpy(r->got + r->got_len, data, len);
    r->got_len += len;
}

static qsync_ctx *new_ctx(uv_loop_t *loop, struct run *r, int with_callback)
{
    qsync_options o;
    qsync_options_init(&o);
    o.plugin_path = FAKE_QEMU; /* any readable file: the fake loads nothing */
    o.quiet_stderr = 0;        /* forwarding is what is under test */
    o.stderr_tail_bytes = 4096;
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = on_reached;
    cb.exited = on_exited;
    if (with_callback)
        cb.stderr_output = on_stderr;
    qsync_ctx *ctx = NULL;
    char err[256] = "";
    int rc = qsync_ctx_new(loop, &o, &cb, &ctx, err, sizeof err);
    if (rc)
        fail_msg("qsync_ctx_new: %s (%s)", qsync_strerror(rc), err);
    qsync_set_data(ctx, r);
    r->ctx = ctx;
    return ctx;
}

static int start(qsync_ctx *ctx, const char *scenario)
{
    const char *argv[] = {FAKE_QEMU, scenario, NULL};
    return qsync_start(ctx, argv);
}

/* Puts fd in the place of this process's stderr; returns the saved one. */
static int swap_stderr(int fd)
{
    int saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 10);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    return saved;
}

static void restore_stderr(int saved)
{
    dup2(saved, STDERR_FILENO);
    close(saved);
}

/* A pipe whose write end will be our stderr, holding at most 4096 bytes;
 * its read end does not block. */
static void small_pipe(int p[2])
{
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_true(fcntl(p[1], F_SETPIPE_SZ, 4096) >= 4096);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
}

/* Reads what waits in a non-blocking fd, up to cap bytes. */
static size_t drain(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char tmp[4096];
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return n;
        if (buf && n + (size_t)r <= cap)
            memcpy(buf + n, tmp, (size_t)r);
        n += (size_t)r;
    }
}

/* The library's word on bytes it had to drop. */
#define NOTE_START "libqsync: "
#define NOTE_END " bytes of QEMU's stderr were dropped here (this stderr was full or closed)\n"

static int ticks;

static void tick_cb(uv_timer_t *t)
{
    (void)t;
    ticks++;
}

/* The host's stderr is a pipe whose reader has gone (a dead logger, a
 * killed tee), and SIGPIPE is at its default disposition: the host
 * survives, every quantum completes, and every byte is counted dropped. */
static void test_stderr_reader_gone(void **state)
{
    (void)state;
    assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    alarm(LIVENESS_S);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    close(p[0]);
    int saved = swap_stderr(p[1]);
    close(p[1]);

    struct run r = {0};
    r.advance_on = 1;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_ctx *ctx = new_ctx(&loop, &r, 0);
    int rc = start(ctx, "chatty-exit");
    if (rc == 0)
        rc = qsync_advance(ctx, 10);
    while (rc == 0 && r.exited == 0 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    qsync_close(ctx, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    int loop_rc = uv_loop_close(&loop);
    restore_stderr(saved);
    alarm(0);

    assert_int_equal(rc, 0);
    assert_int_equal(loop_rc, 0);
    assert_int_equal(r.advance_rc, 0);
    assert_int_equal(r.reached_ok, 20);
    assert_int_equal(r.reached_failed, 1);
    assert_int_equal(r.last_status, QSYNC_EEXITED);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.dropped_at_exit, CHATTY_BYTES);
    /* The tail kept QEMU's last words all the same. */
    assert_non_null(strstr(r.tail, CHATTY_LAST));
}

/* The host's stderr is a pipe that is open but not read, and holds 4 KiB:
 * 100 KiB from QEMU must not block the loop thread. A timer on the same
 * loop keeps firing and the quanta keep completing; what the pipe took
 * plus what was dropped is all that QEMU wrote. */
static void test_stderr_unread_pipe_does_not_block(void **state)
{
    (void)state;
    alarm(LIVENESS_S);
    int p[2];
    small_pipe(p);
    int saved = swap_stderr(p[1]);

    struct run r = {0};
    r.advance_on = 1;
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    ticks = 0;
    uv_timer_start(&timer, tick_cb, 1, 1);
    qsync_ctx *ctx = new_ctx(&loop, &r, 0);
    int rc = start(ctx, "chatty-exit");
    if (rc == 0)
        rc = qsync_advance(ctx, 10);
    while (rc == 0 && r.exited == 0 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    qsync_close(ctx, NULL);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    int loop_rc = uv_loop_close(&loop);
    restore_stderr(saved);
    alarm(0);
    static char piped[8192];
    size_t in_pipe = drain(p[0], piped, sizeof piped - 1);
    close(p[0]);
    close(p[1]);
    assert_true(in_pipe < sizeof piped);
    piped[in_pipe] = '\0';
    /* A small chunk may still fit where a big one did not: each time room
     * comes back, the library first says how much it dropped. */
    uint64_t said = 0;
    size_t notes = 0;
    for (char *n = strstr(piped, NOTE_START); n; n = strstr(n + 1, NOTE_START)) {
        char *end = strstr(n, NOTE_END);
        assert_non_null(end);
        said += strtoull(n + strlen(NOTE_START), NULL, 10);
        notes += (size_t)(end - n) + strlen(NOTE_END);
    }

    assert_int_equal(rc, 0);
    assert_int_equal(loop_rc, 0);
    assert_true(ticks > 0);
    assert_int_equal(r.advance_rc, 0);
    assert_int_equal(r.reached_ok, 20);
    assert_int_equal(r.last_status, QSYNC_EEXITED);
    assert_int_equal(r.exited, 1);
    assert_true(in_pipe <= 4096);
    assert_true(r.dropped_at_exit > 0);
    assert_true(said <= r.dropped_at_exit);
    assert_int_equal(in_pipe - notes + r.dropped_at_exit, CHATTY_BYTES);
}

/* Runs the loop, with a 1 ms timer keeping it awake, until done(r) holds. */
static void run_until(uv_loop_t *loop, struct run *r, int (*done)(struct run *r, void *arg),
                      void *arg)
{
    uv_timer_t timer;
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, tick_cb, 1, 1);
    while (!done(r, arg))
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static int reached_n(struct run *r, void *arg)
{
    return r->reached_ok + r->reached_failed >= *(int *)arg;
}

static int dropped_n(struct run *r, void *arg)
{
    return qsync_stderr_dropped(r->ctx) >= *(uint64_t *)arg;
}

struct pipe_read {
    int fd;
    char buf[4096];
    size_t len;
    const char *want_end;
};

static int pipe_has(struct run *r, void *arg)
{
    (void)r;
    struct pipe_read *pr = arg;
    pr->len += drain(pr->fd, pr->buf + pr->len, sizeof pr->buf - 1 - pr->len);
    pr->buf[pr->len] = '\0';
    size_t wl = strlen(pr->want_end);
    return pr->len >= wl && strcmp(pr->buf + pr->len - wl, pr->want_end) == 0;
}

/* A full stderr drops QEMU's line of quantum 1; once there is room again,
 * the library says how much was lost, once, before QEMU's next line. */
static void test_stderr_drop_is_said_when_room_returns(void **state)
{
    (void)state;
    alarm(LIVENESS_S);
    int p[2];
    small_pipe(p);
    /* Full before QEMU says anything. */
    char fill[4096];
    memset(fill, 'x', sizeof fill);
    assert_int_equal(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
    size_t filled = 0;
    ssize_t w;
    while ((w = write(p[1], fill, sizeof fill)) > 0)
        filled += (size_t)w;
    assert_int_equal(fcntl(p[1], F_SETFL, 0), 0);
    int saved = swap_stderr(p[1]);

    struct run r = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_ctx *ctx = new_ctx(&loop, &r, 0);
    int rc = start(ctx, "stderr-each");
    const char *line1 = "fake-qemu: quantum 1\n";
    uint64_t dropped1 = strlen(line1);
    int one = 1, two = 2;
    struct pipe_read pr = {.fd = p[0], .want_end = "fake-qemu: quantum 2\n"};
    size_t drained = 0;
    uint64_t dropped_mid = 0;
    if (rc == 0)
        rc = qsync_advance(ctx, 10);
    if (rc == 0) {
        run_until(&loop, &r, reached_n, &one);
        run_until(&loop, &r, dropped_n, &dropped1);
        dropped_mid = qsync_stderr_dropped(ctx);
        drained = drain(p[0], NULL, 0); /* room again */
        rc = qsync_advance(ctx, 10);
    }
    if (rc == 0) {
        run_until(&loop, &r, reached_n, &two);
        run_until(&loop, &r, pipe_has, &pr);
    }
    uint64_t dropped_end = qsync_stderr_dropped(ctx);
    qsync_close(ctx, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    int loop_rc = uv_loop_close(&loop);
    restore_stderr(saved);
    alarm(0);
    close(p[0]);
    close(p[1]);

    assert_int_equal(rc, 0);
    assert_int_equal(loop_rc, 0);
    assert_int_equal(drained, filled);
    assert_int_equal(dropped_mid, dropped1);
    assert_int_equal(dropped_end, dropped1);
    assert_string_equal(pr.buf, NOTE_START "21" NOTE_END "fake-qemu: quantum 2\n");
}

/* With stderr_output set, every byte QEMU writes to stderr reaches the
 * callback, in order, also after qsync_close(); none reaches the host's
 * stderr, none is counted dropped, and the tail is kept as before. */
static void test_stderr_callback_takes_every_byte(void **state)
{
    (void)state;
    alarm(LIVENESS_S);
    int p[2];
    small_pipe(p);
    int saved = swap_stderr(p[1]);

    struct run r = {0};
    r.close_in_reached = 1;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_ctx *ctx = new_ctx(&loop, &r, 1);
    int rc = start(ctx, "chatty");
    if (rc == 0)
        rc = qsync_advance(ctx, 10);
    uv_run(&loop, UV_RUN_DEFAULT);
    int loop_rc = uv_loop_close(&loop);
    restore_stderr(saved);
    alarm(0);
    size_t in_pipe = drain(p[0], NULL, 0);
    close(p[0]);
    close(p[1]);

    assert_int_equal(rc, 0);
    assert_int_equal(loop_rc, 0);
    assert_int_equal(r.exited, 1);
    assert_int_equal(in_pipe, 0);
    assert_int_equal(r.dropped_at_exit, 0);
    char *want = malloc(CHATTY_BYTES + 1);
    assert_non_null(want);
    for (int i = 0; i < CHATTY_LINES; i++)
        snprintf(want + (size_t)i * 100, 101, "%099d\n", i);
    memcpy(want + CHATTY_LINES * 100, CHATTY_LAST, sizeof CHATTY_LAST);
    assert_int_equal(r.got_len, CHATTY_BYTES);
    assert_memory_equal(r.got, want, CHATTY_BYTES);
    assert_int_equal(strlen(r.tail), 4096);
    assert_memory_equal(r.tail, want + CHATTY_BYTES - 4096, 4096);
    free(want);
    free(r.got);
}

/* An optional argument runs only the tests whose names match it. */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stderr_reader_gone),
        cmocka_unit_test(test_stderr_unread_pipe_does_not_block),
        cmocka_unit_test(test_stderr_drop_is_said_when_room_returns),
        cmocka_unit_test(test_stderr_callback_takes_every_byte),
    };
    return cmocka_run_group_tests_name("stderr", tests, NULL, NULL);
}

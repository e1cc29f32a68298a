/*
 * The channel option (qsync_options.channel) against the fake QEMU, on
 * each transport: what is refused, that QEMU is told the channel asked
 * for, and that the news the library owes its caller (reports, the last
 * frames before QEMU's end, broken frames, a close while the plugin
 * sleeps) arrives the same way on pipes and on shared memory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sched.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <qsync/qsync.h>

#ifndef FAKE_QEMU
#error "FAKE_QEMU must be defined"
#endif

static const qsync_channel pipe_ch = QSYNC_CHANNEL_PIPE;
static const qsync_channel shm_ch = QSYNC_CHANNEL_SHM;

struct rec {
    int reached, ok, exited, errors;
    int first_error;
    uint64_t last_deadline, last_virtual;
    int64_t exit_status;
    int term_signal, by_close;
    uint64_t exit_virtual;
    int max;
    int close_after;
    unsigned grant_delay_us; /* wait before each next grant: the peer sleeps by then */
    char cmdline[4096];
    uint64_t close_t0, exited_t;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct rec *r = qsync_get_data(ctx);
    r->reached++;
    if (status) {
        if (!r->first_error)
            r->first_error = status;
        return;
    }
    r->ok++;
    assert_int_equal(stop->seq, (uint64_t)r->ok);
    assert_int_equal(stop->virtual_ns, stop->deadline_ns);
    if (r->max) /* 1 us at a time */
        assert_int_equal(stop->deadline_ns, 1000u * (uint64_t)r->ok);
    r->last_deadline = stop->deadline_ns;
    if (r->close_after && r->ok == r->close_after) {
        qsync_close(ctx, NULL);
        return;
    }
    if (r->ok < r->max) {
        if (r->grant_delay_us)
            usleep(r->grant_delay_us);
        assert_int_equal(qsync_advance_ns(ctx, 1000), 0);
    }
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct rec *r = qsync_get_data(ctx);
    r->exited++;
    r->exited_t = now_ms();
    r->exit_status = ex->exit_status;
    r->term_signal = ex->term_signal;
    r->by_close = ex->by_close;
    r->exit_virtual = ex->virtual_ns;
}

static void on_error(qsync_ctx *ctx, int code, const char *msg)
{
    struct rec *r = qsync_get_data(ctx);
    (void)msg;
    r->errors++;
    if (!r->first_error)
        r->first_error = code;
}

/* The fake's command line: which channel the library told it to use. */
static void read_cmdline(qsync_ctx *ctx, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", qsync_pid(ctx));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    buf[n] = '\0';
}

/* Starts the fake with scenario on channel ch, on loop (NULL: private),
 * with plugin_args (NULL: none) for the fake. */
static qsync_ctx *start_args(uv_loop_t *loop, qsync_channel ch, const char *scenario,
                             struct rec *r, uint64_t kill_grace_ms, const char *plugin_args)
{
    qsync_options o;
    qsync_options_init(&o);
    o.plugin_path = FAKE_QEMU; /* any readable file: the fake loads nothing */
    o.quiet_stderr = 1;
    o.channel = ch;
    o.plugin_args = plugin_args;
    if (kill_grace_ms)
        o.kill_grace_ms = kill_grace_ms;
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = on_reached;
    cb.exited = on_exited;
    cb.error = on_error;
    qsync_ctx *ctx = NULL;
    char err[256] = "";
    if (qsync_ctx_new(loop, &o, &cb, &ctx, err, sizeof err))
        fail_msg("qsync_ctx_new: %s", err);
    qsync_set_data(ctx, r);
    const char *argv[] = {FAKE_QEMU, scenario, NULL};
    if (qsync_start(ctx, argv))
        fail_msg("qsync_start: %s", qsync_last_error(ctx));
    read_cmdline(ctx, r->cmdline, sizeof r->cmdline);
    int shm = strstr(r->cmdline, ",shm=5,efd=6,") != NULL;
    assert_int_equal(shm, ch == QSYNC_CHANNEL_SHM);
    return ctx;
}

static qsync_ctx *start(uv_loop_t *loop, qsync_channel ch, const char *scenario, struct rec *r,
                        uint64_t kill_grace_ms)
{
    return start_args(loop, ch, scenario, r, kill_grace_ms, NULL);
}

/* Counts the loop's turns while advances are being answered, and the most
 * answers between two turns. */
struct turns {
    uv_check_t check;
    struct rec *r;
    int turns, last_ok, max_gap;
};

static void turns_cb(uv_check_t *h)
{
    struct turns *t = h->data;
    t->turns++;
    if (t->r->ok - t->last_ok > t->max_gap)
        t->max_gap = t->r->ok - t->last_ok;
    t->last_ok = t->r->ok;
    if (t->r->ok >= t->r->max || t->r->exited || t->r->first_error)
        uv_close((uv_handle_t *)h, NULL);
}

static void run_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_options_refused(void **state)
{
    (void)state;
    qsync_options o;
    qsync_ctx *ctx = NULL;
    char err[256];

    qsync_options_init(&o);
    assert_int_equal(o.channel, QSYNC_CHANNEL_AUTO);
    o.channel = (qsync_channel)7;
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "channel: 7 is not a qsync_channel"));

    qsync_options_init(&o);
    o.channel = QSYNC_CHANNEL_SHM;
    o.mode = QSYNC_MODE_QQQ;
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "QSYNC_CHANNEL_SHM needs mode QSYNC_MODE_PLUGIN"));
    assert_non_null(strstr(err, "qqq"));
    o.mode = QSYNC_MODE_FIFO;
    o.fifo_quantum_us = 10;
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "FIFO"));

    qsync_options_init(&o);
    assert_int_equal(o.shm_poll_ns, 50000);
    o.shm_poll_ns = 2000000000u;
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "shm_poll_ns: 2000000000 is out of range"));
    qsync_options_init(&o);
    assert_int_equal(o.async_poll_ns, 0); /* the caller's loop is never held unasked */
    o.async_poll_ns = 2000000000u;
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
    assert_non_null(strstr(err, "async_poll_ns: 2000000000 is out of range 0..1000000000"));

    /* The other modes keep their own channels under AUTO and PIPE. */
    qsync_options_init(&o);
    o.mode = QSYNC_MODE_FIFO;
    o.fifo_quantum_us = 10;
    for (int ch = QSYNC_CHANNEL_AUTO; ch <= QSYNC_CHANNEL_PIPE; ch++) {
        o.channel = (qsync_channel)ch;
        assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), 0);
        assert_int_equal(qsync_close_wait(ctx), 0);
    }

    /* The library passes the shared memory's descriptors itself. */
    static const char *const reserved[] = {"shm=5", "engine=insn,efd=6"};
    for (size_t i = 0; i < 2; i++) {
        qsync_options_init(&o);
        o.plugin_args = reserved[i];
        assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), QSYNC_EARG);
        assert_non_null(strstr(err, "is set by the library itself"));
    }
    /* The plugin's polling budget is the user's to tune. */
    qsync_options_init(&o);
    o.plugin_args = "spin_ns=1000";
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err), 0);
    assert_int_equal(qsync_close_wait(ctx), 0);
}

/* The default is the shared memory in plugin mode (docs/benchmarks.md),
 * also for a caller built before the channel option existed. */
static void test_auto_is_shm(void **state)
{
    (void)state;
    qsync_ctx *ctx;
    qsync_options o;
    qsync_options_init(&o);
    o.size = offsetof(qsync_options, channel);
    o.channel = QSYNC_CHANNEL_PIPE; /* beyond that caller's struct: not read */
    o.plugin_path = FAKE_QEMU;
    assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, NULL, 0), 0);
    const char *argv[] = {FAKE_QEMU, "good", NULL};
    assert_int_equal(qsync_start(ctx, argv), 0);
    char cmd[4096];
    read_cmdline(ctx, cmd, sizeof cmd);
    assert_non_null(strstr(cmd, ",shm=5,efd=6,"));
    assert_int_equal(qsync_close_wait(ctx), 0);
}

/* 2000 exact advances on the caller's loop, then a close. */
static void test_advances(void **state)
{
    qsync_channel ch = *(const qsync_channel *)*state;
    struct rec r = {.max = 2000, .close_after = 2000};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_ctx *ctx = start(&loop, ch, "good", &r, 0);
    assert_int_equal(qsync_advance_ns(ctx, 1000), 0);
    run_loop(&loop);
    assert_int_equal(r.ok, 2000);
    assert_int_equal(r.first_error, 0);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.by_close, 1);
    assert_int_equal(r.term_signal, 0); /* the fake saw the hang-up: no SIGKILL */
}

/* The blocking helpers: on shm they poll the ring before the loop. */
static void test_blocking(void **state)
{
    qsync_channel ch = *(const qsync_channel *)*state;
    struct rec r = {0};
    qsync_ctx *ctx = start(NULL, ch, "good", &r, 0);
    qsync_stop stop;
    for (int i = 1; i <= 2000; i++) {
        assert_int_equal(qsync_advance_wait_ns(ctx, 1000, &stop), 0);
        assert_int_equal(stop.seq, (uint64_t)i);
        assert_int_equal(stop.virtual_ns, 1000u * (uint64_t)i);
    }
    assert_int_equal(qsync_run_until_ns(ctx, 3000000, 7000, &stop), 0);
    assert_int_equal(stop.virtual_ns, 3000000);
    assert_int_equal(qsync_close_wait(ctx), 0);
}

/* The helpers' polling budget: never, and long enough to poll always. */
static void test_blocking_poll_budgets(void **state)
{
    (void)state;
    static const uint64_t budgets[] = {0, 1000000};
    for (size_t b = 0; b < 2; b++) {
        qsync_options o;
        qsync_options_init(&o);
        o.plugin_path = FAKE_QEMU;
        o.quiet_stderr = 1;
        o.channel = QSYNC_CHANNEL_SHM;
        o.shm_poll_ns = budgets[b];
        qsync_ctx *ctx = NULL;
        assert_int_equal(qsync_ctx_new(NULL, &o, NULL, &ctx, NULL, 0), 0);
        const char *argv[] = {FAKE_QEMU, "good", NULL};
        assert_int_equal(qsync_start(ctx, argv), 0);
        qsync_stop stop;
        for (int i = 1; i <= 500; i++) {
            assert_int_equal(qsync_advance_wait_ns(ctx, 1000, &stop), 0);
            assert_int_equal(stop.virtual_ns, 1000u * (uint64_t)i);
        }
        assert_int_equal(qsync_close_wait(ctx), 0);
    }
}

/* The guest powers off: EXIT, then the end of the process. On shm the
 * EXIT is in the ring when the report pipe ends; it must not be lost. */
static void test_poweroff(void **state)
{
    qsync_channel ch = *(const qsync_channel *)*state;
    struct rec r = {.max = 3};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_ctx *ctx = start(&loop, ch, "poweroff", &r, 0);
    assert_int_equal(qsync_advance_ns(ctx, 1000), 0);
    while (!r.exited && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r.ok, 2);
    assert_int_equal(r.first_error, QSYNC_EEXITED);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.exit_status, 7);
    assert_int_equal(r.exit_virtual, 4242);
    qsync_close(ctx, NULL);
    run_loop(&loop);
}

/* A REPORT cut in half, then the end of QEMU: a protocol error. */
static void test_truncated(void **state)
{
    qsync_channel ch = *(const qsync_channel *)*state;
    struct rec r = {.max = 1};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_ctx *ctx = start(&loop, ch, "truncated", &r, 0);
    assert_int_equal(qsync_advance_ns(ctx, 1000), 0);
    while (!r.exited && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r.first_error, QSYNC_EPROTO);
    assert_non_null(strstr(qsync_last_error(ctx), "inside a message"));
    qsync_close(ctx, NULL);
    run_loop(&loop);
}

/* A bad frame on the report pipe: bad on pipes, out of place on shm. */
static void test_stray_pipe_bytes(void **state)
{
    qsync_channel ch = *(const qsync_channel *)*state;
    struct rec r = {.max = 1};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_ctx *ctx = start(&loop, ch, "stray-pipe", &r, 0);
    assert_int_equal(qsync_advance_ns(ctx, 1000), 0);
    while (!r.reached && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r.first_error, QSYNC_EPROTO);
    assert_non_null(strstr(qsync_last_error(ctx),
                           ch == QSYNC_CHANNEL_SHM ? "report pipe" : "in a frame from the plugin"));
    qsync_close(ctx, NULL);
    run_loop(&loop);
}

/* QEMU dies mid-quantum: the advance fails, exited names the signal. */
static void test_die_mid(void **state)
{
    qsync_channel ch = *(const qsync_channel *)*state;
    struct rec r = {.max = 1};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_ctx *ctx = start(&loop, ch, "die-mid", &r, 0);
    assert_int_equal(qsync_advance_ns(ctx, 1000), 0);
    while (!r.exited && uv_run(&loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r.first_error, QSYNC_EEXITED);
    assert_int_equal(r.term_signal, SIGKILL);
    qsync_close(ctx, NULL);
    run_loop(&loop);
}

/* A close while the peer sleeps waiting for a grant (on shm: in the
 * futex, past its polling) ends it through the hang-up, not SIGKILL. */
static void test_close_while_asleep(void **state)
{
    qsync_channel ch = *(const qsync_channel *)*state;
    struct rec r = {.max = 1};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_ctx *ctx = start(&loop, ch, "good", &r, 10000);
    assert_int_equal(qsync_advance_ns(ctx, 1000), 0);
    while (r.ok < 1 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    usleep(200000);
    r.close_t0 = now_ms();
    assert_int_equal(qsync_close(ctx, NULL), 0);
    run_loop(&loop);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.by_close, 1);
    assert_int_equal(r.term_signal, 0);
    assert_int_equal(r.exit_status, 0);
    assert_true(r.exited_t - r.close_t0 < 1000);
}

/*
 * On shared memory a peer that does not poll (spin_ns=0) sleeps on the
 * futex as soon as it has reported; each grant must wake it. The fake
 * sleeps in slices of 1 s and answers a grant that it found only when a
 * slice ran out with an ERROR: a missing wake-up fails the first advance
 * (after 1 s, a generous bound for a wake-up) instead of making every
 * stop wait out the slice.
 */
static void test_shm_wakes_sleeping_peer(void **state)
{
    (void)state;
    /* Each grant comes 2 ms after the report, when the peer (spin_ns=0)
     * is surely asleep on its futex: only the library's wake-up gets it
     * there before its 1 s slice ends. */
    struct rec r = {.max = 50, .grant_delay_us = 2000};
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_ctx *ctx = start_args(&loop, QSYNC_CHANNEL_SHM, "prompt", &r, 0,
                                "spin_ns=0,slice_ns=1000000000");
    assert_int_equal(qsync_advance_ns(ctx, 1000), 0);
    while (r.reached < r.max && !r.exited && uv_run(&loop, UV_RUN_ONCE)) {
    }
    if (r.first_error)
        fail_msg("stop %d: %s: %s", r.ok + 1, qsync_err_name(r.first_error),
                 qsync_last_error(ctx));
    assert_int_equal(r.ok, r.max);
    assert_int_equal(qsync_close(ctx, NULL), 0);
    run_loop(&loop);
}

/*
 * async_poll_ns on the caller's loop: 640 advances, each made from the
 * previous one's reached callback, against a fake that answers at once or
 * 200 us late. Polled, the answers come 64 to a turn of the loop, and the
 * loop still gets its turn after every 64 (its I/O phase may take one more
 * answer from the eventfd: 65); not polled (pipes, a context pinned to one
 * core, the option off), every late answer is one wake-up of the loop and
 * one turn.
 */
static void async_poll_run(qsync_channel ch, uint64_t poll_ns, int pin, const char *fake_args,
                           struct turns *t)
{
    static struct rec r;
    memset(&r, 0, sizeof r);
    r.max = 640;
    r.close_after = 640;
    uv_loop_t loop;
    uv_loop_init(&loop);
    qsync_options o;
    qsync_options_init(&o);
    o.plugin_path = FAKE_QEMU;
    o.plugin_args = fake_args;
    o.quiet_stderr = 1;
    o.channel = ch;
    o.async_poll_ns = poll_ns;
    o.pin_cpu = pin ? 0 : -1;
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = on_reached;
    cb.exited = on_exited;
    cb.error = on_error;
    qsync_ctx *ctx = NULL;
    assert_int_equal(qsync_ctx_new(&loop, &o, &cb, &ctx, NULL, 0), 0);
    qsync_set_data(ctx, &r);
    const char *argv[] = {FAKE_QEMU, "good", NULL};
    assert_int_equal(qsync_start(ctx, argv), 0);
    memset(t, 0, sizeof *t);
    t->r = &r;
    uv_check_init(&loop, &t->check);
    t->check.data = t;
    uv_check_start(&t->check, turns_cb);
    assert_int_equal(qsync_advance_ns(ctx, 1000), 0);
    run_loop(&loop);
    assert_int_equal(r.ok, 640);
    assert_int_equal(r.first_error, 0);
    assert_int_equal(r.exited, 1);
    assert_int_equal(r.by_close, 1); /* closed from inside a polled answer */
}

static void test_async_poll(void **state)
{
    (void)state;
    struct turns t;
    /* Polled for up to 1 s: the fake always answers within it. */
    async_poll_run(QSYNC_CHANNEL_SHM, 1000000000u, 0, NULL, &t);
    assert_in_range(t.max_gap, 1, 65);
    async_poll_run(QSYNC_CHANNEL_SHM, 1000000000u, 0, "delay_ns=200000", &t);
    assert_in_range(t.max_gap, 1, 65);
    assert_in_range(t.turns, 640 / 65, 640 / 64 + 3);

    /* Not polled: about one turn per answer (half, for a margin against
     * a test thread that loses its core just when the answer comes). */
    async_poll_run(QSYNC_CHANNEL_SHM, 0, 0, "delay_ns=200000", &t);
    assert_true(t.turns >= 640 / 2);
    async_poll_run(QSYNC_CHANNEL_PIPE, 1000000000u, 0, "delay_ns=200000", &t);
    assert_true(t.turns >= 640 / 2);
    cpu_set_t was;
    assert_int_equal(sched_getaffinity(0, sizeof was, &was), 0);
    async_poll_run(QSYNC_CHANNEL_SHM, 1000000000u, 1, "delay_ns=200000", &t);
    assert_int_equal(sched_setaffinity(0, sizeof was, &was), 0);
    assert_true(t.turns >= 640 / 2);
}

/* Makes memfd_create() fail with EPERM in this process from now on. */
static int forbid_memfd(void)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_memfd_create, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* In a child where memfd_create fails: SHM fails the start with an error
 * that names the call, AUTO runs on the pipes. Exit codes say what broke. */
static int memfd_failure_child(void)
{
    if (forbid_memfd())
        return 10;
    qsync_options o;
    qsync_options_init(&o);
    o.plugin_path = FAKE_QEMU;
    o.quiet_stderr = 1;
    o.channel = QSYNC_CHANNEL_SHM;
    qsync_ctx *ctx;
    const char *argv[] = {FAKE_QEMU, "good", NULL};
    if (qsync_ctx_new(NULL, &o, NULL, &ctx, NULL, 0))
        return 11;
    int rc = qsync_start(ctx, argv);
    if (rc != -EPERM)
        return 12;
    if (!strstr(qsync_last_error(ctx), "cannot set up the shared memory (memfd_create: "))
        return 13;
    qsync_close_wait(ctx);

    o.channel = QSYNC_CHANNEL_AUTO;
    if (qsync_ctx_new(NULL, &o, NULL, &ctx, NULL, 0) || qsync_start(ctx, argv))
        return 14;
    char cmd[4096];
    read_cmdline(ctx, cmd, sizeof cmd);
    if (strstr(cmd, "shm="))
        return 15;
    qsync_stop stop;
    for (int i = 0; i < 10; i++)
        if (qsync_advance_wait_ns(ctx, 1000, &stop))
            return 16;
    qsync_close_wait(ctx);
    return 0;
}

static void test_memfd_failure(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(memfd_failure_child());
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

#define BOTH(f)                                                                              \
    cmocka_unit_test_prestate(f, (void *)&pipe_ch), cmocka_unit_test_prestate(f, (void *)&shm_ch)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_refused),
        cmocka_unit_test(test_auto_is_shm),
        cmocka_unit_test(test_memfd_failure),
        BOTH(test_advances),
        BOTH(test_blocking),
        cmocka_unit_test(test_blocking_poll_budgets),
        cmocka_unit_test(test_async_poll),
        BOTH(test_poweroff),
        BOTH(test_truncated),
        BOTH(test_stray_pipe_bytes),
        BOTH(test_die_mid),
        BOTH(test_close_while_asleep),
        cmocka_unit_test(test_shm_wakes_sleeping_peer),
    };
    return cmocka_run_group_tests_name("channel", tests, NULL, NULL);
}

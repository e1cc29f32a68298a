/*
 * QEMU's life against its controller's, end to end (real QEMU, the real
 * plugin, the project's guest), in each mode: plugin (native), qqq through
 * our plugin, and the legacy FIFO mode.
 *
 * - Launchers that fork in front of QEMU (timeout, a shell that runs it in
 *   the background and waits, strace -f) work, and a controller killed
 *   behind one still takes QEMU with it.
 * - A controller that is PID 1 of its PID namespace (a container's
 *   entrypoint) can start QEMU.
 * - A controller SIGKILLed 0, 5, 20, 50 or 100 ms after qsync_start()
 *   takes QEMU with it within 1 s, and leaves nothing in its TMPDIR.
 * - QEMU waiting at a stop ends on SIGTERM.
 *
 * The controllers that die run in a child process forked by the test; the
 * test is a child subreaper, so QEMU is re-parented to it and its end can
 * be seen and reaped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <qsync/qsync.h>

#include "e2e_common.h"

#if !defined(GUEST_ELF) || !defined(PLUGIN_PATH)
#error "GUEST_ELF and PLUGIN_PATH must be defined"
#endif

#define QUANTUM_US 100
#define QUANTA 5

enum mode { M_PLUGIN, M_QQQ, M_FIFO };
static const char *const mode_name[] = {"plugin", "qqq", "fifo"};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct run {
    int stops, failed, exited;
    int first_error;
    uint64_t deadline[QUANTA + 1], virtual_ns[QUANTA + 1];
    int max_quanta;
    qsync_exit ex;
    char tail[4096];
    uv_timer_t liveness;
    int expired;
};

static void on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct run *r = qsync_get_data(ctx);
    if (status) {
        r->failed++;
        if (!r->first_error)
            r->first_error = status;
        return;
    }
    if (r->stops <= QUANTA) {
        r->deadline[r->stops] = stop->deadline_ns;
        r->virtual_ns[r->stops] = stop->virtual_ns;
    }
    r->stops++;
    if (r->stops < r->max_quanta)
        qsync_advance(ctx, QUANTUM_US);
}

static void on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct run *r = qsync_get_data(ctx);
    r->exited++;
    r->ex = *ex;
    snprintf(r->tail, sizeof r->tail, "%s", ex->stderr_tail);
    r->ex.stderr_tail = r->tail;
}

static void on_error(qsync_ctx *ctx, int code, const char *msg)
{
    struct run *r = qsync_get_data(ctx);
    if (!r->first_error)
        r->first_error = code;
    fprintf(stderr, "lifecycle: error %s: %s\n", qsync_err_name(code), msg);
}

/* A context in the given mode on the project's guest, behind the launcher
 * (argv words before QEMU's; NULL for none). */
static qsync_ctx *start(uv_loop_t *loop, struct run *r, enum mode m, const char *const *launcher,
                        const char *append)
{
    qsync_options o;
    e2e_options(&o);
    o.stdout_mode = QSYNC_OUTPUT_DISCARD;
    if (m != M_PLUGIN)
        o.channel = QSYNC_CHANNEL_AUTO;
    if (m == M_QQQ) {
        o.mode = QSYNC_MODE_QQQ;
        o.qqq_use_plugin = 1;
    } else if (m == M_FIFO) {
        o.mode = QSYNC_MODE_FIFO;
        o.fifo_quantum_us = QUANTUM_US;
    }
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
    const char *argv[32];
    size_t n = 0;
    for (size_t i = 0; launcher && launcher[i]; i++)
        argv[n++] = launcher[i];
    const char *qemu[] = {e2e_qemu_binary(), "-M", "pc", "-nodefaults", "-display", "none",
                          "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                          "-kernel", GUEST_ELF, "-append", append, NULL};
    for (size_t i = 0; qemu[i]; i++)
        argv[n++] = qemu[i];
    argv[n] = NULL;
    if (qsync_start(ctx, argv))
        fail_msg("qsync_start: %s", qsync_last_error(ctx));
    return ctx;
}

/* Whether pid has ended (gone, or a zombie nobody has reaped yet). */
static bool pid_gone(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p == NULL || p[1] == '\0' || p[2] == 'Z' || p[2] == 'X';
}

/* Reaps whatever children have ended (the test is a subreaper). */
static void reap_all(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

/* Waits up to ms for pid to end; reaps along the way. */
static bool wait_gone(pid_t pid, uint64_t ms)
{
    uint64_t t0 = now_ms();
    for (;;) {
        reap_all();
        if (pid_gone(pid))
            return true;
        if (now_ms() - t0 >= ms)
            return false;
        usleep(5000);
    }
}

/* The first child of pid whose name starts with "qemu", or 0. */
static pid_t find_qemu_below(pid_t pid, int depth)
{
    char path[96], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *save = NULL;
    for (char *tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
        pid_t c = (pid_t)atoi(tok);
        char cpath[64], comm[64] = "";
        snprintf(cpath, sizeof cpath, "/proc/%d/comm", (int)c);
        FILE *cf = fopen(cpath, "r");
        if (cf) {
            if (!fgets(comm, sizeof comm, cf))
                comm[0] = '\0';
            fclose(cf);
        }
        if (strncmp(comm, "qemu", 4) == 0)
            return c;
        pid_t below = depth > 0 ? find_qemu_below(c, depth - 1) : 0;
        if (below)
            return below;
    }
    return 0;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void list_entries(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -laR '%s' >&2", dir);
    if (system(cmd) != 0)
        print_message("ls failed\n");
}

static int setup(void **state)
{
    (void)state;
    /* Orphans are re-parented to us, so we can see QEMU's end. */
    return prctl(PR_SET_CHILD_SUBREAPER, 1);
}

static int teardown(void **state)
{
    (void)state;
    reap_all();
    return prctl(PR_SET_CHILD_SUBREAPER, 0);
}

/* ---- Launchers ------------------------------------------------------- */

static const char *const launcher_timeout[] = {"timeout", "60", NULL};
/* A shell that forks QEMU and waits for it, as a wrapper script does. */
static const char *const launcher_shell[] = {"sh", "-c", "\"$@\" & wait $!", "sh", NULL};
static const char *const launcher_strace[] = {"strace", "-f", "-o", "/dev/null", NULL};

static bool have(const char *prog)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

/* QUANTA exact quanta behind the launcher, then a clean close. */
static void check_launcher(const char *const *launcher, enum mode m)
{
    if (!have(launcher[0])) {
        print_message("skipped: %s is not installed\n", launcher[0]);
        skip();
    }
    /* On the heap, and left there if a check fails: a loop that still
     * has handles stays registered with libuv, so its memory must stay. */
    struct run *r = calloc(1, sizeof *r);
    uv_loop_t *loop = calloc(1, sizeof *loop);
    assert_non_null(r);
    assert_non_null(loop);
    r->max_quanta = QUANTA;
    uv_loop_init(loop);
    qsync_ctx *ctx = start(loop, r, m, launcher, "compute 1000000000");
    assert_int_equal(qsync_advance(ctx, QUANTUM_US), 0);
    while (r->stops < QUANTA && !r->exited && uv_run(loop, UV_RUN_ONCE)) {
    }
    if (r->stops != QUANTA)
        fail_msg("%s mode behind %s: %d quanta of %d (%s); QEMU said: %s", mode_name[m],
                 launcher[0], r->stops, QUANTA, qsync_last_error(ctx), r->tail);
    for (int i = 0; i < QUANTA; i++) {
        assert_int_equal(r->deadline[i], (uint64_t)(i + 1) * QUANTUM_US * 1000u);
        assert_int_equal(r->virtual_ns[i], r->deadline[i]);
    }
    qsync_close(ctx, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
    assert_int_equal(r->failed, 0);
    free(loop);
    free(r);
}

static void test_launcher_timeout(void **state)
{
    (void)state;
    check_launcher(launcher_timeout, M_PLUGIN);
    check_launcher(launcher_timeout, M_QQQ);
    check_launcher(launcher_timeout, M_FIFO);
}

static void test_launcher_forking_shell(void **state)
{
    (void)state;
    check_launcher(launcher_shell, M_PLUGIN);
    check_launcher(launcher_shell, M_QQQ);
    check_launcher(launcher_shell, M_FIFO);
}

static void test_launcher_strace(void **state)
{
    (void)state;
    check_launcher(launcher_strace, M_PLUGIN);
}

/* ---- Controllers that die ---------------------------------------------- */

/* What a dying controller tells the test: QEMU's (or its launcher's) pid,
 * once it is started or, with after_first, once a quantum has run. */
struct report {
    int pid;
    int stops;
};

/*
 * Forks a controller that starts QEMU in mode m (behind launcher), with
 * TMPDIR set to tmpdir, reports through a pipe, and runs its loop until it
 * is killed. Returns the controller's pid and fills *rep.
 */
static pid_t fork_controller(enum mode m, const char *const *launcher, const char *tmpdir,
                             bool after_first, struct report *rep)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(fds[0]);
        if (setenv("TMPDIR", tmpdir, 1) != 0)
            _exit(3);
        struct run r;
        memset(&r, 0, sizeof r);
        r.max_quanta = 1;
        uv_loop_t loop;
        uv_loop_init(&loop);
        qsync_ctx *ctx = start(&loop, &r, m, launcher, "compute 1000000000");
        struct report me = {qsync_pid(ctx), 0};
        if (!after_first && write(fds[1], &me, sizeof me) != sizeof me)
            _exit(3);
        if (qsync_advance(ctx, QUANTUM_US) != 0)
            _exit(4);
        if (after_first) {
            while (r.stops < 1 && !r.exited && uv_run(&loop, UV_RUN_ONCE)) {
            }
            me.stops = r.stops;
            if (write(fds[1], &me, sizeof me) != sizeof me)
                _exit(3);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        _exit(5);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], rep, sizeof *rep);
    close(fds[0]);
    if (n != (ssize_t)sizeof *rep) {
        int st = 0;
        waitpid(child, &st, 0);
        fail_msg("the controller ended before it reported (status %d)", st);
    }
    return child;
}

static void kill_controller(pid_t child)
{
    assert_int_equal(kill(child, SIGKILL), 0);
    int st;
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(WIFSIGNALED(st));
}

/*
 * SIGKILL of the controller at 0, 5, 20, 50 and 100 ms after
 * qsync_start() returned, in each mode: QEMU is gone within 1 s (the
 * liveness bound of issue 12), and nothing is left in TMPDIR.
 */
static void check_killed_early(enum mode m)
{
    static const int after_ms[] = {0, 5, 20, 50, 100};
    for (size_t i = 0; i < sizeof after_ms / sizeof after_ms[0]; i++) {
        char tmpdir[256];
        snprintf(tmpdir, sizeof tmpdir, "%s/qsync-lifecycle-XXXXXX",
                 getenv("TMPDIR") && getenv("TMPDIR")[0] == '/' ? getenv("TMPDIR") : "/tmp");
        assert_non_null(mkdtemp(tmpdir));
        struct report rep;
        pid_t child = fork_controller(m, NULL, tmpdir, false, &rep);
        pid_t qemu = rep.pid;
        assert_true(qemu > 0);
        if (after_ms[i])
            usleep((useconds_t)after_ms[i] * 1000u);
        uint64_t t0 = now_ms();
        kill_controller(child);
        if (!wait_gone(qemu, 1000)) {
            kill(qemu, SIGKILL);
            wait_gone(qemu, 5000);
            list_entries(tmpdir);
            fail_msg("%s mode, controller killed %d ms after start: QEMU outlived it by "
                     "more than 1 s",
                     mode_name[m], after_ms[i]);
        }
        int left = count_entries(tmpdir);
        if (left != 0) {
            list_entries(tmpdir);
            fail_msg("%s mode, controller killed %d ms after start: %d entries left in TMPDIR",
                     mode_name[m], after_ms[i], left);
        }
        assert_int_equal(rmdir(tmpdir), 0);
        print_message("%s mode, killed at %d ms: QEMU gone %d ms later\n", mode_name[m],
                      after_ms[i], (int)(now_ms() - t0));
    }
}

static void test_killed_early_plugin(void **state)
{
    (void)state;
    check_killed_early(M_PLUGIN);
}

static void test_killed_early_qqq(void **state)
{
    (void)state;
    check_killed_early(M_QQQ);
}

static void test_killed_early_fifo(void **state)
{
    (void)state;
    check_killed_early(M_FIFO);
}

/* A controller killed while QEMU runs behind a forking launcher: QEMU (the
 * launcher's child, not the controller's) is gone within 1 s. */
static void check_killed_behind(const char *const *launcher, enum mode m)
{
    if (!have(launcher[0])) {
        print_message("skipped: %s is not installed\n", launcher[0]);
        skip();
    }
    char tmpdir[256];
    snprintf(tmpdir, sizeof tmpdir, "%s/qsync-lifecycle-XXXXXX",
             getenv("TMPDIR") && getenv("TMPDIR")[0] == '/' ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(tmpdir));
    struct report rep;
    pid_t child = fork_controller(m, launcher, tmpdir, true, &rep);
    if (rep.stops != 1) {
        kill_controller(child);
        fail_msg("%s mode behind %s: QEMU did not run its first quantum", mode_name[m],
                 launcher[0]);
    }
    pid_t qemu = find_qemu_below(rep.pid, 3);
    if (qemu == 0) {
        kill_controller(child);
        fail_msg("no QEMU below the launcher %s (pid %d)", launcher[0], rep.pid);
    }
    uint64_t t0 = now_ms();
    kill_controller(child);
    if (!wait_gone(qemu, 1000)) {
        kill(qemu, SIGKILL);
        wait_gone(qemu, 5000);
        fail_msg("%s mode behind %s: QEMU outlived its controller by more than 1 s",
                 mode_name[m], launcher[0]);
    }
    print_message("%s mode behind %s: QEMU gone %d ms after its controller was killed\n",
                  mode_name[m], launcher[0], (int)(now_ms() - t0));
    wait_gone(rep.pid, 5000); /* the launcher follows its QEMU */
    assert_int_equal(count_entries(tmpdir), 0);
    assert_int_equal(rmdir(tmpdir), 0);
}

static void test_killed_behind_launcher(void **state)
{
    (void)state;
    check_killed_behind(launcher_shell, M_PLUGIN);
    check_killed_behind(launcher_timeout, M_QQQ);
    check_killed_behind(launcher_shell, M_FIFO);
}

/* ---- A controller that is PID 1 --------------------------------------- */

/* The controller is PID 1 of a new PID namespace, as a container's
 * entrypoint without an init is: it starts QEMU and runs exact quanta. */
static void test_pid1_controller(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(fds[0]);
        char verdict = 'n';
        if (unshare(CLONE_NEWPID) != 0) {
            verdict = 's'; /* not permitted here */
            (void)!write(fds[1], &verdict, 1);
            _exit(0);
        }
        pid_t init = fork(); /* PID 1 of the new namespace */
        if (init == 0) {
            if (getpid() != 1)
                _exit(6);
            struct run r;
            memset(&r, 0, sizeof r);
            r.max_quanta = QUANTA;
            uv_loop_t loop;
            uv_loop_init(&loop);
            qsync_ctx *ctx = start(&loop, &r, M_PLUGIN, NULL, "compute 1000000000");
            if (qsync_advance(ctx, QUANTUM_US) != 0)
                _exit(7);
            while (r.stops < QUANTA && !r.exited && uv_run(&loop, UV_RUN_ONCE)) {
            }
            if (r.stops != QUANTA) {
                fprintf(stderr, "lifecycle: PID 1 controller: %d quanta: %s; QEMU said: %s\n",
                        r.stops, qsync_last_error(ctx), r.tail);
                _exit(8);
            }
            for (int i = 0; i < QUANTA; i++)
                if (r.virtual_ns[i] != (uint64_t)(i + 1) * QUANTUM_US * 1000u)
                    _exit(9);
            qsync_close(ctx, NULL);
            uv_run(&loop, UV_RUN_DEFAULT);
            _exit(0);
        }
        int st = 0;
        if (init < 0 || waitpid(init, &st, 0) != init)
            _exit(10);
        verdict = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 'y' : (char)('0' + WEXITSTATUS(st));
        (void)!write(fds[1], &verdict, 1);
        _exit(0);
    }
    close(fds[1]);
    char verdict = 0;
    ssize_t n = read(fds[0], &verdict, 1);
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_int_equal(n, 1);
    if (verdict == 's') {
        print_message("skipped: unshare(CLONE_NEWPID) is not permitted here\n");
        skip();
    }
    if (verdict != 'y')
        fail_msg("the PID 1 controller failed (exit %c)", verdict);
}

/* ---- SIGTERM at a stop ------------------------------------------------- */

static void on_liveness(uv_timer_t *t)
{
    struct run *r = t->data;
    r->expired = 1;
}

/* QEMU waiting at a stop for its controller ends on SIGTERM, with status 0
 * and a message saying why, within the liveness bound. */
static void check_sigterm_at_stop(enum mode m)
{
    /* On the heap, and left there if a check fails: a loop that still
     * has handles stays registered with libuv, so its memory must stay. */
    struct run *r = calloc(1, sizeof *r);
    uv_loop_t *loop = calloc(1, sizeof *loop);
    assert_non_null(r);
    assert_non_null(loop);
    r->max_quanta = 1;
    uv_loop_init(loop);
    qsync_ctx *ctx = start(loop, r, m, NULL, "compute 1000000000");
    assert_int_equal(qsync_advance(ctx, QUANTUM_US), 0);
    while (r->stops < 1 && !r->exited && uv_run(loop, UV_RUN_ONCE)) {
    }
    assert_int_equal(r->stops, 1);
    pid_t qemu = qsync_pid(ctx);
    assert_true(qemu > 0);
    /* Nothing is granted: the guest waits at its stop. */
    assert_int_equal(kill(qemu, SIGTERM), 0);
    uv_timer_init(loop, &r->liveness);
    r->liveness.data = r;
    uv_timer_start(&r->liveness, on_liveness, 5000, 0);
    while (!r->exited && !r->expired && uv_run(loop, UV_RUN_ONCE)) {
    }
    uv_close((uv_handle_t *)&r->liveness, NULL);
    if (!r->exited) {
        kill(qemu, SIGKILL);
        fail_msg("%s mode: QEMU waiting at a stop did not end on SIGTERM within 5 s",
                 mode_name[m]);
    }
    assert_int_equal(r->ex.term_signal, 0);
    assert_int_equal(r->ex.exit_status, 0);
    if (!strstr(r->tail, "terminating on signal 15"))
        fail_msg("%s mode: QEMU's stderr does not say why it ended: %s", mode_name[m], r->tail);
    qsync_close(ctx, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
    free(loop);
    free(r);
}

static void test_sigterm_at_stop(void **state)
{
    (void)state;
    check_sigterm_at_stop(M_PLUGIN);
    check_sigterm_at_stop(M_QQQ);
    check_sigterm_at_stop(M_FIFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_launcher_timeout),
        cmocka_unit_test(test_launcher_forking_shell),
        cmocka_unit_test(test_launcher_strace),
        cmocka_unit_test(test_pid1_controller),
        cmocka_unit_test(test_killed_early_plugin),
        cmocka_unit_test(test_killed_early_qqq),
        cmocka_unit_test(test_killed_early_fifo),
        cmocka_unit_test(test_killed_behind_launcher),
        cmocka_unit_test(test_sigterm_at_stop),
    };
    return cmocka_run_group_tests_name("lifecycle", tests, setup, teardown);
}

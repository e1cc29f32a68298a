/*
 * End to end: the plugin's two other personalities, on real QEMU with the
 * project's guest.
 *
 * - qqq (the adevs -qqq protocol): a controller written only from the adevs -qqq protocol's description: pipe()
 *   twice, fork and exec QEMU, write an int, read an int, close the pipes
 *   to end. The child closes nothing: the adevs -qqq protocol's description only has the parent
 *   close the ends it gives away.
 * - FIFO (the Time Sync Plugin): a controller written only from the Time Sync Plugin's README:
 *   mkfifo, start QEMU with the plugin's Time Sync Plugin options, open the pipes,
 *   read exactly two bytes, write exactly one.
 * - The library in QSYNC_MODE_QQQ (qqq_use_plugin) and QSYNC_MODE_FIFO
 *   drives our plugin to the same stops as in its native mode, and the
 *   guest prints the same bytes.
 *
 * The guest's "time" mode prints its TSC (ns of virtual time since reset)
 * every few microseconds of guest time. Since the serial port is written
 * as the guest executes, the last complete line QEMU wrote before the
 * controller ended it was printed during the last quantum: its tsc is at
 * most the time granted in total, and more than the total minus the last
 * quantum. That is how "the totals add up to the guest's view of time" is
 * checked, from the guest's side.
 *
 * QSYNC_TEST_QEMU picks another QEMU binary; a test of an engine that it
 * cannot run (insn before QEMU 9.1) is then skipped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <qsync/qsync.h>

#include "e2e_common.h"

#if !defined(GUEST_ELF) || !defined(PLUGIN_PATH)
#error "GUEST_ELF and PLUGIN_PATH must be defined"
#endif

#define US 1000ull

/* The time guest: a line every ~2000 instructions of loop plus the print. */
#define TIME_GUEST "time 1000000 delay=1000"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---------------------------------------------------------------------- */
/* A QEMU started by hand, as the protocols' own controllers start it              */

struct qemu {
    pid_t pid;
    char dir[256]; /* private, from mkdtemp */
    char out_path[300], err_path[300];
    int status; /* from waitpid, once reaped */
    bool reaped;
};

/*
 * What a test has made, so that the teardown removes it when the test
 * fails half-way (cmocka leaves the test function by longjmp): private
 * directories and the QEMUs started in them.
 */
#define MAX_LIVE 8
static struct {
    char dir[256];
    pid_t pid;
} live[MAX_LIVE];

static const char *const dir_files[] = {"stdout", "stderr", "HostToGuestPipe",
                                        "GuestToHostPipe"};

static void remove_dir(const char *dir)
{
    char path[400];
    for (size_t i = 0; i < sizeof dir_files / sizeof dir_files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, dir_files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void live_set(const char *dir, pid_t pid)
{
    int free_slot = -1;
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i].dir[0] != '\0' && strcmp(live[i].dir, dir) == 0) {
            live[i].pid = pid;
            return;
        }
        if (live[i].dir[0] == '\0' && free_slot < 0)
            free_slot = i;
    }
    assert_true(free_slot >= 0);
    snprintf(live[free_slot].dir, sizeof live[free_slot].dir, "%s", dir);
    live[free_slot].pid = pid;
}

static void live_forget(const char *dir)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (strcmp(live[i].dir, dir) == 0)
            live[i].dir[0] = '\0';
    }
}

/* Kills what a failed test left running and removes its directories. */
static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i].dir[0] == '\0')
            continue;
        if (live[i].pid > 0 && kill(live[i].pid, SIGKILL) == 0)
            waitpid(live[i].pid, NULL, 0);
        remove_dir(live[i].dir);
        live[i].dir[0] = '\0';
    }
    return 0;
}

static void make_dir(char *dir, size_t len)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] != '/' || strchr(base, ',') != NULL)
        base = "/tmp";
    snprintf(dir, len, "%s/qsync-personalities-XXXXXX", base);
    assert_non_null(mkdtemp(dir));
    live_set(dir, 0);
}

/* Starts QEMU with the project's guest; its stdout and stderr go to files
 * in q->dir. extra: arguments before -append, NULL-terminated. The child
 * keeps every descriptor the caller has (the adevs -qqq protocol's controller closes
 * nothing in the child). */
static void qemu_start(struct qemu *q, const char *const extra[], const char *append)
{
    const char *argv[64];
    size_t n = 0;
    const char *common[] = {e2e_qemu_binary(), "-M", "pc", "-nodefaults", "-display", "none",
                            "-serial", "stdio", "-no-reboot", "-device",
                            "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", GUEST_ELF};
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++)
        argv[n++] = common[i];
    for (size_t i = 0; extra[i] != NULL; i++)
        argv[n++] = extra[i];
    argv[n++] = "-append";
    argv[n++] = append;
    argv[n] = NULL;

    if (q->dir[0] == '\0')
        make_dir(q->dir, sizeof q->dir);
    snprintf(q->out_path, sizeof q->out_path, "%s/stdout", q->dir);
    snprintf(q->err_path, sizeof q->err_path, "%s/stderr", q->dir);
    q->reaped = false;
    fflush(NULL);
    q->pid = fork();
    assert_true(q->pid >= 0);
    if (q->pid == 0) {
        int out = open(q->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(q->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (out < 0 || err < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
            _exit(127);
        close(out);
        close(err);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    live_set(q->dir, q->pid);
}

/* Waits up to ms for QEMU to end; returns whether it did. */
static bool qemu_wait(struct qemu *q, uint64_t ms)
{
    uint64_t t0 = now_ms();
    for (;;) {
        pid_t got = waitpid(q->pid, &q->status, WNOHANG);
        if (got == q->pid) {
            q->reaped = true;
            return true;
        }
        if (now_ms() - t0 >= ms)
            return false;
        usleep(2000);
    }
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* Kills QEMU if still there, removes the files and the directory. */
static void qemu_cleanup(struct qemu *q)
{
    if (q->pid > 0 && !q->reaped) {
        kill(q->pid, SIGKILL);
        waitpid(q->pid, &q->status, 0);
        q->reaped = true;
    }
    if (q->dir[0] != '\0') {
        remove_dir(q->dir);
        live_forget(q->dir);
        q->dir[0] = '\0';
    }
}

/* Under another QEMU (QSYNC_TEST_QEMU, e.g. 7.2), an engine it cannot run
 * (insn needs QEMU 9.1) is refused at install: such a test is skipped. */
static bool refused_here(const char *err)
{
    return getenv("QSYNC_TEST_QEMU") != NULL && strstr(err, "cannot run here") != NULL;
}

/* QEMU ended by itself within 1 s with exit status 0 (the plugin's
 * _exit(0) when its controller went away; not a signal). */
static void assert_ends_cleanly(struct qemu *q, uint64_t t0)
{
    if (!qemu_wait(q, 1000)) {
        char *err = slurp(q->err_path);
        fail_msg("QEMU still runs 1 s after its controller closed the channel; stderr: %s",
                 err);
    }
    uint64_t took = now_ms() - t0;
    if (!WIFEXITED(q->status) || WEXITSTATUS(q->status) != 0) {
        char *err = slurp(q->err_path);
        fail_msg("QEMU ended with status %#x (wanted exit 0); stderr: %s", q->status, err);
    }
    print_message("QEMU gone %" PRIu64 " ms after the close\n", took);
}

/* Install refused: QEMU exits nonzero soon, and stderr says why. */
static void assert_refused(struct qemu *q, const char *text)
{
    if (!qemu_wait(q, 20000))
        fail_msg("QEMU did not refuse to start");
    char *err = slurp(q->err_path);
    assert_true(WIFEXITED(q->status));
    assert_int_not_equal(WEXITSTATUS(q->status), 0);
    if (strstr(err, text) == NULL)
        fail_msg("stderr lacks \"%s\": %s", text, err);
    free(err);
}

/*
 * Walks the guest's complete "time K hpet_ns=H tsc=X" lines (or "tick K
 * ..." in idle mode; a line cut off by QEMU's end is ignored): K counts up
 * from 1, tsc never goes back, hpet_ns (which starts at the guest's start)
 * is at most tsc (which starts at reset), and every tsc is at most max_ns.
 * Returns the last tsc and sets *lines.
 */
static uint64_t guest_view(const char *out, uint64_t max_ns, int *lines)
{
    uint64_t last = 0;
    int k = 0;
    for (const char *p = out; (p = strstr(p, "qsync-guest: ")) != NULL; p++) {
        const char *eol = strchr(p, '\n');
        if (eol == NULL)
            break; /* cut off */
        unsigned long long idx, hpet, tsc;
        if (sscanf(p, "qsync-guest: time %llu hpet_ns=%llu tsc=%llu", &idx, &hpet, &tsc) != 3 &&
            sscanf(p, "qsync-guest: tick %llu hpet_ns=%llu tsc=%llu", &idx, &hpet, &tsc) != 3)
            continue; /* "time start", "mode=", ... */
        k++;
        assert_int_equal(idx, (unsigned long long)k);
        assert_true(tsc >= last);
        assert_true(hpet <= tsc);
        if (tsc > max_ns)
            fail_msg("the guest saw tsc=%llu ns, past the %" PRIu64 " ns granted", tsc, max_ns);
        last = tsc;
    }
    *lines = k;
    return last;
}

/* ---------------------------------------------------------------------- */
/* qqq: a controller from the adevs -qqq protocol's description                                  */

/* The k-th request, in microseconds: varied, 20..199. */
static int request_us(int k)
{
    return 20 + (k * 37) % 180;
}

#define QQQ_REQUESTS 200

struct qqq_session {
    struct qemu q;
    int pipefd1[2]; /* QEMU -> us */
    int pipefd2[2]; /* us -> QEMU */
};

/* Steps 1 to 3 of the adevs -qqq protocol: two pipes, fork QEMU, close the ends it got. */
static void qqq_start(struct qqq_session *s, const char *plugin_extra, const char *icount,
                      const char *append)
{
    char plugin[1024];
    assert_int_equal(pipe(s->pipefd1), 0);
    assert_int_equal(pipe(s->pipefd2), 0);
    snprintf(plugin, sizeof plugin, "%s,proto=qqq,fd_in=%d,fd_out=%d%s%s", PLUGIN_PATH,
             s->pipefd2[0], s->pipefd1[1], plugin_extra[0] ? "," : "", plugin_extra);
    const char *extra[] = {"-icount", icount, "-rtc", "clock=vm", "-plugin", plugin, NULL};
    qemu_start(&s->q, extra, append);
    close(s->pipefd1[1]);
    close(s->pipefd2[0]);
}

static void qqq_close(struct qqq_session *s)
{
    close(s->pipefd2[1]);
    close(s->pipefd1[0]);
}

/*
 * Every answer is at least the request (exactly it with an exact engine),
 * the guest never ran before the first request (it waits 200 ms for it),
 * the guest's own clock agrees with the sum of the answers, and closing
 * the pipes ends QEMU within 1 s.
 */
static void check_qqq_adevs(const char *engine, bool exact)
{
    struct qqq_session s;
    char extra[64] = "";
    memset(&s, 0, sizeof s);
    if (engine != NULL)
        snprintf(extra, sizeof extra, "engine=%s", engine);
    /* The adevs -qqq protocol's recommended time base; the plugin reads the shift. */
    qqq_start(&s, extra, "1,sleep=off", TIME_GUEST);

    usleep(200000);
    int64_t total = 0, requested = 0;
    int last = 0, over = 0;
    for (int k = 0; k < QQQ_REQUESTS; k++) {
        int ta = request_us(k);
        int got = 0;
        ssize_t n = -1;
        if (write(s.pipefd2[1], &ta, sizeof(int)) == (ssize_t)sizeof(int))
            n = read(s.pipefd1[0], &got, sizeof(int));
        if (n != (ssize_t)sizeof(int)) {
            qemu_wait(&s.q, 5000);
            char *err = slurp(s.q.err_path);
            if (refused_here(err)) {
                print_message("skipped: %s", err);
                free(err);
                qqq_close(&s);
                qemu_cleanup(&s.q);
                skip();
            }
            fail_msg("request %d: no answer; QEMU said: %s", k + 1, err);
        }
        if (got < ta)
            fail_msg("request %d: %d us asked, %d us answered", k + 1, ta, got);
        if (exact && got != ta)
            fail_msg("request %d: %d us asked, %d us answered by an exact engine", k + 1, ta,
                     got);
        over += got != ta;
        total += got;
        requested += ta;
        last = ta;
    }
    uint64_t t0 = now_ms();
    qqq_close(&s);
    assert_ends_cleanly(&s.q, t0);

    /* QEMU's clock is below total + 1 us (the answers sum to its floor in
     * microseconds); with an exact engine it is exactly the total. */
    uint64_t max_ns = exact ? (uint64_t)total * US : ((uint64_t)total + 1) * US - 1;
    char *out = slurp(s.q.out_path);
    int lines = 0;
    uint64_t last_tsc = guest_view(out, max_ns, &lines);
    assert_true(lines > 100);
    if (last_tsc <= (uint64_t)(total - last) * US)
        fail_msg("the guest's last tsc %" PRIu64 " is not within the last quantum (%d us) of "
                 "the total %" PRId64 " us",
                 last_tsc, last, total);
    print_message("engine=%s: %d requests, %" PRId64 " us asked, %" PRId64
                  " us answered (%d answers above the request), guest at %" PRIu64 " ns\n",
                  engine ? engine : "auto", QQQ_REQUESTS, requested, total, over, last_tsc);
    free(out);
    qemu_cleanup(&s.q);
}

static void test_qqq_adevs_auto(void **state)
{
    (void)state;
    check_qqq_adevs(NULL, true);
}

static void test_qqq_adevs_insn(void **state)
{
    (void)state;
    check_qqq_adevs("insn", true);
}

static void test_qqq_adevs_block(void **state)
{
    (void)state;
    check_qqq_adevs("block", false);
}

/*
 * Every answer is exactly the request, also where a microsecond is not on
 * an instruction boundary: with shift 5 (32 ns an instruction), and on the
 * idle guest, whose idle warps to its timer's deadlines move the clock's
 * phase off even nanoseconds under the adevs -qqq protocol's shift 1. The guest never
 * sees more than the total plus the one instruction the plugin runs past
 * an unreachable microsecond.
 *
 * With exact false (the block engine) an answer may be above its request,
 * by what the engine ran past the request's end, and at least one must
 * be: the caller picks a shift at which the overshoot crosses microsecond
 * boundaries. Where the blocks fall depends on the guest's command line,
 * which holds the kernel's path (so the build directory's), so the
 * requests go on past the first 100, up to 1000, until one is answered
 * above. The answers then still sum to the guest's clock, rounded down to
 * a microsecond: the guest never sees the total plus 1 us.
 */
static void check_qqq_answers(const char *icount, unsigned shift, const char *engine,
                              const char *append, int scale, bool exact)
{
    struct qqq_session s;
    char extra[64] = "";
    memset(&s, 0, sizeof s);
    if (engine != NULL)
        snprintf(extra, sizeof extra, "engine=%s", engine);
    qqq_start(&s, extra, icount, append);
    int64_t total = 0;
    int over = 0;
    for (int k = 0; k < (exact || over > 0 ? 100 : 1000); k++) {
        int ta = request_us(k) * scale;
        int got = 0;
        ssize_t n = -1;
        if (write(s.pipefd2[1], &ta, sizeof(int)) == (ssize_t)sizeof(int))
            n = read(s.pipefd1[0], &got, sizeof(int));
        if (n != (ssize_t)sizeof(int)) {
            qemu_wait(&s.q, 5000);
            char *err = slurp(s.q.err_path);
            if (refused_here(err)) {
                print_message("skipped: %s", err);
                free(err);
                qqq_close(&s);
                qemu_cleanup(&s.q);
                skip();
            }
            fail_msg("request %d: no answer; QEMU said: %s", k + 1, err);
        }
        if (exact ? got != ta : got < ta)
            fail_msg("request %d: %d us asked, %d us answered", k + 1, ta, got);
        over += got != ta;
        total += got;
    }
    uint64_t t0 = now_ms();
    qqq_close(&s);
    assert_ends_cleanly(&s.q, t0);
    if (!exact && over == 0)
        fail_msg("engine=%s at %s: no answer above its request in 1000", engine, icount);
    char *out = slurp(s.q.out_path);
    int lines = 0;
    uint64_t max_ns = exact ? (uint64_t)total * US + (1u << shift) - 1 : ((uint64_t)total + 1) * US - 1;
    (void)guest_view(out, max_ns, &lines);
    assert_true(lines > 10);
    print_message("engine=%s at %s: %" PRId64 " us answered, %d answers above the request\n",
                  engine, icount, total, over);
    free(out);
    qemu_cleanup(&s.q);
}

/* The firmware alone takes ~180 ms of virtual time at shift 5: requests of
 * 0.6 to 6 ms. */
static void test_qqq_shift5_timer(void **state)
{
    (void)state;
    check_qqq_answers("shift=5,sleep=off", 5, "timer", TIME_GUEST, 30, true);
}

static void test_qqq_shift5_insn(void **state)
{
    (void)state;
    check_qqq_answers("shift=5,sleep=off", 5, "insn", TIME_GUEST, 30, true);
}

/* The block engine at shift 7 (128 ns an instruction): a block that runs
 * past a request's end crosses into the next microsecond, so some answers
 * are above their requests (the adevs -qqq protocol's shift 1 rarely gets there). The
 * firmware takes ~0.73 s of virtual time here: requests of 2.4 to 24 ms. */
static void test_qqq_shift7_block(void **state)
{
    (void)state;
    check_qqq_answers("shift=7,sleep=off", 7, "block", TIME_GUEST, 120, false);
}

#define IDLE_GUEST "idle ticks=100000 period_us=100"

static void test_qqq_idle_timer(void **state)
{
    (void)state;
    check_qqq_answers("1,sleep=off", 1, "timer", IDLE_GUEST, 3, true);
}

static void test_qqq_idle_insn(void **state)
{
    (void)state;
    check_qqq_answers("1,sleep=off", 1, "insn", IDLE_GUEST, 3, true);
}

/* Closing the pipes while QEMU runs a long request ends it within 1 s. */
static void test_qqq_close_mid_quantum(void **state)
{
    (void)state;
    struct qqq_session s;
    memset(&s, 0, sizeof s);
    qqq_start(&s, "", "1,sleep=off", "compute 4000000000");
    int ta = 2000000000; /* 2000 s of virtual time */
    assert_int_equal(write(s.pipefd2[1], &ta, sizeof(int)), sizeof(int));
    usleep(300000);
    assert_true(kill(s.q.pid, 0) == 0);
    uint64_t t0 = now_ms();
    qqq_close(&s);
    assert_ends_cleanly(&s.q, t0);
    char *err = slurp(s.q.err_path);
    assert_non_null(strstr(err, "the controller closed its pipes"));
    free(err);
    qemu_cleanup(&s.q);
}

/* QEMU stopping by itself closes the pipes: the controller reads end of
 * file, and its writes fail with EPIPE (SIGPIPE is ignored here). */
static void test_qqq_qemu_ends(void **state)
{
    (void)state;
    struct qqq_session s;
    memset(&s, 0, sizeof s);
    qqq_start(&s, "", "1,sleep=off", "compute 1000000");
    int answers = 0;
    for (;;) {
        int ta = 1000, got;
        if (write(s.pipefd2[1], &ta, sizeof(int)) != (ssize_t)sizeof(int)) {
            assert_int_equal(errno, EPIPE);
            break;
        }
        ssize_t n = read(s.pipefd1[0], &got, sizeof(int));
        if (n == 0)
            break; /* the pipe closed */
        assert_int_equal(n, sizeof(int));
        assert_int_equal(got, ta);
        answers++;
        assert_true(answers < 100000);
    }
    assert_true(qemu_wait(&s.q, 5000));
    /* The guest's success through isa-debug-exit: status 1. */
    assert_true(WIFEXITED(s.q.status));
    assert_int_equal(WEXITSTATUS(s.q.status), 1);
    char *out = slurp(s.q.out_path);
    assert_non_null(strstr(out, "compute done"));
    free(out);
    assert_true(answers > 5);
    qqq_close(&s);
    qemu_cleanup(&s.q);
}

/* A request that is not a positive int, or half of one, ends QEMU with a
 * message that says so. */
static void check_qqq_bad_request(const void *bytes, size_t len, const char *text)
{
    struct qqq_session s;
    memset(&s, 0, sizeof s);
    qqq_start(&s, "", "1,sleep=off", TIME_GUEST);
    /* One good exchange first: the plugin is then waiting at a stop. */
    int ta = 10, got;
    assert_int_equal(write(s.pipefd2[1], &ta, sizeof ta), sizeof ta);
    assert_int_equal(read(s.pipefd1[0], &got, sizeof got), sizeof got);
    assert_int_equal(got, ta);
    usleep(100000);
    assert_int_equal(write(s.pipefd2[1], bytes, len), (ssize_t)len);
    if (len < sizeof(int))
        close(s.pipefd2[1]);
    assert_true(qemu_wait(&s.q, 5000));
    char *err = slurp(s.q.err_path);
    assert_true(WIFEXITED(s.q.status));
    assert_int_equal(WEXITSTATUS(s.q.status), 1);
    if (strstr(err, text) == NULL)
        fail_msg("stderr lacks \"%s\": %s", text, err);
    free(err);
    assert_int_equal(read(s.pipefd1[0], &got, sizeof got), 0); /* no answer */
    if (len >= sizeof(int))
        close(s.pipefd2[1]);
    close(s.pipefd1[0]);
    qemu_cleanup(&s.q);
}

static void test_qqq_bad_requests(void **state)
{
    (void)state;
    int zero = 0, negative = -5;
    check_qqq_bad_request(&zero, sizeof zero, "asked to advance by 0 us");
    check_qqq_bad_request(&negative, sizeof negative, "asked to advance by -5 us");
    check_qqq_bad_request("ab", 2, "after 2 of the 4 bytes of a request");
}

/* The qqq personality's options are checked at install. */
static void test_qqq_refusals(void **state)
{
    (void)state;
    struct qqq_session s;

    memset(&s, 0, sizeof s);
    qqq_start(&s, "shift=0", "1,sleep=off", TIME_GUEST);
    assert_refused(&s.q, "shift=0 does not match QEMU's -icount shift=1");
    qqq_close(&s);
    qemu_cleanup(&s.q);

    memset(&s, 0, sizeof s);
    qqq_start(&s, "HostToGuestPipe=/nonexistent", "1,sleep=off", TIME_GUEST);
    assert_refused(&s.q, "option HostToGuestPipe belongs to the FIFO personality");
    qqq_close(&s);
    qemu_cleanup(&s.q);

    /* Without -icount: fd_in/fd_out are fine, the time base is not. */
    int in[2], out[2];
    char plugin[512];
    struct qemu q;
    memset(&q, 0, sizeof q);
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    snprintf(plugin, sizeof plugin, "%s,proto=qqq,fd_in=%d,fd_out=%d", PLUGIN_PATH, in[0],
             out[1]);
    const char *extra[] = {"-plugin", plugin, NULL};
    qemu_start(&q, extra, TIME_GUEST);
    assert_refused(&q, "proto=qqq needs a fixed -icount");
    for (int i = 0; i < 2; i++) {
        close(in[i]);
        close(out[i]);
    }
    qemu_cleanup(&q);
}

/* ---------------------------------------------------------------------- */
/* FIFO: a controller from the Time Sync Plugin's README                               */

static void on_alarm(int sig)
{
    (void)sig;
}

/* Opens one end as the README's controller does (a blocking open), but
 * gives up if QEMU ends meanwhile (a refused install never opens its end)
 * or after 20 s, instead of hanging the test. Returns -1 if QEMU ended. */
static int open_blocking(const char *path, int flags, struct qemu *q)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: open() returns EINTR */
    sigaction(SIGALRM, &sa, NULL);
    for (int tries = 0; tries < 20; tries++) {
        alarm(1);
        int fd = open(path, flags);
        int e = errno;
        alarm(0);
        if (fd >= 0)
            return fd;
        if (e != EINTR)
            fail_msg("open %s: %s", path, strerror(e));
        if (qemu_wait(q, 0))
            return -1;
    }
    fail_msg("open %s: QEMU did not open its end in 20 s", path);
    return -1;
}

/* Reads exactly two bytes; a pipe write of two bytes is atomic, and the
 * plugin writes both at once, so one read gets both. */
static void read_two(int fd, const struct qemu *q, int k)
{
    char b[2];
    ssize_t n = read(fd, b, 2);
    if (n != 2)
        fail_msg("quantum %d: read %zd bytes of 2 (%s); QEMU said: %s", k, n,
                 n < 0 ? strerror(errno) : "end of file", slurp(q->err_path));
}

struct fifo_session {
    struct qemu q;
    char h2g[300], g2h[300];
    int w, r; /* our ends: HostToGuest for writing, GuestToHost for reading */
};

/* mkfifo both in a private directory, start QEMU with the Time Sync Plugin's options
 * (and, from the caller, its "-icount 0"). */
static void fifo_start(struct fifo_session *s, const char *plugin_opts, const char *icount,
                       const char *append)
{
    char plugin[1024];
    make_dir(s->q.dir, sizeof s->q.dir);
    snprintf(s->h2g, sizeof s->h2g, "%s/HostToGuestPipe", s->q.dir);
    snprintf(s->g2h, sizeof s->g2h, "%s/GuestToHostPipe", s->q.dir);
    assert_int_equal(mkfifo(s->h2g, 0600), 0);
    assert_int_equal(mkfifo(s->g2h, 0600), 0);
    snprintf(plugin, sizeof plugin, "%s,HostToGuestPipe=%s,GuestToHostPipe=%s%s%s", PLUGIN_PATH,
             s->h2g, s->g2h, plugin_opts[0] ? "," : "", plugin_opts);
    const char *extra[] = {"-icount", icount, "-plugin", plugin, NULL};
    const char *no_icount[] = {"-plugin", plugin, NULL};
    qemu_start(&s->q, icount != NULL ? extra : no_icount, append);
    s->w = s->r = -1;
}

static void fifo_open_ends(struct fifo_session *s, bool reverse_open)
{
    if (reverse_open) {
        s->r = open_blocking(s->g2h, O_RDONLY, &s->q);
        if (s->r >= 0)
            s->w = open_blocking(s->h2g, O_WRONLY, &s->q);
    } else {
        s->w = open_blocking(s->h2g, O_WRONLY, &s->q);
        if (s->w >= 0)
            s->r = open_blocking(s->g2h, O_RDONLY, &s->q);
    }
    if (s->w < 0 || s->r < 0) {
        char *err = slurp(s->q.err_path);
        if (refused_here(err)) {
            print_message("skipped: %s", err);
            free(err);
            qemu_cleanup(&s->q);
            skip();
        }
        fail_msg("QEMU ended before it opened the FIFOs: %s", err);
    }
}

#define FIFO_QUANTUM_US 50
#define FIFO_QUANTA 300

/*
 * Each quantum is two bytes; after k of them the guest is at exactly
 * k * 50 us (its own clock says so), and closing both ends while it
 * waits for its byte ends QEMU within 1 s.
 */
static void check_fifo_readme(const char *engine, const char *time_key, const char *icount,
                              bool reverse_open, bool exact)
{
    struct fifo_session s;
    char opts[128];
    memset(&s, 0, sizeof s);
    snprintf(opts, sizeof opts, "%s=%d%s%s", time_key, FIFO_QUANTUM_US, engine ? ",engine=" : "",
             engine ? engine : "");
    fifo_start(&s, opts, icount, TIME_GUEST);
    fifo_open_ends(&s, reverse_open);
    for (int k = 1; k <= FIFO_QUANTA; k++) {
        read_two(s.r, &s.q, k);
        if (k < FIFO_QUANTA)
            assert_int_equal(write(s.w, "g", 1), 1);
    }
    /* The guest waits for its byte at 300 quanta: the controller leaves. */
    uint64_t t0 = now_ms();
    close(s.w);
    close(s.r);
    assert_ends_cleanly(&s.q, t0);

    uint64_t total_ns = (uint64_t)FIFO_QUANTA * FIFO_QUANTUM_US * US;
    /* The block engine may run past a deadline by part of a block. */
    uint64_t max_ns = exact ? total_ns : total_ns + 1000;
    char *out = slurp(s.q.out_path);
    int lines = 0;
    uint64_t last_tsc = guest_view(out, max_ns, &lines);
    assert_true(lines > 100);
    if (last_tsc <= total_ns - FIFO_QUANTUM_US * US)
        fail_msg("the guest's last tsc %" PRIu64 " is not within the last quantum of %" PRIu64,
                 last_tsc, total_ns);
    char *err = slurp(s.q.err_path);
    assert_non_null(strstr(err, "the controller closed HostToGuestPipe"));
    free(err);
    free(out);
    qemu_cleanup(&s.q);
}

static void test_fifo_readme_auto(void **state)
{
    (void)state;
    /* The README's own command line: -icount 0 (sleep stays on). */
    check_fifo_readme(NULL, "TimeinMicroseconds", "0", false, true);
}

static void test_fifo_readme_insn(void **state)
{
    (void)state;
    check_fifo_readme("insn", "TimeInMicroSeconds", "shift=0,sleep=off", false, true);
}

static void test_fifo_readme_block(void **state)
{
    (void)state;
    check_fifo_readme("block", "TimeInMicroSeconds", "shift=0,sleep=off", false, false);
}

/* A controller that opens GuestToHost first does not deadlock with us. */
static void test_fifo_reverse_open_order(void **state)
{
    (void)state;
    check_fifo_readme(NULL, "TimeInMicroSeconds", "0", true, true);
}

/* The controller leaves while the guest runs its (first, 1 s) quantum:
 * QEMU ends within 1 s, without running free. */
static void test_fifo_close_mid_quantum(void **state)
{
    (void)state;
    struct fifo_session s;
    memset(&s, 0, sizeof s);
    fifo_start(&s, "TimeInMicroSeconds=1000000", "0", "compute 4000000000");
    fifo_open_ends(&s, false);
    usleep(300000);
    assert_true(kill(s.q.pid, 0) == 0);
    uint64_t t0 = now_ms();
    close(s.w);
    close(s.r);
    assert_ends_cleanly(&s.q, t0);
    qemu_cleanup(&s.q);
}

/*
 * done_bytes=1: one byte per quantum, as the Time Sync Plugin wrote, for a
 * controller that reads one byte per stop and would otherwise count each
 * stop twice. Everything the plugin wrote for a stop is waiting when the
 * controller reads it (the plugin then waits for its byte), so one read
 * of up to 16 bytes takes all of it.
 */
static void test_fifo_one_byte_per_quantum(void **state)
{
    (void)state;
    struct fifo_session s;
    memset(&s, 0, sizeof s);
    fifo_start(&s, "TimeinMicroseconds=50,done_bytes=1", "shift=0,sleep=off", TIME_GUEST);
    fifo_open_ends(&s, false);
    for (int k = 1; k <= 20; k++) {
        char b[16];
        ssize_t n = read(s.r, b, sizeof b);
        if (n != 1)
            fail_msg("quantum %d: %zd bytes, not 1; QEMU said: %s", k, n, slurp(s.q.err_path));
        assert_int_equal(write(s.w, "g", 1), 1);
    }
    uint64_t t0 = now_ms();
    close(s.w);
    close(s.r);
    assert_ends_cleanly(&s.q, t0);
    qemu_cleanup(&s.q);
}

/* The FIFO personality's options and time base are checked at install. */
static void check_fifo_refused(const char *opts, const char *icount, const char *text)
{
    struct fifo_session s;
    memset(&s, 0, sizeof s);
    fifo_start(&s, opts, icount, TIME_GUEST);
    assert_refused(&s.q, text);
    qemu_cleanup(&s.q);
}

static void test_fifo_refusals(void **state)
{
    (void)state;
    check_fifo_refused("TimeInMicroSeconds=10,TimeinMicroseconds=10", "0",
                       "TimeInMicroSeconds and TimeinMicroseconds are both given");
    check_fifo_refused("", "0", "missing required option TimeInMicroSeconds=N (or its README "
                                "spelling TimeinMicroseconds=N)");
    check_fifo_refused("TimeInMicroSeconds=0", "0", "TimeInMicroSeconds=0 is not a number");
    check_fifo_refused("TimeInMicroSeconds=10,done_bytes=3", "0",
                       "done_bytes=3: the bytes written after each quantum are 1");
    check_fifo_refused("TimeInMicroSeconds=10,shift=1", "0", "shift=1: the FIFO personality");
    check_fifo_refused("TimeInMicroSeconds=10,fd_in=3", "0",
                       "option fd_in does not apply to the FIFO personality");
    check_fifo_refused("TimeInMicroSeconds=10", "shift=1,sleep=off",
                       "needs -icount shift=0; QEMU runs with -icount shift=1");
    check_fifo_refused("TimeInMicroSeconds=10", NULL,
                       "the FIFO personality (the SIL Kit Time Sync Plugin FIFO protocol, 1 instruction = 1 ns) "
                       "needs -icount shift=0");

    /* A path that is not there, or not a FIFO. */
    struct qemu q;
    char plugin[1024];
    memset(&q, 0, sizeof q);
    make_dir(q.dir, sizeof q.dir);
    snprintf(plugin, sizeof plugin,
             "%s,HostToGuestPipe=%s/HostToGuestPipe,GuestToHostPipe=%s/GuestToHostPipe,"
             "TimeInMicroSeconds=10",
             PLUGIN_PATH, q.dir, q.dir);
    const char *extra[] = {"-icount", "0", "-plugin", plugin, NULL};
    qemu_start(&q, extra, TIME_GUEST);
    assert_refused(&q, "HostToGuestPipe=");
    char *err = slurp(q.err_path);
    assert_non_null(strstr(err, "No such file or directory (the controller creates both FIFOs"));
    free(err);
    char path[400];
    snprintf(path, sizeof path, "%s/HostToGuestPipe", q.dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    qemu_start(&q, extra, TIME_GUEST);
    assert_refused(&q, "/HostToGuestPipe is not a FIFO (make it with mkfifo)");
    qemu_cleanup(&q);
}

/* ---------------------------------------------------------------------- */
/* The library: qqq and FIFO modes reach the native mode's stops           */

struct lib_stop {
    uint64_t deadline, virtual_ns;
    unsigned flags;
};

struct lib_run {
    /* what to run */
    qsync_mode mode;
    unsigned shift;       /* plugin mode */
    const char *engine;   /* NULL: auto */
    uint64_t fifo_quantum_us;
    const uint64_t *deltas_ns;
    int n_deltas;

    /* what happened */
    int closed; /* the context was closed (it is freed once that is done) */
    struct lib_stop stops[512];
    int n_stops;
    int first_error;
    int exited;
    qsync_exit ex;
    char tail[4096];
    char *out; /* what the guest printed */
};

static void lib_on_reached(qsync_ctx *ctx, int status, const qsync_stop *stop)
{
    struct lib_run *r = qsync_get_data(ctx);
    if (status) {
        if (!r->first_error)
            r->first_error = status;
        return;
    }
    assert_true(r->n_stops < (int)(sizeof r->stops / sizeof r->stops[0]));
    struct lib_stop *s = &r->stops[r->n_stops++];
    s->deadline = stop->deadline_ns;
    s->virtual_ns = stop->virtual_ns;
    s->flags = stop->flags;
    if (r->n_stops == r->n_deltas) {
        r->closed = 1;
        qsync_close(ctx, NULL);
        return;
    }
    assert_int_equal(qsync_advance_ns(ctx, r->deltas_ns[r->n_stops]), 0);
}

static void lib_on_exited(qsync_ctx *ctx, const qsync_exit *ex)
{
    struct lib_run *r = qsync_get_data(ctx);
    r->exited++;
    r->ex = *ex;
    snprintf(r->tail, sizeof r->tail, "%s", ex->stderr_tail ? ex->stderr_tail : "");
    r->ex.stderr_tail = r->tail;
}

static void lib_on_error(qsync_ctx *ctx, int code, const char *msg)
{
    struct lib_run *r = qsync_get_data(ctx);
    if (!r->first_error)
        r->first_error = code;
    fprintf(stderr, "personalities: error %s: %s\n", qsync_err_name(code), msg);
}

/*
 * Runs one session. QEMU's stdout (the guest's serial port) goes to a
 * file, never to a pipe: QEMU's serial port holds the guest (which polls
 * its transmitter) while a write to a full pipe would block, and that
 * would make the guest's own clock depend on how fast the host reads.
 */
static void lib_run(struct lib_run *r)
{
    uv_loop_t loop;
    char args[64] = "";
    char dir[256], path[300];
    assert_int_equal(uv_loop_init(&loop), 0);
    make_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/stdout", dir);
    qsync_options o;
    qsync_options_init(&o);
    o.mode = r->mode;
    o.plugin_path = PLUGIN_PATH;
    o.stdout_mode = QSYNC_OUTPUT_INHERIT;
    o.quiet_stderr = 1;
    o.icount_shift = r->mode == QSYNC_MODE_PLUGIN ? r->shift : 0;
    o.qqq_use_plugin = 1;
    o.fifo_quantum_us = r->fifo_quantum_us;
    if (r->engine != NULL) {
        snprintf(args, sizeof args, "engine=%s", r->engine);
        o.plugin_args = args;
    }
    qsync_callbacks cb;
    qsync_callbacks_init(&cb);
    cb.reached = lib_on_reached;
    cb.exited = lib_on_exited;
    cb.error = lib_on_error;
    qsync_ctx *ctx = NULL;
    char err[256];
    if (qsync_ctx_new(&loop, &o, &cb, &ctx, err, sizeof err))
        fail_msg("qsync_ctx_new: %s", err);
    qsync_set_data(ctx, r);
    /* The same machine in every mode: qqq mode would add -rtc clock=vm. */
    const char *argv[] = {e2e_qemu_binary(), "-M", "pc", "-nodefaults", "-display", "none",
                          "-serial", "stdio", "-no-reboot", "-rtc", "clock=vm", "-device",
                          "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", GUEST_ELF,
                          "-append", TIME_GUEST, NULL};

    /* QEMU inherits our stdout: make it the file for the start. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 1), 1);
    int rc = qsync_start(ctx, argv);
    fflush(stdout);
    assert_int_equal(dup2(saved, 1), 1);
    close(saved);
    close(fd);
    if (rc)
        fail_msg("qsync_start: %s", qsync_last_error(ctx));

    assert_int_equal(qsync_advance_ns(ctx, r->deltas_ns[0]), 0);
    while (!r->exited && uv_run(&loop, UV_RUN_ONCE)) {
    }
    if (!r->closed)
        qsync_close(ctx, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    r->out = slurp(path);
    remove_dir(dir);
    live_forget(dir);
    if (r->first_error && refused_here(r->tail)) {
        print_message("skipped: %s", r->tail);
        free(r->out);
        r->out = NULL;
        skip();
    }
    if (r->first_error)
        fail_msg("mode %d: %s; QEMU said: %s", (int)r->mode, qsync_err_name(r->first_error),
                 r->tail);
    assert_int_equal(r->n_stops, r->n_deltas);
    assert_int_equal(r->exited, 1);
    assert_int_equal(r->ex.by_close, 1);
    assert_int_equal(r->ex.term_signal, 0);
    assert_int_equal(r->ex.exit_status, 0);
}

/* Same deadlines, same virtual times, all exact, same guest output. */
static void assert_same_stops(const struct lib_run *native, const struct lib_run *other)
{
    assert_int_equal(native->n_stops, other->n_stops);
    for (int i = 0; i < native->n_stops; i++) {
        const struct lib_stop *a = &native->stops[i], *b = &other->stops[i];
        if (a->deadline != b->deadline || a->virtual_ns != b->virtual_ns ||
            a->virtual_ns != a->deadline || (b->flags & QSYNC_STOP_DEVIATION))
            fail_msg("stop %d: native %" PRIu64 " -> %" PRIu64 ", other %" PRIu64 " -> %" PRIu64
                     " (flags %#x)",
                     i + 1, a->deadline, a->virtual_ns, b->deadline, b->virtual_ns, b->flags);
    }
    int lines = 0;
    (void)guest_view(other->out, other->stops[other->n_stops - 1].deadline, &lines);
    assert_true(lines > 100);
    if (strcmp(native->out, other->out) != 0) {
        size_t i = 0;
        while (native->out[i] == other->out[i])
            i++;
        size_t from = i > 80 ? i - 80 : 0;
        fail_msg("the guest's output differs at byte %zu of %zu/%zu:\nnative: %.160s\nother:  "
                 "%.160s",
                 i, strlen(native->out), strlen(other->out), native->out + from,
                 other->out + from);
    }
}

/* The two runs compared (static: a skipped test leaves nothing behind). */
static struct lib_run native_run, other_run;

static void check_library_qqq(const char *engine)
{
    uint64_t deltas[QQQ_REQUESTS];
    for (int k = 0; k < QQQ_REQUESTS; k++)
        deltas[k] = (uint64_t)request_us(k) * US;
    /* qqq mode runs the adevs -qqq protocol's -icount 1,sleep=off: the native run too. */
    native_run = (struct lib_run){.mode = QSYNC_MODE_PLUGIN, .shift = 1, .engine = engine,
                                  .deltas_ns = deltas, .n_deltas = QQQ_REQUESTS};
    other_run = (struct lib_run){.mode = QSYNC_MODE_QQQ, .engine = engine, .deltas_ns = deltas,
                                 .n_deltas = QQQ_REQUESTS};
    lib_run(&native_run);
    lib_run(&other_run);
    assert_same_stops(&native_run, &other_run);
    free(native_run.out);
    free(other_run.out);
}

static void test_library_qqq_auto(void **state)
{
    (void)state;
    check_library_qqq(NULL);
}

static void test_library_qqq_insn(void **state)
{
    (void)state;
    check_library_qqq("insn");
}

#define LIB_FIFO_ADVANCES 150

static void check_library_fifo(const char *engine)
{
    uint64_t deltas[LIB_FIFO_ADVANCES];
    /* 1, 2 or 3 quanta of 50 us at a time. */
    for (int k = 0; k < LIB_FIFO_ADVANCES; k++)
        deltas[k] = (uint64_t)(1 + k % 3) * FIFO_QUANTUM_US * US;
    native_run = (struct lib_run){.mode = QSYNC_MODE_PLUGIN, .shift = 0, .engine = engine,
                                  .deltas_ns = deltas, .n_deltas = LIB_FIFO_ADVANCES};
    other_run = (struct lib_run){.mode = QSYNC_MODE_FIFO, .engine = engine,
                                 .fifo_quantum_us = FIFO_QUANTUM_US, .deltas_ns = deltas,
                                 .n_deltas = LIB_FIFO_ADVANCES};
    lib_run(&native_run);
    lib_run(&other_run);
    /* FIFO mode's virtual_ns is the deadline by construction; the guest's
     * output is what proves the stops the same. */
    assert_same_stops(&native_run, &other_run);
    free(native_run.out);
    free(other_run.out);
}

static void test_library_fifo_auto(void **state)
{
    (void)state;
    check_library_fifo(NULL);
}

static void test_library_fifo_insn(void **state)
{
    (void)state;
    check_library_fifo("insn");
}

int main(void)
{
    /* The adevs -qqq protocol: "causes SIGPIPE to be generated"; a controller handles it. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_qqq_adevs_auto, teardown),
        cmocka_unit_test_teardown(test_qqq_adevs_insn, teardown),
        cmocka_unit_test_teardown(test_qqq_adevs_block, teardown),
        cmocka_unit_test_teardown(test_qqq_shift5_timer, teardown),
        cmocka_unit_test_teardown(test_qqq_shift5_insn, teardown),
        cmocka_unit_test_teardown(test_qqq_shift7_block, teardown),
        cmocka_unit_test_teardown(test_qqq_idle_timer, teardown),
        cmocka_unit_test_teardown(test_qqq_idle_insn, teardown),
        cmocka_unit_test_teardown(test_qqq_close_mid_quantum, teardown),
        cmocka_unit_test_teardown(test_qqq_qemu_ends, teardown),
        cmocka_unit_test_teardown(test_qqq_bad_requests, teardown),
        cmocka_unit_test_teardown(test_qqq_refusals, teardown),
        cmocka_unit_test_teardown(test_fifo_readme_auto, teardown),
        cmocka_unit_test_teardown(test_fifo_readme_insn, teardown),
        cmocka_unit_test_teardown(test_fifo_readme_block, teardown),
        cmocka_unit_test_teardown(test_fifo_reverse_open_order, teardown),
        cmocka_unit_test_teardown(test_fifo_close_mid_quantum, teardown),
        cmocka_unit_test_teardown(test_fifo_one_byte_per_quantum, teardown),
        cmocka_unit_test_teardown(test_fifo_refusals, teardown),
        cmocka_unit_test_teardown(test_library_qqq_auto, teardown),
        cmocka_unit_test_teardown(test_library_qqq_insn, teardown),
        cmocka_unit_test_teardown(test_library_fifo_auto, teardown),
        cmocka_unit_test_teardown(test_library_fifo_insn, teardown),
    };
    return cmocka_run_group_tests_name("e2e.personalities", tests, NULL, NULL);
}

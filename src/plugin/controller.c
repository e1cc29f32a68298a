/*
 * See controller.h.
 */
#include "controller.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime.h"
#include "log.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* How many ancestors are looked at before giving up (a chain of launchers
 * is short; this only bounds a pathological one). */
#define MAX_ANCESTORS 64

static int controller_pid;
static int pidfd = -1;

int qsync__controller_pidfd(void)
{
    return pidfd;
}

int qsync__controller_pid(void)
{
    return controller_pid;
}

/* Reads the parent and the name of pid from /proc. Returns 0 or -1. */
static int proc_parent(int pid, int *ppid, char *comm, size_t len)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* "pid (comm) state ppid ...": comm may hold anything, ')' included. */
    char *open_paren = strchr(buf, '(');
    char *close_paren = strrchr(buf, ')');
    if (open_paren == NULL || close_paren == NULL || close_paren < open_paren)
        return -1;
    char state;
    if (sscanf(close_paren + 1, " %c %d", &state, ppid) != 2)
        return -1;
    size_t clen = (size_t)(close_paren - open_paren - 1);
    if (clen >= len)
        clen = len - 1;
    memcpy(comm, open_paren + 1, clen);
    comm[clen] = '\0';
    return 0;
}

/* Whether pid is alive (as far as this PID namespace can see). */
static bool alive(int pid)
{
    return kill(pid, 0) == 0 || errno == EPERM;
}

/* Whether the controller has exited (a zombie included). */
static bool gone(int pid)
{
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    if (pidfd >= 0)
        return poll(&p, 1, 0) == 1;
    return !alive(pid);
}

int qsync__controller_check(int pid, bool cleanup)
{
    controller_pid = pid;
    /* Opened before the ancestry is checked: if pid is an ancestor after
     * this open, the pidfd is that ancestor (a pid freed and reused in
     * between could not be QEMU's ancestor). */
    if (pid != 1) {
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0 && errno == ESRCH) {
            int ppid = getppid();
            char comm[64] = "?";
            int unused;
            (void)proc_parent(ppid, &unused, comm, sizeof comm);
            qsync__end_qemu(1, "the controller (pid %d) is gone: QEMU's parent is now pid %d "
                               "(%s); ending QEMU",
                            pid, ppid, comm);
        }
        if (pidfd >= 0)
            (void)fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    }
    /* The parent's death kills QEMU even if every other watch were
     * somehow missed. Armed before the checks: a parent that died before
     * is seen as a different parent below. */
    if (getppid() == pid && (!cleanup || pidfd < 0))
        prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (pid == 1)
        return 0; /* PID 1 of this namespace: its death takes QEMU along */

    /* Is pid QEMU's parent or an ancestor? */
    char seen[1024] = "";
    size_t used = 0;
    int cur = getppid();
    for (int depth = 0; depth < MAX_ANCESTORS && cur > 0; depth++) {
        if (cur == pid) {
            if (gone(pid))
                qsync__end_qemu(1, "the controller (pid %d) is gone; ending QEMU", pid);
            return 0;
        }
        int ppid = 0;
        char comm[64];
        if (proc_parent(cur, &ppid, comm, sizeof comm) < 0) {
            if (depth == 0 && pidfd < 0) {
                /* No /proc and no pidfd: the parent test of old. */
                qsync__end_qemu(1, "the controller (pid %d) is gone: QEMU's parent is pid %d; "
                                   "ending QEMU",
                                pid, cur);
            }
            snprintf(comm, sizeof comm, "?");
            ppid = 0;
        }
        int n = snprintf(seen + used, sizeof seen - used, "%s%d (%s)",
                         depth == 0 ? "" : ", then ", cur, comm);
        if (n > 0 && (size_t)n < sizeof seen - used)
            used += (size_t)n;
        if (cur == 1)
            break;
        cur = ppid;
    }
    if (gone(pid))
        qsync__end_qemu(1, "the controller (pid %d) is gone: QEMU's parent is now %s; ending "
                           "QEMU",
                        pid, seen);
    char comm[64] = "?";
    int unused;
    (void)proc_parent(pid, &unused, comm, sizeof comm);
    qsync__log("parent=%d: the controller (pid %d, %s) is neither QEMU's parent nor one of "
               "its ancestors, so its death could not be seen: QEMU's parent is %s (a "
               "launcher between them may fork, but must not leave QEMU behind or put it "
               "in another PID namespace)",
               pid, pid, comm, seen);
    return -1;
}

/* ---- Termination signals ------------------------------------------------ */

static const int term_signals[] = {SIGTERM, SIGINT, SIGHUP};
#define N_TERM (sizeof term_signals / sizeof term_signals[0])

static int sig_pipe[2] = {-1, -1};
static struct sigaction qemu_action[N_TERM];

int qsync__term_signals_init(void)
{
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        qsync__log("cannot make the signal pipe: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int qsync__term_signals_fd(void)
{
    return sig_pipe[0];
}

/* Async-signal-safe: one write, then QEMU's own handler. */
static void on_term_signal(int sig, siginfo_t *info, void *uc)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t rc = write(sig_pipe[1], &b, 1); /* a full pipe already says it */
    (void)rc;
    for (size_t i = 0; i < N_TERM; i++) {
        if (term_signals[i] != sig)
            continue;
        const struct sigaction *old = &qemu_action[i];
        if (old->sa_flags & SA_SIGINFO)
            old->sa_sigaction(sig, info, uc);
        else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN)
            old->sa_handler(sig);
    }
    errno = saved;
}

void qsync__term_signals_catch(void)
{
    static bool caught; /* only the thread in a stop calls this */
    if (caught || sig_pipe[1] < 0)
        return;
    caught = true;
    for (size_t i = 0; i < N_TERM; i++) {
        struct sigaction cur;
        if (sigaction(term_signals[i], NULL, &cur) < 0)
            continue;
        /* The default action ends QEMU by itself; an ignored signal was
         * meant to be ignored. */
        if (!(cur.sa_flags & SA_SIGINFO) &&
            (cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN))
            continue;
        qemu_action[i] = cur;
        struct sigaction mine = cur;
        mine.sa_sigaction = on_term_signal;
        mine.sa_flags = cur.sa_flags | SA_SIGINFO;
        (void)sigaction(term_signals[i], &mine, NULL);
    }
}

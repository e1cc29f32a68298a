/*
 * The plugin's end of the shared-memory transport (transport.h;
 * src/proto/shm.h, docs/protocol.md "Shared-memory transport"). When the
 * controller passes shm=N,efd=N, the native personality moves its frames
 * here:
 *
 * - receiving: a stop polls the ring to the plugin for spin_ns, then
 *   sleeps on its futex; the watcher thread wakes it when the controller
 *   hangs up (shm_hangup);
 * - sending: a frame goes into the ring to the library, and the eventfd
 *   is written only when the library has said it is waiting.
 *
 * fd_in and fd_out stay open: fd_in's hang-up is still how the plugin
 * learns that the controller is gone, and fd_out's end of file is how the
 * controller learns that QEMU is.
 *
 * Who touches what:
 * - the ring to the plugin is read only by the thread in a stop (as fd_in
 *   is on pipes); the watcher only wakes its futex;
 * - the ring to the library is written under the native personality's
 *   send lock;
 * - hung_up is set once, by the watcher.
 */
#include "transport.h"

#include <stdbool.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "shm.h"

/* How long a stop polls for the next grant before it sleeps, by default
 * (the spinner then adapts it: shm.h). A grant follows a report by the
 * controller's own round trip: a few microseconds when its thread is
 * awake (it polls too), one cross-core wake-up (tens of microseconds on a
 * VM) when it was asleep in its loop. docs/benchmarks.md has the
 * measurements behind the figure. */
#define DEFAULT_SPIN_NS 50000ull

/* A sleeping stop wakes this often even unwoken, to look at hung_up: a
 * backstop only, since the watcher wakes it at once. */
#define SLICE_NS 100000000ull

static void *region;
static size_t region_size;
static struct qsync__shm_ring to_plugin, to_library;
static int efd = -1;
static struct qsync__shm_spinner spinner; /* the thread in a stop */
static atomic_bool hung_up;

/* Whether this process may run on one CPU only: spinning would then take
 * the very CPU the controller needs to answer. */
static bool one_cpu(void)
{
    cpu_set_t set;
    if (sysconf(_SC_NPROCESSORS_ONLN) == 1)
        return true;
    return sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1;
}

static int check_eventfd(int fd)
{
    char path[64], target[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0) {
        qsync__log("efd=%d: %s", fd, strerror(errno));
        return -1;
    }
    target[n] = '\0';
    if (strcmp(target, "anon_inode:[eventfd]") != 0) {
        qsync__log("efd=%d is not an eventfd (it is %s)", fd, target);
        return -1;
    }
    return 0;
}

static int shm_open_region(int shm_fd, int ev_fd, long long spin)
{
    struct stat st;
    char why[160];

    int fl = fcntl(shm_fd, F_GETFD);
    if (fl < 0) {
        qsync__log("shm=%d is not an open file descriptor in QEMU (did the controller "
                   "pass it down?)", shm_fd);
        return -1;
    }
    if (fstat(shm_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        qsync__log("shm=%d is not a shared-memory file (a memfd)", shm_fd);
        return -1;
    }
    if ((uint64_t)st.st_size != qsync__shm_region_size()) {
        qsync__log("shm=%d holds %lld bytes; this plugin's layout needs %zu (a library of "
                   "another version?)", shm_fd, (long long)st.st_size,
                   qsync__shm_region_size());
        return -1;
    }
    int efl = fcntl(ev_fd, F_GETFD);
    if (efl < 0) {
        qsync__log("efd=%d is not an open file descriptor in QEMU (did the controller "
                   "pass it down?)", ev_fd);
        return -1;
    }
    if (check_eventfd(ev_fd) < 0)
        return -1;
    size_t size = (size_t)st.st_size;
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
    if (base == MAP_FAILED) {
        qsync__log("shm=%d: cannot map it: %s", shm_fd, strerror(errno));
        return -1;
    }
    if (qsync__shm_check(base, size, why, sizeof why) < 0) {
        qsync__log("shm=%d: %s", shm_fd, why);
        munmap(base, size);
        return -1;
    }
    /* The mapping is all we need: nothing QEMU starts may inherit the
     * region, nor keep the controller's eventfd. The eventfd's file flags
     * are shared with the controller's loop, so they are left alone (it is
     * non-blocking, and a write to it never blocks anyway). */
    close(shm_fd);
    if (fcntl(ev_fd, F_SETFD, efl | FD_CLOEXEC) < 0) {
        qsync__log("efd=%d: cannot set its flags: %s", ev_fd, strerror(errno));
        munmap(base, size);
        return -1;
    }
    qsync__shm_ring(base, QSYNC__SHM_TO_PLUGIN, &to_plugin);
    qsync__shm_ring(base, QSYNC__SHM_TO_LIBRARY, &to_library);
    efd = ev_fd;
    qsync__shm_spinner_init(&spinner, spin >= 0 ? (uint64_t)spin
                                      : one_cpu() ? 0
                                                  : DEFAULT_SPIN_NS);
    region_size = size;
    region = base;
    return 0;
}

static void kick_library(void)
{
    uint64_t one = 1;
    /* EAGAIN would mean a counter near 2^64: the library is awake anyway. */
    while (write(efd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

static int shm_send(const void *buf, size_t len)
{
    int rc;
    /* A ring of 64 KiB with one grant in flight never fills; should the
     * controller stop reading, wait for room until it hangs up. */
    while ((rc = qsync__shm_write(&to_library, buf, len)) == -EAGAIN) {
        if (atomic_load(&hung_up))
            return -EPIPE;
        const struct timespec pause_ts = {0, 50000};
        nanosleep(&pause_ts, NULL);
    }
    if (rc < 0)
        return rc;
    if (rc == 1)
        kick_library();
    return 0;
}

static int gone(void *arg)
{
    (void)arg;
    return atomic_load(&hung_up) ? -EPIPE : 0;
}

static int shm_read(void *buf, size_t len, size_t *got)
{
    *got = 0;
    int rc = qsync__shm_wait(&to_plugin, (uint32_t)len, &spinner, SLICE_NS, gone, NULL);
    if (rc)
        return rc;
    *got = qsync__shm_read(&to_plugin, buf, len);
    return 0;
}

static void shm_hangup(void)
{
    if (region == NULL)
        return;
    atomic_store(&hung_up, true);
    (void)qsync__shm_futex_wake(&to_plugin);
}

static const struct qsync__transport shm_transport = {
    .name = "shm",
    .send = shm_send,
    .read = shm_read,
    .hangup = shm_hangup,
};

const struct qsync__transport *qsync__transport_shm_open(int shm_fd, int ev_fd, long long spin)
{
    return shm_open_region(shm_fd, ev_fd, spin) == 0 ? &shm_transport : NULL;
}

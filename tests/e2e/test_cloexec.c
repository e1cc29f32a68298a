/*
 * Inside QEMU, the plugin marks the descriptors it inherited from the
 * controller close-on-exec (and closes the shared memory's once mapped),
 * so that nothing QEMU starts (a network script, a bridge helper) holds
 * the controller's channel. Read from /proc/PID/fdinfo of the real QEMU.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "e2e_common.h"

/* The flags field of /proc/pid/fdinfo/fd, or -1 when fd is not open. */
static long fd_flags(int pid, int fd)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", pid, fd);
    FILE *f = fopen(path, "re");
    long flags = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "flags: %lo", &flags) == 1)
            break;
    fclose(f);
    return flags;
}

/* What /proc/PID/fd/FD points to ("" when it is not open). */
static void fd_link(int pid, int fd, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", pid, fd);
    ssize_t n = readlink(path, out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
}

/*
 * Whether QEMU may hold fd across exec without it being a leak of ours:
 * QEMU's own /dev/null, or a descriptor this test process inherited from
 * whoever started it (a CI harness's pipe), which any child inherits.
 */
static int not_ours(int qemu_pid, int fd)
{
    char theirs[256], mine[256];
    fd_link(qemu_pid, fd, theirs, sizeof theirs);
    if (strcmp(theirs, "/dev/null") == 0)
        return 1;
    fd_link(getpid(), fd, mine, sizeof mine);
    long fl = fd_flags(getpid(), fd);
    return mine[0] && strcmp(mine, theirs) == 0 && fl >= 0 && !(fl & O_CLOEXEC);
}

static void check(qsync_channel channel)
{
    qsync_options o;
    e2e_options(&o);
    o.channel = channel;
    qsync_ctx *ctx = NULL;
    char err[256] = "";
    int rc = qsync_ctx_new(NULL, &o, NULL, &ctx, err, sizeof err);
    if (rc)
        fail_msg("qsync_ctx_new: %s", err);
    const char *argv[] = {e2e_qemu_binary(), "-M", "pc", "-nodefaults", "-display", "none",
                          "-kernel", GUEST_ELF, "-append", "compute 100000000", NULL};
    assert_int_equal(qsync_start(ctx, argv), 0);
    /* After the first stop the plugin is installed and its channel open. */
    rc = qsync_advance_wait_ns(ctx, 1000, NULL);
    if (rc)
        fail_msg("advance: %s", qsync_last_error(ctx));
    int pid = qsync_pid(ctx);
    assert_true(pid > 0);
    long in = fd_flags(pid, 3), out = fd_flags(pid, 4), efd = fd_flags(pid, 6);
    char shm_link[256];
    fd_link(pid, 5, shm_link, sizeof shm_link);
    /* Every descriptor past stdio that the library or the plugin gave
     * QEMU or opened in it (the plugin's pidfd and watcher included) is
     * close-on-exec. */
    char leaks[512] = "";
    for (int fd = 3; fd < 1024; fd++) {
        long fl = fd_flags(pid, fd);
        if (fl >= 0 && !(fl & O_CLOEXEC) && !not_ours(pid, fd))
            snprintf(leaks + strlen(leaks), sizeof leaks - strlen(leaks), " %d", fd);
    }
    assert_int_equal(qsync_close_wait(ctx), 0);

    if (leaks[0])
        fail_msg("descriptors inherited across exec in QEMU:%s", leaks);
    assert_true(in >= 0 && (in & O_CLOEXEC));
    assert_true(out >= 0 && (out & O_CLOEXEC));
    if (channel == QSYNC_CHANNEL_SHM) {
        /* The region is mapped, then its descriptor closed (fd 5 may have
         * been reused since, by something else). */
        assert_null(strstr(shm_link, "memfd:"));
        assert_true(efd >= 0 && (efd & O_CLOEXEC));
    }
}

static void test_channel_fds_are_cloexec_in_qemu_pipe(void **state)
{
    (void)state;
    check(QSYNC_CHANNEL_PIPE);
}

static void test_channel_fds_are_cloexec_in_qemu_shm(void **state)
{
    (void)state;
    check(QSYNC_CHANNEL_SHM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_fds_are_cloexec_in_qemu_pipe),
        cmocka_unit_test(test_channel_fds_are_cloexec_in_qemu_shm),
    };
    return cmocka_run_group_tests_name("cloexec", tests, NULL, NULL);
}

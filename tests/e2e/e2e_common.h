/*
 * What the end-to-end suites share: which QEMU and which channel they run
 * on, chosen by ctest through the environment. Include after cmocka.h.
 */
#ifndef QSYNC_TESTS_E2E_COMMON_H
#define QSYNC_TESTS_E2E_COMMON_H

#include <qsync/qsync.h>

/* $QSYNC_TEST_QEMU (a QEMU 7.2 wrapper, for the .qemu72 entries), or
 * qemu-system-x86_64 from PATH. */
const char *e2e_qemu_binary(void);

/* Options for a suite's context: the defaults, the plugin of this build,
 * the guest's output to the output callback, QEMU's stderr kept quiet,
 * and the channel under test. */
void e2e_options(qsync_options *o);

/* $QSYNC_TEST_CHANNEL: pipe or shm; unset or auto is the library's
 * default. Anything else fails the test. */
qsync_channel e2e_test_channel(void);

/* Fails the test unless QEMU's command line names the shared memory
 * exactly when the channel under test is shm (nothing to check on auto). */
void e2e_check_channel(qsync_ctx *ctx);

/* Appends n bytes of a guest's output to text (cap bytes, *len used) and
 * keeps it NUL-terminated; fails the test when it does not fit. */
void e2e_append(char *text, size_t cap, size_t *len, const char *data, size_t n);

#endif

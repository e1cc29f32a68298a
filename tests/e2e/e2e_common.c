/* See e2e_common.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_common.h"

#ifndef PLUGIN_PATH
#error "PLUGIN_PATH must be defined"
#endif

const char *e2e_qemu_binary(void)
{
    const char *q = getenv("QSYNC_TEST_QEMU");
    return q && q[0] ? q : "qemu-system-x86_64";
}

void e2e_options(qsync_options *o)
{
    qsync_options_init(o);
    o->plugin_path = PLUGIN_PATH;
    o->stdout_mode = QSYNC_OUTPUT_CALLBACK;
    o->quiet_stderr = 1;
    o->channel = e2e_test_channel();
}

qsync_channel e2e_test_channel(void)
{
    const char *c = getenv("QSYNC_TEST_CHANNEL");
    if (!c || !c[0] || strcmp(c, "auto") == 0)
        return QSYNC_CHANNEL_AUTO;
    if (strcmp(c, "pipe") == 0)
        return QSYNC_CHANNEL_PIPE;
    if (strcmp(c, "shm") == 0)
        return QSYNC_CHANNEL_SHM;
    fail_msg("QSYNC_TEST_CHANNEL=%s: not auto, pipe or shm", c);
    return QSYNC_CHANNEL_AUTO;
}

void e2e_check_channel(qsync_ctx *ctx)
{
    qsync_channel want = e2e_test_channel();
    if (want == QSYNC_CHANNEL_AUTO)
        return;
    char path[64], buf[16384];
    snprintf(path, sizeof path, "/proc/%d/cmdline", qsync_pid(ctx));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    buf[n] = '\0';
    int shm = strstr(buf, ",shm=5,efd=6,") != NULL;
    if (shm != (want == QSYNC_CHANNEL_SHM))
        fail_msg("QEMU runs on %s, not on the channel asked for: %s", shm ? "shm" : "pipes", buf);
}

void e2e_append(char *text, size_t cap, size_t *len, const char *data, size_t n)
{
    assert_true(*len + n < cap);
    memcpy(text + *len, data, n);
    *len += n;
    text[*len] = '\0';
}

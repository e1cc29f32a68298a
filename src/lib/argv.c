/*
 * QEMU's command line: the user's argv, checked, followed by what the mode
 * adds (struct qsync__launch). Nothing here goes through a shell: the
 * arguments reach execve() as they are.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int qsync__argv_check(qsync_ctx *ctx, const char *const argv[], size_t *argc)
{
    if (!argv || !argv[0] || !argv[0][0])
        return qsync__set_error(ctx, QSYNC_EARG, "argv: no QEMU binary given");
    size_t n = 0;
    for (; argv[n]; n++) {
        if (n > 4096)
            return qsync__set_error(ctx, QSYNC_EARG, "argv: more than 4096 arguments");
    }
    *argc = n;
    return 0;
}

int qsync__argv_has(const char *const argv[], const char *opt)
{
    for (size_t i = 0; argv[i]; i++) {
        /* QEMU accepts both -opt and --opt. */
        const char *a = argv[i];
        if (a[0] == '-' && a[1] == '-')
            a++;
        if (strcmp(a, opt) == 0)
            return 1;
    }
    return 0;
}

/* Appends a QEMU option value with commas doubled, as QEMU's parser wants. */
static int append_escaped(char *dst, size_t cap, size_t *len, const char *s)
{
    for (; *s; s++) {
        size_t need = (*s == ',') ? 2 : 1;
        if (*len + need >= cap)
            return -1;
        dst[(*len)++] = *s;
        if (*s == ',')
            dst[(*len)++] = ',';
    }
    dst[*len] = '\0';
    return 0;
}

int qsync__launch_add(struct qsync__launch *l, const char *fmt, ...)
{
    if (l->n_args + 1 >= sizeof l->args / sizeof l->args[0] ||
        l->n_store >= sizeof l->store / sizeof l->store[0])
        return -1;
    char *buf = l->store[l->n_store];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof l->store[0], fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof l->store[0])
        return -1;
    l->n_store++;
    l->args[l->n_args++] = buf;
    return 0;
}

int qsync__launch_plugin(qsync_ctx *ctx, struct qsync__launch *l, const char *rest)
{
    char buf[sizeof l->store[0]];
    size_t len = 0;
    if (append_escaped(buf, sizeof buf, &len, ctx->plugin_path) ||
        qsync__launch_add(l, "-plugin") ||
        qsync__launch_add(l, "file=%s%s%s%s%s", buf, rest[0] ? "," : "", rest,
                          ctx->plugin_args ? "," : "", ctx->plugin_args ? ctx->plugin_args : ""))
        return qsync__set_error(ctx, QSYNC_EARG, "plugin path or plugin_args too long");
    return 0;
}

int qsync__launch_new(qsync_ctx *ctx, struct qsync__launch **out)
{
    struct qsync__launch *l = calloc(1, sizeof *l);
    *out = l;
    if (!l)
        return qsync__nomem(ctx, "qsync_start");
    l->child_in = l->child_out = l->our_in = l->our_out = -1;
    l->child_shm = l->child_efd = -1;
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

void qsync__launch_free(struct qsync__launch *l)
{
    if (!l)
        return;
    close_fd(&l->child_in);
    close_fd(&l->child_out);
    close_fd(&l->child_shm); /* child_efd is the transport's, kept */
    close_fd(&l->our_in);
    close_fd(&l->our_out);
    free(l);
}

int qsync__launch_argv(qsync_ctx *ctx, const char *const argv[], size_t argc,
                       const struct qsync__launch *l, const char ***out)
{
    const char **args = calloc(argc + l->n_args + 1, sizeof *args);
    *out = args;
    if (!args)
        return qsync__nomem(ctx, "qsync_start");
    for (size_t i = 0; i < argc; i++)
        args[i] = argv[i];
    for (size_t i = 0; i < l->n_args; i++)
        args[argc + i] = l->args[i];
    return 0;
}

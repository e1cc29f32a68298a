/* Option defaults and validation, and where the plugin module is found. */
#include "internal.h"

#include <dlfcn.h>
#include <sched.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef QSYNC_PLUGIN_INSTALLED_PATH
#define QSYNC_PLUGIN_INSTALLED_PATH "/usr/local/lib/qsync/libqsync-plugin.so"
#endif

#define QSYNC_PLUGIN_FILE "libqsync-plugin.so"

void qsync_options_init(qsync_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->size = sizeof *opts;
    opts->icount_shift = 0;
    opts->stdout_mode = QSYNC_OUTPUT_INHERIT;
    opts->stderr_tail_bytes = 4096;
    opts->advance_timeout_ms = 0;
    opts->start_timeout_ms = 30000;
    opts->kill_grace_ms = 1000;
    opts->pin_cpu = -1;
    opts->channel = QSYNC_CHANNEL_AUTO;
    opts->shm_poll_ns = 50000;
}

void qsync_callbacks_init(qsync_callbacks *cbs)
{
    memset(cbs, 0, sizeof *cbs);
    cbs->size = sizeof *cbs;
}

static int opt_error(char *errbuf, size_t len, const char *fmt, const char *what, long long v)
{
    if (errbuf && len)
        snprintf(errbuf, len, fmt, what, v);
    return QSYNC_EARG;
}

/* The keys the library itself passes to the plugin. */
static const char *const reserved_keys[] = {"fd_in",           "fd_out",          "shift",
                                            "proto",           "HostToGuestPipe", "GuestToHostPipe",
                                            "TimeInMicroSeconds", "TimeinMicroseconds",
                                            "quantum_ns",      "parent",
                                            "shm",             "efd",
                                            "done_bytes",      "remove_fifos",
                                            "next"};

static int check_plugin_args(const char *args, char *errbuf, size_t len)
{
    const char *p = args;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        for (size_t i = 0; i < sizeof reserved_keys / sizeof reserved_keys[0]; i++) {
            size_t kl = strlen(reserved_keys[i]);
            if (n > kl && strncmp(p, reserved_keys[i], kl) == 0 && p[kl] == '=') {
                if (errbuf && len)
                    snprintf(errbuf, len,
                             "plugin_args: '%s' is set by the library itself; "
                             "use qsync_options instead",
                             reserved_keys[i]);
                return QSYNC_EARG;
            }
        }
        if (n == 0 || !memchr(p, '=', n)) {
            if (errbuf && len)
                snprintf(errbuf, len, "plugin_args: '%.*s' is not key=value", (int)n, p);
            return QSYNC_EARG;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

/* The numbers and enums; QSYNC_EARG with errbuf naming the first bad one. */
static int check_values(const qsync_options *o, char *errbuf, size_t len)
{
    if (o->icount_shift > 10)
        return opt_error(errbuf, len, "%s: %lld is out of range 0..10", "icount_shift",
                         (long long)o->icount_shift);
    if (o->stdout_mode != QSYNC_OUTPUT_INHERIT && o->stdout_mode != QSYNC_OUTPUT_CALLBACK &&
        o->stdout_mode != QSYNC_OUTPUT_DISCARD && o->stdout_mode != QSYNC_OUTPUT_LINES)
        return opt_error(errbuf, len, "%s: %lld is not a qsync_output_mode", "stdout_mode",
                         (long long)o->stdout_mode);
    if (o->stderr_tail_bytes == 0 || o->stderr_tail_bytes > (1u << 24))
        return opt_error(errbuf, len, "%s: %lld is out of range 1..16777216",
                         "stderr_tail_bytes", (long long)o->stderr_tail_bytes);
    if (o->mode != QSYNC_MODE_PLUGIN && o->mode != QSYNC_MODE_QQQ && o->mode != QSYNC_MODE_FIFO)
        return opt_error(errbuf, len, "%s: %lld is not a qsync_mode", "mode", (long long)o->mode);
    if (o->mode == QSYNC_MODE_FIFO && (o->fifo_quantum_us == 0 || o->fifo_quantum_us > 1000000000u))
        return opt_error(errbuf, len, "%s: %lld is out of range 1..1000000000 (FIFO mode needs it)",
                         "fifo_quantum_us", (long long)o->fifo_quantum_us);
    /* The plugin's own limit for quantum_ns= (src/plugin/options.c): refused
     * here, naming the option the user set, not there, naming one the
     * library made up. */
    if (o->quantum_hint_ns > QSYNC_QUANTUM_HINT_MAX_NS)
        return opt_error(errbuf, len,
                         "%s: %lld ns is out of range 0..1000000000000000 (10^15 ns, the "
                         "plugin's limit; 0: no hint)",
                         "quantum_hint_ns", (long long)o->quantum_hint_ns);
    if (o->pin_cpu < -1 || o->pin_cpu >= CPU_SETSIZE)
        return opt_error(errbuf, len, "%s: %lld is not -1 or a CPU number", "pin_cpu",
                         (long long)o->pin_cpu);
    return 0;
}

/* The channel, and what it needs of the mode. */
static int check_channel(const qsync_options *o, char *errbuf, size_t len)
{
    if (o->channel != QSYNC_CHANNEL_AUTO && o->channel != QSYNC_CHANNEL_PIPE &&
        o->channel != QSYNC_CHANNEL_SHM)
        return opt_error(errbuf, len, "%s: %lld is not a qsync_channel", "channel",
                         (long long)o->channel);
    if (o->channel == QSYNC_CHANNEL_SHM && o->mode != QSYNC_MODE_PLUGIN) {
        if (errbuf && len)
            snprintf(errbuf, len,
                     "channel: QSYNC_CHANNEL_SHM needs mode QSYNC_MODE_PLUGIN (the %s protocol "
                     "runs on its own %s); use QSYNC_CHANNEL_AUTO or _PIPE",
                     o->mode == QSYNC_MODE_QQQ ? "qqq" : "legacy FIFO",
                     o->mode == QSYNC_MODE_QQQ ? "pipes" : "named FIFOs");
        return QSYNC_EARG;
    }
    if (o->shm_poll_ns > 1000000000u)
        return opt_error(errbuf, len, "%s: %lld is out of range 0..1000000000 (ns)",
                         "shm_poll_ns", (long long)o->shm_poll_ns);
    if (o->async_poll_ns > 1000000000u)
        return opt_error(errbuf, len, "%s: %lld is out of range 0..1000000000 (ns)",
                         "async_poll_ns", (long long)o->async_poll_ns);
    if (o->next_event != 0 && o->next_event != 1)
        return opt_error(errbuf, len, "%s: %lld is not 0 or 1", "next_event",
                         (long long)o->next_event);
    if (o->next_event && o->mode != QSYNC_MODE_PLUGIN) {
        if (errbuf && len)
            snprintf(errbuf, len,
                     "next_event needs mode QSYNC_MODE_PLUGIN (the %s protocol cannot say "
                     "whether the guest is halted)",
                     o->mode == QSYNC_MODE_QQQ ? "qqq" : "legacy FIFO");
        return QSYNC_EARG;
    }
    return 0;
}

/* The FIFO plugin's option names, checked and copied to ctx->fifo_keys. */
static int copy_fifo_keys(qsync_ctx *ctx, const qsync_options *o, char *errbuf, size_t len)
{
    static const char *const fifo_key_names[3] = {"fifo_h2g_key", "fifo_g2h_key",
                                                  "fifo_quantum_key"};
    static const char *const fifo_key_defaults[3] = {"HostToGuestPipe", "GuestToHostPipe",
                                                     "TimeinMicroseconds"};
    const char *fifo_keys[3] = {o->fifo_h2g_key, o->fifo_g2h_key, o->fifo_quantum_key};
    for (int i = 0; i < 3; i++) {
        const char *k = fifo_keys[i] ? fifo_keys[i] : fifo_key_defaults[i];
        size_t n = strlen(k);
        if (n == 0 || n >= sizeof ctx->fifo_keys[i] || strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                             "abcdefghijklmnopqrstuvwxyz"
                                                             "0123456789_") != n) {
            if (errbuf && len)
                snprintf(errbuf, len,
                         "%s: '%.80s' is not an option name (1 to %zu letters, digits or '_')",
                         fifo_key_names[i], k, sizeof ctx->fifo_keys[i] - 1);
            return QSYNC_EARG;
        }
        memcpy(ctx->fifo_keys[i], k, n + 1);
    }
    if (o->fifo_done_bytes < 0 || o->fifo_done_bytes > 2)
        return opt_error(errbuf, len, "%s: %lld is not 0 (the plugin's default), 1 or 2",
                         "fifo_done_bytes", (long long)o->fifo_done_bytes);
    return 0;
}

/* The plugin's path and arguments, checked and copied. */
static int copy_plugin_strings(qsync_ctx *ctx, const qsync_options *o, char *errbuf, size_t len)
{
    if (o->plugin_path && o->plugin_path[0] == '\0') {
        if (errbuf && len)
            snprintf(errbuf, len, "plugin_path: the path is empty");
        return QSYNC_EARG;
    }
    if (o->plugin_args) {
        int rc = check_plugin_args(o->plugin_args, errbuf, len);
        if (rc)
            return rc;
    }
    ctx->plugin_path = o->plugin_path ? strdup(o->plugin_path) : NULL;
    ctx->plugin_args = o->plugin_args && o->plugin_args[0] ? strdup(o->plugin_args) : NULL;
    if ((o->plugin_path && !ctx->plugin_path) ||
        (o->plugin_args && o->plugin_args[0] && !ctx->plugin_args)) {
        if (errbuf && len)
            snprintf(errbuf, len, "qsync_ctx_new: out of memory");
        return -ENOMEM;
    }
    return 0;
}

int qsync__options_copy(qsync_ctx *ctx, const qsync_options *in, char *errbuf, size_t len)
{
    qsync_options o;
    qsync_options_init(&o);
    if (in) {
        if (in->size == 0 || in->size > sizeof o)
            return opt_error(errbuf, len, "%s: size %lld is not from qsync_options_init()",
                             "qsync_options", (long long)in->size);
        memcpy(&o, in, in->size);
        o.size = sizeof o;
    }
    int rc = check_values(&o, errbuf, len);
    if (rc == 0)
        rc = check_channel(&o, errbuf, len);
    if (rc == 0)
        rc = copy_fifo_keys(ctx, &o, errbuf, len);
    if (rc == 0 && o.start_timeout_ms == 0)
        rc = opt_error(errbuf, len, "%s: %lld; it must be positive", "start_timeout_ms", 0);
    if (rc == 0)
        rc = copy_plugin_strings(ctx, &o, errbuf, len);
    if (rc)
        return rc;
    o.plugin_path = NULL;
    o.plugin_args = NULL;
    o.fifo_h2g_key = o.fifo_g2h_key = o.fifo_quantum_key = NULL; /* in ctx->fifo_keys */
    ctx->opts = o;
    return 0;
}

static int readable(const char *path)
{
    return access(path, R_OK) == 0;
}

/* The places looked at, for the message when none has the module. */
struct looked {
    char text[1024];
    size_t len;
};

static void note_looked(struct looked *lk, const char *path)
{
    if (lk->len + 1 >= sizeof lk->text)
        return;
    int n = snprintf(lk->text + lk->len, sizeof lk->text - lk->len, "%s%s", lk->len ? ", " : "",
                     path);
    if (n > 0)
        lk->len += (size_t)n < sizeof lk->text - lk->len ? (size_t)n : sizeof lk->text - lk->len - 1;
}

/* Replaces ctx->plugin_path with the candidate dir/rel if it exists. */
static int try_candidate(qsync_ctx *ctx, struct looked *lk, const char *dir, const char *rel)
{
    char buf[PATH_MAX];
    int n = snprintf(buf, sizeof buf, "%s/%s", dir, rel);
    if (n <= 0 || (size_t)n >= sizeof buf)
        return 0;
    if (!readable(buf)) {
        note_looked(lk, buf);
        return 0;
    }
    ctx->plugin_path = strdup(buf);
    return ctx->plugin_path ? 1 : qsync__nomem(ctx, "qsync_start");
}

/* DIR/qsync/, DIR/../lib/qsync/ and DIR/../LIBDIR/qsync/, where LIBDIR is
 * the library directory the install uses relative to its prefix
 * (lib64, lib/x86_64-linux-gnu...): the build tree and every installed
 * tree, wherever its prefix was moved, have one of these shapes. */
static int try_dir_of(qsync_ctx *ctx, struct looked *lk, const char *file)
{
    char dir[PATH_MAX];
    size_t n = strlen(file);
    if (n >= sizeof dir)
        return 0;
    memcpy(dir, file, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    int rc = try_candidate(ctx, lk, dir, "qsync/" QSYNC_PLUGIN_FILE);
    if (rc == 0)
        rc = try_candidate(ctx, lk, dir, "../lib/qsync/" QSYNC_PLUGIN_FILE);
    if (rc == 0 && strcmp(QSYNC_INSTALL_LIBDIR, "lib") != 0)
        rc = try_candidate(ctx, lk, dir, "../" QSYNC_INSTALL_LIBDIR "/qsync/" QSYNC_PLUGIN_FILE);
    return rc;
}

/*
 * Order: the option, $QSYNC_PLUGIN, then for the shared library's directory
 * and then the executable's (a static link) the shapes of try_dir_of(), and
 * last the path the install was configured with.
 */
int qsync__find_plugin(qsync_ctx *ctx)
{
    if (ctx->plugin_path) {
        if (!readable(ctx->plugin_path))
            return qsync__set_error(ctx, QSYNC_ENOPLUGIN, "plugin_path '%s': %s",
                                    ctx->plugin_path, strerror(errno));
        return 0;
    }
    const char *env = getenv("QSYNC_PLUGIN");
    if (env && env[0]) {
        if (!readable(env))
            return qsync__set_error(ctx, QSYNC_ENOPLUGIN, "$QSYNC_PLUGIN '%s': %s", env,
                                    strerror(errno));
        ctx->plugin_path = strdup(env);
        return ctx->plugin_path ? 0 : qsync__nomem(ctx, "qsync_start");
    }
    struct looked lk;
    lk.len = 0;
    lk.text[0] = '\0';
    Dl_info info;
    int rc = 0;
    if (dladdr((void *)&qsync_version, &info) && info.dli_fname)
        rc = try_dir_of(ctx, &lk, info.dli_fname);
    if (rc == 0) {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = '\0';
            rc = try_dir_of(ctx, &lk, exe);
        }
    }
    if (rc == 0) {
        if (readable(QSYNC_PLUGIN_INSTALLED_PATH)) {
            ctx->plugin_path = strdup(QSYNC_PLUGIN_INSTALLED_PATH);
            rc = ctx->plugin_path ? 1 : qsync__nomem(ctx, "qsync_start");
        } else {
            note_looked(&lk, QSYNC_PLUGIN_INSTALLED_PATH);
        }
    }
    if (rc < 0)
        return rc;
    if (rc == 0)
        return qsync__set_error(ctx, QSYNC_ENOPLUGIN,
                                "cannot find " QSYNC_PLUGIN_FILE
                                ": set qsync_options.plugin_path or $QSYNC_PLUGIN to it "
                                "(pkg-config --variable=plugindir qsync, or ${QSYNC_PLUGIN} "
                                "from find_package(qsync), says where it is installed); "
                                "looked at %s",
                                lk.text);
    return 0;
}

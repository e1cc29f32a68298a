/* Error codes, their text, and the context's last-error detail. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *qsync_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define QSYNC_ERR_TEXT_(name, value, text) \
    case value:                             \
        return text;
        QSYNC_ERRNO_MAP(QSYNC_ERR_TEXT_)
#undef QSYNC_ERR_TEXT_
    default:
        break;
    }
    if (code < 0 && code > -4096) {
        /* strerrordesc_np is thread-safe and returns static text. */
        const char *s = strerrordesc_np(-code);
        if (s)
            return s;
    }
    return "unknown error";
}

const char *qsync_err_name(int code)
{
    switch (code) {
    case 0:
        return "OK";
#define QSYNC_ERR_NAME_(name, value, text) \
    case value:                             \
        return "QSYNC_E" #name;
        QSYNC_ERRNO_MAP(QSYNC_ERR_NAME_)
#undef QSYNC_ERR_NAME_
    default:
        break;
    }
    if (code < 0 && code > -4096) {
        const char *s = strerrorname_np(-code);
        if (s)
            return s;
    }
    return "UNKNOWN";
}

int qsync_is_fatal(int code)
{
    /* The codes that only a broken context gives. Anything else, a -errno
     * included, may or may not have broken it: qsync_failed() knows. */
    switch (code) {
    case QSYNC_EPROTO:
    case QSYNC_EVERSION:
    case QSYNC_EEXITED:
    case QSYNC_ETIMEDOUT:
    case QSYNC_EPLUGIN:
    case QSYNC_ECANCELED:
        return 1;
    default:
        return 0;
    }
}

int qsync__set_error(qsync_ctx *ctx, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
    va_end(ap);
    ctx->errcode = code;
    return code;
}

int qsync__nomem(qsync_ctx *ctx, const char *what)
{
    return qsync__set_error(ctx, -ENOMEM, "%s: out of memory", what);
}

const char *qsync_last_error(const qsync_ctx *ctx)
{
    return ctx ? ctx->errmsg : "no context";
}

unsigned qsync_version(void)
{
    return QSYNC_VERSION_HEX;
}

#define QSYNC_STR2_(x) #x
#define QSYNC_STR_(x) QSYNC_STR2_(x)

const char *qsync_version_string(void)
{
    return QSYNC_STR_(QSYNC_VERSION_MAJOR) "." QSYNC_STR_(QSYNC_VERSION_MINOR) "." QSYNC_STR_(
        QSYNC_VERSION_PATCH);
}

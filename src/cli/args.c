/* See args.h. */
#include "args.h"

#include <stdio.h>

#include "duration.h"

int qsync__cli_usage_verror(const char *program, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", program);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    return QSYNC_CLI_EXIT_USAGE;
}

int qsync__cli_positive_duration(const char *program, const char *flag, const char *arg,
                                 uint64_t *out)
{
    char err[256] = "";
    if (qsync__parse_duration(arg, out, err, sizeof err) || *out == 0) {
        fprintf(stderr, "%s: --%s '%s': %s\n", program, flag, arg,
                *out == 0 && !err[0] ? "must be positive" : err);
        return QSYNC_CLI_EXIT_USAGE;
    }
    return 0;
}

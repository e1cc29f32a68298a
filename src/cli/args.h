/* Argument checks shared by the command-line programs: one wording for a
 * usage error, "PROGRAM: ...", and exit status 2. */
#ifndef QSYNC_CLI_ARGS_H
#define QSYNC_CLI_ARGS_H

#include <stdarg.h>
#include <stdint.h>

/* The exit status of a usage error. */
#define QSYNC_CLI_EXIT_USAGE 2

/* Prints "PROGRAM: <message>\n" on stderr; returns QSYNC_CLI_EXIT_USAGE. */
int qsync__cli_usage_verror(const char *program, const char *fmt, va_list ap);

/* A duration flag: positive, in the units qsync__parse_duration takes.
 * Returns 0, or prints "PROGRAM: --FLAG 'ARG': why" and returns
 * QSYNC_CLI_EXIT_USAGE. */
int qsync__cli_positive_duration(const char *program, const char *flag, const char *arg,
                                 uint64_t *out);

#endif

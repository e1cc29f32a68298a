/* See log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fdio.h"

void qsync__log(const char *fmt, ...)
{
    static const char prefix[] = "qsync-plugin: ";
    char line[1024];
    size_t n = sizeof prefix - 1;
    va_list ap;

    memcpy(line, prefix, n);
    va_start(ap, fmt);
    int len = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (len < 0)
        len = 0;
    n += (size_t)len < sizeof line - n - 1 ? (size_t)len : sizeof line - n - 2;
    line[n++] = '\n';
    (void)qsync__write_all(STDERR_FILENO, line, n);
}

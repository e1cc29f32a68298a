/* Durations on qsync-step's command line: "10us", "1.5ms", "2s", "500ns". */
#ifndef QSYNC_CLI_DURATION_H
#define QSYNC_CLI_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Parses text into nanoseconds. A unit is required (ns, us, ms, s); the
 * number may have a fraction if the result is a whole number of ns.
 * Returns 0, or -1 with a reason in err. */
int qsync__parse_duration(const char *text, uint64_t *ns, char *err, size_t errlen);

#endif

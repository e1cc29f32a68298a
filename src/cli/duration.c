/* See duration.h. */
#include "duration.h"

#include <stdio.h>
#include <string.h>

static int fail(char *err, size_t len, const char *why)
{
    if (err && len)
        snprintf(err, len, "%s", why);
    return -1;
}

int qsync__parse_duration(const char *text, uint64_t *ns, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        uint64_t scale;
    } units[] = {{"ns", 1}, {"us", 1000}, {"ms", 1000000}, {"s", 1000000000}};
    const char *p = text;
    uint64_t whole = 0, frac = 0, frac_scale = 1;
    int digits = 0;

    if (err && errlen)
        err[0] = '\0';
    while (*p >= '0' && *p <= '9') {
        uint64_t digit = (uint64_t)(*p++ - '0');
        if (whole > (UINT64_MAX - digit) / 10)
            return fail(err, errlen, "number too large");
        whole = whole * 10 + digit;
        digits++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (frac_scale >= 1000000000)
                return fail(err, errlen, "too many decimals");
            frac = frac * 10 + (uint64_t)(*p++ - '0');
            frac_scale *= 10;
            digits++;
        }
    }
    if (digits == 0)
        return fail(err, errlen, "expected a number with a unit, e.g. 10us or 1ms");
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(p, units[i].name) != 0)
            continue;
        uint64_t scale = units[i].scale;
        if (whole > UINT64_MAX / scale)
            return fail(err, errlen, "duration too large");
        uint64_t v = whole * scale;
        /* frac < frac_scale <= 1e9 and scale <= 1e9: the product fits. */
        if ((frac * scale) % frac_scale != 0)
            return fail(err, errlen, "not a whole number of nanoseconds");
        uint64_t f = frac * scale / frac_scale;
        if (v > UINT64_MAX - f)
            return fail(err, errlen, "duration too large");
        *ns = v + f;
        return 0;
    }
    if (*p == '\0')
        return fail(err, errlen, "missing unit (ns, us, ms or s)");
    return fail(err, errlen, "unknown unit (use ns, us, ms or s)");
}

/* Option parsing; see options.h for the grammar. */
#include "options.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "log.h"

/* Parses a plain decimal number (digits only: no sign, no spaces, no
 * base prefix) that is at most max. */
static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static int parse_fd(const char *key, const char *value, int *out)
{
    unsigned long v;
    if (!parse_uint(value, INT_MAX, &v)) {
        qsync__log("%s=%s is not a file descriptor number", key, value);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_shift(const char *value, unsigned *out)
{
    unsigned long v;
    if (strcmp(value, "auto") == 0) {
        qsync__log("shift=auto is not supported: lockstep needs a fixed -icount shift "
                   "(shift=0..%u)", QSYNC_MAX_SHIFT);
        return -1;
    }
    if (!parse_uint(value, ULONG_MAX, &v) || v > QSYNC_MAX_SHIFT) {
        qsync__log("shift=%s is not a number from 0 to %u", value, QSYNC_MAX_SHIFT);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int parse_engine(const char *value, enum qsync__engine_choice *out)
{
    static const struct {
        const char *name;
        enum qsync__engine_choice id;
    } names[] = {
        {"auto", QSYNC_ENGINE_AUTO},
        {"insn", QSYNC_ENGINE_INSN},
        {"timer", QSYNC_ENGINE_TIMER},
        {"block", QSYNC_ENGINE_BLOCK},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(value, names[i].name) == 0) {
            *out = names[i].id;
            return 0;
        }
    }
    qsync__log("engine=%s is not an engine (known: auto, insn, timer, block)", value);
    return -1;
}

static int parse_quantum(const char *value, unsigned long long *out)
{
    unsigned long v;
    if (!parse_uint(value, 1000000000000000ul, &v) || v == 0) {
        qsync__log("quantum_ns=%s is not a number of ns from 1 to 10^15", value);
        return -1;
    }
    *out = v;
    return 0;
}

int qsync__options_parse(int argc, char **argv, struct qsync__options *opt)
{
    enum { K_FD_IN, K_FD_OUT, K_SHIFT, K_ENGINE, K_QUANTUM, K_COUNT };
    static const char *const keys[K_COUNT] = {"fd_in", "fd_out", "shift", "engine",
                                              "quantum_ns"};
    bool seen[K_COUNT] = {false};

    opt->fd_in = -1;
    opt->fd_out = -1;
    opt->shift = 0;
    opt->engine = QSYNC_ENGINE_AUTO;
    opt->quantum_ns = 0;

    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strchr(arg, '=');
        if (eq == NULL || eq == arg) {
            qsync__log("option '%s' is not key=value "
                       "(keys: fd_in, fd_out, shift, engine, quantum_ns)", arg);
            return -1;
        }
        size_t klen = (size_t)(eq - arg);
        const char *value = eq + 1;
        int k;
        for (k = 0; k < K_COUNT; k++) {
            if (strlen(keys[k]) == klen && memcmp(keys[k], arg, klen) == 0)
                break;
        }
        if (k == K_COUNT) {
            qsync__log("unknown option '%.*s' (keys: fd_in, fd_out, shift, engine, quantum_ns)",
                       (int)klen, arg);
            return -1;
        }
        if (seen[k]) {
            qsync__log("option %s is given twice", keys[k]);
            return -1;
        }
        seen[k] = true;

        int rc = 0;
        switch (k) {
        case K_FD_IN: rc = parse_fd("fd_in", value, &opt->fd_in); break;
        case K_FD_OUT: rc = parse_fd("fd_out", value, &opt->fd_out); break;
        case K_SHIFT: rc = parse_shift(value, &opt->shift); break;
        case K_ENGINE: rc = parse_engine(value, &opt->engine); break;
        case K_QUANTUM: rc = parse_quantum(value, &opt->quantum_ns); break;
        }
        if (rc < 0)
            return -1;
    }

    if (!seen[K_FD_IN]) {
        qsync__log("missing required option fd_in=N (the fd to read grants from)");
        return -1;
    }
    if (!seen[K_FD_OUT]) {
        qsync__log("missing required option fd_out=N (the fd to write reports to)");
        return -1;
    }
    return 0;
}

/* Option parsing; see options.h for the grammar. */
#include "options.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "log.h"

/* Parses a plain decimal number (digits only: no sign, no spaces, no
 * base prefix) that is at most max. */
static bool parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    unsigned long long v = 0;
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
    unsigned long long v;
    if (!parse_uint(value, INT_MAX, &v)) {
        qsync__log("%s=%s is not a file descriptor number", key, value);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_shift(const char *value, unsigned *out)
{
    unsigned long long v;
    if (strcmp(value, "auto") == 0) {
        qsync__log("shift=auto is not supported: lockstep needs a fixed -icount shift "
                   "(shift=0..%u)", QSYNC_MAX_SHIFT);
        return -1;
    }
    if (!parse_uint(value, ULLONG_MAX, &v) || v > QSYNC_MAX_SHIFT) {
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
        {"auto", QSYNC__ENGINE_AUTO},
        {"insn", QSYNC__ENGINE_INSN},
        {"timer", QSYNC__ENGINE_TIMER},
        {"block", QSYNC__ENGINE_BLOCK},
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
    unsigned long long v;
    if (!parse_uint(value, 1000000000000000ull, &v) || v == 0) {
        qsync__log("quantum_ns=%s is not a number of ns from 1 to 10^15", value);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_proto(const char *value, enum qsync__proto *out)
{
    if (strcmp(value, "native") == 0)
        *out = QSYNC_PROTO_NATIVE;
    else if (strcmp(value, "qqq") == 0)
        *out = QSYNC_PROTO_QQQ;
    else if (strcmp(value, "fifo") == 0)
        *out = QSYNC_PROTO_FIFO;
    else {
        qsync__log("proto=%s is not a protocol (known: native, qqq, fifo)", value);
        return -1;
    }
    return 0;
}

static int parse_path(const char *key, const char *value, const char **out)
{
    if (value[0] == '\0') {
        qsync__log("%s= needs the path of a FIFO", key);
        return -1;
    }
    *out = value;
    return 0;
}

static int parse_time_us(const char *key, const char *value, unsigned long long *out)
{
    unsigned long long v;
    if (!parse_uint(value, QSYNC__FIFO_MAX_QUANTUM_US, &v) || v == 0) {
        qsync__log("%s=%s is not a number of microseconds from 1 to 10^9", key, value);
        return -1;
    }
    *out = v;
    return 0;
}

enum key {
    K_PROTO,
    K_FD_IN,
    K_FD_OUT,
    K_SHIFT,
    K_ENGINE,
    K_QUANTUM,
    K_PARENT,
    K_SHM,
    K_EFD,
    K_SPIN,
    K_NICS,
    K_H2G,
    K_G2H,
    K_TIME,        /* The Time Sync Plugin's code */
    K_TIME_README, /* The Time Sync Plugin's README */
    K_DONE,
    K_REMOVE,
    K_NEXT,
    K_COUNT
};

/* Which personalities take a key. */
#define P_NATIVE (1u << QSYNC_PROTO_NATIVE)
#define P_QQQ (1u << QSYNC_PROTO_QQQ)
#define P_FIFO (1u << QSYNC_PROTO_FIFO)
#define P_ALL (P_NATIVE | P_QQQ | P_FIFO)

/* The value parsers of the table below: key=v into opt; 0, or -1 after a
 * message that names the key. */
static int set_none(const char *k, const char *v, struct qsync__options *o)
{
    (void)k, (void)v, (void)o; /* proto= is read first, to check the rest */
    return 0;
}

static int set_fd_in(const char *k, const char *v, struct qsync__options *o)
{
    return parse_fd(k, v, &o->fd_in);
}

static int set_fd_out(const char *k, const char *v, struct qsync__options *o)
{
    return parse_fd(k, v, &o->fd_out);
}

static int set_shm(const char *k, const char *v, struct qsync__options *o)
{
    return parse_fd(k, v, &o->shm_fd);
}

static int set_efd(const char *k, const char *v, struct qsync__options *o)
{
    return parse_fd(k, v, &o->efd);
}

static int set_shift(const char *k, const char *v, struct qsync__options *o)
{
    (void)k;
    o->shift_given = true;
    return parse_shift(v, &o->shift);
}

static int set_engine(const char *k, const char *v, struct qsync__options *o)
{
    (void)k;
    return parse_engine(v, &o->engine);
}

static int set_quantum(const char *k, const char *v, struct qsync__options *o)
{
    (void)k;
    return parse_quantum(v, &o->quantum_ns);
}

static int set_parent(const char *k, const char *v, struct qsync__options *o)
{
    unsigned long long pid;
    (void)k;
    /* 1 too: a controller that is PID 1 of its container. */
    if (!parse_uint(v, 4194304ull, &pid) || pid < 1) {
        qsync__log("parent=%s is not a process id (1 to 4194304)", v);
        return -1;
    }
    o->parent = (int)pid;
    return 0;
}

static int set_spin(const char *k, const char *v, struct qsync__options *o)
{
    unsigned long long ns;
    (void)k;
    if (!parse_uint(v, 1000000000ull, &ns)) {
        qsync__log("spin_ns=%s is not a number of ns from 0 to 10^9", v);
        return -1;
    }
    o->spin_ns = (long long)ns;
    return 0;
}

static int set_nics(const char *k, const char *v, struct qsync__options *o)
{
    (void)k;
    const char *p = v;
    o->n_nics = 0;
    for (;;) {
        char num[16];
        size_t len = strcspn(p, ":");
        unsigned long long q = 0;
        if (len == 0 || len >= sizeof num || o->n_nics >= 8) {
            qsync__log("nics=%s is not 1 to 8 queue bounds separated by ':'", v);
            return -1;
        }
        memcpy(num, p, len);
        num[len] = '\0';
        if (!parse_uint(num, 8192, &q) || q < 1) {
            qsync__log("nics=%s: '%s' is not a queue bound from 1 to 8192", v, num);
            return -1;
        }
        o->nic_rx_queue[o->n_nics++] = (unsigned)q;
        if (p[len] == '\0')
            return 0;
        p += len + 1;
    }
}

static int set_h2g(const char *k, const char *v, struct qsync__options *o)
{
    return parse_path(k, v, &o->host_to_guest);
}

static int set_g2h(const char *k, const char *v, struct qsync__options *o)
{
    return parse_path(k, v, &o->guest_to_host);
}

static int set_time(const char *k, const char *v, struct qsync__options *o)
{
    return parse_time_us(k, v, &o->fifo_quantum_us);
}

static int set_done(const char *k, const char *v, struct qsync__options *o)
{
    (void)k;
    if (strcmp(v, "1") != 0 && strcmp(v, "2") != 0) {
        qsync__log("done_bytes=%s: the bytes written after each quantum are 1 (as "
                   "the Time Sync Plugin wrote) or 2 (what its README reads)", v);
        return -1;
    }
    o->done_bytes = (unsigned)(v[0] - '0');
    return 0;
}

static int set_remove(const char *k, const char *v, struct qsync__options *o)
{
    (void)k;
    if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0) {
        qsync__log("remove_fifos=%s is not 0 or 1", v);
        return -1;
    }
    o->remove_fifos = v[0] == '1';
    return 0;
}

static int set_next(const char *k, const char *v, struct qsync__options *o)
{
    (void)k;
    if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0) {
        qsync__log("next=%s is not 0 or 1", v);
        return -1;
    }
    o->next = v[0] == '1';
    return 0;
}

static const struct {
    const char *name;
    unsigned protos;
    int (*set)(const char *key, const char *value, struct qsync__options *opt);
} keys[K_COUNT] = {
    [K_PROTO] = {"proto", P_ALL, set_none},
    [K_FD_IN] = {"fd_in", P_NATIVE | P_QQQ, set_fd_in},
    [K_FD_OUT] = {"fd_out", P_NATIVE | P_QQQ, set_fd_out},
    [K_SHIFT] = {"shift", P_ALL, set_shift},
    [K_ENGINE] = {"engine", P_ALL, set_engine},
    [K_QUANTUM] = {"quantum_ns", P_NATIVE | P_QQQ, set_quantum},
    [K_PARENT] = {"parent", P_ALL, set_parent},
    [K_SHM] = {"shm", P_NATIVE, set_shm},
    [K_EFD] = {"efd", P_NATIVE, set_efd},
    [K_SPIN] = {"spin_ns", P_NATIVE, set_spin},
    [K_NICS] = {"nics", P_NATIVE, set_nics},
    [K_H2G] = {"HostToGuestPipe", P_FIFO, set_h2g},
    [K_G2H] = {"GuestToHostPipe", P_FIFO, set_g2h},
    [K_TIME] = {"TimeInMicroSeconds", P_FIFO, set_time},
    [K_TIME_README] = {"TimeinMicroseconds", P_FIFO, set_time},
    [K_DONE] = {"done_bytes", P_FIFO, set_done},
    [K_REMOVE] = {"remove_fifos", P_FIFO, set_remove},
    [K_NEXT] = {"next", P_NATIVE, set_next},
};

#define ALL_KEYS                                                                    \
    "proto, fd_in, fd_out, shift, engine, quantum_ns, parent, shm, efd, spin_ns, nics, " \
    "HostToGuestPipe, GuestToHostPipe, TimeInMicroSeconds, TimeinMicroseconds, done_bytes, " \
    "remove_fifos, next"

/* Why a key does not fit the personality, for the message. */
static void refuse_key(enum key k, enum qsync__proto proto)
{
    if (k == K_NEXT) {
        qsync__log("option next belongs to the native protocol (its NEXT message); the %s "
                   "personality cannot carry it",
                   proto == QSYNC_PROTO_QQQ ? "qqq" : "FIFO");
    } else if (k == K_NICS) {
        qsync__log("option nics belongs to the native protocol (frames travel on its "
                   "channel); the %s personality cannot carry them",
                   proto == QSYNC_PROTO_QQQ ? "qqq" : "FIFO");
    } else if (k == K_SHM || k == K_EFD || k == K_SPIN) {
        qsync__log("option %s belongs to the native protocol's shared-memory channel; the "
                   "%s personality speaks over its own pipes or FIFOs",
                   keys[k].name, proto == QSYNC_PROTO_QQQ ? "qqq" : "FIFO");
    } else if (k == K_QUANTUM && proto == QSYNC_PROTO_FIFO) {
        qsync__log("quantum_ns does not apply to the FIFO personality: its quantum is "
                   "TimeInMicroSeconds");
    } else if (keys[k].protos == P_FIFO) {
        /* Only reached with an explicit proto=: FIFO keys imply proto=fifo. */
        qsync__log("option %s belongs to the FIFO personality (the SIL Kit Time Sync Plugin "
                   "FIFO protocol) and cannot be combined with proto=%s",
                   keys[k].name, proto == QSYNC_PROTO_QQQ ? "qqq" : "native");
    } else {
        qsync__log("option %s does not apply to the FIFO personality (the SIL Kit Time Sync "
                   "Plugin FIFO protocol names its FIFOs with HostToGuestPipe and "
                   "GuestToHostPipe)",
                   keys[k].name);
    }
}

static void defaults(struct qsync__options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->proto = QSYNC_PROTO_NATIVE;
    opt->fd_in = -1;
    opt->fd_out = -1;
    opt->shift = 0;
    opt->engine = QSYNC__ENGINE_AUTO;
    opt->shm_fd = -1;
    opt->efd = -1;
    opt->spin_ns = -1;
    opt->done_bytes = 2;
}

/* The syntax, the keys and duplicates: value[k] is key k's value. */
static int read_pairs(int argc, char **argv, const char *value[K_COUNT])
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strchr(arg, '=');
        if (eq == NULL || eq == arg) {
            qsync__log("option '%s' is not key=value (keys: " ALL_KEYS ")", arg);
            return -1;
        }
        size_t klen = (size_t)(eq - arg);
        int k;
        for (k = 0; k < K_COUNT; k++) {
            if (strlen(keys[k].name) == klen && memcmp(keys[k].name, arg, klen) == 0)
                break;
        }
        if (k == K_COUNT) {
            qsync__log("unknown option '%.*s' (keys: " ALL_KEYS ")", (int)klen, arg);
            return -1;
        }
        if (value[k] != NULL) {
            qsync__log("option %s is given twice", keys[k].name);
            return -1;
        }
        value[k] = eq + 1;
    }
    return 0;
}

/* The personality (proto=, or implied by the FIFO keys), and that every
 * key given fits it. */
static int choose_proto(const char *value[K_COUNT], struct qsync__options *opt)
{
    if (value[K_PROTO] != NULL) {
        if (parse_proto(value[K_PROTO], &opt->proto) < 0)
            return -1;
    } else if (value[K_H2G] || value[K_G2H] || value[K_TIME] || value[K_TIME_README]) {
        opt->proto = QSYNC_PROTO_FIFO;
    }
    for (int k = 0; k < K_COUNT; k++) {
        if (value[k] != NULL && !(keys[k].protos & (1u << opt->proto))) {
            refuse_key((enum key)k, opt->proto);
            return -1;
        }
    }
    return 0;
}

/* The native and qqq personalities: what must come together. */
static int check_pipes(const char *value[K_COUNT], const struct qsync__options *opt)
{
    const char *what = opt->proto == QSYNC_PROTO_QQQ ? "requests" : "grants";
    const char *back = opt->proto == QSYNC_PROTO_QQQ ? "answers" : "reports";
    if (value[K_FD_IN] == NULL) {
        qsync__log("missing required option fd_in=N (the fd to read %s from)", what);
        return -1;
    }
    if (value[K_FD_OUT] == NULL) {
        qsync__log("missing required option fd_out=N (the fd to write %s to)", back);
        return -1;
    }
    if ((value[K_SHM] == NULL) != (value[K_EFD] == NULL)) {
        qsync__log("option %s needs %s too: the shared-memory channel takes the memfd "
                   "(shm=N) and the eventfd that wakes the controller (efd=N)",
                   value[K_SHM] ? "shm" : "efd", value[K_SHM] ? "efd" : "shm");
        return -1;
    }
    if (value[K_SPIN] != NULL && value[K_SHM] == NULL) {
        qsync__log("spin_ns applies only to the shared-memory channel (shm=N,efd=N); "
                   "a stop on pipes sleeps in read()");
        return -1;
    }
    return 0;
}

/* The FIFO personality: its required keys, and its one shift. */
static int check_fifo(const char *value[K_COUNT], struct qsync__options *opt)
{
    if (value[K_TIME] && value[K_TIME_README]) {
        qsync__log("options TimeInMicroSeconds and TimeinMicroseconds are both given: they "
                   "are the same option (the Time Sync Plugin's code and README spell it "
                   "differently); give one");
        return -1;
    }
    if (!value[K_TIME] && !value[K_TIME_README]) {
        qsync__log("missing required option TimeInMicroSeconds=N (or its README spelling "
                   "TimeinMicroseconds=N): the quantum in microseconds");
        return -1;
    }
    if (value[K_H2G] == NULL) {
        qsync__log("missing required option HostToGuestPipe=PATH (the FIFO the controller "
                   "writes to)");
        return -1;
    }
    if (value[K_G2H] == NULL) {
        qsync__log("missing required option GuestToHostPipe=PATH (the FIFO the plugin "
                   "writes to)");
        return -1;
    }
    if (opt->shift != 0) {
        qsync__log("shift=%u: the FIFO personality runs under the Time Sync Plugin's -icount "
                   "shift=0 (1 instruction = 1 ns) only", opt->shift);
        return -1;
    }
    opt->quantum_ns = opt->fifo_quantum_us * 1000ull;
    return 0;
}

int qsync__options_parse(int argc, char **argv, struct qsync__options *opt)
{
    const char *value[K_COUNT] = {NULL};

    defaults(opt);
    /* First the syntax and duplicates, then the personality, then values. */
    if (read_pairs(argc, argv, value) < 0 || choose_proto(value, opt) < 0)
        return -1;
    for (int k = 0; k < K_COUNT; k++) {
        if (value[k] != NULL && keys[k].set(keys[k].name, value[k], opt) < 0)
            return -1;
    }
    return opt->proto == QSYNC_PROTO_FIFO ? check_fifo(value, opt) : check_pipes(value, opt);
}

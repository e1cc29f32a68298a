/*
 * The plugin's options, as QEMU passes them: one "key=value" per argv
 * entry (from "-plugin lib.so,key=value,...").
 *
 *   fd_in=N     required  the fd to read GRANTs from (inherited from the library)
 *   fd_out=N    required  the fd to write HELLO/REPORT/ERROR/EXIT to
 *   shift=N     0..10, default 0: the -icount shift; 1 instruction = 2^N ns
 *   engine=E    auto (default) | timer | insn | block (block only in builds
 *               that have it); plugin.c says how auto chooses
 *   quantum_ns=N a hint: the quantum the controller expects to grant, in
 *               ns (1..10^15); engine=auto uses it to pick the cheaper
 *               engine. It never changes where the guest stops.
 */
#ifndef QSYNC_PLUGIN_OPTIONS_H
#define QSYNC_PLUGIN_OPTIONS_H

enum qsync__engine_choice {
    QSYNC_ENGINE_AUTO,
    QSYNC_ENGINE_INSN,
    QSYNC_ENGINE_TIMER,
    QSYNC_ENGINE_BLOCK
};

#define QSYNC_MAX_SHIFT 10u

struct qsync__options {
    int fd_in;
    int fd_out;
    unsigned shift;
    enum qsync__engine_choice engine;
    unsigned long long quantum_ns; /* 0: no hint */
};

/*
 * Parses argv into *opt. Returns 0, or -1 after printing a message that
 * names the offending key or value (unknown key, malformed or
 * out-of-range value, a key given twice, a required key missing).
 * Syntax only: whether the fds are open is the channel's business.
 */
int qsync__options_parse(int argc, char **argv, struct qsync__options *opt);

#endif

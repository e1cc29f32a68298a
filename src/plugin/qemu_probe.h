/*
 * Run-time look-ups in the QEMU that loaded us. Newer plugin API functions
 * are found this way so that an older QEMU gets our message rather than a
 * dynamic-linker error, and QEMU internals (not a stable interface, only
 * exported by builds with modules, as Debian's are) are read here, in one
 * place, and only ever used when found.
 */
#ifndef QSYNC_PLUGIN_QEMU_PROBE_H
#define QSYNC_PLUGIN_QEMU_PROBE_H

/* Returns the address of a symbol in QEMU's global scope, or NULL. The
 * plugin is loaded with local binding; QEMU's executable exports the
 * plugin API and, in modular builds, its internals. Any thread. */
void *qsync__qemu_sym(const char *name);

/* As qsync__qemu_sym, for a function an engine cannot do without: when it
 * is missing, logs "engine=ENGINE needs NAME, which this QEMU does not
 * export" and the hint (may be NULL), and returns NULL. */
void *qsync__qemu_need(const char *engine, const char *name, const char *hint);

/* Sets an engine's function pointer from qsync__qemu_need; returns from the
 * calling install function with -1 when it is missing. */
#define QSYNC_NEED(engine, ptr, symbol, hint)                                     \
    do {                                                                          \
        (ptr) = (__typeof__(ptr))qsync__qemu_need(engine, #symbol, hint);         \
        if ((ptr) == NULL)                                                        \
            return -1;                                                            \
    } while (0)

/* What QEMU says about -icount, from its internals. */
enum qsync__icount_state {
    QSYNC_ICOUNT_UNKNOWN,  /* this QEMU does not export what we need     */
    QSYNC_ICOUNT_OFF,      /* no -icount: time follows the host clock    */
    QSYNC_ICOUNT_FIXED,    /* -icount shift=N; *shift is N, or           */
                           /* QSYNC_SHIFT_UNKNOWN if QEMU won't tell     */
    QSYNC_ICOUNT_ADAPTIVE  /* -icount shift=auto                         */
};

#define QSYNC_SHIFT_UNKNOWN (~0u)

/* Reads QEMU's icount mode and shift. Valid from qemu_plugin_install on
 * (QEMU configures icount before it loads plugins). */
enum qsync__icount_state qsync__probe_icount(unsigned *shift);

#endif

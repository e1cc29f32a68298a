/* See qemu_probe.h. */
#include "qemu_probe.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

void *qsync__qemu_sym(const char *name)
{
    return dlsym(RTLD_DEFAULT, name);
}

void *qsync__qemu_need(const char *engine, const char *name, const char *hint)
{
    void *p = qsync__qemu_sym(name);
    if (p == NULL)
        qsync__log("engine=%s needs %s, which this QEMU does not export%s%s%s", engine, name,
                   hint ? " (" : "", hint ? hint : "", hint ? ")" : "");
    return p;
}

/*
 * QEMU (7.2 to 10.0 at least) keeps the icount mode in an exported int-sized
 * variable, use_icount: 0 off, 1 fixed shift, 2 adaptive. Its shift is
 * private, but icount_to_ns(1) is 2^shift. Both are set while QEMU parses
 * its command line, before plugins are installed (checked on 10.0.2).
 */
enum qsync__icount_state qsync__probe_icount(unsigned *shift)
{
    const int *use_icount = qsync__qemu_sym("use_icount");
    int64_t (*to_ns)(int64_t);

    if (use_icount == NULL)
        return QSYNC_ICOUNT_UNKNOWN;
    switch (*use_icount) {
    case 0: return QSYNC_ICOUNT_OFF;
    case 1: break;
    case 2: return QSYNC_ICOUNT_ADAPTIVE;
    default: return QSYNC_ICOUNT_UNKNOWN;
    }

    *shift = QSYNC_SHIFT_UNKNOWN;
    to_ns = (int64_t (*)(int64_t))qsync__qemu_sym("icount_to_ns");
    if (to_ns != NULL) {
        int64_t ns = to_ns(1);
        for (unsigned s = 0; s < 63; s++) {
            if (ns == (int64_t)1 << s)
                *shift = s;
        }
    }
    return QSYNC_ICOUNT_FIXED;
}

/*
 * The QEMU functions the plugin looks up at run time, in one table.
 *
 * QEMU binds a plugin's symbols when it loads it, so a direct reference to
 * a plugin API function that an older QEMU lacks would fail the load with
 * a linker message. Every function newer than plugin API version 1's
 * common core (qemu_abi.h) is therefore found here, once, at install, and
 * stays NULL where this QEMU does not export it; whoever uses one checks
 * it first, and refuses with a message of its own. QEMU's internal
 * functions, which are no API at all, have their own table in
 * qemu_internals.c, the file that says which QEMU versions they were
 * checked on.
 */
#ifndef QSYNC_PLUGIN_QEMU_API_H
#define QSYNC_PLUGIN_QEMU_API_H

#include <stddef.h>
#include <stdint.h>

#include "qemu_abi.h"

struct qsync__qemu_api {
    /* API 1 and later (QEMU 4.2+). */
    void (*tb_exec_cb)(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                       enum qemu_plugin_cb_flags flags, void *userdata);
    size_t (*insn_size)(const struct qemu_plugin_insn *insn);
    /* qemu_plugin_insn_data: returns a pointer to the bytes up to API 2,
     * copies them into the caller's buffer from API 3 (QEMU 9.1) on; the
     * caller casts by version (halt.c). */
    void *insn_data;
    /* API 1 only (QEMU up to 8.2): an inline add on a plain pointer. */
    void (*insn_inline_ptr)(struct qemu_plugin_insn *insn, enum qemu_plugin_op op, void *ptr,
                            uint64_t imm);
    /* API 2 and later (QEMU 9.0+): scoreboards, per-vCPU inline ops. */
    __typeof__(&qemu_plugin_num_vcpus) num_vcpus;
    __typeof__(&qemu_plugin_scoreboard_new) scoreboard_new;
    __typeof__(&qemu_plugin_u64_get) u64_get;
    __typeof__(&qemu_plugin_u64_set) u64_set;
    __typeof__(&qemu_plugin_u64_sum) u64_sum;
    __typeof__(&qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu) insn_inline_vcpu;
    void (*tb_inline_vcpu)(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                           qemu_plugin_u64 entry, uint64_t imm);
    /* API 3 and later (QEMU 9.1+): conditional callbacks. */
    __typeof__(&qemu_plugin_register_vcpu_insn_exec_cond_cb) insn_cond_cb;
    void (*tb_cond_cb)(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                       enum qemu_plugin_cb_flags flags, enum qemu_plugin_cond cond,
                       qemu_plugin_u64 entry, uint64_t imm, void *userdata);
};

/* The table; filled by qsync__qemu_api_resolve(), read-only after. */
extern struct qsync__qemu_api qsync__qemu_api;

/* Looks every function of the table up. Install thread, first thing. */
void qsync__qemu_api_resolve(void);

/* Returns the address of a symbol in QEMU's global scope, or NULL. The
 * plugin is loaded with local binding; QEMU's executable exports the
 * plugin API and, in modular builds, its internals. Any thread. */
void *qsync__qemu_sym(const char *name);

/* For a function an engine cannot do without: when it is missing, logs
 * "engine=ENGINE needs NAME, which this QEMU does not export" and the hint
 * (may be NULL), and returns -1 from the calling install function. */
#define QSYNC_NEED(engine, field, symbol, hint)                                   \
    do {                                                                          \
        if (qsync__qemu_api.field == NULL) {                                      \
            qsync__qemu_api_missing(engine, #symbol, hint);                       \
            return -1;                                                            \
        }                                                                         \
    } while (0)

void qsync__qemu_api_missing(const char *engine, const char *name, const char *hint);

#endif

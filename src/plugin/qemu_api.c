/* See qemu_api.h. */
#include "qemu_api.h"

#include <dlfcn.h>

#include "log.h"

struct qsync__qemu_api qsync__qemu_api;

void *qsync__qemu_sym(const char *name)
{
    return dlsym(RTLD_DEFAULT, name);
}

#define FIND(field, symbol) \
    (qsync__qemu_api.field = (__typeof__(qsync__qemu_api.field))qsync__qemu_sym(symbol))

void qsync__qemu_api_resolve(void)
{
    FIND(tb_exec_cb, "qemu_plugin_register_vcpu_tb_exec_cb");
    FIND(insn_size, "qemu_plugin_insn_size");
    FIND(insn_data, "qemu_plugin_insn_data");
    FIND(insn_inline_ptr, "qemu_plugin_register_vcpu_insn_exec_inline");
    FIND(num_vcpus, "qemu_plugin_num_vcpus");
    FIND(scoreboard_new, "qemu_plugin_scoreboard_new");
    FIND(u64_get, "qemu_plugin_u64_get");
    FIND(u64_set, "qemu_plugin_u64_set");
    FIND(u64_sum, "qemu_plugin_u64_sum");
    FIND(insn_inline_vcpu, "qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu");
    FIND(tb_inline_vcpu, "qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu");
    FIND(insn_cond_cb, "qemu_plugin_register_vcpu_insn_exec_cond_cb");
    FIND(tb_cond_cb, "qemu_plugin_register_vcpu_tb_exec_cond_cb");
}

void qsync__qemu_api_missing(const char *engine, const char *name, const char *hint)
{
    qsync__log("engine=%s needs %s, which this QEMU does not export%s%s%s", engine, name,
               hint ? " (" : "", hint ? hint : "", hint ? ")" : "");
}

/* See vcpu_count.h. */
#include "vcpu_count.h"

#include <string.h>

#include "qemu_api.h"
#include "wire.h"

static enum qsync__count_mode mode;
static uint64_t total;                            /* all vCPUs          */
static uint64_t per_vcpu[QSYNC__WIRE_MAX_VCPUS];  /* settled shares      */
static uint64_t mark;          /* INLINE: total at the last block start */
static unsigned int mark_vcpu; /* INLINE: the vCPU that started it      */

enum qsync__count_mode qsync__count_mode_for(const qemu_info_t *info)
{
    if (info->version.cur >= 2 && qsync__qemu_api.tb_exec_cb != NULL)
        return QSYNC__COUNT_BLOCKS;
    if (info->version.cur < 2 && qsync__qemu_api.insn_inline_ptr != NULL &&
        qsync__qemu_api.tb_exec_cb != NULL)
        return QSYNC__COUNT_INLINE;
    return QSYNC__COUNT_NONE;
}

void qsync__count_init(enum qsync__count_mode m)
{
    mode = m;
    total = mark = 0;
    mark_vcpu = 0;
    memset(per_vcpu, 0, sizeof per_vcpu);
}

void qsync__count_instrument(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (mode == QSYNC__COUNT_NONE || n == 0)
        return;
    qsync__qemu_api.tb_exec_cb(tb, cb, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
    if (mode != QSYNC__COUNT_INLINE)
        return;
    for (size_t i = 0; i < n; i++)
        qsync__qemu_api.insn_inline_ptr(qemu_plugin_tb_get_insn(tb, i),
                                        QEMU_PLUGIN_INLINE_ADD_U64, &total, 1);
}

void qsync__count_block_start(unsigned int vcpu)
{
    if (mode != QSYNC__COUNT_INLINE)
        return;
    if (mark_vcpu < QSYNC__WIRE_MAX_VCPUS)
        per_vcpu[mark_vcpu] += total - mark;
    mark = total;
    mark_vcpu = vcpu;
}

void qsync__count_block_len(unsigned int vcpu, uint64_t len)
{
    if (mode != QSYNC__COUNT_BLOCKS)
        return;
    total += len;
    if (vcpu < QSYNC__WIRE_MAX_VCPUS)
        per_vcpu[vcpu] += len;
}

uint64_t qsync__count_total(void)
{
    return total;
}

uint64_t qsync__count_vcpus(uint64_t *out, uint32_t n)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n && i < QSYNC__WIRE_MAX_VCPUS; i++) {
        uint64_t v = per_vcpu[i];
        /* INLINE: what ran since the last block start is not shared out
         * yet (at a stop it is 0; at exit it is the last block's). */
        if (mode == QSYNC__COUNT_INLINE && i == mark_vcpu)
            v += total - mark;
        if (out != NULL)
            out[i] = v;
        sum += v;
    }
    return sum;
}

/*
 * Instructions per vCPU, counted by the plugin, for the engines that need
 * a count of their own (timer at -smp > 1, block). Under -icount QEMU runs
 * every vCPU round-robin in one thread and switches vCPUs only between
 * blocks, so a block start says whose instructions follow. Touched only
 * by that thread (block callbacks, inline ops, stops), and read at exit.
 */
#ifndef QSYNC_PLUGIN_VCPU_COUNT_H
#define QSYNC_PLUGIN_VCPU_COUNT_H

#include <stdint.h>

#include "qemu_abi.h"

enum qsync__count_mode {
    QSYNC__COUNT_NONE,   /* not counted here                               */
    QSYNC__COUNT_INLINE, /* plugin API 1 (QEMU up to 8.2): an inline add on
                            one total per instruction; each block start
                            hands what ran since the previous one to that
                            block's vCPU (exact)                           */
    QSYNC__COUNT_BLOCKS  /* a block's exec callback adds its length to its
                            vCPU (a block that exits early counts whole)   */
};

/* The mode this QEMU allows: INLINE with API 1's inline add on a pointer
 * and the block exec callback, BLOCKS with the callback alone (API 2 and
 * later), or NONE. Install thread; qemu_api.h's table is resolved. */
enum qsync__count_mode qsync__count_mode_for(const qemu_info_t *info);

/* Counts in mode from now on (all counts 0). Install thread. */
void qsync__count_init(enum qsync__count_mode mode);

/* Instruments a translated block: cb becomes its exec callback, with the
 * block's length as udata (cb calls qsync__count_block_start() and
 * qsync__count_block_len() in that order, and may do more between), and
 * in INLINE mode every instruction gets its inline add. Nothing in NONE
 * mode. */
void qsync__count_instrument(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb);

/* A block of vcpu starts, before its instructions run: INLINE mode hands
 * what ran since the previous block start to that block's vCPU. */
void qsync__count_block_start(unsigned int vcpu);

/* BLOCKS mode: the starting block's len instructions go to vcpu. */
void qsync__count_block_len(unsigned int vcpu, uint64_t len);

/* Instructions started so far, all vCPUs. */
uint64_t qsync__count_total(void);

/* Each of the first n vCPUs' instructions into out (may be NULL); returns
 * their sum. */
uint64_t qsync__count_vcpus(uint64_t *out, uint32_t n);

#endif

/*
 * The part of QEMU's TCG plugin ABI that the qsync plugin uses.
 *
 * Why this file exists: Debian (and most distributions) ship no
 * qemu-plugin.h, yet the QEMU binaries export the plugin API. So the
 * project keeps its own declaration of what it uses, written from the
 * measured facts in docs/qemu-internals.md and checked against QEMU's
 * behaviour, never copied from QEMU's header. Where CMake finds a usable
 * system qemu-plugin.h (API version 3 or later) it is included instead,
 * and this file only adds the few names of our own.
 *
 * Version notes (plugin API version -> first QEMU that speaks it):
 *   1: 4.2 ... 8.2    2: 9.0 (scoreboards, per-vCPU inline ops)
 *   3: 9.1 (conditional callbacks, STORE_U64)    4: 9.2 ... 10.0
 * QEMU refuses a plugin whose declared version is outside [min, cur].
 */
#ifndef QSYNC_PLUGIN_QEMU_ABI_H
#define QSYNC_PLUGIN_QEMU_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The two symbols QEMU looks up must stay visible; everything else is
 * hidden by the build's default visibility. */
#define QSYNC_PLUGIN_EXPORT __attribute__((visibility("default")))

/* The API version whose features we use: conditional callbacks on a
 * scoreboard entry arrived with version 3 (QEMU 9.1). */
#define QSYNC_PLUGIN_API_VERSION 3

#ifdef QSYNC_HAVE_QEMU_PLUGIN_H
#include <qemu-plugin.h>
#else

typedef uint64_t qemu_plugin_id_t;

/*
 * What QEMU tells the plugin at install. Valid only during
 * qemu_plugin_install; on x86-64 the layout is 32 bytes: a pointer, two
 * ints, a bool, then (after padding) the system-mode union.
 */
typedef struct qemu_info_t {
    const char *target_name; /* e.g. "x86_64" */
    struct {
        int min; /* lowest plugin API version QEMU accepts  */
        int cur; /* highest plugin API version QEMU speaks  */
    } version;
    bool system_emulation;
    union {
        struct {
            int smp_vcpus; /* vCPUs at start (-smp N)            */
            int max_vcpus; /* upper bound (-smp ...,maxcpus=M)   */
        } system;
    };
} qemu_info_t;

/* Opaque handles, only ever used through pointers. */
struct qemu_plugin_tb;
struct qemu_plugin_insn;
struct qemu_plugin_scoreboard;

/* A 64-bit slot inside every vCPU's scoreboard element. QEMU passes it by
 * value (16 bytes) to every function that takes one. */
typedef struct {
    struct qemu_plugin_scoreboard *score;
    size_t offset;
} qemu_plugin_u64;

enum qemu_plugin_cb_flags {
    QEMU_PLUGIN_CB_NO_REGS = 0,
    QEMU_PLUGIN_CB_R_REGS = 1,
    QEMU_PLUGIN_CB_RW_REGS = 2
};

enum qemu_plugin_cond {
    QEMU_PLUGIN_COND_NEVER = 0,
    QEMU_PLUGIN_COND_ALWAYS = 1,
    QEMU_PLUGIN_COND_EQ = 2,
    QEMU_PLUGIN_COND_NE = 3,
    QEMU_PLUGIN_COND_LT = 4,
    QEMU_PLUGIN_COND_LE = 5,
    QEMU_PLUGIN_COND_GT = 6,
    QEMU_PLUGIN_COND_GE = 7
};

enum qemu_plugin_op {
    QEMU_PLUGIN_INLINE_ADD_U64 = 0,
    QEMU_PLUGIN_INLINE_STORE_U64 = 1
};

/* Callback shapes. Exec and conditional callbacks get no plugin id. */
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id,
                                               struct qemu_plugin_tb *tb);

/* The plugin's side of the contract. */
extern QSYNC_PLUGIN_EXPORT int qemu_plugin_version;
QSYNC_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                            int argc, char **argv);

/* --- Present since API version 1 (QEMU 4.2): linked directly. --- */
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
                                           qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                    void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb,
                                                 size_t idx);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
/* qemu_plugin_insn_size and qemu_plugin_insn_data (whose form changed in
 * API version 3) are found at run time by halt.c. */

/*
 * --- Newer (API 2 and 3): never linked directly. ---
 * QEMU dlopens plugins with immediate binding, so a direct reference to a
 * symbol an older QEMU lacks would fail the load with a linker message.
 * Engines resolve these at run time (see qsync__qemu_sym) and refuse with
 * a message of our own. The prototypes give the pointer types.
 */
int qemu_plugin_num_vcpus(void);
struct qemu_plugin_scoreboard *qemu_plugin_scoreboard_new(size_t element_size);
void qemu_plugin_scoreboard_free(struct qemu_plugin_scoreboard *score);
uint64_t qemu_plugin_u64_get(qemu_plugin_u64 entry, unsigned int vcpu_index);
void qemu_plugin_u64_set(qemu_plugin_u64 entry, unsigned int vcpu_index, uint64_t val);
uint64_t qemu_plugin_u64_sum(qemu_plugin_u64 entry);
void qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu(struct qemu_plugin_insn *insn,
                                                         enum qemu_plugin_op op,
                                                         qemu_plugin_u64 entry,
                                                         uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cond_cb(struct qemu_plugin_insn *insn,
                                                 qemu_plugin_vcpu_udata_cb_t cb,
                                                 enum qemu_plugin_cb_flags flags,
                                                 enum qemu_plugin_cond cond,
                                                 qemu_plugin_u64 entry, uint64_t imm,
                                                 void *userdata);

#if defined(__x86_64__) && defined(__LP64__)
_Static_assert(sizeof(qemu_info_t) == 32, "qemu_info_t layout (docs/qemu-internals.md)");
_Static_assert(offsetof(qemu_info_t, system.smp_vcpus) == 20, "qemu_info_t layout");
_Static_assert(sizeof(qemu_plugin_u64) == 16, "qemu_plugin_u64 is passed by value");
#endif

#endif /* !QSYNC_HAVE_QEMU_PLUGIN_H */

#endif

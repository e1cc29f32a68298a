/*
 * See halt.h. One table row per target; to support a new one, add its
 * target names and functions that recognise its halting encodings and
 * the instructions through which its guests ask QEMU to power off.
 */
#include "halt.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qemu_api.h"

/* The instruction's bytes, as QEMU gives them: version 3 of the plugin
 * API (QEMU 9.1) changed qemu_plugin_insn_data from returning a pointer
 * to copying into the caller's buffer. Both live under the same name. */
typedef size_t (*insn_data_copy_fn)(const struct qemu_plugin_insn *insn, void *dest,
                                    size_t len);
typedef const void *(*insn_data_ptr_fn)(const struct qemu_plugin_insn *insn);

static insn_data_copy_fn data_copy;
static insn_data_ptr_fn data_ptr;
static size_t (*insn_size)(const struct qemu_plugin_insn *insn);

/* Copies up to len bytes of insn into buf; returns how many. */
static size_t insn_bytes(const struct qemu_plugin_insn *insn, uint8_t *buf, size_t len)
{
    size_t n = insn_size(insn);
    if (n > len)
        n = len;
    if (data_copy != NULL)
        return data_copy(insn, buf, n);
    const void *p = data_ptr(insn);
    if (p == NULL)
        return 0;
    memcpy(buf, p, n);
    return n;
}

/*
 * x86 (i386 and x86_64): hlt is F4. Legacy prefixes (segment overrides,
 * operand/address size, rep) may precede it and change nothing. mwait
 * (0F 01 C9) also halts a lone vCPU in QEMU's TCG.
 */
static bool x86_halts(const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n && (b[i] == 0x26 || b[i] == 0x2e || b[i] == 0x36 || b[i] == 0x3e ||
                     b[i] == 0x64 || b[i] == 0x65 || b[i] == 0x66 || b[i] == 0x67 ||
                     b[i] == 0xf2 || b[i] == 0xf3))
        i++;
    if (n - i == 1 && b[i] == 0xf4)
        return true;
    return n - i == 3 && b[i] == 0x0f && b[i + 1] == 0x01 && b[i + 2] == 0xc9;
}

/*
 * x86: the port writes, out (E6 ib, E7 ib, EE, EF) and outs (6E, 6F),
 * after any legacy prefixes (rep, operand size, segment). The ACPI PM1
 * control register, isa-debug-exit, the reset control port 0xcf9 and the
 * keyboard controller's reset are all written this way.
 */
static bool x86_requests(const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n && (b[i] == 0x26 || b[i] == 0x2e || b[i] == 0x36 || b[i] == 0x3e ||
                     b[i] == 0x64 || b[i] == 0x65 || b[i] == 0x66 || b[i] == 0x67 ||
                     b[i] == 0xf2 || b[i] == 0xf3))
        i++;
    if (n - i == 2)
        return b[i] == 0xe6 || b[i] == 0xe7;
    return n - i == 1 && (b[i] == 0xee || b[i] == 0xef || b[i] == 0x6e || b[i] == 0x6f);
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/*
 * AArch64: wfi is D503207F. wfe (D503205F) is left out on purpose: QEMU's
 * TCG treats it as a yield and never halts on it, and spin loops run it
 * often. The Armv8.7 wfit (D5031000 | Rd) halts like wfi.
 */
static bool aarch64_halts(const uint8_t *b, size_t n)
{
    if (n != 4)
        return false;
    uint32_t w = le32(b);
    return w == 0xd503207fu || (w & 0xffffffe0u) == 0xd5031000u;
}

/*
 * AArch64: the PSCI calls, hvc #imm (D4000002 | imm16 << 5) and smc #imm
 * (D4000003 | imm16 << 5); QEMU serves PSCI SYSTEM_OFF and SYSTEM_RESET
 * itself when no firmware runs at EL2/EL3. A32 and T32 code (a 32-bit
 * guest on qemu-system-aarch64) is not recognised.
 */
static bool aarch64_requests(const uint8_t *b, size_t n)
{
    if (n != 4)
        return false;
    uint32_t w = le32(b) & 0xffe0001fu;
    return w == 0xd4000002u || w == 0xd4000003u;
}

/* RISC-V (32 and 64): wfi is 10500073. Its guests power off through SBI
 * firmware, which writes a memory-mapped device: no instruction of the
 * guest's own marks the request, so the table has no matcher for it. */
static bool riscv_halts(const uint8_t *b, size_t n)
{
    return n == 4 && le32(b) == 0x10500073u;
}

static const struct target {
    const char *names[3]; /* QEMU's target_name values */
    const char *what;     /* for messages */
    size_t max_len;       /* longest encoding the matcher needs */
    bool (*halts)(const uint8_t *bytes, size_t n);
    bool (*requests)(const uint8_t *bytes, size_t n); /* NULL: none known */
} targets[] = {
    {{"x86_64", "i386", NULL}, "hlt/mwait", 15, x86_halts, x86_requests},
    {{"aarch64", NULL, NULL}, "wfi", 4, aarch64_halts, aarch64_requests},
    {{"riscv64", "riscv32", NULL}, "wfi", 4, riscv_halts, NULL},
};

static const struct target *target;

bool qsync__halt_setup(const qemu_info_t *info)
{
    target = NULL;
    if (info->target_name == NULL)
        return false;
    insn_size = qsync__qemu_api.insn_size;
    void *data = qsync__qemu_api.insn_data;
    if (insn_size == NULL || data == NULL)
        return false;
    if (info->version.cur >= 3) {
        data_copy = (insn_data_copy_fn)data;
        data_ptr = NULL;
    } else {
        data_copy = NULL;
        data_ptr = (insn_data_ptr_fn)data;
    }
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        for (size_t k = 0; k < 3 && targets[i].names[k] != NULL; k++) {
            if (strcmp(info->target_name, targets[i].names[k]) == 0) {
                target = &targets[i];
                return true;
            }
        }
    }
    return false;
}

/* Whether insn's bytes satisfy the matcher (NULL: nothing matches). */
static bool insn_matches(const struct qemu_plugin_insn *insn,
                         bool (*match)(const uint8_t *bytes, size_t n))
{
    uint8_t buf[16];
    if (target == NULL || match == NULL)
        return false;
    size_t n = insn_size(insn);
    if (n == 0 || n > target->max_len)
        return false;
    n = insn_bytes(insn, buf, n);
    return match(buf, n);
}

bool qsync__halt_match(const struct qemu_plugin_insn *insn)
{
    return insn_matches(insn, target != NULL ? target->halts : NULL);
}

bool qsync__request_insns_known(void)
{
    return target != NULL && target->requests != NULL;
}

bool qsync__request_match(const struct qemu_plugin_insn *insn)
{
    return insn_matches(insn, target != NULL ? target->requests : NULL);
}

/*
 * guest.h - shared declarations for the libqsync bare-metal test guest.
 *
 * The guest is a 32-bit multiboot (v1) kernel for QEMU's "pc" machine. It is
 * freestanding: no libc, no libgcc. Everything it needs (port I/O, 64-bit
 * division, number printing) is written here.
 */
#ifndef QSYNC_GUEST_H
#define QSYNC_GUEST_H

#include <stdarg.h>

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define NULL_PTR ((void *)0)

/* Exit values written to isa-debug-exit. QEMU exits with (value << 1) | 1. */
#define GUEST_EXIT_OK 0u        /* QEMU status 1 */
#define GUEST_EXIT_USAGE 2u     /* bad command line; QEMU status 5 */
#define GUEST_EXIT_EXCEPTION 3u /* CPU exception; QEMU status 7 */
#define GUEST_EXIT_NOHW 4u      /* missing device (HPET); QEMU status 9 */

/* ---- port I/O and CPU helpers ------------------------------------------ */

static inline void outb(u16 port, u8 val)
{
    __asm__ volatile("outb %0, %1" : : "a"(val), "Nd"(port));
}

static inline void outl(u16 port, u32 val)
{
    __asm__ volatile("outl %0, %1" : : "a"(val), "Nd"(port));
}

static inline u8 inb(u16 port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }

/* ---- util.c ------------------------------------------------------------- */

/* n / d for a 64-bit n and a 32-bit d (d != 0); stores n % d in *rem. */
u64 udiv64_32(u64 n, u32 d, u32 *rem);
/* (a * b) / d, computed with a 96-bit intermediate; saturates at 2^64-1. */
u64 muldiv64_32(u64 a, u32 b, u32 d);

void *memset(void *dst, int c, unsigned int n);
void *memcpy(void *dst, const void *src, unsigned int n);

/* ---- console.c (COM1, polled) ------------------------------------------- */

void serial_init(void);
void serial_putc(char c);
void serial_puts(const char *s);
/* FIFO on, receive interrupt level 14 bytes (so QEMU hands over up to 14
 * bytes at once), nothing else changed. */
void serial_rx_init(void);
/* Waits for a received byte; returns it. Polls the line status register
 * (three instructions a round) with interrupts as they are. */
u8 serial_getc(void);
/*
 * A tiny printf. Conversions: %s, %c, %u (u32), %x (u32, hex),
 * %llu (u64), %%. A width or flags are not supported.
 */
void gprintf(const char *fmt, ...);
void vgprintf(const char *fmt, va_list ap);

/* ---- hw.c --------------------------------------------------------------- */

/* Ticks counted by the IRQ0 handler in entry.S. */
extern volatile u32 guest_ticks;

void idt_init(void);
void pic_init(void);            /* remap to 0x20/0x28, mask everything */
void pic_unmask_irq0(void);
/* Program PIT channel 0 as a rate generator with this divisor (2..65535). */
void pit_start_periodic(u32 divisor);
/* Leave PIT channel 0 in one-shot mode, so it stops raising events. */
void pit_quiesce(void);

/* HPET: returns 0 if present and now counting, -1 if absent. */
int hpet_init(void);
u32 hpet_period_fs(void);
u64 hpet_counter(void);
/* Main counter converted to ns (0 if the HPET is absent). */
u64 hpet_ns(void);

/* Prints "qsync-guest: exit code=N" and leaves through isa-debug-exit. */
void guest_exit(u32 code) __attribute__((noreturn));
/* Set by "exit-spin" on the command line: guest_exit() spins instead of
 * halting after its request. */
extern int guest_exit_spins;

#endif

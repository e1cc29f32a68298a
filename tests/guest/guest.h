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

static inline void outw(u16 port, u16 val)
{
    __asm__ volatile("outw %0, %1" : : "a"(val), "Nd"(port));
}

static inline u16 inw(u16 port)
{
    u16 v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline u32 inl(u16 port)
{
    u32 v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
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

/* ---- e1000.c (QEMU's e1000 on PCI bus 0, polled) ------------------------ */

#define NET_DESCS 8        /* descriptors per ring */
#define NET_BUF_SIZE 2048u /* bytes per buffer */

/* Finds the NIC, resets it, sets up both rings, turns the link, the
 * transmitter and the receiver on (RCTL written once) and prints
 * "qsync-guest: net e1000 ..." with its MAC. Exits with GUEST_EXIT_NOHW
 * when there is no usable e1000. */
void net_init(void);
const u8 *net_mac(void);
int net_link_up(void);
/* The TSC just before RCTL was written: QEMU's e1000 receives nothing for
 * 1 s of virtual time after that write. */
u64 net_rctl_tsc(void);
/* The buffer the next net_tx() sends. */
u8 *net_tx_buffer(void);
/* Sends len bytes of net_tx_buffer(), or of frame (which must stay
 * untouched until the next transmit), and returns the TSC read by the
 * instruction just before the TDT write. */
u64 net_tx(u32 len);
u64 net_tx_at(const u8 *frame, u32 len);
/* Polls for the next received frame; returns the TSC read as soon as its
 * descriptor's DD bit was seen. The frame stays valid until
 * net_rx_release(). */
u64 net_rx_wait(u8 **data, u32 *len);
void net_rx_release(void);
/* Prints n bytes as two hex digits each, sep between them (0: none). */
void net_put_hex(const u8 *p, u32 n, char sep);

#endif

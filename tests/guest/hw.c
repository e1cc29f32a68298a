/*
 * hw.c - the few PC devices the guest drives: IDT, 8259 PIC, 8254 PIT,
 * HPET, and QEMU's isa-debug-exit port.
 */
#include "guest.h"

/* ---- IDT ---------------------------------------------------------------- */

struct idt_gate {
    u16 offset_lo;
    u16 selector;
    u8 zero;
    u8 type_attr;
    u16 offset_hi;
} __attribute__((packed));

struct idt_ptr {
    u16 limit;
    u32 base;
} __attribute__((packed));

#define IDT_VECTORS 256
#define GATE_INTR32 0x8E /* present, ring 0, 32-bit interrupt gate */
#define SEL_CODE 0x08
#define VEC_IRQ0 0x20

extern void (*const exc_stub_table[32])(void);
extern void irq0_entry(void);
extern void ignore_entry(void);

static struct idt_gate idt[IDT_VECTORS] __attribute__((aligned(8)));

volatile u32 guest_ticks;

static void idt_set(unsigned int vec, void (*handler)(void))
{
    u32 addr = (u32)handler;
    idt[vec].offset_lo = (u16)(addr & 0xFFFF);
    idt[vec].selector = SEL_CODE;
    idt[vec].zero = 0;
    idt[vec].type_attr = GATE_INTR32;
    idt[vec].offset_hi = (u16)(addr >> 16);
}

void idt_init(void)
{
    struct idt_ptr p;
    unsigned int v;

    for (v = 0; v < IDT_VECTORS; v++)
        idt_set(v, v < 32 ? exc_stub_table[v] : ignore_entry);
    idt_set(VEC_IRQ0, irq0_entry);

    p.limit = (u16)(sizeof idt - 1);
    p.base = (u32)idt;
    __asm__ volatile("lidt %0" : : "m"(p));
}

/* Frame built by the exception stubs in entry.S. */
struct exc_frame {
    u32 vector;
    u32 error;
    u32 eip;
    u32 cs;
    u32 eflags;
};

void guest_exception(struct exc_frame *f) __attribute__((noreturn));

void guest_exception(struct exc_frame *f)
{
    gprintf("qsync-guest: exception vector=%u error=%x eip=%x\n",
            f->vector, f->error, f->eip);
    guest_exit(GUEST_EXIT_EXCEPTION);
}

/* ---- 8259 PIC ----------------------------------------------------------- */

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xA0
#define PIC2_DATA 0xA1

static void io_delay(void)
{
    outb(0x80, 0); /* POST port: a harmless write that takes a moment */
}

void pic_init(void)
{
    outb(PIC1_CMD, 0x11);  /* ICW1: start init, ICW4 follows */
    io_delay();
    outb(PIC2_CMD, 0x11);
    io_delay();
    outb(PIC1_DATA, VEC_IRQ0); /* ICW2: master vectors 0x20-0x27 */
    io_delay();
    outb(PIC2_DATA, VEC_IRQ0 + 8); /* slave vectors 0x28-0x2F */
    io_delay();
    outb(PIC1_DATA, 0x04); /* ICW3: slave on IRQ2 */
    io_delay();
    outb(PIC2_DATA, 0x02); /* slave cascade identity */
    io_delay();
    outb(PIC1_DATA, 0x01); /* ICW4: 8086 mode */
    io_delay();
    outb(PIC2_DATA, 0x01);
    io_delay();
    outb(PIC1_DATA, 0xFF); /* mask everything */
    outb(PIC2_DATA, 0xFF);
}

void pic_unmask_irq0(void)
{
    outb(PIC1_DATA, 0xFE);
}

/* ---- 8254 PIT ----------------------------------------------------------- */

#define PIT_CH0 0x40
#define PIT_CMD 0x43

void pit_start_periodic(u32 divisor)
{
    outb(PIT_CMD, 0x34); /* channel 0, lobyte/hibyte, mode 2, binary */
    outb(PIT_CH0, (u8)(divisor & 0xFF));
    outb(PIT_CH0, (u8)(divisor >> 8));
}

void pit_quiesce(void)
{
    /*
     * Mode 0 (interrupt on terminal count) fires once and then stays
     * quiet, unlike the 18.2 Hz rate generator the firmware leaves running.
     */
    outb(PIT_CMD, 0x30);
    outb(PIT_CH0, 0x01);
    outb(PIT_CH0, 0x00);
}

/* ---- HPET --------------------------------------------------------------- */

#define HPET_BASE 0xFED00000u
#define HPET_CAP_LO 0x000
#define HPET_CAP_HI 0x004 /* counter period in femtoseconds */
#define HPET_CONFIG 0x010
#define HPET_COUNTER_LO 0x0F0
#define HPET_COUNTER_HI 0x0F4
#define HPET_MAX_PERIOD_FS 100000000u /* the spec's upper bound */

static u32 hpet_period;

static inline u32 hpet_read(u32 off)
{
    return *(volatile u32 *)(HPET_BASE + off);
}

static inline void hpet_write(u32 off, u32 v)
{
    *(volatile u32 *)(HPET_BASE + off) = v;
}

int hpet_init(void)
{
    u32 cap = hpet_read(HPET_CAP_LO);
    u32 period = hpet_read(HPET_CAP_HI);

    /* Absent MMIO reads back as all zeros or all ones. */
    if ((cap & 0xFF) == 0 || cap == 0xFFFFFFFFu || period == 0 ||
        period > HPET_MAX_PERIOD_FS)
        return -1;
    hpet_period = period;
    /* ENABLE_CNF only; legacy replacement stays off so the PIT keeps IRQ0. */
    hpet_write(HPET_CONFIG, (hpet_read(HPET_CONFIG) & ~0x3u) | 0x1u);
    return 0;
}

u32 hpet_period_fs(void)
{
    return hpet_period;
}

u64 hpet_counter(void)
{
    u32 hi, lo, hi2;
    /* Two 32-bit reads: retry if the high half moved in between. */
    do {
        hi = hpet_read(HPET_COUNTER_HI);
        lo = hpet_read(HPET_COUNTER_LO);
        hi2 = hpet_read(HPET_COUNTER_HI);
    } while (hi != hi2);
    return ((u64)hi << 32) | lo;
}

u64 hpet_ns(void)
{
    u64 ticks;
    if (hpet_period == 0)
        return 0;
    ticks = hpet_counter();
    if (hpet_period % 1000000u == 0) /* QEMU: 10,000,000 fs = 10 ns */
        return ticks * (hpet_period / 1000000u);
    return muldiv64_32(ticks, hpet_period, 1000000u);
}

/* ---- leaving QEMU ------------------------------------------------------- */

#define DEBUG_EXIT_PORT 0xF4

int guest_exit_spins;

void guest_exit(u32 code)
{
    cli();
    gprintf("qsync-guest: exit code=%u\n", code);
    /* isa-debug-exit: QEMU terminates with status (code << 1) | 1. */
    outl(DEBUG_EXIT_PORT, code);

    /*
     * QEMU 10 handles the write as a shutdown request that its main loop
     * acts on a moment later. Halting with interrupts off makes that moment
     * cost almost nothing: the total at QEMU's exit varies only by whether
     * QEMU pauses the vCPU before or after this loop's 3 instructions (a
     * spin here ran on for 28k-70k instructions, a different number each
     * time). Without the device the guest stays
     * halted; a controller's watchdog ends it.
     */
    if (guest_exit_spins) {
        /* "exit-spin": run on, as a guest that does not halt would. */
        for (;;)
            __asm__ volatile("" ::: "memory");
    }
    for (;;)
        __asm__ volatile("cli; hlt");
}

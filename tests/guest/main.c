/*
 * main.c - command line parsing and the test modes of the guest.
 *
 * The mode comes from the multiboot command line (QEMU: -append "..."):
 *   compute [loops=]N                 busy loop of exactly 2*N instructions
 *   idle [ticks=]T period_us=P        PIT-driven HLT loop, one line per tick
 *   time [count=]N delay=L            read HPET/TSC N times, busy in between
 *   send [count=]N gap=G              N frames "#k t\n" stamped with the TSC
 *   recv [count=]N                    read N frames, print when each arrived
 *   transmit [count=]N gap=G size=S   N Ethernet frames through the e1000
 *   receive [count=]N                 N Ethernet frames from the e1000
 *   echo [count=]N                    N Ethernet frames, each sent back
 * See README.md for the output format and exit codes.
 */
#include "guest.h"

#define MB_LOADER_MAGIC 0x2BADB002u
#define MB_INFO_CMDLINE (1u << 2)

struct mb_info {
    u32 flags;
    u32 mem_lower;
    u32 mem_upper;
    u32 boot_device;
    u32 cmdline; /* physical address of a NUL-terminated string */
};

#define PIT_HZ 1193182u

#define CMDLINE_MAX 256
#define MAX_WORDS 16

static char cmdline[CMDLINE_MAX];
static char *words[MAX_WORDS];
static unsigned int nwords;

/* ---- small string helpers ---------------------------------------------- */

static int str_eq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static char *str_chr(char *s, char c)
{
    for (; *s; s++)
        if (*s == c)
            return s;
    return NULL_PTR;
}

/* Decimal only; rejects empty strings, other characters and overflow. */
static int parse_u32(const char *s, u32 *out)
{
    u64 v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (u32)(*s - '0');
        if (v > 0xFFFFFFFFull)
            return -1;
    }
    *out = (u32)v;
    return 0;
}

/* ---- command line ------------------------------------------------------- */

static void usage_error(const char *what, const char *word)
{
    gprintf("qsync-guest: %s '%s'\n", what, word);
    guest_exit(GUEST_EXIT_USAGE);
}

static void split_cmdline(u32 magic, const struct mb_info *mbi)
{
    const char *src = "";
    unsigned int i;
    char *p;

    if (magic != MB_LOADER_MAGIC)
        gprintf("qsync-guest: not started by a multiboot loader (eax=%x)\n",
                magic);
    else if (mbi->flags & MB_INFO_CMDLINE)
        src = (const char *)mbi->cmdline;

    for (i = 0; i + 1 < CMDLINE_MAX && src[i]; i++)
        cmdline[i] = src[i];
    cmdline[i] = '\0';

    for (p = cmdline; *p;) {
        while (*p == ' ' || *p == '\t')
            *p++ = '\0';
        if (*p == '\0')
            break;
        if (nwords < MAX_WORDS)
            words[nwords++] = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
    }
}

struct opt {
    const char *key;
    u32 *val;
    u32 min;
    u32 max;
};

/*
 * Parse the words after the mode: "key=value", or one bare number which
 * sets the first option. Anything else is a usage error.
 */
static void parse_opts(unsigned int first, struct opt *opts, unsigned int nopts)
{
    int bare_used = 0;
    unsigned int i, j;

    for (i = first; i < nwords; i++) {
        char *w = words[i];
        char *eq = str_chr(w, '=');
        struct opt *o = NULL_PTR;
        const char *val = w;

        if (eq) {
            *eq = '\0';
            for (j = 0; j < nopts; j++)
                if (str_eq(w, opts[j].key))
                    o = &opts[j];
            val = eq + 1;
            if (!o) {
                *eq = '=';
                usage_error("unknown option", w);
            }
        } else if (!bare_used) {
            o = &opts[0];
            bare_used = 1;
        } else {
            usage_error("unexpected argument", w);
        }
        if (parse_u32(val, o->val) != 0 || *o->val < o->min ||
            *o->val > o->max) {
            if (eq)
                *eq = '=';
            usage_error("bad value in", w);
        }
    }
}

/* ---- modes -------------------------------------------------------------- */

/*
 * Exactly two instructions per iteration: dec, jnz. The count is in ECX
 * and nothing else runs inside the loop, so the loop retires 2*n
 * instructions (n >= 1).
 */
static void spin(u32 n)
{
    if (n == 0)
        return;
    __asm__ volatile("1:\n\t"
                     "dec %0\n\t"
                     "jnz 1b"
                     : "+c"(n)
                     :
                     : "cc");
}

static void mode_compute(unsigned int first)
{
    u32 loops = 100000000u;
    struct opt opts[] = { { "loops", &loops, 0, 0xFFFFFFFFu } };

    parse_opts(first, opts, 1);
    gprintf("qsync-guest: compute start loops=%u hpet_ns=%llu tsc=%llu\n",
            loops, hpet_ns(), rdtsc());
    spin(loops);
    gprintf("qsync-guest: compute done loops=%u hpet_ns=%llu tsc=%llu\n",
            loops, hpet_ns(), rdtsc());
    guest_exit(GUEST_EXIT_OK);
}

static void need_hpet(void)
{
    if (hpet_period_fs() == 0) {
        serial_puts("qsync-guest: no HPET at 0xfed00000\n");
        guest_exit(GUEST_EXIT_NOHW);
    }
}

static void mode_idle(unsigned int first)
{
    u32 ticks = 100, period_us = 1000;
    struct opt opts[] = {
        { "ticks", &ticks, 1, 0xFFFFFFFFu },
        /* PIT divisor must land in 2..65535 */
        { "period_us", &period_us, 2, 54925 },
    };
    u32 divisor, period_ns, k;

    parse_opts(first, opts, 2);
    need_hpet();

    divisor = (u32)udiv64_32((u64)PIT_HZ * period_us + 500000u, 1000000u,
                             NULL_PTR);
    period_ns = (u32)muldiv64_32(divisor, 1000000000u, PIT_HZ);
    gprintf("qsync-guest: idle start ticks=%u period_us=%u pit_divisor=%u "
            "period_ns=%u\n",
            ticks, period_us, divisor, period_ns);

    pit_start_periodic(divisor);
    /*
     * Re-initialising the PIC drops any IRQ0 edge latched while it was
     * masked (the firmware's timer, pit_quiesce's one shot, the mode
     * switch), so tick 1 is the first period of our own timer.
     */
    pic_init();
    guest_ticks = 0;
    pic_unmask_irq0();

    for (k = 1; k <= ticks; k++) {
        for (;;) {
            cli();
            if (guest_ticks >= k)
                break;
            /* sti's one-instruction shadow makes "sti; hlt" race-free. */
            __asm__ volatile("sti\n\thlt" ::: "memory");
        }
        sti();
        gprintf("qsync-guest: tick %u hpet_ns=%llu tsc=%llu\n", k, hpet_ns(),
                rdtsc());
    }

    cli();
    pic_init();
    pit_quiesce();
    gprintf("qsync-guest: idle done ticks=%u irqs=%u\n", ticks, guest_ticks);
    guest_exit(GUEST_EXIT_OK);
}

static void mode_time(unsigned int first)
{
    u32 count = 10, delay = 1000000;
    struct opt opts[] = {
        { "count", &count, 1, 0xFFFFFFFFu },
        { "delay", &delay, 0, 0xFFFFFFFFu },
    };
    u32 k;

    parse_opts(first, opts, 2);
    need_hpet();
    gprintf("qsync-guest: time start count=%u delay=%u\n", count, delay);
    for (k = 1; k <= count; k++) {
        if (k > 1)
            spin(delay);
        gprintf("qsync-guest: time %u hpet_ns=%llu tsc=%llu\n", k, hpet_ns(),
                rdtsc());
    }
    gprintf("qsync-guest: time done count=%u\n", count);
    guest_exit(GUEST_EXIT_OK);
}

/* Halts for good, with interrupts off: virtual time goes on (QEMU's idle
 * warp) while the guest does nothing. For a node whose peer still runs. */
static void halt_forever(void) __attribute__((noreturn));
static void halt_forever(void)
{
    cli();
    for (;;)
        __asm__ volatile("hlt" ::: "memory");
}

/*
 * One node of examples/two-nodes. Frames are "#k t\n": the frame number
 * and the TSC (the virtual time in ns under -icount) read just before the
 * frame's first byte is written. They stay within 14 bytes while t is below
 * one second, so the receiver's FIFO takes a whole frame at once.
 */
static void mode_send(unsigned int first)
{
    u32 count = 10, gap = 20000;
    struct opt opts[] = {
        { "count", &count, 1, 99 },
        { "gap", &gap, 1, 0xFFFFFFFFu },
    };
    u32 k;

    parse_opts(first, opts, 2);
    gprintf("qsync-guest: send start count=%u gap=%u\n", count, gap);
    for (k = 1; k <= count; k++) {
        spin(gap + 1000u * k); /* uneven gaps: frames leave mid-quantum */
        gprintf("#%u %llu\n", k, rdtsc());
    }
    gprintf("qsync-guest: send done count=%u\n", count);
    halt_forever();
}

static u64 parse_u64_at(const char **s)
{
    u64 v = 0;
    while (**s >= '0' && **s <= '9')
        v = v * 10 + (u64)(*(*s)++ - '0');
    return v;
}

/* Reads frames from COM1 and prints, for each, its number, the send time
 * it carries, and the TSC when its first byte was seen. */
static void mode_recv(unsigned int first)
{
    u32 count = 10;
    struct opt opts[] = { { "count", &count, 1, 99 } };
    char frame[32];
    u32 k;

    parse_opts(first, opts, 1);
    serial_rx_init();
    gprintf("qsync-guest: recv start count=%u\n", count);
    for (k = 1; k <= count; k++) {
        unsigned int n = 0;
        u8 c;
        u64 arrived, num, sent;
        const char *p;

        do /* skip anything before a frame */
            c = serial_getc();
        while (c != '#');
        arrived = rdtsc();
        while ((c = serial_getc()) != '\n' && n + 1 < sizeof frame)
            frame[n++] = (char)c;
        frame[n] = '\0';
        p = frame;
        num = parse_u64_at(&p);
        if (*p == ' ')
            p++;
        sent = parse_u64_at(&p);
        gprintf("qsync-guest: recv %llu sent=%llu arrived=%llu latency=%llu\n", num,
                sent, arrived, arrived - sent);
    }
    gprintf("qsync-guest: recv done count=%u\n", count);
    halt_forever();
}

/* ---- Ethernet (e1000.c) --------------------------------------------------- */

#define ETH_HLEN 14u
#define ETH_TYPE_TEST 0x88B5u /* IEEE 802 local experimental ethertype 1 */
#define NET_FRAME_MAX 1514u   /* without FCS; LPE is off */
/* QEMU's e1000 arms its 1,000 ms RX flush timer at the RCTL write, from
 * the virtual clock truncated to a millisecond; wait 1 ms more. */
#define NET_RX_HOLD_NS 1001000000ull

static u32 be32(const u8 *p)
{
    return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3];
}

/* Sleeps (sti; hlt, woken by PIT ticks) until the TSC reads at least t. */
static void sleep_until(u64 t)
{
    pit_start_periodic(65535); /* a tick every 54.9 ms */
    pic_init();
    pic_unmask_irq0();
    for (;;) {
        cli();
        if (rdtsc() >= t)
            break;
        __asm__ volatile("sti\n\thlt" ::: "memory");
    }
    pic_init(); /* everything masked again */
    pit_quiesce();
}

/* Sets the NIC up; with rx, also waits out the receive hold of the RCTL
 * write, so that the NIC takes frames from the "net ready" line on. */
static void net_up(int rx)
{
    net_init();
    if (rx)
        sleep_until(net_rctl_tsc() + NET_RX_HOLD_NS);
    gprintf("qsync-guest: net ready t=%llu link=%u\n", rdtsc(), (u32)net_link_up());
}

static void mode_transmit(unsigned int first)
{
    u32 count = 10, gap = 100000, size = 60;
    struct opt opts[] = {
        { "count", &count, 1, 0xFFFFFFFFu },
        { "gap", &gap, 0, 0xFFFFFFFFu },
        { "size", &size, ETH_HLEN + 4, NET_FRAME_MAX },
    };
    u64 last;
    u32 k, i;

    parse_opts(first, opts, 3);
    gprintf("qsync-guest: transmit start count=%u gap=%u size=%u\n", count, gap, size);
    net_up(0);
    last = rdtsc();
    for (k = 1; k <= count; k++) {
        u8 *f = net_tx_buffer();
        u64 t;

        memset(f, 0xFF, 6); /* broadcast */
        memcpy(f + 6, net_mac(), 6);
        f[12] = (u8)(ETH_TYPE_TEST >> 8);
        f[13] = (u8)ETH_TYPE_TEST;
        f[14] = (u8)(k >> 24);
        f[15] = (u8)(k >> 16);
        f[16] = (u8)(k >> 8);
        f[17] = (u8)k;
        for (i = ETH_HLEN + 4; i < size; i++)
            f[i] = (u8)i;
        while (rdtsc() - last < gap)
            ;
        t = net_tx(size);
        last = t;
        gprintf("qsync-guest: tx %u len=%u t=%llu\n", k, size, t);
    }
    gprintf("qsync-guest: transmit done count=%u\n", count);
    guest_exit(GUEST_EXIT_OK);
}

/* "len=L type=0xTTTT num=M data=<the first 8 payload bytes>" */
static void print_frame(const u8 *f, u32 len)
{
    u8 pay[8];
    u32 i;

    for (i = 0; i < sizeof pay; i++)
        pay[i] = ETH_HLEN + i < len ? f[ETH_HLEN + i] : 0;
    gprintf("len=%u type=0x", len);
    net_put_hex(f + 12, 2, 0);
    gprintf(" num=%u data=", be32(pay));
    net_put_hex(pay, sizeof pay, 0);
}

static void mode_receive(unsigned int first)
{
    u32 count = 10;
    struct opt opts[] = { { "count", &count, 1, 0xFFFFFFFFu } };
    u32 k;

    parse_opts(first, opts, 1);
    gprintf("qsync-guest: receive start count=%u\n", count);
    net_up(1);
    for (k = 1; k <= count; k++) {
        u64 from = rdtsc(), t;
        u8 *f;
        u32 len;

        t = net_rx_wait(&f, &len);
        gprintf("qsync-guest: rx %u ", k);
        print_frame(f, len);
        gprintf(" from=%llu t=%llu\n", from, t);
        net_rx_release();
    }
    gprintf("qsync-guest: receive done count=%u\n", count);
    guest_exit(GUEST_EXIT_OK);
}

static void mode_echo(unsigned int first)
{
    u32 count = 10;
    struct opt opts[] = { { "count", &count, 1, 0xFFFFFFFFu } };
    u32 k;

    parse_opts(first, opts, 1);
    gprintf("qsync-guest: echo start count=%u\n", count);
    net_up(1);
    for (k = 1; k <= count; k++) {
        u64 from = rdtsc(), rx, tx;
        u8 *f;
        u32 len;

        rx = net_rx_wait(&f, &len);
        /* Back to its sender, from this NIC, sent from the RX buffer. */
        memcpy(f, f + 6, 6);
        memcpy(f + 6, net_mac(), 6);
        tx = net_tx_at(f, len);
        gprintf("qsync-guest: echo %u ", k);
        print_frame(f, len);
        gprintf(" from=%llu rx=%llu tx=%llu\n", from, rx, tx);
        net_rx_release();
    }
    gprintf("qsync-guest: echo done count=%u\n", count);
    guest_exit(GUEST_EXIT_OK);
}

static const struct {
    const char *name;
    void (*run)(unsigned int first);
} modes[] = {
    { "compute", mode_compute },
    { "idle", mode_idle },
    { "time", mode_time },
    { "send", mode_send },
    { "recv", mode_recv },
    { "transmit", mode_transmit },
    { "receive", mode_receive },
    { "echo", mode_echo },
};

#define NMODES (sizeof modes / sizeof modes[0])

static int find_mode(const char *w)
{
    unsigned int i;
    for (i = 0; i < NMODES; i++)
        if (str_eq(w, modes[i].name))
            return (int)i;
    return -1;
}

void guest_main(u32 magic, const struct mb_info *mbi) __attribute__((noreturn));

void guest_main(u32 magic, const struct mb_info *mbi)
{
    unsigned int first = 0;
    const char *mode;
    int m;

    serial_init();
    idt_init();
    pic_init();
    pit_quiesce();
    hpet_init();
    split_cmdline(magic, mbi);

    /*
     * QEMU (like GRUB) puts the kernel's file name in front of the -append
     * text. Skip the first word unless it is itself a mode name.
     */
    if (nwords > 0 && find_mode(words[0]) < 0)
        first = 1;
    /* "exit-spin" before the mode: keep running after the exit request. */
    if (first < nwords && str_eq(words[first], "exit-spin")) {
        guest_exit_spins = 1;
        first++;
    }
    mode = first < nwords ? words[first] : "";

    gprintf("qsync-guest: mode=%s\n", mode);
    m = find_mode(mode);
    if (m < 0)
        usage_error("unknown mode", mode);
    modes[m].run(first + 1);
    guest_exit(GUEST_EXIT_OK); /* not reached: every mode exits */
}

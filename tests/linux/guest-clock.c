/*
 * guest-clock: the Linux demo guest's view of QEMU's virtual clock.
 *
 *   guest-clock [TEXT...]
 *
 * writes TEXT (the arguments joined by spaces), then " clock_ns=N" and a
 * newline, in one write(2) to stdout, where N is the guest's clock in
 * nanoseconds since machine reset, read just before that write. Then it
 * reads the clock again once the write has returned, and writes a second
 * line "qsync-linux: written clock_ns=M". The moment the marker's last byte
 * left the guest lies between N and M (a few microseconds apart), which is
 * what a test compares with the virtual time of the quantum that carried
 * it. The marker line of tests/linux/init is printed this way.
 *
 * The clock is the CPU's counter that QEMU drives from its virtual clock
 * (QEMU_CLOCK_VIRTUAL), whose origin is machine reset:
 *   x86_64   rdtsc: under -icount QEMU's TSC is cpu_get_ticks(), which is
 *            the virtual clock in ns (1 tick = 1 ns);
 *   aarch64  CNTVCT_EL0 converted with CNTFRQ_EL0: the generic timer
 *            counts the virtual clock at CNTFRQ Hz (62.5 MHz on QEMU's
 *            cortex-a57, 16 ns a tick); CNTVOFF_EL2 is 0 without EL2.
 * Linux lets user space read both. The numbers mean virtual time only
 * under QEMU with -icount; on real hardware they are a cycle count.
 *
 * Freestanding: no libc, raw system calls, built static by
 * tests/linux/make-guest.sh for both architectures.
 */

typedef unsigned long u64;
typedef long i64;

#if defined(__x86_64__)

__asm__(".text\n"
        ".globl _start\n"
        "_start:\n"
        "  xor %ebp, %ebp\n"
        "  mov %rsp, %rdi\n" /* argc, argv[], NULL, envp[] */
        "  and $-16, %rsp\n"
        "  call guest_clock_main\n"
        "  hlt\n");

#define SYS_WRITE 1
#define SYS_EXIT_GROUP 231

static i64 syscall3(i64 nr, i64 a, i64 b, i64 c)
{
    i64 ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}

static u64 clock_ns(void)
{
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return ((u64)hi << 32) | lo;
}

#elif defined(__aarch64__)

__asm__(".text\n"
        ".globl _start\n"
        "_start:\n"
        "  mov x29, #0\n"
        "  mov x30, #0\n"
        "  mov x0, sp\n" /* argc, argv[], NULL, envp[]; sp is 16-aligned */
        "  bl guest_clock_main\n"
        "1: b 1b\n");

#define SYS_WRITE 64
#define SYS_EXIT_GROUP 94

static i64 syscall3(i64 nr, i64 a, i64 b, i64 c)
{
    register i64 x8 __asm__("x8") = nr;
    register i64 x0 __asm__("x0") = a;
    register i64 x1 __asm__("x1") = b;
    register i64 x2 __asm__("x2") = c;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}

static u64 clock_ns(void)
{
    u64 ticks, freq;
    __asm__ volatile("isb\n\tmrs %0, cntvct_el0" : "=r"(ticks)::"memory");
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(freq));
    if (freq == 0)
        return 0;
    /* ticks * 1e9 / freq without overflow: freq < 2^32, so the remainder
     * times 1e9 fits in 64 bits. */
    return ticks / freq * 1000000000ul + ticks % freq * 1000000000ul / freq;
}

#else
#error "guest-clock: x86_64 or aarch64 only"
#endif

static void out(const char *s, u64 n)
{
    while (n > 0) {
        i64 w = syscall3(SYS_WRITE, 1, (i64)s, (i64)n);
        if (w <= 0) {
            if (w == -4) /* EINTR */
                continue;
            syscall3(SYS_EXIT_GROUP, 1, 0, 0);
        }
        s += w;
        n -= (u64)w;
    }
}

static char line[4096];

/* Appends t in decimal and a newline at buf[n]; returns the new length. */
static u64 put_clock(char *buf, u64 n, u64 t)
{
    char digits[20];
    int d = 0;
    do {
        digits[d++] = (char)('0' + t % 10);
        t /= 10;
    } while (t);
    while (d)
        buf[n++] = digits[--d];
    buf[n++] = '\n';
    return n;
}

void guest_clock_main(i64 *sp);

void guest_clock_main(i64 *sp)
{
    i64 argc = sp[0];
    char **argv = (char **)(sp + 1);
    static const char key[] = "clock_ns=";
    /* Room left for the key, 20 digits and the newline. */
    u64 room = sizeof line - (sizeof key - 1) - 21 - 1;
    u64 n = 0;

    for (i64 i = 1; i < argc; i++) {
        for (const char *p = argv[i]; *p && n < room; p++)
            line[n++] = *p;
        if (n < room)
            line[n++] = ' ';
    }
    for (u64 i = 0; i < sizeof key - 1; i++)
        line[n++] = key[i];

    /* Everything else is ready: read the clock and write the line at once. */
    n = put_clock(line, n, clock_ns());
    out(line, n);
    /* And when the write is done. */
    static const char after[] = "qsync-linux: written clock_ns=";
    n = 0;
    for (u64 i = 0; i < sizeof after - 1; i++)
        line[n++] = after[i];
    n = put_clock(line, n, clock_ns());
    out(line, n);
    syscall3(SYS_EXIT_GROUP, 0, 0, 0);
}

/*
 * console.c - polled output on COM1 and a minimal printf.
 *
 * Lines end in a bare '\n' (no '\r'), so the output read from QEMU's
 * "-serial stdio" through a pipe is plain text.
 */
#include "guest.h"

#define COM1 0x3F8
#define UART_THR 0 /* transmit holding register (DLAB=0) */
#define UART_IER 1 /* interrupt enable (DLAB=0) */
#define UART_DLL 0 /* divisor low (DLAB=1) */
#define UART_DLM 1 /* divisor high (DLAB=1) */
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_THRE 0x20
#define LSR_DR 0x01
#define UART_RBR 0 /* receive buffer register (DLAB=0) */

void serial_init(void)
{
    outb(COM1 + UART_IER, 0x00); /* no UART interrupts: we poll */
    outb(COM1 + UART_LCR, 0x80); /* DLAB on */
    outb(COM1 + UART_DLL, 0x01); /* 115200 baud */
    outb(COM1 + UART_DLM, 0x00);
    outb(COM1 + UART_LCR, 0x03); /* 8 data bits, no parity, 1 stop bit */
    outb(COM1 + UART_FCR, 0x07); /* enable and clear the FIFOs */
    outb(COM1 + UART_MCR, 0x03); /* DTR, RTS */
}

void serial_putc(char c)
{
    while ((inb(COM1 + UART_LSR) & LSR_THRE) == 0)
        ;
    outb(COM1 + UART_THR, (u8)c);
}

void serial_rx_init(void)
{
    outb(COM1 + UART_FCR, 0xC7); /* enable, clear both FIFOs, level 14 */
}

u8 serial_getc(void)
{
    while ((inb(COM1 + UART_LSR) & LSR_DR) == 0)
        ;
    return inb(COM1 + UART_RBR);
}

void serial_puts(const char *s)
{
    while (*s)
        serial_putc(*s++);
}

static void put_u64(u64 v)
{
    char buf[21];
    int i = (int)sizeof buf;
    buf[--i] = '\0';
    do {
        u32 digit;
        v = udiv64_32(v, 10, &digit);
        buf[--i] = (char)('0' + digit);
    } while (v != 0);
    serial_puts(&buf[i]);
}

static void put_hex32(u32 v)
{
    static const char hex[] = "0123456789abcdef";
    int shift;
    serial_puts("0x");
    for (shift = 28; shift >= 0; shift -= 4)
        serial_putc(hex[(v >> shift) & 0xF]);
}

void vgprintf(const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            serial_putc(*fmt);
            continue;
        }
        fmt++;
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            serial_puts(s ? s : "(null)");
            break;
        }
        case 'c':
            serial_putc((char)va_arg(ap, int));
            break;
        case 'u':
            put_u64(va_arg(ap, u32));
            break;
        case 'x':
            put_hex32(va_arg(ap, u32));
            break;
        case 'l':
            if (fmt[1] == 'l' && fmt[2] == 'u') {
                fmt += 2;
                put_u64(va_arg(ap, u64));
            } else {
                serial_puts("%?");
            }
            break;
        case '%':
            serial_putc('%');
            break;
        case '\0':
            return;
        default:
            serial_putc('%');
            serial_putc(*fmt);
            break;
        }
    }
}

void gprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vgprintf(fmt, ap);
    va_end(ap);
}

/*
 * e1000.c - PCI configuration space and QEMU's e1000 (82540EM, 8086:100e),
 * driven by polling: no interrupts, one TX ring and one RX ring of
 * NET_DESCS descriptors with NET_BUF_SIZE-byte buffers each.
 *
 * The descriptors and buffers live in .netbuf, a section that is neither
 * loaded nor cleared (clearing it with rep stosl would cost one instruction
 * per dword under -icount); net_init() writes every descriptor before the
 * NIC may read one. Paging is off, so their addresses are physical ones.
 */
#include "guest.h"

/* ---- PCI configuration space (mechanism #1) ------------------------------ */

#define PCI_CONFIG_ADDR 0xCF8
#define PCI_CONFIG_DATA 0xCFC
#define PCI_ID 0x00
#define PCI_COMMAND 0x04
#define PCI_BAR0 0x10
#define PCI_CMD_MEMORY 0x0002u
#define PCI_CMD_MASTER 0x0004u

#define E1000_VENDOR 0x8086u
#define E1000_DEVICE 0x100Eu

static u32 pci_addr(u32 dev, u32 reg)
{
    return 0x80000000u | (dev << 11) | (reg & 0xFCu); /* bus 0, function 0 */
}

static u32 pci_read32(u32 dev, u32 reg)
{
    outl(PCI_CONFIG_ADDR, pci_addr(dev, reg));
    return inl(PCI_CONFIG_DATA);
}

static u16 pci_read16(u32 dev, u32 reg)
{
    outl(PCI_CONFIG_ADDR, pci_addr(dev, reg));
    return inw((u16)(PCI_CONFIG_DATA + (reg & 2)));
}

static void pci_write16(u32 dev, u32 reg, u16 val)
{
    outl(PCI_CONFIG_ADDR, pci_addr(dev, reg));
    outw((u16)(PCI_CONFIG_DATA + (reg & 2)), val);
}

/* ---- e1000 registers ----------------------------------------------------- */

#define REG_CTRL 0x0000
#define REG_STATUS 0x0008
#define REG_EERD 0x0014
#define REG_ICR 0x00C0
#define REG_IMC 0x00D8
#define REG_RCTL 0x0100
#define REG_TCTL 0x0400
#define REG_TIPG 0x0410
#define REG_RDBAL 0x2800
#define REG_RDBAH 0x2804
#define REG_RDLEN 0x2808
#define REG_RDH 0x2810
#define REG_RDT 0x2818
#define REG_TDBAL 0x3800
#define REG_TDBAH 0x3804
#define REG_TDLEN 0x3808
#define REG_TDH 0x3810
#define REG_TDT 0x3818
#define REG_RAL0 0x5400
#define REG_RAH0 0x5404

#define CTRL_SLU (1u << 6)
#define CTRL_RST (1u << 26)
#define STATUS_LU (1u << 1)
#define EERD_START 1u
#define EERD_DONE (1u << 4)
#define RAH_AV (1u << 31)
/* Receiver on, unicast and multicast promiscuous, broadcasts accepted,
 * 2048-byte buffers (BSIZE 00), the CRC stripped. */
#define RCTL_VALUE ((1u << 1) | (1u << 3) | (1u << 4) | (1u << 15) | (1u << 26))
/* Transmitter on, short frames padded, collision threshold and distance as
 * the manual recommends (QEMU ignores all but EN). */
#define TCTL_VALUE ((1u << 1) | (1u << 3) | (0x0Fu << 4) | (0x40u << 12))

#define TXD_CMD_EOP 0x01
#define TXD_CMD_IFCS 0x02
#define TXD_CMD_RS 0x08
#define DESC_DD 0x01

struct tx_desc {
    u32 addr_lo;
    u32 addr_hi;
    u16 length;
    u8 cso;
    u8 cmd;
    u8 status;
    u8 css;
    u16 special;
};

struct rx_desc {
    u32 addr_lo;
    u32 addr_hi;
    u16 length;
    u16 csum;
    u8 status;
    u8 errors;
    u16 special;
};

static struct tx_desc tx_ring[NET_DESCS] __attribute__((section(".netbuf"), aligned(128)));
static struct rx_desc rx_ring[NET_DESCS] __attribute__((section(".netbuf"), aligned(128)));
static u8 tx_buf[NET_DESCS][NET_BUF_SIZE] __attribute__((section(".netbuf"), aligned(16)));
static u8 rx_buf[NET_DESCS][NET_BUF_SIZE] __attribute__((section(".netbuf"), aligned(16)));

static u32 mmio;      /* BAR0 */
static u32 tx_next;   /* the descriptor the next transmit uses */
static u32 rx_next;   /* the descriptor the next frame arrives in */
static u8 mac[6];
static u64 rctl_tsc;  /* when RCTL was written */

static inline u32 rd(u32 reg)
{
    return *(volatile u32 *)(mmio + reg);
}

static inline void wr(u32 reg, u32 val)
{
    *(volatile u32 *)(mmio + reg) = val;
}

static u16 eeprom_read(u32 word)
{
    u32 v;
    wr(REG_EERD, (word << 8) | EERD_START);
    do
        v = rd(REG_EERD);
    while ((v & EERD_DONE) == 0);
    return (u16)(v >> 16);
}

void net_put_hex(const u8 *p, u32 n, char sep)
{
    static const char hex[] = "0123456789abcdef";
    u32 i;
    for (i = 0; i < n; i++) {
        if (i > 0 && sep)
            serial_putc(sep);
        serial_putc(hex[p[i] >> 4]);
        serial_putc(hex[p[i] & 0xF]);
    }
}

static void no_nic(const char *why)
{
    gprintf("qsync-guest: net %s\n", why);
    guest_exit(GUEST_EXIT_NOHW);
}

void net_init(void)
{
    u32 dev, id = 0, bar0, ral, rah, i;
    u16 ee[3];
    u8 ee_mac[6];

    for (dev = 0; dev < 32; dev++) {
        id = pci_read32(dev, PCI_ID);
        if (id == (E1000_DEVICE << 16 | E1000_VENDOR))
            break;
    }
    if (dev == 32)
        no_nic("no e1000 (8086:100e) on PCI bus 0");

    /* The firmware (SeaBIOS) assigns the BARs before the kernel boots. */
    bar0 = pci_read32(dev, PCI_BAR0);
    if ((bar0 & 1u) != 0 || (bar0 & ~0xFu) == 0)
        no_nic("e1000 BAR0 is not an assigned memory BAR");
    mmio = bar0 & ~0xFu;
    pci_write16(dev, PCI_COMMAND,
                (u16)(pci_read16(dev, PCI_COMMAND) | PCI_CMD_MEMORY | PCI_CMD_MASTER));

    wr(REG_IMC, 0xFFFFFFFFu); /* no interrupts: the guest polls */
    wr(REG_CTRL, rd(REG_CTRL) | CTRL_RST);
    while (rd(REG_CTRL) & CTRL_RST)
        ;
    wr(REG_IMC, 0xFFFFFFFFu);
    (void)rd(REG_ICR);

    /* The MAC: QEMU puts the mac property in the EEPROM (words 0-2) and in
     * RAL0/RAH0. Use RAL0/RAH0 when valid, else program them from the
     * EEPROM. */
    for (i = 0; i < 3; i++)
        ee[i] = eeprom_read(i);
    ral = rd(REG_RAL0);
    rah = rd(REG_RAH0);
    if ((rah & RAH_AV) == 0) {
        ral = (u32)ee[0] | (u32)ee[1] << 16;
        rah = (u32)ee[2] | RAH_AV;
        wr(REG_RAL0, ral);
        wr(REG_RAH0, rah);
    }
    for (i = 0; i < 4; i++)
        mac[i] = (u8)(ral >> (8 * i));
    mac[4] = (u8)rah;
    mac[5] = (u8)(rah >> 8);

    for (i = 0; i < NET_DESCS; i++) {
        memset(&tx_ring[i], 0, sizeof tx_ring[i]);
        tx_ring[i].addr_lo = (u32)tx_buf[i];
        tx_ring[i].status = DESC_DD; /* free */
        memset(&rx_ring[i], 0, sizeof rx_ring[i]);
        rx_ring[i].addr_lo = (u32)rx_buf[i];
    }
    wr(REG_TDBAL, (u32)tx_ring);
    wr(REG_TDBAH, 0);
    wr(REG_TDLEN, sizeof tx_ring);
    wr(REG_TDH, 0);
    wr(REG_TDT, 0);
    wr(REG_TIPG, 10u | 10u << 10 | 10u << 20);
    wr(REG_TCTL, TCTL_VALUE);

    wr(REG_RDBAL, (u32)rx_ring);
    wr(REG_RDBAH, 0);
    wr(REG_RDLEN, sizeof rx_ring);
    wr(REG_RDH, 0);
    wr(REG_RDT, NET_DESCS - 1); /* all but one descriptor to the NIC */
    tx_next = 0;
    rx_next = 0;

    wr(REG_CTRL, rd(REG_CTRL) | CTRL_SLU);
    /* Once: QEMU holds receive for 1 s of virtual time after each write. */
    rctl_tsc = rdtsc();
    wr(REG_RCTL, RCTL_VALUE);

    for (i = 0; i < 3; i++) {
        ee_mac[2 * i] = (u8)ee[i];
        ee_mac[2 * i + 1] = (u8)(ee[i] >> 8);
    }
    gprintf("qsync-guest: net e1000 pci=0:%u.0 bar0=%x mac=", dev, mmio);
    net_put_hex(mac, 6, ':');
    serial_puts(" eeprom_mac=");
    net_put_hex(ee_mac, 6, ':');
    serial_putc('\n');
}

const u8 *net_mac(void)
{
    return mac;
}

int net_link_up(void)
{
    return (rd(REG_STATUS) & STATUS_LU) != 0;
}

u64 net_rctl_tsc(void)
{
    return rctl_tsc;
}

u8 *net_tx_buffer(void)
{
    return tx_buf[tx_next];
}

/*
 * The TSC is read by the instruction just before the store to TDT, in one
 * asm statement, so nothing the compiler schedules can come between them.
 * QEMU's e1000 transmits inside that store (the vCPU thread, synchronously).
 */
static u64 tx_doorbell(u32 tail)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc\n\t"
                     "movl %2, (%3)"
                     : "=&a"(lo), "=&d"(hi)
                     : "r"(tail), "r"(mmio + REG_TDT)
                     : "memory");
    return ((u64)hi << 32) | lo;
}

u64 net_tx_at(const u8 *frame, u32 len)
{
    struct tx_desc *d = &tx_ring[tx_next];
    u32 next = (tx_next + 1) % NET_DESCS;

    /* QEMU transmits within the TDT write, so a descriptor is free again
     * when the next one is used; wait for DD all the same. */
    while ((*(volatile u8 *)&d->status & DESC_DD) == 0)
        ;
    d->addr_lo = (u32)frame;
    d->addr_hi = 0;
    d->length = (u16)len;
    d->cso = 0;
    d->cmd = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS;
    d->status = 0;
    d->css = 0;
    d->special = 0;
    tx_next = next;
    return tx_doorbell(next);
}

u64 net_tx(u32 len)
{
    return net_tx_at(tx_buf[tx_next], len);
}

/*
 * Polls the next RX descriptor's DD bit. The loop is two instructions
 * (testb, jz), and the rdtsc right after it reads the clock as soon as the
 * guest sees the bit: see README.md for the bound. Returns that TSC.
 */
static u64 poll_dd(const volatile u8 *status)
{
    u32 lo, hi;
    __asm__ volatile("1:\n\t"
                     "testb $1, (%2)\n\t"
                     "jz 1b\n\t"
                     "rdtsc"
                     : "=&a"(lo), "=&d"(hi)
                     : "r"(status)
                     : "cc", "memory");
    return ((u64)hi << 32) | lo;
}

u64 net_rx_wait(u8 **data, u32 *len)
{
    struct rx_desc *d = &rx_ring[rx_next];
    u64 t = poll_dd(&d->status);

    /* LPE is off, so QEMU drops frames over 1522 bytes and every frame
     * fits one 2048-byte buffer (EOP set). */
    *data = rx_buf[rx_next];
    *len = d->length;
    return t;
}

void net_rx_release(void)
{
    struct rx_desc *d = &rx_ring[rx_next];
    u32 tail = rx_next;

    d->status = 0;
    d->length = 0;
    rx_next = (rx_next + 1) % NET_DESCS;
    /* The descriptor just emptied is now the one held back (RDT); the one
     * held back until now goes to the NIC. */
    wr(REG_RDT, tail);
}

/*
 * The native wire protocol between libqsync and the qsync plugin.
 *
 * This is the one place where messages are encoded and decoded. The library
 * and the plugin both compile wire.c, and tests/unit/test_wire.c holds the
 * encoding to docs/protocol.md byte for byte. Everything is little-endian
 * with fixed widths, so the two ends never depend on a compiler's struct
 * layout.
 *
 * Frame: u16 type, u16 reserved (0), u32 payload length, then the payload.
 */
#ifndef QSYNC_PROTO_WIRE_H
#define QSYNC_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define QSYNC__WIRE_MAJOR 1
#define QSYNC__WIRE_MINOR 4 /* 1: INPUT and QSYNC__WIRE_G_INPUT; 2: R_INPUT_WAITING;
                               3: FRAME, NIC_STATUS and QSYNC__WIRE_G_FRAMES;
                               4: NEXT and QSYNC__WIRE_G_NEXT */

#define QSYNC__WIRE_HEADER_SIZE 8u
/* Bounds every frame, so a garbage length can never make a reader allocate:
 * the largest is a FRAME carrying an Ethernet frame of
 * QSYNC__WIRE_MAX_ETHER bytes. */
#define QSYNC__WIRE_MAX_ETHER 16384u
#define QSYNC__WIRE_FRAME_FIXED 16u
#define QSYNC__WIRE_MAX_PAYLOAD (QSYNC__WIRE_FRAME_FIXED + QSYNC__WIRE_MAX_ETHER)
#define QSYNC__WIRE_MAX_FRAME (QSYNC__WIRE_HEADER_SIZE + QSYNC__WIRE_MAX_PAYLOAD)
#define QSYNC__WIRE_MAX_TEXT 1024u
#define QSYNC__WIRE_MAX_VCPUS 256u
/* Bytes of guest input one INPUT frame carries at most (fixed since
 * minor 1: a plugin of minor 1 or 2 reads frames of 4 KiB at most). */
#define QSYNC__WIRE_MAX_INPUT 4092u
/* NICs one plugin serves at most. */
#define QSYNC__WIRE_MAX_NICS 8u

enum qsync__wire_type {
    QSYNC__MSG_HELLO = 1,  /* plugin -> library, once, at install          */
    QSYNC__MSG_GRANT = 2,  /* library -> plugin: run until an absolute time  */
    QSYNC__MSG_REPORT = 3, /* plugin -> library: stopped at the deadline     */
    QSYNC__MSG_ERROR = 4,  /* either way: a fatal error with text            */
    QSYNC__MSG_EXIT = 5,   /* plugin -> library: QEMU is exiting by itself   */
    QSYNC__MSG_INPUT = 6,  /* library -> plugin, while stopped: bytes for a
                             guest serial port, delivered at this stop      */
    QSYNC__MSG_FRAME = 7,  /* both ways: an Ethernet frame. Library ->
                             plugin, while stopped: to be received at
                             time_ns; plugin -> library: sent at time_ns */
    QSYNC__MSG_NIC_STATUS = 8, /* plugin -> library, before a REPORT or EXIT:
                                 one NIC's counters                         */
    QSYNC__MSG_NEXT = 9 /* plugin -> library, right before a REPORT, only
                          when asked (next=1): every vCPU is halted at this
                          stop; when the guest's clock has its next timer */
};

/* Engines, as carried in HELLO. */
enum qsync__wire_engine {
    QSYNC__WIRE_ENGINE_INSN = 1,
    QSYNC__WIRE_ENGINE_TIMER = 2,
    QSYNC__WIRE_ENGINE_BLOCK = 3
};

/* Guarantee bits, as carried in HELLO. */
#define QSYNC__WIRE_G_EXACT 0x1u           /* every stop lands on the deadline    */
#define QSYNC__WIRE_G_NEVER_AHEAD_IDLE 0x2u /* idle warps never pass a deadline   */
#define QSYNC__WIRE_G_VCLOCK 0x4u          /* virtual_ns is QEMU's own clock      */
#define QSYNC__WIRE_G_INPUT 0x8u           /* INPUT is delivered (minor >= 1)     */
#define QSYNC__WIRE_G_FRAMES 0x10u         /* the plugin serves the NICs it was
                                              given (nics=), minor >= 3          */
#define QSYNC__WIRE_G_NEXT 0x20u           /* it sends NEXT at halted stops, as
                                              asked (next=1), minor >= 4         */

/* Report flag bits. */
#define QSYNC__WIRE_R_IDLE 0x1u      /* the guest was halted at some point    */
#define QSYNC__WIRE_R_DEVIATION 0x2u /* reached != deadline; see the fields   */
#define QSYNC__WIRE_R_INPUT_WAITING 0x4u /* input bytes the UART has not taken yet */

struct qsync__wire_hello {
    uint16_t major, minor;   /* protocol version                          */
    uint32_t plugin_version; /* (major << 16) | (minor << 8) | patch       */
    uint32_t n_vcpus;
    uint8_t engine;      /* enum qsync__wire_engine                         */
    uint8_t icount_shift;
    uint16_t api_version; /* the plugin API version QEMU reported          */
    uint32_t guarantees;  /* QSYNC__WIRE_G_*                                 */
    char target[64];      /* NUL-terminated, e.g. "x86_64"                  */
};

struct qsync__wire_grant {
    uint64_t seq;         /* 1, 2, 3, ...                                   */
    uint64_t deadline_ns; /* absolute virtual time                          */
};

struct qsync__wire_report {
    uint64_t seq;
    uint64_t deadline_ns;
    uint64_t virtual_ns;   /* the virtual time reached                       */
    uint64_t instructions; /* total executed, all vCPUs, since start         */
    int64_t overshoot;     /* instructions past the deadline (0 when exact)  */
    uint32_t flags;        /* QSYNC__WIRE_R_*                                  */
    uint32_t n_vcpus;
    uint64_t vcpu_insns[QSYNC__WIRE_MAX_VCPUS];
};

struct qsync__wire_error {
    int32_t code;
    char text[QSYNC__WIRE_MAX_TEXT]; /* NUL-terminated */
};

struct qsync__wire_exit {
    uint64_t virtual_ns;
    uint64_t instructions;
};

struct qsync__wire_input {
    uint32_t port; /* 0: the guest's first serial port (serial0)           */
    uint32_t len;  /* 1..QSYNC__WIRE_MAX_INPUT; carried as the frame length */
    uint8_t data[QSYNC__WIRE_MAX_INPUT];
};

struct qsync__wire_frame {
    uint32_t nic;     /* 0..QSYNC__WIRE_MAX_NICS-1                           */
    uint32_t len;     /* 1..QSYNC__WIRE_MAX_ETHER; carried as the frame length */
    uint64_t time_ns; /* virtual time: of its receipt (to the plugin) or of
                         its transmit (from the plugin)                     */
    uint8_t data[QSYNC__WIRE_MAX_ETHER];
};

/* NIC status flags. */
#define QSYNC__WIRE_NIC_RX_ON 0x1u      /* the NIC could receive at this stop */
#define QSYNC__WIRE_NIC_RX_EVER_ON 0x2u /* it ever could                      */

struct qsync__wire_nic_status {
    uint32_t nic;
    uint32_t flags;      /* QSYNC__WIRE_NIC_*                                */
    uint64_t rx_frames;  /* frames the NIC took, since start                 */
    uint64_t rx_dropped; /* frames dropped: too many waited                  */
    uint64_t rx_waiting; /* due frames waiting for the NIC now               */
    uint64_t tx_frames;  /* frames the NIC sent, since start                 */
    uint64_t tx_dropped; /* frames it sent that were too long to carry       */
};

/* NEXT: no timer of the guest's clock is armed. */
#define QSYNC__WIRE_NO_TIMER UINT64_MAX

struct qsync__wire_next {
    uint64_t timer_ns; /* absolute virtual time of the earliest timer of the
                          guest's clock (device timers, the NICs' receive
                          timers), or QSYNC__WIRE_NO_TIMER                */
};

struct qsync__wire_msg {
    uint16_t type;
    union {
        struct qsync__wire_hello hello;
        struct qsync__wire_grant grant;
        struct qsync__wire_report report;
        struct qsync__wire_error error;
        struct qsync__wire_exit exit;
        struct qsync__wire_input input;
        struct qsync__wire_frame frame;
        struct qsync__wire_nic_status nic_status;
        struct qsync__wire_next next;
    } u;
};

/* Decoder results. Negative values are errors. */
enum qsync__wire_status {
    QSYNC__WIRE_OK = 0,
    QSYNC__WIRE_NEED_MORE = 1,   /* a frame is not complete yet               */
    QSYNC__WIRE_EBADTYPE = -1,   /* unknown message type                      */
    QSYNC__WIRE_EBADLEN = -2,    /* length too large, or wrong for the type   */
    QSYNC__WIRE_EBADFIELD = -3,  /* a field holds an impossible value         */
    QSYNC__WIRE_ESPACE = -4      /* the output buffer is too small            */
};

/*
 * Encodes msg into buf. Returns the frame size in bytes, or QSYNC__WIRE_ESPACE
 * or QSYNC__WIRE_EBADFIELD.
 */
long qsync__wire_encode(const struct qsync__wire_msg *msg, uint8_t *buf, size_t cap);

/*
 * Encodes a FRAME message straight from its parts, without the 16 KiB
 * struct: nic < QSYNC__WIRE_MAX_NICS, 1 <= len <= QSYNC__WIRE_MAX_ETHER.
 * Returns the size or a negative status, as qsync__wire_encode().
 */
long qsync__wire_encode_frame(uint32_t nic, uint64_t time_ns, const void *data, size_t len,
                              uint8_t *buf, size_t cap);

/*
 * Decodes one frame from the start of buf. On QSYNC__WIRE_OK, *used is the
 * number of bytes consumed. QSYNC__WIRE_NEED_MORE means the frame is not
 * complete yet (nothing is consumed). A negative result means the stream is
 * corrupt and cannot be resynchronised.
 */
int qsync__wire_decode(const uint8_t *buf, size_t len, struct qsync__wire_msg *msg,
                       size_t *used);

/*
 * The length of the frame that starts buf, from its header alone: checks
 * the type, the reserved field and the payload's length for that type, as
 * qsync__wire_decode() does. Returns QSYNC__WIRE_OK and sets *frame_len
 * (header included), QSYNC__WIRE_NEED_MORE (fewer than
 * QSYNC__WIRE_HEADER_SIZE bytes), or a negative status.
 */
int qsync__wire_frame_len(const uint8_t *buf, size_t len, size_t *frame_len);

/* A short name for a decoder status, for error messages. */
const char *qsync__wire_status_text(int status);
const char *qsync__wire_engine_name(unsigned engine);

#endif

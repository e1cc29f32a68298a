/* Encoder and decoder of the native protocol; see wire.h and docs/protocol.md. */
#include "wire.h"

#include <string.h>

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Fixed payload sizes; REPORT and ERROR carry a variable tail. */
#define HELLO_SIZE (2 + 2 + 4 + 4 + 1 + 1 + 2 + 4 + 64)
#define GRANT_SIZE (8 + 8)
#define REPORT_FIXED (8 + 8 + 8 + 8 + 8 + 4 + 4)
#define ERROR_FIXED (4 + 2)
#define EXIT_SIZE (8 + 8)
#define INPUT_FIXED 4
#define FRAME_FIXED QSYNC__WIRE_FRAME_FIXED
#define NIC_STATUS_SIZE (4 + 4 + 8 * 5)
#define NEXT_SIZE 8

/* Copies a C string into a bounded field, always NUL-terminated. */
static size_t bounded_len(const char *s, size_t cap)
{
    size_t n = 0;
    while (n < cap && s[n] != '\0')
        n++;
    return n;
}

/* The encoders of the payloads: each writes its message's payload at p
 * and returns its length, or QSYNC__WIRE_EBADFIELD (never send what the
 * decoder would refuse); room is the space at p. */
static long encode_hello(const struct qsync__wire_hello *h, uint8_t *p, size_t room)
{
    size_t tl = bounded_len(h->target, sizeof h->target - 1);
    if (h->n_vcpus == 0 || h->n_vcpus > QSYNC__WIRE_MAX_VCPUS ||
        h->engine < QSYNC__WIRE_ENGINE_INSN || h->engine > QSYNC__WIRE_ENGINE_BLOCK ||
        h->icount_shift > 10)
        return QSYNC__WIRE_EBADFIELD;
    if (room < HELLO_SIZE)
        return QSYNC__WIRE_ESPACE;
    put16(p, h->major);
    put16(p + 2, h->minor);
    put32(p + 4, h->plugin_version);
    put32(p + 8, h->n_vcpus);
    p[12] = h->engine;
    p[13] = h->icount_shift;
    put16(p + 14, h->api_version);
    put32(p + 16, h->guarantees);
    memset(p + 20, 0, 64);
    memcpy(p + 20, h->target, tl);
    return HELLO_SIZE;
}

static long encode_report(const struct qsync__wire_report *r, uint8_t *p, size_t room)
{
    if (r->n_vcpus > QSYNC__WIRE_MAX_VCPUS)
        return QSYNC__WIRE_EBADFIELD;
    size_t len = REPORT_FIXED + 8u * r->n_vcpus;
    if (room < len)
        return QSYNC__WIRE_ESPACE;
    put64(p, r->seq);
    put64(p + 8, r->deadline_ns);
    put64(p + 16, r->virtual_ns);
    put64(p + 24, r->instructions);
    put64(p + 32, (uint64_t)r->overshoot);
    put32(p + 40, r->flags);
    put32(p + 44, r->n_vcpus);
    for (uint32_t i = 0; i < r->n_vcpus; i++)
        put64(p + REPORT_FIXED + 8u * i, r->vcpu_insns[i]);
    return (long)len;
}

static long encode_error(const struct qsync__wire_error *e, uint8_t *p, size_t room)
{
    size_t tl = bounded_len(e->text, QSYNC__WIRE_MAX_TEXT - 1);
    if (room < ERROR_FIXED + tl)
        return QSYNC__WIRE_ESPACE;
    put32(p, (uint32_t)e->code);
    put16(p + 4, (uint16_t)tl);
    memcpy(p + ERROR_FIXED, e->text, tl);
    return (long)(ERROR_FIXED + tl);
}

static long encode_input(const struct qsync__wire_input *in, uint8_t *p, size_t room)
{
    if (in->len == 0 || in->len > QSYNC__WIRE_MAX_INPUT || in->port != 0)
        return QSYNC__WIRE_EBADFIELD;
    if (room < INPUT_FIXED + in->len)
        return QSYNC__WIRE_ESPACE;
    put32(p, in->port);
    memcpy(p + INPUT_FIXED, in->data, in->len);
    return (long)(INPUT_FIXED + in->len);
}

static long encode_nic_status(const struct qsync__wire_nic_status *n, uint8_t *p, size_t room)
{
    if (n->nic >= QSYNC__WIRE_MAX_NICS)
        return QSYNC__WIRE_EBADFIELD;
    if (room < NIC_STATUS_SIZE)
        return QSYNC__WIRE_ESPACE;
    put32(p, n->nic);
    put32(p + 4, n->flags);
    put64(p + 8, n->rx_frames);
    put64(p + 16, n->rx_dropped);
    put64(p + 24, n->rx_waiting);
    put64(p + 32, n->tx_frames);
    put64(p + 40, n->tx_dropped);
    return NIC_STATUS_SIZE;
}

/* Two 64-bit fields: GRANT and EXIT. */
static long encode_pair(uint64_t a, uint64_t b, uint8_t *p, size_t room)
{
    if (room < 16)
        return QSYNC__WIRE_ESPACE;
    put64(p, a);
    put64(p + 8, b);
    return 16;
}

long qsync__wire_encode(const struct qsync__wire_msg *msg, uint8_t *buf, size_t cap)
{
    uint8_t *p = buf + QSYNC__WIRE_HEADER_SIZE;
    size_t room = cap > QSYNC__WIRE_HEADER_SIZE ? cap - QSYNC__WIRE_HEADER_SIZE : 0;
    long len;

    switch (msg->type) {
    case QSYNC__MSG_HELLO:
        len = encode_hello(&msg->u.hello, p, room);
        break;
    case QSYNC__MSG_GRANT:
        len = encode_pair(msg->u.grant.seq, msg->u.grant.deadline_ns, p, room);
        break;
    case QSYNC__MSG_REPORT:
        len = encode_report(&msg->u.report, p, room);
        break;
    case QSYNC__MSG_ERROR:
        len = encode_error(&msg->u.error, p, room);
        break;
    case QSYNC__MSG_EXIT:
        len = encode_pair(msg->u.exit.virtual_ns, msg->u.exit.instructions, p, room);
        break;
    case QSYNC__MSG_INPUT:
        len = encode_input(&msg->u.input, p, room);
        break;
    case QSYNC__MSG_FRAME:
        return qsync__wire_encode_frame(msg->u.frame.nic, msg->u.frame.time_ns,
                                        msg->u.frame.data, msg->u.frame.len, buf, cap);
    case QSYNC__MSG_NIC_STATUS:
        len = encode_nic_status(&msg->u.nic_status, p, room);
        break;
    case QSYNC__MSG_NEXT:
        if (room < NEXT_SIZE)
            return QSYNC__WIRE_ESPACE;
        put64(p, msg->u.next.timer_ns);
        len = NEXT_SIZE;
        break;
    default:
        return QSYNC__WIRE_EBADFIELD;
    }
    if (len < 0)
        return len;
    put16(buf, msg->type);
    put16(buf + 2, 0);
    put32(buf + 4, (uint32_t)len);
    return (long)QSYNC__WIRE_HEADER_SIZE + len;
}

long qsync__wire_encode_frame(uint32_t nic, uint64_t time_ns, const void *data, size_t len,
                              uint8_t *buf, size_t cap)
{
    if (len == 0 || len > QSYNC__WIRE_MAX_ETHER || nic >= QSYNC__WIRE_MAX_NICS)
        return QSYNC__WIRE_EBADFIELD;
    if (cap < QSYNC__WIRE_HEADER_SIZE + FRAME_FIXED + len)
        return QSYNC__WIRE_ESPACE;
    uint8_t *p = buf + QSYNC__WIRE_HEADER_SIZE;
    put16(buf, QSYNC__MSG_FRAME);
    put16(buf + 2, 0);
    put32(buf + 4, (uint32_t)(FRAME_FIXED + len));
    put32(p, nic);
    put32(p + 4, 0);
    put64(p + 8, time_ns);
    memcpy(p + FRAME_FIXED, data, len);
    return (long)(QSYNC__WIRE_HEADER_SIZE + FRAME_FIXED + len);
}

/* Whether plen is a payload length that a frame of this type can have. */
static int payload_len_ok(uint16_t type, uint32_t plen)
{
    switch (type) {
    case QSYNC__MSG_HELLO:
        return plen == HELLO_SIZE;
    case QSYNC__MSG_GRANT:
        return plen == GRANT_SIZE;
    case QSYNC__MSG_REPORT:
        return plen >= REPORT_FIXED && (plen - REPORT_FIXED) % 8 == 0 &&
               (plen - REPORT_FIXED) / 8 <= QSYNC__WIRE_MAX_VCPUS;
    case QSYNC__MSG_ERROR:
        return plen >= ERROR_FIXED && plen <= ERROR_FIXED + QSYNC__WIRE_MAX_TEXT - 1;
    case QSYNC__MSG_EXIT:
        return plen == EXIT_SIZE;
    case QSYNC__MSG_INPUT:
        return plen > INPUT_FIXED && plen - INPUT_FIXED <= QSYNC__WIRE_MAX_INPUT;
    case QSYNC__MSG_FRAME:
        return plen > FRAME_FIXED;
    case QSYNC__MSG_NIC_STATUS:
        return plen == NIC_STATUS_SIZE;
    case QSYNC__MSG_NEXT:
        return plen == NEXT_SIZE;
    default:
        return 0;
    }
}

int qsync__wire_frame_len(const uint8_t *buf, size_t len, size_t *frame_len)
{
    if (len < QSYNC__WIRE_HEADER_SIZE)
        return QSYNC__WIRE_NEED_MORE;
    uint16_t type = get16(buf);
    uint16_t reserved = get16(buf + 2);
    uint32_t plen = get32(buf + 4);
    if (type < QSYNC__MSG_HELLO || type > QSYNC__MSG_NEXT)
        return QSYNC__WIRE_EBADTYPE;
    if (reserved != 0)
        return QSYNC__WIRE_EBADFIELD;
    if (plen > QSYNC__WIRE_MAX_PAYLOAD)
        return QSYNC__WIRE_EBADLEN;
    /* Check the length against the type before waiting for the payload, so
     * a wrong length is reported at once rather than as a stall. */
    if (!payload_len_ok(type, plen))
        return QSYNC__WIRE_EBADLEN;
    *frame_len = QSYNC__WIRE_HEADER_SIZE + plen;
    return QSYNC__WIRE_OK;
}

static int decode_hello(const uint8_t *p, struct qsync__wire_hello *h)
{
    h->major = get16(p);
    h->minor = get16(p + 2);
    h->plugin_version = get32(p + 4);
    h->n_vcpus = get32(p + 8);
    h->engine = p[12];
    h->icount_shift = p[13];
    h->api_version = get16(p + 14);
    h->guarantees = get32(p + 16);
    memcpy(h->target, p + 20, 64);
    /* NUL-terminated and NUL-padded: one encoding for one value. */
    size_t tl = bounded_len(h->target, sizeof h->target);
    if (tl == sizeof h->target)
        return QSYNC__WIRE_EBADFIELD;
    for (size_t i = tl; i < sizeof h->target; i++)
        if (h->target[i] != '\0')
            return QSYNC__WIRE_EBADFIELD;
    if (h->n_vcpus == 0 || h->n_vcpus > QSYNC__WIRE_MAX_VCPUS)
        return QSYNC__WIRE_EBADFIELD;
    if (h->engine < QSYNC__WIRE_ENGINE_INSN || h->engine > QSYNC__WIRE_ENGINE_BLOCK)
        return QSYNC__WIRE_EBADFIELD;
    if (h->icount_shift > 10)
        return QSYNC__WIRE_EBADFIELD;
    return QSYNC__WIRE_OK;
}

static int decode_report(const uint8_t *p, uint32_t plen, struct qsync__wire_report *r)
{
    r->seq = get64(p);
    r->deadline_ns = get64(p + 8);
    r->virtual_ns = get64(p + 16);
    r->instructions = get64(p + 24);
    r->overshoot = (int64_t)get64(p + 32);
    r->flags = get32(p + 40);
    r->n_vcpus = get32(p + 44);
    if (r->n_vcpus != (plen - REPORT_FIXED) / 8)
        return QSYNC__WIRE_EBADFIELD;
    for (uint32_t i = 0; i < r->n_vcpus; i++)
        r->vcpu_insns[i] = get64(p + REPORT_FIXED + 8u * i);
    return QSYNC__WIRE_OK;
}

static int decode_error(const uint8_t *p, uint32_t plen, struct qsync__wire_error *e)
{
    uint16_t tl = get16(p + 4);
    e->code = (int32_t)get32(p);
    if ((size_t)tl != plen - ERROR_FIXED)
        return QSYNC__WIRE_EBADFIELD;
    if (memchr(p + ERROR_FIXED, '\0', tl))
        return QSYNC__WIRE_EBADFIELD; /* text, not bytes */
    memcpy(e->text, p + ERROR_FIXED, tl);
    e->text[tl] = '\0';
    return QSYNC__WIRE_OK;
}

static int decode_input(const uint8_t *p, uint32_t plen, struct qsync__wire_input *in)
{
    in->port = get32(p);
    if (in->port != 0)
        return QSYNC__WIRE_EBADFIELD; /* only serial0 so far */
    in->len = plen - INPUT_FIXED;
    memcpy(in->data, p + INPUT_FIXED, in->len);
    return QSYNC__WIRE_OK;
}

static int decode_frame(const uint8_t *p, uint32_t plen, struct qsync__wire_frame *f)
{
    f->nic = get32(p);
    if (f->nic >= QSYNC__WIRE_MAX_NICS || get32(p + 4) != 0)
        return QSYNC__WIRE_EBADFIELD;
    f->time_ns = get64(p + 8);
    f->len = plen - FRAME_FIXED;
    memcpy(f->data, p + FRAME_FIXED, f->len);
    return QSYNC__WIRE_OK;
}

static int decode_nic_status(const uint8_t *p, struct qsync__wire_nic_status *n)
{
    n->nic = get32(p);
    n->flags = get32(p + 4);
    n->rx_frames = get64(p + 8);
    n->rx_dropped = get64(p + 16);
    n->rx_waiting = get64(p + 24);
    n->tx_frames = get64(p + 32);
    n->tx_dropped = get64(p + 40);
    if (n->nic >= QSYNC__WIRE_MAX_NICS)
        return QSYNC__WIRE_EBADFIELD;
    return QSYNC__WIRE_OK;
}

int qsync__wire_decode(const uint8_t *buf, size_t len, struct qsync__wire_msg *msg,
                       size_t *used)
{
    size_t frame = 0;
    int st = qsync__wire_frame_len(buf, len, &frame);
    if (st != QSYNC__WIRE_OK)
        return st;
    if (len < frame)
        return QSYNC__WIRE_NEED_MORE;

    const uint8_t *p = buf + QSYNC__WIRE_HEADER_SIZE;
    uint32_t plen = (uint32_t)(frame - QSYNC__WIRE_HEADER_SIZE);
    memset(msg, 0, sizeof *msg);
    msg->type = get16(buf);
    switch (msg->type) {
    case QSYNC__MSG_HELLO:
        st = decode_hello(p, &msg->u.hello);
        break;
    case QSYNC__MSG_GRANT:
        msg->u.grant.seq = get64(p);
        msg->u.grant.deadline_ns = get64(p + 8);
        break;
    case QSYNC__MSG_REPORT:
        st = decode_report(p, plen, &msg->u.report);
        break;
    case QSYNC__MSG_ERROR:
        st = decode_error(p, plen, &msg->u.error);
        break;
    case QSYNC__MSG_EXIT:
        msg->u.exit.virtual_ns = get64(p);
        msg->u.exit.instructions = get64(p + 8);
        break;
    case QSYNC__MSG_INPUT:
        st = decode_input(p, plen, &msg->u.input);
        break;
    case QSYNC__MSG_FRAME:
        st = decode_frame(p, plen, &msg->u.frame);
        break;
    case QSYNC__MSG_NIC_STATUS:
        st = decode_nic_status(p, &msg->u.nic_status);
        break;
    case QSYNC__MSG_NEXT:
        msg->u.next.timer_ns = get64(p);
        break;
    }
    if (st != QSYNC__WIRE_OK)
        return st;
    *used = frame;
    return QSYNC__WIRE_OK;
}

const char *qsync__wire_status_text(int status)
{
    switch (status) {
    case QSYNC__WIRE_OK: return "ok";
    case QSYNC__WIRE_NEED_MORE: return "incomplete frame";
    case QSYNC__WIRE_EBADTYPE: return "unknown message type";
    case QSYNC__WIRE_EBADLEN: return "bad frame length";
    case QSYNC__WIRE_EBADFIELD: return "bad field value";
    case QSYNC__WIRE_ESPACE: return "buffer too small";
    default: return "unknown status";
    }
}

const char *qsync__wire_engine_name(unsigned engine)
{
    switch (engine) {
    case QSYNC__WIRE_ENGINE_INSN: return "insn";
    case QSYNC__WIRE_ENGINE_TIMER: return "timer";
    case QSYNC__WIRE_ENGINE_BLOCK: return "block";
    default: return "unknown";
    }
}

/*
 * The native protocol's codec (src/proto/wire.c) held to docs/protocol.md.
 *
 * Frames that the decoder must refuse are built here byte by byte, not with
 * the encoder, so that a bug shared by both halves of the codec cannot hide
 * itself. The two worked examples of the document are spelled out in hex;
 * if either test fails, the code and the document disagree and one of them
 * must change.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "wire.h"

/* Payload sizes as docs/protocol.md gives them. */
#define HELLO_LEN 84u
#define GRANT_LEN 16u
#define REPORT_FIXED_LEN 48u
#define ERROR_FIXED_LEN 6u
#define EXIT_LEN 16u

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

static void le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static void le32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Writes a frame header; returns the offset of the payload. */
static size_t header(uint8_t *buf, uint16_t type, uint16_t reserved, uint32_t plen)
{
    le16(buf, type);
    le16(buf + 2, reserved);
    le32(buf + 4, plen);
    return QSYNC__WIRE_HEADER_SIZE;
}

/* A valid HELLO payload, built by hand; callers spoil one field. */
static size_t raw_hello(uint8_t *buf)
{
    uint8_t *p = buf + header(buf, QSYNC__MSG_HELLO, 0, HELLO_LEN);
    memset(p, 0, HELLO_LEN);
    le16(p, QSYNC__WIRE_MAJOR);
    le16(p + 2, QSYNC__WIRE_MINOR);
    le32(p + 4, 0x000102u);
    le32(p + 8, 1);
    p[12] = QSYNC__WIRE_ENGINE_INSN;
    p[13] = 0;
    le16(p + 14, 4);
    le32(p + 16, QSYNC__WIRE_G_EXACT);
    memcpy(p + 20, "x86_64", 6);
    return QSYNC__WIRE_HEADER_SIZE + HELLO_LEN;
}

/* A valid REPORT for n vCPUs, built by hand. */
static size_t raw_report(uint8_t *buf, uint32_t n)
{
    uint32_t plen = REPORT_FIXED_LEN + 8u * n;
    uint8_t *p = buf + header(buf, QSYNC__MSG_REPORT, 0, plen);
    le64(p, 7);
    le64(p + 8, 7000);
    le64(p + 16, 7000);
    le64(p + 24, 7000);
    le64(p + 32, 0);
    le32(p + 40, 0);
    le32(p + 44, n);
    for (uint32_t i = 0; i < n; i++)
        le64(p + REPORT_FIXED_LEN + 8u * i, 7000 / (n ? n : 1));
    return QSYNC__WIRE_HEADER_SIZE + plen;
}

static int decode(const uint8_t *buf, size_t len, struct qsync__wire_msg *m, size_t *used)
{
    *used = 0xdead;
    return qsync__wire_decode(buf, len, m, used);
}

/* Encodes, checks the size, decodes, checks that the frame was consumed. */
static void round_trip(const struct qsync__wire_msg *in, struct qsync__wire_msg *out,
                       size_t expect_size)
{
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    long n = qsync__wire_encode(in, buf, sizeof buf);
    assert_int_equal(n, (long)expect_size);
    size_t used;
    assert_int_equal(decode(buf, (size_t)n, out, &used), QSYNC__WIRE_OK);
    assert_int_equal(used, (size_t)n);
    assert_int_equal(out->type, in->type);
}

static void sample_hello(struct qsync__wire_msg *m)
{
    memset(m, 0, sizeof *m);
    m->type = QSYNC__MSG_HELLO;
    m->u.hello.major = QSYNC__WIRE_MAJOR;
    m->u.hello.minor = QSYNC__WIRE_MINOR;
    m->u.hello.plugin_version = 0x010203u;
    m->u.hello.n_vcpus = 4;
    m->u.hello.engine = QSYNC__WIRE_ENGINE_TIMER;
    m->u.hello.icount_shift = 10;
    m->u.hello.api_version = 4;
    m->u.hello.guarantees = QSYNC__WIRE_G_EXACT | QSYNC__WIRE_G_NEVER_AHEAD_IDLE |
                            QSYNC__WIRE_G_VCLOCK;
    strcpy(m->u.hello.target, "aarch64");
}

static void sample_report(struct qsync__wire_msg *m, uint32_t n)
{
    memset(m, 0, sizeof *m);
    m->type = QSYNC__MSG_REPORT;
    m->u.report.seq = 0x0102030405060708ull;
    m->u.report.deadline_ns = UINT64_MAX;
    m->u.report.virtual_ns = UINT64_MAX - 3;
    m->u.report.instructions = 0x8000000000000001ull;
    m->u.report.overshoot = -5;
    m->u.report.flags = QSYNC__WIRE_R_IDLE | QSYNC__WIRE_R_DEVIATION;
    m->u.report.n_vcpus = n;
    for (uint32_t i = 0; i < n; i++)
        m->u.report.vcpu_insns[i] = 1000u * i + 1;
}

static void sample_error(struct qsync__wire_msg *m, const char *text)
{
    memset(m, 0, sizeof *m);
    m->type = QSYNC__MSG_ERROR;
    m->u.error.code = -71;
    strcpy(m->u.error.text, text);
}

static void sample_exit(struct qsync__wire_msg *m)
{
    memset(m, 0, sizeof *m);
    m->type = QSYNC__MSG_EXIT;
    m->u.exit.virtual_ns = 123456789012345ull;
    m->u.exit.instructions = 987654321ull;
}

static void sample_grant(struct qsync__wire_msg *m)
{
    memset(m, 0, sizeof *m);
    m->type = QSYNC__MSG_GRANT;
    m->u.grant.seq = 42;
    m->u.grant.deadline_ns = 0xfedcba9876543210ull;
}

/* ---------------------------------------------------------------------- */
/* Round trips                                                             */

static void test_round_trip_hello(void **state)
{
    (void)state;
    struct qsync__wire_msg in, out;
    sample_hello(&in);
    round_trip(&in, &out, QSYNC__WIRE_HEADER_SIZE + HELLO_LEN);
    assert_int_equal(out.u.hello.major, in.u.hello.major);
    assert_int_equal(out.u.hello.minor, in.u.hello.minor);
    assert_int_equal(out.u.hello.plugin_version, in.u.hello.plugin_version);
    assert_int_equal(out.u.hello.n_vcpus, in.u.hello.n_vcpus);
    assert_int_equal(out.u.hello.engine, in.u.hello.engine);
    assert_int_equal(out.u.hello.icount_shift, in.u.hello.icount_shift);
    assert_int_equal(out.u.hello.api_version, in.u.hello.api_version);
    assert_int_equal(out.u.hello.guarantees, in.u.hello.guarantees);
    assert_string_equal(out.u.hello.target, "aarch64");
}

static void test_round_trip_hello_long_target(void **state)
{
    (void)state;
    struct qsync__wire_msg in, out;
    sample_hello(&in);
    /* A full 64-byte field with no NUL: the encoder keeps 63 bytes and
     * terminates, so what it sends always decodes. */
    memset(in.u.hello.target, 'a', sizeof in.u.hello.target);
    round_trip(&in, &out, QSYNC__WIRE_HEADER_SIZE + HELLO_LEN);
    assert_int_equal(strlen(out.u.hello.target), 63);
    assert_int_equal(out.u.hello.target[0], 'a');
}

static void test_round_trip_grant(void **state)
{
    (void)state;
    struct qsync__wire_msg in, out;
    sample_grant(&in);
    round_trip(&in, &out, QSYNC__WIRE_HEADER_SIZE + GRANT_LEN);
    assert_true(out.u.grant.seq == in.u.grant.seq);
    assert_true(out.u.grant.deadline_ns == in.u.grant.deadline_ns);
}

static void check_report_equal(const struct qsync__wire_report *a,
                               const struct qsync__wire_report *b)
{
    assert_true(a->seq == b->seq);
    assert_true(a->deadline_ns == b->deadline_ns);
    assert_true(a->virtual_ns == b->virtual_ns);
    assert_true(a->instructions == b->instructions);
    assert_true(a->overshoot == b->overshoot);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->n_vcpus, b->n_vcpus);
    for (uint32_t i = 0; i < a->n_vcpus; i++)
        assert_true(a->vcpu_insns[i] == b->vcpu_insns[i]);
}

static void test_round_trip_report(void **state)
{
    (void)state;
    static const uint32_t counts[] = {0, 1, 2, 4, QSYNC__WIRE_MAX_VCPUS};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        struct qsync__wire_msg in, out;
        sample_report(&in, counts[k]);
        round_trip(&in, &out, QSYNC__WIRE_HEADER_SIZE + REPORT_FIXED_LEN + 8u * counts[k]);
        check_report_equal(&out.u.report, &in.u.report);
    }
}

static void test_round_trip_error(void **state)
{
    (void)state;
    struct qsync__wire_msg in, out;

    sample_error(&in, "GRANT seq 3 out of order (expected 2)");
    round_trip(&in, &out, QSYNC__WIRE_HEADER_SIZE + ERROR_FIXED_LEN + strlen(in.u.error.text));
    assert_int_equal(out.u.error.code, -71);
    assert_string_equal(out.u.error.text, in.u.error.text);

    /* Empty text. */
    sample_error(&in, "");
    round_trip(&in, &out, QSYNC__WIRE_HEADER_SIZE + ERROR_FIXED_LEN);
    assert_string_equal(out.u.error.text, "");

    /* The longest text: 1023 bytes. A longer one is cut to 1023. */
    memset(in.u.error.text, 'e', QSYNC__WIRE_MAX_TEXT);
    round_trip(&in, &out, QSYNC__WIRE_HEADER_SIZE + ERROR_FIXED_LEN + QSYNC__WIRE_MAX_TEXT - 1);
    assert_int_equal(strlen(out.u.error.text), QSYNC__WIRE_MAX_TEXT - 1);
}

static void test_round_trip_exit(void **state)
{
    (void)state;
    struct qsync__wire_msg in, out;
    sample_exit(&in);
    round_trip(&in, &out, QSYNC__WIRE_HEADER_SIZE + EXIT_LEN);
    assert_true(out.u.exit.virtual_ns == in.u.exit.virtual_ns);
    assert_true(out.u.exit.instructions == in.u.exit.instructions);
}

static void test_round_trip_input(void **state)
{
    (void)state;
    struct qsync__wire_msg in, out;
    memset(&in, 0, sizeof in);
    in.type = QSYNC__MSG_INPUT;
    /* One byte, and the most one frame carries. */
    in.u.input.len = 1;
    in.u.input.data[0] = 'x';
    round_trip(&in, &out, QSYNC__WIRE_HEADER_SIZE + 4 + 1);
    assert_int_equal(out.u.input.port, 0);
    assert_int_equal(out.u.input.len, 1);
    assert_int_equal(out.u.input.data[0], 'x');
    for (uint32_t i = 0; i < QSYNC__WIRE_MAX_INPUT; i++)
        in.u.input.data[i] = (uint8_t)(i * 7);
    in.u.input.len = QSYNC__WIRE_MAX_INPUT;
    round_trip(&in, &out, QSYNC__WIRE_HEADER_SIZE + 4 + QSYNC__WIRE_MAX_INPUT);
    assert_int_equal(out.u.input.len, QSYNC__WIRE_MAX_INPUT);
    assert_memory_equal(out.u.input.data, in.u.input.data, QSYNC__WIRE_MAX_INPUT);
}

static void expect_bad_lengths(uint16_t type, const uint32_t *lens, size_t n);

/* FRAME (minor 3): the byte layout of docs/protocol.md, the largest frame,
 * and the direct encoder agrees with the message one. */
static void test_frame_layout(void **state)
{
    (void)state;
    static struct qsync__wire_msg in, out;
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    memset(&in, 0, sizeof in);
    in.type = QSYNC__MSG_FRAME;
    in.u.frame.nic = 2;
    in.u.frame.time_ns = 0x0102030405ull;
    in.u.frame.len = 3;
    memcpy(in.u.frame.data, "abc", 3);
    static const uint8_t bytes[] = {
        0x07, 0x00, 0x00, 0x00, 0x13, 0x00, 0x00, 0x00, /* type 7, length 16 + 3 */
        0x02, 0x00, 0x00, 0x00,                         /* nic 2                 */
        0x00, 0x00, 0x00, 0x00,                         /* reserved              */
        0x05, 0x04, 0x03, 0x02, 0x01, 0x00, 0x00, 0x00, /* time_ns               */
        'a',  'b',  'c',                                /* the Ethernet frame    */
    };
    assert_int_equal(qsync__wire_encode(&in, buf, sizeof buf), (long)sizeof bytes);
    assert_memory_equal(buf, bytes, sizeof bytes);
    uint8_t direct[64];
    assert_int_equal(qsync__wire_encode_frame(2, 0x0102030405ull, "abc", 3, direct, sizeof direct),
                     (long)sizeof bytes);
    assert_memory_equal(direct, bytes, sizeof bytes);
    round_trip(&in, &out, sizeof bytes);
    assert_int_equal(out.u.frame.nic, 2);
    assert_int_equal(out.u.frame.time_ns, 0x0102030405ull);
    assert_int_equal(out.u.frame.len, 3);
    assert_memory_equal(out.u.frame.data, "abc", 3);
    for (uint32_t i = 0; i < QSYNC__WIRE_MAX_ETHER; i++)
        in.u.frame.data[i] = (uint8_t)(i * 13);
    in.u.frame.len = QSYNC__WIRE_MAX_ETHER;
    round_trip(&in, &out, QSYNC__WIRE_MAX_FRAME);
    assert_memory_equal(out.u.frame.data, in.u.frame.data, QSYNC__WIRE_MAX_ETHER);
}

static void test_frame_refusals(void **state)
{
    (void)state;
    static struct qsync__wire_msg m, out;
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    size_t used;
    memset(&m, 0, sizeof m);
    m.type = QSYNC__MSG_FRAME;
    /* Never encoded: empty, over the largest, a NIC past the last. */
    m.u.frame.len = 0;
    assert_int_equal(qsync__wire_encode(&m, buf, sizeof buf), QSYNC__WIRE_EBADFIELD);
    m.u.frame.len = QSYNC__WIRE_MAX_ETHER + 1;
    assert_int_equal(qsync__wire_encode(&m, buf, sizeof buf), QSYNC__WIRE_EBADFIELD);
    m.u.frame.len = 1;
    m.u.frame.nic = QSYNC__WIRE_MAX_NICS;
    assert_int_equal(qsync__wire_encode(&m, buf, sizeof buf), QSYNC__WIRE_EBADFIELD);
    assert_int_equal(qsync__wire_encode_frame(0, 0, "x", 1, buf, 8 + 16), QSYNC__WIRE_ESPACE);
    /* Decoded: no frame bytes, or more than the largest, from the header. */
    static const uint32_t lens[] = {0, 15, 16, QSYNC__WIRE_MAX_PAYLOAD + 1};
    expect_bad_lengths(QSYNC__MSG_FRAME, lens, sizeof lens / sizeof lens[0]);
    /* A NIC past the last, and a reserved word that is not 0. */
    memset(buf, 0, sizeof buf);
    header(buf, QSYNC__MSG_FRAME, 0, 17);
    buf[8] = QSYNC__WIRE_MAX_NICS;
    assert_int_equal(decode(buf, 8 + 17, &out, &used), QSYNC__WIRE_EBADFIELD);
    buf[8] = 0;
    buf[12] = 1;
    assert_int_equal(decode(buf, 8 + 17, &out, &used), QSYNC__WIRE_EBADFIELD);
    buf[12] = 0;
    assert_int_equal(decode(buf, 8 + 17, &out, &used), QSYNC__WIRE_OK);
    /* INPUT keeps its 4 KiB bound: a plugin of minor 1 or 2 reads no more. */
    static const uint32_t big_input[] = {4 + QSYNC__WIRE_MAX_INPUT + 1};
    expect_bad_lengths(QSYNC__MSG_INPUT, big_input, 1);
}

static void test_nic_status_layout(void **state)
{
    (void)state;
    struct qsync__wire_msg in, out;
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    memset(&in, 0, sizeof in);
    in.type = QSYNC__MSG_NIC_STATUS;
    in.u.nic_status.nic = 1;
    in.u.nic_status.flags = QSYNC__WIRE_NIC_RX_ON | QSYNC__WIRE_NIC_RX_EVER_ON;
    in.u.nic_status.rx_frames = 10;
    in.u.nic_status.rx_dropped = 11;
    in.u.nic_status.rx_waiting = 12;
    in.u.nic_status.tx_frames = 13;
    in.u.nic_status.tx_dropped = 14;
    static const uint8_t bytes[] = {
        0x08, 0x00, 0x00, 0x00, 0x30, 0x00, 0x00, 0x00, /* type 8, length 48 */
        0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, /* nic 1, flags 3    */
        10, 0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0,
        13, 0, 0, 0, 0, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 0,
    };
    assert_int_equal(qsync__wire_encode(&in, buf, sizeof buf), (long)sizeof bytes);
    assert_memory_equal(buf, bytes, sizeof bytes);
    round_trip(&in, &out, sizeof bytes);
    assert_memory_equal(&out.u.nic_status, &in.u.nic_status, sizeof in.u.nic_status);
    static const uint32_t lens[] = {0, 47, 49};
    expect_bad_lengths(QSYNC__MSG_NIC_STATUS, lens, sizeof lens / sizeof lens[0]);
    in.u.nic_status.nic = QSYNC__WIRE_MAX_NICS;
    assert_int_equal(qsync__wire_encode(&in, buf, sizeof buf), QSYNC__WIRE_EBADFIELD);
}

static void test_next_layout(void **state)
{
    (void)state;
    struct qsync__wire_msg in, out;
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    memset(&in, 0, sizeof in);
    in.type = QSYNC__MSG_NEXT;
    in.u.next.timer_ns = 0x0102030405060708ull;
    static const uint8_t bytes[] = {
        0x09, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, /* type 9, length 8 */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
    };
    assert_int_equal(qsync__wire_encode(&in, buf, sizeof buf), (long)sizeof bytes);
    assert_memory_equal(buf, bytes, sizeof bytes);
    round_trip(&in, &out, sizeof bytes);
    assert_true(out.u.next.timer_ns == in.u.next.timer_ns);
    in.u.next.timer_ns = QSYNC__WIRE_NO_TIMER;
    round_trip(&in, &out, sizeof bytes);
    assert_true(out.u.next.timer_ns == QSYNC__WIRE_NO_TIMER);
    static const uint32_t lens[] = {0, 7, 9, 16};
    expect_bad_lengths(QSYNC__MSG_NEXT, lens, sizeof lens / sizeof lens[0]);
    assert_int_equal(qsync__wire_encode(&in, buf, QSYNC__WIRE_HEADER_SIZE + 7),
                     QSYNC__WIRE_ESPACE);
}

static void test_input_refusals(void **state)
{
    (void)state;
    struct qsync__wire_msg m, out;
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    size_t used;
    memset(&m, 0, sizeof m);
    m.type = QSYNC__MSG_INPUT;
    /* The encoder never sends an empty INPUT, an oversized one, or one for
     * a port the plugin does not know. */
    m.u.input.len = 0;
    assert_int_equal(qsync__wire_encode(&m, buf, sizeof buf), QSYNC__WIRE_EBADFIELD);
    m.u.input.len = QSYNC__WIRE_MAX_INPUT + 1;
    assert_int_equal(qsync__wire_encode(&m, buf, sizeof buf), QSYNC__WIRE_EBADFIELD);
    m.u.input.len = 1;
    m.u.input.port = 1;
    assert_int_equal(qsync__wire_encode(&m, buf, sizeof buf), QSYNC__WIRE_EBADFIELD);
    /* The decoder refuses the same, from the header where it can. */
    static const uint32_t lens[] = {0, 1, 4};
    expect_bad_lengths(QSYNC__MSG_INPUT, lens, sizeof lens / sizeof lens[0]);
    memset(buf, 0, sizeof buf);
    header(buf, QSYNC__MSG_INPUT, 0, 5);
    buf[8] = 1; /* port 1 */
    assert_int_equal(decode(buf, QSYNC__WIRE_HEADER_SIZE + 5, &out, &used), QSYNC__WIRE_EBADFIELD);
    buf[8] = 0;
    assert_int_equal(decode(buf, QSYNC__WIRE_HEADER_SIZE + 5, &out, &used), QSYNC__WIRE_OK);
    assert_int_equal(out.u.input.len, 1);
}

/* ---------------------------------------------------------------------- */
/* The worked examples of docs/protocol.md, byte for byte                  */

static const uint8_t example_grant[] = {
    /* header: type 2, reserved 0, payload length 16 */
    0x02, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00,
    /* seq = 1 */
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* deadline_ns = 10000 = 0x2710 */
    0x10, 0x27, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static const uint8_t example_report[] = {
    /* header: type 3, reserved 0, payload length 56 = 48 + 8 * 1 */
    0x03, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00,
    /* seq = 1 */
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* deadline_ns = 10000 */
    0x10, 0x27, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* virtual_ns = 10000 */
    0x10, 0x27, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* instructions = 10000 */
    0x10, 0x27, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* overshoot = 0 */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* flags = 0, n_vcpus = 1 */
    0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    /* vcpu_insns[0] = 10000 */
    0x10, 0x27, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static void test_example_grant_bytes(void **state)
{
    (void)state;
    struct qsync__wire_msg m;
    memset(&m, 0, sizeof m);
    m.type = QSYNC__MSG_GRANT;
    m.u.grant.seq = 1;
    m.u.grant.deadline_ns = 10000;

    uint8_t buf[64];
    memset(buf, 0xaa, sizeof buf);
    long n = qsync__wire_encode(&m, buf, sizeof buf);
    assert_int_equal(n, (long)sizeof example_grant);
    assert_memory_equal(buf, example_grant, sizeof example_grant);
    assert_int_equal(buf[sizeof example_grant], 0xaa); /* nothing written past it */

    struct qsync__wire_msg d;
    size_t used;
    assert_int_equal(decode(example_grant, sizeof example_grant, &d, &used), QSYNC__WIRE_OK);
    assert_int_equal(used, sizeof example_grant);
    assert_int_equal(d.type, QSYNC__MSG_GRANT);
    assert_true(d.u.grant.seq == 1);
    assert_true(d.u.grant.deadline_ns == 10000);
}

static void test_example_report_bytes(void **state)
{
    (void)state;
    struct qsync__wire_msg m;
    memset(&m, 0, sizeof m);
    m.type = QSYNC__MSG_REPORT;
    m.u.report.seq = 1;
    m.u.report.deadline_ns = 10000;
    m.u.report.virtual_ns = 10000;
    m.u.report.instructions = 10000;
    m.u.report.overshoot = 0;
    m.u.report.flags = 0;
    m.u.report.n_vcpus = 1;
    m.u.report.vcpu_insns[0] = 10000;

    uint8_t buf[128];
    long n = qsync__wire_encode(&m, buf, sizeof buf);
    assert_int_equal(n, (long)sizeof example_report);
    assert_memory_equal(buf, example_report, sizeof example_report);

    struct qsync__wire_msg d;
    size_t used;
    assert_int_equal(decode(example_report, sizeof example_report, &d, &used), QSYNC__WIRE_OK);
    assert_int_equal(used, sizeof example_report);
    assert_int_equal(d.type, QSYNC__MSG_REPORT);
    check_report_equal(&d.u.report, &m.u.report);
}

/* A field-by-field check of the HELLO layout, so every offset in the
 * document's table is exercised, not only those of the examples. */
static void test_hello_layout(void **state)
{
    (void)state;
    struct qsync__wire_msg m;
    sample_hello(&m);
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    long n = qsync__wire_encode(&m, buf, sizeof buf);
    assert_int_equal(n, 8 + 84);
    static const uint8_t head[] = {
        0x01, 0x00, 0x00, 0x00, 0x54, 0x00, 0x00, 0x00, /* type 1, length 84    */
        0x01, 0x00,                                     /* major 1              */
        0x04, 0x00,                                     /* minor 4              */
        0x03, 0x02, 0x01, 0x00,                         /* plugin 1.2.3         */
        0x04, 0x00, 0x00, 0x00,                         /* 4 vCPUs              */
        0x02,                                           /* engine timer         */
        0x0a,                                           /* shift 10             */
        0x04, 0x00,                                     /* plugin API 4         */
        0x07, 0x00, 0x00, 0x00,                         /* all three guarantees */
        'a', 'a', 'r', 'c', 'h', '6', '4', 0x00,        /* target               */
    };
    assert_memory_equal(buf, head, sizeof head);
    for (size_t i = sizeof head; i < (size_t)n; i++)
        assert_int_equal(buf[i], 0); /* the target's padding is zeroed */
}

static void test_error_and_exit_layout(void **state)
{
    (void)state;
    struct qsync__wire_msg m;
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];

    sample_error(&m, "bad");
    m.u.error.code = 71;
    static const uint8_t err[] = {
        0x04, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, /* type 4, length 6 + 3 */
        0x47, 0x00, 0x00, 0x00,                         /* code 71 (EPROTO)     */
        0x03, 0x00,                                     /* text length 3        */
        'b',  'a',  'd',                                /* no NUL on the wire   */
    };
    assert_int_equal(qsync__wire_encode(&m, buf, sizeof buf), (long)sizeof err);
    assert_memory_equal(buf, err, sizeof err);

    memset(&m, 0, sizeof m);
    m.type = QSYNC__MSG_EXIT;
    m.u.exit.virtual_ns = 0x0102;
    m.u.exit.instructions = 0x0304;
    static const uint8_t ex[] = {
        0x05, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, /* type 5, length 16 */
        0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* virtual_ns        */
        0x04, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* instructions      */
    };
    assert_int_equal(qsync__wire_encode(&m, buf, sizeof buf), (long)sizeof ex);
    assert_memory_equal(buf, ex, sizeof ex);
}

/* ---------------------------------------------------------------------- */
/* Decoder rejections                                                      */

static void test_reject_unknown_type(void **state)
{
    (void)state;
    static const uint16_t bad[] = {0, 10, 11, 0x100, 0xffff};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t buf[QSYNC__WIRE_HEADER_SIZE + 16];
        memset(buf, 0, sizeof buf);
        header(buf, bad[i], 0, 16);
        struct qsync__wire_msg m;
        size_t used;
        /* Refused from the header alone, and with the payload there too. */
        assert_int_equal(decode(buf, QSYNC__WIRE_HEADER_SIZE, &m, &used), QSYNC__WIRE_EBADTYPE);
        assert_int_equal(decode(buf, sizeof buf, &m, &used), QSYNC__WIRE_EBADTYPE);
        assert_int_equal(used, 0xdead); /* nothing consumed */
    }
}

static void test_reject_nonzero_reserved(void **state)
{
    (void)state;
    static const uint16_t bad[] = {1, 0x100, 0xffff};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t buf[QSYNC__WIRE_MAX_FRAME];
        size_t len = raw_report(buf, 1);
        le16(buf + 2, bad[i]);
        struct qsync__wire_msg m;
        size_t used;
        assert_int_equal(decode(buf, QSYNC__WIRE_HEADER_SIZE, &m, &used), QSYNC__WIRE_EBADFIELD);
        assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_EBADFIELD);
    }
}

static void test_reject_payload_over_max(void **state)
{
    (void)state;
    static const uint16_t types[] = {QSYNC__MSG_HELLO, QSYNC__MSG_GRANT, QSYNC__MSG_REPORT,
                                     QSYNC__MSG_ERROR, QSYNC__MSG_EXIT, QSYNC__MSG_INPUT};
    static const uint32_t lens[] = {QSYNC__WIRE_MAX_PAYLOAD + 1, 0x10000, UINT32_MAX};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            uint8_t buf[QSYNC__WIRE_HEADER_SIZE];
            header(buf, types[t], 0, lens[l]);
            struct qsync__wire_msg m;
            size_t used;
            /* At once, from the header: a reader never waits for (or
             * allocates) a payload it would refuse. */
            assert_int_equal(decode(buf, sizeof buf, &m, &used), QSYNC__WIRE_EBADLEN);
        }
    }
}

/* Checks one type with a list of wrong payload lengths. */
static void expect_bad_lengths(uint16_t type, const uint32_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t buf[QSYNC__WIRE_MAX_FRAME];
        memset(buf, 0, sizeof buf);
        header(buf, type, 0, lens[i]);
        struct qsync__wire_msg m;
        size_t used;
        assert_int_equal(decode(buf, QSYNC__WIRE_HEADER_SIZE, &m, &used), QSYNC__WIRE_EBADLEN);
        assert_int_equal(decode(buf, QSYNC__WIRE_HEADER_SIZE + lens[i], &m, &used),
                         QSYNC__WIRE_EBADLEN);
    }
}

static void test_reject_wrong_length_hello(void **state)
{
    (void)state;
    static const uint32_t lens[] = {0, 1, HELLO_LEN - 1, HELLO_LEN + 1, HELLO_LEN + 8, 4096};
    expect_bad_lengths(QSYNC__MSG_HELLO, lens, sizeof lens / sizeof lens[0]);
}

static void test_reject_wrong_length_grant(void **state)
{
    (void)state;
    static const uint32_t lens[] = {0, 8, GRANT_LEN - 1, GRANT_LEN + 1, GRANT_LEN + 8};
    expect_bad_lengths(QSYNC__MSG_GRANT, lens, sizeof lens / sizeof lens[0]);
}

static void test_reject_wrong_length_exit(void **state)
{
    (void)state;
    static const uint32_t lens[] = {0, 8, EXIT_LEN - 1, EXIT_LEN + 1, EXIT_LEN + 8};
    expect_bad_lengths(QSYNC__MSG_EXIT, lens, sizeof lens / sizeof lens[0]);
}

static void test_reject_wrong_length_report(void **state)
{
    (void)state;
    static const uint32_t lens[] = {
        0,
        REPORT_FIXED_LEN - 1,                                    /* shorter than its fixed part */
        REPORT_FIXED_LEN + 1,                                    /* not whole vCPU entries      */
        REPORT_FIXED_LEN + 7,
        REPORT_FIXED_LEN + 8 * 2 + 4,
        REPORT_FIXED_LEN + 8 * (QSYNC__WIRE_MAX_VCPUS + 1),      /* more than 256 vCPUs         */
    };
    expect_bad_lengths(QSYNC__MSG_REPORT, lens, sizeof lens / sizeof lens[0]);
}

static void test_reject_wrong_length_error(void **state)
{
    (void)state;
    static const uint32_t lens[] = {
        0, ERROR_FIXED_LEN - 1,                          /* shorter than code + length */
        ERROR_FIXED_LEN + QSYNC__WIRE_MAX_TEXT,           /* text of 1024 bytes         */
        ERROR_FIXED_LEN + QSYNC__WIRE_MAX_TEXT + 100,
    };
    expect_bad_lengths(QSYNC__MSG_ERROR, lens, sizeof lens / sizeof lens[0]);
}

static void test_reject_report_nvcpus_mismatch(void **state)
{
    (void)state;
    /* The length says 2 vCPUs; the field says otherwise. */
    static const uint32_t claims[] = {0, 1, 3, 256, UINT32_MAX};
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        uint8_t buf[QSYNC__WIRE_MAX_FRAME];
        size_t len = raw_report(buf, 2);
        le32(buf + QSYNC__WIRE_HEADER_SIZE + 44, claims[i]);
        struct qsync__wire_msg m;
        size_t used;
        assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_EBADFIELD);
    }
    /* And the untouched frame is fine. */
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    size_t len = raw_report(buf, 2);
    struct qsync__wire_msg m;
    size_t used;
    assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_OK);
    assert_int_equal(m.u.report.n_vcpus, 2);
}

static void test_raw_hello_is_valid(void **state)
{
    (void)state;
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    size_t len = raw_hello(buf);
    struct qsync__wire_msg m;
    size_t used;
    assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_OK);
    assert_int_equal(used, len);
    assert_string_equal(m.u.hello.target, "x86_64");
    assert_int_equal(m.u.hello.n_vcpus, 1);
}

static void test_reject_hello_vcpus(void **state)
{
    (void)state;
    static const uint32_t bad[] = {0, QSYNC__WIRE_MAX_VCPUS + 1, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t buf[QSYNC__WIRE_MAX_FRAME];
        size_t len = raw_hello(buf);
        le32(buf + QSYNC__WIRE_HEADER_SIZE + 8, bad[i]);
        struct qsync__wire_msg m;
        size_t used;
        assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_EBADFIELD);
    }
    /* The bounds themselves are accepted. */
    static const uint32_t good[] = {1, QSYNC__WIRE_MAX_VCPUS};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint8_t buf[QSYNC__WIRE_MAX_FRAME];
        size_t len = raw_hello(buf);
        le32(buf + QSYNC__WIRE_HEADER_SIZE + 8, good[i]);
        struct qsync__wire_msg m;
        size_t used;
        assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_OK);
        assert_int_equal(m.u.hello.n_vcpus, good[i]);
    }
}

static void test_reject_hello_engine(void **state)
{
    (void)state;
    static const uint8_t bad[] = {0, 4, 0xff};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t buf[QSYNC__WIRE_MAX_FRAME];
        size_t len = raw_hello(buf);
        buf[QSYNC__WIRE_HEADER_SIZE + 12] = bad[i];
        struct qsync__wire_msg m;
        size_t used;
        assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_EBADFIELD);
    }
    for (uint8_t e = QSYNC__WIRE_ENGINE_INSN; e <= QSYNC__WIRE_ENGINE_BLOCK; e++) {
        uint8_t buf[QSYNC__WIRE_MAX_FRAME];
        size_t len = raw_hello(buf);
        buf[QSYNC__WIRE_HEADER_SIZE + 12] = e;
        struct qsync__wire_msg m;
        size_t used;
        assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_OK);
        assert_int_equal(m.u.hello.engine, e);
    }
}

static void test_reject_hello_shift(void **state)
{
    (void)state;
    static const uint8_t bad[] = {11, 63, 0xff};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t buf[QSYNC__WIRE_MAX_FRAME];
        size_t len = raw_hello(buf);
        buf[QSYNC__WIRE_HEADER_SIZE + 13] = bad[i];
        struct qsync__wire_msg m;
        size_t used;
        assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_EBADFIELD);
    }
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    size_t len = raw_hello(buf);
    buf[QSYNC__WIRE_HEADER_SIZE + 13] = 10;
    struct qsync__wire_msg m;
    size_t used;
    assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_OK);
    assert_int_equal(m.u.hello.icount_shift, 10);
}

static void test_reject_hello_unterminated_target(void **state)
{
    (void)state;
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    size_t len = raw_hello(buf);
    memset(buf + QSYNC__WIRE_HEADER_SIZE + 20, 'x', 64);
    struct qsync__wire_msg m;
    size_t used;
    assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_EBADFIELD);

    /* Only the last byte matters: 63 characters and a NUL are fine. */
    buf[QSYNC__WIRE_HEADER_SIZE + 20 + 63] = '\0';
    assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_OK);
    assert_int_equal(strlen(m.u.hello.target), 63);
}

/* Found by the fuzzer (tests/fuzz): one value has one encoding, so bytes
 * after the target's NUL must be NULs too, and an error's text holds no
 * NUL; otherwise a decoded frame would not encode back to itself. */
static void test_reject_non_canonical_text(void **state)
{
    (void)state;
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    size_t len = raw_hello(buf);
    buf[QSYNC__WIRE_HEADER_SIZE + 20 + 40] = ','; /* after "x86_64\0" */
    struct qsync__wire_msg m;
    size_t used;
    assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_EBADFIELD);

    static const uint8_t err[] = {4, 0, 0, 0, 11, 0, 0, 0, 71, 0, 0, 0, 5, 0,
                                  'o', 'o', 'p', 0, '!'};
    assert_int_equal(decode(err, sizeof err, &m, &used), QSYNC__WIRE_EBADFIELD);
}

static void test_hello_major_not_checked_by_codec(void **state)
{
    (void)state;
    /* The version check is the library's (QSYNC_EVERSION), so that it can
     * name both versions: the codec passes any major through. */
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    size_t len = raw_hello(buf);
    le16(buf + QSYNC__WIRE_HEADER_SIZE, 2);
    le16(buf + QSYNC__WIRE_HEADER_SIZE + 2, 7);
    struct qsync__wire_msg m;
    size_t used;
    assert_int_equal(decode(buf, len, &m, &used), QSYNC__WIRE_OK);
    assert_int_equal(m.u.hello.major, 2);
    assert_int_equal(m.u.hello.minor, 7);
}

static void test_reject_error_text_length(void **state)
{
    (void)state;
    /* Payload: code, text length, 5 bytes of text. */
    static const uint16_t claims[] = {0, 4, 6, 1023, 0xffff};
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        uint8_t buf[64];
        uint8_t *p = buf + header(buf, QSYNC__MSG_ERROR, 0, ERROR_FIXED_LEN + 5);
        le32(p, 1);
        le16(p + 4, claims[i]);
        memcpy(p + 6, "hello", 5);
        struct qsync__wire_msg m;
        size_t used;
        assert_int_equal(decode(buf, QSYNC__WIRE_HEADER_SIZE + ERROR_FIXED_LEN + 5, &m, &used),
                         QSYNC__WIRE_EBADFIELD);
    }
    /* The matching length decodes, and the text comes out terminated. */
    uint8_t buf[64];
    uint8_t *p = buf + header(buf, QSYNC__MSG_ERROR, 0, ERROR_FIXED_LEN + 5);
    le32(p, (uint32_t)-3);
    le16(p + 4, 5);
    memcpy(p + 6, "hello", 5);
    struct qsync__wire_msg m;
    size_t used;
    assert_int_equal(decode(buf, QSYNC__WIRE_HEADER_SIZE + ERROR_FIXED_LEN + 5, &m, &used),
                     QSYNC__WIRE_OK);
    assert_int_equal(m.u.error.code, -3);
    assert_string_equal(m.u.error.text, "hello");
}

/* ---------------------------------------------------------------------- */
/* Incomplete frames                                                       */

/* Every proper prefix of a valid frame is NEED_MORE and consumes nothing;
 * the whole frame is OK. */
static void expect_need_more_for_prefixes(const struct qsync__wire_msg *in)
{
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    long n = qsync__wire_encode(in, buf, sizeof buf);
    assert_true(n > 0);
    for (size_t len = 0; len < (size_t)n; len++) {
        struct qsync__wire_msg m;
        size_t used;
        int st = decode(buf, len, &m, &used);
        if (st != QSYNC__WIRE_NEED_MORE)
            fail_msg("type %u: prefix of %zu of %ld bytes gave %d", (unsigned)in->type, len,
                     n, st);
        assert_int_equal(used, 0xdead);
    }
    struct qsync__wire_msg m;
    size_t used;
    assert_int_equal(decode(buf, (size_t)n, &m, &used), QSYNC__WIRE_OK);
    assert_int_equal(used, (size_t)n);
}

static void test_need_more_every_prefix(void **state)
{
    (void)state;
    struct qsync__wire_msg m;
    sample_hello(&m);
    expect_need_more_for_prefixes(&m);
    sample_grant(&m);
    expect_need_more_for_prefixes(&m);
    sample_report(&m, 0);
    expect_need_more_for_prefixes(&m);
    sample_report(&m, 3);
    expect_need_more_for_prefixes(&m);
    sample_report(&m, QSYNC__WIRE_MAX_VCPUS);
    expect_need_more_for_prefixes(&m);
    sample_error(&m, "");
    expect_need_more_for_prefixes(&m);
    sample_error(&m, "the plugin gave up");
    expect_need_more_for_prefixes(&m);
    sample_exit(&m);
    expect_need_more_for_prefixes(&m);
}

/* ---------------------------------------------------------------------- */
/* The encoder                                                             */

static void expect_espace_below(const struct qsync__wire_msg *in)
{
    uint8_t full[QSYNC__WIRE_MAX_FRAME];
    long n = qsync__wire_encode(in, full, sizeof full);
    assert_true(n > 0);
    for (size_t cap = 0; cap < (size_t)n; cap++) {
        uint8_t buf[QSYNC__WIRE_MAX_FRAME];
        memset(buf, 0x5a, sizeof buf);
        assert_int_equal(qsync__wire_encode(in, buf, cap), QSYNC__WIRE_ESPACE);
        /* A refused encode writes nothing at all. */
        for (size_t i = 0; i < sizeof buf; i++)
            assert_int_equal(buf[i], 0x5a);
    }
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    assert_int_equal(qsync__wire_encode(in, buf, (size_t)n), n); /* exactly enough */
    assert_memory_equal(buf, full, (size_t)n);
}

static void test_encode_espace(void **state)
{
    (void)state;
    struct qsync__wire_msg m;
    sample_hello(&m);
    expect_espace_below(&m);
    sample_grant(&m);
    expect_espace_below(&m);
    sample_report(&m, 2);
    expect_espace_below(&m);
    sample_error(&m, "text");
    expect_espace_below(&m);
    sample_exit(&m);
    expect_espace_below(&m);
}

static void test_encode_rejects_bad_messages(void **state)
{
    (void)state;
    uint8_t buf[QSYNC__WIRE_MAX_FRAME];
    struct qsync__wire_msg m;

    sample_report(&m, 1);
    m.u.report.n_vcpus = QSYNC__WIRE_MAX_VCPUS + 1;
    assert_int_equal(qsync__wire_encode(&m, buf, sizeof buf), QSYNC__WIRE_EBADFIELD);

    memset(&m, 0, sizeof m);
    m.type = 0;
    assert_int_equal(qsync__wire_encode(&m, buf, sizeof buf), QSYNC__WIRE_EBADFIELD);
    m.type = 6;
    assert_int_equal(qsync__wire_encode(&m, buf, sizeof buf), QSYNC__WIRE_EBADFIELD);
}

/* ---------------------------------------------------------------------- */
/* A stream                                                                */

static void test_two_frames_back_to_back(void **state)
{
    (void)state;
    /* What the library sees when a REPORT and the EXIT arrive in one read. */
    uint8_t buf[2 * QSYNC__WIRE_MAX_FRAME];
    struct qsync__wire_msg a, b, m;
    sample_report(&a, 2);
    sample_exit(&b);
    long n1 = qsync__wire_encode(&a, buf, sizeof buf);
    assert_true(n1 > 0);
    long n2 = qsync__wire_encode(&b, buf + n1, sizeof buf - (size_t)n1);
    assert_true(n2 > 0);
    size_t total = (size_t)(n1 + n2);

    size_t off = 0, used;
    assert_int_equal(decode(buf + off, total - off, &m, &used), QSYNC__WIRE_OK);
    assert_int_equal(used, (size_t)n1);
    assert_int_equal(m.type, QSYNC__MSG_REPORT);
    check_report_equal(&m.u.report, &a.u.report);
    off += used;

    /* A partial second frame waits; the whole one decodes. */
    assert_int_equal(decode(buf + off, total - off - 1, &m, &used), QSYNC__WIRE_NEED_MORE);
    assert_int_equal(decode(buf + off, total - off, &m, &used), QSYNC__WIRE_OK);
    assert_int_equal(used, (size_t)n2);
    assert_int_equal(m.type, QSYNC__MSG_EXIT);
    assert_true(m.u.exit.virtual_ns == b.u.exit.virtual_ns);
    assert_true(m.u.exit.instructions == b.u.exit.instructions);
    off += used;
    assert_int_equal(off, total);
    assert_int_equal(decode(buf + off, 0, &m, &used), QSYNC__WIRE_NEED_MORE);
}

static void test_status_and_engine_names(void **state)
{
    (void)state;
    assert_string_equal(qsync__wire_status_text(QSYNC__WIRE_OK), "ok");
    assert_string_equal(qsync__wire_status_text(QSYNC__WIRE_NEED_MORE), "incomplete frame");
    assert_string_equal(qsync__wire_status_text(QSYNC__WIRE_EBADTYPE), "unknown message type");
    assert_string_equal(qsync__wire_status_text(QSYNC__WIRE_EBADLEN), "bad frame length");
    assert_string_equal(qsync__wire_status_text(QSYNC__WIRE_EBADFIELD), "bad field value");
    assert_string_equal(qsync__wire_status_text(QSYNC__WIRE_ESPACE), "buffer too small");
    assert_string_equal(qsync__wire_status_text(-99), "unknown status");
    assert_string_equal(qsync__wire_engine_name(QSYNC__WIRE_ENGINE_INSN), "insn");
    assert_string_equal(qsync__wire_engine_name(QSYNC__WIRE_ENGINE_TIMER), "timer");
    assert_string_equal(qsync__wire_engine_name(QSYNC__WIRE_ENGINE_BLOCK), "block");
    assert_string_equal(qsync__wire_engine_name(0), "unknown");
}

int main(void)
{
    const struct CMUnitTest wire[] = {
        cmocka_unit_test(test_round_trip_hello),
        cmocka_unit_test(test_round_trip_hello_long_target),
        cmocka_unit_test(test_round_trip_grant),
        cmocka_unit_test(test_round_trip_report),
        cmocka_unit_test(test_round_trip_error),
        cmocka_unit_test(test_round_trip_exit),
        cmocka_unit_test(test_round_trip_input),
        cmocka_unit_test(test_input_refusals),
        cmocka_unit_test(test_frame_layout),
        cmocka_unit_test(test_frame_refusals),
        cmocka_unit_test(test_nic_status_layout),
        cmocka_unit_test(test_next_layout),
        cmocka_unit_test(test_example_grant_bytes),
        cmocka_unit_test(test_example_report_bytes),
        cmocka_unit_test(test_hello_layout),
        cmocka_unit_test(test_error_and_exit_layout),
        cmocka_unit_test(test_reject_unknown_type),
        cmocka_unit_test(test_reject_nonzero_reserved),
        cmocka_unit_test(test_reject_payload_over_max),
        cmocka_unit_test(test_reject_wrong_length_hello),
        cmocka_unit_test(test_reject_wrong_length_grant),
        cmocka_unit_test(test_reject_wrong_length_exit),
        cmocka_unit_test(test_reject_wrong_length_report),
        cmocka_unit_test(test_reject_wrong_length_error),
        cmocka_unit_test(test_reject_report_nvcpus_mismatch),
        cmocka_unit_test(test_raw_hello_is_valid),
        cmocka_unit_test(test_reject_hello_vcpus),
        cmocka_unit_test(test_reject_hello_engine),
        cmocka_unit_test(test_reject_hello_shift),
        cmocka_unit_test(test_reject_hello_unterminated_target),
        cmocka_unit_test(test_reject_non_canonical_text),
        cmocka_unit_test(test_hello_major_not_checked_by_codec),
        cmocka_unit_test(test_reject_error_text_length),
        cmocka_unit_test(test_need_more_every_prefix),
        cmocka_unit_test(test_encode_espace),
        cmocka_unit_test(test_encode_rejects_bad_messages),
        cmocka_unit_test(test_two_frames_back_to_back),
        cmocka_unit_test(test_status_and_engine_names),
    };
    return cmocka_run_group_tests_name("wire", wire, NULL, NULL);
}

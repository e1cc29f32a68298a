/*
 * qsync-net's segment (src/cli/segment.c): the learning switch and the
 * canonical order of a quantum's frames, which make qsync-net's pcap and
 * delivery order the same run after run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "segment.h"

#define BCAST 0xff, 0xff, 0xff, 0xff, 0xff, 0xff

/* Guest p's address: 52:54:00:00:00:0p. */
#define MAC(p) 0x52, 0x54, 0x00, 0x00, 0x00, (p)

/* Pushes a 60-byte frame from port to dst, sent at t, whose byte 14 is
 * tag (to tell frames apart after sorting). */
static void push(struct qsync__segment *s, unsigned port, uint64_t t, const uint8_t dst[6],
                 const uint8_t src[6], uint8_t tag)
{
    uint8_t f[60];
    memset(f, 0, sizeof f);
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    f[12] = 0x08;
    f[14] = tag;
    assert_int_equal(qsync__segment_push(s, port, t, f, sizeof f), 0);
}

/* Routes held frame i; returns the destinations as a bit mask. */
static unsigned route_mask(struct qsync__segment *s, size_t i)
{
    unsigned out[8], mask = 0;
    unsigned k = qsync__segment_route(s, &s->frames[i], out);
    for (unsigned j = 0; j < k; j++) {
        if (j > 0)
            assert_true(out[j] > out[j - 1]); /* in port order */
        mask |= 1u << out[j];
    }
    return mask;
}

/* Frames pushed in host order come out by time, then port, then each
 * port's own order; and the copies are the frames' bytes. */
static void test_canonical_order(void **state)
{
    (void)state;
    struct qsync__segment s;
    const uint8_t b[6] = {BCAST}, m1[6] = {MAC(1)}, m2[6] = {MAC(2)}, m3[6] = {MAC(3)};
    assert_int_equal(qsync__segment_init(&s, 3), 0);
    push(&s, 2, 500, b, m3, 'a');
    push(&s, 1, 700, b, m2, 'b');
    push(&s, 0, 700, b, m1, 'c');
    push(&s, 2, 300, b, m3, 'd');
    push(&s, 1, 700, b, m2, 'e'); /* same time and port as 'b', sent after it */
    push(&s, 0, 100, b, m1, 'f');
    qsync__segment_sort(&s);
    const char want[] = "fdacbe";
    assert_int_equal(s.n_frames, 6);
    for (size_t i = 0; i < s.n_frames; i++) {
        assert_int_equal(s.frames[i].data[14], want[i]);
        assert_int_equal(s.frames[i].len, 60);
    }
    assert_int_equal(s.frames[0].t, 100);
    assert_int_equal(s.frames[4].seq, 0); /* 'b': port 1's first */
    assert_int_equal(s.frames[5].seq, 1);
    qsync__segment_clear(&s);
    assert_int_equal(s.n_frames, 0);
    qsync__segment_free(&s);
}

/* Broadcast, multicast and unknown unicast flood to every port but the
 * sender's; a learned address goes to its port only; a frame for the
 * sender's own port goes nowhere. */
static void test_learning_switch(void **state)
{
    (void)state;
    struct qsync__segment s;
    const uint8_t b[6] = {BCAST}, mc[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};
    const uint8_t m1[6] = {MAC(1)}, m2[6] = {MAC(2)}, m3[6] = {MAC(3)}, m4[6] = {MAC(4)};
    assert_int_equal(qsync__segment_init(&s, 4), 0);
    push(&s, 0, 1, b, m1, 0);  /* 0: broadcast from port 0 */
    push(&s, 1, 2, m1, m2, 0); /* 1: to m1, learned on port 0 */
    push(&s, 0, 3, m3, m1, 0); /* 2: to m3, not learned yet: flood */
    push(&s, 2, 4, mc, m3, 0); /* 3: multicast: flood */
    push(&s, 0, 5, m3, m1, 0); /* 4: to m3, now learned on port 2 */
    push(&s, 1, 6, m2, m2, 0); /* 5: to its own port: filtered */
    push(&s, 3, 7, m4, m4, 0); /* 6: likewise, learned as it goes */
    push(&s, 3, 8, m2, m1, 0); /* 7: m1 moved to port 3; to m2 on port 1 */
    push(&s, 1, 9, m1, m2, 0); /* 8: to m1, now on port 3 */
    qsync__segment_sort(&s);
    assert_int_equal(route_mask(&s, 0), 0xe);
    assert_int_equal(route_mask(&s, 1), 0x1);
    assert_int_equal(route_mask(&s, 2), 0xe);
    assert_int_equal(route_mask(&s, 3), 0xb);
    assert_int_equal(route_mask(&s, 4), 0x4);
    assert_int_equal(route_mask(&s, 5), 0x0);
    assert_int_equal(route_mask(&s, 6), 0x0);
    assert_int_equal(route_mask(&s, 7), 0x2);
    assert_int_equal(route_mask(&s, 8), 0x8);
    qsync__segment_free(&s);
}

/* A multicast source is never learned (it would capture the group's
 * traffic), and a frame too short for a header goes nowhere. */
static void test_no_group_source_no_runt(void **state)
{
    (void)state;
    struct qsync__segment s;
    const uint8_t mc[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, m1[6] = {MAC(1)};
    assert_int_equal(qsync__segment_init(&s, 3), 0);
    push(&s, 2, 1, m1, mc, 0);
    push(&s, 0, 2, mc, m1, 0);
    uint8_t runt[13] = {MAC(2)};
    assert_int_equal(qsync__segment_push(&s, 1, 3, runt, sizeof runt), 0);
    assert_int_equal(route_mask(&s, 0), 0x3);
    assert_int_equal(route_mask(&s, 1), 0x6);
    assert_int_equal(route_mask(&s, 2), 0x0);
    assert_int_equal(s.n_fdb, 1);
    qsync__segment_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_order),
        cmocka_unit_test(test_learning_switch),
        cmocka_unit_test(test_no_group_source_no_runt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

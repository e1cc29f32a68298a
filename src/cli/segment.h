/*
 * qsync-net's Ethernet segment: one learning switch with a port per guest,
 * and the frames of a quantum in their canonical order.
 *
 * The frames of a quantum come from the guests' QEMUs in host-timing
 * order. They are held here and, at the group barrier, sorted by send
 * time, then port (guest), then the port's own sequence number, and only
 * then learned from and routed: so the switch's table, the order of
 * delivery and the pcap are the same run after run.
 */
#ifndef QSYNC_CLI_SEGMENT_H
#define QSYNC_CLI_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

/* The most source addresses the switch learns; past that, frames to
 * addresses it has not learned are flooded, as a switch whose table is
 * full floods. */
#define QSYNC__SEGMENT_FDB_MAX 4096u

struct qsync__seg_frame {
    uint64_t t;   /* the virtual time it was sent */
    unsigned port;
    uint64_t seq; /* the port's count of frames before this one */
    size_t len;
    unsigned char *data;
};

struct qsync__seg_fdb_entry {
    uint8_t mac[6];
    unsigned port;
};

struct qsync__segment {
    unsigned n_ports;
    uint64_t *seq; /* per port: the next frame's sequence number */
    struct qsync__seg_frame *frames;
    size_t n_frames, cap_frames;
    struct qsync__seg_fdb_entry *fdb;
    size_t n_fdb;
};

/* Returns 0, or -1 when out of memory. */
int qsync__segment_init(struct qsync__segment *s, unsigned n_ports);
void qsync__segment_free(struct qsync__segment *s);

/* Holds a copy of a frame port sent at virtual time t. Returns 0, or -1
 * when out of memory. */
int qsync__segment_push(struct qsync__segment *s, unsigned port, uint64_t t, const void *data,
                        size_t len);

/* Puts the held frames in canonical order: time, port, sequence. */
void qsync__segment_sort(struct qsync__segment *s);

/*
 * The switch at work on one frame, in canonical order: learns its source
 * address (a unicast one) on its port, then writes to out (room for
 * n_ports) the ports it goes to, in port order, and returns how many:
 * the learned port of a unicast destination (none when that is the
 * sender's own port), else every port but the sender's (broadcast,
 * multicast, an unknown destination). A frame shorter than an Ethernet
 * header goes nowhere.
 */
unsigned qsync__segment_route(struct qsync__segment *s, const struct qsync__seg_frame *f,
                              unsigned *out);

/* Forgets the held frames (the switch's table stays). */
void qsync__segment_clear(struct qsync__segment *s);

#endif

/*
 * Guest input: bytes the controller sends with INPUT messages while the
 * guest is stopped, handed to the guest's first serial port at that stop,
 * before the guest runs on. So a byte arrives at exactly the virtual time
 * of the stop, run after run, unlike bytes that QEMU's main loop reads
 * from a character device whenever the host's scheduler lets it.
 *
 * What the device cannot take at once (its receive FIFO is full, or it has
 * no FIFO and holds an unread byte) stays queued, in order, and is offered
 * again at every later stop. The thread in a stop only.
 */
#ifndef QSYNC_PLUGIN_INPUT_H
#define QSYNC_PLUGIN_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most bytes that may wait in the queue. */
#define QSYNC_INPUT_QUEUE_MAX (64u * 1024u)

/* Whether this QEMU lets the plugin feed serial0 (HELLO's G_INPUT). */
bool qsync__input_supported(void);

/* Queues bytes. Returns 0, or -1 when the queue would pass its maximum. */
int qsync__input_queue(const uint8_t *data, size_t len);

/* Hands the device what it takes now. Returns 0, or -1 when there is no
 * serial0 to take it. */
int qsync__input_deliver(void);

/* Bytes still queued. */
size_t qsync__input_pending(void);

#endif

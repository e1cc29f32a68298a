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
 *
 * A stop inside a translated block (the insn engine's countdown, the
 * block engine's block start) is no place for device code: the UART reads
 * QEMU's virtual clock when it takes a byte, and under -icount that read
 * ends QEMU ("Bad icount read") anywhere but at a safe point. There the
 * bytes are handed over by a QEMU_CLOCK_VIRTUAL timer due at once, which
 * runs where the block ends, before the next one. The guest cannot tell:
 * it sees a device only through an I/O instruction or an interrupt, and
 * under -icount both wait for the end of a block. The UART's own clock
 * reading is then the block's end; deterministic, like the stop.
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

/* Whether QEMU has a serial0 for the input to go to. */
bool qsync__input_has_port(void);

/* Hands the device what it takes, at once when the caller is at a safe
 * point (safe_point: qemu_internals.h), otherwise from a timer when the
 * current block ends. Returns 0, or -1 when there is no serial0 to take it
 * (found at once only at a safe point: check qsync__input_has_port first). */
int qsync__input_deliver(bool safe_point);

/* Bytes still queued. */
size_t qsync__input_pending(void);

#endif

/*
 * The guest's NICs (docs/network.md): one QEMU net client per NIC, made at
 * install as the backend ("netdev") that the library's -device line names
 * (qsync-nic0, qsync-nic1, ...), so that QEMU's NIC sends into it and
 * receives from it directly, with no host network behind.
 *
 * - Transmit: the NIC hands a frame to the client in the thread that sent
 *   it (for e1000, the vCPU's register write), where QEMU's virtual clock
 *   is exact; the frame is stamped there and buffered, and the buffer goes
 *   to the controller before the stop's REPORT (or earlier, when it grows).
 * - Receive: frames from the controller wait in time order and are handed
 *   to the NIC from a QEMU_CLOCK_VIRTUAL timer at their time. A NIC that
 *   cannot take one at once gets it from QEMU's own queue when it can; at
 *   most rx_queue frames per NIC wait there, past that they are dropped
 *   and counted.
 * Native personality only.
 */
#ifndef QSYNC_PLUGIN_NET_H
#define QSYNC_PLUGIN_NET_H

#include <stdbool.h>
#include <stddef.h>

#include "options.h"
#include "wire.h"

/* Sends bytes (whole wire frames) to the controller; 0 or -errno. */
typedef int (*qsync__net_send_fn)(const void *buf, size_t len);

/*
 * Makes the NICs' backends (opt->n_nics of them). Returns 0 (also with no
 * NICs), or -1 after logging why: this QEMU lacks a function the NICs
 * need (named, with QEMU's path), or a backend could not be made. Install
 * thread, before QEMU creates its devices.
 */
int qsync__net_install(const struct qsync__options *opt, qsync__net_send_fn send);

/* Whether NICs are served (HELLO's QSYNC__WIRE_G_FRAMES). */
bool qsync__net_active(void);

/* A FRAME from the controller, at a stop: queued for its time. Returns 0,
 * or -1 when the NIC does not exist (*why says so). */
int qsync__net_frame_in(const struct qsync__wire_frame *f, const char **why);

/* The guest runs on from a stop: frames due now are handed over (at once
 * between two blocks, else as soon as the block ends), and the timer is
 * set for the next. The thread in a stop. */
void qsync__net_resume(void);

/* Sends what the NICs sent since the last flush, then (with status) each
 * NIC's counters that changed. Returns 0 or -errno from the send. Any
 * thread; before REPORT and EXIT from the thread in the stop. */
int qsync__net_flush(bool status);

#endif

/*
 * QEMU's own internal functions, used when this QEMU exports them (see
 * qemu_internals.c for the list, the versions they were checked on and
 * the test hook that hides them). They are not a stable interface: every
 * use sits behind qsync__qemu_internals_found(), and the engines fall
 * back to the plugin API when it is false.
 *
 * Context rules (QEMU's, not ours), which every caller must respect:
 * - "safe point": QEMU's main thread, or a vCPU thread outside guest
 *   execution (in a QEMU_CLOCK_VIRTUAL timer callback, which under
 *   -icount runs in the vCPU thread with the big lock held). Only there
 *   may the virtual clock or icount be read: read from a plugin callback
 *   inside a translated block, QEMU ends the process with "Bad icount
 *   read" unless the instruction is the block's last I/O instruction.
 * - The timer functions take the timer list's own lock and may be called
 *   from any thread.
 */
#ifndef QSYNC_PLUGIN_QEMU_INTERNALS_H
#define QSYNC_PLUGIN_QEMU_INTERNALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for QEMU's QEMUTimer (48 bytes on 64-bit hosts in 7.2 and 10.0). */
struct qsync__vtimer {
    _Alignas(16) unsigned char opaque[256];
};

/*
 * Looks the internals up, once, from qemu_plugin_install. Returns true if
 * every required function was found (and the test hook is not set).
 * Otherwise *missing says why, for a message ("missing: timer_init_full",
 * or that the test hook hides them). Install thread.
 */
bool qsync__qemu_internals_probe(const char **missing);

/* What the probe said (false before it ran). Any thread. */
bool qsync__qemu_internals_found(void);

/* Whether icount_update was found too: it lets the
 * plugin fold a vCPU's instructions into QEMU's clock early (see
 * qsync__qemu_icount_sync). Any thread. */
bool qsync__qemu_can_sync_icount(void);

/* A QEMU_CLOCK_VIRTUAL timer in the main timer list group, nanosecond
 * scale, no attributes (so that icount's warp and budget both honour it).
 * Its callback runs in the vCPU thread with the big lock held under
 * -icount. Any thread. */
void qsync__vtimer_init(struct qsync__vtimer *t, void (*cb)(void *), void *opaque);

/* A QEMU_CLOCK_VIRTUAL timer alone in a timer list of its own, which no
 * one runs: icount's budget and warp honour it like any other (they look
 * at every list of the clock), but its callback is never called. Instead
 * notify(opaque) is called whenever QEMU notifies the list: when the timer
 * becomes the list's first (arming it), and whenever QEMU notifies every
 * list of the clock, in particular from the vCPU thread, with the big lock
 * held, outside translated code, when a deadline of the clock is reached
 * (icount_handle_deadline). Returns false when this QEMU does not export
 * timerlist_new. Install thread. */
bool qsync__vtimer_init_alone(struct qsync__vtimer *t, void (*notify)(void *), void *opaque);
void qsync__vtimer_mod(struct qsync__vtimer *t, int64_t expire_ns);
void qsync__vtimer_del(struct qsync__vtimer *t);

/* QEMU_CLOCK_VIRTUAL now, in ns. Safe points only. */
int64_t qsync__qemu_vclock_ns(void);

/* Instructions executed by all vCPUs, as icount counts them. Safe points
 * only. */
int64_t qsync__qemu_icount(void);

/* ns from now until the next pending QEMU_CLOCK_VIRTUAL timer of any
 * kind, or -1 when none is pending. Safe points only. */
int64_t qsync__qemu_next_vtimer_ns(void);

/* Whether every vCPU is halted with nothing to do (the condition under
 * which -icount warps the clock). Big lock held. */
bool qsync__qemu_all_vcpus_idle(void);

/* Whether the vCPU would leave a halt now (an interrupt is pending...):
 * 1 or 0, or -1 when this QEMU does not export cpu_has_work. Big lock
 * held. */
int qsync__qemu_vcpu_has_work(unsigned int vcpu_index);

/* Whether the calling thread is a vCPU thread (true when unknown, so
 * that a caller never mistakes a vCPU thread for a safe point). */
bool qsync__qemu_in_vcpu_thread(void);

/*
 * Folds what vcpu_index has executed in its current execution slice into
 * QEMU's instruction count now, rather than when the slice ends. Called
 * from the callback of a halting instruction, which TCG places last in
 * its block, so the slice's count is final there. Returns false if this
 * QEMU lacks the functions (nothing is done). Any vCPU thread, for its
 * own vCPU.
 */
bool qsync__qemu_icount_sync(unsigned int vcpu_index);

/* Whether QEMU exports what qsync__qemu_feed_serial needs. */
bool qsync__qemu_can_feed_serial(void);

/* Whether it can, and QEMU has a serial0. Any thread. */
bool qsync__qemu_has_serial0(void);

/*
 * Hands bytes to the guest's first serial port as if they had arrived on
 * its character device (-serial stdio...), as many as the device takes now
 * (its receive FIFO, or one byte without a FIFO). Takes the big lock if
 * the caller does not hold it. Returns the bytes taken, or -1 when there
 * is no serial0 or the functions are missing. A stop only (the guest is
 * frozen, so the bytes arrive at exactly the stop's virtual time), at a
 * safe point: the device reads the virtual clock.
 */
long qsync__qemu_feed_serial(const uint8_t *buf, size_t len);

/* What QEMU says about -icount, from its internals. */
enum qsync__icount_state {
    QSYNC_ICOUNT_UNKNOWN,  /* this QEMU does not export what we need     */
    QSYNC_ICOUNT_OFF,      /* no -icount: time follows the host clock    */
    QSYNC_ICOUNT_FIXED,    /* -icount shift=N; *shift is N, or           */
                           /* QSYNC_SHIFT_UNKNOWN if QEMU won't tell     */
    QSYNC_ICOUNT_ADAPTIVE  /* -icount shift=auto                         */
};

#define QSYNC_SHIFT_UNKNOWN (~0u)

/* Reads QEMU's icount mode and shift. Valid from qemu_plugin_install on
 * (QEMU configures icount before it loads plugins). */
enum qsync__icount_state qsync__probe_icount(unsigned *shift);

#endif
